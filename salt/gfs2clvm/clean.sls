# -*- coding: utf-8 -*-
# vim: ft=sls
# Removes what the formula configured, in reverse order.  It never touches
# data: the shared VG, its LVs and the GFS2 filesystem stay (unmounted), and
# packages and oneadmin stay installed.
include:
  - .frontend.clean
  - .worker.clean
