# -*- coding: utf-8 -*-
# vim: ft=sls
# Example top file: workers match the roster ids of the cluster nodes.
base:
  'node*':
    - gfs2clvm.worker
  'frontend':
    - gfs2clvm.frontend
