#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""gfs2clvm benchmarks: a table of ratios, every baseline measured in the same run.

Run as root after ``bash .ci/setup``::

    .venv/bin/python bench/run.py                      # latency, copy, actions (host only)
    .venv/bin/python bench/run.py --only lab           # the qemu lab (LAB_DIR / LAB_PORT_BASE)
    .venv/bin/python bench/run.py --only latency --repeat 9 --markdown out.md

Sections (``--only``, comma separated; default ``latency,copy,actions``):

latency   ssh ``true`` (new / multiplexed connection), a naive warm salt-ssh call
          (modules shipped from file_roots), the driver's set-up (modules deployed
          on the worker) as a salt-ssh subprocess (the fallback), and the driver
          set-up through gfs2clvm_driver.transport to the gfs2clvm-saltssh service
          (a fresh Python per call like a real action: the driver's default), with
          and without its ssh multiplexing, and from /usr/bin/python3 (the documented
          layout: Salt in a venv, the executables on the system Python);
          cold start (new front-end + new worker; new worker only).
copy      gfs2clvm.copy vs ``dd bs=4M oflag=direct`` on the same files: dense,
          10 %-allocated raw, qcow2; destination compared byte for byte.
actions   the real TM executables (context, delete of a VM directory) on /usr/bin/python3
          against a local sshd, through the service (the default) and without it
          (saltssh_socket "": the salt-ssh CLI), against a naive warm salt-ssh call
          measured in the same rounds.
lab       needs a running lab (``lab/lab.sh up 1``; LAB_DIR, LAB_PORT_BASE): copy
          LV->LV vs dd, thin clone 64 MiB vs 4 GiB, vm_disks/vm_delete with 1 vs
          200 VMs' disks in the VG, the seed's method (one ssh per step, sleep 3
          after lvcreate) vs the driver for clone + delete of a 64 MiB disk.

Cases of a section are interleaved (round-robin, ``--repeat`` rounds, median), so
machine load hits them alike.  Nothing here is a pass/fail test of wall time:
each row is value, baseline, ratio, target and whether the target is met.
"""

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "tm_commands" / "lib"))

import yaml  # noqa: E402
from saltssh_env import SaltSSH  # noqa: E402  pylint: disable=wrong-import-position

PY = sys.executable
TM = REPO / "tm_commands" / "tm" / "gfs2clvm"
SYS_PY = "/usr/bin/python3"  # the documented layout: the driver's executables on the system Python
SERVICE = REPO / "tm_commands" / "lib" / "gfs2clvm_driver" / "service.py"


# --------------------------------------------------------------------------
# measuring
# --------------------------------------------------------------------------
def timed(argv, check=True, **kw):
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise RuntimeError(f"{argv[:8]} failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-600:]}")
    return elapsed, proc


def interleaved(cases, repeat):
    """Run every case once per round, ``repeat`` rounds; {name: median seconds}."""
    samples = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            samples[name].append(fn())
    return {name: statistics.median(vals) for name, vals in samples.items()}, samples


class Table:
    def __init__(self):
        self.rows = []

    def add(self, section, case, value, baseline=None, target=None, met=None, unit="s", note=""):
        ratio = None if baseline in (None, 0) or value is None else value / baseline
        verdict = None if met is None or ratio is None else bool(met(ratio))
        row = {"section": section, "case": case, "value": value, "unit": unit, "baseline": baseline,
               "ratio": ratio, "target": target, "met": verdict, "note": note}
        self.rows.append(row)
        print(f"  {case:<62} {_fmt(value):>9} {unit:<4}"
              + (f" base {_fmt(baseline):>8} ratio {ratio:6.2f}" if ratio is not None else "")
              + (f"  target {target}" if target else "")
              + ("" if verdict is None else ("  MET" if verdict else "  NOT MET")), flush=True)

    def markdown(self):
        out = ["| section | case | value | baseline | ratio | target | met |", "|---|---|---|---|---|---|---|"]
        for r in self.rows:
            ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
            met = {None: "", True: "met", False: "**not met**"}[r["met"]]
            out.append(f"| {r['section']} | {r['case']} | {_fmt(r['value'])} {r['unit']} | "
                       f"{_fmt(r['baseline'])} | {ratio} | {r['target'] or ''} | {met} |")
        return "\n".join(out)


def _fmt(value):
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def load():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def drop_caches():
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------
# the local sshd + salt-ssh (private thin dirs: nothing shared with test sessions)
# --------------------------------------------------------------------------
class BenchSaltSSH(SaltSSH):
    """The integration tier's set-up with thin dirs of this run only (cold start measurable)."""

    def _write_one_config(self, cfg, saltfile, file_roots, extra_opts):
        super()._write_one_config(cfg, saltfile, file_roots, extra_opts)
        roster = yaml.safe_load((cfg / "roster").read_text())
        for entry in roster.values():
            entry["thin_dir"] += f"-bench{os.getpid()}"
        (cfg / "roster").write_text(yaml.safe_dump(roster))

    def run(self, target, fun, *args, timeout=1800, saltfile=None, **kwargs):
        # a cold thin deploy takes minutes on a loaded 2-core machine (the tests' default: 120 s)
        return super().run(target, fun, *args, timeout=timeout, saltfile=saltfile, **kwargs)

    def thin_dirs(self):
        for cfg in (self.config_dir, self.driver_config_dir):
            for entry in yaml.safe_load((cfg / "roster").read_text()).values():
                yield entry["thin_dir"]

    def argv(self, saltfile, target, fun, *args):
        from gfs2clvm_driver import saltssh as drv  # pylint: disable=import-outside-toplevel

        return drv.build_argv({"salt_ssh": self.salt_ssh, "saltfile": str(saltfile)}, [target], fun, args)


def transport_argv(argv):
    """A fresh Python making the call through gfs2clvm_driver.transport (as a real action would)."""
    return [PY, "-m", "gfs2clvm_driver.transport", *argv]


def _env_lib():
    return dict(os.environ, PYTHONPATH=str(REPO / "tm_commands" / "lib"))


class Service:
    """The gfs2clvm-saltssh service run directly (as its systemd unit runs it) for ``conf``."""

    def __init__(self, conf):
        self.dir = Path(tempfile.mkdtemp(prefix="h8s-", dir="/tmp"))  # short: socket paths have 107 bytes
        self.socket = str(self.dir / "s.sock")
        (self.dir / "cm").mkdir(mode=0o700)
        env = dict(os.environ, GFS2CLVM_CONF=str(conf), RUNTIME_DIRECTORY=str(self.dir / "cm"))
        self.log = open(self.dir / "journal", "ab")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen([PY, str(SERVICE), "--socket", self.socket], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True)
        deadline = time.monotonic() + 60
        while b"serving" not in (self.dir / "journal").read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"service did not start: {(self.dir / 'journal').read_text()[-600:]}")
            time.sleep(0.05)

    def stop(self):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for sock in (self.dir / "cm").glob("*"):
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], capture_output=True, check=False)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _variant_saltfile(env, work, ssh_options):
    """A copy of the driver set-up whose master config sets ``ssh_options``."""
    cfg = Path(work) / "nomux"
    cfg.mkdir()
    master = yaml.safe_load((env.driver_config_dir / "master").read_text())
    master["ssh_options"] = ssh_options
    (cfg / "master").write_text(yaml.safe_dump(master))
    saltfile = cfg / "Saltfile"
    saltfile.write_text(yaml.safe_dump({"salt-ssh": {"config_dir": str(cfg), "log_level": "warning"}}))
    return saltfile


# --------------------------------------------------------------------------
# latency
# --------------------------------------------------------------------------
def bench_latency(table, env, repeat):
    print(f"latency (127.0.0.1, load {load()}):", flush=True)
    sec = "latency"
    user = env.target("unpriv")
    fun = ("gfs2clvm.name_vm", 42, 0)
    naive = env.argv(env.saltfile, user, *fun)
    driver = env.argv(env.driver_saltfile, user, *fun)
    root_driver = env.argv(env.driver_saltfile, env.target("root"), *fun)
    cold1, _ = timed(driver)  # the first call (no service yet on a new front-end): the CLI
    cold2, _ = timed(root_driver)
    cold_naive, _ = timed(naive)
    cm = tempfile.mkdtemp(prefix="h8cm-", dir="/tmp")
    os.chmod(cm, 0o700)
    ssh = ["ssh", "-F", "/dev/null", "-i", str(env.key), "-p", str(env.port), "-o", "BatchMode=yes",
           "-o", f"UserKnownHostsFile={env.known_hosts}", "-o", "StrictHostKeyChecking=yes", "-l", "gfs2ci",
           "127.0.0.1"]
    mux = ssh[:1] + ["-o", "ControlMaster=auto", "-o", f"ControlPath={cm}/%C", "-o", "ControlPersist=60"] + ssh[1:]
    timed(mux + ["true"])
    work = Path(tempfile.mkdtemp(prefix="h8l-", dir="/tmp"))
    conf = env.driver_conf(work / "gfs2clvm.conf")
    nomux = env.argv(_variant_saltfile(env, work, ["ControlMaster=no"]), user, *fun)  # the service adds none
    service = Service(conf)
    senv = dict(_env_lib(), GFS2CLVM_SALTSSH_SOCKET=service.socket)
    try:
        timed(transport_argv(driver), env=senv)  # the service's ssh master
        cases = {
            "ssh": lambda: timed(ssh + ["true"])[0],
            "ssh_mux": lambda: timed(mux + ["true"])[0],
            "naive": lambda: timed(naive)[0],
            "driver": lambda: timed(driver)[0],
            "service": lambda: timed(transport_argv(driver), env=senv)[0],
            "service_syspy": lambda: timed([SYS_PY, *transport_argv(driver)[1:]], env=senv)[0],
            "service_nomux": lambda: timed(transport_argv(nomux), env=senv)[0],
        }
        med, samples = interleaved(cases, repeat)
    finally:
        service.stop()
        shutil.rmtree(work, ignore_errors=True)
    subprocess.run(["ssh", "-o", f"ControlPath={cm}/%C", "-O", "exit", "-p", str(env.port), "127.0.0.1"],
                   capture_output=True, check=False)
    table.add(sec, "ssh true, new connection", med["ssh"])
    table.add(sec, "ssh true, multiplexed (ControlMaster)", med["ssh_mux"], med["ssh"])
    table.add(sec, "naive warm salt-ssh (modules shipped from file_roots)", med["naive"], med["ssh"],
              note="baseline of the rows below")
    table.add(sec, "driver set-up: modules on the worker, salt-ssh CLI subprocess (the fallback)", med["driver"],
              med["naive"])
    table.add(sec, "driver set-up + gfs2clvm-saltssh service, no ssh mux (ControlMaster=no)", med["service_nomux"],
              med["naive"], "<= 0.55x naive", lambda r: r <= 0.55)
    table.add(sec, "driver set-up + gfs2clvm-saltssh service + its ssh mux: the driver's default", med["service"],
              med["naive"], "<= 0.55x naive", lambda r: r <= 0.55)
    table.add(sec, "the same, the action on /usr/bin/python3 (documented layout: Salt in a venv)",
              med["service_syspy"], med["naive"], "<= 0.55x naive", lambda r: r <= 0.55)
    table.add(sec, "service vs CLI subprocess (same set-up)", med["service"], med["driver"])
    table.add(sec, "cold: new front-end + new worker (thin built + deployed; CLI)", cold1, med["service"])
    table.add(sec, "cold: new worker (thin deployed; CLI)", cold2, med["service"],
              note="gfs2clvm-host add pre-pays it at enrolment")
    table.add(sec, "cold: naive set-up, new worker", cold_naive, med["naive"])
    return samples


# --------------------------------------------------------------------------
# copy (host files)
# --------------------------------------------------------------------------
def make_sparse(path, size_mb, allocated_pct):
    """size_mb file whose allocated_pct % of 4 MiB chunks hold random data, the rest holes."""
    chunk = 4 << 20
    step = max(1, round(100 / allocated_pct))
    with open(path, "wb") as handle:
        handle.truncate(size_mb << 20)
        data = os.urandom(chunk)
        for i in range(0, size_mb // 4, step):
            handle.seek(i * chunk)
            handle.write(data)
    return path


def dd_seconds(stderr):
    """dd's own figure ("... copied, 1.23 s, ..."): like the module's ``seconds``, no process start-up."""
    for line in reversed(stderr.splitlines()):
        if " copied, " in line:
            return float(line.split(" copied, ", 1)[1].split()[0].replace(",", "."))
    raise RuntimeError(f"no dd summary in {stderr!r}")


def bench_copy(table, env, size_mb, repeat):
    print(f"copy (host files, {size_mb} MiB, load {load()}):", flush=True)
    sec = "copy"
    work = env.mountpoints["root"] / "bench-copy"
    work.mkdir(exist_ok=True)
    target = env.target("root")
    caches = drop_caches()
    srcs = {
        "dense": make_sparse(work / "dense.raw", size_mb, 100),
        "sparse10": make_sparse(work / "sparse10.raw", size_mb, 10),
    }
    srcs["qcow2"] = work / "sparse10.qcow2"
    timed(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(srcs["sparse10"]), str(srcs["qcow2"])])
    dst = work / "dst.raw"

    def dd(src):
        def run():
            dst.unlink(missing_ok=True)
            drop_caches()
            return dd_seconds(timed(["dd", f"if={src}", f"of={dst}", "bs=4M", "oflag=direct"])[1].stderr)
        return run

    def module_copy(src, fmt):
        def run():
            dst.unlink(missing_ok=True)
            drop_caches()
            argv = env.argv(env.driver_saltfile, target, "gfs2clvm.copy", str(src), str(dst), *(() if fmt == "raw" else ()))
            if fmt != "raw":
                argv.append(f"fmt={json.dumps(fmt)}")
            _, proc = timed(transport_argv(argv), env=_env_lib())
            data = json.loads(proc.stdout)[target]
            if not isinstance(data, dict) or "seconds" not in data:
                raise RuntimeError(f"gfs2clvm.copy failed: {data}")
            identical = subprocess.run(["cmp", "-s", str(srcs['sparse10'] if fmt == 'qcow2' else src), str(dst)],
                                       check=False).returncode == 0
            if not identical:
                raise RuntimeError(f"gfs2clvm.copy {src} -> {dst}: destination differs")
            return float(data["seconds"])
        return run

    def qemu_img():
        dst.unlink(missing_ok=True)
        drop_caches()
        return timed(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(srcs["qcow2"]), str(dst)])[0]

    cases = {
        "dd_dense": dd(srcs["dense"]), "copy_dense": module_copy(srcs["dense"], "raw"),
        "dd_sparse": dd(srcs["sparse10"]), "copy_sparse": module_copy(srcs["sparse10"], "raw"),
        "qemu_img": qemu_img, "copy_qcow2": module_copy(srcs["qcow2"], "qcow2"),
    }
    med, samples = interleaved(cases, repeat)
    note = "" if caches else "page cache not dropped (no permission)"
    table.add(sec, f"dd bs=4M oflag=direct, dense {size_mb} MiB (dd's own time)", med["dd_dense"], note=note)
    table.add(sec, "gfs2clvm.copy dense, time vs dd", med["copy_dense"], med["dd_dense"],
              ">= 0.95x dd speed (ratio <= 1.053)", lambda r: r <= 1 / 0.95)
    table.add(sec, f"dd bs=4M oflag=direct, 10%-allocated raw {size_mb} MiB", med["dd_sparse"])
    table.add(sec, "gfs2clvm.copy 10%-allocated raw, time vs dd", med["copy_sparse"], med["dd_sparse"],
              ">= 5x faster (ratio <= 0.2)", lambda r: r <= 0.2)
    table.add(sec, f"gfs2clvm.copy qcow2 (10% allocated, {size_mb} MiB) -> raw, time vs dd of the raw", med["copy_qcow2"],
              med["dd_sparse"], ">= 5x faster (ratio <= 0.2)", lambda r: r <= 0.2)
    table.add(sec, "qemu-img convert qcow2 -> raw (reference: default cache=unsafe, no O_DIRECT/flush)",
              med["qemu_img"], med["dd_sparse"])
    table.add(sec, "gfs2clvm.copy qcow2 -> raw vs qemu-img convert", med["copy_qcow2"], med["qemu_img"])
    shutil.rmtree(work, ignore_errors=True)
    return samples


# --------------------------------------------------------------------------
# actions (real executables, host: no LVM needed)
# --------------------------------------------------------------------------
def _fake_lvm_worker(env, work, conf):
    """Point the driver conf at a Saltfile whose worker uses the integration tier's fake LVM
    (an empty VG in a JSON file, ``lvm_bin``), as tests/integration/test_driver_saltssh.py does."""
    from test_driver_saltssh import FAKE_LVM, VG  # pylint: disable=import-outside-toplevel

    fake = work / "fakelvm"
    fake.mkdir()
    (fake / "lvm.py").write_text(FAKE_LVM)
    (fake / "lvm.py").chmod(0o755)
    for name in ("lvs", "lvremove", "lvchange", "lvcreate", "vgs"):
        (fake / name).symlink_to(fake / "lvm.py")
    (fake / "state.json").write_text(json.dumps({"vg": VG, "lvs": []}))
    subprocess.run(["chown", "-R", "gfs2ci:gfs2ci", str(fake)], check=True)
    os.chmod(work, 0o755)
    cfg = work / "etc"
    cfg.mkdir()
    master = yaml.safe_load((env.driver_config_dir / "master").read_text())
    roster = yaml.safe_load((env.driver_config_dir / "roster").read_text())
    target = env.target("unpriv")
    roster[target]["minion_opts"]["gfs2clvm"].update({"lvm_bin": str(fake), "sudo": False})
    master["roster_file"] = str(cfg / "roster")
    (cfg / "master").write_text(yaml.safe_dump(master))
    (cfg / "roster").write_text(yaml.safe_dump({target: roster[target]}))
    saltfile = cfg / "Saltfile"
    saltfile.write_text(yaml.safe_dump({"salt-ssh": {"config_dir": str(cfg), "log_level": "warning"}}))
    data = yaml.safe_load(Path(conf).read_text())
    data["saltfile"] = str(saltfile)
    Path(conf).write_text(yaml.safe_dump(data))


def bench_actions(table, env, repeat):
    print(f"actions (real executables, local sshd, load {load()}):", flush=True)
    sec = "actions"
    work = Path(tempfile.mkdtemp(prefix="h8-actions-", dir="/tmp"))
    mp = env.mountpoints["unpriv"]
    conf = env.driver_conf(work / "gfs2clvm.conf", mountpoint=str(mp), mount_check="none",
                           frontend_hosts=["the-front-end"], timeout=600)
    _fake_lvm_worker(env, work, conf)  # delete lists the VM's LVs: the host has no LVM
    ctx = work / "context.sh"
    ctx.write_text("ETH0_IP='10.0.0.42'\nHOSTNAME='vm42'\n")
    host = env.target("unpriv")
    service = Service(conf)
    confs = {True: conf, False: work / "cli.conf"}
    confs[False].write_text(yaml.safe_dump(dict(yaml.safe_load(Path(conf).read_text()), saltssh_socket="")))
    data = yaml.safe_load(Path(conf).read_text())
    data["saltssh_socket"] = service.socket
    Path(conf).write_text(yaml.safe_dump(data))
    counter = iter(range(1000, 100000))

    def action(name, args, wired):
        argv = [SYS_PY, str(TM / name), *map(str, args)]  # the executable as oned runs it
        return timed(argv, env=dict(os.environ, GFS2CLVM_CONF=str(confs[wired])))[0]

    def context(wired):
        def run():
            vmid = next(counter)
            return action("context", [ctx, f"{host}:{mp}/datastores/0/{vmid}/disk.1", vmid, 0], wired)
        return run

    def delete(wired):
        def run():
            vmid = next(counter)
            vmdir = mp / "datastores" / "0" / str(vmid)
            vmdir.mkdir(parents=True)
            (vmdir / "deployment.0").write_text("x")
            subprocess.run(["chown", "-R", "gfs2ci:gfs2ci", str(mp / "datastores")], check=True)
            return action("delete", [f"{host}:{vmdir}", vmid, 0], wired)
        return run

    naive = env.argv(env.saltfile, host, "gfs2clvm.name_vm", 42, 0)
    try:
        context(True)()  # the service's ssh master
        cases = {"naive": lambda: timed(naive)[0], "context_sub": context(False), "context_sv": context(True),
                 "delete_sub": delete(False), "delete_sv": delete(True)}
        med, samples = interleaved(cases, repeat)
    finally:
        service.stop()
    table.add(sec, "naive warm salt-ssh (gfs2clvm.name_vm, modules from file_roots), same rounds", med["naive"],
              note="baseline")
    for name in ("context", "delete"):
        table.add(sec, f"{name}: executable, no service (salt-ssh CLI)", med[f"{name}_sub"], med["naive"])
        table.add(sec, f"{name}: executable, gfs2clvm-saltssh service (the driver's default)", med[f"{name}_sv"],
                  med["naive"], "<= 0.55x naive", lambda r: r <= 0.55)
        table.add(sec, f"{name}: service vs CLI", med[f"{name}_sv"], med[f"{name}_sub"])
    shutil.rmtree(work, ignore_errors=True)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def _section(table, name, fn, *args):
    """Run one section; a failure becomes a row (the other sections still run)."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001 -- report, keep going
        text = " ".join(str(err).split())[:300]
        print(f"  section {name} FAILED: {text}", flush=True)
        table.rows.append({"section": name, "case": f"FAILED: {text}", "value": None, "unit": "",
                           "baseline": None, "ratio": None, "target": None, "met": None, "note": ""})
        return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 2)[2],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=7, help="rounds per section (median; default 7)")
    ap.add_argument("--size-mb", type=int, default=1024,
                    help="image size of the host copy cases (default 1024: a realistic image, so qemu-img's "
                         "process start-up does not dominate the qcow2 case)")
    ap.add_argument("--only", default="latency,copy,actions", help="sections: latency,copy,actions,lab")
    ap.add_argument("--markdown", help="also write the table (markdown) to this file")
    ap.add_argument("--json", help="also write the rows and raw samples (JSON) to this file")
    args = ap.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - {"latency", "copy", "actions", "lab"}
    if unknown:
        ap.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    if os.geteuid() != 0:
        ap.error("run as root (private sshd on 127.0.0.1, a test user, dropping caches)")
    table = Table()
    started, load_start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load()
    samples = {}
    host_sections = [s for s in only if s != "lab"]
    if host_sections:
        env = BenchSaltSSH(Path(tempfile.mkdtemp(prefix="gfs2clvm-bench-", dir="/tmp")))
        env.start()
        try:
            if "latency" in only:
                samples["latency"] = _section(table, "latency", bench_latency, table, env, args.repeat)
            env.warm_up()
            if "copy" in only:
                samples["copy"] = _section(table, "copy", bench_copy, table, env, args.size_mb, args.repeat)
            if "actions" in only:
                samples["actions"] = _section(table, "actions", bench_actions, table, env, args.repeat)
        finally:
            env.stop()
            for thin in env.thin_dirs():
                subprocess.run(["rm", "-rf", "--one-file-system", thin], check=False)
            shutil.rmtree(env.base, ignore_errors=True)
    if "lab" in only:
        import lab_bench  # pylint: disable=import-outside-toplevel

        samples["lab"] = _section(table, "lab", lab_bench.bench_lab, table, args.repeat, timed, interleaved, load)
    header = (f"Machine: {platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, "
              f"kernel {platform.release()}, Python {platform.python_version()}. Run {started} "
              f"-> {time.strftime('%H:%M UTC', time.gmtime())}; load average (1/5/15 min) at start {load_start}, "
              f"at end {load()}; --repeat {args.repeat} (interleaved rounds, medians).")
    md = header + "\n\n" + table.markdown() + "\n"
    print("\n" + md)
    if args.markdown:
        Path(args.markdown).write_text(md)
    if args.json:
        Path(args.json).write_text(json.dumps({"header": header, "rows": table.rows, "samples": samples}, indent=1))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
