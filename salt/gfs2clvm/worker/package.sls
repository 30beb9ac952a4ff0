# -*- coding: utf-8 -*-
# vim: ft=sls
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as g with context %}

gfs2clvm-worker-package-pkg-installed:
  pkg.installed:
    - pkgs: {{ g.pkgs.worker | json }}
