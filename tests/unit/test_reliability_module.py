# SPDX-License-Identifier: Apache-2.0
"""Worker modules refuse what would reach beyond one VM, through Salt's real loader.

``gfs2clvm_tm`` and ``gfs2clvm`` are loaded from ``_modules`` exactly as a minion
loads them; ``cmd.run_all`` really runs; LVM is replaced by stand-in scripts in
``lvm_bin`` that print an empty (real, captured) ``lvs`` report and log their argv, so
the file-system side of the actions runs for real on a temporary "mountpoint".
The integration tier (tests/integration/test_reliability_badinput.py) covers the same
through salt-ssh, where LVM fails on this host before the file-system side is reached.
"""

from pathlib import Path

import pytest
from salt.exceptions import CommandExecutionError, SaltInvocationError
from module_loaders import module_loaders

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
VG = "vg_cloudstorage"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("reliability-module")
    (base / "one").mkdir()
    fake_bin = base / "lvm-bin"
    fake_bin.mkdir()
    log = base / "lvm.log"
    for cmd in ("lvs", "vgs", "lvcreate", "lvremove", "lvchange", "lvextend"):
        body = f'echo "{cmd} $*" >> {log}\n'
        if cmd == "lvs":
            body += f'cat {DATA / "lvs_none.json"}\n'
        (fake_bin / cmd).write_text("#!/bin/sh\n" + body)
        (fake_bin / cmd).chmod(0o755)
    return base


@pytest.fixture(scope="module")
def loaders(world):
    yield from module_loaders(world, lvm_bin=str(world / "lvm-bin"))


@pytest.fixture
def tm(loaders):
    return loaders.modules.gfs2clvm_tm


@pytest.fixture
def vms(world):
    """System datastore 0 with VMs 0, 1 and 2 (a deployment file and a disk link each)."""
    ds0 = world / "one" / "datastores" / "0"
    for vm in (0, 1, 2):
        (ds0 / str(vm)).mkdir(parents=True, exist_ok=True)
        (ds0 / str(vm) / "deployment.0").write_text("<domain/>\n")
        link = ds0 / str(vm) / "disk.0"
        if not link.is_symlink():
            link.symlink_to(f"/dev/{VG}/lv-one-{vm}-0")
    (world / "lvm.log").write_text("")
    yield ds0


def listing(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


def test_delete_of_a_vm_removes_only_that_vm(tm, vms, world):
    """The good case first: the stand-ins let delete run to the end."""
    before = listing(vms)
    ret = tm.delete(str(vms / "2"), 2)
    assert ret["action"] == "delete"
    assert listing(vms) == [p for p in before if not p.startswith("2")]
    assert "lvs" in (world / "lvm.log").read_text()


@pytest.mark.parametrize(
    "path,vmid",
    [
        ("{mp}", 0),
        ("{mp}/datastores", 0),
        ("{ds0}/1", 0),
        ("{ds0}/1/disk.0", 0),
        ("{ds0}/../0/1", 1),
        ("/etc", 0),
    ],
    ids=["mountpoint", "datastores", "other-vm", "other-vm-disk", "dotdot", "outside"],
)
def test_delete_refuses_paths_of_other_vms(tm, vms, world, path, vmid):
    path = path.format(mp=world / "one", ds0=vms)
    before = listing(world / "one")
    with pytest.raises((SaltInvocationError, CommandExecutionError)):
        tm.delete(path, vmid)
    assert listing(world / "one") == before


def test_delete_of_vm_0_keeps_the_other_vms_of_datastore_0(tm, vms, world):
    """VM 0 in system datastore 0 (a common pair): ``delete('<mp>/datastores/0', 0)``
    must not remove the datastore directory with every VM's directory in it.  (Found by
    this test: ``_vm_path`` compared only the last path component; fixed in 439e53f.)"""
    before = listing(world / "one")
    try:
        tm.delete(str(vms), 0)
    except (SaltInvocationError, CommandExecutionError):
        pass
    assert (vms / "1" / "deployment.0").exists(), "VM 1's directory was removed"
    assert listing(world / "one") == before


@pytest.mark.parametrize(
    "fun,args",
    [
        ("clone", ["file:///etc/shadow", "{ds0}/5/disk.0", 5, 0]),
        ("clone", ["ftp://example.org/x", "{ds0}/5/disk.0", 5, 0]),
        ("clone", [f"/dev/{VG}/lv-oneimg-{'0' * 32}", "{ds0}/5/../1/disk.0", 5, 0]),
        ("mkimage", ["{ds0}/5/disk.0", 5, 0, 0]),
        ("mkswap", ["{ds0}/5/disk.0", 5, 0, -1]),
        ("context", ["{ds0}/5/disk.1", 5]),
        ("ds_rm", ["gfs2"]),
        ("ds_rm", [f"lv-one-1-0"]),
        ("ds_mkfs", [f"lv-oneimg-{'0' * 32}", 0]),
        ("resize", ["{ds0}/1/disk.0", 10, 5]),
        ("snap_create", ["{ds0}/1/disk.0", 0, 5]),
    ],
    ids=["clone-file-url", "clone-ftp-url", "clone-dotdot", "mkimage-size-0", "mkswap-size-neg",
         "context-no-files", "ds_rm-gfs2", "ds_rm-vm-disk", "ds_mkfs-size-0", "resize-other-vm",
         "snap-other-vm"],
)
def test_tm_functions_refuse_before_any_lvm_write(tm, vms, world, fun, args):
    args = [a.format(ds0=vms) if isinstance(a, str) else a for a in args]
    before = listing(world / "one")
    with pytest.raises((SaltInvocationError, CommandExecutionError)):
        getattr(tm, fun)(*args)
    assert listing(world / "one") == before
    writes = [line for line in (world / "lvm.log").read_text().splitlines()
              if not line.startswith(("lvs ", "vgs "))]
    assert writes == []
