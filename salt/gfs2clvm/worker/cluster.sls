# -*- coding: utf-8 -*-
# vim: ft=sls
# corosync (knet, encrypted with the pillar's authkey) + dlm_controld.  A changed
# corosync.conf or authkey is reloaded (corosync-cfgtool -R: corosync >= 3.1 changes
# crypto at run time) while GFS2 is mounted, restarted otherwise.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g, require with context %}
{{- require('cluster:name') }}
{{- require('cluster:nodes') }}
{%- set svc = g.services %}
{%- set c = g.cluster %}
{%- set crypto = c.crypto_cipher != 'none' or c.crypto_hash != 'none' %}
{%- if c.crypto_cipher != 'none' and c.crypto_hash == 'none' %}
{{-   raise('gfs2clvm:cluster:crypto_hash: must not be none when crypto_cipher is ' ~ c.crypto_cipher ~ ' (corosync_conf(5))') }}
{%- endif %}
{%- if crypto and not (c.authkey or c.authkey_source) %}
{{-   raise('gfs2clvm: missing required pillar key gfs2clvm:cluster:authkey (crypto is on; make one with: corosync-keygen -k /tmp/authkey && base64 -w0 /tmp/authkey), or gfs2clvm:cluster:authkey_source') }}
{%- endif %}
{%- if c.authkey and c.authkey_source %}
{{-   raise('gfs2clvm:cluster:authkey and gfs2clvm:cluster:authkey_source: set only one') }}
{%- endif %}
{%- set key_len = (c.authkey or '') | replace('\n', '') | replace(' ', '') | length %}
{%- if c.authkey and (key_len < 172 or key_len > 5464) %}
{{-   raise('gfs2clvm:cluster:authkey: not a corosync key (base64 of 128 to 4096 bytes; corosync-keygen makes 256)') }}
{%- endif %}
{#- two_node: 1 lets one of two nodes keep quorum alone; with three or more nodes it
    would let a minority run: refuse it there (votequorum(5)) #}
{%- if g.two_node and c.nodes | length != 2 %}
{{-   raise('gfs2clvm:cluster:two_node: only for exactly two cluster:nodes (there are ' ~ (c.nodes | length) ~ ')') }}
{%- endif %}

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

{%- if c.authkey or c.authkey_source %}

# the same key on every node; root's only (corosync reads it as root)
gfs2clvm-worker-cluster-authkey-file-managed:
  file.managed:
    - name: /etc/corosync/authkey
    - user: root
    - group: root
    - mode: '0400'
{%-   if c.authkey_source %}
    - source: {{ c.authkey_source | json }}
{%-   else %}
    - replace: false             # created empty and 0400 first; its bytes: the next state
{%-   endif %}
    - require:
      - pkg: gfs2clvm-worker-package-pkg-installed
{%-   if not c.authkey_source %}

# from the pillar by name: the key never appears in the rendered states or their output
gfs2clvm-worker-cluster-authkey-file-decode:
  file.decode:
    - name: /etc/corosync/authkey
    - contents_pillar: gfs2clvm:cluster:authkey
    - encoding_type: base64
    - checksum: sha256
    - require:
      - file: gfs2clvm-worker-cluster-authkey-file-managed
{%-   endif %}
{%- endif %}

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
{%- if c.authkey_source %}
      - file: gfs2clvm-worker-cluster-authkey-file-managed
{%- elif c.authkey %}
      - file: gfs2clvm-worker-cluster-authkey-file-decode
{%- endif %}

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
