# SPDX-License-Identifier: Apache-2.0
"""Loader-level unit tests of _modules/gfs2clvm.py with a fake ``cmd.run_all``.

LVM answers are REAL output captured in the qemu lab (tests/unit/data/, see its
README): the module must parse exactly what lvm2 2.03 prints. Every test checks
the exact argv of what ran; bad input must run nothing.
"""

import importlib.util
import inspect
import json
import grp
import os
import pwd
import re
from pathlib import Path
from unittest.mock import create_autospec, patch

import pytest
import salt.modules.cmdmod
import sudoers_rule
import salt.modules.config
from salt.exceptions import CommandExecutionError, SaltInvocationError

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
_spec = importlib.util.spec_from_file_location("gfs2clvm_mod_ut", REPO / "_modules" / "gfs2clvm.py")
gfs2clvm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gfs2clvm)

VG = "vg_cloudstorage"
LVS = ["/sbin/lvs", "--reportformat", "json", "--units", "m", "--nosuffix", "-o",
       "lv_name,vg_name,lv_path,lv_size,lv_attr,lv_layout,lv_active,lv_active_locally,"
       "lv_active_exclusively,lv_device_open,origin,pool_lv,data_percent"]
VGS = ["/sbin/vgs", "--reportformat", "json", "--units", "m", "--nosuffix", "-o",
       "vg_name,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,"
       "lv_count,vg_shared,vg_lock_type,vg_attr"]
READ_ONLY = {"lvs", "vgs"}


def data(name):
    return (DATA / name).read_text()


class FakeCmd:
    """``cmd.run_all`` stand-in: canned answers per command, every argv recorded."""

    def __init__(self):
        self.calls = []
        self.answers = {}  # command base name -> list of (rc, stdout, stderr), last one repeats

    def answer(self, cmd, stdout="", rc=0, stderr=""):
        self.answers.setdefault(cmd, []).append((rc, stdout, stderr))

    def lvs(self, *files):
        for name in files:
            self.answer("lvs", data(name))

    def __call__(self, argv, python_shell=None, ignore_retcode=False, **kwargs):
        assert python_shell is False
        assert isinstance(argv, list) and all(isinstance(word, str) for word in argv)
        self.calls.append(list(argv))
        cmd = self.name(argv)
        queue = self.answers.get(cmd) or [(0, "", "")]
        rc, out, err = queue.pop(0) if len(queue) > 1 else queue[0]
        return {"retcode": rc, "stdout": out, "stderr": err, "pid": 1}

    @staticmethod
    def name(argv):
        if argv[:3] == ["sudo", "-n", "-l"]:
            return "sudo -l"
        return os.path.basename(argv[2] if argv[0] == "sudo" else argv[0])

    def names(self):
        return [self.name(c) for c in self.calls]

    def writes(self):
        return [c for c, n in zip(self.calls, self.names()) if n not in READ_ONLY]


@pytest.fixture
def fake():
    """The fake runner; afterwards every LVM argv the test made the module build must
    be one the formula's sudoers rule allows (the rule restricts arguments: a module
    change that the rule does not follow would fail on every worker)."""
    cmd = FakeCmd()
    yield cmd
    denied = []
    for argv in cmd.calls:
        if argv[:3] == ["sudo", "-n", "-l"] and "--config" in argv:
            continue  # check's probe that the rule DENIES free arguments
        words = sudoers_rule.lvm_argv(argv)
        if words and not sudoers_rule.allowed(words, lvm_bin=os.path.dirname(words[0])):
            denied.append(" ".join(words))
    assert not denied, f"argv the formula's sudoers rule denies: {denied}"


@pytest.fixture
def mnt(tmp_path):
    path = tmp_path / "one"
    path.mkdir()
    return path


@pytest.fixture
def conf(mnt):
    me = pwd.getpwuid(os.geteuid()).pw_name
    return {"mountpoint": str(mnt), "mount_check": "none", "sudo": False, "owner": me, "group": grp.getgrgid(os.getegid()).gr_name}


@pytest.fixture
def configure_loader_modules(fake, conf):
    run_all = create_autospec(salt.modules.cmdmod.run_all, side_effect=fake)

    def config_get(key, default="", *args, **kwargs):
        return conf if key == "gfs2clvm" else default

    get = create_autospec(salt.modules.config.get, side_effect=config_get)
    return {gfs2clvm: {"__salt__": {"cmd.run_all": run_all, "config.get": get}, "__context__": {}}}


# ---------------------------------------------------------------- contract
PUBLIC = [
    "name_vm", "name_snap", "name_image", "name_parse", "vm_dir", "lv_create", "lv_remove",
    "lv_list", "lv_info", "lv_activate", "lv_deactivate", "lv_snapshot", "lv_merge", "lv_resize", "copy",
    "chown", "link", "mkswap", "mkfs", "context_iso", "vm_disks", "vm_delete", "check",
    "orphans", "orphans_remove", "vg_usage", "image_info", "export_qcow2", "image_size",
]


def test_public_api_and_cli_examples():
    public = sorted(
        name for name, obj in vars(gfs2clvm).items()
        if inspect.isfunction(obj) and not name.startswith("_") and obj.__module__ == gfs2clvm.__name__
    )
    assert public == sorted(PUBLIC)
    for name in public:
        doc = getattr(gfs2clvm, name).__doc__
        assert "CLI Example:" in doc and f"salt '*' gfs2clvm.{name}" in doc, name


def test_virtual_always_loads():
    assert gfs2clvm.__virtual__() is True
    assert gfs2clvm.__virtualname__ == "gfs2clvm"


def test_fields_are_the_captured_ones():
    """The JSON in tests/unit/data was captured with the module's very field lists."""
    script = data("capture_lvm.sh")
    assert f"LVF={gfs2clvm.LV_FIELDS}\n" in script
    assert f"VGF={gfs2clvm.VG_FIELDS}\n" in script
    assert LVS[-1] == gfs2clvm.LV_FIELDS and VGS[-1] == gfs2clvm.VG_FIELDS


# ---------------------------------------------------------------- parsing
def test_lv_list_parses_real_report(fake):
    fake.lvs("lvs_all.json")
    ret = gfs2clvm.lv_list()
    assert fake.calls == [LVS + [VG]]
    lvs = {lv["name"]: lv for lv in ret["lvs"]}
    assert ret["vg"] == VG and len(lvs) == 10
    assert lvs["lv-one-7-0"] == {
        "name": "lv-one-7-0", "vg": VG, "path": f"/dev/{VG}/lv-one-7-0", "size_mb": 64,
        "attr": "owi-a-s---", "type": "linear", "active": True, "exclusive": True, "shared": False,
        "open": False, "origin": None, "pool": None, "thin": False, "snapshot": False,
        "data_percent": None,
    }
    assert lvs["lv-one-7-1"]["open"] is True
    snap = lvs["lv-one-7-0-s1"]
    assert (snap["snapshot"], snap["origin"], snap["size_mb"], snap["data_percent"]) == (True, "lv-one-7-0", 16, 0.0)
    thin = lvs["lv-one-8-0"]
    assert (thin["thin"], thin["pool"], thin["size_mb"], thin["data_percent"]) == (True, "pool", 256, 7.81)
    tsnap = lvs["lv-one-8-0-s0"]
    assert (tsnap["snapshot"], tsnap["active"], tsnap["open"], tsnap["attr"][-1]) == (True, False, False, "k")
    assert lvs["lv-one-9-0"]["active"] is False
    assert lvs["pool"]["type"] == "thin-pool" and lvs["pool"]["path"] == ""
    json.dumps(ret)


def test_a_grown_lv_with_two_segments_is_one_row(fake):
    """Regression (found in the lab): segment fields gave one row per segment."""
    segments = json.loads(data("lvs_segments.json"))["report"][0]["lv"]
    assert [row["lv_name"] for row in segments] == ["lv-one-70-0", "lv-one-70-0"]
    assert not {"segtype", "seg_size", "devices"} & set(gfs2clvm.LV_FIELDS.split(","))
    fake.lvs("lvs_all.json")
    lvs = [lv for lv in gfs2clvm.lv_list()["lvs"] if lv["name"] == "lv-one-70-0"]
    assert len(lvs) == 1 and lvs[0]["size_mb"] == 24


def test_lv_list_of_a_vm_selects_by_lvm_and_matches_whole_names(fake):
    # even if LVM returned more (e.g. a looser selection), lv-one-70-0 is not VM 7's
    fake.lvs("lvs_all.json")
    ret = gfs2clvm.lv_list(vmid="7")
    assert fake.calls == [LVS + ["-S", "lv_name=~^lv-one-7-", VG]]
    assert [lv["name"] for lv in ret["lvs"]] == ["lv-one-7-0", "lv-one-7-0-s1", "lv-one-7-1"]


def test_lv_list_prefix(fake):
    fake.lvs("lvs_all.json")
    ret = gfs2clvm.lv_list(prefix="lv-oneimg-", vg="vg_other")
    assert fake.calls == [LVS + ["-S", "lv_name=~^lv-oneimg-", "vg_other"]]
    assert [lv["name"] for lv in ret["lvs"]] == ["lv-oneimg-0123456789abcdef0123456789abcdef"]


def test_lv_list_shared_vg_report(fake):
    fake.lvs("lvs_shared2.json")
    lvs = {lv["name"]: lv for lv in gfs2clvm.lv_list()["lvs"]}
    assert lvs["lv-one-3-1"]["active"] is True
    assert lvs["lv-one-4-0-s0"]["snapshot"] is True


def test_lv_info_found_and_absent(fake):
    fake.lvs("lvs_one.json", "lvs_none.json")
    info = gfs2clvm.lv_info("lv-one-7-1")
    assert fake.calls == [LVS + ["-S", "lv_name=lv-one-7-1", VG]]
    assert info["open"] is True and info["size_mb"] == 32
    with pytest.raises(CommandExecutionError, match=f"logical volume {VG}/lv-one-99-0 not found"):
        gfs2clvm.lv_info("lv-one-99-0")


def test_lvs_garbage_is_an_error(fake):
    fake.answer("lvs", "not json")
    with pytest.raises(CommandExecutionError, match="lvs: unparsable JSON report"):
        gfs2clvm.lv_list()


# ---------------------------------------------------------------- unknown VG
UNKNOWN_VG_CALLS = [
    ("lv_create", ("lv-one-1-0",), {"vg": "vg_missing"}),
    ("lv_remove", ("lv-one-1-0",), {"vg": "vg_missing"}),
    ("lv_remove", ("lv-one-1-0",), {"vg": "vg_missing", "missing_ok": True}),
    ("lv_list", (), {"vg": "vg_missing"}),
    ("lv_info", ("lv-one-1-0",), {"vg": "vg_missing"}),
    ("lv_activate", ("lv-one-1-0",), {"vg": "vg_missing"}),
    ("lv_activate", ("lv-one-1-0",), {"vg": "vg_missing", "mode": "shared"}),
    ("lv_deactivate", ("lv-one-1-0",), {"vg": "vg_missing"}),
    ("lv_snapshot", ("lv-one-1-0", "lv-one-1-0-s0"), {"vg": "vg_missing"}),
    ("lv_resize", ("lv-one-1-0", 10), {"vg": "vg_missing"}),
    ("vm_disks", (1,), {"vg": "vg_missing"}),
    ("vm_delete", (1,), {"vg": "vg_missing"}),
    ("orphans", (), {"vg": "vg_missing"}),
    ("orphans_remove", (), {"vg": "vg_missing", "dry_run": False}),
    ("vg_usage", (), {"vg": "vg_missing"}),
]


@pytest.mark.parametrize("fun,args,kwargs", UNKNOWN_VG_CALLS, ids=[f"{c[0]}-{i}" for i, c in enumerate(UNKNOWN_VG_CALLS)])
def test_unknown_vg_runs_only_a_probe(fake, fun, args, kwargs):
    for cmd in ("lvs", "vgs"):
        fake.answer(cmd, data(f"{cmd}_novg.json"), rc=5, stderr=data(f"{cmd}_novg.stderr"))
    with pytest.raises(CommandExecutionError, match=r"^volume group vg_missing not found on this host$"):
        getattr(gfs2clvm, fun)(*args, **kwargs)
    assert fake.calls and not fake.writes()


# ---------------------------------------------------------------- lv_create
def test_lv_create_thick_zeroed(fake):
    fake.lvs("lvs_none.json")
    ret = gfs2clvm.lv_create("lv-one-42-0", size_mb="2G")
    assert fake.calls == [
        LVS + ["-S", "lv_name=lv-one-42-0", VG],
        ["/sbin/lvcreate", "--yes", "-W", "y", "-Z", "y", "-n", "lv-one-42-0", "-L", "2048m", VG],
        ["blkdiscard", "-z", f"/dev/{VG}/lv-one-42-0"],
    ]
    assert ret == {"name": "lv-one-42-0", "vg": VG, "path": f"/dev/{VG}/lv-one-42-0", "size_mb": 2048, "thin": False, "zeroed": True}


def test_lv_create_defaults_and_no_zero(fake, conf):
    conf.update(default_size_mb=512, zero_new=False, vg="vg_x")
    fake.lvs("lvs_none.json")
    ret = gfs2clvm.lv_create("lv-oneimg-0123456789abcdef0123456789abcdef")
    assert fake.writes() == [["/sbin/lvcreate", "--yes", "-W", "y", "-Z", "y", "-n", "lv-oneimg-0123456789abcdef0123456789abcdef", "-L", "512m", "vg_x"]]
    assert ret["zeroed"] is False and ret["size_mb"] == 512


def test_lv_create_thin_in_pool_is_not_zeroed(fake, conf):
    conf["thin_pool"] = "pool"
    fake.lvs("lvs_none.json")
    ret = gfs2clvm.lv_create("lv-one-42-0", size_mb=100)
    assert fake.writes() == [["/sbin/lvcreate", "--yes", "-W", "y", "-n", "lv-one-42-0", "-V", "100m", "--thin", f"{VG}/pool"]]
    assert ret["thin"] is True and ret["zeroed"] is False
    fake.calls.clear()
    assert gfs2clvm.lv_create("lv-one-42-1", size_mb=100, thin=False)["thin"] is False
    assert fake.writes()[0][-1] == VG


def test_lv_create_thin_without_pool_is_bad_input(fake):
    with pytest.raises(SaltInvocationError, match="thin_pool"):
        gfs2clvm.lv_create("lv-one-42-0", thin=True)
    assert fake.calls == []


def test_lv_create_refuses_existing(fake):
    fake.lvs("lvs_one.json")
    with pytest.raises(CommandExecutionError, match=f"{VG}/lv-one-7-1 already exists"):
        gfs2clvm.lv_create("lv-one-7-1", size_mb=10)
    assert not fake.writes()


def test_lv_create_error_is_one_line_from_real_stderr(fake):
    fake.lvs("lvs_none.json")
    fake.answer("lvcreate", rc=5, stderr=data("lvcreate_nospace.stderr"))
    with pytest.raises(CommandExecutionError) as err:
        gfs2clvm.lv_create("lv-one-5-0", size_mb="100G")
    assert str(err.value) == 'lvcreate failed (rc 5): Volume group "vg_cloudstorage" has insufficient free space (927 extents): 25600 required.'


def test_lv_create_removes_the_lv_when_zeroing_fails(fake):
    """Atomic: blkdiscard fails, the BLKZEROOUT fallback fails (no such device here) -> lvremove, re-raise."""
    fake.lvs("lvs_none.json")
    fake.answer("blkdiscard", rc=1, stderr="blkdiscard: cannot open /dev/vg_cloudstorage/lv-one-42-0: No such file or directory")
    with pytest.raises(CommandExecutionError, match=f"cannot zero /dev/{VG}/lv-one-42-0"):
        gfs2clvm.lv_create("lv-one-42-0", size_mb=8)
    assert fake.writes()[-1] == ["/sbin/lvremove", "--yes", f"{VG}/lv-one-42-0"]
    assert fake.names() == ["lvs", "lvcreate", "blkdiscard", "lvremove"]


def test_zero_device_falls_back_to_blkzeroout(fake, tmp_path):
    """Without blkdiscard the BLKZEROOUT ioctl is used (on a loop-free host: on a mock fd)."""
    fake.answer("blkdiscard", rc=127, stderr="blkdiscard: not found")
    target = tmp_path / "dev"
    target.write_bytes(b"x" * 8192)
    with patch.object(gfs2clvm.fcntl, "ioctl") as ioctl:
        assert gfs2clvm._zero_device(str(target)) == "ioctl"
    request, arg = ioctl.call_args[0][1:]
    assert request == 0x127F and arg == gfs2clvm.struct.pack("QQ", 0, 8192)


# ---------------------------------------------------------------- lv_remove
def test_lv_remove_plain(fake):
    fake.lvs("lvs_after.json")
    ret = gfs2clvm.lv_remove("lv-one-70-0")
    assert fake.calls == [LVS + ["-S", "lv_name=lv-one-70-0", VG], ["/sbin/lvremove", "--yes", f"{VG}/lv-one-70-0"]]
    assert ret == {"name": "lv-one-70-0", "vg": VG, "removed": True, "wiped": False}


def test_lv_remove_refuses_open_lv(fake):
    fake.lvs("lvs_one.json")
    with pytest.raises(CommandExecutionError, match="lv-one-7-1 is open"):
        gfs2clvm.lv_remove("lv-one-7-1")
    assert not fake.writes()


def test_lv_remove_missing(fake):
    fake.lvs("lvs_none.json")
    assert gfs2clvm.lv_remove("lv-one-99-0", missing_ok=True)["removed"] is False
    with pytest.raises(CommandExecutionError, match="not found"):
        gfs2clvm.lv_remove("lv-one-99-0")
    assert not fake.writes()


def test_lv_remove_real_lvm_error_line(fake):
    fake.lvs("lvs_after.json")
    fake.answer("lvremove", rc=5, stderr=data("lvremove_open.stderr"))
    with pytest.raises(CommandExecutionError, match=r"^lvremove failed \(rc 5\): Logical volume vg_cloudstorage/lv-one-7-1 in use\.$"):
        gfs2clvm.lv_remove("lv-one-7-1")


def test_lv_remove_wipe_active_inactive_thin(fake):
    fake.lvs("lvs_all.json")  # the fake ignores -S: _lv_get keeps the whole-name match
    assert gfs2clvm.lv_remove("lv-one-70-0", wipe=True)["wiped"] is True
    assert fake.writes() == [["blkdiscard", "-z", f"/dev/{VG}/lv-one-70-0"], ["/sbin/lvremove", "--yes", f"{VG}/lv-one-70-0"]]
    fake.calls.clear()
    gfs2clvm.lv_remove("lv-one-9-0", wipe=True)  # inactive: activate exclusively first
    assert fake.writes() == [
        ["/sbin/lvchange", "-aey", f"{VG}/lv-one-9-0"],
        ["blkdiscard", "-z", f"/dev/{VG}/lv-one-9-0"],
        ["/sbin/lvremove", "--yes", f"{VG}/lv-one-9-0"],
    ]
    fake.calls.clear()
    assert gfs2clvm.lv_remove("lv-one-8-0", wipe=True)["wiped"] is False  # thin: the pool zeroes
    assert fake.writes() == [["/sbin/lvremove", "--yes", f"{VG}/lv-one-8-0"]]


def test_lv_remove_wipe_from_config(fake, conf):
    conf["wipe_on_delete"] = True
    fake.lvs("lvs_all.json")
    gfs2clvm.lv_remove("lv-one-70-0")
    assert fake.names() == ["lvs", "blkdiscard", "lvremove"]


# ---------------------------------------------------------------- activation
def test_lv_activate_modes(fake):
    fake.lvs("lvs_all.json")
    assert gfs2clvm.lv_activate("lv-one-9-0") == {"name": "lv-one-9-0", "vg": VG, "active": True, "mode": "exclusive"}
    gfs2clvm.lv_activate("lv-one-9-0", mode="shared", vg="vg_x")
    assert fake.calls == [
        LVS + ["-S", "lv_name=lv-one-9-0", VG],
        ["/sbin/lvchange", "-aey", "-K", f"{VG}/lv-one-9-0"],
        LVS + ["-S", "lv_name=lv-one-9-0", "vg_x"],
        ["/sbin/lvchange", "-asy", "-K", "vg_x/lv-one-9-0"],
    ]
    fake.calls.clear()
    gfs2clvm.lv_activate("lv-one-8-0-s0")  # thin snapshot with the activation-skip flag: -K
    assert fake.writes() == [["/sbin/lvchange", "-aey", "-K", f"{VG}/lv-one-8-0-s0"]]


def test_lv_activate_shared_thin_is_refused_before_lvchange(fake):
    fake.lvs("lvs_all.json")
    with pytest.raises(CommandExecutionError, match="lv-one-8-0 is a thin LV: lvmlockd allows thin LVs only exclusively"):
        gfs2clvm.lv_activate("lv-one-8-0", mode="shared")
    assert not fake.writes()


def test_lv_activate_lvm_refusal_is_one_line(fake):
    """What LVM itself says when shared activation is refused (captured with lvmlockd)."""
    fake.lvs("lvs_shared.json")
    fake.answer("lvchange", rc=5, stderr=data("lvchange_asy_thin.stderr"))
    with pytest.raises(CommandExecutionError) as err:
        gfs2clvm.lv_activate("lv-one-3-1", mode="shared")
    assert str(err.value) == "lvchange failed (rc 5): Shared activation not compatible with LV type thin-pool of vg_cloudstorage/pool"


def test_lv_deactivate(fake):
    fake.lvs("lvs_all.json", "lvs_none.json")
    assert gfs2clvm.lv_deactivate("lv-one-7-0") == {"name": "lv-one-7-0", "vg": VG, "active": False}
    assert fake.calls == [LVS + ["-S", "lv_name=lv-one-7-0", VG], ["/sbin/lvchange", "-an", f"{VG}/lv-one-7-0"]]
    with pytest.raises(CommandExecutionError, match="lv-one-99-0 not found"):
        gfs2clvm.lv_deactivate("lv-one-99-0")
    assert len(fake.writes()) == 1


# ---------------------------------------------------------------- snapshot / resize
def test_lv_snapshot_thick_default_is_full_size(fake):
    """Issue 13.2: the default COW area holds the whole origin plus its exception
    metadata, so rewriting all of the origin cannot invalidate the snapshot."""
    fake.lvs("lvs_all.json")
    ret = gfs2clvm.lv_snapshot("lv-one-7-0", "lv-one-7-0-s2")  # 64 + 64/256 -> 1 + header 1
    assert fake.writes() == [["/sbin/lvcreate", "--yes", "-s", "-n", "lv-one-7-0-s2", "-L", "66m", f"{VG}/lv-one-7-0"]]
    assert ret["size_mb"] == 66
    fake.calls.clear()
    gfs2clvm.lv_snapshot("lv-one-9-0", "lv-one-9-0-s0")
    assert fake.writes()[0][-3:] == ["-L", "10m", f"{VG}/lv-one-9-0"]
    assert gfs2clvm._cow_size_mb(10240, 100) == 10240 + 40 + 1
    assert gfs2clvm._cow_size_mb(10241, 100) == 10241 + 41 + 1


def test_lv_snapshot_thick_pct_size(fake, conf):
    conf["snapshot_size_pct"] = 20
    fake.lvs("lvs_all.json")
    ret = gfs2clvm.lv_snapshot("lv-one-9-0", "lv-one-9-0-s0")
    # 20 % of 8 MiB = 1.6 -> at least 4 MiB
    assert fake.writes() == [["/sbin/lvcreate", "--yes", "-s", "-n", "lv-one-9-0-s0", "-L", "4m", f"{VG}/lv-one-9-0"]]
    assert ret == {"name": "lv-one-9-0-s0", "vg": VG, "origin": "lv-one-9-0", "path": f"/dev/{VG}/lv-one-9-0-s0", "thin": False, "size_mb": 4}
    fake.calls.clear()
    gfs2clvm.lv_snapshot("lv-one-70-0", "lv-one-70-0-s0")  # 24 MiB * 20 % = 4.8 -> 5
    assert fake.writes()[0][-3:] == ["-L", "5m", f"{VG}/lv-one-70-0"]
    fake.calls.clear()
    gfs2clvm.lv_snapshot("lv-one-7-0", "lv-one-7-0-s2")  # 64 MiB * 20 % = 12.8 -> 13
    assert fake.writes()[0][-3:] == ["-L", "13m", f"{VG}/lv-one-7-0"]
    fake.calls.clear()
    gfs2clvm.lv_snapshot("lv-one-7-0", "lv-one-7-0-s3", size_mb="1G")
    assert fake.writes()[0][-3:] == ["-L", "1024m", f"{VG}/lv-one-7-0"]


def test_lv_merge_is_lvconvert_merge(fake):
    """Revert of a thick snapshot: LVM's merge (never a copy through the snapshot)."""
    fake.lvs("lvs_all.json", "lvs_all.json", "lvs_all.json", "lvs_none.json")
    ret = gfs2clvm.lv_merge("lv-one-7-0-s1")
    assert ret == {"name": "lv-one-7-0-s1", "vg": VG, "origin": "lv-one-7-0", "merged": True}
    assert fake.writes() == [["/sbin/lvconvert", "--yes", "--merge", f"{VG}/lv-one-7-0-s1"]]


def test_lv_merge_activates_an_inactive_origin_and_deactivates_it_again(fake):
    inactive = data("lvs_all.json").replace(
        '"lv-one-7-0", "vg_name":"vg_cloudstorage", "lv_path":"/dev/vg_cloudstorage/lv-one-7-0", "lv_size":"64.00", '
        '"lv_attr":"owi-a-s---", "lv_layout":"linear", "lv_active":"active", "lv_active_locally":"active locally"',
        '"lv-one-7-0", "vg_name":"vg_cloudstorage", "lv_path":"/dev/vg_cloudstorage/lv-one-7-0", "lv_size":"64.00", '
        '"lv_attr":"owi---s---", "lv_layout":"linear", "lv_active":"", "lv_active_locally":""')
    assert inactive != data("lvs_all.json")
    for text in (inactive, inactive, data("lvs_all.json"), data("lvs_none.json")):
        fake.answer("lvs", text)
    gfs2clvm.lv_merge("lv-one-7-0-s1")
    assert fake.writes() == [["/sbin/lvchange", "-aey", f"{VG}/lv-one-7-0"],
                             ["/sbin/lvconvert", "--yes", "--merge", f"{VG}/lv-one-7-0-s1"],
                             ["/sbin/lvchange", "-an", f"{VG}/lv-one-7-0"]]


def test_lv_merge_refuses_invalid_snapshot_thin_open_origin(fake):
    invalid = data("lvs_all.json").replace('"lv_attr":"swi-a-s---"', '"lv_attr":"swi-I-s---"')
    assert invalid != data("lvs_all.json")
    fake.answer("lvs", invalid)
    with pytest.raises(CommandExecutionError, match=r"lv-one-7-0-s1 is invalid \(its copy-on-write area overflowed"):
        gfs2clvm.lv_merge("lv-one-7-0-s1")
    fake.answers.clear()
    fake.lvs("lvs_all.json")
    with pytest.raises(CommandExecutionError, match="not a thick snapshot"):
        gfs2clvm.lv_merge("lv-one-8-0-s0")
    with pytest.raises(CommandExecutionError, match="not a thick snapshot"):
        gfs2clvm.lv_merge("lv-one-7-0")
    with pytest.raises(SaltInvocationError):
        gfs2clvm.lv_merge("bad name")
    assert not fake.writes()


def test_lv_merge_that_did_not_finish_is_an_error(fake):
    fake.lvs("lvs_all.json")
    with pytest.raises(CommandExecutionError, match="did not finish"):
        gfs2clvm.lv_merge("lv-one-7-0-s1")


def test_lv_snapshot_thin_origin(fake):
    fake.lvs("lvs_all.json")
    ret = gfs2clvm.lv_snapshot("lv-one-8-0", "lv-one-8-0-s1")
    assert fake.writes() == [["/sbin/lvcreate", "--yes", "-s", "-n", "lv-one-8-0-s1", f"{VG}/lv-one-8-0"]]
    assert ret["thin"] is True and ret["size_mb"] == 256


def test_lv_snapshot_refuses_open_origin_and_existing_name(fake):
    fake.lvs("lvs_all.json")
    with pytest.raises(CommandExecutionError, match="lv-one-7-1 is open"):
        gfs2clvm.lv_snapshot("lv-one-7-1", "lv-one-7-1-s0")
    with pytest.raises(CommandExecutionError, match="lv-one-7-0-s1 already exists"):
        gfs2clvm.lv_snapshot("lv-one-7-0", "lv-one-7-0-s1")
    with pytest.raises(CommandExecutionError, match="lv-one-99-0 not found"):
        gfs2clvm.lv_snapshot("lv-one-99-0", "lv-one-99-0-s0")
    assert not fake.writes()


def test_lv_resize_grow_only(fake):
    fake.lvs("lvs_all.json")
    ret = gfs2clvm.lv_resize("lv-one-7-0", "1G")
    assert fake.writes() == [["/sbin/lvextend", "--yes", "-L", "1024m", f"{VG}/lv-one-7-0"]]
    assert ret == {"name": "lv-one-7-0", "vg": VG, "size_mb": 1024, "previous_mb": 64, "resized": True}
    fake.calls.clear()
    assert gfs2clvm.lv_resize("lv-one-7-0", 64)["resized"] is False
    with pytest.raises(CommandExecutionError, match="refusing to shrink"):
        gfs2clvm.lv_resize("lv-one-7-0", 8)
    assert not fake.writes()


def test_lv_resize_lvm_error_line(fake):
    fake.lvs("lvs_all.json")
    fake.answer("lvextend", rc=5, stderr=data("lvextend_smaller.stderr"))
    with pytest.raises(CommandExecutionError, match=r"^lvextend failed \(rc 5\): New size given"):
        gfs2clvm.lv_resize("lv-one-7-0", 100)


# ---------------------------------------------------------------- sudo
def test_sudo_prefix(fake, conf):
    conf["sudo"] = True
    fake.lvs("lvs_none.json")
    gfs2clvm.lv_create("lv-one-42-0", size_mb=8, zero=False)
    assert fake.calls == [
        ["sudo", "-n"] + LVS + ["-S", "lv_name=lv-one-42-0", VG],
        ["sudo", "-n", "/sbin/lvcreate", "--yes", "-W", "y", "-Z", "y", "-n", "lv-one-42-0", "-L", "8m", VG],
    ]


@pytest.mark.parametrize("euid,prefix", [(0, []), (1000, ["sudo", "-n"])])
def test_sudo_auto(fake, conf, euid, prefix):
    conf.update(sudo="auto", lvm_bin="/usr/sbin")
    fake.lvs("lvs_all.json")
    with patch.object(gfs2clvm.os, "geteuid", return_value=euid):
        gfs2clvm.lv_deactivate("lv-one-9-0")
    assert fake.calls == [
        prefix + ["/usr/sbin/lvs"] + LVS[1:] + ["-S", "lv_name=lv-one-9-0", VG],
        prefix + ["/usr/sbin/lvchange", "-an", f"{VG}/lv-one-9-0"],
    ]


def test_sudo_refusal_is_explained(fake, conf):
    conf["sudo"] = True
    fake.answer("lvs", rc=1, stderr="sudo: a password is required\n")
    with pytest.raises(CommandExecutionError, match=r"^lvs failed \(rc 1\): sudo: a password is required \(is there a NOPASSWD sudoers rule for /sbin/lvs\?\)$"):
        gfs2clvm.lv_deactivate("lv-one-1-0")


def test_runner_turns_a_missing_binary_into_one_line(configure_loader_modules):
    run_all = configure_loader_modules[gfs2clvm]["__salt__"]["cmd.run_all"]
    run_all.side_effect = CommandExecutionError("Unable to run command '['mkswap', 'x']' with the context ...\nmore")
    with pytest.raises(CommandExecutionError, match=r"^mkswap: Unable to run command"):
        gfs2clvm._run(["mkswap", "x"])


# ---------------------------------------------------------------- VMs
def _vm_tree(mnt, vmid=7, links=None):
    vmdir = mnt / "datastores" / "0" / str(vmid)
    vmdir.mkdir(parents=True)
    for name, target in (links or {}).items():
        (vmdir / name).symlink_to(target)
    (vmdir / "deployment.0").write_text("<domain/>")
    return vmdir


def test_vm_disks(fake, mnt):
    _vm_tree(mnt, 7, {"disk.0": f"/dev/{VG}/lv-one-7-0", "disk.2": str(mnt / "datastores/0/7/disk.2.iso")})
    _vm_tree(mnt, 70, {"disk.0": f"/dev/{VG}/lv-one-70-0"})
    fake.lvs("lvs_vm7.json")
    ret = gfs2clvm.vm_disks("7")
    assert fake.calls == [LVS + ["-S", "lv_name=~^lv-one-7-", VG]]
    assert [d["name"] for d in ret["disks"]] == ["lv-one-7-0", "lv-one-7-0-s1", "lv-one-7-1"]
    assert ret["links"] == [
        {"path": str(mnt / "datastores/0/7/disk.0"), "target": f"/dev/{VG}/lv-one-7-0", "lv": "lv-one-7-0", "exists": False},
        {"path": str(mnt / "datastores/0/7/disk.2"), "target": str(mnt / "datastores/0/7/disk.2.iso"), "lv": None, "exists": False},
    ]


def test_vm_delete_refuses_while_a_disk_is_open(fake, mnt):
    vmdir = _vm_tree(mnt)
    fake.lvs("lvs_vm7.json")
    with pytest.raises(CommandExecutionError, match="VM 7 still uses lv-one-7-1 \\(open\\): nothing removed"):
        gfs2clvm.vm_delete(7, path=str(vmdir))
    assert not fake.writes() and vmdir.exists()


def test_vm_delete_removes_exactly_the_vm(fake, mnt):
    vmdir = _vm_tree(mnt, 7, {"disk.0": f"/dev/{VG}/lv-one-7-0"})
    other = _vm_tree(mnt, 70)
    fake.lvs("lvs_after.json")  # whole VG returned: only VM 7's names may be removed
    ret = gfs2clvm.vm_delete(7, path=str(vmdir) + "/")
    assert fake.writes() == [["/sbin/lvremove", "--yes", f"{VG}/lv-one-7-0-s1", f"{VG}/lv-one-7-0", f"{VG}/lv-one-7-1"]]
    assert ret == {"vmid": 7, "vg": VG, "removed": ["lv-one-7-0-s1", "lv-one-7-0", "lv-one-7-1"], "wiped": [], "dir": str(vmdir)}
    assert not vmdir.exists() and other.exists()


def test_vm_delete_wipe_removes_snapshots_first(fake, mnt):
    fake.lvs("lvs_after.json")
    ret = gfs2clvm.vm_delete(7, wipe=True)
    assert fake.writes() == [
        ["/sbin/lvremove", "--yes", f"{VG}/lv-one-7-0-s1"],
        ["blkdiscard", "-z", f"/dev/{VG}/lv-one-7-0"],
        ["blkdiscard", "-z", f"/dev/{VG}/lv-one-7-1"],
        ["/sbin/lvremove", "--yes", f"{VG}/lv-one-7-0", f"{VG}/lv-one-7-1"],
    ]
    assert ret["wiped"] == ["lv-one-7-0", "lv-one-7-1"] and ret["dir"] is None


def test_vm_delete_without_lvs_or_dir(fake, mnt):
    fake.lvs("lvs_none.json")
    assert gfs2clvm.vm_delete(99, path=str(mnt / "datastores/0/99")) == {"vmid": 99, "vg": VG, "removed": [], "wiped": [], "dir": None}
    assert not fake.writes()


def test_orphans_and_remove(fake, mnt):
    _vm_tree(mnt, 7, {"disk.0": f"/dev/{VG}/lv-one-7-0", "disk.5": f"/dev/{VG}/lv-one-7-5"})
    _vm_tree(mnt, 12, {"disk.0": f"/dev/{VG}/lv-one-70-0", "disk.1": str(mnt / "gone.img")})
    fake.lvs("lvs_after.json")
    ret = gfs2clvm.orphans()
    assert fake.calls == [LVS[:-1] + [LVS[-1] + ",lv_time", VG]]  # orphans also reads when each LV was made
    assert [(lv["name"], lv["reason"]) for lv in ret["lvs"]] == [
        ("lv-one-8-0", "no VM directory links it"),
        ("lv-one-8-0-s0", "no VM directory links it"),
        ("lv-one-9-0", "no VM directory links it"),
    ]
    assert ret["links"] == [
        {"path": str(mnt / "datastores/0/12/disk.1"), "target": str(mnt / "gone.img")},
        {"path": str(mnt / "datastores/0/7/disk.5"), "target": f"/dev/{VG}/lv-one-7-5"},
    ]
    by_ids = gfs2clvm.orphans(vmids=[7, 9])
    assert [lv["name"] for lv in by_ids["lvs"]] == ["lv-one-70-0", "lv-one-8-0", "lv-one-8-0-s0"]
    fake.calls.clear()
    dry = gfs2clvm.orphans_remove()
    assert dry == {"vg": VG, "dry_run": True, "lvs": ["lv-one-8-0-s0", "lv-one-8-0", "lv-one-9-0"], "skipped": [],
                   "links": [str(mnt / "datastores/0/12/disk.1"), str(mnt / "datastores/0/7/disk.5")], "dirs": [],
                   "young": []}
    assert not fake.writes() and (mnt / "datastores/0/7/disk.5").is_symlink()
    done = gfs2clvm.orphans_remove(vmids="7,9,12", dry_run=False)
    # lv-one-70-0 belongs to VM 70, which is not in the list (whole-name ids, not prefixes)
    assert fake.writes() == [["/sbin/lvremove", "--yes", f"{VG}/lv-one-8-0-s0", f"{VG}/lv-one-70-0", f"{VG}/lv-one-8-0"]]
    assert done["lvs"] == ["lv-one-8-0-s0", "lv-one-70-0", "lv-one-8-0"] and done["skipped"] == []
    assert not (mnt / "datastores/0/7/disk.5").is_symlink() and not (mnt / "datastores/0/12/disk.1").is_symlink()
    assert (mnt / "datastores/0/7/disk.0").is_symlink()


def test_orphans_remove_skips_open(fake, mnt):
    fake.lvs("lvs_all.json")
    ret = gfs2clvm.orphans_remove(vmids=[], dry_run=False)
    assert "lv-one-7-1" in ret["skipped"] and "lv-one-7-1" not in ret["lvs"]
    removed = fake.writes()[0]
    assert f"{VG}/lv-one-7-1" not in removed and removed[2] == f"{VG}/lv-one-7-0-s1"


# ---------------------------------------------------------------- vg_usage / check
def test_vg_usage(fake, conf):
    fake.answer("vgs", data("vgs_one.json"))
    ret = gfs2clvm.vg_usage()
    assert fake.calls == [VGS + [VG]]
    assert ret == {"vg": VG, "total_mb": 4092, "used_mb": 384, "free_mb": 3708, "extent_mb": 4, "lv_count": 10,
                   "shared": False, "lock_type": None, "thin_pool": None}
    fake.answers["vgs"] = [(0, data("vgs_shared.json"), "")]
    fake.lvs("lvs_all.json")
    conf["thin_pool"] = "pool"
    ret = gfs2clvm.vg_usage()
    assert (ret["shared"], ret["lock_type"]) == (True, "sanlock")
    assert ret["thin_pool"] == {"name": "pool", "size_mb": 128, "used_mb": 19, "data_percent": 15.62}


def test_check_reports_instead_of_raising(fake, conf, tmp_path):
    fake.answer("vgs", data("vgs_novg.json"), rc=5, stderr=data("vgs_novg.stderr"))
    misc = tmp_path / "misc"
    misc.write_text(" 63 device-mapper\n237 loop-control\n")
    conf["mount_check"] = "gfs2"
    with patch.object(gfs2clvm, "PROC_MISC", str(misc)):
        ret = gfs2clvm.check()
    assert ret["ok"] is False
    checks = ret["checks"]
    assert set(checks) == {"config", "lvm", "device_mapper", "sudo", "lvmlockd", "vg", "thin_pool", "mount", "tools",
                           "udev", "libvirt"}
    assert checks["device_mapper"] == {"ok": True, "detail": "device-mapper available"}
    assert checks["vg"] == {"ok": False, "detail": "volume group vg_cloudstorage not found on this host"}
    assert checks["mount"]["ok"] is False and "not a mounted gfs2 file system" in checks["mount"]["detail"]
    assert not fake.writes()
    json.dumps(ret)


def test_check_shared_vg_ok_and_bad_config(fake, conf):
    fake.answer("vgs", data("vgs_shared.json"))
    assert gfs2clvm.check()["checks"]["vg"] == {"ok": True, "detail": "vg_cloudstorage: 4092 MiB, 3716 MiB free, lock type sanlock"}
    conf["mount_check"] = "sometimes"
    ret = gfs2clvm.check()
    assert ret == {"ok": False, "checks": {"config": {"ok": False, "detail": "gfs2clvm setting mount_check: mount_check must be one of gfs2, mount, none, not 'sometimes'"}}}


def test_sudo_check_lists_missing_rules(fake, conf):
    conf["sudo"] = True
    fake.answer("sudo -l", rc=1, stderr="Sorry")
    ok, detail = gfs2clvm._check_sudo(gfs2clvm._config())
    assert not ok and detail == "no NOPASSWD sudo rule for lvs, vgs, lvcreate, lvremove, lvchange, lvextend"
    assert fake.calls[0] == ["sudo", "-n", "-l"] + LVS + [VG]
    # every probe is an argv shape the module really runs (the fixture checks them
    # against the formula's rule when the test ends)
    assert [c[3].rsplit("/", 1)[-1] for c in fake.calls] == ["lvs", "vgs", "lvcreate", "lvremove", "lvchange", "lvextend"]


def test_sudo_check_refuses_a_rule_with_free_arguments(fake, conf):
    """sudo -l allows every probe AND ``lvs --config ...``: the rule is root for oneadmin."""
    conf["sudo"] = True
    ok, detail = gfs2clvm._check_sudo(gfs2clvm._config())
    assert not ok and "allows any arguments" in detail and "--config" in detail
    assert fake.calls[-1] == ["sudo", "-n", "-l", "/sbin/lvs", "--config", "log/level=0", VG]


def test_sudo_check_accepts_the_restricted_rule(fake, conf):
    conf["sudo"] = True
    for rc in (0, 0, 0, 0, 0, 0, 1, 1):  # six probes allowed, then --config denied
        fake.answer("sudo -l", rc=rc)
    ok, detail = gfs2clvm._check_sudo(gfs2clvm._config())
    assert ok and detail == "sudo -n allowed for the LVM commands, with the module's arguments only", detail
    assert len(fake.calls) == 7


# ---------------------------------------------------------------- mount check
def _mountinfo(tmp_path, mountpoint, fstype):
    path = tmp_path / "mountinfo"
    path.write_text(
        "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        f"97 22 253:3 / {mountpoint} rw,relatime shared:40 - {fstype} /dev/mapper/vg-gfs2 rw,lockproto=lock_dlm\n"
    )
    return path


@pytest.mark.parametrize("mode,fstype,ok", [
    ("gfs2", "gfs2", True), ("gfs2", "ext4", False), ("mount", "ext4", True), ("gfs2", None, False), ("mount", None, False),
])
def test_mount_check_guards_writes(fake, conf, mnt, tmp_path, mode, fstype, ok):
    conf["mount_check"] = mode
    info = _mountinfo(tmp_path, str(mnt) if fstype else "/elsewhere", fstype or "gfs2")
    with patch.object(gfs2clvm, "MOUNTINFO", str(info)):
        if ok:
            gfs2clvm.link(f"/dev/{VG}/lv-one-1-0", str(mnt / "datastores/0/1/disk.0"))
            assert (mnt / "datastores/0/1/disk.0").is_symlink()
        else:
            with pytest.raises(CommandExecutionError, match="refusing to write there"):
                gfs2clvm.link(f"/dev/{VG}/lv-one-1-0", str(mnt / "datastores/0/1/disk.0"))
            assert not (mnt / "datastores").exists()


# ---------------------------------------------------------------- names
def test_names():
    assert gfs2clvm.name_vm(42, "0") == "lv-one-42-0"
    assert gfs2clvm.name_snap("42", 0, 3) == "lv-one-42-0-s3"
    assert gfs2clvm.name_image("0123456789abcdef0123456789abcdef") == "lv-oneimg-0123456789abcdef0123456789abcdef"
    hashed = gfs2clvm.name_image("100-7")
    assert re.match(r"^lv-oneimg-[0-9a-f]{32}$", hashed) and hashed == gfs2clvm.name_image("100-7")
    assert gfs2clvm.name_image(7) == gfs2clvm.name_image("7") != hashed
    assert gfs2clvm.name_parse("lv-one-42-0-s3") == {"name": "lv-one-42-0-s3", "kind": "snapshot", "vmid": 42, "diskid": 0, "snapid": 3}
    assert gfs2clvm.name_parse("lv-one-42-1")["kind"] == "disk"
    assert gfs2clvm.name_parse(hashed)["kind"] == "image"
    assert gfs2clvm.name_parse("gfs2")["kind"] == "other"
    assert gfs2clvm.name_parse("lv-one-42-1-x")["kind"] == "other"


def test_vm_dir(mnt):
    assert gfs2clvm.vm_dir(0, "42") == f"{mnt}/datastores/0/42"


# ---------------------------------------------------------------- bad input: nothing runs
MP = "/MNT"  # replaced by the mountpoint
BAD_IDS = ["abc", -1, "-1", 2**31, "2147483648", True, "1;2", "4 2", "../1", 1.5, None, "0x10"]
BAD_NAMES = ["lv;rm", "lv one", "lv'x", 'lv"x', "../x", "", "x" * 65, "-x", "a/b", "lv\nx", None, 5]
BAD_SIZES = [0, -5, "0", "-1G", "10X", "1.5G", True, "", "1 G", None]
BAD_VGS = ["vg;x", "vg x", "..", "", "vg'x", "x" * 65]
BAD_PATHS = ["relative/path", f"{MP}/../etc/passwd", "/etc/passwd", f"{MP}/a;b", f"{MP}/a b", f"{MP}/a'b",
             f'{MP}/a"b', f"{MP}/a\nb", MP, "", None]

CASES = []


def case(fun, *args, **kwargs):
    CASES.append((fun, args, kwargs))


for bad in BAD_IDS:
    case("name_vm", bad, 0)
    case("name_vm", 0, bad)
    case("name_snap", 1, 0, bad)
    case("vm_dir", bad, 1)
    case("vm_dir", 0, bad)
    case("vm_disks", bad)
    case("vm_delete", bad)
    if bad is not None:  # vmid=None means "the whole VG"
        case("lv_list", vmid=bad)
    case("orphans", vmids=[1, bad])
    case("orphans_remove", vmids=[bad], dry_run=False)
for bad in BAD_NAMES:
    case("lv_create", bad, 10)
    case("lv_remove", bad)
    case("lv_info", bad)
    case("lv_activate", bad)
    case("lv_deactivate", bad)
    case("lv_snapshot", bad, "lv-one-1-0-s0")
    case("lv_snapshot", "lv-one-1-0", bad)
    case("lv_merge", bad)
    case("lv_resize", bad, 10)
    case("name_parse", bad)
for bad in BAD_SIZES:
    if bad is not None:
        case("lv_create", "lv-one-1-0", bad)
    case("lv_resize", "lv-one-1-0", bad)
    if bad is not None:
        case("lv_snapshot", "lv-one-1-0", "lv-one-1-0-s0", size_mb=bad)
for bad in BAD_VGS:
    for fun, args in (("lv_create", ("lv-one-1-0", 10)), ("lv_remove", ("lv-one-1-0",)), ("lv_list", ()),
                      ("lv_info", ("lv-one-1-0",)), ("lv_activate", ("lv-one-1-0",)), ("lv_deactivate", ("lv-one-1-0",)),
                      ("lv_snapshot", ("lv-one-1-0", "s")), ("lv_resize", ("lv-one-1-0", 10)), ("vm_disks", (1,)),
                      ("vm_delete", (1,)), ("orphans", ()), ("orphans_remove", ()), ("vg_usage", ())):
        if bad != "":
            case(fun, *args, vg=bad)
for bad in BAD_PATHS:
    case("copy", bad, f"{MP}/dst")
    case("copy", f"{MP}/src", bad)
    case("chown", bad)
    case("link", f"/dev/{VG}/lv-one-1-0", bad)
    case("link", bad, f"{MP}/datastores/0/1/disk.0")
    case("mkswap", bad)
    case("mkfs", bad, "ext4")
    case("context_iso", bad, {"a": "QQ=="})
    if bad is not None:  # path=None means "leave directories alone"
        case("vm_delete", 1, path=bad)
for bad in ("", "x", 1, "flat", "only"):
    case("lv_activate", "lv-one-1-0", mode=bad)
    case("copy", f"{MP}/src", f"{MP}/dst", fmt=bad)
    case("mkfs", f"{MP}/f", bad)
case("name_image", "a b")
case("name_image", "a;b")
case("name_image", "")
case("name_image", None)
case("lv_create", "lv-one-1-0", 10, thin="maybe")
case("lv_create", "lv-one-1-0", 10, zero="yes")
case("lv_remove", "lv-one-1-0", wipe="perhaps")
case("lv_remove", "lv-one-1-0", missing_ok="x")
case("lv_list", vmid=1, prefix="lv-")
case("lv_list", prefix="lv.+")
case("lv_list", prefix="a;b")
case("copy", "ftp://example.org/x", f"{MP}/dst")
case("copy", "http://example.org/a b", f"{MP}/dst")
case("copy", "http://example.org/a'b", f"{MP}/dst")
case("copy", f"{MP}/src", "http://example.org/x")
case("copy", "http://example.org/x.qcow2", f"{MP}/dst", fmt="qcow2")
case("copy", f"{MP}/src", f"{MP}/src")
case("copy", f"{MP}/src", f"{MP}/dst", sha256="abc")
case("image_info", "/etc/passwd")
case("image_info", "ftp://example.org/x.qcow2")
case("image_info", "http://example.org/a b")
case("image_info", f"{MP}/../etc/x")
case("copy", f"{MP}/src", f"{MP}/dst", sparse="sometimes")
case("chown", f"{MP}/f", user="bad user")
case("chown", f"{MP}/f", group="root;")
case("chown", f"/dev/{VG}/lv-one-1-0")
case("link", f"/dev/{VG}/lv-one-1-0", f"/dev/{VG}/lv-one-1-1")
case("link", "/etc/passwd", f"{MP}/datastores/0/1/disk.0")
case("link", f"/dev/{VG}/lv-one-1-0", f"{MP}/d/disk.0", force="x")
case("context_iso", f"{MP}/ctx.iso", {"../x": "QQ=="})
case("context_iso", f"{MP}/ctx.iso", {"a b": "QQ=="})
case("context_iso", f"{MP}/ctx.iso", {"a": "not base64!"})
case("context_iso", f"{MP}/ctx.iso", ["a"])
case("context_iso", f"{MP}/ctx.iso", {"a": "QQ=="}, label="bad label")
case("context_iso", f"/dev/{VG}/lv-one-1-0", {"a": "QQ=="})
case("vm_delete", 1, path=f"{MP}/datastores/0/2")
case("vm_delete", 1, wipe="x")
case("orphans", vmids="1;2")
case("orphans_remove", dry_run="no way")
for bad in BAD_PATHS:  # backups
    case("export_qcow2", f"/dev/{VG}/lv-one-1-0", bad)
    case("image_size", bad)
    if bad is not None:
        case("export_qcow2", bad, f"{MP}/datastores/0/1/backup/disk.0.0")
case("export_qcow2", f"{MP}/src", f"{MP}/datastores/0/1/backup/disk.0.0")  # src must be an LV
case("lv_snapshot", "lv-one-1-0", "lv-one-1-0-backup", allow_open="yes")


@pytest.mark.parametrize("fun,args,kwargs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_runs_nothing(fake, mnt, fun, args, kwargs):
    def fix(value):
        if isinstance(value, str):
            return value.replace(MP, str(mnt))
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    args = [fix(a) for a in args]
    kwargs = {k: fix(v) for k, v in kwargs.items()}
    with pytest.raises(SaltInvocationError) as err:
        getattr(gfs2clvm, fun)(*args, **kwargs)
    assert str(err.value) and "\n" not in str(err.value).strip()
    assert fake.calls == []


def test_every_public_function_has_bad_input_cases():
    assert {c[0] for c in CASES} >= set(PUBLIC) - {"check"}


def test_symlink_escape_is_refused_for_writes(fake, mnt, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (mnt / "escape").symlink_to(outside)
    (mnt / "file-link").symlink_to(outside / "f")
    for call in (
        lambda: gfs2clvm.link(f"/dev/{VG}/lv-one-1-0", str(mnt / "escape/disk.0")),
        lambda: gfs2clvm.context_iso(str(mnt / "escape/ctx.iso"), {"a": "QQ=="}),
        lambda: gfs2clvm.copy(str(mnt / "src"), str(mnt / "file-link")),
        lambda: gfs2clvm.chown(str(mnt / "escape/x")),
        lambda: gfs2clvm.vm_delete(1, path=str(mnt / "escape/1")),
    ):
        with pytest.raises(SaltInvocationError, match="outside the mountpoint"):
            call()
    assert fake.calls == [] and list(outside.iterdir()) == []


@pytest.mark.parametrize("key,value", [
    ("vg", "bad vg"), ("mountpoint", "relative"), ("mount_check", "maybe"), ("default_size_mb", 0),
    ("dd_bs", "3"), ("dd_bs", "1G"), ("zero_new", "often"), ("thin_pool", "a b"), ("owner", "Bad User"),
    ("sudo", "sometimes"), ("lvm_bin", "sbin"), ("snapshot_size_pct", 0), ("snapshot_size_pct", 101),
])
def test_bad_configuration_is_reported_before_anything_runs(fake, conf, key, value):
    conf[key] = value
    with pytest.raises(SaltInvocationError, match=f"^gfs2clvm setting {key}: "):
        gfs2clvm.lv_list()
    assert fake.calls == []


def test_configuration_ignores_other_formula_keys(fake, conf):
    conf.update(packages=["lvm2"], corosync={"cluster": "x"}, dd_bs=1048576, zero_new="false", sudo="true")
    got = gfs2clvm._config()
    assert (got["dd_bs"], got["zero_new"], got["sudo"]) == (1048576, False, True)
    assert "packages" not in got


# ---------------------------------------------------------------- backups
def test_lv_snapshot_of_an_open_origin_only_with_allow_open(fake):
    """The live backup's snapshot (gfs2clvm_tm.backup): an open origin (a running VM's
    disk) is snapshotted only when asked, under the name the sudoers rule allows."""
    fake.lvs("lvs_all.json")
    with pytest.raises(CommandExecutionError, match="lv-one-7-1 is open"):
        gfs2clvm.lv_snapshot("lv-one-7-1", "lv-one-7-1-backup")
    assert not fake.writes()
    ret = gfs2clvm.lv_snapshot("lv-one-7-1", "lv-one-7-1-backup", allow_open=True)
    assert fake.writes() == [["/sbin/lvcreate", "--yes", "-s", "-n", "lv-one-7-1-backup", "-L", "34m",  # snapshot_size_pct 100: full COW
                              f"{VG}/lv-one-7-1"]]
    assert ret["thin"] is False
    # removing it, activating a thin one (activation skip): allowed by the rule too
    for argv in (["/sbin/lvremove", "--yes", f"{VG}/lv-one-7-1-backup"],
                 ["/sbin/lvchange", "-aey", "-K", f"{VG}/lv-one-8-0-backup"],
                 ["/sbin/lvcreate", "--yes", "-s", "-n", "lv-one-8-1-backup", f"{VG}/lv-oneimg-{'0' * 32}"]):
        assert sudoers_rule.allowed(argv), argv
    assert not sudoers_rule.allowed(["/sbin/lvcreate", "--yes", "-s", "-n", "lv-one-8-1-backupx", f"{VG}/lv-one-8-1"])
    with pytest.raises(SaltInvocationError, match="allow_open"):
        gfs2clvm.lv_snapshot("lv-one-7-1", "lv-one-7-1-backup", allow_open="yes")
