# SPDX-License-Identifier: Apache-2.0
"""The seed's test matrix replayed in the lab through the real driver executables.

The oned simulator (``lab/onesim``) issues OpenNebula's driver calls for every user
action (instantiate, reboot, live and cold migration, suspend/resume, stop/resume,
snapshot of a suspended VM, saveas, resubmit, cancel, shutdown, delete, image import,
new datablock, persistence) to ``tm_commands/tm/gfs2clvm/*`` and
``tm_commands/datastore/gfs2clvm/*`` with ``GFS2CLVM_CONF`` pointing at the lab; a VM
"runs" as a process holding its disks open on its node. After every step the real
state of both nodes is checked with plain ssh (lvs, activation, symlinks, checksums).
The table is printed (``pytest -s``) and written to ``<lab dir>/matrix.txt``.
"""
import io
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lab"))

from onesim import DriverRunner, Oned, image_lv  # noqa: E402
from onesim.__main__ import image_ds_template, lab_conf  # noqa: E402
from onesim.lab import LabChecker, SshHypervisor, SshTransport  # noqa: E402
from onesim.matrix import Matrix, run  # noqa: E402

pytestmark = pytest.mark.lab

TM = REPO / "tm_commands"
NEEDED = [f"tm/gfs2clvm/{a}" for a in ("clone", "ln", "mkswap", "context", "mv", "mvds", "cpds", "delete",
                                       "premigrate", "postmigrate", "failmigrate")]
NEEDED += [f"datastore/gfs2clvm/{a}" for a in ("cp", "mkfs", "rm", "stat")]


class Tee(io.StringIO):
    def write(self, text):
        sys.stdout.write(text)
        sys.stdout.flush()
        return super().write(text)


def require_driver():
    missing = [p for p in NEEDED if not (TM / p).is_file()]
    assert not missing, f"driver executables missing under {TM}: {', '.join(missing)}"


def fresh_vm_ids(checker, span=16):
    """A VM id range with no LVs in the VG (a kept lab may hold an earlier run's)."""
    for _ in range(20):
        first = 1000 + secrets.randbelow(10**6) * span
        if not checker.leftovers(range(first, first + span), []):
            return first
    raise AssertionError("no free VM id range")


def test_seed_matrix(lab_salt, tmp_path):
    lab = lab_salt
    require_driver()
    transport = SshTransport.from_roster(lab.roster, lab.known_hosts, key=lab.key)
    assert list(transport.nodes) == lab.nodes
    conf = lab_conf(lab.dir, lab.vg, out_dir=tmp_path / "conf")
    driver = DriverRunner(TM, conf=conf)
    hv = SshHypervisor(transport)
    probe_oned = Oned(driver, hv, hosts=lab.nodes)
    first = fresh_vm_ids(LabChecker(transport, probe_oned, vg=lab.vg))
    oned = Oned(driver, hv, hosts=lab.nodes, fe_dir=tmp_path / "fe", first_vm_id=first,
                image_ds_template=image_ds_template(lab.nodes, tmp_path / "work"))
    hv.oned = oned
    checker = LabChecker(transport, oned, vg=lab.vg)

    def final_check():
        return [f"left behind: {lv}" for lv in checker.leftovers(
            [vm.id for vm in oned.vms.values()],
            [image_lv(i.source) for i in oned.images.values() if image_lv(i.source)])]

    out = Tee()
    out.write(f"\nGFS2CLVM_CONF={conf} nodes={lab.nodes} front-end={oned.fe_host} first VM id={first}\n")
    try:
        results = run(Matrix(oned, lab.nodes, tmp_path / "work"), checker=checker, final_check=final_check,
                      out=out, verbose=True)
    finally:
        hv.close()
        transport.close()
        (lab.dir / "matrix.txt").write_text(out.getvalue())
    failed = [r.step.name for r in results if not r.ok]
    assert not failed, f"matrix steps failed: {failed}\n{out.getvalue()}"


def test_cli_runs_a_step_against_the_lab(lab_salt):
    """The command the README wires in: ``python -m onesim --lab-dir DIR --steps ...``."""
    lab = lab_salt
    require_driver()
    proc = subprocess.run(
        [sys.executable, "-m", "onesim", "--lab-dir", str(lab.dir), "--steps", "datablock",
         "--first-vm-id", str(5000 + secrets.randbelow(10**6) * 16)],
        cwd=REPO / "lab", capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("2 passed, 0 failed"), proc.stdout
