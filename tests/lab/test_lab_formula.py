# SPDX-License-Identifier: Apache-2.0
"""Lab tier of the formula: salt-ssh highstate (as root, from the host) takes fresh
guests -- sshd and the blank SAN disk, nothing else configured -- to a working
cluster; a second highstate changes nothing; re-applying keeps what GFS2 holds.

The session lab (``lab`` fixture) is provisioned by this very highstate
(``lab/lab.sh provision``, the lab's only node configuration); its result is read back
from ``$LAB_DIR/highstate.json``.
"""

import hashlib
import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
SLS = "gfs2clvm.worker"
VG = "vg_cloudstorage"
MNT = "/var/lib/one"
CREATOR = "node1"


def parse_highstate(text):
    """{target: {state_id: ret}} from salt-ssh --out json (one JSON document per target)."""
    decoder = json.JSONDecoder()
    out, pos = {}, 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out
        doc, pos = decoder.raw_decode(text, pos)
        out.update(doc)


def by_sid(results):
    """{target: {'gfs2clvm-...': ret}} keyed by the state ID."""
    return {
        target: {key.split("_|-")[1]: ret for key, ret in states.items()} if isinstance(states, dict) else states
        for target, states in results.items()
    }


def failures(results):
    bad = []
    for target, states in results.items():
        if not isinstance(states, dict):
            bad.append(f"{target}: {states}")
            continue
        bad += [f"{target} {sid}: {ret.get('comment')}" for sid, ret in states.items() if ret.get("result") is not True]
    return bad


def changed(results):
    return sorted(
        f"{target} {sid}: {sorted(ret['changes'])}"
        for target, states in by_sid(results).items()
        for sid, ret in states.items()
        if ret.get("changes")
    )


@pytest.fixture(scope="module")
def flab(lab):
    """(lab handle, first highstate's results) of the session lab, provisioned by the highstate."""
    result, booted = lab.dir / "highstate.json", lab.dir / "vms" / "node1.pid"
    if not result.exists() or result.stat().st_mtime < booted.stat().st_mtime:
        pytest.fail(f"the session lab was not provisioned by the highstate since it booted ({result})",
                    pytrace=False)
    return lab, parse_highstate(result.read_text())


def highstate(lab):
    """Run the highstate on every node in parallel (root roster entries)."""
    targets = [f"{node}-root" for node in lab.nodes]
    argv = [
        str(REPO / ".venv" / "bin" / "salt-ssh"), "--saltfile", str(lab.saltfile), "--out", "json",
        "--no-color", "-L", ",".join(targets), "state.apply", SLS,
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False, cwd=lab.dir)
    lab.timings["formula highstate (all nodes)"] = round(time.monotonic() - t0, 1)
    (lab.dir / "highstate-again.json").write_text(proc.stdout)  # kept for diagnosis
    results = parse_highstate(proc.stdout)
    assert sorted(results) == targets, proc.stdout[-2000:] + proc.stderr[-2000:]
    return results


def test_first_highstate_built_the_cluster(flab):
    lab, results = flab
    assert failures(results) == []
    states = by_sid(results)
    creator, other = states[f"{CREATOR}-root"], states["node2-root"]
    vg, lv, fs = (
        "gfs2clvm-worker-storage-vg-gfs2clvm-vg_shared",
        "gfs2clvm-worker-storage-lv-gfs2clvm-lv_shared",
        "gfs2clvm-worker-storage-fs-gfs2clvm-gfs2_formatted",
    )
    # whichever lab this is, only the creator ever creates; the other node joins
    assert "created" not in other[vg]["changes"] and "created" not in other[lv]["changes"]
    assert other[fs]["changes"] == {}
    if creator[vg]["changes"]:  # a fresh SAN (LAB_KEEP_DISK unset)
        assert creator[vg]["changes"]["lock_type"] == "dlm"
        assert creator[fs]["changes"]["formatted"] == "gfs2"


@pytest.mark.parametrize("node", ["node1", "node2"])
def test_vg_shared_lockspace_and_gfs2_mounted(flab, node):
    lab, _ = flab
    assert lab.out(node, f"vgs --noheadings -o vg_lock_type {VG}") == "dlm"
    info = lab.out(node, "lvmlockctl --info").splitlines()
    assert any(line.startswith(f"VG {VG} lock_type=dlm") for line in info), info
    mounts = [line.split() for line in lab.out(node, "cat /proc/mounts").splitlines()]
    assert [m[2] for m in mounts if m[1] == MNT] == ["gfs2"]
    assert lab.out(node, f"stat -c %U:%G {MNT}") == "oneadmin:oneadmin"
    assert lab.out(node, "systemctl is-active corosync dlm lvmlockd").split() == ["active"] * 3
    assert lab.out(node, "lvs --noheadings -o lv_active_locally " + f"{VG}/gfs2") == "active locally"


def test_gfs2_is_shared_between_nodes(flab):
    lab, _ = flab
    name = f"{MNT}/formula-{uuid.uuid4().hex[:8]}"
    lab.out("node1", f"echo from-node1 >{name} && sync")
    assert lab.out("node2", f"cat {name}") == "from-node1"
    lab.out("node2", f"rm -f {name}")


def test_udev_rule_and_sudoers_for_oneadmin(flab):
    lab, _ = flab
    lv, img = "lv-one-4242-0", "lv-oneimg-" + "ab" * 16
    try:
        for name in (lv, img):
            lab.ssh("node1", f"sudo -n /sbin/lvcreate --yes -W y -Z y -n {name} -L 8m {VG}", user="oneadmin",
                    check=True)
            assert lab.out("node1", f"stat -L -c %U:%G:%a /dev/{VG}/{name}") == "oneadmin:disk:660"
            # oneadmin (not in group disk) writes the LV without sudo
            lab.ssh("node1", f"dd if=/dev/zero of=/dev/{VG}/{name} bs=1M count=1 oflag=direct status=none",
                    user="oneadmin", check=True)
        # an LV outside the naming scheme stays root's
        lab.out("node1", f"lvcreate -q -y -L 8M -n lv-plain {VG}")
        assert lab.out("node1", f"stat -L -c %U /dev/{VG}/lv-plain") == "root"
        # sudo allows the module's LVM commands only
        assert lab.ssh("node1", f"sudo -n /sbin/vgremove -f {VG}", user="oneadmin").returncode != 0
        assert lab.ssh("node1", "sudo -n /bin/true", user="oneadmin").returncode != 0
        lvs = "/sbin/lvs --reportformat json --units m --nosuffix -o lv_name"
        assert lab.ssh("node1", f"sudo -n {lvs} {VG}", user="oneadmin").returncode == 0
        # ... with the module's arguments only
        assert lab.ssh("node1", f"sudo -n /sbin/lvs {VG}", user="oneadmin").returncode != 0
        assert lab.ssh("node1", f"sudo -n {lvs} --config log/level=0 {VG}", user="oneadmin").returncode != 0
        assert lab.ssh("node1", f"sudo -n /sbin/lvremove --yes {VG}/gfs2", user="oneadmin").returncode != 0
    finally:
        for name in (lv, img):
            lab.ssh("node1", f"sudo -n /sbin/lvremove --yes {VG}/{name}", user="oneadmin")
        lab.ssh("node1", f"lvremove -q -y {VG}/lv-plain")


def stale_modules(lab):
    """Roster targets whose deployed _modules differ from the repository's now (the
    repository changed after provisioning: then, and only then, the modules state
    must change)."""
    local = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (REPO / "_modules").glob("*.py")}
    stale = []
    for node in lab.nodes:
        out = lab.ssh(node, "cd /usr/lib/gfs2clvm/_modules && sha256sum *.py").stdout.split()
        if dict(zip(out[1::2], out[0::2])) != local:
            stale.append(f"{node}-root")
    return stale


def test_second_highstate_changes_nothing_and_keeps_gfs2_data(flab):
    lab, _ = flab
    stale = stale_modules(lab)
    keep = f"{MNT}/keep-{uuid.uuid4().hex[:8]}"
    lab.out("node2", f"echo precious >{keep} && chown oneadmin:oneadmin {keep} && sync")
    uuid_before = lab.out("node1", f"blkid -p -s UUID -o value /dev/{VG}/gfs2")
    results = highstate(lab)
    assert failures(results) == []
    modules = "gfs2clvm-worker-modules-file-recurse"
    assert [c for c in changed(results) if f" {modules}: " not in c] == []
    assert sorted(c.split()[0] for c in changed(results)) == stale
    for node in lab.nodes:
        assert lab.out(node, f"cat {keep}") == "precious"
        assert lab.out(node, f"blkid -p -s UUID -o value /dev/{VG}/gfs2") == uuid_before
    lab.out("node1", f"rm -f {keep}")


def test_reapply_on_a_node_remounts_and_keeps_data(flab):
    """A worker that lost its mount and LV activation (e.g. after a reboot) gets them
    back from the highstate; the filesystem is left alone and its files stay."""
    lab, _ = flab
    keep = f"{MNT}/reboot-{uuid.uuid4().hex[:8]}"
    lab.out("node1", f"echo still-here >{keep} && sync")
    stale = stale_modules(lab)
    lab.out("node2", f"umount {MNT} && lvchange -an {VG}/gfs2")
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(REPO / ".venv" / "bin" / "salt-ssh"), "--saltfile", str(lab.saltfile), "--out", "json",
         "--no-color", "node2-root", "state.apply", SLS],
        capture_output=True, text=True, timeout=1800, check=False, cwd=lab.dir,
    )  # fmt: skip
    lab.timings["formula highstate (node2 re-apply)"] = round(time.monotonic() - t0, 1)
    (lab.dir / "highstate-reapply.json").write_text(proc.stdout)  # kept for diagnosis
    results = parse_highstate(proc.stdout)
    assert failures(results) == [], proc.stderr[-2000:]
    modules = "gfs2clvm-worker-modules-file-recurse"
    assert [c for c in changed(results) if f" {modules}: " not in c] == [
        "node2-root gfs2clvm-worker-storage-lv-gfs2clvm-lv_shared: ['active']",
        "node2-root gfs2clvm-worker-storage-mount-mount-mounted: ['mount']",
    ]
    assert any(f" {modules}: " in c for c in changed(results)) == ("node2-root" in stale)
    assert lab.out("node2", f"cat {keep}") == "still-here"
    lab.out("node1", f"rm -f {keep}")
