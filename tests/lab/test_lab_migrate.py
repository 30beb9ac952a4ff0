"""Live migration's premigrate on real lvmlockd: the order of the two hosts' halves.

Found under real oned 7.4 (issue 14.3): the first live migration of a freshly deployed VM
failed in premigrate -- ``shared activation still refused after 60 s: lvchange failed
(rc 5): LV locked by other host`` on the destination.  Both hosts run their half in one
salt-ssh call (``-L src,dst``); the destination retried ``lvchange -asy`` for ``lock_wait``
s from its own start, while the source's exclusive->shared conversion came whenever its
half got there (TCG: salt-call start-up, ``lvs`` per LV).  Now the source writes a handoff
word on GFS2 after converting and the destination activates only after reading it.
Here the destination's half deliberately starts first and the source's 10 s later.
"""

import concurrent.futures
import json
import secrets
import time
import uuid

import pytest

pytestmark = pytest.mark.lab

VG = "vg_cloudstorage"


def _modes(lab, node, name):
    out = lab.out(node, ["lvs", "--reportformat", "json", "-o", "lv_name,lv_attr", f"{VG}/{name}"])
    attr = json.loads(out)["report"][0]["lv"][0]["lv_attr"]
    return attr[4]  # 'a' = active here


def test_premigrate_of_a_fresh_disk_destination_waits_for_the_source(lab_salt):
    lab = lab_salt
    node1, node2 = lab.nodes[:2]
    vm = 10**8 + secrets.randbelow(9 * 10**8)
    name = f"lv-one-{vm}-0"
    vmdir = f"{lab.mountpoint}/datastores/0/{vm}"
    handoff = uuid.uuid4().hex
    try:
        # freshly deployed on node1: lvcreate activates it exclusively there, the link on GFS2
        lab.ssh(node1, f"lvcreate -q -y -Zn -L 8M -n {name} {VG} && mkdir -p {vmdir} && "
                       f"ln -s /dev/{VG}/{name} {vmdir}/disk.0", check=True)
        kwargs = {"src_host": node1, "dst_host": node2, "handoff": handoff}
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            dst = pool.submit(lab.salt_ssh, node2, "gfs2clvm_tm.premigrate", vm, vmdir, **kwargs)
            time.sleep(10)  # the source's half comes late
            rc, src, err = lab.salt_ssh(node1, "gfs2clvm_tm.premigrate", vm, vmdir, **kwargs)
            assert rc == 0 and src["role"] == "source", (src, err[-2000:])
            rc, got, err = dst.result(timeout=600)
        assert rc == 0 and got["role"] == "destination" and got["shared"] == [name], (got, err[-2000:])
        assert got["waited_s"] > 0, got  # it waited for the source's word, not for a lock
        assert _modes(lab, node1, name) == "a" and _modes(lab, node2, name) == "a"
        assert lab.ssh(node1, f"ls {lab.mountpoint}/.gfs2clvm-staging/premigrate-{handoff}").returncode != 0
    finally:
        lab.ssh(node2, ["lvchange", "-an", f"{VG}/{name}"])
        lab.ssh(node1, ["lvchange", "-an", f"{VG}/{name}"])
        lab.ssh(node1, f"lvremove -q -y {VG}/{name}; rm -rf {vmdir}")
