# -*- coding: utf-8 -*-
# vim: ft=sls
# The driver's execution modules, installed where the front-end's roster points
# salt-ssh (`minion_opts: module_dirs`), so a driver action ships nothing.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g with context %}

gfs2clvm-worker-modules-file-recurse:
  file.recurse:
    - name: {{ g.modules_dir }}
    - source: salt://_modules
    - include_pat: '*.py'
    - user: root
    - group: root
    - dir_mode: '0755'
    - file_mode: '0644'
    - makedirs: true
    - clean: true
