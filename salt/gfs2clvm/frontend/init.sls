# -*- coding: utf-8 -*-
# vim: ft=sls
# The OpenNebula front-end side of gfs2clvm: driver executables and library in
# remotes/, /etc/one/gfs2clvm.conf, oned.conf entries, the salt-ssh roster and
# Saltfile for the workers, oneadmin's known_hosts for them, and the datastore
# templates for `onedatastore create`.
include:
  - .package
  - .driver
  - .oned
  - .saltssh
  - .datastores
  - .service
