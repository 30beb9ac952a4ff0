# -*- coding: utf-8 -*-
# vim: ft=sls
# corosync (knet) + dlm_controld.  A changed corosync.conf is reloaded
# (corosync-cfgtool -R) while GFS2 is mounted, restarted otherwise.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g, require with context %}
{{- require('cluster:name') }}
{{- require('cluster:nodes') }}
{%- set svc = g.services %}

include:
  - {{ tplroot }}.worker.package

gfs2clvm-worker-cluster-corosync-file-managed:
  file.managed:
    - name: /etc/corosync/corosync.conf
    - source: salt://{{ tplroot }}/files/worker/corosync.conf.jinja
    - template: jinja
    - mode: '0644'
    - context:
        cluster: {{ g.cluster | json }}
        two_node: {{ g.two_node | json }}
    - require:
      - pkg: gfs2clvm-worker-package-pkg-installed

gfs2clvm-worker-cluster-dlm-file-managed:
  file.managed:
    - name: /etc/dlm/dlm.conf
    - source: salt://{{ tplroot }}/files/worker/dlm.conf.jinja
    - template: jinja
    - makedirs: true
    - mode: '0644'
    - context:
        dlm: {{ g.dlm | json }}
    - require:
      - pkg: gfs2clvm-worker-package-pkg-installed

# corosync was perhaps started by the package with its default one-node config
gfs2clvm-worker-cluster-corosync-cmd-run:
  cmd.run:
    - name: >-
        if ! systemctl -q is-active {{ svc.corosync }}; then exit 0; fi;
        if findmnt -n -t gfs2 -o TARGET | grep -q .; then corosync-cfgtool -R;
        else systemctl restart {{ svc.corosync }}; fi
    - onchanges:
      - file: gfs2clvm-worker-cluster-corosync-file-managed

gfs2clvm-worker-cluster-corosync-service-running:
  service.running:
    - name: {{ svc.corosync }}
    - enable: true
    - require:
      - cmd: gfs2clvm-worker-cluster-corosync-cmd-run

gfs2clvm-worker-cluster-dlm-service-running:
  service.running:
    - name: {{ svc.dlm }}
    - enable: true
    - require:
      - service: gfs2clvm-worker-cluster-corosync-service-running
      - file: gfs2clvm-worker-cluster-dlm-file-managed

# the cluster must be quorate before lvmlockd/dlm lockspaces can start
gfs2clvm-worker-cluster-gfs2clvm-quorate:
  gfs2clvm.quorate:
    - name: {{ g.cluster.name }}
    - timeout: {{ g.lvm.wait_timeout }}
    - require:
      - service: gfs2clvm-worker-cluster-dlm-service-running
