# -*- coding: utf-8 -*-
# vim: ft=sls
# oneadmin's access on a worker: the udev rule making the driver's LVs
# oneadmin:disk 0660 (so dd needs no sudo) and sudo for exactly the LVM
# commands _modules/gfs2clvm.py runs.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g with context %}

include:
  - {{ tplroot }}.worker.package
  - {{ tplroot }}.worker.user

gfs2clvm-worker-access-udev-file-managed:
  file.managed:
    - name: {{ g.udev.rules_file }}
    - source: salt://{{ tplroot }}/files/worker/udev.rules.jinja
    - template: jinja
    - mode: '0644'
    - context:
        vg_dm: {{ g.vg_dm | json }}
        owner: {{ g.owner | json }}
        udev: {{ g.udev | json }}
    - require:
      - user: gfs2clvm-worker-user-user-present

# udevd resolves OWNER= names when it loads rules: reload after the rule (and
# oneadmin) exist, then re-apply it to the driver's LVs that already exist
gfs2clvm-worker-access-udev-cmd-run:
  cmd.run:
    - name: >-
        udevadm control --reload &&
        udevadm trigger --action=change --subsystem-match=block
        --property-match=DM_NAME={{ g.vg_dm }}-lv--one--*
        --property-match=DM_NAME={{ g.vg_dm }}-lv--oneimg--*
    - onchanges:
      - file: gfs2clvm-worker-access-udev-file-managed

gfs2clvm-worker-access-sudoers-file-managed:
  file.managed:
    - name: {{ g.sudoers.file }}
    - source: salt://{{ tplroot }}/files/worker/sudoers.jinja
    - template: jinja
    - mode: '0440'
    - user: root
    - group: root
    - check_cmd: {{ g.sudoers.visudo }} -c -q -f
    - context:
        owner: {{ g.owner | json }}
        lvm_bin: {{ g.lvm_bin | json }}
        commands: {{ g.sudoers.commands | json }}
    - require:
      - pkg: gfs2clvm-worker-package-pkg-installed
