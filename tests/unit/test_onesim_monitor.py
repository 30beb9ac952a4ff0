# SPDX-License-Identifier: Apache-2.0
"""The simulator's datastore flows as oned runs them: STAT's request id, CP's FORMAT,
MKFS's whole payload, datastore and system-datastore MONITOR (with a small
onemonitord receiving the VM disk sizes), against fake and real driver executables."""

import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lab"))
from onesim import DriverRunner, Oned, SimError  # noqa: E402
from onesim.monitord import Monitord  # noqa: E402

FAKE = r'''#!{python}
import os, sys
sys.stdin.buffer.read()
sys.stdout.write(os.environ.get("FAKE_OUT_" + {action!r}.upper(), ""))
'''


@pytest.fixture
def oned(tmp_path):
    root = tmp_path / "tm_commands"
    for kind, action in (("datastore", "stat"), ("datastore", "cp"), ("datastore", "mkfs")):
        exe = root / kind / "gfs2clvm" / action
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text(FAKE.format(python=sys.executable, action=action))
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    driver = DriverRunner(root, env=dict(os.environ, FAKE_OUT_STAT="8\n", FAKE_OUT_CP="vg/lv-oneimg-x raw\n",
                                         FAKE_OUT_MKFS="vg/lv-oneimg-y\n"))
    return Oned(driver, hosts=["node1", "node2"], fe_host="fe", fe_dir=tmp_path / "fe")


def test_cp_without_format_fails_as_oned_fails_it(oned):
    oned.driver.env["FAKE_OUT_CP"] = "vg/lv-oneimg-x\n"
    with pytest.raises(SimError, match="CP operation succeeded but image FORMAT was not returned"):
        oned.image_create("a", path="/srv/a.img")
    assert oned.images[0].state == "ERROR"


def test_mkfs_payload_is_the_whole_source(oned):
    oned.driver.env["FAKE_OUT_MKFS"] = "vg/lv-oneimg-y 1024\n"
    assert oned.image_create("d", size_mb=8, type="DATABLOCK").source == "vg/lv-oneimg-y 1024"
    oned.driver.env["FAKE_OUT_MKFS"] = "vg/lv-oneimg-y\nextra\n"
    with pytest.raises(SimError, match="more than one line"):
        oned.image_create("e", size_mb=8, type="DATABLOCK")


def test_stat_payload_is_parsed_like_oned(oned):
    oned.driver.env["FAKE_OUT_STAT"] = "\n"
    with pytest.raises(SimError, match="^Cannot parse image SIZE: $"):
        oned.image_create("a", path="/srv/a.img")
    oned.driver.env["FAKE_OUT_STAT"] = "12\n"
    assert oned.image_create("b", path="/srv/b.img").size_mb == 12


# --------------------------------------------------------------- MONITOR with the real driver
@pytest.fixture
def real(tmp_path):
    sys.path.insert(0, str(REPO / "tests" / "unit"))
    from test_driver_support import Fakes

    fakes = Fakes(tmp_path)
    driver = DriverRunner(REPO / "tm_commands", env=fakes.env)
    oned = Oned(driver, hosts=["node1", "node2"], fe_host="fe", fe_dir=tmp_path / "fe",
                ds_template={"BRIDGE_LIST": "node1 node2"})
    return fakes, oned


def test_system_datastore_monitor_fills_usage_and_disk_sizes(real):
    fakes, oned = real
    monitord = Monitord(fakes.tmp / "one").attach(oned)
    fakes.reply(value={"used_mb": 10, "free_mb": 90, "total_mb": 100,
                       "vms": {"3": {"0": 2048, "1": 64}, "12": {"0": 8}}})
    try:
        assert oned.monitor_datastore(0) == {"TOTAL_MB": 100, "FREE_MB": 90, "USED_MB": 10}
    finally:
        monitord.close()
    assert oned.disk_sizes == {3: {0: 2048, 1: 64}, 12: {0: 8}}
    call = oned.driver.calls[-1]
    assert call.short == "tm/monitor" and call.argv[1:] == ["0"]
    data = base64.b64decode(call.stdin).decode()
    assert data.endswith("<DATASTORE_LOCATION>/var/lib/one//datastores</DATASTORE_LOCATION>"
                         "<MONITOR_VM_DISKS>1</MONITOR_VM_DISKS></DS_DRIVER_ACTION_DATA>")
    assert monitord.messages[0][:4] == ("MONITOR_VM", "SUCCESS", -1, 0)


def test_image_datastore_monitor(real):
    fakes, oned = real
    fakes.reply(value={"used_mb": 1, "free_mb": 2, "total_mb": 3})
    assert oned.monitor_datastore(1) == {"TOTAL_MB": 3, "FREE_MB": 2, "USED_MB": 1}
    assert oned.driver.calls[-1].short == "ds/monitor"
    assert json.loads(json.dumps(oned.datastores[1].monitor)) == {"TOTAL_MB": 3, "FREE_MB": 2, "USED_MB": 1}
