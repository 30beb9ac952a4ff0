# -*- coding: utf-8 -*-
# vim: ft=sls
# The driver's salt-ssh service (docs/driver.md "How the call runs"): a socket-activated
# systemd unit running as oneadmin.  Without it every action runs the salt-ssh CLI itself
# (the same results, slower).  A change of the units or of the driver library restarts it.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g with context %}
{%- set fe = g.frontend %}
{%- set context = {'socket': fe.saltssh_socket, 'user': g.owner, 'group': g.group, 'python': fe.python,
                   'driver_conf': fe.driver_conf,
                   'service': fe.tool_dir ~ '/lib/gfs2clvm_driver/service.py'} %}

include:
  - .driver

{%- for unit in ('socket', 'service') %}

gfs2clvm-frontend-service-{{ unit }}-file-managed:
  file.managed:
    - name: {{ fe.unit_dir }}/gfs2clvm-saltssh.{{ unit }}
    - source: salt://{{ tplroot }}/files/frontend/gfs2clvm-saltssh.{{ unit }}.jinja
    - template: jinja
    - context: {{ context | json }}
    - user: root
    - group: root
    - mode: '0644'
    - makedirs: true
{%- endfor %}
{%- if fe.saltssh_start %}

gfs2clvm-frontend-service-socket-service-running:
  service.running:
    - name: gfs2clvm-saltssh.socket
    - enable: true
    - watch:
      - file: gfs2clvm-frontend-service-socket-file-managed

gfs2clvm-frontend-service-restart-cmd-run:
  cmd.run:
    - name: systemctl daemon-reload && systemctl try-restart gfs2clvm-saltssh.service
    - onchanges:
      - file: gfs2clvm-frontend-service-service-file-managed
      - file: gfs2clvm-frontend-driver-tool-lib-file-recurse
      - file: gfs2clvm-frontend-driver-conf-file-serialize
    - require:
      - service: gfs2clvm-frontend-service-socket-service-running
{%- endif %}
