# SPDX-License-Identifier: Apache-2.0
"""gfs2clvm primitives on real files, through Salt's real loader and ``cmd`` module.

The module is loaded by saltfactories' ``Loaders`` from ``_modules`` exactly as a
minion loads it; ``cmd.run_all`` really runs qemu-img, mkswap, mkfs.ext4,
genisoimage... on files in a temporary "mountpoint" (``mount_check: none``).
LVM commands cannot run on this host (no device-mapper): ``lvm_bin`` points at
tiny stand-in scripts that print the LVM JSON captured in the lab and log their
argv, so the real runner, sudo-less argv and JSON parsing are exercised.
"""

import base64
import grp
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path
from unittest.mock import patch

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError
from module_loaders import QuietHandler, http_dir_server, loop_device_lv, module_loaders

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
MiB = 1024 * 1024
VG = "vg_cloudstorage"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("gfs2clvm-files")
    (base / "one").mkdir()
    fake_bin = base / "lvm-bin"
    fake_bin.mkdir()
    log = base / "lvm.log"
    for cmd in ("lvs", "lvremove", "lvchange"):
        script = fake_bin / cmd
        body = f'echo "{cmd} $*" >> {log}\n'
        if cmd == "lvs":
            body += f'cat {base / "lvs.json"}\n'
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(0o755)
    return base


@pytest.fixture(scope="module")
def loaders(world):
    yield from module_loaders(world, lvm_bin=str(world / "lvm-bin"), dd_bs="1M")


@pytest.fixture
def mod(loaders):
    return loaders.modules.gfs2clvm


@pytest.fixture
def mnt(world, request):
    """A fresh directory under the mountpoint for each test."""
    path = world / "one" / request.node.name.replace("[", "_").replace("]", "")
    path.mkdir()
    return path


def _sparse_image(path, size, pieces):
    """A sparse file of ``size`` bytes with random data at the given (offset, length)s."""
    with open(path, "wb") as handle:
        handle.truncate(size)
        for offset, length in pieces:
            handle.seek(offset)
            handle.write(os.urandom(length))


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _allocated(path):
    return os.stat(path).st_blocks * 512


def test_loaded_through_the_real_loader(loaders, mod):
    assert "gfs2clvm.copy" in loaders.modules
    assert mod.name_vm(1, 2) == "lv-one-1-2"


# ---------------------------------------------------------------- copy
def test_copy_sparse_file_to_file(mod, mnt):
    src, dst = mnt / "src.img", mnt / "dst.img"
    size = 64 * MiB + 1234  # an unaligned tail too
    _sparse_image(src, size, [(0, MiB), (20 * MiB, 3 * MiB + 512), (64 * MiB, 1234)])
    ret = mod.copy(str(src), str(dst), sha256=True)
    assert dst.read_bytes() == src.read_bytes()
    assert ret["bytes"] == size and ret["sha256"] == _sha(src) and ret["fmt"] == "raw"
    assert ret["written"] < 6 * MiB  # only the data extents were written
    assert _allocated(dst) < 8 * MiB  # holes stayed holes
    assert set(ret) == {"src", "dst", "fmt", "bytes", "written", "seconds", "sha256"}


def test_copy_zero_blocks_become_holes_and_dense_without_sparse(mod, mnt):
    src = mnt / "dense.img"
    src.write_bytes(os.urandom(MiB) + bytes(6 * MiB) + os.urandom(MiB))  # allocated zeros
    sparse = mod.copy(str(src), str(mnt / "a.img"))
    dense = mod.copy(str(src), str(mnt / "b.img"), sparse=False)
    assert (mnt / "a.img").read_bytes() == src.read_bytes() == (mnt / "b.img").read_bytes()
    assert sparse["written"] == 2 * MiB and dense["written"] == 8 * MiB
    assert _allocated(mnt / "a.img") <= 3 * MiB and _allocated(mnt / "b.img") >= 8 * MiB


def test_copy_replaces_an_existing_file_entirely(mod, mnt):
    src, dst = mnt / "small.img", mnt / "old.img"
    _sparse_image(src, 4 * MiB, [(MiB, 4096)])
    dst.write_bytes(b"\xff" * 8 * MiB)  # old data, larger than the new image
    mod.copy(str(src), str(dst))
    assert dst.read_bytes() == src.read_bytes()


def test_copy_verifies_sha256_and_removes_a_bad_copy(mod, mnt):
    src = mnt / "src.img"
    _sparse_image(src, 2 * MiB, [(0, 4096)])
    assert mod.copy(str(src), str(mnt / "ok.img"), sha256=_sha(src))["sha256"] == _sha(src)
    with pytest.raises(CommandExecutionError, match="sha256 mismatch"):
        mod.copy(str(src), str(mnt / "bad.img"), sha256="0" * 64)
    assert not (mnt / "bad.img").exists()


def test_copy_missing_source_leaves_nothing(mod, mnt):
    with pytest.raises(CommandExecutionError, match="cannot read .*nope.img: No such file"):
        mod.copy(str(mnt / "nope.img"), str(mnt / "dst.img"))
    assert not (mnt / "dst.img").exists()


def test_a_failed_copy_keeps_the_old_destination(mod, mnt, http_dir):
    """Files are built beside the destination and renamed: a failure changes nothing."""
    root, url = http_dir
    old = mnt / "disk.img"
    old.write_bytes(b"old" * 1000)
    with pytest.raises(CommandExecutionError, match="cannot read"):
        mod.copy(str(mnt / "nope.img"), str(old))
    with pytest.raises(CommandExecutionError, match="404"):
        mod.copy(f"{url}/missing.raw", str(old))
    bad_qcow = mnt / "bad.qcow2"
    bad_qcow.write_bytes(b"QFI\xfb" + bytes(100))
    with pytest.raises(CommandExecutionError, match="qcow2 version 0 is not supported"):
        mod.copy(str(bad_qcow), str(old), fmt="qcow2")
    # a header that passes the module's checks but that qemu-img refuses (cluster size 2^99)
    _qemu_img("create", "-f", "qcow2", str(bad_qcow), "8M")
    with open(bad_qcow, "r+b") as handle:
        handle.seek(20)
        handle.write((99).to_bytes(4, "big"))
    with pytest.raises(CommandExecutionError, match="qemu-img failed .*cluster size"):
        mod.copy(str(bad_qcow), str(old), fmt="qcow2")
    assert old.read_bytes() == b"old" * 1000
    assert sorted(p.name for p in mnt.iterdir()) == ["bad.qcow2", "disk.img"]


def test_http_redirect_to_another_scheme_is_refused(mod, mnt, http_dir):
    root, url = http_dir
    (root / "moved.raw").write_text("")  # the handler below redirects instead
    with patch.object(QuietHandler, "do_GET", _redirect_to_file):
        with pytest.raises(CommandExecutionError, match="redirect to a non-http"):
            mod.copy(f"{url}/moved.raw", str(mnt / "x.raw"))
    assert not (mnt / "x.raw").exists()


def _redirect_to_file(handler):
    handler.send_response(302)
    handler.send_header("Location", "ftp://127.0.0.1/etc/passwd")  # urllib itself would follow ftp
    handler.end_headers()


def test_copy_into_new_directories(mod, mnt):
    src = mnt / "src.img"
    _sparse_image(src, MiB, [(0, 4096)])
    dst = mnt / "datastores" / "0" / "5" / "disk.0"
    mod.copy(str(src), str(dst))
    assert dst.read_bytes() == src.read_bytes()


def _qemu_img(*args):
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def test_copy_qcow2_to_raw_with_real_qemu_img(mod, mnt):
    raw = mnt / "orig.raw"
    _sparse_image(raw, 32 * MiB, [(0, MiB), (17 * MiB, 2 * MiB)])
    qcow = mnt / "image.qcow2"
    _qemu_img("convert", "-f", "raw", "-O", "qcow2", str(raw), str(qcow))
    ret = mod.copy(str(qcow), str(mnt / "out.raw"), fmt="qcow2", sha256=True)
    assert (mnt / "out.raw").read_bytes() == raw.read_bytes()
    assert ret["bytes"] == 32 * MiB and ret["fmt"] == "qcow2" and ret["sha256"] == _sha(qcow)
    assert _allocated(mnt / "out.raw") < 8 * MiB
    auto = mod.copy(str(qcow), str(mnt / "auto.raw"), fmt="auto")
    assert auto["fmt"] == "qcow2" and (mnt / "auto.raw").read_bytes() == raw.read_bytes()
    assert mod.copy(str(raw), str(mnt / "auto2.raw"), fmt="auto")["fmt"] == "raw"


def test_copy_qcow2_with_backing_file_is_refused(mod, mnt, tmp_path):
    secret = tmp_path / "secret.raw"
    secret.write_bytes(b"not yours" * 1000)
    overlay = mnt / "overlay.qcow2"
    _qemu_img("create", "-f", "qcow2", "-F", "raw", "-b", str(secret), str(overlay))
    with pytest.raises(CommandExecutionError, match="has a backing file"):
        mod.copy(str(overlay), str(mnt / "out.raw"), fmt="qcow2")
    assert not (mnt / "out.raw").exists()


@pytest.fixture
def http_dir(tmp_path):
    yield from http_dir_server(tmp_path)


def test_copy_from_http(mod, mnt, http_dir):
    root, url = http_dir
    image = root / "image.raw"
    image.write_bytes(os.urandom(MiB + 100) + bytes(3 * MiB) + os.urandom(5000))
    ret = mod.copy(f"{url}/image.raw", str(mnt / "dl.raw"), sha256=_sha(image))
    assert (mnt / "dl.raw").read_bytes() == image.read_bytes()
    assert ret["bytes"] == image.stat().st_size and ret["written"] < 3 * MiB
    with pytest.raises(CommandExecutionError, match="404"):
        mod.copy(f"{url}/missing.raw", str(mnt / "missing.raw"))
    assert not (mnt / "missing.raw").exists()


@pytest.fixture
def loop_lv(tmp_path):
    yield from loop_device_lv(tmp_path, "ut")


def test_copy_to_a_block_device_zeroes_the_holes(mod, mnt, loop_lv):
    src = mnt / "src.img"
    _sparse_image(src, 8 * MiB, [(MiB, MiB), (6 * MiB, 4096)])
    ret = mod.copy(str(src), str(loop_lv))
    with open(loop_lv, "rb") as dev:
        data = dev.read(16 * MiB)
    assert data[: 8 * MiB] == src.read_bytes()  # holes of the source read zeros (BLKZEROOUT)
    assert data[8 * MiB:] == b"\xee" * 8 * MiB  # beyond the image: untouched
    assert ret["written"] == MiB + 4096 and ret["dst"] == str(loop_lv)
    # dst_zeroed: the holes are trusted to be zero already (not touched)
    with open(loop_lv, "r+b") as dev:
        dev.write(b"\xaa" * MiB)
    mod.copy(str(src), str(loop_lv), dst_zeroed=True)
    with open(loop_lv, "rb") as dev:
        assert dev.read(MiB) == b"\xaa" * MiB


def test_copy_device_too_small_and_link_resolution(mod, mnt, loop_lv):
    big = mnt / "big.img"
    _sparse_image(big, 32 * MiB, [(0, 4096)])
    with pytest.raises(CommandExecutionError, match="is smaller than"):
        mod.copy(str(big), str(loop_lv))
    # a disk.N symlink under the mountpoint that points at the LV is the LV
    mod.link(str(loop_lv), str(mnt / "disk.0"))
    small = mnt / "small.img"
    _sparse_image(small, MiB, [(0, MiB)])
    assert mod.copy(str(small), str(mnt / "disk.0"))["dst"] == str(loop_lv)
    assert mod.copy(str(mnt / "disk.0"), str(mnt / "back.img"), sparse=False)["bytes"] == 16 * MiB
    assert (mnt / "back.img").read_bytes()[:MiB] == small.read_bytes()
    assert (mnt / "disk.0").is_symlink()


def test_mkswap_and_mkfs_on_a_block_device(mod, loop_lv):
    assert mod.mkfs(str(loop_lv), "ext4") == {"path": str(loop_lv), "fstype": "ext4"}
    blkid = subprocess.run(["blkid", "-o", "value", "-s", "TYPE", str(loop_lv)], capture_output=True, text=True)
    assert blkid.stdout.strip() == "ext4"


# ---------------------------------------------------------------- files
def test_link(mod, mnt):
    path = mnt / "datastores" / "0" / "9" / "disk.0"
    target = f"/dev/{VG}/lv-one-9-0"
    assert mod.link(target, str(path)) == {"path": str(path), "target": target, "changed": True}
    assert os.readlink(path) == target
    assert mod.link(target, str(path))["changed"] is False
    with pytest.raises(CommandExecutionError, match="exists"):
        mod.link(f"/dev/{VG}/lv-one-9-1", str(path))
    assert mod.link(f"/dev/{VG}/lv-one-9-1", str(path), force=True)["changed"] is True
    assert os.readlink(path) == f"/dev/{VG}/lv-one-9-1"
    iso = mnt / "image.iso"
    iso.write_bytes(b"iso")
    mod.link(str(iso), str(mnt / "disk.1"))
    assert (mnt / "disk.1").read_bytes() == b"iso"
    assert sorted(p.name for p in path.parent.iterdir()) == ["disk.0"]  # no temporary left


def test_chown_to_the_current_user(mod, mnt):
    me, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
    path = mnt / "f"
    path.write_text("x")
    if os.geteuid() == 0:
        os.chown(path, 65534, 65534)
    assert mod.chown(str(path)) == {"path": str(path), "user": me, "group": group}
    assert (path.stat().st_uid, path.stat().st_gid) == (os.geteuid(), os.getegid())
    assert mod.chown(str(path), user=me, group=group)["user"] == me
    with pytest.raises(CommandExecutionError, match="user nosuchuser0 does not exist"):
        mod.chown(str(path), user="nosuchuser0")
    with pytest.raises(CommandExecutionError, match="No such file"):
        mod.chown(str(mnt / "missing"))


def test_mkswap_on_a_file(mod, mnt):
    path = mnt / "swap.img"
    path.write_bytes(bytes(4 * MiB))
    assert mod.mkswap(str(path)) == {"path": str(path), "fstype": "swap"}
    with open(path, "rb") as handle:
        handle.seek(4096 - 10)
        assert handle.read(10) == b"SWAPSPACE2"
    with pytest.raises(CommandExecutionError, match="not an existing file"):
        mod.mkswap(str(mnt / "missing.img"))


def test_mkfs_on_a_file(mod, mnt):
    path = mnt / "fs.img"
    path.write_bytes(bytes(8 * MiB))
    assert mod.mkfs(str(path), "ext4") == {"path": str(path), "fstype": "ext4"}
    with open(path, "rb") as handle:
        handle.seek(1024 + 0x38)
        assert handle.read(2) == b"\x53\xef"  # ext4 superblock magic
    swap = mnt / "swap2.img"
    swap.write_bytes(bytes(MiB))
    assert mod.mkfs(str(swap), "swap")["fstype"] == "swap"


def test_mkfs_failure_is_one_line(mod, mnt):
    tiny = mnt / "tiny.img"
    tiny.write_bytes(bytes(4096))
    with pytest.raises(CommandExecutionError) as err:
        mod.mkfs(str(tiny), "xfs" if shutil.which("mkfs.xfs") else "ext4")
    assert str(err.value).startswith("mkfs.") and "\n" not in str(err.value)


def _isoinfo(*args):
    return subprocess.run(["isoinfo", *args], capture_output=True, check=True).stdout


def test_context_iso(mod, mnt):
    files = {"context.sh": "ETH0_IP=10.0.0.5\nHOSTNAME='vm-42'\n", "init.sh": "#!/bin/sh\necho hi\n"}
    path = mnt / "datastores" / "0" / "42" / "disk.1"
    ret = mod.context_iso(str(path), {k: base64.b64encode(v.encode()).decode() for k, v in files.items()})
    assert ret == {"path": str(path), "label": "CONTEXT", "files": ["context.sh", "init.sh"], "size": path.stat().st_size}
    listing = _isoinfo("-R", "-i", str(path), "-f").decode().split()
    assert sorted(listing) == ["/context.sh", "/init.sh"]
    for name, content in files.items():
        assert _isoinfo("-R", "-i", str(path), "-x", f"/{name}").decode() == content
    assert "Volume id: CONTEXT" in _isoinfo("-d", "-i", str(path)).decode()
    # replaced atomically, no temporaries left behind
    mod.context_iso(str(path), {"only.txt": base64.b64encode(b"1").decode()}, label="CTX2")
    assert _isoinfo("-R", "-i", str(path), "-f").decode().split() == ["/only.txt"]
    assert sorted(p.name for p in path.parent.iterdir()) == ["disk.1"]


# ---------------------------------------------------------------- VM directories (LVM stand-ins)
def _lvm_answers(world, name):
    shutil.copy(DATA / name, world / "lvs.json")
    log = world / "lvm.log"
    log.write_text("")
    return log


def test_vm_delete_on_a_vm_tree(mod, world):
    log = _lvm_answers(world, "lvs_after.json")
    root = Path(mod.vm_dir(0, 7))
    root.mkdir(parents=True)
    (root / "disk.0").symlink_to(f"/dev/{VG}/lv-one-7-0")
    (root / "disk.1").write_bytes(b"iso")
    (root / "checkpoint").mkdir()
    (root / "checkpoint" / "mem").write_bytes(b"m")
    neighbour = Path(mod.vm_dir(0, 70))
    neighbour.mkdir(parents=True)
    ret = mod.vm_delete(7, path=str(root))
    assert ret == {"vmid": 7, "vg": VG, "removed": ["lv-one-7-0-s1", "lv-one-7-0", "lv-one-7-1"], "wiped": [], "dir": str(root)}
    assert not root.exists() and neighbour.exists()
    calls = log.read_text().splitlines()
    assert calls[0].startswith("lvs --reportformat json --units m --nosuffix -o lv_name,") and calls[0].endswith(f"-S lv_name=~^lv-one-7- {VG}")
    assert calls[1:] == [f"lvremove --yes {VG}/lv-one-7-0-s1 {VG}/lv-one-7-0 {VG}/lv-one-7-1"]


def test_orphans_on_a_vm_tree(mod, world, mnt):
    log = _lvm_answers(world, "lvs_after.json")
    base = Path(mod.vm_dir(0, 1)).parent.parent  # <mountpoint>/datastores
    shutil.rmtree(base, ignore_errors=True)
    vm7 = Path(mod.vm_dir(0, 7))
    vm7.mkdir(parents=True)
    (vm7 / "disk.0").symlink_to(f"/dev/{VG}/lv-one-7-0")
    (vm7 / "disk.3").symlink_to(f"/dev/{VG}/lv-one-7-3")  # LV gone: dangling
    ret = mod.orphans()
    assert [lv["name"] for lv in ret["lvs"]] == ["lv-one-70-0", "lv-one-8-0", "lv-one-8-0-s0", "lv-one-9-0"]
    assert ret["links"] == [{"path": str(vm7 / "disk.3"), "target": f"/dev/{VG}/lv-one-7-3"}]
    dry = mod.orphans_remove()
    assert dry["dry_run"] is True and (vm7 / "disk.3").is_symlink()
    assert [c.split()[0] for c in log.read_text().splitlines()] == ["lvs", "lvs"]
    done = mod.orphans_remove(dry_run=False)
    assert done["lvs"] == ["lv-one-8-0-s0", "lv-one-70-0", "lv-one-8-0", "lv-one-9-0"]
    assert not (vm7 / "disk.3").is_symlink() and (vm7 / "disk.0").is_symlink()
    assert log.read_text().splitlines()[-1] == (
        f"lvremove --yes {VG}/lv-one-8-0-s0 {VG}/lv-one-70-0 {VG}/lv-one-8-0 {VG}/lv-one-9-0"
    )
    shutil.rmtree(base)


def test_vm_disks_on_a_vm_tree(mod, world):
    _lvm_answers(world, "lvs_vm7.json")
    vm7 = Path(mod.vm_dir(3, 7))
    vm7.mkdir(parents=True)
    (vm7 / "disk.0").symlink_to(f"/dev/{VG}/lv-one-7-0")
    ret = mod.vm_disks(7)
    assert [d["name"] for d in ret["disks"]] == ["lv-one-7-0", "lv-one-7-0-s1", "lv-one-7-1"]
    assert [l["lv"] for l in ret["links"]] == ["lv-one-7-0"]
    shutil.rmtree(vm7.parent.parent)


def test_bad_input_through_the_loader(mod, mnt):
    with pytest.raises(SaltInvocationError):
        mod.copy("/etc/passwd", str(mnt / "x"))
    with pytest.raises(SaltInvocationError):
        mod.link("/dev/vg/lv-one-1-0", str(mnt / ".." / ".." / "x"))
    assert not stat.S_ISLNK(os.lstat(mnt).st_mode)
