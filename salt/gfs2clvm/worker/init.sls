# -*- coding: utf-8 -*-
# vim: ft=sls
# A KVM worker of the gfs2clvm driver: packages, oneadmin, corosync + dlm,
# lvmlockd, the shared VG + lockspace, GFS2 at the mountpoint, udev + sudo for
# oneadmin, libvirt as oneadmin, the driver's execution modules.
include:
  - .package
  - .user
  - .cluster
  - .lvm
  - .access
  - .storage
  - .libvirt
  - .modules
