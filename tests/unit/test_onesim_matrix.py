# SPDX-License-Identifier: Apache-2.0
"""The matrix runner, the lab checker's rules and its probe script, without a lab.

The checker is fed by a fake lab that derives a *correct* world from oned's model
(LVs, activation, symlinks, checksums); faults are then injected one at a time and
each must be reported. The probe script itself runs under the local bash with fake
``lvs``/``lvchange`` on PATH.
"""
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lab"))

from onesim import DriverRunner, NullHypervisor, Oned, State, image_lv  # noqa: E402
from onesim.__main__ import main as onesim_main  # noqa: E402
from onesim.lab import PROBE, LabChecker, parse_probe  # noqa: E402
from onesim.matrix import Matrix, bootable_image, run  # noqa: E402

from test_onesim import fake  # noqa: E402,F401  (fixture: fake driver directory)

VG = "vg_cloudstorage"


def sha(data):
    return hashlib.sha256(bytes(data)).hexdigest()


class SavingHypervisor(NullHypervisor):
    def save(self, vm):
        super().save(vm)
        return b"checkpoint of %d" % vm.id


class FakeLab:
    """Answers the checker's probe from a world derived from the model (then tampered with)."""

    def __init__(self, oned, nodes):
        self.oned, self.nodes = oned, list(nodes)
        self.tamper = []  # callables(world) applied after each sync

    def sync(self):
        o = self.oned
        lvs = {n: {} for n in self.nodes}
        links = {n: {} for n in self.nodes}
        sums = {n: {} for n in self.nodes}
        files = {n: {} for n in self.nodes}
        dirs = set()
        for vm in o.vms.values():
            if vm.state in (State.DONE, State.PENDING, State.FAILURE) or vm.ds_id is None:
                continue
            vmdir = o.system_dir(vm)
            dirs.add(vmdir)
            for d in vm.disks:
                lv = image_lv(d.source) if d.persistent else f"lv-one-{vm.id}-{d.disk_id}"
                for n in self.nodes:
                    lvs[n][lv] = "-wi-------"
                if vm.state is State.STOPPED:
                    continue
                links[vm.host][f"{vmdir}/disk.{d.disk_id}"] = (f"/dev/{VG}/{lv}", f"/dev/dm-{lv}")
                if vm.state is State.RUNNING:
                    lvs[vm.host][lv] = "-wi-ao----"
                    if d.content is not None:
                        sums[vm.host][f"{vmdir}/disk.{d.disk_id}"] = sha(d.content)
            if vm.state is State.SUSPENDED and vm.checkpoint is not None:
                for n in self.nodes:
                    files[n][f"{vmdir}/checkpoint"] = sha(vm.checkpoint)
        isums = {}
        for img in o.images.values():
            lv = image_lv(img.source)
            if img.state == "READY" and lv:
                for n in self.nodes:
                    lvs[n].setdefault(lv, "-wi-------")
                isums[lv] = sha(img.content) if img.content is not None else "-"
        self.world = {"lvs": lvs, "links": links, "sums": sums, "files": files, "dirs": dirs, "isums": isums}
        for fn in self.tamper:
            fn(self.world)

    def run(self, node, command, user="root", input=None, timeout=None):
        assert command[:2] == ["bash", "-c"] and command[2] == PROBE and command[4] == VG
        w = self.world
        out = ["@lvs", json.dumps({"report": [{"lv": [
            {"lv_name": k, "lv_attr": v, "lv_size": "8388608"} for k, v in w["lvs"][node].items()]}]}),
            "@lvserr", "@items"]
        for spec in command[5:]:
            kind, rest = spec.split(":", 1)
            if kind == "link":
                target, real = w["links"][node].get(rest, ("-", "-"))
                out.append(f"link\t{rest}\t{target}\t{real}")
            elif kind == "dev":
                lv = rest.rsplit("/", 1)[1]
                out.append(f"dev\t{rest}\t/dev/dm-{lv}")
            elif kind == "sum":
                path = rest.split(":", 1)[1]
                out.append(f"sum\t{path}\t{w['sums'][node].get(path, '-')}")
            elif kind == "isum":
                lv = rest.split(":", 1)[1]
                out.append(f"isum\t{lv}\t{w['isums'].get(lv, '-')}")
            elif kind == "file":
                out.append(f"file\t{rest}\t{w['files'][node].get(rest, '-')}")
            elif kind == "exists":
                out.append(f"exists\t{rest}\t{int(rest in w['dirs'])}")
        return subprocess.CompletedProcess(command, 0, ("\n".join(out) + "\n").encode(), b"")


class FakeTransport:
    def __init__(self, lab):
        self.lab = lab
        self.nodes = {n: ("127.0.0.1", 2201 + i) for i, n in enumerate(lab.nodes)}

    def run(self, node, command, user="root", input=None, timeout=None):
        return self.lab.run(node, command, user, input, timeout)


@pytest.fixture
def world(fake):  # noqa: F811
    driver = DriverRunner(fake.root, conf=fake.conf)
    oned = Oned(driver, SavingHypervisor(), hosts=["node1", "node2"], fe_host="fe", fe_dir=fake.tmp / "fe")
    lab = FakeLab(oned, ["node1", "node2"])
    checker = LabChecker(FakeTransport(lab), oned, vg=VG, parallel=False)
    matrix = Matrix(oned, ["node1", "node2"], fake.tmp / "work", seed=7)

    def check(step):
        lab.sync()
        return checker(step)

    return oned, lab, checker, matrix, check


def test_whole_matrix_passes_on_a_correct_world_within_budget(world):
    oned, lab, checker, matrix, check = world
    out = io.StringIO()
    results = run(matrix, checker=check, out=out)
    text = out.getvalue()
    assert [r.status for r in results] == ["PASS"] * 18, text
    assert text.rstrip().endswith("18 passed, 0 failed")
    calls = sum(len(r.calls) for r in results)
    # ~8-9 s per salt-ssh driver call in the TCG lab: keep the matrix under ~10 minutes.
    assert calls <= 48, calls
    steps = {r.step.name: [c.action for c in r.calls] for r in results}
    assert steps["livemigrate"] == ["premigrate", "postmigrate"]
    assert steps["stop"] == ["mv", "mv"]
    assert steps["snapshot"] == ["stat", "cp"]
    snap = [c for c in oned.driver.calls if c.action == "cp"][1]
    assert b"lvm://0/0" in __import__("base64").b64decode(snap.stdin)
    assert all(vm.state is State.DONE for vm in oned.vms.values())
    assert all(img.state == "DELETED" for img in oned.images.values())


@pytest.mark.parametrize("fault, expected", [
    (lambda w: w["lvs"]["node2"].__setitem__("lv-one-0-0", "-wi-a-----"), "active on ['node1', 'node2']"),
    (lambda w: w["sums"]["node1"].__setitem__(next(iter(w["sums"]["node1"]), "x"), "0" * 64),
     "bytes on node1 differ"),
    (lambda w: w["links"]["node1"].clear(), "no symlink"),
    (lambda w: [w["lvs"][n].pop("lv-one-0-0", None) for n in w["lvs"]], "LV missing"),
])
def test_faults_of_a_running_vm_are_reported(world, fault, expected):
    oned, lab, checker, matrix, check = world
    run(matrix, ["instantiate"], checker=check, out=io.StringIO())  # import, instantiate, cleanup
    lab.tamper.append(fault)
    oned.vms[0].state = State.RUNNING  # look at it as it was before the clean-up
    lab.sync()
    problems = checker()
    assert any(expected in p for p in problems), problems


def test_leftovers_after_done_and_delete_are_reported(world):
    oned, lab, checker, matrix, check = world
    # only import, resubmit, cancel, cleanup run: VM B is VM 0
    def leave_behind(w):
        if 0 in oned.vms and oned.vms[0].state is State.DONE:
            for n in w["lvs"]:
                w["lvs"][n]["lv-one-0-1"] = "-wi-------"
            w["dirs"].add("/var/lib/one//datastores/0/0")
    lab.tamper.append(leave_behind)
    out = io.StringIO()
    results = run(matrix, ["cancel"], checker=check, out=out)
    cancel = next(r for r in results if r.step.name == "cancel")
    assert cancel.status == "FAIL", out.getvalue()
    assert any("VM 0 is DONE but its LVs remain: lv-one-0-1" in p for p in cancel.problems)
    assert any("/var/lib/one//datastores/0/0 remains on node1" in p for p in cancel.problems)


def test_stopped_vm_must_be_inactive_and_images_unused_inactive(world):
    oned, lab, checker, matrix, check = world
    run(matrix, ["stop"], checker=check, out=io.StringIO())
    vm = oned.vms[0]
    vm.state = State.STOPPED
    img = oned.images[0]
    img.state = "READY"
    lab.tamper.append(lambda w: w["lvs"]["node1"].__setitem__("lv-one-0-0", "-wi-a-----"))
    lab.tamper.append(lambda w: w["lvs"]["node2"].__setitem__(image_lv(img.source), "-wi-a-----"))
    lab.sync()
    problems = checker()
    assert any("still active on ['node1'] while the VM is STOPPED" in p for p in problems), problems
    assert any("left active on ['node2']" in p for p in problems), problems


def test_image_bytes_are_checked_when_the_step_asks(world):
    oned, lab, checker, matrix, check = world
    lab.tamper.append(lambda w: w["isums"].update({k: "f" * 64 for k in w["isums"]}))
    results = run(matrix, ["import"], checker=check, out=io.StringIO())
    assert results[0].status == "FAIL"
    assert any("bytes differ from the expected ones" in p for p in results[0].problems)


def test_failed_step_skips_dependents_but_cleanup_runs(world, fake):  # noqa: F811
    oned, lab, checker, matrix, check = world
    oned.driver.env["FAKE_FAIL"] = "tm/premigrate"
    out = io.StringIO()
    results = run(matrix, ["suspend", "datablock"], out=out)
    status = {r.step.name: r.status for r in results}
    assert status == {"import": "PASS", "instantiate": "PASS", "reboot": "PASS", "livemigrate": "FAIL",
                      "suspend": "SKIP", "datablock": "PASS", "cleanup": "PASS"}
    assert "ERROR: fake failure of premigrate" in out.getvalue()
    assert out.getvalue().rstrip().endswith("5 passed, 2 failed")
    # clean-up deleted the running VM A (recover --delete) and the images
    assert oned.vms[0].state is State.DONE and {i.state for i in oned.images.values()} == {"DELETED"}


def test_select_adds_prerequisites_in_order(world):
    matrix = world[3]
    assert [s.name for s in matrix.select(["snapshot"])] == [
        "import", "instantiate", "reboot", "livemigrate", "suspend", "snapshot", "cleanup"]
    with pytest.raises(ValueError, match="unknown steps: nope"):
        matrix.select(["nope"])


def test_bootable_image_has_mbr_and_a_zero_hole():
    img = bootable_image(8)
    assert len(img) == 8 << 20 and img[510:512] == b"\x55\xaa" and img[:1] == b"\xfa"
    assert img[3 << 20:5 << 20] == bytes(2 << 20) and img[1 << 20:(1 << 20) + 64] != bytes(64)


def test_cli_dry_run_and_list(capsys):
    assert onesim_main(["--dry-run", "--steps", "cancel"]) == 0
    out = capsys.readouterr().out
    assert "resubmit         clone mkswap delete×3 clone mkswap" in out
    assert out.rstrip().endswith("4 passed, 0 failed")
    assert onesim_main(["--list"]) == 0
    assert "saveas+shutdown" in capsys.readouterr().out


def test_cli_without_a_lab_exits_2(tmp_path, capsys):
    assert onesim_main(["--lab-dir", str(tmp_path)]) == 2
    assert "no lab in" in capsys.readouterr().err


def test_python_dash_m_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "onesim", "--list"], cwd=REPO / "lab",
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0 and "livemigrate" in proc.stdout


def test_probe_script_under_local_bash(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "lvchange.log"
    (bindir / "lvs").write_text("#!/bin/sh\necho '{\"report\": [{\"lv\": [{\"lv_name\": \"lv-one-3-0\", "
                                "\"lv_attr\": \"-wi-ao----\", \"lv_size\": \"8388608\"}]}]}'\n"
                                "echo '  WARNING: something on stderr' >&2\n")
    (bindir / "lvchange").write_text(f"#!/bin/sh\necho \"$@\" >> {log}\n")
    for exe in bindir.iterdir():
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    vmdir = tmp_path / "3"
    vmdir.mkdir()
    data = os.urandom(2 << 20)
    (tmp_path / "dev0").write_bytes(data)
    (vmdir / "disk.0").symlink_to(tmp_path / "dev0")
    (vmdir / "checkpoint").write_bytes(b"ckpt")
    specs = [f"link:{vmdir}/disk.0", f"link:{vmdir}/disk.9", f"dev:{tmp_path}/dev0", f"sum:2:{vmdir}/disk.0",
             f"file:{vmdir}/checkpoint", f"exists:{vmdir}", f"exists:{tmp_path}/nope", "isum:1:lv-oneimg-x"]
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", "-c", PROBE, "probe", VG, *specs], capture_output=True, env=env,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    lvs, items = parse_probe(proc.stdout.decode())
    assert lvs == {"lv-one-3-0": "-wi-ao----"}
    assert items[("link", f"{vmdir}/disk.0")] == [str(tmp_path / "dev0"), str(tmp_path / "dev0")]
    assert items[("link", f"{vmdir}/disk.9")] == ["-", "-"]
    assert items[("dev", f"{tmp_path}/dev0")] == [str(tmp_path / "dev0")]
    assert items[("sum", f"{vmdir}/disk.0")] == [sha(data)]
    assert items[("file", f"{vmdir}/checkpoint")] == [sha(b"ckpt")]
    assert items[("exists", str(vmdir))] == ["1"] and items[("exists", f"{tmp_path}/nope")] == ["0"]
    assert items[("isum", "lv-oneimg-x")] == ["-"]  # no such device here: activation tried, no bytes
    assert log.read_text().splitlines() == [f"-asy {VG}/lv-oneimg-x", f"-an {VG}/lv-oneimg-x"]


def test_probe_reports_lvs_failure(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "lvs").write_text("#!/bin/sh\necho '  Volume group \"vg_cloudstorage\" not found' >&2\nexit 5\n")
    (bindir / "lvs").chmod(0o755)
    env = dict(os.environ, PATH=f"{bindir}:{os.environ['PATH']}")
    proc = subprocess.run(["bash", "-c", PROBE, "probe", VG], capture_output=True, env=env, timeout=60,
                          check=False)
    with pytest.raises(Exception, match='lvs failed: Volume group "vg_cloudstorage" not found'):
        parse_probe(proc.stdout.decode())


def test_docs_matrix_table_matches_the_simulator(fake):  # noqa: F811
    """docs/matrix.md's step table lists the calls the simulator really issues."""
    import re

    rows = {}
    for line in (REPO / "docs" / "matrix.md").read_text().splitlines():
        m = re.match(r"\| (\d+) \| ([\w+-]+) \| .* \| `([^`]*)` \|$", line)
        if m:
            rows[m.group(2)] = m.group(3)
    from onesim.matrix import compact

    oned = Oned(DriverRunner(fake.root, conf=fake.conf), SavingHypervisor(), hosts=["node1", "node2"],
                fe_host="fe", fe_dir=fake.tmp / "fe")
    results = run(Matrix(oned, ["node1", "node2"], fake.tmp / "work", seed=3), out=io.StringIO())
    assert rows == {r.step.name: compact([c.action for c in r.calls]) or "-" for r in results}


@pytest.mark.parametrize("name", [s.name for s in Matrix(
    Oned(None, hosts=["node1", "node2"]), ["node1", "node2"], "/nonexistent").steps])
def test_each_step_runs_alone_with_what_it_needs(name, tmp_path):
    """--steps NAME pulls in every step whose objects NAME uses (dry run, no driver)."""
    from onesim.__main__ import DryRunDriver

    oned = Oned(DryRunDriver(), SavingHypervisor(), hosts=["node1", "node2"], fe_host="fe", fe_dir=tmp_path / "fe")
    out = io.StringIO()
    results = run(Matrix(oned, ["node1", "node2"], tmp_path / "work", seed=5), [name], out=out)
    assert all(r.ok for r in results), out.getvalue()
