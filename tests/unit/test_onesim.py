# SPDX-License-Identifier: Apache-2.0
"""The oned simulator's driver call sequences, against a fake driver directory.

Each fake executable appends its argv (and decoded stdin) to a JSON-lines log
and prints what a real driver prints, so the sequences (argv lists) oned would
issue for every user action are checked without a lab.
"""
import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lab"))

from onesim import DriverError, DriverRunner, Oned, SimError, State  # noqa: E402

FE = "fe.example"
SYS = "/var/lib/one//datastores/0"
TM_ACTIONS = ["clone", "ln", "mkimage", "mkswap", "context", "mv", "mvds", "cpds", "delete",
              "premigrate", "postmigrate", "failmigrate", "monitor"]
DS_ACTIONS = ["cp", "mkfs", "rm", "stat", "clone", "monitor"]

FAKE = r'''#!{python}
import base64, json, os, sys
kind, action = {kind!r}, {action!r}
data = sys.stdin.buffer.read()
try:
    decoded = base64.b64decode(data, validate=True).decode() if data else ""
except Exception:
    decoded = data.decode(errors="replace")
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"kind": kind, "action": action, "argv": sys.argv[1:], "stdin": decoded,
                          "conf": os.environ.get("GFS2CLVM_CONF")}}) + "\n")
fail = os.environ.get("FAKE_FAIL", "")
if fail == kind + "/" + action:
    sys.stderr.write("ERROR: fake failure of " + action + "\n")
    if os.environ.get("FAKE_REASON"):
        sys.stderr.write("INFO: 3 calls queued\n" + os.environ["FAKE_REASON"] + "\n")
    sys.exit(1)
counter = os.environ["FAKE_LOG"] + ".n"
n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(n))
lv = "lv-oneimg-%032x" % n
if kind == "datastore" and action == "cp":
    print("vg_cloudstorage/" + lv + " raw")
elif kind == "datastore" and action == "mkfs":
    print("vg_cloudstorage/" + lv)
elif kind == "datastore" and action == "stat":
    print("8")
'''


@pytest.fixture
def fake(tmp_path, monkeypatch):
    root = tmp_path / "tm_commands"
    for kind, actions in (("tm", TM_ACTIONS), ("datastore", DS_ACTIONS)):
        for action in actions:
            exe = root / kind / "gfs2clvm" / action
            exe.parent.mkdir(parents=True, exist_ok=True)
            exe.write_text(FAKE.format(python=sys.executable, kind=kind, action=action))
            exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_LOG", str(log))
    conf = tmp_path / "gfs2clvm.conf"
    conf.write_text("vg: vg_cloudstorage\n")

    class Fake:
        def __init__(self):
            self.root, self.log, self.conf, self.tmp = root, log, conf, tmp_path

        def calls(self):
            if not log.exists():
                return []
            return [json.loads(line) for line in log.read_text().splitlines()]

        def argvs(self):
            """(action, argv) of the TM calls since the last reset."""
            return [(c["action"], c["argv"]) for c in self.calls() if c["kind"] == "tm"]

        def reset(self):
            if log.exists():
                log.unlink()

    return Fake()


@pytest.fixture
def oned(fake):
    driver = DriverRunner(fake.root, conf=fake.conf)
    return Oned(driver, hosts=["node1", "node2"], fe_host=FE, fe_dir=fake.tmp / "fe")


def image(oned, fake, persistent=False):
    img = oned.image_create("ttylinux", path="/srv/ttylinux.img", persistent=persistent)
    fake.reset()
    return img


def test_image_import_is_stat_then_cp_with_action_data(oned, fake):
    img = oned.image_create("ttylinux", path="/srv/ttylinux.img")
    calls = fake.calls()
    assert [(c["kind"], c["action"]) for c in calls] == [("datastore", "stat"), ("datastore", "cp")]
    # STAT goes with a request id, never the image's (ImageManagerActions.cc:1041-1045)
    assert calls[0]["argv"] != [str(img.id)] and calls[0]["argv"][0].isdigit()
    assert calls[1]["argv"] == [str(img.id)]
    assert "<IMAGE><PATH>/srv/ttylinux.img</PATH><SIZE></SIZE></IMAGE>" in calls[0]["stdin"]
    assert calls[1]["stdin"].startswith("<DS_DRIVER_ACTION_DATA><IMAGE><ID>0</ID>")
    assert "<DS_MAD>gfs2clvm</DS_MAD>" in calls[1]["stdin"]
    assert "<BASE_PATH>/var/lib/one//datastores/1</BASE_PATH>" in calls[1]["stdin"]
    assert all(c["conf"] == str(fake.conf) for c in calls)
    assert img.size_mb == 8 and img.format == "raw" and img.state == "READY"
    assert img.source == "vg_cloudstorage/lv-oneimg-%032x" % 2


def test_datablock_is_mkfs_and_delete_is_rm(oned, fake):
    img = oned.image_create("data", size_mb=16, type="DATABLOCK", persistent=True, fs="ext4")
    oned.image_delete(img)
    calls = fake.calls()
    assert [(c["action"], c["argv"]) for c in calls] == [("mkfs", ["0"]), ("rm", ["0"])]
    assert "<TYPE>2</TYPE><PERSISTENT>1</PERSISTENT>" in calls[0]["stdin"]
    assert "<SIZE>16</SIZE>" in calls[0]["stdin"] and "<FS>ext4</FS>" in calls[0]["stdin"]
    assert f"<SOURCE>{img.source}</SOURCE>" in calls[1]["stdin"]
    assert img.state == "DELETED"


def test_instantiate_prolog_then_context(oned, fake):
    img = image(oned, fake)
    vm = oned.instantiate("a", [{"image": img}, {"type": "SWAP", "size_mb": 64},
                                {"type": "FS", "size_mb": 32, "format": "raw"}],
                          "node1", context={"HOSTNAME": "a"})
    d = f"{SYS}/{vm.id}"
    ctx = str(fake.tmp / "fe" / "vms" / str(vm.id) / "context.sh")
    assert fake.argvs() == [
        ("clone", [f"{FE}:{img.source}", f"node1:{d}/disk.0", "0", "1"]),
        ("mkswap", ["64", f"node1:{d}/disk.1", "0", "0"]),
        ("mkimage", ["32", "raw", f"node1:{d}/disk.2", "0", "0"]),
        ("context", [ctx, f"node1:{d}/disk.3", "0", "0"]),
    ]
    assert "HOSTNAME='a'" in Path(ctx).read_text()
    assert vm.state is State.RUNNING and oned.hv.events == [("deploy", 0, "node1")]


def test_persistent_image_is_ln_and_mvds(oned, fake):
    img = image(oned, fake, persistent=True)
    vm = oned.instantiate("p", [{"image": img}], "node2")
    oned.terminate(vm)
    d = f"{SYS}/{vm.id}"
    assert fake.argvs() == [
        ("ln", [f"{FE}:{img.source}", f"node2:{d}/disk.0", "0", "1"]),
        ("mvds", [f"node2:{d}/disk.0", img.source, "0", "1"]),
        ("delete", [f"node2:{d}", "0", "0"]),
    ]
    assert vm.state is State.DONE
    assert oned.hv.events[-1] == ("shutdown", 0, "node2")


def test_source_with_host_part_is_passed_unchanged(oned, fake):
    img = image(oned, fake)
    img.source = "san:vg/lv-oneimg-" + "a" * 32
    oned.instantiate("a", [{"image": img}], "node1")
    assert fake.argvs()[0][1][0] == img.source


def test_terminate_hard_deletes_each_disk_then_dir(oned, fake):
    img = image(oned, fake)
    vm = oned.instantiate("c", [{"image": img}, {"type": "SWAP", "size_mb": 8}], "node1")
    fake.reset()
    oned.terminate(vm, hard=True)
    d = f"{SYS}/{vm.id}"
    assert fake.argvs() == [
        ("delete", [f"node1:{d}/disk.0", "0", "1"]),
        ("delete", [f"node1:{d}/disk.1", "0", "0"]),
        ("delete", [f"node1:{d}", "0", "0"]),
    ]
    assert oned.hv.events[-1] == ("cancel", 0, "node1")


def test_live_migrate_pre_post_with_vm_on_stdin(oned, fake):
    img = image(oned, fake)
    vm = oned.instantiate("a", [{"image": img}], "node1")
    fake.reset()
    oned.live_migrate(vm, "node2")
    calls = [c for c in fake.calls() if c["kind"] == "tm"]
    args = ["node1", "node2", f"{SYS}/0", "0", "0"]
    assert [(c["action"], c["argv"]) for c in calls] == [("premigrate", args), ("postmigrate", args)]
    assert calls[0]["stdin"].startswith("<VM><ID>0</ID>")
    assert vm.host == "node2" and vm.prev_host == "node1"
    assert oned.hv.events[-1] == ("migrate", 0, "node1", "node2")


def test_live_migrate_failure_runs_failmigrate(oned, fake, monkeypatch):
    img = image(oned, fake)
    vm = oned.instantiate("a", [{"image": img}], "node1")
    fake.reset()
    monkeypatch.setenv("FAKE_FAIL", "tm/premigrate")
    oned.driver.env["FAKE_FAIL"] = "tm/premigrate"
    with pytest.raises(DriverError, match="fake failure of premigrate"):
        oned.live_migrate(vm, "node2")
    assert [a for a, _ in fake.argvs()] == ["premigrate", "failmigrate"]
    assert vm.host == "node1" and vm.state is State.RUNNING


def test_suspend_resume_is_context_only(oned, fake):
    img = image(oned, fake)
    vm = oned.instantiate("a", [{"image": img}], "node1", context={"X": "1"})
    fake.reset()
    oned.suspend(vm)
    assert fake.argvs() == [] and vm.state is State.SUSPENDED
    oned.resume(vm)
    assert [a for a, _ in fake.argvs()] == ["context"]
    assert oned.hv.events[-2:] == [("save", 0, "node1"), ("restore", 0, "node1")]


def test_cold_migrate_moves_disks_then_dir(oned, fake):
    img = image(oned, fake)
    vm = oned.instantiate("a", [{"image": img}, {"type": "SWAP", "size_mb": 8}], "node2", context={})
    fake.reset()
    oned.migrate(vm, "node1")
    d = f"{SYS}/0"
    assert fake.argvs() == [
        ("mv", [f"node2:{d}/disk.0", f"node1:{d}/disk.0", "0", "1"]),
        ("mv", [f"node2:{d}/disk.1", f"node1:{d}/disk.1", "0", "0"]),
        ("mv", [f"node2:{d}", f"node1:{d}", "0", "0"]),
        ("context", [str(fake.tmp / "fe" / "vms" / "0" / "context.sh"), f"node1:{d}/disk.2", "0", "0"]),
    ]
    assert oned.hv.events[-2:] == [("save", 0, "node2"), ("restore", 0, "node1")]


def test_stop_and_resume_move_through_the_front_end(oned, fake):
    img = image(oned, fake)
    vm = oned.instantiate("a", [{"image": img}], "node1")
    fake.reset()
    oned.stop(vm)
    d = f"{SYS}/0"
    assert fake.argvs() == [
        ("mv", [f"node1:{d}/disk.0", f"{FE}:{d}/disk.0", "0", "1"]),
        ("mv", [f"node1:{d}", f"{FE}:{d}", "0", "0"]),
    ]
    assert vm.state is State.STOPPED
    fake.reset()
    oned.resume(vm, "node2")
    assert fake.argvs() == [
        ("mv", [f"{FE}:{d}/disk.0", f"node2:{d}/disk.0", "0", "1"]),
        ("mv", [f"{FE}:{d}", f"node2:{d}", "0", "0"]),
    ]
    assert vm.state is State.RUNNING and oned.hv.events[-1] == ("restore", 0, "node2")


def test_terminate_of_stopped_vm_runs_on_the_front_end(oned, fake):
    img = image(oned, fake)
    vm = oned.instantiate("a", [{"image": img}], "node1")
    oned.stop(vm)
    fake.reset()
    oned.terminate(vm)
    d = f"{SYS}/0"
    assert fake.argvs() == [("delete", [f"{FE}:{d}/disk.0", "0", "1"]), ("delete", [f"{FE}:{d}", "0", "0"])]


def test_delete_is_cleanup_and_does_not_stop_on_failure(oned, fake):
    img = image(oned, fake, persistent=True)
    vm = oned.instantiate("a", [{"image": img}, {"type": "SWAP", "size_mb": 8}], "node1")
    fake.reset()
    oned.driver.env["FAKE_FAIL"] = "tm/delete"
    with pytest.raises(DriverError):
        oned.delete(vm)
    d = f"{SYS}/0"
    # recover --delete: persistent disks are DELETEd too (no MVDS); every line runs (:no_fail).
    assert fake.argvs() == [
        ("delete", [f"node1:{d}/disk.0", "0", "1"]),
        ("delete", [f"node1:{d}/disk.1", "0", "0"]),
        ("delete", [f"node1:{d}", "0", "0"]),
    ]
    assert oned.hv.events[-1] == ("cancel", 0, "node1")


def test_resubmit_is_cleanup_then_new_prolog(oned, fake):
    img = image(oned, fake)
    vm = oned.instantiate("b", [{"image": img}], "node2", context={"A": "b"})
    fake.reset()
    oned.resubmit(vm)
    d = f"{SYS}/0"
    assert [(a, v) for a, v in fake.argvs()] == [
        ("delete", [f"node2:{d}/disk.0", "0", "1"]),
        ("delete", [f"node2:{d}", "0", "0"]),
        ("clone", [f"{FE}:{img.source}", f"node2:{d}/disk.0", "0", "1"]),
        ("context", [str(fake.tmp / "fe" / "vms" / "0" / "context.sh"), f"node2:{d}/disk.1", "0", "0"]),
    ]
    assert vm.id == 0 and vm.state is State.RUNNING


def test_saveas_is_mkfs_then_cpds(oned, fake):
    img = image(oned, fake)
    vm = oned.instantiate("a", [{"image": img}], "node1")
    oned.poweroff(vm)
    fake.reset()
    new = oned.disk_saveas(vm, 0, "saved")
    calls = fake.calls()
    assert [(c["kind"], c["action"]) for c in calls] == [("datastore", "mkfs"), ("tm", "cpds")]
    assert f"<SIZE>{img.size_mb}</SIZE>" in calls[0]["stdin"]
    assert calls[1]["argv"] == [f"node1:{SYS}/0/disk.0", new.source, "-1", "0", "1"]
    assert new.state == "READY" and new.template["SAVED_VM_ID"] == 0


def test_transfer_script_stops_at_first_failure(oned, fake):
    img = image(oned, fake)
    oned.driver.env["FAKE_FAIL"] = "tm/clone"
    with pytest.raises(DriverError) as err:
        oned.instantiate("a", [{"image": img}, {"type": "SWAP", "size_mb": 8}], "node1")
    assert [a for a, _ in fake.argvs()] == ["clone"]
    assert err.value.call.rc == 1 and err.value.call.error_line() == "ERROR: fake failure of clone"
    assert oned.vms[0].state is State.FAILURE


def test_wrong_state_is_refused_without_driver_calls(oned, fake):
    img = image(oned, fake)
    vm = oned.instantiate("a", [{"image": img}], "node1")
    oned.suspend(vm)
    fake.reset()
    with pytest.raises(SimError):
        oned.live_migrate(vm, "node2")
    with pytest.raises(SimError):
        oned.stop(vm)
    assert fake.calls() == []


def test_missing_executable_is_a_failed_call(tmp_path):
    driver = DriverRunner(tmp_path)
    call = driver.tm("gfs2clvm", "clone", ["a", "b", "1", "1"], check=False)
    assert call.rc == 127 and "does not exist" in call.stderr
    assert driver.calls == [call]


def test_call_records_duration_and_output(fake):
    driver = DriverRunner(fake.root, conf=fake.conf)
    call = driver.ds("gfs2clvm", "stat", 3, "<DS_DRIVER_ACTION_DATA/>")
    assert call.ok and call.stdout.strip() == "8" and call.seconds > 0
    assert call.argv == [str(fake.root / "datastore" / "gfs2clvm" / "stat"), "3"]
    assert base64.b64decode(call.stdin) == b"<DS_DRIVER_ACTION_DATA/>"
    assert os.access(call.argv[0], os.X_OK)


def test_postmigrate_failure_is_no_fail(oned, fake):
    """one_vmm_exec.rb:664-670 (7.4.0): POSTMIGRATE is :no_fail -- the migration succeeds, the
    VM runs on the destination, the failure is only logged."""
    img = image(oned, fake)
    vm = oned.instantiate("a", [{"image": img}], "node1")
    oned.driver.env.update(FAKE_FAIL="tm/postmigrate", FAKE_REASON="lvchange failed on node1")
    oned.live_migrate(vm, "node2")
    assert vm.host == "node2" and vm.state is State.RUNNING
    assert vm.log == ["Failed to execute transfer manager driver operation: tm_postmigrate. "
                      "lvchange failed on node1"]


def test_failure_reason_as_oned_computes_it(oned, fake):
    """DriverExecHelper.rb: 7.x takes the un-prefixed stderr lines, 6.x the whole stderr."""
    img = image(oned, fake)
    oned.driver.env["FAKE_FAIL"] = "tm/clone"
    with pytest.raises(DriverError, match=r"tm/clone exited 1: - \(oned shows no reason"):
        oned.instantiate("a", [{"image": img}], "node1")
    oned.driver.env["FAKE_REASON"] = "lvcreate failed: VG full"
    with pytest.raises(DriverError) as err:
        oned.instantiate("b", [{"image": img}], "node1")
    call = err.value.call
    assert str(err.value) == "tm/clone exited 1: lvcreate failed: VG full"
    assert call.reason() == "lvcreate failed: VG full"
    assert call.reason(version=6) == "ERROR: fake failure of clone INFO: 3 calls queued lvcreate failed: VG full"
    assert call.logged_vm_ids() == [3]  # what the driver must never print: VM 3 may not exist


def test_stat_failure_is_the_allocate_error(oned, fake):
    oned.driver.env.update(FAKE_FAIL="datastore/stat", FAKE_REASON="not allowed to copy images from /x")
    with pytest.raises(DriverError):
        oned.image_create("i", path="/x")
    img = oned.images[max(oned.images)]
    assert (img.state, img.error) == ("ERROR", "Cannot parse image SIZE: not allowed to copy images from /x")
    oned.driver.env["FAKE_FAIL"] = "datastore/cp"
    with pytest.raises(DriverError):
        oned.image_create("j", path="/x")
    img = oned.images[max(oned.images)]
    assert img.error == "Error copying image in the datastore: not allowed to copy images from /x"


def test_mkimage_gets_the_format_and_onevm_shows_the_disk_fs(oned, fake, tmp_path):
    """TransferManager.cc:124-133: MKIMAGE size FORMAT ...; the FS is the VM's DISK/FS, which
    the driver reads with ``onevm show -x`` (the simulator answers it like oned)."""
    import subprocess

    vm = oned.instantiate("v", [{"type": "FS", "size_mb": 16, "format": "raw", "fs": "ext4"}], "node1")
    calls = fake.calls()
    assert [(c["action"], c["argv"][:2]) for c in calls] == [("mkimage", ["16", "raw"])]
    proc = subprocess.run(["onevm", "show", "-x", str(vm.id)], capture_output=True, text=True,
                          env=oned.driver.env, check=True)
    assert "<DISK_ID>0</DISK_ID>" in proc.stdout and "<FS>ext4</FS>" in proc.stdout
