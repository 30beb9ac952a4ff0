# -*- coding: utf-8 -*-
# vim: ft=sls
# gfs2clvm: `gfs2clvm.worker` on the cluster nodes (minion id listed in
# gfs2clvm:cluster:nodes), `gfs2clvm.frontend` where gfs2clvm:frontend:enabled.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g with context %}

{%- set incl = [] %}
{%- if g.is_node %}{% do incl.append(tplroot ~ '.worker') %}{% endif %}
{%- if g.frontend.enabled %}{% do incl.append(tplroot ~ '.frontend') %}{% endif %}

include: {{ incl | json }}
