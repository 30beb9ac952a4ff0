# SPDX-License-Identifier: Apache-2.0
"""The lab side of the simulator: plain ssh into the guests.

* :class:`SshTransport` — ssh argv for a node (from the lab's salt-ssh roster).
* :class:`SshHypervisor` — what KVM would do between the transfers: the VM dir
  files, a "running VM" = a process on its host holding every disk open read-write
  (as KVM does), a checkpoint file on GFS2 for suspend/stop, guest writes with
  O_DIRECT (KVM's cache=none).
* :class:`LabChecker` — after each step, the REAL state of every node (``lvs``,
  symlinks, checksums read with O_DIRECT) compared with what oned's model says.
"""
from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import select
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from .model import State
from .oned import image_lv

MIB = 1024 * 1024


class LabError(RuntimeError):
    """The hypervisor side of a step failed (not a driver call)."""


class SshTransport:
    """``ssh`` into lab guests. ``nodes``: name → (host, port)."""

    def __init__(self, nodes: dict, key, known_hosts=None, connect_timeout=15, multiplex=True):
        self.nodes = dict(nodes)
        self.key = str(key)
        self.known_hosts = str(known_hosts) if known_hosts else None
        self.connect_timeout = connect_timeout
        # One master connection per node and user (ControlMaster): ~0.1 s per command
        # instead of a full ssh handshake into a TCG guest. close() ends the masters.
        self.control_dir = tempfile.mkdtemp(prefix="onesim-ssh-") if multiplex else None
        self._used: set[tuple[str, str]] = set()

    @classmethod
    def from_roster(cls, roster, known_hosts=None, key=None):
        """Nodes are the roster ids without the ``-root`` twin H3's lab writes."""
        data = yaml.safe_load(Path(roster).read_text()) or {}
        nodes, priv = {}, key
        for name, entry in data.items():
            if name.endswith("-root"):
                continue
            nodes[name] = (entry.get("host", name), int(entry.get("port", 22)))
            priv = priv or entry.get("priv")
        if not nodes:
            raise LabError(f"no nodes in roster {roster}")
        return cls(dict(sorted(nodes.items(), key=lambda kv: _natural(kv[0]))), priv, known_hosts)

    @classmethod
    def from_lab_dir(cls, lab_dir):
        lab_dir = Path(lab_dir)
        known = lab_dir / "ssh" / "known_hosts"
        return cls.from_roster(lab_dir / "salt" / "roster", known if known.exists() else None,
                               key=lab_dir / "ssh" / "id_ed25519")

    def argv(self, node: str, user: str, command: list[str]) -> list[str]:
        host, port = self.nodes[node]
        opts = ["-F", "/dev/null", "-p", str(port), "-i", self.key, "-o", "IdentitiesOnly=yes",
                "-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.connect_timeout}",
                "-o", "ServerAliveInterval=15", "-o", "LogLevel=ERROR"]
        if self.known_hosts:
            opts += ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
        else:
            opts += ["-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no"]
        if self.control_dir:
            opts += self._mux_opts()
            self._used.add((node, user))
        # ssh hands the remote shell one string: quote every word.
        return ["ssh", *opts, f"{user}@{host}", "--", shlex.join([str(c) for c in command])]

    def _mux_opts(self):
        return ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_dir}/%C",
                "-o", "ControlPersist=900"]

    def close(self):
        """End the master connections this transport started (``ssh -O exit``)."""
        if not self.control_dir:
            return
        for node, user in sorted(self._used):
            host, port = self.nodes[node]
            subprocess.run(["ssh", "-F", "/dev/null", "-p", str(port), *self._mux_opts(), "-O", "exit",
                            f"{user}@{host}"], capture_output=True, timeout=30, check=False)
        self._used.clear()
        shutil.rmtree(self.control_dir, ignore_errors=True)
        self.control_dir = None

    def run(self, node, command, user="root", input=None, timeout=300) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(node, user, command), input=input, capture_output=True,
                              timeout=timeout, check=False)

    def spawn(self, node, command, user="root") -> subprocess.Popen:
        return subprocess.Popen(self.argv(node, user, command), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _natural(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


# A running VM: open every disk read-write like KVM, say "ready <pid>", wait for stdin EOF.
HOLDER = r'''
mkdir -p "$1" && cd "$1" || exit 2
if [ -n "$2" ]; then printf '%s\n' "$2" > deployment.0 || exit 2; fi
shift 2
for f; do
  [ -b "$f" ] || { echo "$PWD/$f is not a block device ($(ls -l "$f" 2>&1))" >&2; exit 3; }
  exec {fd}<>"$f" || { echo "cannot open $PWD/$f read-write" >&2; exit 4; }
done
echo "ready $$"
read -r _
exit 0
'''


class SshHypervisor:
    """The VMM driver's part, done with plain ssh as ``user`` (oneadmin, as KVM runs)."""

    def __init__(self, transport: SshTransport, oned=None, user="oneadmin", checkpoint_size=65536,
                 ready_timeout=300):
        self.t = transport
        self.oned = oned  # set by the caller after Oned() is built (system_dir)
        self.user = user
        self.checkpoint_size = checkpoint_size
        self.ready_timeout = ready_timeout
        self.holders: dict[int, tuple[str, subprocess.Popen, str]] = {}

    def _dir(self, vm) -> str:
        return self.oned.system_dir(vm)

    def _run(self, node, command, input=None, what="ssh"):
        proc = self.t.run(node, command, user=self.user, input=input)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise LabError(f"{what} on {node} failed (rc {proc.returncode}): {err[-1] if err else ''}")
        return proc

    def _hold(self, vm, host, deployment=""):
        disks = [f"disk.{d.disk_id}" for d in vm.disks]
        proc = self.t.spawn(host, ["bash", "-c", HOLDER, "holder", self._dir(vm), deployment, *disks],
                            user=self.user)
        ready, _, _ = select.select([proc.stdout], [], [], self.ready_timeout)
        line = proc.stdout.readline().decode().strip() if ready else ""
        if not line.startswith("ready "):
            proc.kill()
            _, err = proc.communicate(timeout=30)
            msg = err.decode(errors="replace").strip().splitlines()
            raise LabError(f"VM {vm.id} cannot start on {host}: {msg[-1] if msg else 'no answer'}")
        self.holders[vm.id] = (host, proc, line.split()[1])

    def _release(self, vm):
        host, proc, pid = self.holders.pop(vm.id, (None, None, None))
        if proc is None:
            return
        proc.stdin.close()  # EOF: the remote holder exits and closes the disks
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.t.run(host, ["kill", pid], user=self.user, timeout=60)
            proc.kill()
            proc.wait(timeout=30)

    def deploy(self, vm, host):
        # one_vmm_exec deploy: mkdir -p vm_dir, the deployment file, boot (one ssh).
        self._hold(vm, host, deployment=vm.to_xml())

    def shutdown(self, vm):
        self._release(vm)

    cancel = shutdown

    def reboot(self, vm):
        host, proc, _ = self.holders.get(vm.id, (None, None, None))
        if proc is None or proc.poll() is not None:
            raise LabError(f"VM {vm.id} is not running on {host}")

    def save(self, vm) -> bytes:
        data = os.urandom(self.checkpoint_size)
        self._run(vm.host, ["sh", "-c", 'cat > "$1/checkpoint"', "save", self._dir(vm)], input=data,
                  what="save checkpoint")
        self._release(vm)
        return data

    def restore(self, vm, host):
        proc = self._run(host, ["sha256sum", f"{self._dir(vm)}/checkpoint"], what="read checkpoint")
        got = proc.stdout.decode().split()[0] if proc.stdout else ""
        if vm.checkpoint is not None and got != hashlib.sha256(vm.checkpoint).hexdigest():
            raise LabError(f"VM {vm.id}: checkpoint on {host} differs from the one saved")
        self._hold(vm, host)

    def migrate(self, vm, src, dst):
        # qemu's incoming side opens the disks on dst while src still has them open,
        # then the source process ends.
        old = self.holders.pop(vm.id)
        try:
            self._hold(vm, dst)
        except Exception:
            self.holders[vm.id] = old
            raise
        new = self.holders.pop(vm.id)
        self.holders[vm.id] = old
        self._release(vm)
        self.holders[vm.id] = new

    def write(self, vm, disk_id, offset, data):
        if offset % 4096 or len(data) % 4096:
            raise ValueError("guest writes must be 4 KiB aligned (O_DIRECT)")
        self._run(vm.host, ["dd", f"of={self._dir(vm)}/disk.{disk_id}", f"bs={len(data)}", "count=1",
                            f"seek={offset}", "oflag=seek_bytes,direct", "iflag=fullblock",
                            "conv=notrunc,fsync", "status=none"], input=data, what="guest write")

    def close(self):
        for vmid in list(self.holders):
            host, proc, pid = self.holders.pop(vmid)
            if proc.poll() is None:
                proc.stdin.close()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


# One probe per node: lvs JSON, then one line per requested item (tab-separated).
PROBE = r'''
vg=$1; shift
set -o pipefail
# closing a disk opened for writing makes udev probe it (watch rule): let that finish
udevadm settle --timeout=20 >/dev/null 2>&1
err=$(mktemp) || exit 1
echo "@lvs"
lvs --reportformat json --units b --nosuffix -o lv_name,lv_attr,lv_size "$vg" 2>"$err" || echo '{"error":"lvs failed"}'
echo "@lvserr"
tail -n 3 "$err"; rm -f "$err"
echo "@items"
for spec; do
  kind=${spec%%:*}; rest=${spec#*:}
  case $kind in
  link)
    if t=$(readlink -- "$rest"); then printf 'link\t%s\t%s\t%s\n' "$rest" "$t" "$(readlink -f -- "$rest")"
    else printf 'link\t%s\t-\t-\n' "$rest"; fi ;;
  dev) printf 'dev\t%s\t%s\n' "$rest" "$(readlink -f -- "$rest" 2>/dev/null || echo -)" ;;
  sum)
    n=${rest%%:*}; p=${rest#*:}
    if s=$(dd if="$p" bs=1M count="$n" iflag=direct status=none | sha256sum); then printf 'sum\t%s\t%s\n' "$p" "${s%% *}"
    else printf 'sum\t%s\t-\n' "$p"; fi ;;
  isum)
    n=${rest%%:*}; lv=${rest#*:}; act=0
    if [ ! -b "/dev/$vg/$lv" ]; then
      lvchange -asy "$vg/$lv" >/dev/null 2>&1 || lvchange -aey "$vg/$lv" >/dev/null 2>&1 || { printf 'isum\t%s\t-\n' "$lv"; continue; }
      act=1
    fi
    if s=$(dd if="/dev/$vg/$lv" bs=1M count="$n" iflag=direct status=none | sha256sum); then printf 'isum\t%s\t%s\n' "$lv" "${s%% *}"
    else printf 'isum\t%s\t-\n' "$lv"; fi
    [ $act = 1 ] && lvchange -an "$vg/$lv" >/dev/null 2>&1 ;;
  file)
    if s=$(sha256sum < "$rest" 2>/dev/null); then printf 'file\t%s\t%s\n' "$rest" "${s%% *}"
    else printf 'file\t%s\t-\n' "$rest"; fi ;;
  exists) if [ -e "$rest" ] || [ -L "$rest" ]; then printf 'exists\t%s\t1\n' "$rest"; else printf 'exists\t%s\t0\n' "$rest"; fi ;;
  esac
done
'''


def parse_probe(text: str) -> tuple[dict, dict]:
    """``({lv_name: attr}, {(kind, key): [values]})`` from a probe's output."""
    head, _, items_text = text.partition("@items\n")
    lvs_text, _, err_text = head.split("@lvs\n", 1)[-1].partition("@lvserr\n")
    try:
        report = json.loads(lvs_text)
    except json.JSONDecodeError:
        report = {"error": lvs_text.strip()}
    if "error" in report:
        raise LabError(f"lvs failed: {err_text.strip() or report['error']}")
    lvs = {}
    for rep in report.get("report", []):
        for lv in rep.get("lv", []):
            lvs[lv["lv_name"]] = lv["lv_attr"]
    items = {}
    for line in items_text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3:
            items[(parts[0], parts[1])] = parts[2:]
    return lvs, items


def _sha(content) -> str:
    return hashlib.sha256(bytes(content)).hexdigest()


class LabChecker:
    """Compares the nodes' real state with oned's model after a step.

    Rules (per VM state): RUNNING on H — every disk LV exists, is active and open
    on H only, ``disk.i`` on H resolves to it, its bytes are the expected ones;
    SUSPENDED/POWEROFF — LVs exist, nothing open, symlinks present, the checkpoint
    is intact; STOPPED — LVs exist, active nowhere; DONE — no ``lv-one-<id>-*``
    anywhere, no VM dir. Images: READY → LV exists, not open, not active unless a
    running VM uses it (bytes checked when the step asks); DELETED → LV gone.
    """

    def __init__(self, transport: SshTransport, oned, vg="vg_cloudstorage", user="root", parallel=True):
        self.t = transport
        self.oned = oned
        self.vg = vg
        self.user = user
        self.parallel = parallel

    def probe(self, node: str, specs: list[str]) -> tuple[dict, dict]:
        proc = self.t.run(node, ["bash", "-c", PROBE, "probe", self.vg, *specs], user=self.user)
        if proc.returncode != 0:
            raise LabError(f"probe on {node} failed (rc {proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace').strip()[-300:]}")
        return parse_probe(proc.stdout.decode(errors="replace"))

    def disk_lv(self, vm, disk) -> str | None:
        if disk.persistent or (disk.image_id is not None and not disk.clone):
            return image_lv(disk.source)
        return f"lv-one-{vm.id}-{disk.disk_id}"

    def __call__(self, step=None) -> list[str]:
        nodes = list(self.t.nodes)
        specs = {n: [] for n in nodes}
        checks = []  # callables (lvs_by_node, items_by_node) -> [problems]
        oned = self.oned
        verify = set(getattr(step, "verify_images", ()) or ())
        for vm in oned.vms.values():
            if vm.state in (State.PENDING, State.FAILURE) or vm.ds_id is None:
                continue
            vmdir = oned.system_dir(vm)
            if vm.state is State.DONE:
                for n in nodes:
                    specs[n].append(f"exists:{vmdir}")
                checks.append(self._check_done(vm, vmdir))
                continue
            host = vm.host
            for disk in vm.disks:
                lv = self.disk_lv(vm, disk)
                if vm.state is not State.STOPPED:
                    specs[host] += [f"link:{vmdir}/disk.{disk.disk_id}", f"dev:/dev/{self.vg}/{lv}"]
                if vm.state is State.RUNNING and disk.content is not None:
                    specs[host].append(f"sum:{len(disk.content) // MIB}:{vmdir}/disk.{disk.disk_id}")
            if vm.state is State.SUSPENDED and vm.checkpoint is not None:
                specs[host].append(f"file:{vmdir}/checkpoint")
            checks.append(self._check_vm(vm, vmdir))
        in_use = {self.disk_lv(vm, d) for vm in oned.vms.values()
                  if vm.state in (State.RUNNING,) for d in vm.disks if d.persistent}
        for img in oned.images.values():
            lv = image_lv(img.source)
            if img.state not in ("READY", "DELETED") or lv is None:
                continue
            if img.state == "READY" and (img.id in verify or img.name in verify) and img.content is not None:
                specs[nodes[0]].append(f"isum:{len(img.content) // MIB}:{lv}")
            checks.append(self._check_image(img, lv, lv in in_use))
        results = self._probe_all(specs)
        lvs = {n: r[0] for n, r in results.items()}
        items = {n: r[1] for n, r in results.items()}
        problems = []
        for check in checks:
            problems += check(lvs, items)
        return problems

    def leftovers(self, vm_ids, image_lvs) -> list[str]:
        """LVs of these VMs/images still in the VG (the end of the matrix: nothing left behind)."""
        lvs, _ = self.probe(next(iter(self.t.nodes)), [])
        pat = re.compile(r"^lv-one-(\d+)-\d+(-s\d+)?$")
        bad = [n for n in lvs if (m := pat.match(n)) and int(m.group(1)) in set(vm_ids)]
        bad += [n for n in lvs if n in set(image_lvs)]
        return sorted(bad)

    def _probe_all(self, specs):
        if not self.parallel:
            return {n: self.probe(n, s) for n, s in specs.items()}
        with concurrent.futures.ThreadPoolExecutor(len(specs)) as pool:
            futures = {n: pool.submit(self.probe, n, s) for n, s in specs.items()}
            return {n: f.result() for n, f in futures.items()}

    def _check_vm(self, vm, vmdir):
        def check(lvs, items):
            out = []
            host = vm.host
            for disk in vm.disks:
                lv = self.disk_lv(vm, disk)
                where = f"VM {vm.id} disk.{disk.disk_id} ({lv})"
                if lv is None:
                    out.append(f"{where}: no LV name in SOURCE {disk.source!r}")
                    continue
                attrs = {n: lvs[n].get(lv) for n in lvs}
                if not any(attrs.values()):
                    out.append(f"{where}: LV missing")
                    continue
                active = sorted(n for n, a in attrs.items() if a and a[4] == "a")
                opened = sorted(n for n, a in attrs.items() if a and a[5] == "o")
                if vm.state is State.RUNNING:
                    if active != [host]:
                        out.append(f"{where}: active on {active or 'no node'}, expected only {host}")
                    if opened != [host]:
                        out.append(f"{where}: open on {opened or 'no node'}, expected {host}")
                else:
                    if opened:
                        out.append(f"{where}: still open on {opened} while the VM is {vm.state.value}")
                    if vm.state is State.STOPPED and active:
                        out.append(f"{where}: still active on {active} while the VM is STOPPED")
                if vm.state is not State.STOPPED:
                    link = items[host].get(("link", f"{vmdir}/disk.{disk.disk_id}"))
                    dev = items[host].get(("dev", f"/dev/{self.vg}/{lv}"))
                    if not link or link[0] == "-":
                        out.append(f"{where}: no symlink {vmdir}/disk.{disk.disk_id} on {host}")
                    elif vm.state is State.RUNNING and dev and link[1] != dev[0]:
                        out.append(f"{where}: disk.{disk.disk_id} on {host} -> {link[0]}, not {lv}")
                if vm.state is State.RUNNING and disk.content is not None:
                    got = items[host].get(("sum", f"{vmdir}/disk.{disk.disk_id}"), ["-"])[0]
                    if got != _sha(disk.content):
                        out.append(f"{where}: bytes on {host} differ from what the VM had "
                                   f"(sha256 {got[:12]} != {_sha(disk.content)[:12]})")
            if vm.state is State.SUSPENDED and vm.checkpoint is not None:
                got = items[host].get(("file", f"{vmdir}/checkpoint"), ["-"])[0]
                if got != _sha(vm.checkpoint):
                    out.append(f"VM {vm.id}: checkpoint in {vmdir} on {host} missing or changed")
            return out
        return check

    def _check_done(self, vm, vmdir):
        pat = re.compile(rf"^lv-one-{vm.id}-\d+(-s\d+)?$")

        def check(lvs, items):
            out = []
            left = sorted({lv for n in lvs for lv in lvs[n] if pat.match(lv)})
            if left:
                out.append(f"VM {vm.id} is DONE but its LVs remain: {', '.join(left)}")
            for n in items:
                if items[n].get(("exists", vmdir), ["0"])[0] == "1":
                    out.append(f"VM {vm.id} is DONE but {vmdir} remains on {n}")
            return out
        return check

    def _check_image(self, img, lv, in_use):
        def check(lvs, items):
            attrs = {n: lvs[n].get(lv) for n in lvs}
            where = f"image {img.id} {img.name} ({lv})"
            if img.state == "DELETED":
                return [f"{where}: deleted but the LV remains"] if any(attrs.values()) else []
            if not any(attrs.values()):
                return [f"{where}: LV missing"]
            out = []
            if not in_use:
                opened = sorted(n for n, a in attrs.items() if a and a[5] == "o")
                active = sorted(n for n, a in attrs.items() if a and a[4] == "a")
                if opened:
                    out.append(f"{where}: open on {opened} but no VM uses it")
                if active:
                    out.append(f"{where}: left active on {active}")
            for n in items:
                got = items[n].get(("isum", lv))
                if got is not None and img.content is not None:
                    if got[0] != _sha(img.content):
                        out.append(f"{where}: bytes differ from the expected ones "
                                   f"(sha256 {got[0][:12]} != {_sha(img.content)[:12]})")
            return out
        return check


def wait_ready(transport: SshTransport, timeout=180) -> list[str]:
    """Nodes that do not answer ``true`` over ssh within ``timeout`` (a busy TCG guest
    can take a minute for one ssh handshake)."""
    deadline = time.monotonic() + timeout

    def answers(node):
        try:
            return transport.run(node, ["true"], timeout=max(10, deadline - time.monotonic())).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    missing = list(transport.nodes)
    while missing and time.monotonic() < deadline:
        missing = [n for n in missing if not answers(n)]
        if missing:
            time.sleep(2)
    return missing
