#!/usr/bin/env python3
"""gfs2clvm benchmarks: ratios against dd / qemu-img / plain ssh, measured in one run.

Usage (as root, after ``bash .ci/setup``)::

    .venv/bin/python bench/run.py [--repeat N] [--size-mb MB] [--only copy,latency] [--markdown FILE]

Nothing here is a pass/fail test of wall time: every row is a ratio against a
baseline measured on the same machine, in the same run, on the same data.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from saltssh_env import SaltSSH  # noqa: E402  pylint: disable=wrong-import-position


def timed(argv, **kw):
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[:6]} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return elapsed, proc


def median_of(n, fn):
    samples = [fn() for _ in range(n)]
    return statistics.median(samples), min(samples)


class Table:
    def __init__(self):
        self.rows = []

    def add(self, section, case, value, baseline=None, target=None, unit="s"):
        ratio = None if baseline in (None, 0) else value / baseline
        self.rows.append(
            {"section": section, "case": case, "value": value, "unit": unit,
             "baseline": baseline, "ratio": ratio, "target": target}
        )
        print(f"  {case:<58} {value:9.3f} {unit:<4}"
              + (f" ratio {ratio:6.2f}" if ratio is not None else "")
              + (f"  target {target}" if target else ""), flush=True)

    def markdown(self):
        out = ["| section | case | value | ratio to baseline | target |", "|---|---|---|---|---|"]
        for r in self.rows:
            ratio = "" if r["ratio"] is None else f"{r['ratio']:.2f}"
            out.append(f"| {r['section']} | {r['case']} | {r['value']:.3f} {r['unit']} | {ratio} | {r['target'] or ''} |")
        return "\n".join(out)


def make_sparse(path, size_mb, allocated_pct, seed=1):
    """A file of size_mb with allocated_pct % of its 4 MiB chunks holding random data."""
    chunk = 4 << 20
    nchunks = size_mb // 4
    step = max(1, round(100 / allocated_pct)) if allocated_pct < 100 else 1
    with open(path, "wb") as f:
        f.truncate(size_mb << 20)
        data = os.urandom(chunk)
        for i in range(0, nchunks, step):
            f.seek(i * chunk)
            f.write(data)
    return path


def drop_caches():
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        pass


def bench_copy(table, env, work, size_mb, repeat):
    """gfs2clvm.copy vs dd bs=4M oflag=direct, on the same source/destination pair."""
    print("copy (host files):", flush=True)
    for label, pct in (("dense", 100), ("10%-allocated", 10)):
        src = make_sparse(work / f"src-{pct}.raw", size_mb, pct)
        dst = work / f"dst-{pct}.raw"

        def run_dd():
            dst.unlink(missing_ok=True)
            drop_caches()
            t, _ = timed(["dd", f"if={src}", f"of={dst}", "bs=4M", "oflag=direct", "status=none"])
            return t

        def run_copy():
            dst.unlink(missing_ok=True)
            drop_caches()
            rc, data, err = env.call("gfs2clvm.copy", str(src), str(dst))
            if rc != 0:
                raise RuntimeError(f"gfs2clvm.copy failed: {data} {err}")
            return float(data["seconds"])

        dd_t, _ = median_of(repeat, run_dd)
        cp_t, _ = median_of(repeat, run_copy)
        subprocess.run(["cmp", str(src), str(dst)], check=True)
        table.add("copy", f"dd bs=4M oflag=direct, {label} {size_mb} MiB", dd_t)
        target = ">= 0.95x dd speed (ratio <= 1.05)" if pct == 100 else ">= 5x faster (ratio <= 0.2)"
        table.add("copy", f"gfs2clvm.copy, {label} {size_mb} MiB (time in module)", cp_t, dd_t, target)

    qcow = work / "src.qcow2"
    timed(["qemu-img", "convert", "-O", "qcow2", str(work / "src-10.raw"), str(qcow)])
    dst = work / "dst-qcow.raw"

    def run_qemu_img():
        dst.unlink(missing_ok=True)
        drop_caches()
        t, _ = timed(["qemu-img", "convert", "-O", "raw", str(qcow), str(dst)])
        return t

    def run_copy_qcow():
        dst.unlink(missing_ok=True)
        drop_caches()
        rc, data, err = env.call("gfs2clvm.copy", str(qcow), str(dst), fmt="qcow2")
        if rc != 0:
            raise RuntimeError(f"gfs2clvm.copy qcow2 failed: {data} {err}")
        return float(data["seconds"])

    qi_t, _ = median_of(repeat, run_qemu_img)
    cq_t, _ = median_of(repeat, run_copy_qcow)
    table.add("copy", f"qemu-img convert qcow2->raw, 10% of {size_mb} MiB", qi_t)
    table.add("copy", "gfs2clvm.copy qcow2->raw (time in module)", cq_t, qi_t, "~1x qemu-img")


def bench_latency(table, env, repeat):
    """Plain ssh vs naive salt-ssh vs the driver's tuned salt-ssh, all warm."""
    print("latency (warm, 127.0.0.1):", flush=True)
    ssh = ["ssh", "-i", str(env.key), "-p", str(env.port), "-o", f"UserKnownHostsFile={env.known_hosts}",
           "-o", "BatchMode=yes", f"{env.user.pw_name}@127.0.0.1"]
    ssh_t, _ = median_of(repeat, lambda: timed(ssh + ["true"])[0])
    table.add("latency", "ssh true (new connection)", ssh_t)
    fun = ["gfs2clvm.name_vm", "42", "0"]
    target = env.target("unpriv")

    def naive():
        t, _ = timed([env.salt_ssh, "--saltfile", str(env.saltfile), "--out", "json", target, *fun])
        return t

    def driver_setup():
        t, _ = timed([env.salt_ssh, "--saltfile", str(env.driver_saltfile), "--out", "json", target, *fun])
        return t

    naive()
    driver_setup()
    naive_t, _ = median_of(repeat, naive)
    table.add("latency", "naive salt-ssh (modules shipped from file_roots)", naive_t, ssh_t)
    drv_t, _ = median_of(repeat, driver_setup)
    table.add("latency", "salt-ssh, modules deployed on worker (module_dirs)", drv_t, naive_t, "<= 0.55x naive")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size-mb", type=int, default=512)
    ap.add_argument("--only", default="latency,copy")
    ap.add_argument("--markdown", help="also write the table (markdown) to this file")
    ap.add_argument("--json", help="also write the rows (JSON) to this file")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    table = Table()
    with tempfile.TemporaryDirectory(prefix="gfs2clvm-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        env = SaltSSH(Path(tempfile.mkdtemp(prefix="gfs2clvm-bench-ssh-", dir="/tmp")))
        env.start()
        try:
            env.warm_up()
            if "latency" in only:
                bench_latency(table, env, args.repeat)
            if "copy" in only:
                bench_copy(table, env, work, args.size_mb, args.repeat)
        finally:
            env.stop()
    header = (f"Machine: {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
              f"kernel {platform.release()}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    md = header + "\n\n" + table.markdown() + "\n"
    print("\n" + md)
    if args.markdown:
        Path(args.markdown).write_text(md)
    if args.json:
        Path(args.json).write_text(json.dumps(table.rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
