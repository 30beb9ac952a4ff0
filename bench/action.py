#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Run one TM executable as oned would, optionally with gfs2clvm_driver.transport wired in.

    action.py --subprocess|--transport <tm executable> [args...]

``--transport`` replaces the ``subprocess.run`` that ``saltssh.salt_ssh_many`` uses
with ``transport.run`` (the wiring the driver gets), then runs the executable
unchanged; ``--subprocess`` runs it as it is.  Used by bench/run.py.
"""

import runpy
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tm_commands" / "lib"))


class _TransportSubprocess:
    """The ``subprocess`` name seen by saltssh.py, with ``run`` going through the transport."""

    def __getattr__(self, name):
        return getattr(subprocess, name)

    @staticmethod
    def run(argv, timeout=None, **_kwargs):
        from gfs2clvm_driver import transport

        code, out, err = transport.run(argv, timeout=timeout)
        return subprocess.CompletedProcess(argv, code, out, err)


def main():
    mode, exe, *args = sys.argv[1:]
    if mode == "--transport":
        from gfs2clvm_driver import saltssh

        saltssh.subprocess = _TransportSubprocess()
    elif mode != "--subprocess":
        sys.exit("usage: action.py --subprocess|--transport EXECUTABLE [args...]")
    sys.argv = [exe, *args]
    runpy.run_path(exe, run_name="__main__")


if __name__ == "__main__":
    main()
