"""gfs2clvm.check finds lvmlockd as an unprivileged user (found in the lab: /run/lvm is 0700)."""

import importlib.util
import shutil
import subprocess
import time
from pathlib import Path
from unittest import mock

import pytest

MODULE = Path(__file__).resolve().parents[2] / "_modules" / "gfs2clvm.py"


@pytest.fixture
def gfs2clvm():
    spec = importlib.util.spec_from_file_location("gfs2clvm_under_test", MODULE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_lvmlockd_found_by_its_process_when_the_socket_is_hidden(gfs2clvm, tmp_path):
    fake = tmp_path / "lvmlockd"
    shutil.copy("/bin/sleep", fake)
    proc = subprocess.Popen([str(fake), "30"])
    try:
        deadline = time.monotonic() + 5
        while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "lvmlockd":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with mock.patch.object(gfs2clvm.os.path, "exists", return_value=False):
            ok, detail = gfs2clvm._check_lvmlockd()
        assert ok, detail
        assert f"pid {proc.pid}" in detail
    finally:
        proc.kill()
        proc.wait()


def test_lvmlockd_missing_is_reported(gfs2clvm):
    with mock.patch.object(gfs2clvm.os.path, "exists", return_value=False), mock.patch.object(
        gfs2clvm.glob, "glob", return_value=[]
    ):
        ok, detail = gfs2clvm._check_lvmlockd()
    assert not ok
    assert detail.startswith("lvmlockd is not running")
