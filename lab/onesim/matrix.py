# SPDX-License-Identifier: Apache-2.0
"""The seed's test matrix (README of the 2012 driver) as scenarios for :class:`Oned`.

One VM (A) walks instantiate → reboot → livemigrate → suspend → (snapshot) → resume →
migrate → stop → resume → saveas + shutdown; VM B covers resubmit and cancel; VMs C
and D share a new persistent datablock (shutdown, persistence, delete). Two workers:
every move goes to "the other node". After each step the caller's checker compares the
real state with the model; the runner prints a table and ``N passed, N failed``.
"""
from __future__ import annotations

import dataclasses
import os
import random
import sys
import time
import traceback
from pathlib import Path

from .driver import DriverError
from .model import State

MIB = 1024 * 1024


@dataclasses.dataclass
class Step:
    name: str
    doc: str
    fn: object  # fn(ctx) -> None
    needs: tuple = ()
    verify_images: tuple = ()  # image names whose bytes the checker reads after the step
    always: bool = False  # run even when a needed step failed (clean-up)


@dataclasses.dataclass
class StepResult:
    step: Step
    status: str  # PASS / FAIL / SKIP
    calls: list
    seconds: float
    problems: list

    @property
    def ok(self) -> bool:
        return self.status == "PASS"


def bootable_image(size_mb=8, seed=1) -> bytes:
    """A small raw "bootable" disk: an MBR whose code halts (cli; hlt; jmp), 0x55AA,
    random data with a zero hole in the middle (sparse copies must still read back zeros)."""
    rnd = random.Random(seed)
    size = size_mb * MIB
    img = bytearray(size)
    img[0:4] = b"\xfa\xf4\xeb\xfd"
    img[446:462] = bytes([0x80, 0, 2, 0, 0x83, 0, 0, 0]) + (2048).to_bytes(4, "little") + \
        (size // 512 - 2048).to_bytes(4, "little")
    img[510:512] = b"\x55\xaa"
    quarter = size // 4
    img[512:quarter] = rnd.randbytes(quarter - 512)
    img[3 * quarter:] = rnd.randbytes(size - 3 * quarter)
    return bytes(img)


class Matrix:
    """The steps and the objects they share. ``oned`` is an :class:`Oned` with two or more hosts."""

    def __init__(self, oned, nodes, work_dir, image_mb=8, datablock_mb=8, write_kb=64, seed=None):
        if len(nodes) < 2:
            raise ValueError("the matrix needs two workers")
        self.oned = oned
        self.nodes = list(nodes)
        self.work_dir = Path(work_dir)
        self.image_mb = image_mb
        self.datablock_mb = datablock_mb
        self.write_size = write_kb * 1024
        self.rnd = random.Random(seed)
        self.images = {}
        self.vms = {}
        self.steps = self._steps()

    # -- helpers ------------------------------------------------------------
    def other(self, host):
        return self.nodes[1] if host == self.nodes[0] else self.nodes[0]

    def write(self, vm, disk_id=0):
        """The guest writes a random 64 KiB block at a random 1 MiB-aligned place of its disk."""
        disk = vm.disk(disk_id)
        size = len(disk.content) if disk.content is not None else disk.size_mb * MIB
        offset = self.rnd.randrange(0, size // MIB) * MIB
        self.oned.guest_write(vm, disk_id, offset, self.rnd.randbytes(self.write_size))

    # -- the steps ----------------------------------------------------------
    def _steps(self):
        n1, n2 = self.nodes[0], self.nodes[1]
        o = self.oned

        def import_image(ctx):
            path = self.work_dir / "ttylinux.img"
            path.parent.mkdir(parents=True, exist_ok=True)
            data = bootable_image(self.image_mb)
            path.write_bytes(data)
            self.images["ttylinux"] = o.image_create("ttylinux", path=str(path), content=bytearray(data))

        def instantiate(ctx):
            vm = o.instantiate("vm-a", [{"image": self.images["ttylinux"]}], n1,
                               context={"HOSTNAME": "vm-a", "NETWORK": "YES"})
            self.vms["a"] = vm
            self.write(vm)

        def reboot(ctx):
            o.reboot(self.vms["a"])
            self.write(self.vms["a"])

        def livemigrate(ctx):
            vm = self.vms["a"]
            o.live_migrate(vm, self.other(vm.host))
            self.write(vm)

        def suspend(ctx):
            o.suspend(self.vms["a"])

        def snapshot(ctx):
            vm = self.vms["a"]
            content = bytearray(vm.disk(0).content)
            self.images["snap-a"] = o.image_create("snap-a", path=f"lvm://{vm.id}/0", content=content)

        def resume(ctx):
            o.resume(self.vms["a"])
            self.write(self.vms["a"])

        def migrate(ctx):
            vm = self.vms["a"]
            o.migrate(vm, self.other(vm.host))
            self.write(vm)

        def stop(ctx):
            o.stop(self.vms["a"])

        def resume_stopped(ctx):
            vm = self.vms["a"]
            o.resume(vm, self.other(vm.host))
            self.write(vm)

        def saveas_shutdown(ctx):
            vm = self.vms["a"]
            o.poweroff(vm)
            self.images["saved-a"] = o.disk_saveas(vm, 0, "saved-a")
            o.terminate(vm)

        def resubmit(ctx):
            vm = o.instantiate("vm-b", [{"image": self.images["ttylinux"]}, {"type": "SWAP", "size_mb": 8}], n2)
            self.vms["b"] = vm
            self.write(vm)
            o.resubmit(vm)

        def cancel(ctx):
            o.terminate(self.vms["b"], hard=True)

        def datablock(ctx):
            self.images["data"] = o.image_create("data", size_mb=self.datablock_mb, type="DATABLOCK",
                                                 persistent=True,
                                                 content=bytearray(self.datablock_mb * MIB))

        def shutdown(ctx):
            vm = o.instantiate("vm-c", [{"image": self.images["data"]}], n2)
            self.vms["c"] = vm
            self.write(vm)
            self.write(vm)
            o.terminate(vm)

        def persistence(ctx):
            vm = o.instantiate("vm-d", [{"image": self.images["ttylinux"]}, {"image": self.images["data"]}], n1)
            self.vms["d"] = vm

        def delete(ctx):
            o.delete(self.vms["d"])

        def cleanup(ctx):
            errors = []
            for vm in o.vms.values():
                if vm.state not in (State.DONE, State.PENDING):
                    try:
                        o.delete(vm)
                    except Exception as err:  # keep cleaning
                        errors.append(str(err))
            for img in o.images.values():
                if img.state in ("READY", "ERROR") and img.source:
                    try:
                        o.image_delete(img)
                    except Exception as err:
                        errors.append(str(err))
            if errors:
                raise RuntimeError("; ".join(errors))

        return [
            Step("import", "import of a small bootable image from a file (STAT, CP)", import_image,
                 verify_images=("ttylinux",)),
            Step("instantiate", "VM A on node 1 from the image, with context; the guest writes",
                 instantiate, ("import",)),
            Step("reboot", "A reboots (no transfer); disk still open and intact", reboot, ("instantiate",)),
            Step("livemigrate", "A live to the other node (PREMIGRATE, POSTMIGRATE)", livemigrate, ("reboot",)),
            Step("suspend", "A suspended: checkpoint on GFS2, disk closed (no transfer)", suspend,
                 ("livemigrate",)),
            Step("snapshot", "image from the suspended A's disk: lvm://VMID/0 as datastore CP source",
                 snapshot, ("suspend",), verify_images=("snap-a",)),
            Step("resume", "A resumed from suspend (CONTEXT)", resume, ("suspend",)),
            Step("migrate", "A cold-migrated to the other node (MV disk, MV dir, CONTEXT)", migrate, ("resume",)),
            Step("stop", "A stopped: disk and dir moved to the front-end (MV, MV)", stop, ("migrate",)),
            Step("resume-stopped", "A resumed from stop on the other node (MV, MV, CONTEXT)",
                 resume_stopped, ("stop",)),
            Step("saveas+shutdown", "A powered off, disk-saveas (MKFS, CPDS), terminated (DELETE, DELETE)",
                 saveas_shutdown, ("resume-stopped",), verify_images=("saved-a",)),
            Step("resubmit", "VM B (image + swap) on node 2 writes, recover --recreate: fresh disks",
                 resubmit, ("import",)),
            Step("cancel", "B terminate --hard (DELETE each disk, DELETE dir)", cancel, ("resubmit",)),
            Step("datablock", "new persistent datablock volume (MKFS); reads back zeros", datablock,
                 verify_images=("data",)),
            Step("shutdown", "VM C on node 2 with the datablock (LN) writes, terminate (MVDS, DELETE)",
                 shutdown, ("datablock",), verify_images=("data",)),
            Step("persistence", "VM D on node 1: image clone + the datablock (LN) holds C's writes",
                 persistence, ("shutdown", "import")),
            Step("delete", "D recover --delete (DELETE each disk, DELETE dir); the datablock survives",
                 delete, ("persistence",), verify_images=("data",)),
            Step("cleanup", "delete every image (RM); nothing left behind", cleanup, always=True),
        ]

    def select(self, names=None):
        """The steps to run: ``names`` plus everything they need, in matrix order."""
        if not names:
            return list(self.steps)
        by_name = {s.name: s for s in self.steps}
        unknown = [n for n in names if n not in by_name]
        if unknown:
            raise ValueError(f"unknown steps: {', '.join(unknown)} (known: {', '.join(by_name)})")
        wanted = set()

        def add(name):
            if name not in wanted:
                wanted.add(name)
                for need in by_name[name].needs:
                    add(need)
        for name in names:
            add(name)
        wanted.add("cleanup")
        return [s for s in self.steps if s.name in wanted]


def run(matrix: Matrix, steps=None, checker=None, final_check=None, out=None, verbose=False):
    """Run the steps; after each, ``checker(step) -> [problems]``. Prints the table as it goes."""
    out = out or sys.stdout
    driver = matrix.oned.driver
    results: list[StepResult] = []
    failed: set[str] = set()
    steps = matrix.select(steps) if steps is None or isinstance(steps[0], str) else steps
    _row(out, "#", "step", "driver calls", "result", "seconds")
    t_all = time.monotonic()
    for index, step in enumerate(steps, 1):
        blocked = [n for n in step.needs if n in failed]
        if blocked and not step.always:
            failed.add(step.name)
            res = StepResult(step, "SKIP", [], 0.0, [f"not run: {', '.join(blocked)} failed"])
            results.append(res)
            _print_result(out, index, res, verbose)
            continue
        mark = len(driver.calls)
        t0 = time.monotonic()
        problems = []
        try:
            step.fn(matrix)
        except DriverError as err:
            problems.append(str(err))
        except Exception as err:  # the simulator or the hypervisor side
            problems.append(f"{type(err).__name__}: {err}")
            if verbose and not isinstance(err, RuntimeError):
                frame = traceback.extract_tb(err.__traceback__)[-1]
                problems.append(f"(raised at {os.path.basename(frame.filename)}:{frame.lineno})")
        calls = driver.calls[mark:]
        if checker is not None:
            try:
                problems += checker(step)
            except Exception as err:
                problems.append(f"check failed: {type(err).__name__}: {err}")
        if step.always and final_check is not None:
            try:
                problems += final_check()
            except Exception as err:
                problems.append(f"final check failed: {type(err).__name__}: {err}")
        res = StepResult(step, "FAIL" if problems else "PASS", calls, time.monotonic() - t0, problems)
        if problems:
            failed.add(step.name)
        results.append(res)
        _print_result(out, index, res, verbose)
    passed = sum(r.ok for r in results)
    ncalls = sum(len(r.calls) for r in results)
    skipped = sum(r.status == "SKIP" for r in results)
    out.write(f"\n{ncalls} driver calls, {time.monotonic() - t_all:.0f} s"
              + (f"; {skipped} steps not run after a failure" if skipped else "") + "\n")
    out.write(f"{passed} passed, {len(results) - passed} failed\n")
    out.flush()
    return results


def compact(actions) -> str:
    """``delete delete delete`` -> ``delete×3``."""
    out = []
    for action in actions:
        if out and out[-1][0] == action:
            out[-1][1] += 1
        else:
            out.append([action, 1])
    return " ".join(a if n == 1 else f"{a}×{n}" for a, n in out)


def _row(out, num, name, calls, result, seconds):
    out.write(f"{num:>2}  {name:<16} {calls:<44} {result:<6} {seconds:>7}\n")
    out.flush()


def _print_result(out, index, res, verbose):
    names = compact([c.action for c in res.calls]) or "-"
    if len(names) > 44:
        names = names[:41] + "..."
    _row(out, str(index), res.step.name, names, res.status, f"{res.seconds:.1f}")
    for problem in res.problems:
        out.write(f"      ! {problem}\n")
    if verbose:
        for call in res.calls:
            out.write(f"      $ {' '.join([os.path.basename(call.argv[0])] + call.argv[1:])}"
                      f"  -> rc {call.rc}, {call.seconds:.1f} s\n")
            if call.stdout.strip():
                out.write(f"        stdout: {call.stdout.strip()[:200]}\n")
            if call.rc != 0 and call.stderr.strip():
                out.write(f"        stderr: {call.stderr.strip()[-300:]}\n")
    out.flush()
