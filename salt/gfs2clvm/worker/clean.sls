# -*- coding: utf-8 -*-
# vim: ft=sls
# Undo the worker configuration (reverse order).  Data is never touched: the
# shared VG, its LVs and GFS2 stay; GFS2 is unmounted and the lockspace stopped.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g with context %}

gfs2clvm-worker-clean-modules-file-absent:
  file.absent:
    - name: {{ g.modules_dir }}

{%- if g.libvirt.manage %}

gfs2clvm-worker-clean-polkit-file-absent:
  file.absent:
    - name: {{ g.libvirt.polkit_rule }}
{%- endif %}

gfs2clvm-worker-clean-sudoers-file-absent:
  file.absent:
    - name: {{ g.sudoers.file }}

gfs2clvm-worker-clean-udev-file-absent:
  file.absent:
    - name: {{ g.udev.rules_file }}

gfs2clvm-worker-clean-mount-mount-unmounted:
  mount.unmounted:
    - name: {{ g.mountpoint }}
    - device: {{ g.gfs2_device }}

gfs2clvm-worker-clean-lockspace-cmd-run:
  cmd.run:
    - name: vgchange --lock-stop {{ g.vg }}
    - onlyif: lvmlockctl --info | grep -q -w {{ g.vg }}
    - require:
      - mount: gfs2clvm-worker-clean-mount-mount-unmounted

gfs2clvm-worker-clean-lvmlocks-service-disabled:
  service.disabled:
    - name: {{ g.services.lvmlocks }}

gfs2clvm-worker-clean-lvmlockd-service-dead:
  service.dead:
    - names: [{{ g.services.lvmlockd }}, {{ g.services.dlm }}, {{ g.services.corosync }}]
    - enable: false
    - require:
      - cmd: gfs2clvm-worker-clean-lockspace-cmd-run

gfs2clvm-worker-clean-lvmlocal-file-absent:
  file.absent:
    - names: [/etc/lvm/lvmlocal.conf, /etc/dlm/dlm.conf, /etc/corosync/corosync.conf, /etc/corosync/authkey]
    - require:
      - service: gfs2clvm-worker-clean-lvmlockd-service-dead
