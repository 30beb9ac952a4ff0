# SPDX-License-Identifier: Apache-2.0
"""qcow2 images in the lab, and the system datastore monitor against real LVs.

A qcow2 image imported from a front-end file and from an http URL (served on the
worker that fetches it; the front-end reaches the same URL through an ssh tunnel, for
STAT) must give VM disks whose bytes equal the raw image: the image volume holds raw
data (FORMAT raw), so the disk is what its DRIVER says.  The same VM's disks are then
monitored: the system datastore's MONITOR sends their sizes to a small onemonitord
(onesim.monitord) as one MONITOR_VM message, and they must equal the LVs' sizes.
One VM, two images: 2 STAT + 2 CP + 3 prolog calls + MONITOR + epilog.
"""
import hashlib
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lab"))

from onesim import DriverRunner, Oned  # noqa: E402
from onesim.__main__ import lab_conf  # noqa: E402
from onesim.matrix import bootable_image  # noqa: E402
from onesim.monitord import Monitord  # noqa: E402

pytestmark = pytest.mark.lab

TM = REPO / "tm_commands"
MiB = 1024 * 1024


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _lv_sum(lab, node, vg, lv, nbytes):
    return lab.out(node, f"head -c {nbytes} /dev/{vg}/{lv} | sha256sum").split()[0]


def test_qcow2_images_from_a_file_and_a_url_give_raw_disks_and_monitored_sizes(lab_salt, tmp_path):
    lab = lab_salt
    node = lab.nodes[0]
    work = tmp_path / "work"
    work.mkdir()
    raw = bootable_image(8, seed=7)
    (work / "cloud.raw").write_bytes(raw)
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(work / "cloud.raw"),
                    str(work / "cloud.qcow2")], check=True)
    assert (work / "cloud.qcow2").stat().st_size < len(raw)

    port = _free_port()
    www = f"/tmp/gfs2clvm-www-{port}"
    subprocess.run([*lab.ssh_argv(node), f"mkdir -p {www} && cat > {www}/cloud.qcow2"],
                   input=(work / "cloud.qcow2").read_bytes(), check=True, timeout=120)
    lab.out(node, f"cd {www} && (setsid python3 -m http.server {port} --bind 127.0.0.1 "
                  f"</dev/null >/dev/null 2>&1 & echo $! > {www}.pid)")
    argv = lab.ssh_argv(node)
    for i in range(len(argv) - 1, 0, -1):  # a tunnel of its own (ssh keeps an option's first value)
        if argv[i - 1] == "-o" and argv[i].startswith(("ControlMaster=", "ControlPath=", "ControlPersist=")):
            del argv[i - 1:i + 1]
    tunnel = subprocess.Popen([*argv[:-1], "-N", "-L", f"{port}:127.0.0.1:{port}", argv[-1]],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conf = lab_conf(lab.dir, lab.vg, out_dir=tmp_path / "conf")
    oned = Oned(DriverRunner(TM, conf=conf), hosts=lab.nodes, fe_dir=tmp_path / "fe",
                first_vm_id=7000 + secrets.randbelow(10**6) * 16, ds_template={"BRIDGE_LIST": node},
                image_ds_template={"BRIDGE_LIST": node, "SAFE_DIRS": str(work)})
    monitord = Monitord(tmp_path / "one").attach(oned)
    vm = None
    try:
        url = f"http://127.0.0.1:{port}/cloud.qcow2"
        for _ in range(50):  # the server and the tunnel start in the background
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        images = [oned.image_create("q-file", path=str(work / "cloud.qcow2")),
                  oned.image_create("q-url", path=url)]
        for img in images:
            assert (img.size_mb, img.format, img.state) == (8, "raw", "READY"), img
        vm = oned.instantiate("q", [{"image": images[0]}, {"image": images[1]}], node)
        want = hashlib.sha256(raw).hexdigest()
        for disk in (0, 1):
            assert _lv_sum(lab, node, lab.vg, f"lv-one-{vm.id}-{disk}", len(raw)) == want, disk

        usage = oned.monitor_datastore(0)
        assert usage["TOTAL_MB"] > usage["FREE_MB"] > 0
        sizes = lab.out(node, f"lvs --noheadings --nosuffix --units m -o lv_name,lv_size {lab.vg}")
        real = {int(n.rsplit("-", 1)[1]): int(float(s)) for n, s in
                (line.split() for line in sizes.splitlines())
                if n.startswith(f"lv-one-{vm.id}-") and n.count("-") == 3}
        assert oned.disk_sizes[vm.id] == real == {0: 8, 1: 8}
    finally:
        monitord.close()
        if vm is not None:
            oned.terminate(vm, hard=True)
        for img in oned.images.values():
            if img.source:
                oned.image_delete(img)
        tunnel.terminate()
        tunnel.wait(10)
        lab.ssh(node, f"kill $(cat {www}.pid) 2>/dev/null; rm -rf {www} {www}.pid")
