# SPDX-License-Identifier: Apache-2.0
"""The seed's OpenNebula 3.2 interface (tm_commands/one-3.2/): same library, the old
argv (no VM id: it is read from <VM_DIR>/<vmid>/images/disk.N) and the old error block."""

import re

import pytest
from test_driver_support import IMG, MP, TM, VG, Fakes

V42 = f"{MP}/42/images"


@pytest.fixture
def fakes(tmp_path):
    return Fakes(tmp_path, bridge_list=["node3"])


def test_conf_maps_every_action_to_an_executable():
    conf = (TM / "one-3.2" / "tm_gfs2clvm.conf").read_text()
    mapping = dict(re.findall(r"^(\w+)\s*=\s*gfs2clvm/(\S+)$", conf, re.M))
    assert sorted(mapping) == ["CLONE", "CONTEXT", "DELETE", "LN", "MKIMAGE", "MKSWAP", "MV"]
    for script in mapping.values():
        path = TM / "one-3.2" / script
        assert path.is_file() and path.stat().st_mode & 0o111
    for name in ("cp", "mkfs", "mv", "rm"):
        assert (TM / "one-3.2" / "fs" / name).stat().st_mode & 0o111


CASES = [
    ("tm_clone.sh", [f"fe:/dev/{VG}/{IMG}", f"node1:{V42}/disk.0", 2048],
     ["node1"], "clone", [f"/dev/{VG}/{IMG}", f"{V42}/disk.0", 42, 0], {"size_mb": 2048, "vg": VG}),
    ("tm_clone.sh", ["http://repo/ttylinux.img", f"node1:{V42}/disk.1"],
     ["node1"], "clone", ["http://repo/ttylinux.img", f"{V42}/disk.1", 42, 1], {"vg": VG}),
    ("tm_ln.sh", [f"fe:/dev/{VG}/{IMG}", f"node1:{V42}/disk.1"],
     ["node1"], "ln", [f"/dev/{VG}/{IMG}", f"{V42}/disk.1", 42, 1], {"vg": VG}),
    ("tm_mkswap.sh", [512, f"node1:{V42}/disk.2"],
     ["node1"], "mkswap", [f"{V42}/disk.2", 42, 2, 512], {"vg": VG}),
    ("tm_mkimage.sh", [100, "ext3", f"node1:{V42}/disk.3"],
     ["node1"], "mkimage", [f"{V42}/disk.3", 42, 3, 100], {"fs": "ext3", "vg": VG}),
    ("tm_delete.sh", [f"node1:{V42}"], ["node1"], "delete", [V42, 42], {"vg": VG}),
    ("tm_delete.sh", [f"node1:{V42}/disk.0", f"node1:{V42}/disk.0"], ["node1"], "delete",
     [f"{V42}/disk.0", 42], {"vg": VG}),
    ("tm_mv.sh", [f"node1:{V42}", f"node2:{V42}"], ["node1", "node2"], "mv", [V42, V42, 42],
     {"src_host": "node1", "dst_host": "node2", "vg": VG}),
]


@pytest.mark.parametrize("script,argv,targets,fun,args,kwargs", CASES, ids=range(len(CASES)))
def test_tm_scripts(fakes, script, argv, targets, fun, args, kwargs):
    rc, out, err = fakes.run("one-3.2", script, *argv)
    assert (rc, out, err) == (0, "", "")
    assert fakes.only_call() == (targets, f"gfs2clvm_tm.{fun}", args, kwargs)


def test_tm_context(fakes, tmp_path):
    ctx = tmp_path / "context.sh"
    ctx.write_text("X=1\n")
    rc, _, err = fakes.run("one-3.2", "tm_context.sh", ctx, f"node1:{V42}/disk.4")
    assert rc == 0, err
    assert fakes.only_call()[1:3] == ("gfs2clvm_tm.context", [f"{V42}/disk.4", 42])


def test_errors_use_the_3_2_block(fakes):
    rc, out, err = fakes.run("one-3.2", "tm_clone.sh", f"fe:/dev/{VG}/{IMG}", f"node1:{MP}/42/disk.0")
    assert (rc, out) == (1, "")
    assert err == ("ERROR MESSAGE --8<------\n"
                   f"path {MP}/42/disk.0 is not <VM_DIR>/<vmid>/images[/disk.N] under {MP}\n"
                   "ERROR MESSAGE ------>8--\n")
    fakes.reply(rc=20, value={"retcode": 1, "_error": "x", "stderr": "Error running 'gfs2clvm_tm.mkswap': boom"})
    rc, _, err = fakes.run("one-3.2", "tm_mkswap.sh", 512, f"node1:{V42}/disk.2")
    assert err.splitlines() == ["ERROR MESSAGE --8<------", "gfs2clvm_tm.mkswap on node1: boom",
                                "ERROR MESSAGE ------>8--"]


def test_fs_cp_prints_path_and_size(fakes, tmp_path):
    fakes.reply(value={"source": "x", "size_mb": 40})
    rc, out, err = fakes.run("one-3.2", "fs/cp", "http://repo/ttylinux.img", 7)
    assert rc == 0, err
    assert re.fullmatch(rf"/dev/{VG}/lv-oneimg-[0-9a-f]{{32}} 40\n", out)
    targets, fun, args, kwargs = fakes.only_call()
    assert (targets, fun, args[0]) == (["node3"], "gfs2clvm_tm.ds_cp", "http://repo/ttylinux.img")


def test_fs_cp_sources(fakes, tmp_path):
    rc, _, err = fakes.run("one-3.2", "fs/cp", "lvm://42/0", 7)
    assert rc == 0, err
    assert fakes.calls()[-1][-3] == f'"/dev/{VG}/lv-one-42-0"'
    # a disk path of a (suspended) VM means that VM's disk, as lvm:// does
    rc, _, err = fakes.run("one-3.2", "fs/mv", f"node1:{V42}/disk.1", "-", 7)
    assert rc == 0, err
    assert fakes.calls()[-1][-3] == f'"/dev/{VG}/lv-one-42-1"'
    # local files only from safe_dirs
    img = tmp_path / "a.img"
    img.write_bytes(b"1")
    rc, _, err = fakes.run("one-3.2", "fs/cp", img, 7)
    assert rc == 1 and "not allowed to copy images" in err
    fakes.write_conf(safe_dirs=[str(tmp_path)])
    rc, out, err = fakes.run("one-3.2", "fs/cp", img, 7)
    assert rc == 0, err
    assert out.endswith(" 1\n") and len(fakes.ssh_calls()) == 1


def test_fs_mkfs_and_rm(fakes):
    rc, out, err = fakes.run("one-3.2", "fs/mkfs", "ext3", 100, 7)
    assert rc == 0, err
    assert re.fullmatch(rf"/dev/{VG}/lv-oneimg-[0-9a-f]{{32}} 100\n", out)
    assert fakes.calls()[-1][-1] == f'vg="{VG}"' and 'fs="ext3"' in fakes.calls()[-1]
    rc, out, err = fakes.run("one-3.2", "fs/rm", f"/dev/{VG}/{IMG}")
    assert (rc, out) == (0, ""), err
    assert fakes.calls()[-1][-3:] == ["gfs2clvm_tm.ds_rm", f'"{IMG}"', f'vg="{VG}"']
    rc, _, err = fakes.run("one-3.2", "fs/rm", "/etc/passwd")
    assert rc == 1 and "ERROR MESSAGE --8<------" in err
