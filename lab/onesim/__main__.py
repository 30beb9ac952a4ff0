# SPDX-License-Identifier: Apache-2.0
"""``python -m onesim --lab-dir DIR [--steps a,b,...]`` (with ``lab/`` on ``sys.path``).

Replays the seed's test matrix through the real driver executables against a
running, provisioned lab (``lab/lab.sh up && lab/lab.sh provision``), prints one
row per step and ``N passed, N failed``; exit status 1 on any failure.
``--dry-run`` needs no lab: it prints the driver calls each step makes.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import yaml

from .driver import Call, DriverRunner
from .lab import LabChecker, SshHypervisor, SshTransport, wait_ready
from .matrix import Matrix, run
from .oned import NullHypervisor, Oned, image_lv

REPO = Path(__file__).resolve().parents[2]


class DryRunDriver(DriverRunner):
    """Records the calls without running anything; prints what a driver would."""

    def __init__(self):
        super().__init__(REPO / "tm_commands", env={})
        self._n = 0

    def _run(self, kind, action, exe, args, stdin):
        self._n += 1
        out = ""
        if kind == "datastore" and action in ("cp", "mkfs"):
            out = f"vg_cloudstorage/lv-oneimg-{self._n:032x}" + (" raw" if action == "cp" else "")
        elif kind == "datastore" and action == "stat":
            out = "8"
        call = Call(kind, action, [str(exe), *map(str, args)], 0, out + "\n", "", 0.0, stdin)
        self.calls.append(call)
        return call


def lab_conf(lab_dir: Path, vg: str, out_dir: Path | None = None) -> Path:
    """The driver configuration for the lab: ``<lab>/gfs2clvm.conf`` if the lab wrote one,
    else one written under ``<lab>/onesim/``: the lab's Saltfile, the repo's salt-ssh, and
    an ssh_config that maps the roster ids to their ports (the driver's data streams)."""
    own = lab_dir / "gfs2clvm.conf"
    if own.exists():
        return own
    out_dir = out_dir or lab_dir / "onesim"
    out_dir.mkdir(parents=True, exist_ok=True)
    transport = SshTransport.from_lab_dir(lab_dir)
    known = lab_dir / "ssh" / "known_hosts"
    ssh_config = out_dir / "ssh_config"
    lines = [f"# written by onesim for the lab in {lab_dir}"]
    for node, (host, port) in transport.nodes.items():
        lines += [f"Host {node}", f"  HostName {host}", f"  Port {port}", f"  IdentityFile {transport.key}",
                  "  IdentitiesOnly yes", f"  UserKnownHostsFile {known}", "  StrictHostKeyChecking yes",
                  "  ConnectTimeout 15", "  LogLevel ERROR"]
    transport.close()
    ssh_config.write_text("\n".join(lines) + "\n")
    conf = {
        "salt_ssh": os.environ.get("SALT_SSH", str(REPO / ".venv" / "bin" / "salt-ssh")),
        # the driver's own set-up (modules in module_dirs, nothing shipped per call) when
        # the lab wrote one, else the provisioning one
        "saltfile": str(next(f for f in (lab_dir / "Saltfile.driver", lab_dir / "Saltfile") if f.exists())),
        "vg": vg,
        "user": "oneadmin",
        "ssh_options": ["-F", str(ssh_config)],
        "timeout": 900,
    }
    path = out_dir / "gfs2clvm.conf"
    path.write_text(f"# written by onesim for the lab in {lab_dir}\n" + yaml.safe_dump(conf, sort_keys=False))
    return path


def image_ds_template(nodes, work_dir) -> dict:
    """What an admin sets on the image datastore: the workers that run image actions and
    the front-end directory images may be imported from."""
    return {"BRIDGE_LIST": " ".join(nodes), "SAFE_DIRS": str(work_dir)}


def build_parser():
    p = argparse.ArgumentParser(prog="python -m onesim", description=__doc__.split("\n\n")[0])
    p.add_argument("--lab-dir", type=Path, default=Path(os.environ.get("LAB_DIR", REPO / ".lab")),
                   help="the lab's state directory (lab.sh's LAB_DIR; default <repo>/.lab)")
    p.add_argument("--steps", default="", help="comma-separated steps (their prerequisites are added)")
    p.add_argument("--list", action="store_true", help="list the steps and exit")
    p.add_argument("--dry-run", action="store_true", help="no lab: print the driver calls of each step")
    p.add_argument("--tm-commands", type=Path, default=REPO / "tm_commands",
                   help="directory with tm/<mad>/<action> and datastore/<mad>/<action>")
    p.add_argument("--conf", type=Path, default=os.environ.get("GFS2CLVM_CONF"),
                   help="driver config exported as GFS2CLVM_CONF (default: the lab's)")
    p.add_argument("--vg", default="vg_cloudstorage", help="the shared VG the checker inspects")
    p.add_argument("--tm-mad", default="gfs2clvm")
    p.add_argument("--fe-host", default=None, help="oned's hostname (default: this host's name)")
    p.add_argument("--ds-location", default="/var/lib/one//datastores",
                   help="oned's DATASTORE_LOCATION (default: oned's own default, with its double slash)")
    p.add_argument("--system-ds", type=int, default=0)
    p.add_argument("--image-ds", type=int, default=1)
    p.add_argument("--first-vm-id", type=int, default=0)
    p.add_argument("--no-check", action="store_true", help="do not inspect the nodes after each step")
    p.add_argument("-v", "--verbose", action="store_true", help="print every call's argv, rc, output")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    steps = [s for s in args.steps.split(",") if s.strip()] or None
    work = Path(tempfile.mkdtemp(prefix="onesim-"))
    if args.list or args.dry_run:
        oned = Oned(DryRunDriver(), NullHypervisor(), hosts=["node1", "node2"], fe_host=args.fe_host or "fe",
                    fe_dir=work / "fe", system_ds=args.system_ds, image_ds=args.image_ds, tm_mad=args.tm_mad,
                    ds_mad=args.tm_mad, first_vm_id=args.first_vm_id, ds_location=args.ds_location)
        matrix = Matrix(oned, ["node1", "node2"], work, seed=1)
        if args.list:
            for step in matrix.select(steps):
                print(f"{step.name:<16} {step.doc}")
            return 0
        results = run(matrix, steps, verbose=args.verbose)
        return 0 if all(r.ok for r in results) else 1

    lab_dir = args.lab_dir.resolve()
    roster = lab_dir / "salt" / "roster"
    if not roster.exists():
        print(f"onesim: no lab in {lab_dir} (no {roster}); run lab/lab.sh up && lab/lab.sh provision",
              file=sys.stderr)
        return 2
    transport = SshTransport.from_lab_dir(lab_dir)
    nodes = list(transport.nodes)
    missing = wait_ready(transport)
    if missing:
        transport.close()
        print(f"onesim: lab nodes do not answer ssh: {', '.join(missing)}", file=sys.stderr)
        return 2
    conf = args.conf or lab_conf(lab_dir, args.vg)
    driver = DriverRunner(args.tm_commands, conf=conf,
                          on_call=(lambda c: print(f"    .. {c.short} rc={c.rc} {c.seconds:.1f}s", flush=True))
                          if args.verbose else None)
    hv = SshHypervisor(transport)
    oned = Oned(driver, hv, hosts=nodes, fe_host=args.fe_host, fe_dir=work / "fe", system_ds=args.system_ds,
                image_ds=args.image_ds, tm_mad=args.tm_mad, ds_mad=args.tm_mad, first_vm_id=args.first_vm_id,
                image_ds_template=image_ds_template(nodes, work), ds_location=args.ds_location)
    hv.oned = oned
    checker = None if args.no_check else LabChecker(transport, oned, vg=args.vg)
    if checker is not None:
        ids = range(args.first_vm_id, args.first_vm_id + 16)
        left = checker.leftovers(ids, [])
        if left:
            print(f"onesim: the VG already holds LVs of VM ids {ids.start}-{ids.stop - 1}: {', '.join(left)}; "
                  "use --first-vm-id or a fresh lab", file=sys.stderr)
            transport.close()
            return 2
    matrix = Matrix(oned, nodes, work)
    print(f"onesim: lab {lab_dir}, nodes {', '.join(nodes)}, driver {args.tm_commands}, "
          f"GFS2CLVM_CONF={conf}, front-end {oned.fe_host}")

    def final_check():
        return [f"left behind: {lv}" for lv in checker.leftovers(
            [vm.id for vm in oned.vms.values()],
            [image_lv(i.source) for i in oned.images.values() if image_lv(i.source)])]

    try:
        results = run(matrix, steps, checker=checker, final_check=final_check if checker else None,
                      verbose=args.verbose)
    finally:
        hv.close()
        transport.close()
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
