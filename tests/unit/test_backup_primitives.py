# SPDX-License-Identifier: Apache-2.0
"""The primitives of the backups on real devices and files, loaded through Salt's
loader (``cmd.run_all`` really runs qemu-img): ``export_qcow2`` (an LV -> the qcow2
``disk.<id>.0`` the backup datastores upload) and ``image_size``; the round trip
export -> restore through ``copy`` gives the device's bytes back.  ``lv_snapshot``'s
``allow_open`` is checked on the fake runner against the formula's sudoers rule."""

import os
import subprocess
from pathlib import Path

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError
from module_loaders import loop_device_lv, module_loaders

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("gfs2clvm-backup")
    (base / "one").mkdir()
    return base


@pytest.fixture(scope="module")
def loaders(world):
    yield from module_loaders(world, dd_bs="1M")


@pytest.fixture
def mod(loaders):
    return loaders.modules.gfs2clvm


@pytest.fixture
def mnt(world, request):
    path = world / "one" / "datastores" / "0" / request.node.name.replace("[", "_").replace("]", "")
    path.mkdir(parents=True)
    return path


@pytest.fixture
def loop_lv(tmp_path):
    yield from loop_device_lv(tmp_path, "bk")


def _raw_of(qcow, out):
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(qcow), str(out)],
                   check=True, capture_output=True)
    return Path(out).read_bytes()


def test_export_qcow2_then_restore_gives_the_same_bytes(mod, mnt, loop_lv):
    with open(loop_lv, "r+b") as dev:  # a disk with data, zeros and old bytes
        dev.write(os.urandom(MiB))
        dev.seek(5 * MiB)
        dev.write(b"\0" * 2 * MiB)
        dev.seek(0)
        before = dev.read()
    dst = mnt / "backup" / "disk.0.0"
    ret = mod.export_qcow2(str(loop_lv), str(dst))
    assert dst.read_bytes()[:4] == b"QFI\xfb" and ret["bytes"] == 16 * MiB
    assert ret["file_bytes"] == dst.stat().st_size and list(dst.parent.iterdir()) == [dst]
    assert _raw_of(dst, mnt / "check.raw") == before
    assert mod.image_size(str(dst)) == {"path": str(dst), "fmt": "qcow2", "bytes": 16 * MiB}
    with open(loop_lv, "r+b") as dev:  # the disk changes after the backup
        dev.write(b"\x55" * 3 * MiB)
    mod.copy(str(dst), str(loop_lv), fmt="qcow2", dst_zeroed=False)
    with open(loop_lv, "rb") as dev:
        assert dev.read() == before


def test_export_qcow2_failure_leaves_no_file(mod, mnt):
    dst = mnt / "backup" / "disk.0.0"
    with pytest.raises(CommandExecutionError, match="cannot read /dev/gfs2clvm-none/lv-one-1-0"):
        mod.export_qcow2("/dev/gfs2clvm-none/lv-one-1-0", str(dst))
    assert not dst.exists() and list(dst.parent.iterdir()) == []


@pytest.mark.parametrize("src,dst,message", [
    ("/dev/vg/lv-one-1-0", "/tmp/disk.0.0", "not under the mountpoint"),
    ("{mnt}/file.raw", "{mnt}/disk.0.0", "must be an LV device"),
    ("/dev/vg/lv-one-1-0", "/dev/vg/lv-one-1-1", "must be a file"),
    ("/dev/vg/lv one", "{mnt}/disk.0.0", "without spaces"),
])
def test_export_qcow2_bad_input(mod, mnt, src, dst, message):
    with pytest.raises(SaltInvocationError, match=message):
        mod.export_qcow2(src.format(mnt=mnt), dst.format(mnt=mnt))


def test_image_size_raw_and_refusals(mod, mnt):
    raw = mnt / "a.img"
    raw.write_bytes(b"x" * 5000)
    assert mod.image_size(str(raw)) == {"path": str(raw), "fmt": "raw", "bytes": 5000}
    qcow = mnt / "b.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", "-b", str(raw), "-F", "raw", str(qcow)],
                   check=True, capture_output=True)
    with pytest.raises(CommandExecutionError, match="backing file"):
        mod.image_size(str(qcow))
    with pytest.raises(CommandExecutionError, match="not a file"):
        mod.image_size(str(mnt / "missing"))
    with pytest.raises(SaltInvocationError, match="not under the mountpoint"):
        mod.image_size("/etc/passwd")


def test_export_qcow2_that_cannot_be_put_in_place_leaves_no_temporary_file(mod, mnt, loop_lv):
    dst = mnt / "backup" / "disk.0.0"
    (dst / "in-the-way").mkdir(parents=True)  # a non-empty directory where the file goes
    with pytest.raises(CommandExecutionError, match="cannot write"):
        mod.export_qcow2(str(loop_lv), str(dst))
    assert sorted(p.name for p in dst.parent.iterdir()) == ["disk.0.0"] and dst.is_dir()
