# SPDX-License-Identifier: Apache-2.0
"""The ``lab`` section of bench/run.py: real LVM in a running qemu lab guest (node1).

Needs ``lab/lab.sh up`` (1 node is enough) with the same LAB_DIR / LAB_PORT_BASE in
the environment.  The VG ``vg_cloudstorage`` must exist on node1 (a shared one from
``lab.sh provision``, or a local one); a thin pool ``pool`` is created when missing.
salt-ssh reaches node1 as root with the modules deployed on the worker
(``module_dirs`` = this checkout, which the guest sees read-only over 9p) and
``mount_check: none`` (VM directories under /var/lib/one of the guest).

``GFS2CLVM_LAB_BENCH`` picks the parts (default ``copy,thin,scale,seed``).  The lab must be
quiet: a test running in the same 1-vCPU TCG guests doubles every salt-ssh call there, and
the set-up removes every ``lv-one-*`` LV of the VG.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
VG = "vg_cloudstorage"
POOL = "pool"
MP = "/var/lib/one"


def _lab_env():
    env = dict(os.environ)
    out = subprocess.run([str(REPO / "lab" / "lab.sh"), "env"], capture_output=True, text=True, check=True,
                         env=env).stdout
    return dict(line.split("=", 1) for line in out.split() if "=" in line)


class Lab:
    def __init__(self):
        self.env = _lab_env()
        self.dir = Path(self.env["LAB_DIR"])
        self.port = int(self.env["LAB_PORT_BASE"])
        self.cfg = self.dir / "bench"
        self.saltfile = self.cfg / "Saltfile"

    def ssh_argv(self, mux=True):
        argv = ["ssh", "-F", "/dev/null", "-p", str(self.port), "-i", self.env["LAB_KEY"], "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={self.env['LAB_KNOWN_HOSTS']}",
                "-o", "StrictHostKeyChecking=yes", "-o", "LogLevel=ERROR"]
        if mux:
            argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.dir}/ssh/cm/%C", "-o", "ControlPersist=300"]
        return argv + ["root@127.0.0.1"]

    def sh(self, script, mux=True, check=True, timeout=3600):
        proc = subprocess.run(self.ssh_argv(mux) + [script], capture_output=True, text=True, timeout=timeout,
                              check=False)
        if check and proc.returncode != 0:
            raise RuntimeError(f"lab ssh failed ({proc.returncode}): {script[:120]}: {proc.stderr.strip()[-400:]}")
        return proc.stdout

    def write_config(self):
        """Saltfile + master + roster for the driver's set-up on node1 (root, modules on the worker)."""
        self.cfg.mkdir(exist_ok=True)
        (self.cfg / "empty").mkdir(exist_ok=True)
        master = yaml.safe_load((self.dir / "salt" / "master").read_text())
        state = self.cfg / "state"
        master.update({"root_dir": str(state), "cachedir": str(state / "cache"), "pki_dir": str(state / "pki"),
                       "sock_dir": str(state / "run"), "log_file": str(state / "master.log"),
                       "ssh_log_file": str(state / "ssh.log"), "roster_file": str(self.cfg / "roster"),
                       "file_roots": {"base": [str(self.cfg / "empty")]}})
        master.pop("pidfile", None)
        master.pop("config_dir", None)
        (self.cfg / "master").write_text(yaml.safe_dump(master))
        base = {"host": "127.0.0.1", "port": self.port, "user": "root", "priv": self.env["LAB_KEY"],
                "set_path": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "thin_dir": "/var/tmp/.gfs2clvm_bench_thin_root", "timeout": 120,
                "ssh_options": ["ControlMaster=auto", f"ControlPath={self.dir}/ssh/cm/%C", "ControlPersist=300"]}
        roster = {}
        for name, pool in (("thick", ""), ("thin", POOL)):
            roster[f"node1-{name}"] = dict(base, minion_opts={
                "module_dirs": [str(REPO / "_modules")],
                "gfs2clvm": {"vg": VG, "mountpoint": MP, "mount_check": "none", "sudo": False,
                             "thin_pool": pool, "owner": "root", "group": "root"}})
        (self.cfg / "roster").write_text(yaml.safe_dump(roster))
        self.saltfile.write_text(yaml.safe_dump({"salt-ssh": {"config_dir": str(self.cfg), "log_level": "warning"}}))

    def argv(self, target, fun, *args, **kwargs):
        sys.path.insert(0, str(REPO / "tm_commands" / "lib"))
        from gfs2clvm_driver import saltssh as drv  # pylint: disable=import-outside-toplevel

        conf = {"salt_ssh": str(Path(PY).parent / "salt-ssh"), "saltfile": str(self.saltfile)}
        return drv.build_argv(conf, [target], fun, args, kwargs)

    def call(self, target, fun, *args, **kwargs):
        """One driver call (fresh Python + transport: the salt-ssh CLI, no service here); returns (seconds, value)."""
        argv = [PY, "-m", "gfs2clvm_driver.transport", *self.argv(target, fun, *args, **kwargs)]
        env = dict(os.environ, PYTHONPATH=str(REPO / "tm_commands" / "lib"))
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, timeout=3600)
        elapsed = time.perf_counter() - start
        try:
            value = json.loads(proc.stdout)[target]
        except (ValueError, KeyError):
            value = None
        if proc.returncode != 0 or value is None:
            raise RuntimeError(f"{fun} on {target} failed ({proc.returncode}): {proc.stdout[-600:]} {proc.stderr[-300:]}")
        return elapsed, value


def _img(tag):
    return "lv-oneimg-" + hashlib.sha256(tag.encode()).hexdigest()[:32]


def _timed_sh(lab, command):
    """Seconds ``command`` takes inside the guest (bash's own clock, no ssh in it)."""
    out = lab.sh(f"s=$(date +%s.%N); {command} >/dev/null; e=$(date +%s.%N); echo \"$s $e\"")
    start, end = map(float, out.split()[-2:])
    return end - start


def bench_lab(table, repeat, timed, interleaved, load):
    sec = "lab"
    lab = Lab()
    print(f"lab (node1 at 127.0.0.1:{lab.port}, TCG guest, load {load()}):", flush=True)
    lab.write_config()
    lab.sh(f"vgs {VG} >/dev/null && (lvs {VG}/{POOL} >/dev/null 2>&1 || lvcreate -q -y --type thin-pool -L 3G -n {POOL} {VG})"
           f" && lvremove -q -y -S 'lv_name=~^lv-one-' {VG} >/dev/null 2>&1; mkdir -p {MP}/datastores/0; true")
    lab.call("node1-thick", "test.ping")
    return _bench_lab(lab, table, sec, repeat, interleaved)


def _bench_lab(lab, table, sec, repeat, interleaved):
    rounds = max(3, min(repeat, 5))
    samples = {}
    parts = set(os.environ.get("GFS2CLVM_LAB_BENCH", "copy,thin,scale,seed").split(","))
    vm = iter(range(5000, 6000))
    if "copy" in parts:
        # -- copy LV -> LV vs dd ---------------------------------------------------------
        size = 256
        lab.sh(f"for n in bsrc bsrc10 bdst; do lvs {VG}/$n >/dev/null 2>&1 || lvcreate -q -y -Zn -L {size}M -n $n {VG}; done; "
               f"dd if=/dev/urandom of=/dev/{VG}/bsrc bs=4M count={size // 4} oflag=direct status=none; "
               f"blkdiscard -z /dev/{VG}/bsrc10 2>/dev/null || dd if=/dev/zero of=/dev/{VG}/bsrc10 bs=4M oflag=direct status=none count={size // 4}; "
               f"for i in $(seq 0 10 {size // 4 - 1}); do dd if=/dev/urandom of=/dev/{VG}/bsrc10 bs=4M seek=$i count=1 oflag=direct conv=notrunc status=none; done")

        def dd(src, iflag=""):
            def run():
                out = lab.sh(f"dd if=/dev/{VG}/{src} of=/dev/{VG}/bdst bs=4M {iflag} oflag=direct 2>&1")
                return float(out.rsplit(" copied, ", 1)[1].split()[0])  # dd's own time, like the module's
            return run

        def copy(src):
            def run():
                _, value = lab.call("node1-thick", "gfs2clvm.copy", f"/dev/{VG}/{src}", f"/dev/{VG}/bdst")
                if lab.sh(f"cmp /dev/{VG}/{src} /dev/{VG}/bdst >/dev/null && echo same", check=False).strip() != "same":
                    raise RuntimeError(f"copy {src}: destination differs")
                return float(value["seconds"])
            return run

        # the 10 %-allocated sources: a raw file with holes and a qcow2 of it, on GFS2
        sparse, qcow = f"{MP}/datastores/0/bench-sparse10.raw", f"{MP}/datastores/0/bench-sparse10.qcow2"
        lab.sh(f"rm -f {sparse} {qcow}; truncate -s {size}M {sparse}; "
               f"for i in $(seq 0 10 {size // 4 - 1}); do dd if=/dev/urandom of={sparse} bs=4M seek=$i count=1 "
               f"conv=notrunc status=none; done; qemu-img convert -f raw -O qcow2 {sparse} {qcow}; sync")

        def dd_file(src):
            def run():
                out = lab.sh(f"dd if={src} of=/dev/{VG}/bdst bs=4M oflag=direct 2>&1")
                return float(out.rsplit(" copied, ", 1)[1].split()[0])
            return run

        def copy_file(src, fmt):
            def run():
                _, value = lab.call("node1-thick", "gfs2clvm.copy", src, f"/dev/{VG}/bdst", fmt=fmt)
                if lab.sh(f"cmp {sparse} /dev/{VG}/bdst >/dev/null && echo same", check=False).strip() != "same":
                    raise RuntimeError(f"copy {src}: destination differs")
                return float(value["seconds"])
            return run

        med, samples["copy"] = interleaved({"dd": dd("bsrc"), "copy": copy("bsrc"), "dd10": dd("bsrc10"),
                                            "copy10": copy("bsrc10"), "dddirect": dd("bsrc", "iflag=direct"),
                                            "ddfile": dd_file(sparse), "copyfile": copy_file(sparse, "raw"),
                                            "copyqcow": copy_file(qcow, "qcow2")}, rounds)
        table.add(sec, f"dd bs=4M oflag=direct LV->LV, dense {size} MiB (in guest)", med["dd"])
        table.add(sec, "gfs2clvm.copy LV->LV dense (time in module) vs dd", med["copy"], med["dd"],
                  ">= 0.95x dd speed (ratio <= 1.053)", lambda r: r <= 1 / 0.95)
        # dd's buffered reads cost a guest-CPU copy (slow under TCG); the module reads O_DIRECT too
        table.add(sec, "gfs2clvm.copy LV->LV dense vs dd iflag=direct oflag=direct", med["copy"], med["dddirect"],
                  ">= 0.95x (ratio <= 1.053)", lambda r: r <= 1 / 0.95)
        table.add(sec, f"dd LV->LV, 10%-allocated {size} MiB", med["dd10"])
        table.add(sec, "gfs2clvm.copy LV->LV 10%-allocated vs dd", med["copy10"], med["dd10"],
                  ">= 5x faster (ratio <= 0.2)", lambda r: r <= 0.2)
        table.add(sec, f"dd bs=4M oflag=direct GFS2 file -> LV, 10%-allocated raw {size} MiB (holes)", med["ddfile"])
        table.add(sec, "gfs2clvm.copy GFS2 raw file with holes -> LV vs dd", med["copyfile"], med["ddfile"],
                  ">= 5x faster (ratio <= 0.2)", lambda r: r <= 0.2)
        table.add(sec, "gfs2clvm.copy GFS2 qcow2 (10% allocated) -> LV vs dd of the raw", med["copyqcow"],
                  med["ddfile"], ">= 5x faster (ratio <= 0.2)", lambda r: r <= 0.2)
        lab.sh(f"lvremove -q -y {VG}/bsrc {VG}/bsrc10 {VG}/bdst; rm -f {sparse} {qcow}")

    if "thin" in parts:
        # -- thin clone: 64 MiB vs 4 GiB image ---------------------------------------------
        small, big = _img("bench-64m"), _img("bench-4g")
        lab.sh(f"for spec in {small}:64M {big}:4G; do n=${{spec%%:*}}; v=${{spec#*:}}; lvs {VG}/$n >/dev/null 2>&1 || "
               f"lvcreate -q -y -V $v -T {VG}/{POOL} -n $n; done; "
               f"dd if=/dev/urandom of=/dev/{VG}/{small} bs=4M count=4 oflag=direct status=none; "
               f"dd if=/dev/urandom of=/dev/{VG}/{big} bs=4M count=4 oflag=direct status=none; lvchange -q -an {VG}/{small} {VG}/{big}")

        def thin_clone(image):
            def run():
                vmid = next(vm)
                secs, _ = lab.call("node1-thin", "gfs2clvm_tm.clone", f"/dev/{VG}/{image}",
                                   f"{MP}/datastores/0/{vmid}/disk.0", vmid, 0, vg=VG)
                lab.call("node1-thin", "gfs2clvm_tm.delete", f"{MP}/datastores/0/{vmid}", vmid, vg=VG)
                return secs
            return run

        med, samples["thin"] = interleaved({"64m": thin_clone(small), "4g": thin_clone(big)}, rounds)
        table.add(sec, "thin clone (gfs2clvm_tm.clone, whole action) of a 64 MiB image", med["64m"])
        table.add(sec, "thin clone of a 4 GiB image, vs 64 MiB", med["4g"], med["64m"], "~1 (O(1) in size; <= 1.2)",
                  lambda r: r <= 1.2)

    if "scale" in parts:
        # -- vm_disks / vm_delete with 1 vs 200 VMs in the VG ------------------------------
        lab.sh(f"lvs {VG}/lv-one-1-0 >/dev/null 2>&1 || lvcreate -q -y -an -Zn -L 4M -n lv-one-1-0 {VG}")

        def disks():
            return lab.call("node1-thick", "gfs2clvm.vm_disks", 1, vg=VG)[0]

        def delete():
            lab.sh(f"lvcreate -q -y -an -Zn -L 4M -n lv-one-2-0 {VG}")
            secs, value = lab.call("node1-thick", "gfs2clvm.vm_delete", 2, vg=VG)
            if value.get("removed") != ["lv-one-2-0"]:
                raise RuntimeError(f"vm_delete 2 removed {value.get('removed')}")
            return secs

        med1, s1 = interleaved({"disks": disks, "delete": delete}, rounds)
        made = _timed_sh(lab, f"for i in $(seq 1000 1199); do lvcreate -q -y -an -Zn -L 4M -n lv-one-$i-0 {VG} || exit 1; done")
        med200, s200 = interleaved({"disks": disks, "delete": delete}, rounds)
        samples["scale"] = {"1": s1, "200": s200, "create_200_s": made}
        count = lab.sh(f"lvs --noheadings -o lv_name {VG} | grep -c lv-one-").strip()
        table.add(sec, "vm_disks of one VM, 1 VM's disks in the VG", med1["disks"])
        table.add(sec, f"vm_disks of one VM, 200 VMs' disks in the VG ({count} lv-one LVs)", med200["disks"], med1["disks"],
                  "~1 (<= 1.2)", lambda r: r <= 1.2)
        table.add(sec, "vm_delete of one VM, 1 VM's disks in the VG", med1["delete"])
        table.add(sec, "vm_delete of one VM, 200 VMs' disks in the VG", med200["delete"], med1["delete"],
                  "~1 (<= 1.2)", lambda r: r <= 1.2)
        table.add(sec, "(set-up) 200 lvcreate -an in one ssh", made)
        lab.sh(f"lvremove -q -y -S 'lv_name=~^lv-one-1[0-9][0-9][0-9]-' {VG}")

    if "seed" in parts:
        # -- the seed's method vs the driver: clone + delete of a 64 MiB disk ------------
        image = _img("bench-thick-64m")
        lab.sh(f"lvs {VG}/{image} >/dev/null 2>&1 || lvcreate -q -y -Zn -L 64M -n {image} {VG}; "
               f"dd if=/dev/urandom of=/dev/{VG}/{image} bs=4M count=16 oflag=direct status=none; lvchange -q -an {VG}/{image}")

        def seed():
            vmid = next(vm)
            lv, vmdir = f"lv-one-{vmid}-0", f"{MP}/datastores/0/{vmid}"
            start = time.perf_counter()
            for step, pause in ((f"lvcreate -q -y -L 64M -n {lv} {VG}", 3),
                                (f"lvchange -q -ay {VG}/{image} && dd if=/dev/{VG}/{image} of=/dev/{VG}/{lv} bs=64k status=none", 0),
                                (f"mkdir -p {vmdir} && ln -s /dev/{VG}/{lv} {vmdir}/disk.0", 0),
                                (f"rm -rf {vmdir}", 0), (f"lvremove -q -f {VG}/{lv}", 0)):
                lab.sh(step, mux=False)
                time.sleep(pause)
            return time.perf_counter() - start

        def driver():
            vmid = next(vm)
            a, _ = lab.call("node1-thick", "gfs2clvm_tm.clone", f"/dev/{VG}/{image}", f"{MP}/datastores/0/{vmid}/disk.0",
                            vmid, 0, vg=VG)
            b, _ = lab.call("node1-thick", "gfs2clvm_tm.delete", f"{MP}/datastores/0/{vmid}", vmid, vg=VG)
            return a + b

        med, samples["seed"] = interleaved({"seed": seed, "driver": driver}, rounds)
        table.add(sec, "seed method: clone + delete 64 MiB (one ssh per step, sleep 3 after lvcreate)", med["seed"])
        table.add(sec, "driver: clone + delete 64 MiB (2 salt-ssh calls, transport)", med["driver"], med["seed"],
                  ">= 2.5x faster (ratio <= 0.4)", lambda r: r <= 0.4)
        # where a call's time goes in a TCG guest: its Python start-ups (the salt-ssh shim starts
        # python3 four times before salt-call: two /bin/sh probes, the Python shim, its version probe)
        thin = "/var/tmp/.gfs2clvm_bench_thin_root"
        salt_call = (f"python3 {thin}/salt-call --retcode-passthrough --local --metadata --out json -l quiet "
                     f"-c {thin} -- gfs2clvm.name_vm 42 0")
        med, samples["worker"] = interleaved({"py": lambda: _timed_sh(lab, "python3 -c pass"),
                                              "call": lambda: _timed_sh(lab, salt_call)}, rounds)
        table.add(sec, "(cause) python3 -c pass in the guest (the shim starts python3 4 times per call)", med["py"])
        table.add(sec, "(cause) the worker's salt-call of gfs2clvm.name_vm alone, in the guest", med["call"])
    return samples
