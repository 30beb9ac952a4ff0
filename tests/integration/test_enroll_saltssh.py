# SPDX-License-Identifier: Apache-2.0
"""``gfs2clvm-host`` against the real local sshd and salt-ssh (saltssh_env).

The tool gets its own driver set-up (driver config, Saltfile, master config,
roster, known_hosts) next to the session's: the master config is the driver
set-up's (empty file_roots, same cache, so thin.tgz is not rebuilt) with its own
roster and a known_hosts file that does not exist yet.  The roster starts with
one entry (``local-root``'s, at another address) whose minion_opts the new host inherits; every new
host gets a fresh thin_dir, so ``add`` really deploys a thin.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from saltssh_env import REPO, SET_PATH

sys.path.insert(0, str(REPO / "tm_commands" / "lib"))
sys.path.insert(0, str(REPO / "tests" / "unit"))
from formula_render import salt_call  # noqa: E402
from gfs2clvm_driver import DriverError, salt_ssh  # noqa: E402
from gfs2clvm_driver import config as driver_config  # noqa: E402

TOOL = REPO / "tm_commands" / "bin" / "gfs2clvm-host"


class Enroll:
    def __init__(self, saltssh):
        self.saltssh = saltssh
        self.dir = saltssh.base / f"enroll-{uuid.uuid4().hex[:6]}"
        self.etc = self.dir / "etc"
        self.etc.mkdir(parents=True)
        self.roster = self.etc / "roster"
        self.known_hosts = self.dir / "known_hosts"
        master = yaml.safe_load((saltssh.driver_config_dir / "master").read_text())
        master.update(roster_file=str(self.roster), known_hosts_file=str(self.known_hosts))
        (self.etc / "master").write_text(yaml.safe_dump(master))
        self.saltfile = self.dir / "Saltfile"
        self.saltfile.write_text(yaml.safe_dump({"salt-ssh": {"config_dir": str(self.etc), "log_level": "warning"}}))
        template = yaml.safe_load((saltssh.driver_config_dir / "roster").read_text())["local-root"]
        # only a template (never called): another address, so its host key is not w1's
        template["host"] = "template.invalid"
        self.template = template
        self.roster.write_text(yaml.safe_dump({"local-root": template}))
        self.conf = saltssh.driver_conf(self.dir / "gfs2clvm.conf", saltfile=str(self.saltfile), timeout=120)
        self.thin_dirs = []

    def thin_dir(self):
        path = f"/var/tmp/.gfs2clvm-it-enroll-{uuid.uuid4().hex[:8]}"
        self.thin_dirs.append(path)
        return path

    def run(self, *args):
        env = dict(os.environ, GFS2CLVM_CONF=str(self.conf))
        return subprocess.run(
            [sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True, env=env, timeout=300
        )

    def entries(self):
        return yaml.safe_load(self.roster.read_text()) or {}

    def server_key(self):
        return (self.saltssh.base / "ssh_host_ed25519_key.pub").read_text().split()[:2]

    def cleanup(self):
        for path in self.thin_dirs:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def enroll(saltssh):
    env = Enroll(saltssh)
    yield env
    env.cleanup()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _one_error_line(proc):
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), proc.stderr
    return lines[0]


def test_add_of_an_unreachable_host_changes_nothing(enroll):
    before = enroll.roster.read_bytes()
    closed = _free_port()
    proc = enroll.run("add", "w-closed", "--address", "127.0.0.1", "--port", closed, "--user", "root")
    assert proc.returncode == 1
    assert _one_error_line(proc) == (
        f"ERROR: ssh-keyscan found no host key at 127.0.0.1 port {closed} "
        "(is sshd running there? address and port right?)"
    )
    assert enroll.roster.read_bytes() == before
    assert not enroll.known_hosts.exists()


def test_failed_add_restores_roster_and_known_hosts(enroll):
    before = enroll.roster.read_bytes()
    proc = enroll.run(
        "add", "w-nologin", "--address", "127.0.0.1", "--port", enroll.saltssh.port,
        "--user", "gfs2clvm-nosuchuser", "--thin-dir", enroll.thin_dir(),
    )
    assert proc.returncode == 1
    line = _one_error_line(proc)
    assert line.startswith("ERROR: salt-ssh w-nologin test.ping failed: "), line
    assert "Permission denied" in line, line
    assert enroll.roster.read_bytes() == before
    assert not enroll.known_hosts.exists()


def test_fingerprint_mismatch_is_refused(enroll):
    before = enroll.roster.read_bytes()
    proc = enroll.run(
        "add", "w-fp", "--address", "127.0.0.1", "--port", enroll.saltssh.port, "--user", "root",
        "--fingerprint", "SHA256:" + "A" * 43,
    )
    assert proc.returncode == 1
    line = _one_error_line(proc)
    assert line.startswith(
        f"ERROR: no host key of 127.0.0.1 port {enroll.saltssh.port} has fingerprint SHA256:{'A' * 43} (scanned: SHA256:"
    ), line
    assert enroll.roster.read_bytes() == before
    assert not enroll.known_hosts.exists()


def test_add_enrolls_deploys_the_thin_and_shows_the_check(enroll):
    thin = enroll.thin_dir()
    assert not os.path.exists(thin)
    proc = enroll.run(
        "add", "w1", "--address", "127.0.0.1", "--port", enroll.saltssh.port, "--user", "root", "--thin-dir", thin
    )
    # this host has no shared VG: enrolled, but the check reports problems (exit 2)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr == ""
    out = proc.stdout.splitlines()
    assert any(line.startswith(f"host key [127.0.0.1]:{enroll.saltssh.port} ssh-ed25519 SHA256:") for line in out), out
    assert any(line.startswith(f"w1: enrolled as root@127.0.0.1:{enroll.saltssh.port} in {enroll.roster}") for line in out)
    assert any(line.startswith("  ok   mount: ") for line in out), out
    assert any(line.startswith("  FAIL vg: ") for line in out), out
    assert out[-1].startswith("w1: enrolled, but not ready: ") and "vg" in out[-1], out
    entry = enroll.entries()["w1"]
    assert entry == {
        "host": "127.0.0.1",
        "port": enroll.saltssh.port,
        "user": "root",
        "priv": enroll.template["priv"],
        "set_path": SET_PATH,
        "thin_dir": thin,
        "minion_opts": enroll.template["minion_opts"],
    }
    # the host key pinned is the server's own
    ktype, key = enroll.server_key()
    lines = enroll.known_hosts.read_text().splitlines()
    assert f"[127.0.0.1]:{enroll.saltssh.port} {ktype} {key}" in lines
    # the thin is deployed
    assert os.path.isfile(os.path.join(thin, "salt-call"))


def test_first_driver_call_after_add_is_one_connection(enroll):
    conf = driver_config.load(str(enroll.conf))
    before = enroll.saltssh.ssh_connections()
    # a module call that succeeds on this host (gfs2clvm.check fails the call here: no VG)
    value = salt_ssh("w1", "gfs2clvm.name_vm", 7, 1, conf=conf)
    assert enroll.saltssh.ssh_connections() - before == 1
    assert value == "lv-one-7-1"


def test_add_twice_is_refused(enroll):
    before = enroll.roster.read_bytes()
    proc = enroll.run("add", "w1", "--address", "127.0.0.1", "--port", enroll.saltssh.port, "--user", "root")
    assert proc.returncode == 1
    assert _one_error_line(proc) == (
        f"ERROR: w1 is already in the roster {enroll.roster} (gfs2clvm-host remove w1 first)"
    )
    assert enroll.roster.read_bytes() == before


def test_list_shows_the_hosts(enroll):
    proc = enroll.run("list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["host"]: row for row in json.loads(proc.stdout)}
    assert rows["w1"] == {
        "host": "w1", "address": "127.0.0.1", "port": enroll.saltssh.port, "user": "root",
        "thin_dir": enroll.entries()["w1"]["thin_dir"], "host_key": True,
    }
    assert set(rows) == {"local-root", "w1"}
    text = enroll.run("list").stdout
    assert f"w1\troot@127.0.0.1:{enroll.saltssh.port}\t" in text and "host key known" in text


def test_check_reruns_the_health_check(enroll):
    proc = enroll.run("check", "w1")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)  # no shared VG on this host
    out = proc.stdout.splitlines()
    assert "  ok   config: valid" in out, out
    assert any(line.startswith("  FAIL vg: ") for line in out), out
    assert out[-1].startswith("w1: enrolled, but not ready: ")


def test_remove_drops_roster_entry_and_host_key(enroll):
    proc = enroll.run("remove", "w1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == (
        f"w1: removed from {enroll.roster}; 1 host key line(s) for [127.0.0.1]:{enroll.saltssh.port} removed"
    )
    assert "w1" not in enroll.entries() and "local-root" in enroll.entries()
    assert f"[127.0.0.1]:{enroll.saltssh.port}" not in enroll.known_hosts.read_text()
    with pytest.raises(DriverError, match="^host w1 is not in the salt-ssh roster$"):
        salt_ssh("w1", "test.ping", conf=driver_config.load(str(enroll.conf)))
    proc = enroll.run("remove", "w1")
    assert proc.returncode == 1
    assert _one_error_line(proc) == f"ERROR: w1 is not in the roster {enroll.roster}"


def test_a_changed_host_key_is_refused(enroll):
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIOtherOtherOtherOtherOtherOtherOtherOther1"
    name = f"[127.0.0.1]:{enroll.saltssh.port}"
    enroll.known_hosts.write_text(f"{name} ssh-ed25519 {other}\n")
    before = enroll.roster.read_bytes()
    proc = enroll.run("add", "w2", "--address", "127.0.0.1", "--port", enroll.saltssh.port, "--user", "root")
    assert proc.returncode == 1
    assert _one_error_line(proc) == (
        f"ERROR: {enroll.known_hosts} holds a different host key for {name}: if the host was reinstalled, "
        f"remove it (ssh-keygen -R '{name}' -f {enroll.known_hosts}) and add again"
    )
    assert enroll.roster.read_bytes() == before
    assert enroll.known_hosts.read_text() == f"{name} ssh-ed25519 {other}\n"



# ---------------------------------------------------------------------------
# the front-end formula and gfs2clvm-host share the roster
# ---------------------------------------------------------------------------
ONED_CONF = """TM_MAD = [
    EXECUTABLE = "one_tm",
    ARGUMENTS = "-t 15 -d dummy,lvm,shared"
]

DATASTORE_MAD = [
    EXECUTABLE = "one_datastore",
    ARGUMENTS  = "-t 15 -d dummy,fs,lvm -s shared,ssh"
]
"""


class FrontEnd:
    """gfs2clvm.frontend applied for real (salt-call --local, as root) into a
    throw-away tree, enrolling one cluster node: this host's sshd as ``w-fe``."""

    def __init__(self, saltssh, enroll):
        self.saltssh = saltssh
        self.root = saltssh.base / f"fe-{uuid.uuid4().hex[:6]}"
        self.root.mkdir()
        (self.root / "oned.conf").write_text(ONED_CONF)
        self.salt_dir = self.root / "etc"
        self.roster = self.salt_dir / "roster"
        self.known_hosts = self.root / "home" / ".ssh" / "known_hosts"
        self.driver_conf = self.root / "gfs2clvm.conf"
        self.tool = self.root / "bin" / "gfs2clvm-host"
        self.thin = enroll.thin_dir()
        self.pillar = {
            "gfs2clvm": {
                "owner": "root",
                "group": "root",
                "mountpoint": str(saltssh.mountpoints["root"]),
                "mount_check": "none",
                "modules_dir": str(saltssh.worker_modules),
                "oneadmin": {"home": str(self.root / "home")},
                "cluster": {"name": "it", "nodes": [
                    {"name": "w-fe", "ring0_addr": "127.0.0.1", "ssh_port": saltssh.port, "nodeid": 1}]},
                "frontend": {
                    "enabled": True,
                    "remotes": str(self.root / "remotes"),
                    "oned_conf": str(self.root / "oned.conf"),
                    "driver_conf": str(self.driver_conf),
                    "salt_dir": str(self.salt_dir),
                    "salt_ssh": saltssh.salt_ssh,
                    "ssh_priv": str(saltssh.key),
                    "thin_dir": self.thin,
                    "known_hosts": str(self.known_hosts),
                    "tool_dir": str(self.root / "tool"),
                    "tool_link": str(self.tool),
                    "unit_dir": str(self.root / "systemd"),
                    "saltssh_start": False,  # no systemd here: the service's units only
                    "python": sys.executable,
                    "conf": {"timeout": 120},
                },
            }
        }

    def highstate(self):
        rc, data, raw = salt_call(
            "state.apply", "gfs2clvm.frontend", 'exclude=[{"id": "gfs2clvm-frontend-package-pkg-installed"}]',
            minion_id="frontend", pillar=self.pillar, example=False, timeout=600,
        )
        assert isinstance(data, dict), raw[-3000:]
        bad = {sid: (ret["comment"], ret["changes"]) for sid, ret in data.items() if ret["result"] is not True}
        assert rc == 0 and not bad, bad
        return {sid.split("_|-")[1]: ret for sid, ret in data.items()}

    def run(self, *args):
        env = dict(os.environ, GFS2CLVM_CONF=str(self.driver_conf), PYTHONDONTWRITEBYTECODE="1")
        return subprocess.run([sys.executable, str(self.tool), *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=300, cwd="/")

    def entries(self):
        return yaml.safe_load(self.roster.read_text()) or {}

    def conf(self):
        return driver_config.load(str(self.driver_conf))


@pytest.fixture(scope="module")
def frontend(saltssh, enroll):
    return FrontEnd(saltssh, enroll)


def test_highstate_enrols_the_cluster_nodes(frontend, saltssh):
    first = frontend.highstate()
    assert first["gfs2clvm-frontend-saltssh-enroll-w-fe-module-run"]["changes"], first
    assert frontend.entries() == {
        "w-fe": {
            "host": "127.0.0.1", "port": saltssh.port, "user": "root", "priv": str(saltssh.key),
            "set_path": SET_PATH, "thin_dir": frontend.thin,
        }
    }
    ktype, key = (saltssh.base / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    assert f"[127.0.0.1]:{saltssh.port} {ktype} {key}" in frontend.known_hosts.read_text().splitlines()
    assert os.path.isfile(os.path.join(frontend.thin, "salt-call"))  # thin deployed
    # module_dirs and the module settings reach the worker from the master's ssh_minion_opts
    conf = frontend.conf()
    assert salt_ssh("w-fe", "config.get", "gfs2clvm:mountpoint", conf=conf) == str(saltssh.mountpoints["root"])
    # gfs2clvm.check fails here (no VG: exit 2), but it sees the mountpoint of ssh_minion_opts
    proc = frontend.run("check", "w-fe")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert f"  ok   mount: {saltssh.mountpoints['root']} ok (mount_check=none)" in proc.stdout.splitlines(), proc.stdout


def test_highstate_after_add_keeps_the_host(frontend, saltssh, enroll):
    proc = frontend.run("add", "w-extra", "--address", "127.0.0.1", "--port", saltssh.port, "--user", "root",
                        "--thin-dir", enroll.thin_dir(), "--no-check")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    before = frontend.roster.read_bytes()
    kh_before = frontend.known_hosts.read_bytes()
    assert set(frontend.entries()) == {"w-fe", "w-extra"}
    again = frontend.highstate()
    assert {sid: ret["changes"] for sid, ret in again.items() if ret["changes"]} == {}
    assert not [sid for sid in again if "-enroll-" in sid]  # w-fe is enrolled: nothing to run
    assert frontend.roster.read_bytes() == before and frontend.known_hosts.read_bytes() == kh_before


def test_remove_after_highstate_removes_the_host(frontend, saltssh):
    name = f"[127.0.0.1]:{saltssh.port}"
    proc = frontend.run("remove", "w-extra")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"w-extra: removed from {frontend.roster}; host key kept (also used by w-fe)"
    proc = frontend.run("remove", "w-fe")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"w-fe: removed from {frontend.roster}; 1 host key line(s) for {name} removed"
    assert frontend.entries() == {}
    assert name not in frontend.known_hosts.read_text()
    with pytest.raises(DriverError, match="^host w-fe is not in the salt-ssh roster$"):
        salt_ssh("w-fe", "test.ping", conf=frontend.conf())
    # a node still listed in cluster:nodes is enrolled again by the next highstate
    third = frontend.highstate()
    assert third["gfs2clvm-frontend-saltssh-enroll-w-fe-module-run"]["changes"]
    assert set(frontend.entries()) == {"w-fe"}


def test_the_driver_user_can_run_gfs2clvm_host_on_a_formula_front_end(saltssh, enroll):
    """The formula's layout lets the driver's user (here the unprivileged gfs2ci, as
    oneadmin would) run the installed gfs2clvm-host: list, and remove an entry, which
    rewrites the roster (sticky root:group 1770 directory), takes the lock and edits
    known_hosts in its own ~/.ssh.  (add needs a salt-ssh that user can run: the venv
    of this machine lives under /root, so that part is the root run above.)"""
    import pwd

    user = pwd.getpwnam("gfs2ci")
    fe = FrontEnd(saltssh, enroll)
    fe.pillar["gfs2clvm"].update(owner=user.pw_name, group=user.pw_name)
    fe.pillar["gfs2clvm"]["frontend"]["enroll"] = False
    fe.highstate()
    assert fe.roster.stat().st_uid == user.pw_uid and fe.salt_dir.stat().st_mode & 0o7777 == 0o1770
    name = f"[127.0.0.1]:{saltssh.port}"
    fe.roster.write_text(yaml.safe_dump({"w-gone": {"host": "127.0.0.1", "port": saltssh.port, "user": "gfs2ci"}}))
    fe.known_hosts.write_text(f"{name} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGoneGoneGoneGoneGoneGoneGoneGoneGoneGoneGone1\n")
    os.chown(fe.known_hosts, user.pw_uid, user.pw_gid)
    env = {"GFS2CLVM_CONF": str(fe.driver_conf), "PATH": "/usr/bin:/bin", "HOME": user.pw_dir,
           "PYTHONDONTWRITEBYTECODE": "1"}

    def as_user(*args):
        return subprocess.run(["/usr/bin/python3", str(fe.tool), *args], capture_output=True, text=True, env=env,
                              cwd="/", timeout=60, user=user.pw_uid, group=user.pw_gid, extra_groups=[])

    proc = as_user("list")
    assert proc.returncode == 0 and proc.stdout.startswith("w-gone\tgfs2ci@127.0.0.1:"), (proc.stdout, proc.stderr)
    proc = as_user("remove", "w-gone")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"w-gone: removed from {fe.roster}; 1 host key line(s) for {name} removed"
    assert fe.entries() == {} and fe.roster.stat().st_uid == user.pw_uid
    assert fe.known_hosts.read_text() == ""
    # root's files in the sticky directory stay root's: the user cannot replace them
    proc = subprocess.run(["/usr/bin/python3", "-c", "import os, sys; os.replace(sys.argv[1], sys.argv[2])",
                           str(fe.roster), str(fe.salt_dir / "master")], capture_output=True, text=True,
                          user=user.pw_uid, group=user.pw_gid, extra_groups=[], timeout=30)
    assert proc.returncode != 0 and "PermissionError" in proc.stderr, proc.stderr
