#!/usr/bin/env python3
# gfs2clvm for OpenNebula 3.2: tm_clone.sh
# ARGUMENTS: SRC host:<VM_DIR>/<vmid>/images/disk.i [SIZE]
# RETURNS: nothing on stdout; exit 0; failure: exit 1 + one "ERROR MESSAGE --8<------" block (gfs2clvm_driver.legacy.clone)
import sys
from pathlib import Path
for _up in (1, 2):  # <remotes>/tm/gfs2clvm/<action> -> <remotes>/lib; else the installed package
    _lib = Path(__file__).resolve().parents[_up] / "lib"
    if (_lib / "gfs2clvm_driver").is_dir():
        sys.path.insert(0, str(_lib))
        break
from gfs2clvm_driver import run_main, legacy  # noqa: E402


def main(argv):
    return legacy.clone(argv)


if __name__ == "__main__":
    run_main(main, style="3.2")
