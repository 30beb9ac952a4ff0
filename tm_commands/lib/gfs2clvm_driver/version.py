"""The version of gfs2clvm: of this driver library, ``gfs2clvm-host`` and the package.

setup.py reads it from here.  The worker modules ship alone (salt-ssh, the formula)
and cannot import it: ``_modules/gfs2clvm.py`` and ``_modules/gfs2clvm_tm.py`` carry the
same number as ``__version__``, and tests/unit/test_version.py fails when any differs,
so a release bumps all three together.  ``gfs2clvm.check driver=<VERSION>`` (run by
``gfs2clvm-host add/check``) compares the worker's with it.
"""

VERSION = "0.1.0"
