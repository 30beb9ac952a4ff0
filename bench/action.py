#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Run one TM executable as oned would, with the driver's salt-ssh call in-process or as a subprocess.

    action.py --subprocess|--transport|--nowarm <tm executable> [args...]

The driver runs its salt-ssh call through ``gfs2clvm_driver.transport`` (in-process
when the configured salt-ssh belongs to this Python).  ``--subprocess`` sets
``GFS2CLVM_TRANSPORT=subprocess`` (the salt-ssh subprocess, as before the wiring);
``--transport`` sets ``GFS2CLVM_TRANSPORT=inprocess`` (fails loudly if the call could
not run in-process; the call goes to the warm process when one runs, the driver's
default); ``--nowarm`` also sets ``GFS2CLVM_WARM=0`` (in the action's own process,
Salt imported there).  Then the executable runs unchanged, in this Python (the bench's
venv, whose salt-ssh the configuration names).  Used by bench/run.py.
"""

import os
import runpy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tm_commands" / "lib"))


def main():
    mode, exe, *args = sys.argv[1:]
    if mode not in ("--transport", "--subprocess", "--nowarm"):
        sys.exit("usage: action.py --subprocess|--transport|--nowarm EXECUTABLE [args...]")
    os.environ["GFS2CLVM_TRANSPORT"] = "subprocess" if mode == "--subprocess" else "inprocess"
    if mode == "--nowarm":
        os.environ["GFS2CLVM_WARM"] = "0"
    sys.argv = [exe, *args]
    runpy.run_path(exe, run_name="__main__")


if __name__ == "__main__":
    main()
