# SPDX-License-Identifier: Apache-2.0
"""gfs2clvm.check fails the job when a check fails (issue 13 item 4): the loader's
``__context__["retcode"]``, so ``salt-call --retcode-passthrough`` and salt-ssh exit
non-zero while the report is still returned (tests/unit/test_gfs2clvm_saltcall.py and
tests/integration/test_module_saltssh.py run it through the real CLIs)."""

from unittest.mock import patch

import pytest

from test_gfs2clvm_module import conf, configure_loader_modules, fake, gfs2clvm, mnt  # noqa: F401

PROBES = ["_check_config", "_check_lvm", "_check_dm", "_check_sudo", "_check_lvmlockd", "_check_vg",
          "_check_thin_pool", "_check_mount", "_check_tools", "_check_udev", "_check_libvirt"]


@pytest.fixture
def all_fine():
    with patch.multiple(gfs2clvm, **{name: lambda *a: (True, "fine") for name in PROBES}):
        yield


def test_healthy_check_leaves_the_retcode_alone(fake, all_fine):
    ret = gfs2clvm.check()
    assert ret["ok"] is True and set(ret["checks"]) >= {"vg", "mount"}
    assert "retcode" not in gfs2clvm.__context__


def test_one_failed_check_sets_retcode_1(fake, all_fine):
    with patch.object(gfs2clvm, "_check_mount", lambda conf: (False, "/var/lib/one is not a mount point")):
        ret = gfs2clvm.check()
    assert ret["ok"] is False
    assert ret["checks"]["mount"] == {"ok": False, "detail": "/var/lib/one is not a mount point"}
    assert gfs2clvm.__context__["retcode"] == 1


def test_a_broken_configuration_sets_retcode_1(fake, conf):
    conf["mount_check"] = "sometimes"
    assert gfs2clvm.check()["ok"] is False
    assert gfs2clvm.__context__["retcode"] == 1
