# SPDX-License-Identifier: Apache-2.0
"""``salt-call --local gfs2clvm.check`` after ``pip install .``.

The module must be found through the ``salt.loader`` entry points of the installed
``gfs2clvm_ext`` package (no module_dirs, empty file_roots) and report what this
host lacks as data, never as a traceback.
"""

import filecmp
import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SALT_CALL = Path(sys.executable).parent / "salt-call"


def _salt_call(tmp_path, settings, *args):
    cfg = tmp_path / "etc"
    cfg.mkdir(exist_ok=True)
    (tmp_path / "roots").mkdir(exist_ok=True)
    minion = {
        "root_dir": str(tmp_path / "root"),
        "cachedir": str(tmp_path / "cache"),
        "pki_dir": str(tmp_path / "pki"),
        "sock_dir": str(tmp_path / "run"),
        "log_file": str(tmp_path / "minion.log"),
        "file_client": "local",
        "file_roots": {"base": [str(tmp_path / "roots")]},
        "pillar_roots": {"base": [str(tmp_path / "roots")]},
        "gfs2clvm": settings,
    }
    (cfg / "minion").write_text(yaml.safe_dump(minion))
    argv = [str(SALT_CALL), "--local", "-c", str(cfg), "--out", "json", "--log-level", "quiet", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def test_installed_module_is_this_repositorys(tmp_path):
    # ask a fresh interpreter outside the work tree (here the repo itself would shadow site-packages)
    where = subprocess.run(
        [sys.executable, "-c", "import gfs2clvm_ext; print(gfs2clvm_ext.get_module_dirs()[0])"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )
    installed = Path(where.stdout.strip()) / "gfs2clvm.py"
    assert not str(installed).startswith(str(REPO) + "/_modules"), installed
    assert installed.exists(), "gfs2clvm_ext is installed without _modules/gfs2clvm.py"
    assert filecmp.cmp(installed, REPO / "_modules" / "gfs2clvm.py", shallow=False), (
        f"{installed} differs from the working tree: run `.venv/bin/pip install .`"
    )


def test_check_reports_what_this_host_lacks(tmp_path):
    (tmp_path / "one").mkdir()
    proc = _salt_call(tmp_path, {"vg": "vg_gfs2clvm_absent", "mountpoint": str(tmp_path / "one")}, "gfs2clvm.check")
    assert proc.returncode == 1, (proc.returncode, proc.stderr)  # ok: false fails the job (monitoring)
    assert "Traceback" not in proc.stdout + proc.stderr
    ret = json.loads(proc.stdout)["local"]
    assert ret["ok"] is False
    checks = ret["checks"]
    assert set(checks) == {"config", "lvm", "device_mapper", "sudo", "lvmlockd", "vg", "thin_pool", "mount", "tools",
                           "udev", "libvirt"}
    for name, item in checks.items():
        assert set(item) == {"ok", "detail"} and isinstance(item["ok"], bool) and item["detail"], name
    assert checks["config"]["ok"] is True
    assert checks["vg"]["ok"] is False and "vg_gfs2clvm_absent" in checks["vg"]["detail"]
    assert checks["udev"] == {"ok": True, "detail": "no active driver LV to check"}  # no /dev/vg_gfs2clvm_absent
    assert checks["mount"] == {
        "ok": False,
        "detail": f"{tmp_path / 'one'} is not a mount point, not a mounted gfs2 file system: refusing to write there",
    }


def test_check_with_a_broken_configuration_is_still_data(tmp_path):
    proc = _salt_call(tmp_path, {"mount_check": "sometimes"}, "gfs2clvm.check")
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    ret = json.loads(proc.stdout)["local"]
    assert ret["ok"] is False and list(ret["checks"]) == ["config"]
    assert ret["checks"]["config"] == {
        "ok": False,
        "detail": "gfs2clvm setting mount_check: mount_check must be one of gfs2, mount, none, not 'sometimes'",
    }


def test_bad_input_is_a_clean_error(tmp_path):
    proc = _salt_call(tmp_path, {"mountpoint": str(tmp_path)}, "gfs2clvm.lv_create", "lv;rm", "10")
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "invalid logical volume name 'lv;rm'" in proc.stdout + proc.stderr


def test_failed_check_exits_non_zero_with_retcode_passthrough(tmp_path):
    """Monitoring runs ``salt-call --retcode-passthrough gfs2clvm.check``: ok false must
    not exit 0 (it did, with the report on stdout); the report still comes out."""
    (tmp_path / "one").mkdir()
    proc = _salt_call(tmp_path, {"vg": "vg_gfs2clvm_absent", "mountpoint": str(tmp_path / "one")},
                      "--retcode-passthrough", "gfs2clvm.check")
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert json.loads(proc.stdout)["local"]["ok"] is False
