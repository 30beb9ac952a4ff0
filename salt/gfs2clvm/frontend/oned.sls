# -*- coding: utf-8 -*-
# vim: ft=sls
# oned.conf: TM_MAD_CONF / DS_MAD_CONF for gfs2clvm (one managed block) and the
# driver added to the TM_MAD and DATASTORE_MAD argument lists.  oned must be
# restarted to read them (not done here: it would stop running actions).
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g with context %}
{%- set fe = g.frontend %}

gfs2clvm-frontend-oned-madconf-file-blockreplace:
  file.blockreplace:
    - name: {{ fe.oned_conf }}
    - marker_start: '# BEGIN gfs2clvm -- managed by Salt, do not edit'
    - marker_end: '# END gfs2clvm'
    - source: salt://{{ tplroot }}/files/frontend/oned-madconf.jinja
    - template: jinja
    - context:
        tm: {{ fe.tm_mad_conf | json }}
        ds: {{ fe.ds_mad_conf | json }}
    - append_if_not_found: true
    - show_changes: true

# TM_MAD = [ ... ARGUMENTS = "-t 15 -d dummy,lvm,..." ]  ->  -d gfs2clvm,dummy,lvm,...
gfs2clvm-frontend-oned-tm-mad-file-replace:
  file.replace:
    - name: {{ fe.oned_conf }}
    - pattern: '(^TM_MAD\s*=\s*\[[^\]]*?ARGUMENTS\s*=\s*"[^"]*?-d\s+)(?![^"\s]*\bgfs2clvm\b)'
    - repl: '\1gfs2clvm,'
    - count: 1

# DATASTORE_MAD = [ ... ARGUMENTS = "-t 15 -d dummy,fs,... -s shared,ssh,..." ]
gfs2clvm-frontend-oned-ds-mad-file-replace:
  file.replace:
    - name: {{ fe.oned_conf }}
    - pattern: '(^DATASTORE_MAD\s*=\s*\[[^\]]*?ARGUMENTS\s*=\s*"[^"]*?-d\s+)(?![^"\s]*\bgfs2clvm\b)'
    - repl: '\1gfs2clvm,'
    - count: 1

# ... and in its -s list (system datastore drivers it monitors)
gfs2clvm-frontend-oned-ds-mad-system-file-replace:
  file.replace:
    - name: {{ fe.oned_conf }}
    - pattern: '(^DATASTORE_MAD\s*=\s*\[[^\]]*?ARGUMENTS\s*=\s*"[^"]*?-s\s+)(?![^"\s]*\bgfs2clvm\b)'
    - repl: '\1gfs2clvm,'
    - count: 1
