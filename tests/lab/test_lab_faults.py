# SPDX-License-Identifier: Apache-2.0
"""Fault injection and data safety in the qemu lab, through the REAL driver executables.

Faults: the driver's salt-ssh killed mid-copy, the VG too full for a new disk, an
unknown VG, GFS2 not mounted on the worker, the worker's sshd down during a delete,
two clones racing for one disk path, N parallel clones over both workers (``vgck``).
Data safety: a new disk never shows a previous tenant's bytes; ``wipe`` on delete;
a disk in use (held open, as qemu does) is never copied or snapshotted.

After every fault: no half-made LV, no dangling symlink, and a retry succeeds.  State is
read with plain ssh (``lvs`` JSON, ``find`` under the GFS2 mount); salt-ssh is spent
only on driver actions (7-9 s each in a TCG guest).  ``GFS2CLVM_PARALLEL_CLONES``
(default 20, issue #8) sets the parallel clone count.
"""

import base64
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
TM = REPO / "tm_commands" / "tm" / "gfs2clvm"
DS = REPO / "tm_commands" / "datastore" / "gfs2clvm"
FE = "frontend-h7"
PARALLEL = int(os.environ.get("GFS2CLVM_PARALLEL_CLONES", "20"))
MiB = 1024 * 1024


# ------------------------------------------------------------------ helpers
class Driver:
    """Runs tm/datastore executables with a driver config for the lab."""

    def __init__(self, lab, conf):
        self.lab, self.conf = lab, conf
        self.calls = []

    def env(self):
        env = dict(os.environ)
        env["GFS2CLVM_CONF"] = str(self.conf)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
        return env

    def argv(self, kind, action, args):
        exe = (TM if kind == "tm" else DS) / action
        assert exe.is_file(), f"missing driver executable {exe}"
        return [str(exe), *[str(a) for a in args]]

    def run(self, action, *args, kind="tm", stdin=None, timeout=900):
        t0 = time.monotonic()
        proc = subprocess.run(self.argv(kind, action, args), input=stdin or "", capture_output=True,
                              text=True, timeout=timeout, env=self.env(), check=False)
        self.calls.append((f"{kind}/{action}", proc.returncode, round(time.monotonic() - t0, 1)))
        return proc

    def start(self, action, *args, kind="tm"):
        """The action in its own process group (so the test can cut it: salt-ssh + ssh)."""
        return subprocess.Popen(self.argv(kind, action, args), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.env(), start_new_session=True)

    def ds(self, action, image=None, datastore=None):
        tpl = {"BRIDGE_LIST": "node1 node2"}
        tpl.update(datastore or {})
        img = {"ID": "7", "SIZE": "8"}
        img.update(image or {})
        xml = ("<DS_DRIVER_ACTION_DATA><IMAGE>" + "".join(f"<{k}>{v}</{k}>" for k, v in img.items())
               + "</IMAGE><DATASTORE><ID>1</ID><TEMPLATE>"
               + "".join(f"<{k}>{v}</{k}>" for k, v in tpl.items())
               + "</TEMPLATE></DATASTORE></DS_DRIVER_ACTION_DATA>")
        return self.run(action, "1", kind="datastore", stdin=base64.b64encode(xml.encode()).decode())


def ok(proc):
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def one_error(proc):
    """Non-zero exit, exactly one oned ERROR line, no traceback; returns the line."""
    text = f"rc={proc.returncode}\nstdout={proc.stdout!r}\nstderr={proc.stderr!r}"
    assert proc.returncode != 0, text
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR: ")]
    plain = [line for line in lines if not line.startswith(("ERROR: ", "INFO: "))]
    # one logged ERROR line and the one plain reason line oned shows (the same text)
    assert len(errors) == 1 and plain == [errors[0][len("ERROR: "):]], text
    assert "Traceback" not in proc.stderr and "internal error" not in errors[0], text
    return errors[0]


def lvs(lab, node="node1"):
    """{lv name: size in MiB} of the VG (whole VG: the check must see strays too)."""
    out = lab.out(node, ["lvs", "--reportformat", "json", "--units", "m", "--nosuffix",
                         "-o", "lv_name,lv_size", lab.vg])
    return {row["lv_name"]: float(row["lv_size"]) for row in json.loads(out)["report"][0]["lv"]}


def files(lab, node="node1"):
    """Everything under <mountpoint>/datastores: path -> type and link target."""
    out = lab.out(node, f"find {lab.mountpoint}/datastores -mindepth 1 -printf '%p %y %l\\n' 2>/dev/null || true")
    return sorted(out.splitlines())


def state(lab):
    return lvs(lab), files(lab)


def dangling(lab, node="node1"):
    """Symlinks under the VM directories whose target does not exist on ``node``
    (a link to an LV inactive on this node is not dangling: the LV must exist)."""
    out = lab.out(node, f"find {lab.mountpoint}/datastores -type l -printf '%p %l\\n' 2>/dev/null || true")
    names = set(lvs(lab, node))
    bad = []
    for line in out.splitlines():
        path, target = line.split(" ", 1)
        if target.startswith(f"/dev/{lab.vg}/"):
            if target.rsplit("/", 1)[1] not in names:
                bad.append(line)
        elif lab.ssh(node, ["test", "-e", path]).returncode != 0:
            bad.append(line)
    return bad


def vm_ids(count=1):
    first = 700000 + secrets.randbelow(10**5) * 50
    return list(range(first, first + count))


def dst(node, vmid, disk=0, sysds=0):
    return f"{node}:/var/lib/one/datastores/{sysds}/{vmid}/disk.{disk}"


def vmdir(node, vmid, sysds=0):
    return f"{node}:/var/lib/one/datastores/{sysds}/{vmid}"


def vm_disk_lv(vmid, disk=0):
    return f"lv-one-{vmid}-{disk}"


def root_cleanup(lab, vmids, images=()):
    """Remove what a test made (plain ssh, root): VM LVs, image LVs, VM dirs."""
    names = [n for n in lvs(lab) if any(n == vm_disk_lv(v, d) or n.startswith(f"lv-one-{v}-")
                                        for v in vmids for d in range(4))]
    names += [i for i in images if i in lvs(lab)]
    for node in lab.nodes:  # a disk may be active on either node
        for name in names:
            lab.ssh(node, ["lvchange", "-an", f"{lab.vg}/{name}"])
    if names:
        lab.ssh("node1", ["lvremove", "-y", *[f"{lab.vg}/{n}" for n in names]])
    dirs = [f"{lab.mountpoint}/datastores/0/{v}" for v in vmids]
    lab.ssh("node1", ["rm", "-rf", *dirs])


def hold_open(lab, node, device):
    """A 'running VM': a process of oneadmin holding ``device`` open read-write (as
    qemu does) until killed. Returns its pid on ``node``."""
    out = lab.out(node, f"nohup sh -c 'exec 3<>{device}; exec sleep 900' >/dev/null 2>&1 & echo $!",
                  user="oneadmin")
    return int(out.split()[-1])


def make_image(lab, size_mb, pattern="gfs2clvm-h7"):
    """An image volume lv-oneimg-<hex> full of a non-zero pattern (dense), inactive."""
    name = f"lv-oneimg-{secrets.token_hex(16)}"
    dev = f"/dev/{lab.vg}/{name}"
    lab.out("node1", ["lvcreate", "-q", "-y", "-n", name, "-L", f"{size_mb}m", lab.vg])
    lab.out("node1", f"yes {pattern} | dd of={dev} bs=4M iflag=fullblock oflag=direct "
                     f"count={size_mb // 4} status=none; lvchange -an {lab.vg}/{name}")
    return name


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def drv(lab_salt, tmp_path_factory):
    lab = lab_salt
    conf = tmp_path_factory.mktemp("faults") / "gfs2clvm.conf"
    conf.write_text(
        f"saltfile: {lab.driver_saltfile}\n"
        f"salt_ssh: {REPO / '.venv' / 'bin' / 'salt-ssh'}\n"
        f"vg: {lab.vg}\n"
        f"frontend_hosts: [{FE}]\n"
        f"bridge_list: [{', '.join(lab.nodes)}]\n"
        "timeout: 600\n"
    )
    driver = Driver(lab, conf)
    yield driver
    (lab.dir / "faults-calls.json").write_text(json.dumps(driver.calls, indent=1) + "\n")


@pytest.fixture(scope="module")
def image(lab_salt):
    """A 64 MiB dense image volume for the clone tests."""
    name = make_image(lab_salt, 64)
    yield name
    root_cleanup(lab_salt, [], [name])


# ------------------------------------------------------------------ faults
def test_vg_too_full_and_unknown_vg_change_nothing(lab_salt, drv):
    lab = lab_salt
    (vmid,) = vm_ids()
    free = json.loads(lab.out("node1", ["vgs", "--reportformat", "json", "--units", "m", "--nosuffix",
                                        "-o", "vg_free", lab.vg]))["report"][0]["vg"][0]["vg_free"]
    before = state(lab)
    line = one_error(drv.run("mkimage", int(float(free)) + 64, "raw", dst("node1", vmid), vmid, 0))
    assert "insufficient" in line.lower() or "free" in line.lower(), line
    assert state(lab) == before
    line = one_error(drv.ds("mkfs", datastore={"VG_NAME": "vg_h7_no_such_vg"}))
    assert "vg_h7_no_such_vg" in line, line
    assert state(lab) == before
    try:  # the retry with a size that fits succeeds
        ok(drv.run("mkimage", 8, "raw", dst("node1", vmid), vmid, 0))
        assert vm_disk_lv(vmid) in lvs(lab) and not dangling(lab)
    finally:
        root_cleanup(lab, [vmid])


def test_disk_in_use_is_never_copied_or_snapshotted(lab_salt, drv):
    """lvm://VMID/0 of a running VM, saveas (cpds) and snap_create of an open disk."""
    lab = lab_salt
    (vmid,) = vm_ids()
    name = vm_disk_lv(vmid)
    dev = f"/dev/{lab.vg}/{name}"
    lab.out("node1", ["lvcreate", "-q", "-y", "-n", name, "-L", "8m", lab.vg])
    lab.out("node1", ["mkdir", "-p", f"{lab.mountpoint}/datastores/0/{vmid}"])
    lab.out("node1", ["ln", "-s", dev, f"{lab.mountpoint}/datastores/0/{vmid}/disk.0"])
    pid = hold_open(lab, "node1", dev)
    try:
        before = state(lab)
        # on the node where it runs (node2 would refuse too: "LV locked by other host")
        line = one_error(drv.ds("cp", image={"PATH": f"lvm://{vmid}/0"}, datastore={"BRIDGE_LIST": "node1"}))
        assert "open" in line or "in use" in line, line
        line = one_error(drv.run("cpds", dst("node1", vmid), f"{FE}:/dev/{lab.vg}/lv-oneimg-{'e' * 32}",
                                 "-1", vmid, 1))
        assert "open" in line or "in use" in line, line
        line = one_error(drv.run("snap_create", dst("node1", vmid), 0, vmid, 0))
        assert "open" in line or "in use" in line, line
        assert state(lab) == before
    finally:
        lab.ssh("node1", ["kill", str(pid)], user="oneadmin")
        root_cleanup(lab, [vmid])


CUT = {}  # what test_ssh_cut_mid_copy left for test_retry_after_ssh_cut_succeeds


def test_ssh_cut_mid_copy(lab_salt, drv):
    """The driver's salt-ssh (and its ssh) killed while the worker copies 256 MiB:
    afterwards no half-made LV and no dangling link."""
    lab = lab_salt
    (vmid,) = vm_ids()
    big = make_image(lab, 256)
    name = vm_disk_lv(vmid)
    CUT.update(vmid=vmid, image=big, name=name)
    before = state(lab)
    CUT["before"] = before
    proc = drv.start("clone", f"{FE}:/dev/{lab.vg}/{big}", dst("node1", vmid), vmid, 1)
    deadline = time.monotonic() + 600
    while name not in lvs(lab):
        assert proc.poll() is None, f"clone ended before its LV appeared: {proc.communicate()}"
        assert time.monotonic() < deadline, "the clone's LV never appeared"
        time.sleep(1)
    time.sleep(2)
    assert proc.poll() is None, "the copy finished before the cut: make the image bigger"
    os.killpg(proc.pid, signal.SIGKILL)  # salt-ssh and its ssh, started by this test
    proc.communicate()
    # the worker side may still be running: wait until no python of oneadmin remains
    deadline = time.monotonic() + 600
    while lab.ssh("node1", "pgrep -u oneadmin python3").returncode == 0:
        assert time.monotonic() < deadline, "the worker's clone never ended"
        time.sleep(2)
    after = lvs(lab)
    link = lab.ssh("node1", ["readlink", f"{lab.mountpoint}/datastores/0/{vmid}/disk.0"]).stdout.strip()
    # either the worker finished the whole action (LV + link) or undid it (neither)
    assert (name in after) == (link == f"/dev/{lab.vg}/{name}"), f"half-made: lv={name in after} link={link!r}"
    assert not dangling(lab)
    CUT["outcome"] = "completed" if name in after else "undone"
    if name in after:  # complete: its bytes are the image's
        same = lab.out("node1", f"lvchange -ay {lab.vg}/{big}; "
                                f"cmp /dev/{lab.vg}/{big} /dev/{lab.vg}/{name} && echo same")
        assert same.endswith("same")


def test_retry_after_ssh_cut_succeeds(lab_salt, drv):
    """oned's retry of the cut clone must succeed, whatever the worker did after the cut
    (when it completed the clone, the retry replaces that leftover disk)."""
    lab = lab_salt
    vmid, big, name = CUT.get("vmid"), CUT.get("image"), CUT.get("name")
    try:
        assert CUT.get("outcome"), "test_ssh_cut_mid_copy did not get as far as the cut"
        ok(drv.run("clone", f"{FE}:/dev/{lab.vg}/{big}", dst("node1", vmid), vmid, 1))
        assert name in lvs(lab) and not dangling(lab)
        assert set(lvs(lab)) - set(CUT["before"][0]) == {name}
    finally:
        if vmid is not None:
            root_cleanup(lab, [vmid], [big])


def test_gfs2_not_mounted_refuses_and_writes_nothing(lab_salt, drv):
    lab = lab_salt
    (vmid,) = vm_ids()
    node = "node2"
    mnt = lab.mountpoint
    lab.out(node, ["umount", mnt])
    try:
        # what lies under the mountpoint is the root disk: make it writable for oneadmin so
        # only the driver's mount check can keep it clean
        lab.out(node, ["chown", "oneadmin:oneadmin", mnt])
        before_root = lab.out(node, ["find", mnt])
        before_lvs = lvs(lab)
        line = one_error(drv.run("mkimage", 8, "raw", dst(node, vmid), vmid, 0))
        assert "mount" in line or "gfs2" in line, line
        assert lab.out(node, ["find", mnt]) == before_root, "something was written to the root disk"
        assert lvs(lab) == before_lvs, "an LV was left behind"
    finally:
        lab.out(node, ["mount", "-t", "gfs2", "-o", "noatime", f"/dev/{lab.vg}/gfs2", mnt])
    try:
        ok(drv.run("mkimage", 8, "raw", dst(node, vmid), vmid, 0))
        assert vm_disk_lv(vmid) in lvs(lab) and not dangling(lab, node)
    finally:
        root_cleanup(lab, [vmid])


def test_worker_down_during_delete_then_retry(lab_salt, drv):
    """node2 unreachable -- its ssh port closed and every ssh session into it cut, as when
    the worker goes down: delete fails with one clear line and changes nothing; once the
    worker is reachable again the same delete succeeds.

    The host takes the worker off the network and puts it back through QEMU's monitor
    (hostfwd_remove / hostfwd_add), so bringing it back depends on nothing in the guest.
    Closing the port alone is not enough: the driver's salt-ssh multiplexes over a
    ControlMaster connection (ControlPersist) that would outlive it, so every sshd session
    in the guest is killed too (the listener stays)."""
    lab = lab_salt
    (vmid,) = vm_ids()
    node = "node2"
    name = vm_disk_lv(vmid)
    lab.out(node, ["lvcreate", "-q", "-y", "-n", name, "-L", "8m", lab.vg])
    # the VM directory is oneadmin's, as the driver makes it
    lab.out(node, ["mkdir", "-p", f"{lab.mountpoint}/datastores/0/{vmid}"], user="oneadmin")
    lab.out(node, ["ln", "-s", f"/dev/{lab.vg}/{name}", f"{lab.mountpoint}/datastores/0/{vmid}/disk.0"],
            user="oneadmin")
    port = (lab.dir / "vms" / f"{node}.port").read_text().strip()
    fwd = f"tcp:127.0.0.1:{port}"
    try:
        before = state(lab)
        # in 3 s, kill every sshd process but the listener (this session among them): a
        # service of its own that sleeps first (a systemd timer may fire a minute late:
        # AccuracySec), from a script file (systemd would expand the $ of an inline one)
        lab.ssh(node, "cat > /run/gfs2clvm-cut-ssh", check=True, input=(
            "sleep 3\nmain=$(systemctl show -p MainPID --value ssh.service)\n"
            'for p in $(pgrep -x sshd); do [ "$p" = "$main" ] || kill -KILL "$p"; done\n'))
        lab.out(node, "systemd-run --quiet --collect sh /run/gfs2clvm-cut-ssh")
        reply = lab.monitor(node, f"hostfwd_remove u0 {fwd}")
        assert "removed" in reply, f"hostfwd_remove: {reply!r}"
        t0 = time.monotonic()
        while lab.ssh(node, "true", timeout=60).returncode == 0:  # the lab's own master
            assert time.monotonic() - t0 < 60, "the worker's ssh sessions were not cut"
            time.sleep(1)
        assert subprocess.run(["ssh-keyscan", "-T", "5", "-p", port, "127.0.0.1"],
                              capture_output=True, text=True, check=False).stdout.strip() == ""
        line = one_error(drv.run("delete", vmdir(node, vmid), vmid, 0))
        assert f"ssh to {node} failed" in line, line
        assert lab.monitor(node, f"hostfwd_add u0 {fwd}-:22") == ""
        _wait_for_sshd(port)
        assert state(lab) == before
        ok(drv.run("delete", vmdir(node, vmid), vmid, 0))
        assert name not in lvs(lab)
        assert not [f for f in files(lab) if f"/{vmid}" in f]
    finally:
        # whatever failed above, the worker must be reachable again for the next tests
        # (when the forward is already back, hostfwd_add just says it could not add it)
        lab.monitor(node, f"hostfwd_add u0 {fwd}-:22")
        _wait_for_sshd(port)
        root_cleanup(lab, [vmid])


def _wait_for_sshd(port, seconds=240):
    """Until a fresh connection to the port gets sshd's banner."""
    deadline = time.monotonic() + seconds
    while subprocess.run(["ssh-keyscan", "-T", "10", "-p", port, "127.0.0.1"],
                         capture_output=True, text=True, check=False).stdout.strip() == "":
        assert time.monotonic() < deadline, "sshd did not come back"
        time.sleep(3)
    time.sleep(2)


def _parallel(drv, jobs):
    """Run driver calls at once (threads); returns the CompletedProcesses in order."""
    results = [None] * len(jobs)

    def one(i, args):
        results[i] = drv.run(*args)

    threads = [threading.Thread(target=one, args=(i, a)) for i, a in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_clones_race_for_one_disk(lab_salt, drv, image):
    lab = lab_salt
    (vmid,) = vm_ids()
    name = vm_disk_lv(vmid)
    src = f"{FE}:/dev/{lab.vg}/{image}"
    try:
        results = _parallel(drv, [("clone", src, dst(n, vmid), vmid, 1) for n in lab.nodes])
        codes = sorted(r.returncode for r in results)
        assert codes[0] == 0 and codes[1] != 0, [(r.returncode, r.stderr) for r in results]
        loser = [r for r in results if r.returncode][0]
        line = one_error(loser)
        assert "ssh to" not in line, f"the loser did not lose the race, it could not reach its worker: {line}"
        # the winner's disk survived the loser's undo, complete and linked
        assert name in lvs(lab) and not dangling(lab)
        winner = lab.nodes[[r.returncode for r in results].index(0)]
        same = lab.out(winner, f"lvchange -asy {lab.vg}/{image} 2>/dev/null || lvchange -ay {lab.vg}/{image}; "
                               f"cmp -n {64 * MiB} /dev/{lab.vg}/{image} {lab.mountpoint}/datastores/0/{vmid}/disk.0 "
                               f"&& echo same; lvchange -an {lab.vg}/{image}")
        assert "same" in same
    finally:
        root_cleanup(lab, [vmid])


def test_parallel_clones_over_two_workers(lab_salt, drv, image):
    lab = lab_salt
    vmids = vm_ids(PARALLEL)
    src = f"{FE}:/dev/{lab.vg}/{image}"
    try:
        t0 = time.monotonic()
        results = _parallel(drv, [("clone", src, dst(lab.nodes[i % 2], v), v, 1) for i, v in enumerate(vmids)])
        seconds = round(time.monotonic() - t0, 1)
        lab.timings[f"{PARALLEL} parallel clones"] = seconds
        failed = [(v, r.returncode, r.stderr.strip()) for v, r in zip(vmids, results) if r.returncode]
        assert not failed, failed
        if PARALLEL > 2 * 8:  # more than max_calls_per_host (default 8) per node: some queued, and said so
            assert any("driver calls to node" in r.stderr for r in results), [r.stderr for r in results]
        names = lvs(lab)
        assert all(vm_disk_lv(v) in names for v in vmids)
        assert not dangling(lab)
        for node in lab.nodes:
            check = lab.ssh(node, ["vgck", lab.vg])
            assert check.returncode == 0, check.stdout + check.stderr
    finally:
        root_cleanup(lab, vmids)


# ------------------------------------------------------------------ data safety
def _pe_ranges(lab, name):
    out = lab.out("node1", ["lvs", "--noheadings", "-o", "seg_pe_ranges", f"{lab.vg}/{name}"])
    return out.split()


def _marker_count(lab, node, device, marker):
    out = lab.out(node, f"dd if={device} bs=1M iflag=direct status=none | grep -c -a {marker} || true")
    return int(out or 0)


def test_new_disk_never_shows_a_previous_tenants_bytes(lab_salt, drv):
    lab = lab_salt
    vm_a, vm_b = vm_ids(2)
    marker = f"TENANT{secrets.token_hex(8)}"
    try:
        ok(drv.run("mkimage", 16, "raw", dst("node1", vm_a), vm_a, 0))
        dev_a = f"/dev/{lab.vg}/{vm_disk_lv(vm_a)}"
        ranges = _pe_ranges(lab, vm_disk_lv(vm_a))
        lab.out("node1", f"yes {marker} | dd of={dev_a} bs=1M iflag=fullblock oflag=direct count=16 status=none",
                user="oneadmin")
        assert _marker_count(lab, "node1", dev_a, marker) > 0
        ok(drv.run("delete", vmdir("node1", vm_a), vm_a, 0))
        ok(drv.run("mkimage", 16, "raw", dst("node1", vm_b), vm_b, 0))
        assert set(_pe_ranges(lab, vm_disk_lv(vm_b))) & set(ranges) or _pe_ranges(lab, vm_disk_lv(vm_b)) == ranges, \
            "the new disk does not reuse the old extents: the check would prove nothing"
        assert _marker_count(lab, "node1", f"/dev/{lab.vg}/{vm_disk_lv(vm_b)}", marker) == 0
    finally:
        root_cleanup(lab, [vm_a, vm_b])


def test_wipe_on_delete_zeroes_the_extents(lab_salt):
    """``gfs2clvm.lv_remove wipe=True`` (what ``wipe_on_delete`` does): the extents read
    zeros afterwards.  Control: a plain lvremove leaves the bytes for the next LV made
    without zeroing -- which is why new disks are zeroed (zero_new) and wipe exists."""
    lab = lab_salt
    marker = f"WIPE{secrets.token_hex(8)}"
    found = {}
    for wipe in (False, True):
        name, again = f"lv-one-{vm_ids()[0]}-0", f"lv-one-{vm_ids()[0]}-0"
        dev = f"/dev/{lab.vg}/{name}"
        try:
            lab.out("node1", ["lvcreate", "-q", "-y", "-n", name, "-L", "8m", lab.vg])
            ranges = _pe_ranges(lab, name)
            lab.out("node1", f"yes {marker} | dd of={dev} bs=1M iflag=fullblock oflag=direct count=8 status=none",
                    user="oneadmin")
            if wipe:
                rc, data, err = lab.salt_ssh("node1", "gfs2clvm.lv_remove", name, wipe=True)
                assert rc == 0 and data.get("removed") and data.get("wiped"), (rc, data, err[-1500:])
            else:
                lab.out("node1", ["lvremove", "-q", "-y", f"{lab.vg}/{name}"])
            # the same extents again, NOT zeroed by LVM
            lab.out("node1", ["lvcreate", "-q", "-y", "-Zn", "-Wn", "-n", again, "-L", "8m", lab.vg])
            assert _pe_ranges(lab, again) == ranges
            found[wipe] = _marker_count(lab, "node1", f"/dev/{lab.vg}/{again}", marker)
        finally:
            for n in (name, again):
                lab.ssh("node1", ["lvremove", "-q", "-y", f"{lab.vg}/{n}"])
    assert found[False] > 0, "control: an unzeroed LV over old extents shows the old bytes"
    assert found[True] == 0, "wiped extents still hold the old bytes"
