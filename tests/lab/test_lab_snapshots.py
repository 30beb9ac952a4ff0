# SPDX-License-Identifier: Apache-2.0
"""Disk snapshots and copies of a suspended VM's disk in the qemu lab, through the REAL
driver executables (issues 13.2, 13.3 and 19.2).

* snap_revert of a thick disk after the guest rewrote 60 % of it: the bytes are the
  snapshot's again and the snapshot is still there and valid (it used to be a copy
  through the snapshot's own 20 % COW area: I/O error, snapshot invalid, disk half
  reverted); then a revert of the unmodified disk (it failed even then under real
  oned); a snapshot whose COW area overflowed is refused with that reason.
* datastore cp of ``lvm://VMID/0`` while the disk is active exclusively on node1 and
  on node2, with an image id that maps to the other node first (both parities).

State is read with plain ssh (``lvs``, ``sha256sum``); salt-ssh is spent only on the
driver actions.
"""

import json

import pytest
from test_lab_faults import REPO, Driver, dst, ok, root_cleanup, vm_disk_lv, vm_ids

pytestmark = pytest.mark.lab

FE = "frontend-h7"


@pytest.fixture(scope="module")
def drv(lab_salt, tmp_path_factory):
    lab = lab_salt
    conf = tmp_path_factory.mktemp("snapshots") / "gfs2clvm.conf"
    conf.write_text(
        f"saltfile: {lab.driver_saltfile}\n"
        f"salt_ssh: {REPO / '.venv' / 'bin' / 'salt-ssh'}\n"
        f"vg: {lab.vg}\n"
        f"frontend_hosts: [{FE}]\n"
        f"bridge_list: [{', '.join(lab.nodes)}]\n"
        "timeout: 600\n"
    )
    return Driver(lab, conf)


def sha(lab, node, dev):
    return lab.out(node, f"sha256sum {dev}").split()[0]


def attr(lab, node, name):
    out = lab.out(node, ["lvs", "--reportformat", "json", "-o", "lv_attr", f"{lab.vg}/{name}"])
    return json.loads(out)["report"][0]["lv"][0]["lv_attr"]


def fill(lab, node, dev, word, mb):
    lab.out(node, f"yes {word} | dd of={dev} bs=1M iflag=fullblock oflag=direct count={mb} status=none")


def vm_disk(lab, node, vmid, size_mb):
    """A VM's disk LV, active exclusively on ``node`` (as a deployed VM's), with its link."""
    name = vm_disk_lv(vmid)
    dev = f"/dev/{lab.vg}/{name}"
    lab.out(node, ["lvcreate", "-q", "-y", "-n", name, "-L", f"{size_mb}m", lab.vg])
    fill(lab, node, dev, f"disk-of-{vmid}", size_mb)
    vmdir = f"{lab.mountpoint}/datastores/0/{vmid}"
    lab.out(node, ["mkdir", "-p", vmdir])
    lab.out(node, ["ln", "-s", dev, f"{vmdir}/disk.0"])
    return name, dev


def test_snap_revert_thick_after_overwriting_60_percent(lab_salt, drv):
    lab = lab_salt
    (vmid,) = vm_ids()
    size = 32
    try:
        name, dev = vm_disk(lab, "node1", vmid, size)
        snap = f"{name}-s0"
        ok(drv.run("snap_create", dst("node1", vmid), 0, vmid, 0))
        want = sha(lab, "node1", dev)
        fill(lab, "node1", dev, "rewritten", size * 6 // 10)  # the guest rewrites 60 % of its disk
        assert sha(lab, "node1", dev) != want
        assert attr(lab, "node1", snap)[4] == "a", "a full-size snapshot must survive any rewrite"
        ok(drv.run("snap_revert", dst("node1", vmid), 0, vmid, 0))
        assert sha(lab, "node1", dev) == want
        # the snapshot stays (oned keeps it listed), valid, with the reverted content
        assert attr(lab, "node1", snap)[:1] == "s" and attr(lab, "node1", snap)[4] == "a"
        assert sha(lab, "node1", f"/dev/{lab.vg}/{snap}") == want
        # issue 19.2: under real oned the revert failed even on an unmodified disk
        ok(drv.run("snap_revert", dst("node1", vmid), 0, vmid, 0))
        assert sha(lab, "node1", dev) == want
        # a snapshot with a small COW area (the old 20 % default) dies when 60 % is
        # rewritten: the revert names that and changes nothing
        lab.out("node1", ["lvcreate", "-q", "-y", "-s", "-n", f"{name}-s1", "-L", "8m", f"{lab.vg}/{name}"])
        fill(lab, "node1", dev, "rewritten-again", size * 6 // 10)
        assert attr(lab, "node1", f"{name}-s1")[4] == "I"
        before = sha(lab, "node1", dev)
        proc = drv.run("snap_revert", dst("node1", vmid), 1, vmid, 0)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
        assert "is invalid (its copy-on-write area overflowed)" in proc.stderr, proc.stderr
        assert sha(lab, "node1", dev) == before
    finally:
        root_cleanup(lab, [vmid])


def test_cp_of_a_suspended_vm_disk_from_either_node(lab_salt, drv):
    """Issue 13.3: the copy ran only on BRIDGE_LIST[image id % 2]; image 7 maps to
    node2 first, image 8 to node1 first: each time the disk is on the other node."""
    lab = lab_salt
    vmids = vm_ids(2)
    images = []
    try:
        for vmid, holder, image_id in ((vmids[0], "node1", 7), (vmids[1], "node2", 8)):
            _, dev = vm_disk(lab, holder, vmid, 8)
            out = ok(drv.ds("cp", image={"ID": str(image_id), "PATH": f"lvm://{vmid}/0", "SIZE": "8"}))
            source, fmt = out.split()
            images.append(source.rsplit("/", 1)[1])
            assert fmt == "raw"
            lab.out(holder, ["lvchange", "-aey", source[len("/dev/"):]])
            assert sha(lab, holder, source) == sha(lab, holder, dev)
            lab.out(holder, ["lvchange", "-an", source[len("/dev/"):]])
    finally:
        root_cleanup(lab, vmids, images)
