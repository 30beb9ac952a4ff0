# SPDX-License-Identifier: Apache-2.0
"""Loader-level unit tests of the backup actions of _modules/gfs2clvm_tm.py
(``backup``, ``backup_cleanup``, ``restore``) on the in-memory VG of
test_tm_module.py: the files the backup datastores expect, the live snapshot
always removed, nothing half-made, every restored disk checked before the first
byte is written."""

import base64
import hashlib
import os
import zlib
from unittest.mock import create_autospec

import pytest
import salt.modules.config
from salt.exceptions import CommandExecutionError, SaltInvocationError
from test_tm_module import IMG, PRIMITIVES, VG, World, disk, prim, tm, vmdir

VM_XML = "<VM><ID>42</ID><BACKUPS><BACKUP_CONFIG><MODE>FULL</MODE></BACKUP_CONFIG></BACKUPS></VM>"


def packed(text=VM_XML):
    return base64.b64encode(zlib.compress(text.encode())).decode()


class BackupWorld(World):
    """World + the primitives the backups use (same signatures as gfs2clvm.py)."""

    def lv_snapshot(self, origin, name, vg=None, size_mb=None, allow_open=False):
        self._check("lv_snapshot", (origin, name), {"vg": vg, "allow_open": allow_open})
        src = self.info(vg, origin)
        if src["open"] and not allow_open:
            raise CommandExecutionError("open origin")
        if (vg, name) in self.lvs:
            raise CommandExecutionError(f"logical volume {vg}/{name} already exists")
        # a thick snapshot is active with its origin; a thin one skips activation
        self.add(name, src["size_mb"], vg, thin=src["thin"], pool=src["pool"], origin=origin,
                 active=not src["thin"])
        return {"name": name, "vg": vg, "origin": origin, "path": f"/dev/{vg}/{name}", "thin": src["thin"]}

    def export_qcow2(self, src, dst):
        self._check("export_qcow2", (src, dst), {})
        name = src.rsplit("/", 1)[1]
        lv = self.info(VG, name)
        if not lv["active"]:
            raise CommandExecutionError(f"{src}: not active")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        with open(dst, "wb") as handle:
            handle.write(b"QFI\xfb" + name.encode())
        return {"src": src, "dst": dst, "bytes": lv["size_mb"] * 1024 * 1024, "file_bytes": 4 + len(name)}

    def image_size(self, path):
        self._check("image_size", (path,), {})
        with open(path, "rb") as handle:
            head = handle.read(4)
        if head == b"QFI\xfb":
            return {"path": path, "fmt": "qcow2", "bytes": 50 * 1024 * 1024}
        return {"path": path, "fmt": "raw", "bytes": os.path.getsize(path)}


@pytest.fixture
def mnt(tmp_path):
    path = tmp_path / "one"
    (path / "datastores" / "0").mkdir(parents=True)
    return path


@pytest.fixture
def world(mnt):
    return BackupWorld(str(mnt))


@pytest.fixture
def configure_loader_modules(world, mnt):
    conf = {"mountpoint": str(mnt), "lock_wait": 0}
    names = PRIMITIVES + ["export_qcow2", "image_size"]
    funcs = {f"gfs2clvm.{n}": create_autospec(getattr(prim, n), side_effect=getattr(world, n)) for n in names}
    funcs["config.get"] = create_autospec(
        salt.modules.config.get, side_effect=lambda key, default="", *a, **k: conf if key == "gfs2clvm" else default)
    return {tm: {"__salt__": funcs, "__opts__": {"id": "node1"}}}


def _vm(world, mnt, vmid=42, disks=(0, 1), **kw):
    os.makedirs(vmdir(mnt, vmid), exist_ok=True)
    for i in disks:
        world.add(f"lv-one-{vmid}-{i}", active=True, mode="exclusive", **kw)
        os.symlink(f"/dev/{VG}/lv-one-{vmid}-{i}", disk(mnt, i, vmid))


def called(world, name):
    return [c for c in world.calls if c[0] == name]


def bdir(mnt):
    return f"{vmdir(mnt)}/backup"


# ------------------------------------------------------------------ backup
def test_offline_backup_writes_what_the_backup_datastores_upload(world, mnt):
    _vm(world, mnt)
    ret = tm.backup(vmdir(mnt), 42, [0, 1], vm_xml=packed())
    assert sorted(os.listdir(bdir(mnt))) == ["disk.0.0", "disk.1.0", "vm.xml"]
    assert base64.b64decode(open(f"{bdir(mnt)}/vm.xml").read()).decode() == VM_XML
    assert [c[1] for c in called(world, "export_qcow2")] == [
        (f"/dev/{VG}/lv-one-42-0", f"{bdir(mnt)}/disk.0.0"), (f"/dev/{VG}/lv-one-42-1", f"{bdir(mnt)}/disk.1.0")]
    assert called(world, "lv_snapshot") == [] and ret["live"] is False


def test_offline_backup_refuses_a_disk_in_use(world, mnt):
    _vm(world, mnt, disks=(0,), open=True)
    with pytest.raises(CommandExecutionError, match="live backup"):
        tm.backup(vmdir(mnt), 42, [0], vm_xml=packed())
    assert not os.path.exists(bdir(mnt))


def test_offline_backup_activates_an_inactive_disk_and_lets_it_go(world, mnt):
    _vm(world, mnt, disks=(0,))
    world.lvs[(VG, "lv-one-42-0")].update(active=False, mode=None)
    tm.backup(vmdir(mnt), 42, [0], vm_xml=packed())
    assert world.lvs[(VG, "lv-one-42-0")]["active"] is False
    assert [c[2]["mode"] for c in called(world, "lv_activate")] == ["exclusive"]


@pytest.mark.parametrize("thin", [False, True])
def test_live_backup_reads_a_snapshot_that_is_always_removed(world, mnt, thin):
    _vm(world, mnt, disks=(0,), open=True, thin=thin, pool="pool" if thin else None)
    tm.backup(vmdir(mnt), 42, "0", live=True, vm_xml=packed())
    snap = "lv-one-42-0-backup"
    assert called(world, "lv_snapshot")[0][1:] == (("lv-one-42-0", snap), {"vg": VG, "allow_open": True})
    assert called(world, "export_qcow2")[0][1] == (f"/dev/{VG}/{snap}", f"{bdir(mnt)}/disk.0.0")
    assert bool(called(world, "lv_activate")) is thin  # a thin snapshot skips activation
    assert world.names() == ["lv-one-42-0"]
    assert sorted(os.listdir(bdir(mnt))) == ["disk.0.0", "vm.xml"]


def test_a_failed_live_backup_leaves_no_snapshot_and_no_directory_and_a_retry_works(world, mnt):
    _vm(world, mnt, disks=(0, 1), open=True)
    world.fail["export_qcow2"] = lambda args, kw: CommandExecutionError("qemu-img: I/O error") \
        if args[0].endswith("lv-one-42-1-backup") else None
    with pytest.raises(CommandExecutionError, match="I/O error"):
        tm.backup(vmdir(mnt), 42, [0, 1], live=True, vm_xml=packed())
    assert world.names() == ["lv-one-42-0", "lv-one-42-1"] and not os.path.exists(bdir(mnt))
    world.fail.clear()
    tm.backup(vmdir(mnt), 42, [0, 1], live=True, vm_xml=packed())
    assert sorted(os.listdir(bdir(mnt))) == ["disk.0.0", "disk.1.0", "vm.xml"]


def test_a_snapshot_that_cannot_be_removed_fails_the_backup(world, mnt):
    _vm(world, mnt, disks=(0,), open=True)
    world.fail["lv_remove"] = CommandExecutionError("lvremove failed (rc 5): lock")
    with pytest.raises(CommandExecutionError, match="lvremove"):
        tm.backup(vmdir(mnt), 42, [0], live=True, vm_xml=packed())
    assert not os.path.exists(bdir(mnt))
    # postbackup removes what is left
    ret = tm.backup_cleanup(vmdir(mnt), 42)
    assert ret["removed"] == ["lv-one-42-0-backup"] and world.names() == ["lv-one-42-0"]


def test_a_leftover_snapshot_and_directory_of_an_earlier_attempt_are_replaced(world, mnt):
    _vm(world, mnt, disks=(0,), open=True)
    world.add("lv-one-42-0-backup", origin="lv-one-42-0", active=True)
    os.makedirs(bdir(mnt))
    open(f"{bdir(mnt)}/disk.7.0", "wb").close()
    tm.backup(vmdir(mnt), 42, [0], live=True, vm_xml=packed())
    assert sorted(os.listdir(bdir(mnt))) == ["disk.0.0", "vm.xml"]
    assert world.names() == ["lv-one-42-0"]


def test_persistent_image_disk_is_backed_up_from_its_volume(world, mnt):
    os.makedirs(vmdir(mnt))
    world.add(IMG, active=True, mode="exclusive", open=True)
    os.symlink(f"/dev/{VG}/{IMG}", disk(mnt, 1))
    tm.backup(vmdir(mnt), 42, [1], live=True, vm_xml=packed())
    assert called(world, "lv_snapshot")[0][1] == (IMG, "lv-one-42-1-backup")
    assert world.names() == [IMG]


@pytest.mark.parametrize("args,kwargs,message", [
    (("/x/datastores/0/42", 42, [0]), {}, "not under the mountpoint"),
    (("{vmdir}/disk.0", 42, [0]), {}, "names a disk"),
    (("{vmdir}", 43, [0]), {}, "not in the directory of VM 43"),
    (("{vmdir}", 42, []), {}, "non-empty"),
    (("{vmdir}", 42, [0, 0]), {}, "repeat"),
    (("{vmdir}", 42, ["0;rm"]), {}, "integer"),
    (("{vmdir}", 42, [0]), {"live": "yes"}, "live must be"),
    (("{vmdir}", 42, [0]), {"vm_xml": "bm90IHpsaWI="}, "zlib"),
    (("{vmdir}", 42, [0]), {"vm_xml": packed("<IMAGE/>")}, "not a <VM>"),
])
def test_backup_bad_input_does_nothing(world, mnt, args, kwargs, message):
    _vm(world, mnt, disks=(0,))
    args = tuple(a.format(vmdir=vmdir(mnt)) if isinstance(a, str) else a for a in args)
    kwargs.setdefault("vm_xml", packed())
    with pytest.raises(SaltInvocationError, match=message):
        tm.backup(*args, **kwargs)
    assert called(world, "lv_snapshot") == [] and called(world, "export_qcow2") == []
    assert not os.path.exists(bdir(mnt))


def test_a_disk_that_is_not_an_lv_is_refused_before_anything(world, mnt):
    _vm(world, mnt, disks=(0,))
    os.symlink(f"{mnt}/datastores/1/boot.iso", disk(mnt, 3))
    with pytest.raises((SaltInvocationError, CommandExecutionError)):
        tm.backup(vmdir(mnt), 42, [0, 3], vm_xml=packed())
    assert called(world, "export_qcow2") == [] and not os.path.exists(bdir(mnt))


def test_backup_cleanup_removes_only_this_vms_backup_things(world, mnt):
    _vm(world, mnt, disks=(0,))
    _vm(world, mnt, vmid=420, disks=(0,))
    for name in ("lv-one-42-0-backup", "lv-one-420-0-backup", "lv-one-42-0-s1"):
        world.add(name)
    os.makedirs(bdir(mnt))
    open(f"{bdir(mnt)}/disk.0.0", "wb").close()
    ret = tm.backup_cleanup(vmdir(mnt), 42)
    assert ret["removed"] == ["lv-one-42-0-backup"] and ret["removed_dir"] is True
    assert not os.path.exists(bdir(mnt)) and os.path.islink(disk(mnt, 0))
    assert "lv-one-420-0-backup" in world.names() and "lv-one-42-0-s1" in world.names()
    assert tm.backup_cleanup(vmdir(mnt), 42)["removed_dir"] is False  # again: fine


# ------------------------------------------------------------------ restore
def staged(mnt, data, name="a1.img"):
    path = f"{mnt}/.gfs2clvm-staging/{name}"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(data)
    return {"staged": path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_restore_writes_each_disk_and_removes_the_staged_files(world, mnt):
    _vm(world, mnt)
    world.lvs[(VG, "lv-one-42-1")].update(active=False, mode=None)
    raw = b"\x01" * 4096
    disks = {"0": staged(mnt, b"QFI\xfb" + b"q" * 100, "q.img"), "1": staged(mnt, raw, "r.img")}
    ret = tm.restore(vmdir(mnt), 42, disks)
    assert [(c[1], c[2]["fmt"]) for c in called(world, "copy")] == [
        ((disks["0"]["staged"], f"/dev/{VG}/lv-one-42-0"), "qcow2"),
        ((disks["1"]["staged"], f"/dev/{VG}/lv-one-42-1"), "raw")]
    assert all(c[2]["dst_zeroed"] is False for c in called(world, "copy"))
    assert os.listdir(f"{mnt}/.gfs2clvm-staging") == []
    assert world.lvs[(VG, "lv-one-42-1")]["active"] is False  # activated for the write only
    assert [d["disk"] for d in ret["disks"]] == [0, 1]


@pytest.mark.parametrize("fault,message", [
    ("sha", "sha256 mismatch"),
    ("open", "power the VM off"),
    ("big", "larger than"),
    ("nolink", "not a link"),
])
def test_restore_checks_every_disk_before_writing_any(world, mnt, fault, message):
    _vm(world, mnt)
    disks = {"0": staged(mnt, b"\x02" * 4096, "a.img"), "1": staged(mnt, b"\x03" * 4096, "b.img")}
    if fault == "sha":
        disks["1"]["sha256"] = "0" * 64
    elif fault == "open":
        world.lvs[(VG, "lv-one-42-1")]["open"] = True
    elif fault == "big":
        world.lvs[(VG, "lv-one-42-1")]["size_mb"] = 0
    else:
        os.unlink(disk(mnt, 1))
    with pytest.raises(CommandExecutionError, match=message):
        tm.restore(vmdir(mnt), 42, disks)
    assert called(world, "copy") == []
    assert os.listdir(f"{mnt}/.gfs2clvm-staging") == []


def test_restore_refuses_a_staged_file_outside_the_staging_area(world, mnt):
    _vm(world, mnt, disks=(0,))
    item = staged(mnt, b"x" * 10)
    item["staged"] = disk(mnt, 0)
    with pytest.raises(SaltInvocationError, match="not in"):
        tm.restore(vmdir(mnt), 42, {"0": item})
    assert os.path.islink(disk(mnt, 0)) and called(world, "copy") == []


def test_live_backup_snapshots_every_disk_before_the_first_copy(world, mnt):
    _vm(world, mnt, disks=(0, 1), open=True)
    tm.backup(vmdir(mnt), 42, [0, 1], live=True, vm_xml=packed())
    order = [c[0] for c in world.calls if c[0] in ("lv_snapshot", "export_qcow2", "lv_remove")]
    assert order == ["lv_snapshot", "lv_snapshot", "export_qcow2", "export_qcow2", "lv_remove", "lv_remove"]
    assert world.names() == ["lv-one-42-0", "lv-one-42-1"]


def test_a_failed_second_snapshot_removes_the_first(world, mnt):
    _vm(world, mnt, disks=(0, 1), open=True)
    world.fail["lv_snapshot"] = lambda args, kw: CommandExecutionError("lvcreate failed (rc 5): Insufficient free space") \
        if args[0] == "lv-one-42-1" else None
    with pytest.raises(CommandExecutionError, match="Insufficient free space"):
        tm.backup(vmdir(mnt), 42, [0, 1], live=True, vm_xml=packed())
    assert world.names() == ["lv-one-42-0", "lv-one-42-1"] and not os.path.exists(bdir(mnt))
    assert called(world, "export_qcow2") == []
