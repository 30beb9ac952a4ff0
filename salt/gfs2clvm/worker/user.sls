# -*- coding: utf-8 -*-
# vim: ft=sls
# oneadmin with the fixed ids OpenNebula's packages use (the same on every node:
# GFS2 stores numeric ids).  Not in group `disk`: device access comes from the
# udev rule, for the driver's LVs only.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g with context %}

gfs2clvm-worker-user-group-present:
  group.present:
    - name: {{ g.group }}
    - gid: {{ g.oneadmin.gid }}

gfs2clvm-worker-user-user-present:
  user.present:
    - name: {{ g.owner }}
    - uid: {{ g.oneadmin.uid }}
    - gid: {{ g.oneadmin.gid }}
    - home: {{ g.oneadmin.home }}
    - shell: {{ g.oneadmin.shell }}
    - createhome: false
    - require:
      - group: gfs2clvm-worker-user-group-present
