# -*- coding: utf-8 -*-
# vim: ft=sls
# Example pillar top: every cluster node and the front-end get the same
# gfs2clvm pillar (the formula picks the role from the minion id).
base:
  '*':
    - gfs2clvm
