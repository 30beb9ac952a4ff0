"""gfs2clvm front-end driver library for OpenNebula.

One OpenNebula action = one validated argv = exactly one salt-ssh call of
``gfs2clvm_tm.<action>`` on a worker (``--out json``), with oned's log format.
The executables under ``tm/``, ``datastore/`` and ``one-3.2/`` are thin wrappers.
"""

from .core import DriverError, error, info, run_main
from .location import Location
from .saltssh import salt_ssh, salt_ssh_many

__all__ = ["DriverError", "Location", "error", "info", "run_main", "salt_ssh", "salt_ssh_many"]
