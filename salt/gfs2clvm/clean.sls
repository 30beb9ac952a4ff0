# -*- coding: utf-8 -*-
# vim: ft=sls
# Removes what the formula configured, in reverse order, for this minion's roles
# (as init.sls picks them).  It never touches data: the shared VG, its LVs and
# the GFS2 filesystem stay (unmounted); packages and oneadmin stay installed.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g with context %}
{%- set incl = [] %}
{%- if g.frontend.enabled %}{% do incl.append(tplroot ~ '.frontend.clean') %}{% endif %}
{%- if g.is_node %}{% do incl.append(tplroot ~ '.worker.clean') %}{% endif %}

include: {{ incl | json }}
