# SPDX-License-Identifier: Apache-2.0
"""Loader-level unit tests of _modules/gfs2clvm_tm.py.

The ``gfs2clvm.*`` primitives are autospec'd from the real module (signature drift
fails) and backed by a small in-memory VG (``World``); symlinks and files are real,
under a temporary mountpoint.  Every creating action is checked for rollback:
after an injected failure nothing it made is left and a retry works.
"""

import base64
import hashlib
import importlib.util
import inspect
import io
import os
import re
import tarfile
from pathlib import Path
from unittest.mock import create_autospec

import pytest
import salt.modules.config
from salt.exceptions import CommandExecutionError, SaltInvocationError

REPO = Path(__file__).resolve().parents[2]


def _load(name, file):
    spec = importlib.util.spec_from_file_location(name, REPO / "_modules" / file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


prim = _load("gfs2clvm_prim_for_tm_ut", "gfs2clvm.py")
tm = _load("gfs2clvm_tm_ut", "gfs2clvm_tm.py")

VG = "vg_cloudstorage"
IMG = "lv-oneimg-0123456789abcdef0123456789abcdef"
IMG2 = "lv-oneimg-fedcba9876543210fedcba9876543210"


class World:
    """An in-memory VG answering like the primitives; ``fail`` injects errors."""

    def __init__(self, mnt):
        self.mnt = mnt
        self.lvs = {}
        self.calls = []
        self.virtual = {}  # image path -> virtual size (image_info)
        self.fail = {}  # primitive name -> exception (raised once) or callable(args, kwargs)

    def add(self, name, size_mb=100, vg=VG, **kw):
        self.lvs[(vg, name)] = {"name": name, "vg": vg, "size_mb": size_mb, "active": False, "mode": None,
                                "open": False, "thin": False, "pool": None, "origin": None, **kw}

    def names(self, vg=VG):
        return sorted(n for v, n in self.lvs if v == vg)

    def _check(self, fun, args, kwargs):
        self.calls.append((fun, args, kwargs))
        err = self.fail.get(fun)
        if callable(err) and not isinstance(err, Exception):
            err = err(args, kwargs)  # a callable decides on every call
        elif err:
            self.fail.pop(fun)  # an exception is raised once
        if err:
            raise err

    def info(self, vg, name):
        lv = self.lvs.get((vg, name))
        if lv is None:
            raise CommandExecutionError(f"logical volume {vg}/{name} not found")
        return lv

    # --- primitives (same signatures as _modules/gfs2clvm.py) -----------------
    def lv_create(self, name, size_mb=None, vg=None, thin=None, zero=None):
        self._check("lv_create", (name,), {"size_mb": size_mb, "vg": vg})
        if (vg, name) in self.lvs:
            raise CommandExecutionError(f"logical volume {vg}/{name} already exists")
        self.add(name, size_mb or 1024, vg, active=True, mode="exclusive")
        return {"name": name, "vg": vg, "path": f"/dev/{vg}/{name}", "size_mb": size_mb or 1024,
                "thin": False, "zeroed": "blkdiscard"}

    def lv_remove(self, name, vg=None, wipe=None, missing_ok=False):
        self._check("lv_remove", (name,), {"vg": vg, "missing_ok": missing_ok})
        if (vg, name) not in self.lvs:
            if missing_ok:
                return {"name": name, "vg": vg, "removed": False, "wiped": False}
            raise CommandExecutionError("not found")
        if self.lvs[(vg, name)]["open"]:
            raise CommandExecutionError("open")
        del self.lvs[(vg, name)]
        return {"name": name, "vg": vg, "removed": True, "wiped": False}

    def lv_list(self, vg=None, vmid=None, prefix=None):
        self._check("lv_list", (), {"vg": vg, "vmid": vmid, "prefix": prefix})
        out = []
        for (v, n), lv in sorted(self.lvs.items()):
            if v != vg:
                continue
            if vmid is not None and not re.fullmatch(rf"lv-one-{vmid}-\d+(-s\d+)?", n):
                continue
            if prefix is not None and not n.startswith(prefix):
                continue
            out.append(dict(lv))
        return {"vg": vg, "lvs": out}

    def lv_info(self, name, vg=None):
        self._check("lv_info", (name,), {"vg": vg})
        return dict(self.info(vg, name))

    def lv_activate(self, name, vg=None, mode="exclusive"):
        self._check("lv_activate", (name,), {"vg": vg, "mode": mode})
        lv = self.info(vg, name)
        lv.update(active=True, mode=mode)
        return {"name": name, "vg": vg, "active": True, "mode": mode}

    def lv_deactivate(self, name, vg=None):
        self._check("lv_deactivate", (name,), {"vg": vg})
        lv = self.info(vg, name)
        if lv["open"]:
            raise CommandExecutionError("open")
        lv.update(active=False, mode=None)
        return {"name": name, "vg": vg, "active": False}

    def lv_snapshot(self, origin, name, vg=None, size_mb=None):
        self._check("lv_snapshot", (origin, name), {"vg": vg})
        src = self.info(vg, origin)
        if src["open"]:
            raise CommandExecutionError("open origin")
        self.add(name, src["size_mb"], vg, thin=src["thin"], pool=src["pool"], origin=origin)
        return {"name": name, "vg": vg, "origin": origin, "path": f"/dev/{vg}/{name}", "thin": src["thin"]}

    def lv_merge(self, snapshot, vg=None):
        self._check("lv_merge", (snapshot,), {"vg": vg})
        snap = self.info(vg, snapshot)
        if snap["thin"] or not snap["origin"]:
            raise CommandExecutionError("not a thick snapshot")
        if self.info(vg, snap["origin"])["open"]:
            raise CommandExecutionError("open origin")
        del self.lvs[(vg, snapshot)]
        return {"name": snapshot, "vg": vg, "origin": snap["origin"], "merged": True}

    def lv_resize(self, name, size_mb, vg=None):
        self._check("lv_resize", (name, size_mb), {"vg": vg})
        lv = self.info(vg, name)
        prev, lv["size_mb"] = lv["size_mb"], max(lv["size_mb"], size_mb)
        return {"name": name, "vg": vg, "size_mb": lv["size_mb"], "previous_mb": prev}

    def copy(self, src, dst, fmt="raw", sparse=True, progress=False, sha256=None, dst_zeroed=False):
        self._check("copy", (src, dst), {"fmt": fmt, "sparse": sparse, "sha256": sha256, "dst_zeroed": dst_zeroed})
        return {"src": src, "dst": dst, "bytes": 1}

    def link(self, target, path, force=False):
        self._check("link", (target, path), {"force": force})
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if os.path.lexists(path):
            os.unlink(path)
        os.symlink(target, path)
        return {"path": path, "target": target, "changed": True}

    def mkswap(self, path):
        self._check("mkswap", (path,), {})
        return {"path": path, "fstype": "swap"}

    def mkfs(self, path, fstype):
        self._check("mkfs", (path, fstype), {})
        return {"path": path, "fstype": fstype}

    def context_iso(self, path, files=None, label="CONTEXT"):
        self._check("context_iso", (path,), {"files": files})
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Path(path).write_bytes(b"ISO" + b"".join(base64.b64decode(v) for v in (files or {}).values()))
        return {"path": path, "label": label, "files": sorted(files or {}), "size": 3}

    def vm_delete(self, vmid, vg=None, path=None, wipe=None):
        self._check("vm_delete", (vmid,), {"vg": vg, "path": path})
        gone = [n for (v, n) in list(self.lvs) if v == vg and re.fullmatch(rf"lv-one-{vmid}-\d+(-s\d+)?", n)]
        for name in gone:
            del self.lvs[(vg, name)]
        if path and os.path.isdir(path):
            import shutil

            shutil.rmtree(path)
        return {"vmid": vmid, "vg": vg, "removed": sorted(gone), "dir": path}

    def image_info(self, src):
        self._check("image_info", (src,), {})
        fmt = "qcow2" if str(src).endswith(".qcow2") else "raw"
        size = None if src.startswith("http") else self.virtual.get(src, os.path.getsize(src) if os.path.exists(src) else 0)
        return {"src": src, "format": fmt, "virtual_size": size, "bytes": None}

    def vg_usage(self, vg=None):
        self._check("vg_usage", (), {"vg": vg})
        return {"vg": vg, "total_mb": 1000, "used_mb": 300, "free_mb": 700}


PRIMITIVES = ["lv_create", "lv_remove", "lv_list", "lv_info", "lv_activate", "lv_deactivate", "lv_snapshot", "lv_merge",
              "lv_resize", "copy", "link", "mkswap", "mkfs", "context_iso", "vm_delete", "vg_usage",
              "image_info"]


@pytest.fixture
def mnt(tmp_path):
    path = tmp_path / "one"
    (path / "datastores" / "0").mkdir(parents=True)
    return path


@pytest.fixture
def world(mnt):
    return World(str(mnt))


@pytest.fixture
def conf(mnt):
    return {"mountpoint": str(mnt), "lock_wait": 0}


@pytest.fixture
def opts():
    return {"id": "node1"}


@pytest.fixture
def configure_loader_modules(world, conf, opts):
    salt_funcs = {f"gfs2clvm.{name}": create_autospec(getattr(prim, name), side_effect=getattr(world, name))
                  for name in PRIMITIVES}
    salt_funcs["config.get"] = create_autospec(
        salt.modules.config.get, side_effect=lambda key, default="", *a, **k: conf if key == "gfs2clvm" else default)
    return {tm: {"__salt__": salt_funcs, "__opts__": opts}}


def vmdir(mnt, vmid=42, ds=0):
    return f"{mnt}/datastores/{ds}/{vmid}"


def disk(mnt, i, vmid=42):
    return f"{vmdir(mnt, vmid)}/disk.{i}"


def called(world, name):
    return [c for c in world.calls if c[0] == name]


# ------------------------------------------------------------------ contract
def test_public_functions_have_cli_examples():
    public = sorted(n for n, o in vars(tm).items() if inspect.isfunction(o) and not n.startswith("_")
                    and o.__module__ == tm.__name__)
    assert public == sorted([
        "clone", "ln", "mkimage", "mkswap", "context", "mv", "mvds", "cpds", "delete", "resize",
        "snap_create", "snap_delete", "snap_revert", "premigrate", "postmigrate", "failmigrate",
        "monitor", "ds_cp", "ds_mkfs", "ds_rm", "ds_stat", "ds_clone", "ds_monitor",
        "backup", "backup_cleanup", "restore",
    ])
    for name in public:
        assert f"gfs2clvm_tm.{name}" in getattr(tm, name).__doc__ and "CLI Example:" in getattr(tm, name).__doc__


# ------------------------------------------------------------------ clone
def test_clone_image_copies_into_a_new_lv_and_links(world, mnt):
    world.add(IMG, 300)
    ret = tm.clone(f"/dev/{VG}/{IMG}", disk(mnt, 0), 42, 0)
    assert ret["method"] == "copy" and ret["device"] == f"/dev/{VG}/lv-one-42-0"
    assert world.lvs[(VG, "lv-one-42-0")]["size_mb"] == 300
    assert called(world, "copy")[0][1] == (f"/dev/{VG}/{IMG}", f"/dev/{VG}/lv-one-42-0")
    assert called(world, "copy")[0][2]["dst_zeroed"] is True
    # the image was activated shared for reading and let go afterwards
    assert ("lv_activate", (IMG,), {"vg": VG, "mode": "shared"}) in world.calls
    assert world.lvs[(VG, IMG)]["active"] is False
    assert world.lvs[(VG, "lv-one-42-0")]["mode"] == "exclusive"
    assert os.readlink(disk(mnt, 0)) == f"/dev/{VG}/lv-one-42-0"


def test_clone_thin_image_is_a_thin_snapshot(world, mnt, conf):
    conf["thin_pool"] = "pool"
    world.add(IMG, 4096, thin=True, pool="pool")
    ret = tm.clone(f"{VG}/{IMG}", disk(mnt, 0), 42, 0)
    assert ret["method"] == "thin-snapshot"
    assert called(world, "copy") == [] and called(world, "lv_create") == []
    assert world.lvs[(VG, "lv-one-42-0")]["origin"] == IMG


@pytest.mark.parametrize("failing", ["copy", "lv_activate", "link"])
def test_clone_failure_removes_what_it_made_and_a_retry_works(world, mnt, failing):
    world.add(IMG, 300)
    world.fail[failing] = (lambda a, k: CommandExecutionError("boom") if k.get("mode") != "shared" else None) \
        if failing == "lv_activate" else CommandExecutionError("boom")
    with pytest.raises(CommandExecutionError, match="boom"):
        tm.clone(f"/dev/{VG}/{IMG}", disk(mnt, 0), 42, 0)
    assert world.names() == [IMG]
    assert not os.path.lexists(disk(mnt, 0))
    assert world.lvs[(VG, IMG)]["active"] is False
    world.fail.clear()
    tm.clone(f"/dev/{VG}/{IMG}", disk(mnt, 0), 42, 0)
    assert world.names() == sorted([IMG, "lv-one-42-0"]) and os.path.islink(disk(mnt, 0))


def test_clone_replaces_the_leftover_of_an_earlier_attempt(world, mnt):
    """oned lost the ssh connection while the worker completed the clone: its retry
    finds lv-one-42-0 (not open) and must succeed with a fresh copy."""
    world.add(IMG, 300)
    world.add("lv-one-42-0", 100, active=True, mode="exclusive")
    tm.clone(f"/dev/{VG}/{IMG}", disk(mnt, 0), 42, 0)
    assert world.names() == sorted([IMG, "lv-one-42-0"])
    assert world.lvs[(VG, "lv-one-42-0")]["size_mb"] == 300  # made again from the image
    assert [c[1] for c in called(world, "lv_remove")] == [("lv-one-42-0",)]
    assert os.path.islink(disk(mnt, 0))


@pytest.mark.parametrize("leftover,why", [
    ({"open": True, "active": True}, "open"),
    ({"snapshots": True}, "snapshots"),
    ({"elsewhere": True}, "could not be replaced"),
])
def test_clone_keeps_an_existing_disk_that_is_not_a_leftover(world, mnt, leftover, why):
    """In use, with snapshots, or active on another host (lvmlockd refuses the
    removal): refused, nothing removed, nothing linked."""
    world.add(IMG, 300)
    world.add("lv-one-42-0", 100, open=leftover.get("open", False), active=leftover.get("active", False))
    if leftover.get("snapshots"):
        world.add("lv-one-42-0-s0", 100, origin="lv-one-42-0")
    if leftover.get("elsewhere"):
        world.fail["lv_remove"] = CommandExecutionError("LV locked by other host")
    with pytest.raises(CommandExecutionError, match=why):
        tm.clone(f"/dev/{VG}/{IMG}", disk(mnt, 0), 42, 0)
    assert "lv-one-42-0" in world.names() and not os.path.lexists(disk(mnt, 0))
    assert not called(world, "lv_create") and not called(world, "copy")


def test_clone_does_not_take_another_disk_for_a_leftover(world, mnt):
    """lv-one-42-10 and lv-one-42-0-s1 of disk 0 ... only lv-one-42-1 itself counts."""
    world.add(IMG, 300)
    world.add("lv-one-42-10", 100, open=True, active=True)
    tm.clone(f"/dev/{VG}/{IMG}", disk(mnt, 1), 42, 1)
    assert "lv-one-42-10" in world.names() and "lv-one-42-1" in world.names()
    assert not called(world, "lv_remove")


def test_a_second_operation_on_the_same_disk_fails_at_once(world, mnt, monkeypatch, tmp_path):
    monkeypatch.setattr(tm, "LOCK_DIRS", (str(tmp_path),))
    world.add(IMG, 300)
    with tm._disk_lock("lv-one-42-0"):
        with pytest.raises(CommandExecutionError, match="in progress on this host"):
            tm.clone(f"/dev/{VG}/{IMG}", disk(mnt, 0), 42, 0)
        with pytest.raises(CommandExecutionError, match="in progress on this host"):
            tm.mkimage(disk(mnt, 0), 42, 0, 10)
    assert world.names() == [IMG]
    tm.clone(f"/dev/{VG}/{IMG}", disk(mnt, 0), 42, 0)  # free again
    assert "lv-one-42-0" in world.names()


def test_mkimage_and_mkswap_replace_a_leftover(world, mnt):
    world.add("lv-one-42-0", 5)
    world.add("lv-one-42-1", 5)
    tm.mkimage(disk(mnt, 0), 42, 0, 10)
    tm.mkswap(disk(mnt, 1), 42, 1, 20)
    assert world.lvs[(VG, "lv-one-42-0")]["size_mb"] == 10
    assert world.lvs[(VG, "lv-one-42-1")]["size_mb"] == 20


def test_clone_refuses_a_disk_in_use(world, mnt):
    world.add("lv-one-7-0", 300, open=True, active=True)
    with pytest.raises(CommandExecutionError, match="open"):
        tm.clone(f"/dev/{VG}/lv-one-7-0", disk(mnt, 0), 42, 0)
    assert world.names() == ["lv-one-7-0"]


def test_clone_url_iso_and_isox(world, mnt, conf):
    tm.clone("https://example.com/x.img", disk(mnt, 0), 42, 0, size_mb=50)
    assert world.lvs[(VG, "lv-one-42-0")]["size_mb"] == 50
    assert called(world, "copy")[-1][1] == ("https://example.com/x.img", f"/dev/{VG}/lv-one-42-0")
    iso = mnt / "datastores" / "1" / "boot.iso"
    iso.parent.mkdir()
    iso.write_bytes(b"x" * (3 * 1024 * 1024 + 1))
    tm.clone(str(iso), disk(mnt, 1), 42, 1)
    assert world.lvs[(VG, "lv-one-42-1")]["size_mb"] == 4
    isox = iso.with_suffix(".isox")
    isox.write_bytes(b"x")
    ret = tm.clone(str(isox), disk(mnt, 2), 42, 2)
    assert ret["kind"] == "isox" and os.readlink(disk(mnt, 2)) == str(isox)
    assert "lv-one-42-2" not in world.names()


@pytest.mark.parametrize("args", [
    ("/dev/vg/x", "/elsewhere/42/disk.0", 42, 0),
    (f"/dev/{VG}/{IMG}", "DISK/43/disk.0", 42, 0),
    (f"/dev/{VG}/{IMG}", "DISK/42/disk.1", 42, 0),
    (f"/dev/{VG}/{IMG}", "DISK/42", 42, 0),
    (f"/dev/{VG}/{IMG}", "DISK/42/../43/disk.0", 42, 0),
    (f"/dev/{VG}/{IMG}", "DISK/42/disk.0", "42; rm", 0),
    (f"/dev/{VG}/{IMG}", "DISK/42/disk.0", True, 0),
    ("/etc/passwd.iso", "DISK/42/disk.0", 42, 0),
    ("ftp://x/y", "DISK/42/disk.0", 42, 0),
])
def test_clone_bad_input_runs_nothing(world, mnt, args):
    args = tuple(a.replace("DISK", f"{mnt}/datastores/0") if isinstance(a, str) else a for a in args)
    with pytest.raises(SaltInvocationError):
        tm.clone(*args)
    assert world.calls == []


# ------------------------------------------------------------------ ln, mkimage, mkswap
def test_ln_activates_exclusively_and_undoes_on_failure(world, mnt):
    world.add(IMG)
    world.fail["link"] = CommandExecutionError("no link")
    with pytest.raises(CommandExecutionError):
        tm.ln(f"/dev/{VG}/{IMG}", disk(mnt, 1), 42, 1)
    assert world.lvs[(VG, IMG)]["active"] is False
    tm.ln(f"/dev/{VG}/{IMG}", disk(mnt, 1), 42, 1)
    assert world.lvs[(VG, IMG)]["mode"] == "exclusive"
    assert os.readlink(disk(mnt, 1)) == f"/dev/{VG}/{IMG}"
    with pytest.raises(SaltInvocationError):
        tm.ln(f"/dev/{VG}/lv-one-1-0", disk(mnt, 1), 42, 1)


def test_mkswap_and_mkimage(world, mnt):
    world.fail["mkswap"] = CommandExecutionError("mkswap failed")
    with pytest.raises(CommandExecutionError):
        tm.mkswap(disk(mnt, 3), 42, 3, 512)
    assert world.names() == [] and not os.path.lexists(disk(mnt, 3))
    tm.mkswap(disk(mnt, 3), 42, 3, 512)
    assert world.lvs[(VG, "lv-one-42-3")]["size_mb"] == 512
    tm.mkimage(disk(mnt, 4), 42, 4, 100, fs="ext4")
    assert called(world, "mkfs")[-1][1] == (f"/dev/{VG}/lv-one-42-4", "ext4")
    with pytest.raises(SaltInvocationError):
        tm.mkimage(disk(mnt, 5), 42, 5, 0)
    with pytest.raises(SaltInvocationError):
        tm.mkimage(disk(mnt, 5), 42, 5, 10, fs="ext4 -E x")


# ------------------------------------------------------------------ context
def test_context_inline(world, mnt):
    files = {"context.sh": base64.b64encode(b"A=1\n").decode()}
    ret = tm.context(disk(mnt, 6), 42, files=files)
    assert ret["files"] == ["context.sh"]
    assert called(world, "context_iso")[0][1:] == ((disk(mnt, 6),), {"files": files})


def _staged(mnt, data):
    staging = Path(mnt) / ".gfs2clvm-staging"
    staging.mkdir(exist_ok=True)
    path = staging / ("a" * 32 + ".tar")
    path.write_bytes(data)
    return str(path), len(data), hashlib.sha256(data).hexdigest()


def test_context_staged_tar_is_verified_and_removed(world, mnt):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("context.sh")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"A=1\n"))
    path, size, digest = _staged(mnt, buf.getvalue())
    tm.context(disk(mnt, 6), 42, staged=path, staged_bytes=size, staged_sha256=digest)
    assert called(world, "context_iso")[0][2]["files"] == {"context.sh": base64.b64encode(b"A=1\n").decode()}
    assert not os.path.exists(path)
    path, size, digest = _staged(mnt, buf.getvalue())
    with pytest.raises(CommandExecutionError, match="has 10 bytes, expected"):
        open(path, "wb").write(b"x" * 10)
        tm.context(disk(mnt, 6), 42, staged=path, staged_bytes=size, staged_sha256=digest)
    with pytest.raises(SaltInvocationError, match="not in"):
        tm.context(disk(mnt, 6), 42, staged="/tmp/x.tar", staged_bytes=1, staged_sha256="0" * 64)


def test_context_staged_tar_with_a_path_is_refused(world, mnt):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../../etc/cron.d/x")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    path, size, digest = _staged(mnt, buf.getvalue())
    with pytest.raises(CommandExecutionError, match="refusing member"):
        tm.context(disk(mnt, 6), 42, staged=path, staged_bytes=size, staged_sha256=digest)
    assert called(world, "context_iso") == [] and not os.path.exists(path)


# ------------------------------------------------------------------ delete
def _vm(world, mnt, vmid, disks=(0, 1)):
    os.makedirs(vmdir(mnt, vmid), exist_ok=True)
    for i in disks:
        world.add(f"lv-one-{vmid}-{i}")
        os.symlink(f"/dev/{VG}/lv-one-{vmid}-{i}", disk(mnt, i, vmid))


def test_delete_vm_dir_touches_exactly_its_own_lvs(world, mnt):
    for vmid in (1, 10, 11, 100):
        _vm(world, mnt, vmid)
    world.add("lv-one-1-0-s0")
    world.add(IMG, active=True, mode="exclusive")
    os.symlink(f"/dev/{VG}/{IMG}", disk(mnt, 2, 1))
    ret = tm.delete(vmdir(mnt, 1), 1)
    assert ret["removed"] == ["lv-one-1-0", "lv-one-1-0-s0", "lv-one-1-1"]
    assert ret["deactivated"] == [IMG]
    assert world.names() == sorted([IMG] + [f"lv-one-{v}-{i}" for v in (10, 11, 100) for i in (0, 1)])
    assert world.lvs[(VG, IMG)]["active"] is False
    assert not os.path.exists(vmdir(mnt, 1))
    for vmid in (10, 11, 100):
        assert os.path.islink(disk(mnt, 0, vmid))
    assert called(world, "vm_delete")[0][1:] == ((1,), {"vg": VG, "path": vmdir(mnt, 1)})
    tm.delete(vmdir(mnt, 1), 1)  # a retry (or a second delete) succeeds


def test_delete_one_disk(world, mnt):
    _vm(world, mnt, 42, disks=(0, 1))
    world.add("lv-one-42-0-s1")
    world.add("lv-one-42-0-s12")
    world.add("lv-one-420-0")
    ret = tm.delete(disk(mnt, 0), 42)
    assert ret["removed"] == ["lv-one-42-0-s1", "lv-one-42-0-s12", "lv-one-42-0"]
    assert world.names() == ["lv-one-42-1", "lv-one-420-0"]
    assert not os.path.lexists(disk(mnt, 0)) and os.path.islink(disk(mnt, 1))
    assert tm.delete(disk(mnt, 0), 42)["removed"] == []


def test_delete_persistent_disk_keeps_the_image(world, mnt):
    os.makedirs(vmdir(mnt), exist_ok=True)
    world.add(IMG, active=True, mode="exclusive")
    os.symlink(f"/dev/{VG}/{IMG}", disk(mnt, 1))
    ret = tm.delete(disk(mnt, 1), 42)
    assert (ret["removed"], ret["deactivated"]) == ([], [IMG])
    assert world.names() == [IMG] and world.lvs[(VG, IMG)]["active"] is False


def test_delete_legacy_images_dir(world, mnt):
    legacy = f"{mnt}/42/images"
    os.makedirs(legacy)
    world.add("lv-one-42-0")
    os.symlink(f"/dev/{VG}/lv-one-42-0", f"{legacy}/disk.0")
    tm.delete(legacy, 42)
    assert world.names() == [] and not os.path.lexists(f"{legacy}/disk.0")
    assert called(world, "vm_delete")[0][2]["path"] is None


# ------------------------------------------------------------------ mv / migrations
def test_mv_roles_by_minion_id(world, mnt, opts):
    _vm(world, mnt, 42)
    world.add(IMG)
    os.symlink(f"/dev/{VG}/{IMG}", disk(mnt, 2))
    for lv in world.lvs.values():
        lv.update(active=True, mode="exclusive")
    ret = tm.mv(vmdir(mnt), vmdir(mnt), 42, src_host="node1", dst_host="node2")
    assert ret == {"action": "mv", "role": "source", "deactivated": ["lv-one-42-0", "lv-one-42-1", IMG]}
    assert not any(lv["active"] for lv in world.lvs.values())
    opts["id"] = "node2"
    ret = tm.mv(vmdir(mnt), vmdir(mnt), 42, src_host="node1", dst_host="node2")
    assert ret["role"] == "destination" and all(lv["mode"] == "exclusive" for lv in world.lvs.values())
    opts["id"] = "node3"
    with pytest.raises(SaltInvocationError, match="neither"):
        tm.mv(vmdir(mnt), vmdir(mnt), 42, src_host="node1", dst_host="node2")


def test_mv_one_disk_only(world, mnt, opts):
    _vm(world, mnt, 42)
    opts["id"] = "node2"
    ret = tm.mv(disk(mnt, 1), disk(mnt, 1), 42, dst_host="node2")
    assert ret["activated"] == ["lv-one-42-1"]


def test_destination_waits_for_the_lock(world, mnt, opts, conf, monkeypatch):
    _vm(world, mnt, 42, disks=(0,))
    conf["lock_wait"] = 5
    monkeypatch.setattr(tm.time, "sleep", lambda s: None)
    attempts = []

    def busy(args, kwargs):
        attempts.append(1)
        return CommandExecutionError("LV locked by other host") if len(attempts) < 3 else None

    world.fail["lv_activate"] = busy
    opts["id"] = "node2"
    tm.postmigrate(42, vmdir(mnt), src_host="node1", dst_host="node2")
    assert len(attempts) == 3 and world.lvs[(VG, "lv-one-42-0")]["mode"] == "exclusive"
    conf["lock_wait"] = 0
    world.fail["lv_activate"] = CommandExecutionError("LV locked by other host")
    with pytest.raises(CommandExecutionError, match="still refused after 0 s"):
        tm.postmigrate(42, vmdir(mnt), src_host="node1", dst_host="node2")


def test_premigrate_shares_and_refuses_thin(world, mnt, opts):
    _vm(world, mnt, 42)
    for who in ("node1", "node2"):
        opts["id"] = who
        tm.premigrate(42, vmdir(mnt), src_host="node1", dst_host="node2")
    assert all(lv["mode"] == "shared" for lv in world.lvs.values())
    world.lvs[(VG, "lv-one-42-1")]["thin"] = True
    with pytest.raises(CommandExecutionError, match="thin LVs cannot be active on two hosts"):
        tm.premigrate(42, vmdir(mnt), src_host="node1", dst_host="node2")


def test_premigrate_destination_undoes_on_failure(world, mnt, opts):
    _vm(world, mnt, 42)
    opts["id"] = "node2"
    world.fail["lv_activate"] = lambda a, k: CommandExecutionError("no") if a == ("lv-one-42-1",) else None
    with pytest.raises(CommandExecutionError):
        tm.premigrate(42, vmdir(mnt), src_host="node1", dst_host="node2")
    assert world.lvs[(VG, "lv-one-42-0")]["active"] is False


def test_postmigrate_and_failmigrate_roles(world, mnt, opts):
    _vm(world, mnt, 42, disks=(0,))
    world.lvs[(VG, "lv-one-42-0")].update(active=True, mode="shared")
    tm.postmigrate(42, vmdir(mnt), src_host="node1", dst_host="node2")
    assert world.lvs[(VG, "lv-one-42-0")]["active"] is False
    opts["id"] = "node2"
    tm.failmigrate(42, vmdir(mnt), src_host="node1", dst_host="node2")
    assert world.lvs[(VG, "lv-one-42-0")]["active"] is False
    opts["id"] = "node1"
    tm.failmigrate(42, vmdir(mnt), src_host="node1", dst_host="node2")
    assert world.lvs[(VG, "lv-one-42-0")]["mode"] == "exclusive"
    with pytest.raises(SaltInvocationError):
        tm.premigrate(42, disk(mnt, 0), src_host="node1", dst_host="node2")


# ------------------------------------------------------------------ snapshots, resize
def test_snapshots(world, mnt):
    _vm(world, mnt, 42, disks=(0,))
    tm.snap_create(disk(mnt, 0), 3, vmid=42)
    assert world.lvs[(VG, "lv-one-42-0-s3")]["origin"] == "lv-one-42-0"
    tm.snap_revert(disk(mnt, 0), 3, vmid=42)
    # LVM's merge, then the snapshot taken again (oned keeps it listed); never a copy
    assert [c[0] for c in world.calls if c[0] in ("lv_merge", "lv_snapshot", "copy")][-2:] == ["lv_merge", "lv_snapshot"]
    assert not called(world, "copy")
    assert world.lvs[(VG, "lv-one-42-0-s3")]["origin"] == "lv-one-42-0"
    tm.snap_delete(disk(mnt, 0), 3, vmid=42)
    assert world.names() == ["lv-one-42-0"]
    assert tm.snap_delete(disk(mnt, 0), 3, vmid=42)["removed"] is False
    world.lvs[(VG, "lv-one-42-0")]["open"] = True
    with pytest.raises(CommandExecutionError, match="open"):
        tm.snap_create(disk(mnt, 0), 4, vmid=42)
    with pytest.raises(CommandExecutionError, match="open"):
        tm.snap_revert(disk(mnt, 0), 3, vmid=42)


def test_snap_revert_thick_is_a_merge_and_keeps_the_snapshot(world, mnt):
    """Issue 13.2: a dense copy of the snapshot into its origin pushed every chunk into
    the snapshot's own COW area (overflow -> invalid, disk half reverted)."""
    _vm(world, mnt, 42, disks=(0,))
    world.add("lv-one-42-0-s1", 100, origin="lv-one-42-0")
    ret = tm.snap_revert(disk(mnt, 0), 1, vmid=42)
    assert ret["method"] == "merge"
    merge = called(world, "lv_merge")
    assert merge == [("lv_merge", ("lv-one-42-0-s1",), {"vg": VG})]
    assert called(world, "lv_snapshot")[-1][1] == ("lv-one-42-0", "lv-one-42-0-s1")
    assert world.names() == ["lv-one-42-0", "lv-one-42-0-s1"] and not called(world, "copy")


def test_snap_revert_refuses_invalid_and_missing_snapshot(world, mnt):
    _vm(world, mnt, 42, disks=(0,))
    world.add("lv-one-42-0-s1", 100, origin="lv-one-42-0", attr="swi-I-s---")
    with pytest.raises(CommandExecutionError, match=r"snapshot .*lv-one-42-0-s1 is invalid \(its copy-on-write area overflowed\)"):
        tm.snap_revert(disk(mnt, 0), 1, vmid=42)
    with pytest.raises(CommandExecutionError, match="lv-one-42-0-s2 not found: nothing to revert to"):
        tm.snap_revert(disk(mnt, 0), 2, vmid=42)
    assert not called(world, "lv_merge") and not called(world, "lv_remove")
    assert world.names() == ["lv-one-42-0", "lv-one-42-0-s1"]
    ret = tm.snap_delete(disk(mnt, 0), 1, vmid=42)  # an invalid snapshot can be deleted
    assert (ret["removed"], ret["invalid"]) == (True, True)


def test_snap_revert_merge_ok_but_resnapshot_fails_says_so(world, mnt):
    _vm(world, mnt, 42, disks=(0,))
    world.add("lv-one-42-0-s1", 100, origin="lv-one-42-0")
    world.fail["lv_snapshot"] = CommandExecutionError("lvcreate failed (rc 5): VG full")
    with pytest.raises(CommandExecutionError, match="was reverted to snapshot 1, but taking the snapshot again failed"):
        tm.snap_revert(disk(mnt, 0), 1, vmid=42)


def test_snap_revert_thin_is_a_snapshot_of_the_snapshot(world, mnt):
    _vm(world, mnt, 42, disks=(0,))
    world.lvs[(VG, "lv-one-42-0")].update(thin=True, pool="pool", active=True, mode="exclusive")
    world.add("lv-one-42-0-s1", 100, thin=True, pool="pool", origin="lv-one-42-0")
    ret = tm.snap_revert(disk(mnt, 0), 1, vmid=42)
    assert ret["method"] == "thin-snapshot"
    assert called(world, "lv_remove")[-1][1] == ("lv-one-42-0",)
    assert called(world, "lv_snapshot")[-1][1] == ("lv-one-42-0-s1", "lv-one-42-0")
    new = world.lvs[(VG, "lv-one-42-0")]
    assert (new["origin"], new["thin"], new["active"]) == ("lv-one-42-0-s1", True, True)
    assert not called(world, "lv_merge") and not called(world, "copy")
    # a retry after a failure between removal and re-creation only re-creates
    world.fail["lv_snapshot"] = CommandExecutionError("thin pool metadata full")
    with pytest.raises(CommandExecutionError):
        tm.snap_revert(disk(mnt, 0), 1, vmid=42)
    assert "lv-one-42-0" not in world.names()
    tm.snap_revert(disk(mnt, 0), 1, vmid=42)
    assert world.names() == ["lv-one-42-0", "lv-one-42-0-s1"]


def test_resize(world, mnt):
    _vm(world, mnt, 42, disks=(0,))
    assert tm.resize(disk(mnt, 0), 500, vmid=42)["size_mb"] == 500
    with pytest.raises(CommandExecutionError, match="not a link"):
        tm.resize(disk(mnt, 9), 500, vmid=42)


# ------------------------------------------------------------------ mvds / cpds
def test_cpds_creates_and_rolls_back(world, mnt):
    _vm(world, mnt, 42, disks=(0,))
    world.fail["copy"] = CommandExecutionError("io error")
    with pytest.raises(CommandExecutionError):
        tm.cpds(disk(mnt, 0), f"/dev/{VG}/{IMG}", 42)
    assert IMG not in world.names()
    tm.cpds(disk(mnt, 0), f"/dev/{VG}/{IMG}", 42)
    assert world.lvs[(VG, IMG)]["active"] is False and world.lvs[(VG, IMG)]["size_mb"] == 100


def test_cpds_into_existing_volume_keeps_it_on_failure(world, mnt):
    _vm(world, mnt, 42, disks=(0,))
    world.add(IMG, 50)
    world.fail["copy"] = CommandExecutionError("io error")
    with pytest.raises(CommandExecutionError):
        tm.cpds(disk(mnt, 0), f"/dev/{VG}/{IMG}", 42)
    assert IMG in world.names() and world.lvs[(VG, IMG)]["size_mb"] == 100
    assert world.lvs[(VG, IMG)]["active"] is False  # activated for the copy, let go on failure


def test_mvds_persistent_and_copy(world, mnt):
    os.makedirs(vmdir(mnt))
    world.add(IMG, active=True, mode="exclusive")
    os.symlink(f"/dev/{VG}/{IMG}", disk(mnt, 1))
    tm.mvds(disk(mnt, 1), f"/dev/{VG}/{IMG}", 42)
    assert not os.path.lexists(disk(mnt, 1)) and world.lvs[(VG, IMG)]["active"] is False
    _vm(world, mnt, 42, disks=(0,))
    tm.mvds(disk(mnt, 0), f"/dev/{VG}/{IMG}", 42)
    assert world.names() == [IMG] and not os.path.lexists(disk(mnt, 0))


# ------------------------------------------------------------------ datastore
def test_ds_cp_url_and_device(world):
    ret = tm.ds_cp("https://example.com/a.img", IMG, size_mb=20)
    assert ret == {"source": f"/dev/{VG}/{IMG}", "size_mb": 20, "bytes": 1, "format": "raw"}
    assert world.lvs[(VG, IMG)]["active"] is False
    world.add("lv-one-7-0", 300)
    tm.ds_cp(f"/dev/{VG}/lv-one-7-0", IMG2)
    assert world.lvs[(VG, IMG2)]["size_mb"] == 300
    world.lvs[(VG, "lv-one-7-0")]["open"] = True
    with pytest.raises(CommandExecutionError, match="open"):
        tm.ds_cp(f"/dev/{VG}/lv-one-7-0", "lv-oneimg-" + "1" * 32)
    assert "lv-oneimg-" + "1" * 32 not in world.names()


def test_ds_cp_staged_verifies_and_cleans_up(world, mnt):
    path, size, digest = _staged(mnt, b"x" * (2 * 1024 * 1024))
    ret = tm.ds_cp(path, IMG, staged_bytes=size, staged_sha256=digest)
    assert ret["size_mb"] == 2 and not os.path.exists(path)
    assert called(world, "copy")[-1][2]["sha256"] == digest
    path, size, digest = _staged(mnt, b"y" * 10)
    world.fail["copy"] = CommandExecutionError("sha256 mismatch")
    with pytest.raises(CommandExecutionError):
        tm.ds_cp(path, IMG2, staged_bytes=size, staged_sha256=digest)
    assert IMG2 not in world.names() and not os.path.exists(path)


def test_ds_cp_staged_qcow2_is_stored_raw_in_an_lv_of_its_virtual_size(world, mnt):
    path, size, digest = _staged(mnt, b"QFI\xfb" + b"q" * 100)
    os.rename(path, path[:-4] + ".qcow2")
    path = path[:-4] + ".qcow2"
    world.virtual[path] = 3 * 1024 * 1024 * 1024
    ret = tm.ds_cp(path, IMG, size_mb=1, staged_bytes=size, staged_sha256=digest)
    assert ret == {"source": f"/dev/{VG}/{IMG}", "size_mb": 3072, "bytes": 1, "format": "qcow2"}
    assert called(world, "copy")[-1] == ("copy", (path, f"/dev/{VG}/{IMG}"),
                                         {"fmt": "qcow2", "sparse": True, "sha256": digest, "dst_zeroed": True})
    assert world.lvs[(VG, IMG)]["size_mb"] == 3072 and not os.path.exists(path)


def test_ds_cp_url_qcow2_is_fetched_to_staging_then_converted(world, mnt):
    url = "https://example.com/cloud.qcow2"
    ret = tm.ds_cp(url, IMG, size_mb=20)
    fetch, convert = called(world, "copy")
    staged = fetch[1][1]
    assert fetch[1][0] == url and os.path.dirname(staged) == f"{mnt}/.gfs2clvm-staging"
    assert convert[1] == (staged, f"/dev/{VG}/{IMG}") and convert[2]["fmt"] == "qcow2"
    assert ret["format"] == "qcow2" and ret["size_mb"] == 20
    world.fail["copy"] = lambda args, kwargs: CommandExecutionError("qemu-img failed") if args[1].startswith("/dev/") else None
    Path(staged).parent.mkdir(exist_ok=True)
    with pytest.raises(CommandExecutionError, match="qemu-img failed"):
        tm.ds_cp(url, IMG2, size_mb=20)
    assert IMG2 not in world.names()
    assert not [p for p in os.listdir(f"{mnt}/.gfs2clvm-staging")]


def test_ds_mkfs_rm_stat_clone_monitor(world):
    world.fail["mkfs"] = CommandExecutionError("mkfs failed")
    with pytest.raises(CommandExecutionError):
        tm.ds_mkfs(IMG, 100, fs="ext4")
    assert world.names() == []
    assert tm.ds_mkfs(IMG, 100)["source"] == f"/dev/{VG}/{IMG}"
    assert tm.ds_stat(f"/dev/{VG}/{IMG}") == {"size_mb": 100}
    assert tm.ds_clone(f"/dev/{VG}/{IMG}", IMG2)["size_mb"] == 100
    assert world.lvs[(VG, IMG2)]["active"] is False
    assert tm.ds_rm(IMG2)["removed"] is True
    assert tm.ds_rm(IMG2)["removed"] is False
    with pytest.raises(SaltInvocationError):
        tm.ds_rm("lv-one-1-0")
    with pytest.raises(SaltInvocationError):
        tm.ds_rm("gfs2")
    assert tm.ds_monitor() == {"used_mb": 300, "free_mb": 700, "total_mb": 1000}


def test_monitor_reports_vm_disks(world):
    world.add("lv-one-42-0", 2048)
    world.add("lv-one-42-0-s1", 2048)
    world.add("lv-one-7-3", 10)
    world.add(IMG)
    ret = tm.monitor(0)
    assert ret == {"used_mb": 300, "free_mb": 700, "total_mb": 1000, "vms": {"42": {"0": 2048}, "7": {"3": 10}}}


@pytest.mark.parametrize("path", ["{mnt}/datastores/0", "{mnt}/datastores", "{mnt}/0", "{mnt}/x/0/0",
                                  "{mnt}/datastores/0/0/0", "{mnt}/datastores/x/0", "{mnt}/0/images/x/disk.0",
                                  "{mnt}/datastores/0/disk.0"])
def test_only_the_exact_vm_layouts_are_a_vm_directory(world, mnt, path):
    """VM 0 of system datastore 0: '<mp>/datastores/0' ends in '0' but is the datastore."""
    with pytest.raises(SaltInvocationError, match="not in the directory of VM 0"):
        tm.delete(path.format(mnt=mnt), 0)
    assert world.calls == []


def test_mv_to_another_system_datastore_moves_links_and_dir(world, mnt, opts):
    """DS_MIGRATE: disk mvs, then the dir mv, from datastores/0 to datastores/100."""
    _vm(world, mnt, 42, disks=(0, 1))
    Path(vmdir(mnt), "checkpoint").write_text("state")
    new = f"{mnt}/datastores/100/42"
    opts["id"] = "node2"
    ret = tm.mv(disk(mnt, 0), f"{new}/disk.0", 42, src_host="node1", dst_host="node2")
    assert ret["activated"] == ["lv-one-42-0"] and ret["moved"] == f"{new}/disk.0"
    assert os.readlink(f"{new}/disk.0") == f"/dev/{VG}/lv-one-42-0" and not os.path.lexists(disk(mnt, 0))
    ret = tm.mv(vmdir(mnt), new, 42, src_host="node1", dst_host="node2")
    assert ret["moved"] == new and not os.path.exists(vmdir(mnt))
    assert sorted(os.listdir(new)) == ["checkpoint", "disk.0", "disk.1"]
    assert ret["activated"] == ["lv-one-42-0", "lv-one-42-1"]
    # a retry finds everything in place
    assert tm.mv(vmdir(mnt), new, 42, src_host="node1", dst_host="node2")["moved"] is None


def test_mv_move_happens_only_after_the_activations(world, mnt, opts):
    _vm(world, mnt, 42, disks=(0,))
    opts["id"] = "node2"
    world.fail["lv_activate"] = CommandExecutionError("LV locked by other host")
    with pytest.raises(CommandExecutionError):
        tm.mv(vmdir(mnt), f"{mnt}/datastores/100/42", 42, src_host="node1", dst_host="node2")
    assert os.path.islink(disk(mnt, 0)) and not os.path.exists(f"{mnt}/datastores/100/42")


# ------------------------------------------------- concurrent readers of one image
# Found in the lab (20 parallel clones of one image): the first clone to finish
# deactivated the image under another that had found it active -- "cannot read
# /dev/...: No such file or directory".  Real flock files, in a private lock dir.
def test_concurrent_readers_of_one_image_leave_deactivation_to_the_last(world, monkeypatch, tmp_path):
    monkeypatch.setattr(tm, "LOCK_DIRS", (str(tmp_path),))
    world.add(IMG)
    first, second = tm._source_use(VG, IMG), tm._source_use(VG, IMG)
    first.__enter__()
    assert world.lvs[(VG, IMG)]["active"] and world.lvs[(VG, IMG)]["mode"] == "shared"
    second.__enter__()  # finds it active: does not activate again
    first.__exit__(None, None, None)
    assert world.lvs[(VG, IMG)]["active"], "deactivated under the second reader"
    second.__exit__(None, None, None)
    assert not world.lvs[(VG, IMG)]["active"], "the last reader leaves it active"
    assert [c[0] for c in world.calls if c[0] in ("lv_activate", "lv_deactivate")] == ["lv_activate", "lv_deactivate"]
    assert not list(tmp_path.glob("*.ours"))


def test_an_image_active_before_the_readers_stays_active(world, monkeypatch, tmp_path):
    monkeypatch.setattr(tm, "LOCK_DIRS", (str(tmp_path),))
    world.add(IMG, active=True, mode="exclusive")
    with tm._source_use(VG, IMG):
        with tm._source_use(VG, IMG):
            pass
    assert world.lvs[(VG, IMG)]["active"]
    assert not [c for c in world.calls if c[0] in ("lv_activate", "lv_deactivate")]


def test_a_failed_copy_still_releases_the_image(world, monkeypatch, tmp_path):
    monkeypatch.setattr(tm, "LOCK_DIRS", (str(tmp_path),))
    world.add(IMG)
    with pytest.raises(CommandExecutionError):
        with tm._source_use(VG, IMG):
            raise CommandExecutionError("copy failed")
    assert not world.lvs[(VG, IMG)]["active"]
    with tm._source_use(VG, IMG):  # nothing left locked
        assert world.lvs[(VG, IMG)]["active"]


# ------------------------------------------------------------------ premigrate order (handoff)
HANDOFF = "0123456789abcdef0123456789abcdef"


def test_premigrate_destination_activates_only_after_the_source_shared(world, mnt, opts, conf, monkeypatch):
    """Found under real oned: the destination's lock_wait ran out while the source had not yet
    converted its exclusive lock (``shared activation still refused after 60 s``).  With the
    handoff word the destination waits for the source, however slow, then activates once."""
    _vm(world, mnt, 42, disks=(0,))
    world.lvs[(VG, "lv-one-42-0")].update(active=True, mode="exclusive")  # freshly deployed on node1
    conf.update(lock_wait=0, migrate_wait=600)
    activations = []
    world.fail["lv_activate"] = lambda a, k: activations.append((opts["id"], k["mode"])) and None
    clock = [0.0]
    monkeypatch.setattr(tm.time, "monotonic", lambda: clock[0])

    def slow_source(seconds):  # the source's half arrives 90 s after the destination started waiting
        clock[0] += seconds
        if clock[0] >= 90 and not activations:
            opts["id"] = "node1"
            tm.premigrate(42, vmdir(mnt), src_host="node1", dst_host="node2", handoff=HANDOFF)
            opts["id"] = "node2"

    monkeypatch.setattr(tm.time, "sleep", slow_source)
    opts["id"] = "node2"
    ret = tm.premigrate(42, vmdir(mnt), src_host="node1", dst_host="node2", handoff=HANDOFF)
    assert ret["role"] == "destination"
    assert activations == [("node1", "shared"), ("node2", "shared")]
    assert not os.listdir(os.path.join(str(mnt), ".gfs2clvm-staging"))  # the word is consumed


def test_premigrate_destination_stops_at_once_when_the_source_failed(world, mnt, opts, conf):
    _vm(world, mnt, 42, disks=(0,))
    world.fail["lv_activate"] = CommandExecutionError("LV locked by other host")
    with pytest.raises(CommandExecutionError, match="still refused"):
        tm.premigrate(42, vmdir(mnt), src_host="node1", dst_host="node2", handoff=HANDOFF)
    opts["id"] = "node2"
    with pytest.raises(CommandExecutionError, match="the source host node1 could not share the VM's LVs: "
                                                    "failed: .*still refused"):
        tm.premigrate(42, vmdir(mnt), src_host="node1", dst_host="node2", handoff=HANDOFF)
    assert world.lvs[(VG, "lv-one-42-0")]["active"] is False
    conf["migrate_wait"] = 0
    with pytest.raises(CommandExecutionError, match=r"did not share the VM's LVs within 0 s \(migrate_wait\)"):
        tm.premigrate(42, vmdir(mnt), src_host="node1", dst_host="node2", handoff=HANDOFF)
    with pytest.raises(SaltInvocationError, match="handoff must be 32 hex digits"):
        tm.premigrate(42, vmdir(mnt), src_host="node1", dst_host="node2", handoff="../x")


def test_postmigrate_failure_leaves_the_disks_usable_on_the_destination(world, mnt, opts, conf):
    """postmigrate is no_fail for oned (one_vmm_exec.rb:664-670): the VM runs on the destination."""
    _vm(world, mnt, 42, disks=(0,))
    world.lvs[(VG, "lv-one-42-0")].update(active=True, mode="shared")
    world.fail["lv_activate"] = CommandExecutionError("LV locked by other host")
    opts["id"] = "node2"
    with pytest.raises(CommandExecutionError, match="exclusive activation still refused"):
        tm.postmigrate(42, vmdir(mnt), src_host="node1", dst_host="node2")
    assert world.lvs[(VG, "lv-one-42-0")]["active"] is True  # still there for the running VM
