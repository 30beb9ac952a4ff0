# SPDX-License-Identifier: Apache-2.0
"""Session-wide: the driver's warm processes (gfs2clvm_driver/warm.py) of this test run.

Every executable a test runs may start one (in the background, idle exit after 300 s).
The session gives them a private directory of its own and stops them at the end, so a
test run leaves no process behind and never talks to a warm process of another run
(or of a real front-end of the same user).  A test that builds its own environment
(the lab's operator walk-through, as oneadmin) gets the default directory and stops
its server itself."""

import os
import shutil
import tempfile

_ENV = "GFS2CLVM_WARM_DIR"
_OURS = []


def pytest_configure(config):  # pylint: disable=unused-argument
    if os.environ.get(_ENV) or hasattr(config, "workerinput"):
        return
    path = tempfile.mkdtemp(prefix="gfs2clvm-wt-", dir="/tmp")  # short: Unix socket paths have 107 bytes
    os.chmod(path, 0o700)
    os.environ[_ENV] = path
    _OURS.append(path)


def pytest_unconfigure(config):  # pylint: disable=unused-argument
    for path in _OURS:
        try:
            from gfs2clvm_driver import warm  # pylint: disable=import-outside-toplevel

            warm.stop(path)
        finally:
            shutil.rmtree(path, ignore_errors=True)
    _OURS.clear()
