# -*- coding: utf-8 -*-
# vim: ft=sls
# salt-ssh configuration the driver uses (as oneadmin): master config, roster
# (one entry per worker: oneadmin, module_dirs = the modules the worker formula
# installed, minion_opts gfs2clvm = the module config) and Saltfile; plus the
# workers' host keys in oneadmin's known_hosts (ssh-keyscan).
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
{%- set roster = {} %}
{%- for node in g.cluster.nodes %}
{%-   do roster.update({node.name: {
        'host': node.get('ssh_host', node.ring0_addr),
        'port': node.get('ssh_port', fe.ssh_port),
        'user': g.owner,
        'priv': fe.ssh_priv,
        'thin_dir': fe.thin_dir,
        'set_path': '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        'minion_opts': {'gfs2clvm': module_conf, 'module_dirs': [g.modules_dir]},
      }}) %}
{%- endfor %}

gfs2clvm-frontend-saltssh-dir-file-directory:
  file.directory:
    - name: {{ fe.salt_dir }}
    - user: root
    - group: {{ g.group }}
    - mode: '0750'
    - makedirs: true

gfs2clvm-frontend-saltssh-master-file-serialize:
  file.serialize:
    - name: {{ fe.salt_dir }}/master
    - serializer: yaml
    - mode: '0644'
    - dataset:
        root_dir: {{ g.oneadmin.home }}/.gfs2clvm-salt
        cachedir: {{ g.oneadmin.home }}/.gfs2clvm-salt/cache
        pki_dir: {{ g.oneadmin.home }}/.gfs2clvm-salt/pki
        sock_dir: {{ g.oneadmin.home }}/.gfs2clvm-salt/run
        log_file: {{ g.oneadmin.home }}/.gfs2clvm-salt/log/master
        ssh_log_file: {{ g.oneadmin.home }}/.gfs2clvm-salt/log/ssh
        roster_file: {{ fe.salt_dir }}/roster
        known_hosts_file: {{ fe.known_hosts }}
        ssh_priv: {{ fe.ssh_priv }}
        file_roots: {base: []}
        pillar_roots: {base: []}
    - require:
      - file: gfs2clvm-frontend-saltssh-dir-file-directory

{%- if fe.manage_roster %}

gfs2clvm-frontend-saltssh-roster-file-serialize:
  file.serialize:
    - name: {{ fe.salt_dir }}/roster
    - serializer: yaml
    - mode: '0644'
    - dataset: {{ roster | json }}
    - require:
      - file: gfs2clvm-frontend-saltssh-dir-file-directory
{%- endif %}

gfs2clvm-frontend-saltssh-saltfile-file-serialize:
  file.serialize:
    - name: {{ fe.salt_dir }}/Saltfile
    - serializer: yaml
    - mode: '0644'
    - dataset:
        salt-ssh:
          config_dir: {{ fe.salt_dir }}
          log_level: warning
    - require:
      - file: gfs2clvm-frontend-saltssh-dir-file-directory

{%- for node in g.cluster.nodes %}

gfs2clvm-frontend-saltssh-known-host-{{ node.name }}-ssh_known_hosts-present:
  ssh_known_hosts.present:
    - name: {{ node.get('ssh_host', node.ring0_addr) }}
    - port: {{ node.get('ssh_port', fe.ssh_port) }}
    - user: {{ g.owner }}
    - config: {{ fe.known_hosts }}
    - hash_known_hosts: false
{%- endfor %}
