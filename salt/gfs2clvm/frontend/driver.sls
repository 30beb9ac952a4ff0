# -*- coding: utf-8 -*-
# vim: ft=sls
# Driver executables (tm_commands/ of this repository) into oned's remotes, the
# driver configuration, and the enrolment command gfs2clvm-host: a root-owned
# copy with its own copy of the library in tool_dir (root may run it, so nothing
# it runs may be writable by oneadmin, who owns remotes/), linked onto PATH.
# After a change run `onehost sync --force` so oned copies them to the hosts
# (gfs2clvm actions run on the front-end and reach workers via salt-ssh only).
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g with context %}
{%- set fe = g.frontend %}
{%- set dirs = {
      'tm': ('tm_commands/tm/gfs2clvm', fe.remotes ~ '/tm/gfs2clvm', '0755'),
      'datastore': ('tm_commands/datastore/gfs2clvm', fe.remotes ~ '/datastore/gfs2clvm', '0755'),
      'lib': ('tm_commands/lib/gfs2clvm_driver', fe.remotes ~ '/lib/gfs2clvm_driver', '0644'),
    } %}
{#- the driver's own keys (tm_commands/etc/gfs2clvm.conf), then frontend:conf extras #}
{#- oned_user: the owner of the driver files is the account oned runs it as #}
{%- set conf = {'saltfile': fe.salt_dir ~ '/Saltfile', 'salt_ssh': fe.salt_ssh, 'saltssh_socket': fe.saltssh_socket, 'vg': g.vg,
                'mountpoint': g.mountpoint, 'user': g.owner, 'oned_user': g.owner, 'datastores': fe.datastores} %}
{%- do conf.update(fe.conf) %}
{%- if fe.install_one_3_2 %}
{%-   do dirs.update({'one32': ('tm_commands/one-3.2', '/usr/lib/one/tm_commands/gfs2clvm', '0755')}) %}
{%- endif %}

{%- for what, (src, dst, mode) in dirs | dictsort %}

gfs2clvm-frontend-driver-{{ what }}-file-recurse:
  file.recurse:
    - name: {{ dst }}
    - source: salt://{{ src }}
    - user: {{ g.owner }}
    - group: {{ g.group }}
    - dir_mode: '0755'
    - file_mode: '{{ mode }}'
    - makedirs: true
    - clean: true
    - exclude_pat: E@(__pycache__|\.pyc$)
{%- endfor %}

gfs2clvm-frontend-driver-conf-file-serialize:
  file.serialize:
    - name: {{ fe.driver_conf }}
    - serializer: yaml
    - user: root
    - group: {{ g.group }}
    - mode: '0640'
    - dataset: {{ conf | json }}

{#- gfs2clvm-host finds its library at <tool_dir>/lib (its own path, symlinks resolved) #}
gfs2clvm-frontend-driver-tool-lib-file-recurse:
  file.recurse:
    - name: {{ fe.tool_dir }}/lib/gfs2clvm_driver
    - source: salt://tm_commands/lib/gfs2clvm_driver
    - user: root
    - group: root
    - dir_mode: '0755'
    - file_mode: '0644'
    - makedirs: true
    - clean: true
    - exclude_pat: E@(__pycache__|\.pyc$)

gfs2clvm-frontend-driver-tool-bin-file-managed:
  file.managed:
    - name: {{ fe.tool_dir }}/bin/gfs2clvm-host
    - source: salt://tm_commands/bin/gfs2clvm-host
    - user: root
    - group: root
    - mode: '0755'
    - makedirs: true
    - require:
      - file: gfs2clvm-frontend-driver-tool-lib-file-recurse

gfs2clvm-frontend-driver-tool-link-file-symlink:
  file.symlink:
    - name: {{ fe.tool_link }}
    - target: {{ fe.tool_dir }}/bin/gfs2clvm-host
    - makedirs: true
    - require:
      - file: gfs2clvm-frontend-driver-tool-bin-file-managed
