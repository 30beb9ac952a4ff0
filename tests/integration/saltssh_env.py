"""Local integration tier: real salt-ssh to a real sshd on 127.0.0.1.

The session fixture ``saltssh`` starts a private sshd on a free loopback port and
writes a salt-ssh master config, roster and Saltfile whose file_roots are this
repository, so ``_modules``/``_states`` are shipped exactly as salt-ssh ships them
in production.  Two roster targets reach this very machine:

* ``local-root``  -- ssh as root;
* ``local-user``  -- ssh as the unprivileged user ``gfs2ci`` (created if absent).

Each target gets ``minion_opts: gfs2clvm: {...}`` with its own writable
mountpoint and ``mount_check: none`` (the host has no GFS2).

``saltfile`` is the provisioning/ad-hoc set-up: file_roots hold ``_modules``, so
salt 3008.4 ships them (one extra scp per call).  ``driver_saltfile`` is the
production driver set-up: empty file_roots and ``module_dirs`` pointing at a copy
of ``_modules`` "deployed on the worker" (as the formula does), so one action is
one SSH connection.  sshd logs at VERBOSE so tests can count connections.

    rc, data, stderr = saltssh.call("gfs2clvm.link", target, path, user="unpriv")
"""

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
UNPRIV_USER = "gfs2ci"
SET_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ensure_user(name):
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", name], check=True)
    # '*' instead of '!': with UsePAM no, sshd refuses locked accounts even for keys.
    subprocess.run(["usermod", "-p", "*", name], check=True)
    return pwd.getpwnam(name)


class EnvError(RuntimeError):
    """The local sshd/salt-ssh environment could not be set up."""


class SaltSSH:
    """A private sshd plus a salt-ssh configuration pointing at it."""

    targets = {"root": "local-root", "unpriv": "local-user"}

    def __init__(self, base):
        self.base = Path(base)
        self.port = _free_port()
        self.key = self.base / "id_ed25519"
        self.known_hosts = self.base / "known_hosts"
        self.config_dir = self.base / "etc"
        self.saltfile = self.base / "Saltfile"
        self.roster = self.config_dir / "roster"
        self.driver_config_dir = self.base / "etc-driver"
        self.driver_saltfile = self.base / "Saltfile.driver"
        self.worker_modules = self.base / "worker" / "_modules"
        self.salt_ssh = str(VENV_BIN / "salt-ssh")
        self.user = _ensure_user(UNPRIV_USER)
        self.mountpoints = {
            "root": self.base / "one-root",
            "unpriv": self.base / "one-user",
        }
        self.proc = None

    # -- set-up ----------------------------------------------------------
    def start(self):
        if os.geteuid() != 0:
            raise EnvError("integration tests need root (sshd on 127.0.0.1, useradd)")
        self.base.chmod(0o755)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)],
            check=True,
        )
        host_key = self.base / "ssh_host_ed25519_key"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)],
            check=True,
        )
        keys_dir = self.base / "authorized_keys"
        keys_dir.mkdir(mode=0o755)
        pub = (self.key.with_suffix(".pub")).read_text()
        for login in ("root", UNPRIV_USER):
            (keys_dir / login).write_text(pub)
            (keys_dir / login).chmod(0o644)
        for who, path in self.mountpoints.items():
            path.mkdir()
            if who == "unpriv":
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        sshd_config = self.base / "sshd_config"
        sshd_config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"PidFile {self.base / 'sshd.pid'}",
                    f"AuthorizedKeysFile {keys_dir}/%u",
                    "StrictModes no",
                    "UsePAM no",
                    "PermitRootLogin prohibit-password",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UseDNS no",
                    "MaxSessions 50",
                    "MaxStartups 100:30:200",
                    "Subsystem sftp internal-sftp",
                    "LogLevel VERBOSE",
                    "",
                ]
            )
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-f", str(sshd_config), "-E", str(self.base / "sshd.log")]
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise EnvError(f"sshd did not start: {(self.base / 'sshd.log').read_text()}")
                time.sleep(0.1)
        scan = subprocess.run(
            ["ssh-keyscan", "-p", str(self.port), "-t", "ed25519", "127.0.0.1"],
            capture_output=True,
            text=True,
            check=True,
        )
        self.known_hosts.write_text(scan.stdout)
        self._write_salt_config()

    def _write_salt_config(self):
        (self.base / "pillar").mkdir()
        (self.base / "empty-file-roots").mkdir()
        # "Deploy" the modules on the worker (this host), readable by every user.
        shutil.copytree(REPO / "_modules", self.worker_modules)
        for path in [self.worker_modules.parent, self.worker_modules, *self.worker_modules.iterdir()]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        self._write_one_config(
            self.config_dir, self.saltfile, [str(REPO), str(REPO / "salt")], {}
        )
        self._write_one_config(
            self.driver_config_dir,
            self.driver_saltfile,
            [str(self.base / "empty-file-roots")],
            {"module_dirs": [str(self.worker_modules)]},
        )

    def _write_one_config(self, cfg, saltfile, file_roots, extra_opts):
        cfg.mkdir()
        state = self.base / f"salt-{cfg.name}"
        master = {
            "root_dir": str(state),
            "cachedir": str(state / "cache"),
            "pki_dir": str(state / "pki"),
            "sock_dir": str(state / "run"),
            "log_file": str(state / "master.log"),
            "ssh_log_file": str(state / "ssh.log"),
            "file_roots": {"base": file_roots},
            "pillar_roots": {"base": [str(self.base / "pillar")]},
            "roster_file": str(cfg / "roster"),
            "known_hosts_file": str(self.known_hosts),
            "ssh_priv": str(self.key),
            "ssh_timeout": 10,
        }
        (cfg / "master").write_text(yaml.safe_dump(master))
        roster = {}
        for who, target in self.targets.items():
            login = "root" if who == "root" else UNPRIV_USER
            roster[target] = {
                "host": "127.0.0.1",
                "port": self.port,
                "user": login,
                "priv": str(self.key),
                "set_path": SET_PATH,
                # One thin dir per set-up: ext_mods unpacked by the provisioning set-up
                # must never shadow the modules the driver set-up finds in module_dirs.
                # Per session too: concurrent sessions must not unpack into one thin dir.
                "thin_dir": self.thin_dir(cfg.name, login),
                "minion_opts": {"gfs2clvm": self.module_config(who), **extra_opts},
            }
        (cfg / "roster").write_text(yaml.safe_dump(roster))
        saltfile.write_text(
            yaml.safe_dump({"salt-ssh": {"config_dir": str(cfg), "log_level": "warning"}})
        )

    def module_config(self, who):
        """The gfs2clvm settings the module sees on target ``who``."""
        login = "root" if who == "root" else UNPRIV_USER
        return {
            "mountpoint": str(self.mountpoints[who]),
            "mount_check": "none",
            "owner": login,
            "group": login,
        }

    def thin_dir(self, setup, login):
        return f"/var/tmp/.gfs2clvm-it-{self.base.name}-{setup}-{login}"

    def warm_up(self):
        """Deploy the salt thin on every target once, so later calls are warm."""
        for who in self.targets:
            for saltfile in (self.saltfile, self.driver_saltfile):
                rc, data, err = self.run(self.target(who), "test.ping", saltfile=saltfile)
                if rc != 0 or data is not True:
                    raise EnvError(f"salt-ssh to {self.target(who)} failed (rc={rc}): {data!r} {err}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        for setup in (self.config_dir.name, self.driver_config_dir.name):
            for login in ("root", UNPRIV_USER):
                shutil.rmtree(self.thin_dir(setup, login), ignore_errors=True)

    # -- use -------------------------------------------------------------
    def target(self, user="root"):
        return self.targets[user]

    def ssh_connections(self):
        """How many SSH connections sshd accepted so far (for one-call tests)."""
        log = (self.base / "sshd.log").read_text()
        return log.count("Accepted publickey")

    def run(self, target, fun, *args, timeout=120, saltfile=None, **kwargs):
        """Run one salt-ssh call; return (retcode, parsed data or None, stderr)."""
        saltfile = saltfile or self.saltfile
        argv = [self.salt_ssh, "--saltfile", str(saltfile), "--out", "json", target, fun]
        argv += [str(a) for a in args]
        argv += [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in kwargs.items()]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        data = None
        if proc.stdout.strip():
            try:
                data = json.loads(proc.stdout).get(target)
            except ValueError:
                data = proc.stdout
        return proc.returncode, data, proc.stderr

    def call(self, fun, *args, user="root", **kwargs):
        """``run`` on the target of ``user`` ("root" or "unpriv")."""
        return self.run(self.target(user), fun, *args, **kwargs)

    def driver_conf(self, path, **extra):
        """Write a front-end driver config (GFS2CLVM_CONF) using this salt-ssh set-up."""
        # oned_user: this test user, not a oneadmin the machine may have (gfs2clvm-host as root
        # would run salt-ssh as oneadmin, who cannot read this set-up's key)
        conf = {"salt_ssh": self.salt_ssh, "saltfile": str(self.driver_saltfile),
                "oned_user": pwd.getpwuid(os.geteuid()).pw_name}
        conf.update(extra)
        Path(path).write_text(yaml.safe_dump(conf))
        return Path(path)
