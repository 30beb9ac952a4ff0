"""Lab tier: the qemu/TCG two-worker SAN cluster of ``lab/lab.sh``.

The session fixture ``lab`` brings the lab up once for all lab tests -- ``lab.sh build``,
``lab.sh up 2``, ``lab.sh provision`` (the formula's highstate) -- and takes it down at the end of the session.  A lab that cannot come up
(qemu missing, boot timeout, provisioning error) FAILS the tests that use it, with the
tail of the lab's output; it is never skipped.

``LAB_KEEP=1`` leaves the lab running after the session and reuses a running lab when it
is healthy (every node answers ssh and has GFS2 at /var/lib/one): handy while developing.
``LAB_DIR`` / ``LAB_PORT_BASE`` choose the lab (see docs/lab.md).

    lab.nodes                          ['node1', 'node2']
    lab.ssh('node1', 'lvs', user='oneadmin')  -> CompletedProcess (plain ssh, text)
    lab.salt_ssh('node1', 'gfs2clvm.lv_info', 'gfs2')  -> (rc, data, stderr)
    lab.roster, lab.saltfile, lab.dir
"""

import json
import os
import shlex
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB_SH = REPO / "lab" / "lab.sh"
SALT_SSH = os.environ.get("SALT_SSH", str(REPO / ".venv" / "bin" / "salt-ssh"))
NODES = 2
VG = "vg_cloudstorage"
MOUNTPOINT = "/var/lib/one"


class LabError(Exception):
    """The lab could not be brought up or used."""


class Lab:
    """Handle on a running lab (paths, plain ssh, salt-ssh)."""

    def __init__(self, lab_dir, env):
        self.dir = Path(lab_dir)
        self.env = env
        self.nodes = [f"node{i}" for i in range(1, NODES + 1)]
        self.saltfile = self.dir / "Saltfile"
        self.roster = self.dir / "salt" / "roster"
        self.key = self.dir / "ssh" / "id_ed25519"
        self.known_hosts = self.dir / "ssh" / "known_hosts"
        self.vg = VG
        self.mountpoint = MOUNTPOINT
        self.timings = {}

    @property
    def driver_saltfile(self):
        """The driver's salt-ssh set-up (modules in module_dirs on the workers, nothing
        shipped per call), written by ``lab.sh up``; the provisioning one otherwise."""
        own = self.dir / "Saltfile.driver"
        return own if own.exists() else self.saltfile

    def monitor(self, node, command, timeout=30):
        """Run one HMP command on ``node``'s QEMU monitor (``vms/NODE.mon``, a unix
        socket lab.sh gives every guest) and return its reply: the host's hand on the
        guest's network cable, independent of anything running in the guest."""
        path = self.dir / "vms" / f"{node}.mon"
        if not path.is_socket():
            raise LabError(f"{node} has no QEMU monitor at {path}: "
                           "a lab booted by an older lab.sh? (lab.sh down; lab.sh up)")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            _read_prompt(sock)
            sock.sendall(command.encode() + b"\n")
            reply = _read_prompt(sock)
        # the reply starts with the echoed command line (with terminal escapes)
        return reply.split("\n", 1)[1].strip() if "\n" in reply else ""

    # -- lab.sh ----------------------------------------------------------------
    def lab_sh(self, *args, timeout=900):
        """Run ``lab/lab.sh ARGS``; raise LabError with its output on failure."""
        t0 = time.monotonic()
        try:
            proc = subprocess.run(
                ["bash", str(LAB_SH), *args],
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            raise LabError(f"lab.sh {' '.join(args)}: no answer after {timeout}s") from err
        self.timings[" ".join(args)] = round(time.monotonic() - t0, 1)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            raise LabError(f"lab.sh {' '.join(args)} failed (rc={proc.returncode}):\n{tail}")
        return proc

    # -- plain ssh -------------------------------------------------------------
    def ssh_argv(self, node, user="root"):
        port = (self.dir / "vms" / f"{node}.port").read_text().strip()
        return [
            "ssh", "-F", "/dev/null", "-p", port, "-i", str(self.key),
            "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=15",
            "-o", "LogLevel=ERROR", "-o", "ControlMaster=auto",
            "-o", f"ControlPath={self.dir / 'ssh' / 'cm'}/%C", "-o", "ControlPersist=300",
            f"{user}@127.0.0.1",
        ]  # fmt: skip

    def ssh(self, node, cmd, user="root", timeout=300, check=False, input=None):
        """Run ``cmd`` (a remote shell command string, or an argv list that is quoted
        for the remote shell) on ``node`` as ``user``; return the CompletedProcess."""
        if not isinstance(cmd, str):
            cmd = shlex.join(cmd)
        proc = subprocess.run(
            [*self.ssh_argv(node, user), cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{user}@{node}: {cmd!r} -> rc {proc.returncode}\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def out(self, node, cmd, user="root"):
        """stdout (stripped) of a command that must succeed."""
        return self.ssh(node, cmd, user=user, check=True).stdout.strip()

    # -- salt-ssh ----------------------------------------------------------------
    def salt_ssh(self, target, fun, *args, timeout=600, **kwargs):
        """Run the host's real salt-ssh with the lab's Saltfile and ``--out json``.

        ``target`` is a roster name (``node1`` = oneadmin, ``node1-root`` = root) or a
        list of names (``-L``).  Positional args and kwargs are passed on the command
        line; non-strings are JSON-encoded (salt parses them as YAML).  Returns
        ``(rc, data, stderr)``: for a single target ``data`` is that target's return
        value, for a list the whole ``{target: return}`` dict; None if the output is
        not JSON.
        """

        def enc(value):
            return value if isinstance(value, str) else json.dumps(value)

        argv = [SALT_SSH, "--saltfile", str(self.saltfile), "--out", "json", "--no-color"]
        if isinstance(target, (list, tuple)):
            argv += ["-L", ",".join(target)]
        else:
            argv.append(target)
        argv.append(fun)
        argv += [enc(a) for a in args]
        argv += [f"{k}={enc(v)}" for k, v in kwargs.items()]
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.dir
        )
        data = _parse_json_stream(proc.stdout)
        if isinstance(data, dict) and isinstance(target, str) and target in data:
            data = data[target]
        return proc.returncode, data, proc.stderr

    # -- health ------------------------------------------------------------------
    def healthy(self):
        """Every node answers ssh and has GFS2 mounted at the mountpoint."""
        for node in self.nodes:
            if not (self.dir / "vms" / f"{node}.port").exists():
                return False
            try:
                proc = self.ssh(node, f"grep -q ' {MOUNTPOINT} gfs2 ' /proc/mounts", timeout=30)
            except subprocess.TimeoutExpired:
                return False
            if proc.returncode != 0:
                return False
        return True


def _read_prompt(sock):
    """Bytes from an HMP monitor up to its next ``(qemu)`` prompt, as text."""
    buf = b""
    while not buf.endswith(b"(qemu) "):
        chunk = sock.recv(4096)
        if not chunk:
            raise LabError(f"QEMU monitor closed the connection: {buf[-200:]!r}")
        buf += chunk
    return buf[: -len(b"(qemu) ")].decode(errors="replace").replace("\r", "")


def _parse_json_stream(text):
    """salt-ssh ``--out json`` prints one JSON document per target: merge them into one
    dict (a single non-dict document is returned as is); None if it is not JSON."""
    decoder = json.JSONDecoder()
    docs, pos, text = [], 0, text.strip()
    while pos < len(text):
        try:
            doc, end = decoder.raw_decode(text, pos)
        except ValueError:
            return None
        docs.append(doc)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    if not docs:
        return None
    if len(docs) == 1:
        return docs[0]
    if not all(isinstance(doc, dict) for doc in docs):
        return None
    merged = {}
    for doc in docs:
        merged.update(doc)
    return merged


def _lab_env():
    env = dict(os.environ)
    env.setdefault("LAB_DIR", str(REPO / ".lab"))
    if env.get("LAB_KEEP") != "1":
        env.setdefault("LAB_TIMEOUT", "5400")  # qemu's hard lifetime if pytest dies: CI's 90 min
    return env


_FAILED = []  # why the lab did not come up: tried once per session, not once per test


@pytest.fixture(scope="session")
def lab():
    if _FAILED:
        pytest.fail(_FAILED[0], pytrace=False)
    env = _lab_env()
    keep = env.get("LAB_KEEP") == "1"
    handle = Lab(env["LAB_DIR"], env)
    started = False
    try:
        if keep and handle.healthy():
            pass  # reuse the running, provisioned lab
        else:
            vms = handle.dir / "vms"
            if vms.is_dir() and any(vms.glob("node*.pid")):
                handle.lab_sh("down", timeout=120)
            handle.lab_sh("build", timeout=300)
            started = True
            handle.lab_sh("up", str(NODES), timeout=600)
            handle.lab_sh("provision", timeout=900)
    except (LabError, OSError, subprocess.SubprocessError) as err:
        if started and not keep:
            try:
                handle.lab_sh("down", timeout=120)
            except LabError:
                pass
        _FAILED.append(f"the lab did not come up: {err}")
        pytest.fail(_FAILED[0], pytrace=False)
    yield handle
    try:
        (handle.dir / "timings.json").write_text(json.dumps(handle.timings, indent=1) + "\n")
    except OSError:
        pass
    if not keep:
        handle.lab_sh("down", timeout=120)


@pytest.fixture(scope="session")
def lab_salt(lab):
    """The lab with the salt thin deployed for oneadmin (the driver's user) on every
    node: one cold salt-ssh call for all nodes in parallel, so tests pay warm calls."""
    targets = list(lab.nodes)
    t0 = time.monotonic()
    rc, data, err = lab.salt_ssh(targets, "test.ping")
    lab.timings["salt-ssh cold test.ping (all nodes, oneadmin)"] = round(time.monotonic() - t0, 1)
    if rc != 0 or not isinstance(data, dict) or not all(data.get(t) is True for t in targets):
        pytest.fail(f"salt-ssh test.ping {targets} failed: rc={rc} data={data} {err[-2000:]}")
    return lab
