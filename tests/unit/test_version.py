# SPDX-License-Identifier: Apache-2.0
"""One version for the front-end driver, gfs2clvm-host, the package and the worker
modules (issue 13.9): the worker modules ship alone and carry a copy of the number,
which must be the driver's; ``gfs2clvm.check driver=`` compares them on a worker."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from test_gfs2clvm_module import conf, configure_loader_modules, fake, gfs2clvm, mnt  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tm_commands" / "lib"))
from gfs2clvm_driver.version import VERSION  # noqa: E402


def module_version(name):
    spec = importlib.util.spec_from_file_location(f"{name}_version_ut", REPO / "_modules" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.__version__


@pytest.mark.parametrize("name", ["gfs2clvm", "gfs2clvm_tm"])
def test_worker_modules_carry_the_driver_version(name):
    assert module_version(name) == VERSION, (
        f"_modules/{name}.py __version__ differs from gfs2clvm_driver/version.py: bump them together")


def test_the_package_version_is_the_driver_version():
    proc = subprocess.run([sys.executable, "setup.py", "--version"], cwd=REPO, capture_output=True, text=True,
                          check=True)
    assert proc.stdout.strip().splitlines()[-1] == VERSION
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", VERSION)


def test_check_with_the_same_driver_version(fake):
    ret = gfs2clvm.check(driver=VERSION)
    assert ret["checks"]["version"] == {"ok": True, "detail": f"gfs2clvm modules {VERSION} = front-end driver {VERSION}"}


def test_check_with_another_driver_version_fails_with_both_numbers(fake):
    ret = gfs2clvm.check(driver="0.2.0")
    assert ret["ok"] is False and gfs2clvm.__context__["retcode"] == 1
    assert ret["checks"]["version"] == {"ok": False, "detail": (
        f"this worker runs gfs2clvm modules {VERSION}, the front-end driver 0.2.0: apply gfs2clvm.worker here "
        "(highstate), or update the front-end, so both are the same")}


@pytest.mark.parametrize("bad", [2, "0.1.0;id", ""])
def test_check_with_a_bad_driver_version(fake, bad):
    ret = gfs2clvm.check(driver=bad)
    assert ret["checks"]["version"] == {"ok": False, "detail": f"invalid front-end driver version {bad!r}"}


def test_check_without_a_driver_version_has_no_version_item(fake):
    assert "version" not in gfs2clvm.check()["checks"]
