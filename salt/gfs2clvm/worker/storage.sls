# -*- coding: utf-8 -*-
# vim: ft=sls
# The shared VG (lockspace started), the GFS2 LV active shared, GFS2 created
# only on a blank device, mounted at the mountpoint and owned by oneadmin.
# Only the node named in gfs2clvm:lvm:creator runs vgcreate/lvcreate/mkfs;
# the others wait for them (gfs2clvm:lvm:wait_timeout), so all nodes can run
# their highstate in parallel.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g, require with context %}
{{- require('cluster:name') }}
{{- require('lvm:creator') }}
{%- if g.is_creator %}
{{- require('lvm:pvs') }}
{%- endif %}

include:
  - {{ tplroot }}.worker.lvm
  - {{ tplroot }}.worker.user

gfs2clvm-worker-storage-vg-gfs2clvm-vg_shared:
  gfs2clvm.vg_shared:
    - name: {{ g.vg }}
    - devices: {{ g.lvm.pvs | json }}
    - create: {{ g.is_creator }}
    - lock_type: {{ g.lvm.lock_type }}
    - timeout: {{ g.lvm.wait_timeout }}
    - require:
      - service: gfs2clvm-worker-lvm-lvmlockd-service-running

gfs2clvm-worker-storage-lv-gfs2clvm-lv_shared:
  gfs2clvm.lv_shared:
    - name: {{ g.gfs2.lv }}
    - vg: {{ g.vg }}
    - size: {{ g.gfs2.size | json }}
    - create: {{ g.is_creator }}
    - timeout: {{ g.lvm.wait_timeout }}
    - require:
      - gfs2clvm: gfs2clvm-worker-storage-vg-gfs2clvm-vg_shared

gfs2clvm-worker-storage-fs-gfs2clvm-gfs2_formatted:
  gfs2clvm.gfs2_formatted:
    - name: {{ g.gfs2_device }}
    - locktable: {{ g.cluster.name ~ ':' ~ g.gfs2.fsname }}
    - journals: {{ g.gfs2_journals }}
    - journal_size_mb: {{ g.gfs2.journal_size_mb }}
    - create: {{ g.is_creator }}
    - timeout: {{ g.lvm.wait_timeout }}
    - require:
      - gfs2clvm: gfs2clvm-worker-storage-lv-gfs2clvm-lv_shared

# not in fstab: at boot the mount needs corosync, dlm, lvmlockd and `lvchange
# -asy` first; run the highstate (or gfs2clvm.worker.storage) after a reboot
gfs2clvm-worker-storage-mount-mount-mounted:
  mount.mounted:
    - name: {{ g.mountpoint }}
    - device: {{ g.gfs2_device }}
    - fstype: gfs2
    - opts: {{ g.gfs2.opts | join(',') }}
    - mkmnt: true
    - persist: false
    - require:
      - gfs2clvm: gfs2clvm-worker-storage-fs-gfs2clvm-gfs2_formatted

gfs2clvm-worker-storage-mountpoint-file-directory:
  file.directory:
    - name: {{ g.mountpoint }}
    - user: {{ g.owner }}
    - group: {{ g.group }}
    - mode: '0755'
    - require:
      - mount: gfs2clvm-worker-storage-mount-mount-mounted
      - user: gfs2clvm-worker-user-user-present

{%- if g.oneadmin.authorized_keys %}

# oneadmin's home is on GFS2 (shared by all workers): one file for every node
gfs2clvm-worker-storage-authorized-keys-file-managed:
  file.managed:
    - name: {{ g.oneadmin.home }}/.ssh/authorized_keys
    - contents: {{ g.oneadmin.authorized_keys | json }}
    - user: {{ g.owner }}
    - group: {{ g.group }}
    - mode: '0600'
    - makedirs: true
    - dir_mode: '0700'
    - require:
      - file: gfs2clvm-worker-storage-mountpoint-file-directory
{%- endif %}
