# -*- coding: utf-8 -*-
# vim: ft=sls
# salt-ssh configuration the driver uses (as oneadmin): master config (with the
# settings every worker shares: module_dirs = the modules the worker formula
# installed, gfs2clvm = the module config, as ssh_minion_opts), Saltfile, and the
# roster file.  The roster's entries belong to gfs2clvm-host (tm_commands/bin):
# the formula only creates the file (oneadmin's, in a sticky directory oneadmin
# may write to, so oneadmin can run gfs2clvm-host) and, with frontend:enroll,
# runs `gfs2clvm-host add` for each cluster:nodes item not enrolled yet -- host
# key (ssh-keyscan into known_hosts), roster entry, salt thin.  Enrolled hosts are
# left alone: a highstate never drops or rewrites what gfs2clvm-host wrote.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g, require with context %}
{{- require('cluster:nodes') }}
{%- set fe = g.frontend %}
{%- set module_keys = ['vg', 'mountpoint', 'mount_check', 'default_size_mb', 'dd_bs', 'zero_new',
                       'wipe_on_delete', 'thin_pool', 'owner', 'group', 'sudo', 'lvm_bin',
                       'snapshot_size_pct'] %}
{%- set module_conf = {} %}
{%- for key in module_keys if key in g %}
{%-   do module_conf.update({key: g[key]}) %}
{%- endfor %}
{%- set roster_file = fe.salt_dir ~ '/roster' %}
{#- hosts already in the roster (read when rendering: test=True predicts right) #}
{%- set enrolled = {} %}
{%- if salt['file.file_exists'](roster_file) %}
{%-   set loaded = salt['file.read'](roster_file) | load_yaml %}
{%-   if loaded is mapping %}{% do enrolled.update(loaded) %}{% endif %}
{%- endif %}

include:
  - .driver

gfs2clvm-frontend-saltssh-dir-file-directory:
  file.directory:
    - name: {{ fe.salt_dir }}
    - user: root
    - group: {{ g.group }}
    # sticky: oneadmin creates the roster's temp and lock files here, but cannot
    # replace or remove root's master config and Saltfile
    - mode: '1770'
    - makedirs: true

gfs2clvm-frontend-saltssh-master-file-serialize:
  file.serialize:
    - name: {{ fe.salt_dir }}/master
    - serializer: yaml
    - user: root
    - group: root
    - mode: '0644'
    - dataset:
        root_dir: {{ g.oneadmin.home }}/.gfs2clvm-salt
        cachedir: {{ g.oneadmin.home }}/.gfs2clvm-salt/cache
        pki_dir: {{ g.oneadmin.home }}/.gfs2clvm-salt/pki
        sock_dir: {{ g.oneadmin.home }}/.gfs2clvm-salt/run
        log_file: {{ g.oneadmin.home }}/.gfs2clvm-salt/log/master
        ssh_log_file: {{ g.oneadmin.home }}/.gfs2clvm-salt/log/ssh
        roster_file: {{ roster_file }}
        known_hosts_file: {{ fe.known_hosts }}
        ssh_priv: {{ fe.ssh_priv }}
        file_roots: {base: []}
        pillar_roots: {base: []}
        # every roster entry without its own minion_opts gets these
        ssh_minion_opts: {{ {'module_dirs': [g.modules_dir], 'gfs2clvm': module_conf} | json }}
    - require:
      - file: gfs2clvm-frontend-saltssh-dir-file-directory

gfs2clvm-frontend-saltssh-roster-file-managed:
  file.managed:
    - name: {{ roster_file }}
    - contents: '{}'
    - replace: false
    - user: {{ g.owner }}
    - group: {{ g.group }}
    - mode: '0644'
    - require:
      - file: gfs2clvm-frontend-saltssh-dir-file-directory

gfs2clvm-frontend-saltssh-saltfile-file-serialize:
  file.serialize:
    - name: {{ fe.salt_dir }}/Saltfile
    - serializer: yaml
    - user: root
    - group: root
    - mode: '0644'
    - dataset:
        salt-ssh:
          config_dir: {{ fe.salt_dir }}
          log_level: warning
    - require:
      - file: gfs2clvm-frontend-saltssh-dir-file-directory

gfs2clvm-frontend-saltssh-known-hosts-dir-file-directory:
  file.directory:
    - name: {{ salt['file.dirname'](fe.known_hosts) }}
    - user: {{ g.owner }}
    - group: {{ g.group }}
    - mode: '0700'
    - makedirs: true

{%- if fe.enroll %}
{%-   for node in g.cluster.nodes if node.name not in enrolled %}

gfs2clvm-frontend-saltssh-enroll-{{ node.name }}-module-run:
  module.run:
    - cmd.run_all:
      - cmd: {{ [fe.python, fe.tool_dir ~ '/bin/gfs2clvm-host', 'add', node.name,
                 '--address', node.get('ssh_host', node.ring0_addr),
                 '--port', node.get('ssh_port', fe.ssh_port) | string,
                 '--user', g.owner, '--priv', fe.ssh_priv, '--thin-dir', fe.thin_dir,
                 '--no-check'] | json }}
      - python_shell: false
      - env:
          GFS2CLVM_CONF: {{ fe.driver_conf }}
    - require:
      - file: gfs2clvm-frontend-driver-conf-file-serialize
      - file: gfs2clvm-frontend-driver-tool-bin-file-managed
      - file: gfs2clvm-frontend-saltssh-master-file-serialize
      - file: gfs2clvm-frontend-saltssh-roster-file-managed
      - file: gfs2clvm-frontend-saltssh-saltfile-file-serialize
      - file: gfs2clvm-frontend-saltssh-known-hosts-dir-file-directory
{%-   endfor %}
{%- endif %}
