# -*- coding: utf-8 -*-
# vim: ft=sls
# The datastore templates for `onedatastore create` (system and image datastore),
# rendered from pillar into <frontend:salt_dir>/datastores (clean.sls removes salt_dir).  Creating the datastores is
# left to the operator (docs/operations.md §2.5): it needs a running oned.
#
# DISK_TYPE = BLOCK on the system datastore is what makes volatile and swap disks
# block devices for libvirt: OpenNebula 7.4 gives a volatile disk the system
# datastore's DISK_TYPE (src/vm/VirtualMachineDisk.cc:791 volatile_info ->
# src/datastore/Datastore.cc:198-200), which is FILE when the template has none
# (Datastore.cc:574-577 set_ds_disk_type); TM_MAD_CONF's DISK_TYPE reaches image
# datastores only (Datastore.cc:515-520, the non-SYSTEM_DS branch).  With FILE,
# qemu refuses the LV symlink ('file' driver requires ... to be a regular file).
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g with context %}
{%- set fe = g.frontend %}
{%- set dir = fe.salt_dir ~ '/datastores' %}
{%- set bridge = g.cluster.nodes | map(attribute='name') | join(' ') %}
{%- set fixed = {
      'system': {'TYPE': 'SYSTEM_DS', 'TM_MAD': 'gfs2clvm', 'DISK_TYPE': 'BLOCK'},
      'images': {'DS_MAD': 'gfs2clvm', 'TM_MAD': 'gfs2clvm', 'DISK_TYPE': 'BLOCK'},
    } %}

include:
  - {{ tplroot }}.frontend.saltssh

{%- for kind in ['system', 'images'] %}
{%-   set attrs = {'BRIDGE_LIST': bridge} if bridge else {} %}
{%-   do attrs.update(fe.ds_templates[kind]) %}
{%-   do attrs.update(fixed[kind]) %}

gfs2clvm-frontend-datastores-{{ kind }}-file-managed:
  file.managed:
    - name: {{ dir }}/{{ kind }}.ds
    - source: salt://{{ tplroot }}/files/frontend/datastore.jinja
    - template: jinja
    - mode: '0644'
    - makedirs: true
    - context:
        kind: {{ kind }}
        path: {{ dir }}/{{ kind }}.ds
        attrs: {{ attrs | json }}
    - require:
      - file: gfs2clvm-frontend-saltssh-dir-file-directory
{%- endfor %}
