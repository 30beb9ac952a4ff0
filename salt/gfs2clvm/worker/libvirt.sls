# -*- coding: utf-8 -*-
# vim: ft=sls
# qemu runs as oneadmin:oneadmin and libvirt leaves device ownership alone
# (the udev rule owns it); oneadmin may manage libvirt (polkit).
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g with context %}

{%- if g.libvirt.manage %}

gfs2clvm-worker-libvirt-pkg-installed:
  pkg.installed:
    - pkgs: {{ g.pkgs.libvirt | json }}

gfs2clvm-worker-libvirt-qemu-file-keyvalue:
  file.keyvalue:
    - name: {{ g.libvirt.qemu_conf }}
    - separator: ' = '
    - uncomment: '#'
    - append_if_not_found: true
    # a dry run on a fresh worker (the package not installed yet, so no qemu.conf) then
    # reports the three lines it would write instead of failing (issue 13.8); a real run
    # edits the package's file (require below)
    - create_if_missing: true
    - key_values:
        dynamic_ownership: '0'
        user: '"{{ g.owner }}"'
        group: '"{{ g.group }}"'
    - require:
      - pkg: gfs2clvm-worker-libvirt-pkg-installed

gfs2clvm-worker-libvirt-polkit-file-managed:
  file.managed:
    - name: {{ g.libvirt.polkit_rule }}
    - source: salt://{{ tplroot }}/files/worker/polkit-libvirt.rules.jinja
    - template: jinja
    - mode: '0644'
    - makedirs: true
    - context:
        owner: {{ g.owner | json }}
    - require:
      - pkg: gfs2clvm-worker-libvirt-pkg-installed

gfs2clvm-worker-libvirt-service-running:
  service.running:
    - name: {{ g.services.libvirt }}
    - enable: true
    - watch:
      - file: gfs2clvm-worker-libvirt-qemu-file-keyvalue
{%- endif %}

{%- if g.selinux.manage %}

{%- for boolean, value in g.selinux.booleans | dictsort %}

gfs2clvm-worker-libvirt-selinux-{{ boolean }}-selinux-boolean:
  selinux.boolean:
    - name: {{ boolean }}
    - value: {{ value }}
    - persist: true
{%- endfor %}

{%- for path, setype in g.selinux.fcontexts | dictsort %}

gfs2clvm-worker-libvirt-fcontext-{{ loop.index }}-selinux-fcontext_policy_present:
  selinux.fcontext_policy_present:
    - name: {{ path | json }}
    - sel_type: {{ setype }}
{%- endfor %}
{%- endif %}
