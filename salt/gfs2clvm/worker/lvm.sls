# -*- coding: utf-8 -*-
# vim: ft=sls
# LVM with lvmlockd.  The settings live in /etc/lvm/lvmlocal.conf: LVM 2.03
# reads it after lvm.conf and it overrides any section, so the package-owned
# lvm.conf stays untouched (no conffile prompts on upgrades).
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g with context %}
{%- set svc = g.services %}

include:
  - {{ tplroot }}.worker.package
  - {{ tplroot }}.worker.cluster

gfs2clvm-worker-lvm-lvmlocal-file-managed:
  file.managed:
    - name: /etc/lvm/lvmlocal.conf
    - source: salt://{{ tplroot }}/files/worker/lvmlocal.conf.jinja
    - template: jinja
    - mode: '0644'
    - context:
        lvm: {{ g.lvm | json }}
    - require:
      - pkg: gfs2clvm-worker-package-pkg-installed

gfs2clvm-worker-lvm-lvmlockd-service-running:
  service.running:
    - name: {{ svc.lvmlockd }}
    - enable: true
    - require:
      - file: gfs2clvm-worker-lvm-lvmlocal-file-managed
      - gfs2clvm: gfs2clvm-worker-cluster-gfs2clvm-quorate

# starts the lockspaces of shared VGs at boot (vgchange --lock-start --lock-opt auto)
gfs2clvm-worker-lvm-lvmlocks-service-enabled:
  service.enabled:
    - name: {{ svc.lvmlocks }}
    - require:
      - service: gfs2clvm-worker-lvm-lvmlockd-service-running
