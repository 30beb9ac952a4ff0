# -*- coding: utf-8 -*-
# vim: ft=sls
# Undo the front-end configuration (reverse order).  oned.conf keeps the
# TM_MAD/DATASTORE_MAD list entries (harmless without the driver); the managed
# TM_MAD_CONF/DS_MAD_CONF block is emptied.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g with context %}
{%- set fe = g.frontend %}

{%- if fe.saltssh_start %}
gfs2clvm-frontend-clean-service-service-dead:
  service.dead:
    - names: [gfs2clvm-saltssh.socket, gfs2clvm-saltssh.service]
    - enable: false
{%- endif %}

gfs2clvm-frontend-clean-service-file-absent:
  file.absent:
    - names:
      - {{ fe.unit_dir }}/gfs2clvm-saltssh.socket
      - {{ fe.unit_dir }}/gfs2clvm-saltssh.service

# the driver's salt-ssh set-up, the roster of enrolled hosts included (their
# host keys stay in known_hosts; `gfs2clvm-host remove` first drops those too)
gfs2clvm-frontend-clean-saltssh-file-absent:
  file.absent:
    - name: {{ fe.salt_dir }}

gfs2clvm-frontend-clean-madconf-file-blockreplace:
  file.blockreplace:
    - name: {{ fe.oned_conf }}
    - marker_start: '# BEGIN gfs2clvm -- managed by Salt, do not edit'
    - marker_end: '# END gfs2clvm'
    - content: ''
    - onlyif: test -f {{ fe.oned_conf }}

gfs2clvm-frontend-clean-driver-file-absent:
  file.absent:
    - names:
      - {{ fe.tool_link }}
      - {{ fe.tool_dir }}/bin
      - {{ fe.tool_dir }}/lib
      - {{ fe.driver_conf }}
      - {{ fe.remotes }}/lib/gfs2clvm_driver
      - {{ fe.remotes }}/datastore/gfs2clvm
      - {{ fe.remotes }}/tm/gfs2clvm
      - /usr/lib/one/tm_commands/gfs2clvm
