# SPDX-License-Identifier: Apache-2.0
"""gfs2clvm.orphans / orphans_remove: when each orphan LV was made (LVM's ``lv_time``),
its age, and the VM directories of VMs that do not exist (size, last change, removal).

LVM answers are the captured ``lvs_after.json`` rows with the ``lv_time`` field the
module adds to ``-o`` for orphans, in LVM's default ``report/time_format``
(``%Y-%m-%d %T %z``, local time with its offset; ``""`` when LVM does not know).
VM directories are real trees in tmp_path, laid out as OpenNebula lays them out.
"""

import json
import os
import re
import shutil
from datetime import datetime, timedelta, timezone
from unittest.mock import patch

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError

from test_gfs2clvm_module import LVS, VG, conf, configure_loader_modules, data, fake, gfs2clvm, mnt  # noqa: F401

# the clock of these tests: 2026-11-25 21:00:00 UTC
NOW = datetime(2026, 11, 25, 21, 0, 0, tzinfo=timezone.utc).timestamp()
ORPHAN_LVS = LVS[:-1] + [LVS[-1] + ",lv_time"]
LV_KEYS = ["name", "vmid", "size_mb", "created", "age_days", "open", "reason"]
DIR_KEYS = ["path", "vmid", "size_bytes", "modified", "age_days", "error"]


@pytest.fixture(autouse=True)
def clock():
    with patch.object(gfs2clvm, "_now", return_value=NOW):
        yield


def lvs_json(times=None, drop=()):
    """``lvs_after.json`` as lvs prints it with ``lv_time`` last in ``-o``: each row
    gets its time from ``times`` (default "", what LVM prints for an unknown time)."""
    report = json.loads(data("lvs_after.json"))
    rows = [row for row in report["report"][0]["lv"] if row["lv_name"] not in drop]
    for row in rows:
        row["lv_time"] = (times or {}).get(row["lv_name"], "")
    report["report"][0]["lv"] = rows
    return json.dumps(report)


def at(days_ago):
    """Epoch seconds ``days_ago`` days before NOW."""
    return NOW - days_ago * 86400


def aged(*paths, days=30):
    """Make VM directories (and all in them) ``days`` old on the tests' clock: made now on
    the real clock they would be newer than NOW, too young for orphans_remove."""
    for path in paths:
        for item in [path, *path.rglob("*")]:
            os.utime(item, (at(days), at(days)), follow_symlinks=False)
    return paths


def vm_dir(mnt, vmid, dsid=0, files=None, links=None):
    """A VM directory with regular files ``{name: bytes}`` and symlinks ``{name: target}``."""
    path = mnt / "datastores" / str(dsid) / str(vmid)
    path.mkdir(parents=True)
    for name, content in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(content)
    for name, target in (links or {}).items():
        (path / name).symlink_to(target)
    return path


def set_mtimes(path, seconds):
    """Every entry under ``path`` (symlinks themselves, not their targets), then ``path``."""
    for entry in sorted(path.rglob("*"), reverse=True):
        os.utime(entry, (seconds, seconds), follow_symlinks=False)
    os.utime(path, (seconds, seconds))


# ---------------------------------------------------------------- lv_time: created / age_days
def test_orphan_lvs_say_when_they_were_made(fake, mnt):
    vm_dir(mnt, 7, links={"disk.0": f"/dev/{VG}/lv-one-7-0"})
    vm_dir(mnt, 70, links={"disk.0": f"/dev/{VG}/lv-one-70-0"})
    fake.answer("lvs", lvs_json({
        "lv-one-8-0": "2026-11-20 09:00:00 +0000",
        "lv-one-8-0-s0": "2026-11-25 20:57:30 +0100",  # a host in UTC+1: 19:57:30 UTC
        # lv-one-9-0: "" (LVM does not know)
    }))
    ret = gfs2clvm.orphans()
    assert fake.calls == [ORPHAN_LVS + [VG]]
    assert ret["lvs"] == [
        {"name": "lv-one-8-0", "vmid": 8, "size_mb": 256, "created": "2026-11-20T09:00:00Z", "age_days": 5.5,
         "open": False, "reason": "no VM directory links it"},
        {"name": "lv-one-8-0-s0", "vmid": 8, "size_mb": 256, "created": "2026-11-25T19:57:30Z", "age_days": 0.0,
         "open": False, "reason": "no VM directory links it"},
        {"name": "lv-one-9-0", "vmid": 9, "size_mb": 8, "created": None, "age_days": None,
         "open": False, "reason": "no VM directory links it"},
    ]
    assert all(list(lv) == LV_KEYS for lv in ret["lvs"])
    assert ret["dirs"] == []  # without vmids no directory is judged (7 and 70 exist)
    json.dumps(ret)
    assert not fake.writes()


def test_age_is_in_days_to_one_decimal(fake, mnt):
    fake.answer("lvs", lvs_json({"lv-one-9-0": "2025-11-25 21:00:00 +0000", "lv-one-8-0": "2026-11-25 14:00:00 -0500"}))
    ages = {lv["name"]: (lv["created"], lv["age_days"]) for lv in gfs2clvm.orphans(vmids=[7])["lvs"]}
    assert ages["lv-one-9-0"] == ("2025-11-25T21:00:00Z", 365.0)
    assert ages["lv-one-8-0"] == ("2026-11-25T19:00:00Z", 0.1)  # 2 hours
    assert ages["lv-one-70-0"] == (None, None)


@pytest.mark.parametrize("text, expected", [
    ("2026-11-25 20:57:30 +0000", datetime(2026, 11, 25, 20, 57, 30, tzinfo=timezone.utc)),
    ("2026-11-25 20:57:30 +0530", datetime(2026, 11, 25, 15, 27, 30, tzinfo=timezone.utc)),
    ("2026-11-25 20:57:30 -0800", datetime(2026, 11, 26, 4, 57, 30, tzinfo=timezone.utc)),
    ("  2026-11-25 20:57:30 +0000\n", datetime(2026, 11, 25, 20, 57, 30, tzinfo=timezone.utc)),
    ("2026-11-25T20:57:30+00:00", datetime(2026, 11, 25, 20, 57, 30, tzinfo=timezone.utc)),
    ("2026-11-25T20:57:30Z", datetime(2026, 11, 25, 20, 57, 30, tzinfo=timezone.utc)),
    ("1764104250", datetime(2025, 11, 25, 20, 57, 30, tzinfo=timezone.utc)),  # time_format = "%s"
])
def test_lv_time_formats_that_are_read(text, expected):
    assert gfs2clvm._lv_time(text) == expected.timestamp()


def test_lv_time_without_offset_is_local_time():
    # LVM formats with localtime(): without %z the text is this host's local time
    assert gfs2clvm._lv_time("2026-11-25 20:57:30") == datetime(2026, 11, 25, 20, 57, 30).timestamp()


@pytest.mark.parametrize("text", [
    "", None, "   ", "unknown", "Wed Nov 25 20:57:30 2026", "2026-11-25 20:57:30 CET", "2026-13-40 25:61:00 +0000",
    "25.11.2026 20:57", "99999999999999999999",
])
def test_unreadable_lv_time_is_unknown_not_an_error(text):
    assert gfs2clvm._lv_time(text) is None
    assert gfs2clvm._when(gfs2clvm._lv_time(text), NOW) == (None, None)


def test_when_out_of_range_is_unknown():
    assert gfs2clvm._when(1e20, NOW) == (None, None)
    assert gfs2clvm._when(at(1.25), NOW) == ("2026-11-24T15:00:00Z", 1.2)  # 1.25 rounds half to even


def test_unknown_times_from_lvm_do_not_break_the_report(fake, mnt):
    fake.answer("lvs", lvs_json({"lv-one-8-0": "garbage", "lv-one-9-0": "2026-11-25 20:57:30 CET"}))
    ret = gfs2clvm.orphans(vmids=[7, 70])
    assert [(lv["name"], lv["created"], lv["age_days"]) for lv in ret["lvs"]] == [
        ("lv-one-8-0", None, None), ("lv-one-8-0-s0", None, None), ("lv-one-9-0", None, None)]


def test_the_other_lvm_reads_do_not_ask_for_lv_time(fake, mnt):
    fake.lvs("lvs_vm7.json")
    gfs2clvm.vm_disks(7)
    assert fake.calls[0][:len(LVS)] == LVS


# ---------------------------------------------------------------- dirs: VM directories of other VMs
@pytest.fixture
def tree(mnt, tmp_path):
    """VM 7 (exists), VM 12 (gone: files, a subdirectory, symlinks), VM 13 (gone, empty,
    in system datastore 100), and what is not a VM directory."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "big.img").write_bytes(b"x" * 50000)
    (outside / "dir" / "big").write_bytes(b"y" * 70000)
    vm7 = vm_dir(mnt, 7, files={"deployment.0": b"<domain/>"}, links={"disk.0": f"/dev/{VG}/lv-one-7-0"})
    vm12 = vm_dir(mnt, 12, files={"deployment.0": b"0123456789", "disk.2": b"a" * 1000, "checkpoint/mem": b"m" * 100},
                  links={"disk.1": str(outside / "big.img"), "disk.3": f"/dev/{VG}/lv-one-12-3", "rundir": str(outside / "dir")})
    vm13 = vm_dir(mnt, 13, dsid=100)
    set_mtimes(vm12, at(30))
    os.utime(vm12 / "checkpoint" / "mem", (at(2), at(2)))  # the newest change, deep inside
    set_mtimes(vm13, at(400))
    # not VM directories: an image datastore's files, non-numeric names, symlinks, a file
    (mnt / "datastores" / "1").mkdir()
    (mnt / "datastores" / "1" / ("0123456789abcdef" * 2)).write_bytes(b"i")
    (mnt / "datastores" / "0" / "lost+found").mkdir()
    (mnt / "datastores" / "0" / "14").symlink_to(outside)
    (mnt / "datastores" / "0" / "15").write_bytes(b"not a directory")
    (mnt / "datastores" / "0" / ("9" * 11)).mkdir()  # not a VM id (>= 2**31)
    (mnt / "datastores" / "x" / "16").mkdir(parents=True)
    (mnt / "datastores" / "2").symlink_to(mnt / "datastores" / "x")  # 2/16 through a symlink
    return {"vm7": vm7, "vm12": vm12, "vm13": vm13, "outside": outside}


def test_dirs_of_vms_not_in_vmids_with_size_and_last_change(fake, mnt, tree):
    fake.answer("lvs", lvs_json())
    ret = gfs2clvm.orphans(vmids=[7, 8, 9, 70])
    assert ret["dirs"] == [
        # 10 + 1000 + 100 bytes of regular files; the symlinks (to 50000 and 70000 bytes) are not followed
        {"path": str(tree["vm12"]), "vmid": 12, "size_bytes": 1110, "modified": "2026-11-23T21:00:00Z",
         "age_days": 2.0, "error": None},
        {"path": str(tree["vm13"]), "vmid": 13, "size_bytes": 0, "modified": "2025-10-21T21:00:00Z",
         "age_days": 400.0, "error": None},
    ]
    assert all(list(item) == DIR_KEYS for item in ret["dirs"])
    assert ret["links"] == [{"path": str(tree["vm12"] / "disk.3"), "target": f"/dev/{VG}/lv-one-12-3"}]
    assert set(ret) == {"vg", "lvs", "links", "dirs"}
    json.dumps(ret)
    assert not fake.writes() and tree["vm12"].exists() and tree["vm13"].exists()


def test_without_vmids_no_directory_is_judged(fake, mnt, tree):
    fake.answer("lvs", lvs_json())
    assert gfs2clvm.orphans()["dirs"] == []
    assert gfs2clvm.orphans_remove(dry_run=False)["dirs"] == []
    assert tree["vm12"].exists() and tree["vm13"].exists()


def test_a_newer_symlink_counts_as_a_change(fake, mnt, tree):
    os.utime(tree["vm12"] / "disk.1", (at(0.5), at(0.5)), follow_symlinks=False)
    fake.answer("lvs", lvs_json())
    vm12 = gfs2clvm.orphans(vmids=[7])["dirs"][0]
    assert (vm12["modified"], vm12["age_days"], vm12["size_bytes"]) == ("2026-11-25T09:00:00Z", 0.5, 1110)


def test_an_unreadable_directory_is_reported_not_fatal(fake, mnt, tree):
    real = os.scandir

    def scandir(path="."):
        if str(path) == str(tree["vm12"] / "checkpoint"):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    fake.answer("lvs", lvs_json())
    with patch.object(gfs2clvm.os, "scandir", side_effect=scandir):
        ret = gfs2clvm.orphans(vmids=[7])
    assert ret["dirs"][0] == {"path": str(tree["vm12"]), "vmid": 12, "size_bytes": None, "modified": None,
                              "age_days": None, "error": f"cannot read {tree['vm12']}/checkpoint: permission denied"}
    assert ret["dirs"][1]["path"] == str(tree["vm13"]) and ret["dirs"][1]["size_bytes"] == 0


def test_a_directory_gone_meanwhile_is_reported_not_fatal(mnt, tmp_path):
    ret = gfs2clvm._dir_report(str(tmp_path / "gone"), 5, NOW)
    assert ret == {"path": str(tmp_path / "gone"), "vmid": 5, "size_bytes": None, "modified": None, "age_days": None,
                   "error": f"cannot read {tmp_path / 'gone'}: no such file or directory"}


# ---------------------------------------------------------------- orphans_remove and dirs
def test_remove_dry_run_lists_the_dirs_and_removes_nothing(fake, mnt, tree):
    fake.answer("lvs", lvs_json())
    ret = gfs2clvm.orphans_remove(vmids=[7])
    assert ret == {"vg": VG, "dry_run": True, "lvs": ["lv-one-8-0-s0", "lv-one-70-0", "lv-one-8-0", "lv-one-9-0"],
                   "links": [str(tree["vm12"] / "disk.3")], "dirs": [str(tree["vm12"]), str(tree["vm13"])], "skipped": [],
                   "young": []}
    assert not fake.writes() and tree["vm12"].is_dir() and tree["vm13"].is_dir()


def test_remove_takes_the_orphan_dirs_whole_and_nothing_else(fake, mnt, tree):
    fake.answer("lvs", lvs_json())
    ret = gfs2clvm.orphans_remove(vmids=[7], dry_run=False)
    assert ret["dirs"] == [str(tree["vm12"]), str(tree["vm13"])] and ret["skipped"] == []
    assert fake.writes() == [["/sbin/lvremove", "--yes", f"{VG}/lv-one-8-0-s0", f"{VG}/lv-one-70-0",
                              f"{VG}/lv-one-8-0", f"{VG}/lv-one-9-0"]]
    assert not os.path.lexists(tree["vm12"]) and not os.path.lexists(tree["vm13"])
    # the symlinks' targets, the known VM, and what is not a VM directory stay
    assert (tree["outside"] / "big.img").stat().st_size == 50000 and (tree["outside"] / "dir" / "big").exists()
    assert (tree["vm7"] / "disk.0").is_symlink() and (tree["vm7"] / "deployment.0").exists()
    ds0 = mnt / "datastores" / "0"
    assert sorted(p.name for p in ds0.iterdir()) == sorted(["7", "14", "15", "lost+found", "9" * 11])
    assert (ds0 / "14").is_symlink() and (mnt / "datastores" / "x" / "16").is_dir()
    assert (mnt / "datastores" / "1" / ("0123456789abcdef" * 2)).exists() and (mnt / "datastores" / "100").is_dir()


def test_remove_checks_the_mount_before_touching_a_dir(fake, mnt, tree, conf, tmp_path):
    conf["mount_check"] = "mount"
    info = tmp_path / "mountinfo"
    info.write_text("22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n")  # mnt is not a mount point
    fake.answer("lvs", lvs_json(drop=("lv-one-70-0", "lv-one-8-0", "lv-one-8-0-s0", "lv-one-9-0")))
    shutil.rmtree(tree["vm12"])
    with patch.object(gfs2clvm, "MOUNTINFO", str(info)):
        with pytest.raises(CommandExecutionError, match="not a mount point, not a mounted file system: refusing to write there"):
            gfs2clvm.orphans_remove(vmids=[7], dry_run=False)
        assert gfs2clvm.orphans_remove(vmids=[7])["dirs"] == [str(tree["vm13"])]  # the dry run needs no mount
    assert tree["vm13"].is_dir() and not fake.writes()


def test_a_dir_that_links_an_lv_that_stays_is_skipped(fake, mnt):
    """VM 20's directory still links an open LV of its own (a VM runs on it: vmids was
    out of date), VM 21's an image LV (not an orphan), VM 22's only its own orphan LV
    (removed in the same run) and VM 23's a missing LV: 20 and 21 are skipped."""
    dirs = {
        20: vm_dir(mnt, 20, links={"disk.0": f"/dev/{VG}/lv-one-20-0"}),
        21: vm_dir(mnt, 21, links={"disk.0": f"/dev/{VG}/lv-oneimg-0123456789abcdef0123456789abcdef"}),
        22: vm_dir(mnt, 22, links={"disk.0": f"/dev/{VG}/lv-one-22-0"}),
        23: vm_dir(mnt, 23, links={"disk.0": f"/dev/{VG}/lv-one-23-0"}),
    }
    aged(*dirs.values())
    report = json.loads(lvs_json(drop=("lv-one-70-0", "lv-one-8-0", "lv-one-8-0-s0", "lv-one-9-0")))
    rows = report["report"][0]["lv"]
    template = next(row for row in rows if row["lv_name"] == "lv-one-7-1")
    for name, state in (("lv-one-20-0", "open"), ("lv-one-22-0", "")):
        rows.append(dict(template, lv_name=name, lv_path=f"/dev/{VG}/{name}", lv_device_open=state,
                         lv_time="2026-11-01 12:00:00 +0000"))
    fake.answer("lvs", json.dumps(report))
    listed = gfs2clvm.orphans(vmids=[7])
    assert [(lv["name"], lv["open"], lv["created"]) for lv in listed["lvs"]] == [
        ("lv-one-20-0", True, "2026-11-01T12:00:00Z"), ("lv-one-22-0", False, "2026-11-01T12:00:00Z")]
    assert [item["path"] for item in listed["dirs"]] == [str(dirs[vmid]) for vmid in (20, 21, 22, 23)]
    expected = {"vg": VG, "lvs": ["lv-one-22-0"], "links": [str(dirs[23] / "disk.0")],
                "dirs": [str(dirs[22]), str(dirs[23])], "skipped": ["lv-one-20-0", str(dirs[20]), str(dirs[21])],
                "young": []}
    assert gfs2clvm.orphans_remove(vmids=[7]) == dict(expected, dry_run=True)
    assert not fake.writes()
    assert gfs2clvm.orphans_remove(vmids=[7], dry_run=False) == dict(expected, dry_run=False)
    assert fake.writes() == [["/sbin/lvremove", "--yes", f"{VG}/lv-one-22-0"]]
    assert dirs[20].is_dir() and dirs[21].is_dir() and not dirs[22].exists() and not dirs[23].exists()


def test_a_dir_whose_lv_lvremove_left_is_not_removed(fake, mnt):
    vm8 = vm_dir(mnt, 8, links={"disk.0": f"/dev/{VG}/lv-one-8-0"})
    vm9 = vm_dir(mnt, 9, links={"disk.0": f"/dev/{VG}/lv-one-9-0"})
    aged(vm8, vm9)
    fake.answer("lvs", lvs_json())  # the listing
    fake.answer("lvremove", rc=5, stderr="  Logical volume vg_cloudstorage/lv-one-8-0 in use.\n")
    fake.answer("lvs", lvs_json(drop=("lv-one-8-0-s0", "lv-one-70-0", "lv-one-9-0")))  # after: 8-0 is left
    with pytest.raises(CommandExecutionError) as err:
        gfs2clvm.orphans_remove(vmids=[7], dry_run=False)
    assert str(err.value) == (
        "orphans_remove did not finish: lvremove failed (rc 5): Logical volume vg_cloudstorage/lv-one-8-0 in use.; "
        f"removed: lv-one-8-0-s0, lv-one-70-0, lv-one-9-0, {vm9}; not removed: lv-one-8-0, {vm8}")
    assert (vm8 / "disk.0").is_symlink() and not vm9.exists()


def test_a_dir_that_cannot_be_removed_is_one_line_and_the_rest_goes_on(fake, mnt, tree):
    real = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        if str(path) == str(tree["vm12"]):
            raise PermissionError(13, "Permission denied", str(tree["vm12"] / "checkpoint" / "mem"))
        return real(path, *args, **kwargs)

    fake.answer("lvs", lvs_json())
    with patch.object(gfs2clvm.shutil, "rmtree", side_effect=rmtree):
        with pytest.raises(CommandExecutionError) as err:
            gfs2clvm.orphans_remove(vmids=[7], dry_run=False)
    message = str(err.value)
    assert message == (
        f"orphans_remove did not finish: cannot remove {tree['vm12']} ({tree['vm12']}/checkpoint/mem): permission denied; "
        f"removed: lv-one-8-0-s0, lv-one-70-0, lv-one-8-0, lv-one-9-0, {tree['vm12']}/disk.3, {tree['vm13']}; "
        f"not removed: {tree['vm12']}")
    assert "\n" not in message and "Permission denied" not in message
    assert tree["vm12"].is_dir() and not tree["vm13"].exists()


def test_a_dir_replaced_meanwhile_is_left_alone(mnt, tmp_path):
    root = mnt / "datastores" / "0"
    root.mkdir(parents=True)
    (root / "30").symlink_to(tmp_path)
    (root / "31").write_bytes(b"x")
    settings = {"mountpoint": str(mnt)}
    assert gfs2clvm._orphan_rmdir(settings, str(root / "30")) == f"{root / '30'} is no longer a VM directory: left alone"
    assert gfs2clvm._orphan_rmdir(settings, str(root / "31")) == f"{root / '31'} is no longer a VM directory: left alone"
    assert gfs2clvm._orphan_rmdir(settings, str(root / "32")) is None  # already gone
    assert (root / "30").is_symlink() and tmp_path.is_dir() and (root / "31").exists()


@pytest.mark.parametrize("relative", ["0/7", "0/abc", "x/7", "0/7/sub", "0/" + "9" * 11])
def test_only_numeric_dirs_directly_under_datastores_are_vm_dirs(mnt, relative):
    path = mnt / "datastores" / relative
    path.mkdir(parents=True)
    expected = 7 if relative == "0/7" else None
    assert gfs2clvm._vm_dir_id({"mountpoint": str(mnt)}, str(path)) == expected


# ---------------------------------------------------------------- too young to remove (issue 13.10)
def young_lvs(fake, minutes_ago):
    """The captured LVs, lv-one-8-0 (and its snapshot) and lv-one-9-0 made ``minutes_ago``
    before NOW (in LVM's local-time format), lv-one-70-0 long ago."""
    def lvm_time(seconds):
        return datetime.fromtimestamp(seconds, timezone(timedelta(hours=1))).strftime("%Y-%m-%d %H:%M:%S %z")
    recent = lvm_time(NOW - minutes_ago * 60)
    fake.answers.pop("lvs", None)  # this answer only
    fake.answer("lvs", lvs_json({"lv-one-8-0": recent, "lv-one-8-0-s0": recent, "lv-one-9-0": recent,
                                 "lv-one-70-0": lvm_time(at(100))}))


def test_lvs_made_after_the_list_are_not_removed(fake, mnt):
    """onevm list at 20:00, VM 9 created at 20:30 (after it): its LVs look orphaned to that
    list, but were made after it; lv-one-70-0 (100 days old) goes."""
    young_lvs(fake, 30)
    ret = gfs2clvm.orphans_remove(vmids=[7], dry_run=False, listed_at="2026-11-25T20:00:00Z", min_age=0)
    assert ret["lvs"] == ["lv-one-70-0"]
    assert ret["young"] == ["lv-one-8-0", "lv-one-8-0-s0", "lv-one-9-0"]
    assert fake.writes() == [["/sbin/lvremove", "--yes", f"{VG}/lv-one-70-0"]]


def test_list_time_as_epoch_and_the_clock_skew_margin(fake, mnt):
    # made 30 min ago, listed 29.5 min ago: within the 60 s margin -> still too young
    young_lvs(fake, 30)
    ret = gfs2clvm.orphans_remove(vmids=[7], listed_at=int(NOW - 29.5 * 60), min_age=0)
    assert ret["young"] == ["lv-one-8-0", "lv-one-8-0-s0", "lv-one-9-0"]
    # listed 10 minutes after they were made: they existed when the list was taken
    young_lvs(fake, 30)
    ret = gfs2clvm.orphans_remove(vmids=[7], listed_at=str(int(NOW - 20 * 60)), min_age=0)
    assert ret["young"] == [] and ret["lvs"] == ["lv-one-8-0-s0", "lv-one-70-0", "lv-one-8-0", "lv-one-9-0"]


def test_default_min_age_is_one_hour(fake, mnt):
    young_lvs(fake, 59)
    assert gfs2clvm.orphans_remove(vmids=[7], dry_run=False)["young"] == ["lv-one-8-0", "lv-one-8-0-s0", "lv-one-9-0"]
    assert fake.writes() == [["/sbin/lvremove", "--yes", f"{VG}/lv-one-70-0"]]
    young_lvs(fake, 61)
    assert gfs2clvm.orphans_remove(vmids=[7])["young"] == []


def test_a_young_vm_directory_stays_and_so_does_one_linking_a_young_lv(fake, mnt):
    fresh = vm_dir(mnt, 9, links={"disk.0": f"/dev/{VG}/lv-one-9-0"})
    os.utime(fresh, (NOW - 600, NOW - 600))  # changed 10 minutes ago
    for item in fresh.iterdir():
        os.utime(item, (NOW - 600, NOW - 600), follow_symlinks=False)
    linking = vm_dir(mnt, 8, links={"disk.0": f"/dev/{VG}/lv-one-8-0"})
    aged(linking)
    old = aged(vm_dir(mnt, 13, files={"deployment.0": b"x"}))[0]
    young_lvs(fake, 30)
    ret = gfs2clvm.orphans_remove(vmids=[7], dry_run=False)
    assert ret["young"] == ["lv-one-8-0", "lv-one-8-0-s0", "lv-one-9-0", str(fresh)]
    assert ret["dirs"] == [str(old)] and ret["skipped"] == [str(linking)]  # links a young LV that stays
    assert fresh.is_dir() and linking.is_dir() and not old.exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"listed_at": "yesterday"}, "listed_at must be epoch seconds or an ISO 8601 time, not 'yesterday'"),
    ({"listed_at": "2026-11-25T20:00:00"}, "listed_at needs a time zone (e.g. 2026-11-25T20:00:00Z)"),
    ({"listed_at": True}, "listed_at must be epoch seconds or an ISO 8601 time, not True"),
    ({"min_age": -1}, "min_age must be a number of seconds >= 0, not -1"),
    ({"min_age": "1h"}, "min_age must be a number of seconds >= 0, not '1h'"),
])
def test_bad_list_time_or_min_age_is_refused_before_anything(fake, mnt, kwargs, message):
    with pytest.raises(SaltInvocationError, match=re.escape(message)):
        gfs2clvm.orphans_remove(vmids=[7], dry_run=False, **kwargs)
    assert fake.calls == []
