# SPDX-License-Identifier: Apache-2.0
"""Host enrolment on the front-end: ``gfs2clvm-host add|remove|list``.

``check HOST`` re-runs step 4 below; ``list`` shows the roster.
``add HOST`` makes a worker usable by the driver in one step:

1. its SSH host key, read with ``ssh-keyscan``, goes into the ``known_hosts_file``
   of the driver's salt-ssh master config (never ``-i`` / StrictHostKeyChecking=no);
   that file is read and edited with ``ssh-keygen -F/-R/-H`` only (hashed entries);
2. a roster entry ``HOST`` goes into the driver's roster (the one its Saltfile
   names): host, port, user, priv, set_path, a pinned thin_dir and, unless the
   master config's ``ssh_minion_opts`` provides them for every host (the
   formula's layout), minion_opts (``module_dirs`` + the ``gfs2clvm`` module
   settings);
3. ``salt-ssh HOST test.ping`` deploys the salt thin, so the first driver action
   on the host is a warm call;
4. ``salt-ssh HOST gfs2clvm.check`` runs and its result is shown.

If step 1-3 fails, the roster and known_hosts are restored byte for byte.  A
failed check (4) leaves the host enrolled and exits 2: the host answers but is
not ready yet (packages, VG, GFS2 ...).

The files are found from the driver configuration (``GFS2CLVM_CONF``):
``saltfile`` -> ``config_dir`` -> ``<config_dir>/master`` -> ``roster_file``
(default ``<config_dir>/roster``), ``known_hosts_file``, ``ssh_priv``.
The tool owns the roster's entries; the front-end formula only creates the
file and runs ``add`` for its cluster nodes not enrolled yet.
Run it as oneadmin or as root.  salt-ssh keeps the thin and its caches in the
master's ``cachedir``, which the driver (oneadmin) uses later: run as root, the
tool runs salt-ssh as the owner of the roster, else of that cache dir
(``Setup.salt_user``).
"""

import argparse
import contextlib
import fcntl
import json
import os
import pwd
import re
import subprocess
import sys
import tempfile
import time

import yaml

from . import config as driver_config
from .core import DriverError, one_line
from .version import VERSION

SET_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_THIN_DIR = "/var/tmp/.gfs2clvm_salt"
DEFAULT_MODULE_DIR = "/usr/lib/gfs2clvm/_modules"
MODULE_KEYS = ("vg", "mountpoint", "mount_check")  # driver config keys the workers share
KEY_TYPES = "ed25519,ecdsa,rsa"

_HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})$")
_ADDR_RE = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})|[0-9A-Fa-f:.]{2,45})$")
_USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
_PATH_RE = re.compile(r"^/[A-Za-z0-9._/+@-]*$")
_FP_RE = re.compile(r"^SHA256:[A-Za-z0-9+/]{43}$")


# --------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------
def roster_id(value):
    text = str(value)
    if not _HOST_RE.match(text) or ".." in text:
        raise DriverError(f"invalid host name {text!r}: letters, digits, '.', '-', '_' only")
    return text


def address(value):
    text = str(value)
    if not _ADDR_RE.match(text) or ".." in text:
        raise DriverError(f"invalid address {text!r}: not a host name or IP address")
    return text


def port(value):
    text = str(value)
    if not re.fullmatch(r"[1-9][0-9]{0,4}", text) or int(text) > 65535:
        raise DriverError(f"invalid port {text!r}: expected 1-65535")
    return int(text)


def user(value):
    text = str(value)
    if not _USER_RE.match(text):
        raise DriverError(f"invalid user {text!r}: not a login name")
    return text


def abspath(value, what):
    text = str(value)
    if not _PATH_RE.match(text) or os.path.normpath(text) != text:
        raise DriverError(f"invalid {what} {text!r}: not a plain absolute path")
    return text


def fingerprint(value):
    text = str(value)
    if not _FP_RE.match(text):
        raise DriverError(f"invalid fingerprint {text!r}: expected SHA256:<43 base64 chars> (ssh-keygen -lf)")
    return text


def known_hosts_name(addr, sshport):
    """The host field ssh uses in known_hosts: ``addr`` or ``[addr]:port``."""
    return addr if sshport == 22 else f"[{addr}]:{sshport}"


# --------------------------------------------------------------------------
# the salt-ssh set-up of the driver
# --------------------------------------------------------------------------
class Setup:
    """The driver's salt-ssh files: Saltfile -> master config -> roster, known_hosts."""

    def __init__(self, conf):
        self.conf = conf
        self.saltfile = conf["saltfile"]
        self.salt_ssh = conf["salt_ssh"]
        data = _read_yaml(self.saltfile, "Saltfile")
        opts = data.get("salt-ssh") if isinstance(data, dict) else None
        if not isinstance(opts, dict) or not opts.get("config_dir"):
            raise DriverError(f"Saltfile {self.saltfile} has no salt-ssh: config_dir")
        self.config_dir = str(opts["config_dir"])
        self.master_file = os.path.join(self.config_dir, "master")
        master = _read_yaml(self.master_file, "salt-ssh master config")
        if not isinstance(master, dict):
            raise DriverError(f"salt-ssh master config {self.master_file} must be a YAML mapping")
        self.master = master
        self.roster = str(master.get("roster_file") or os.path.join(self.config_dir, "roster"))
        self.known_hosts = master.get("known_hosts_file")
        if not self.known_hosts:
            raise DriverError(
                f"{self.master_file} sets no known_hosts_file: salt-ssh would fall back to "
                "~/.ssh/known_hosts; set it so host keys are pinned in one place"
            )
        self.known_hosts = str(self.known_hosts)
        self.priv = master.get("ssh_priv")
        root_dir = str(master.get("root_dir") or "/")
        self.cachedir = str(master.get("cachedir") or os.path.join(root_dir, "var/cache/salt/master"))

    def salt_user(self):
        """The account salt-ssh must run as, or None for the current one.

        Run by root: the driver configuration's ``oned_user`` (default oneadmin),
        the account oned runs the driver as, when it exists -- salt-ssh's first
        call to a host (thin deploy, caches, keys) is then paid at enrolment for
        the very user whose salt-ssh calls follow (issue 19: 148 s in the lab
        when it was not).  Without that account, the rules below.

        Run as root, salt-ssh would leave root-owned files in the cache dir the
        driver (oneadmin) uses later, and it would act on a roster that another
        user may edit (a roster entry's ``ssh_options`` can run a local command).
        So when root enrols, salt-ssh runs as the owner of the roster (the
        formula makes it the driver's user), else as the owner of the master's
        ``cachedir`` (or of its nearest existing parent, e.g. oneadmin's home
        before the first call; symlinks resolved); as root only when both are
        root's and the cache is not writable by others.
        """
        if os.geteuid() != 0:
            return None
        oned = self.oned_user()
        if oned is not None:
            return oned
        try:
            owner = os.stat(self.roster).st_uid
        except FileNotFoundError:
            owner = 0
        except OSError as err:
            raise DriverError(f"cannot read roster {self.roster}: {err.strerror}") from None
        what = self.roster
        if owner == 0:
            path = os.path.realpath(self.cachedir)
            while not os.path.exists(path) and path != os.path.dirname(path):
                path = os.path.dirname(path)
            info = os.stat(path)
            owner, what = info.st_uid, path
            if owner == 0 and info.st_mode & 0o022:
                raise DriverError(
                    f"the salt cache {path} is root's but writable by others: refusing to run salt-ssh as root "
                    f"(set cachedir in {self.master_file} to a directory of the driver's user)"
                )
        if owner == 0:
            return None
        try:
            return pwd.getpwuid(owner)
        except KeyError:
            raise DriverError(f"{what} belongs to uid {owner}, which has no account: cannot run salt-ssh as it") from None

    def oned_user(self):
        """The pwd entry of the configuration's ``oned_user``, or None when it has no account."""
        name = user(self.conf.get("oned_user") or "oneadmin")
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            return None
        return entry if entry.pw_uid != 0 else None

    def salt_note(self):
        """A note when salt-ssh ran as another user than oned's: its caches may not be the driver's."""
        if os.geteuid() == 0:
            return None
        me = _account_name(os.geteuid())
        oned = self.conf.get("oned_user") or "oneadmin"
        if me == oned:
            return None
        return (f"note: salt-ssh ran as {me}, not as {oned} (oned_user, the account oned runs the driver as): "
                f"run gfs2clvm-host as root or {oned} so the first VM action does not pay salt's first call")

    def read_roster(self):
        """``(raw bytes or None, entries dict)`` of the roster."""
        try:
            with open(self.roster, "rb") as handle:
                raw = handle.read()
        except FileNotFoundError:
            return None, {}
        except OSError as err:
            raise DriverError(f"cannot read roster {self.roster}: {err.strerror}") from None
        text = raw.decode("utf-8", "replace")
        if "{%" in text or "{{" in text:
            raise DriverError(f"roster {self.roster} is a template: edit it by hand")
        try:
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as err:
            raise DriverError(f"roster {self.roster} is not valid YAML: {one_line(err)}") from None
        if not isinstance(data, dict):
            raise DriverError(f"roster {self.roster} must be a YAML mapping of host ids")
        return raw, data

    def write_roster(self, entries):
        _atomic_write(self.roster, yaml.safe_dump(entries, default_flow_style=False, sort_keys=True).encode())

    @contextlib.contextmanager
    def locked(self):
        """Serialise enrolments: one lock file next to the roster."""
        path = self.roster + ".lock"
        # read-only, so a lock file root created first does not lock oneadmin out;
        # never through a symlink
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as err:
            raise DriverError(f"cannot lock {path}: {err.strerror} (run as the owner of the roster)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _account_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _read_yaml(path, what):
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.safe_load(handle) or {}
    except FileNotFoundError:
        raise DriverError(f"{what} {path} not found") from None
    except OSError as err:
        raise DriverError(f"cannot read {what} {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise DriverError(f"{what} {path} is not valid YAML: {one_line(err)}") from None


def _atomic_write(path, data):
    """Replace ``path`` with ``data`` atomically, keeping its mode and owner."""
    directory = os.path.dirname(path) or "."
    try:
        old = os.stat(path)
    except FileNotFoundError:
        old = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=".gfs2clvm-", dir=directory)
    except OSError as err:
        raise DriverError(f"cannot write {path}: {err.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if old is not None:
            os.chmod(tmp, old.st_mode & 0o7777)
            if os.geteuid() == 0:
                os.chown(tmp, old.st_uid, old.st_gid)
        else:
            os.chmod(tmp, 0o644)
            if os.geteuid() == 0:
                parent = os.stat(directory)
                os.chown(tmp, parent.st_uid, parent.st_gid)
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise DriverError(f"cannot write {path}: {err.strerror}") from None


def _restore(path, raw):
    """Put back what ``path`` held (``raw`` None: it did not exist)."""
    if raw is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    else:
        _atomic_write(path, raw)


def _read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise DriverError(f"cannot read {path}: {err.strerror}") from None


# --------------------------------------------------------------------------
# known_hosts: read and edited by ssh-keygen -F/-R/-H only, never parsed here, so
# hashed entries (Debian's HashKnownHosts yes) count like plain ones
# --------------------------------------------------------------------------
def _keygen(argv, what):
    proc = _run(["ssh-keygen", *argv], 60)
    if proc.returncode not in (0, 1):
        lines = [line for line in (proc.stderr or proc.stdout or "").splitlines() if line.strip()]
        raise DriverError(f"ssh-keygen {what} failed: {one_line(lines[-1]) if lines else f'exit {proc.returncode}'}")
    return proc


def kh_keys(path, name):
    """``{(type, key)}`` that known_hosts file ``path`` holds for host field ``name``
    (``addr`` or ``[addr]:port``), plain or hashed: ``ssh-keygen -F name -f path``.
    Marker lines (``@revoked``, ``@cert-authority``) are not keys of the host."""
    if not os.path.exists(path):
        return set()
    proc = _keygen(["-F", name, "-f", path], f"-F {name} -f {path}")
    found = set()
    for line in proc.stdout.splitlines() if proc.returncode == 0 else ():
        fields = line.split()
        if len(fields) >= 3 and not fields[0].startswith(("#", "@")):
            found.add((fields[1], fields[2]))
    return found


def kh_without(path, name):
    """The bytes of known_hosts file ``path`` without the lines for host field ``name``
    (plain or hashed): ``ssh-keygen -R`` run on a private copy, so the file itself is
    then replaced atomically with its owner and mode, and no ``.old`` copy is left."""
    raw = _read_bytes(path) or b""
    with tempfile.TemporaryDirectory(prefix="gfs2clvm-kh-") as tmp:
        copy = os.path.join(tmp, "known_hosts")
        with open(copy, "wb") as handle:
            handle.write(raw)
        _keygen(["-R", name, "-f", copy], f"-R {name}")
        with open(copy, "rb") as handle:
            return handle.read()


def kh_is_hashed(raw):
    """True when the file holds hashed host names (``|1|salt|hash``)."""
    return any(line.startswith(b"|1|") for line in (raw or b"").splitlines())


def kh_hashed(lines):
    """``lines`` (known_hosts text) with their host names hashed: ``ssh-keygen -H``."""
    with tempfile.TemporaryDirectory(prefix="gfs2clvm-kh-") as tmp:
        copy = os.path.join(tmp, "known_hosts")
        with open(copy, "w", encoding="utf-8") as handle:
            handle.write(lines)
        _keygen(["-H", "-f", copy], "-H")
        with open(copy, encoding="utf-8") as handle:
            return handle.read()


def parse_keyscan(text, name):
    """``[(type, key)]`` from ssh-keyscan output, checked to be for host field ``name``."""
    keys = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#") and fields[0] == name:
            keys.append((fields[1], fields[2]))
    return keys


# --------------------------------------------------------------------------
# the roster entry
# --------------------------------------------------------------------------
def template_opts(entries, like, conf, shared_opts=None):
    """``(minion_opts, thin_dir, priv)`` a new entry starts from.

    ``like``: copy them from that roster entry.  Else, when every existing entry
    has the same minion_opts, from those.  An empty roster starts from nothing
    when the master config sets ``ssh_minion_opts`` (``shared_opts``: the
    formula puts module_dirs and the module settings there, for every host);
    otherwise from the driver configuration (vg, mountpoint, mount_check) and
    the formula's module dir.
    """
    if like is not None:
        if like not in entries or not isinstance(entries[like], dict):
            raise DriverError(f"--like {like}: no such host in the roster")
        source = entries[like]
        return dict(source.get("minion_opts") or {}), source.get("thin_dir"), source.get("priv")
    dicts = [e for e in entries.values() if isinstance(e, dict)]
    if dicts:
        first = dicts[0].get("minion_opts") or {}
        if any((e.get("minion_opts") or {}) != first for e in dicts):
            raise DriverError(
                "the roster's hosts differ in minion_opts: say which to copy with --like HOST"
            )
        thin = {e.get("thin_dir") for e in dicts}
        return dict(first), (thin.pop() if len(thin) == 1 else None), None
    if isinstance(shared_opts, dict) and shared_opts:
        return {}, None, None
    module = {key: conf.get(key) for key in MODULE_KEYS if conf.get(key) is not None}
    return {"module_dirs": [DEFAULT_MODULE_DIR], "gfs2clvm": module}, None, None


def make_entry(args, entries, setup):
    opts, thin_dir, priv = template_opts(entries, args.like, setup.conf, setup.master.get("ssh_minion_opts"))
    if args.module_dir:
        opts["module_dirs"] = [args.module_dir]
    priv = args.priv or priv or setup.priv
    if not priv:
        raise DriverError(f"no SSH key: set ssh_priv in {setup.master_file} or give --priv")
    entry = {
        "host": args.address or args.host,
        "port": args.port,
        "user": args.user or setup.conf.get("user") or "oneadmin",
        "priv": str(priv),
        "set_path": SET_PATH,
        "thin_dir": args.thin_dir or thin_dir or DEFAULT_THIN_DIR,
    }
    if opts:  # none: the master's ssh_minion_opts apply unshadowed
        entry["minion_opts"] = opts
    return entry


# --------------------------------------------------------------------------
# salt-ssh and ssh-keyscan
# --------------------------------------------------------------------------
def _run(argv, timeout, stdin="", as_user=None):
    """Run ``argv``; ``as_user`` (a pwd entry): as that user, with its HOME."""
    extra = {}
    if as_user is not None:
        env = dict(os.environ, HOME=as_user.pw_dir, USER=as_user.pw_name, LOGNAME=as_user.pw_name)
        extra = {"user": as_user.pw_uid, "group": as_user.pw_gid, "extra_groups": [], "env": env, "cwd": "/"}
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, input=stdin, check=False, **extra
        )
    except FileNotFoundError:
        raise DriverError(f"{argv[0]} not found") from None
    except OSError as err:
        who = f" as {as_user.pw_name}" if as_user is not None else ""
        raise DriverError(f"cannot run {argv[0]}{who}: {err.strerror}") from None
    except subprocess.TimeoutExpired:
        raise DriverError(f"{os.path.basename(argv[0])}: no answer in {timeout} s") from None


def keyscan(addr, sshport, timeout=10, run=_run):
    name = known_hosts_name(addr, sshport)
    proc = run(["ssh-keyscan", "-T", str(timeout), "-p", str(sshport), "-t", KEY_TYPES, addr], timeout + 5)
    keys = parse_keyscan(proc.stdout, name)
    if not keys:
        raise DriverError(
            f"ssh-keyscan found no host key at {addr} port {sshport} (is sshd running there? address and port right?)"
        )
    return name, keys


def key_fingerprints(keys, run=_run):
    """``{(type, key): 'SHA256:...'}`` via ssh-keygen -lf."""
    text = "".join(f"host {t} {k}\n" for t, k in keys)
    with tempfile.NamedTemporaryFile("w", suffix=".pub") as handle:
        handle.write(text)
        handle.flush()
        proc = run(["ssh-keygen", "-l", "-E", "sha256", "-f", handle.name], 30)
    prints = [line.split()[1] for line in proc.stdout.splitlines() if len(line.split()) > 1]
    return dict(zip(keys, prints)) if len(prints) == len(keys) else {}


def _json_tail(text):
    """The JSON document of salt-ssh's stdout (its key-deploy question may precede it)."""
    for start in (i for i, char in enumerate(text) if char == "{"):
        try:
            return json.loads(text[start:])
        except ValueError:
            continue
    return None


def salt_call(setup, host, fun, *args, run=_run):
    """One salt-ssh call; ``(value, None)`` or ``(None, one-line problem)``.
    ``args``: words after ``fun`` (``key=<JSON>``: salt reads values as YAML)."""
    argv = [setup.salt_ssh, "--saltfile", setup.saltfile, "--out", "json", "--static", "-l", "warning", host, fun,
            *args]
    # On "Permission denied" salt-ssh asks whether to deploy its key with a
    # password (input()): answer no instead of dying of EOFError.
    proc = run(argv, int(setup.conf.get("timeout") or 900), stdin="n\n", as_user=setup.salt_user())
    data = _json_tail(proc.stdout)
    if not isinstance(data, dict) or host not in data:
        lines = [line for line in (proc.stderr or proc.stdout or "").splitlines() if line.strip()]
        return None, f"salt-ssh exit {proc.returncode}: {one_line(lines[-1]) if lines else 'no output'}"
    value = data[host]
    if isinstance(value, dict) and "retcode" in value and ("stderr" in value or "_error" in value):
        stderr = str(value.get("stderr") or "")
        if value.get("retcode") == 254 or "host key" in stderr.lower():
            return None, "host key not accepted"
        if "Passed invalid arguments:" in stderr:  # salt adds the function's docstring after it
            text = stderr.split("Passed invalid arguments:", 1)[1].split("\n\nUsage", 1)[0]
            return None, f"invalid arguments: {one_line(text).rstrip('.')}"
        lines = [line for line in (stderr or str(value.get("_error") or "")).splitlines() if line.strip()]
        return None, one_line(lines[-1]) if lines else f"retcode {value.get('retcode')}"
    if isinstance(value, str) and (
        "is not available" in value or "Permission denied" in value or value.startswith(("Traceback", "ssh:"))
    ):
        return None, one_line(value.strip().splitlines()[-1])
    return value, None


# --------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------
def cmd_add(args, setup, out, run=_run):
    with setup.locked():
        roster_raw, entries = setup.read_roster()
        if args.host in entries:
            raise DriverError(f"{args.host} is already in the roster {setup.roster} (gfs2clvm-host remove {args.host} first)")
        entry = make_entry(args, entries, setup)
        name, keys = keyscan(entry["host"], entry["port"], run=run)
        prints = key_fingerprints(keys, run=run)
        if args.fingerprint and args.fingerprint not in prints.values():
            raise DriverError(
                f"no host key of {entry['host']} port {entry['port']} has fingerprint {args.fingerprint} "
                f"(scanned: {', '.join(sorted(prints.values())) or 'none'})"
            )
        kh_raw = _read_bytes(setup.known_hosts)
        known = kh_keys(setup.known_hosts, name)
        if known and not known & set(keys):
            raise DriverError(
                f"{setup.known_hosts} holds a different host key for {name}: if the host was reinstalled, "
                f"remove it (ssh-keygen -R '{name}' -f {setup.known_hosts}) and add again"
            )
        try:
            new_lines = "".join(f"{name} {t} {k}\n" for t, k in keys if (t, k) not in known)
            if new_lines and kh_is_hashed(kh_raw):
                new_lines = kh_hashed(new_lines)  # keep a hashed file's host names hidden
            if new_lines:
                base = kh_raw or b""
                if base and not base.endswith(b"\n"):
                    base += b"\n"
                _atomic_write(setup.known_hosts, base + new_lines.encode())
            entries[args.host] = entry
            setup.write_roster(entries)
            started = time.monotonic()
            value, problem = salt_call(setup, args.host, "test.ping", run=run)
            if problem or value is not True:
                raise DriverError(f"salt-ssh {args.host} test.ping failed: {problem or repr(value)}")
            seconds = time.monotonic() - started
        except BaseException:
            _restore(setup.roster, roster_raw)
            _restore(setup.known_hosts, kh_raw)
            raise
    for (ktype, _key), fprint in sorted(prints.items()):
        out(f"host key {name} {ktype} {fprint}")
    runner = setup.salt_user()
    who = runner.pw_name if runner is not None else _account_name(os.geteuid())
    out(
        f"{args.host}: enrolled as {entry['user']}@{entry['host']}:{entry['port']} in {setup.roster}; "
        f"salt thin ready in {entry['thin_dir']} for {who}'s salt-ssh ({seconds:.1f} s)"
    )
    note = setup.salt_note()
    if note:
        out(note)
    if args.no_check:
        return 0
    return show_check(setup, args.host, out, run)


def show_check(setup, host, out, run=_run):
    # driver=: the worker compares its modules' version with this driver's (check "version")
    value, problem = salt_call(setup, host, "gfs2clvm.check", f"driver={json.dumps(VERSION)}", run=run)
    if problem and "keyword arguments are not valid: driver=" in problem:  # an older module
        out(f"{host}: runs gfs2clvm modules older than the front-end driver {VERSION} (their gfs2clvm.check "
            "takes no driver version): apply the gfs2clvm.worker formula there")
        return 2
    if problem:
        out(f"{host}: gfs2clvm.check could not run: {problem} (apply the gfs2clvm.worker formula there)")
        return 2
    if not (isinstance(value, dict) and isinstance(value.get("checks"), dict)):
        out(f"{host}: gfs2clvm.check returned {one_line(value)!r}")
        return 2
    for name, item in value["checks"].items():
        item = item if isinstance(item, dict) else {}
        out(f"  {'ok  ' if item.get('ok') else 'FAIL'} {name}: {one_line(item.get('detail', ''))}")
    bad = [name for name, item in value["checks"].items() if not (isinstance(item, dict) and item.get("ok"))]
    if bad:
        out(f"{host}: enrolled, but not ready: {', '.join(bad)} failed")
        return 2
    out(f"{host}: ready")
    return 0


def cmd_remove(args, setup, out, run=_run):
    with setup.locked():
        roster_raw, entries = setup.read_roster()
        if args.host not in entries:
            raise DriverError(f"{args.host} is not in the roster {setup.roster}")
        entry = entries.pop(args.host)
        entry = entry if isinstance(entry, dict) else {}
        name = known_hosts_name(str(entry.get("host", args.host)), int(entry.get("port") or 22))
        shared = [
            other for other, e in entries.items()
            if isinstance(e, dict) and known_hosts_name(str(e.get("host", other)), int(e.get("port") or 22)) == name
        ]
        setup.write_roster(entries)
        removed = 0
        if not shared:
            removed = len(kh_keys(setup.known_hosts, name))
            if removed:
                try:
                    _atomic_write(setup.known_hosts, kh_without(setup.known_hosts, name))
                except BaseException:
                    _restore(setup.roster, roster_raw)
                    raise
    note = f"{removed} host key line(s) for {name} removed" if not shared else f"host key kept (also used by {', '.join(shared)})"
    out(f"{args.host}: removed from {setup.roster}; {note}")
    return 0


def cmd_check(args, setup, out, run=_run):
    _raw, entries = setup.read_roster()
    if args.host not in entries:
        raise DriverError(f"{args.host} is not in the roster {setup.roster}")
    return show_check(setup, args.host, out, run)


def cmd_list(args, setup, out, run=_run):
    _raw, entries = setup.read_roster()
    rows = []
    for host, entry in sorted(entries.items()):
        entry = entry if isinstance(entry, dict) else {}
        addr, sshport = str(entry.get("host", host)), int(entry.get("port") or 22)
        rows.append(
            {
                "host": host,
                "address": addr,
                "port": sshport,
                "user": entry.get("user"),
                "thin_dir": entry.get("thin_dir"),
                "host_key": bool(kh_keys(setup.known_hosts, known_hosts_name(addr, sshport))),
            }
        )
    if args.json:
        out(json.dumps(rows, indent=1))
        return 0
    if not rows:
        out(f"no hosts in {setup.roster}")
    for row in rows:
        out(
            f"{row['host']}\t{row['user']}@{row['address']}:{row['port']}\tthin {row['thin_dir']}\t"
            f"host key {'known' if row['host_key'] else 'MISSING'}"
        )
    return 0


# --------------------------------------------------------------------------
# argument parsing and main
# --------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise DriverError(f"{message} (see gfs2clvm-host --help)")


def parser():
    top = _Parser(prog="gfs2clvm-host", description="Enrol OpenNebula KVM workers for the gfs2clvm driver (salt-ssh roster).")
    top.add_argument("--conf", help="driver configuration (default: $GFS2CLVM_CONF or /etc/one/gfs2clvm.conf)")
    top.add_argument("--version", action="version", version=f"gfs2clvm-host {VERSION}",
                     help="print the version of gfs2clvm-host and the driver library, and exit")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add = sub.add_parser("add", help="add a worker: host key, roster entry, salt thin, health check")
    add.add_argument("host", type=roster_id, help="the host name oned uses (roster id)")
    add.add_argument("--address", type=address, help="how to reach it by SSH (default: HOST)")
    add.add_argument("--port", type=port, default=22, help="SSH port (default 22)")
    add.add_argument("--user", type=user, help="SSH login (default: the driver config's user, oneadmin)")
    add.add_argument("--priv", type=lambda v: abspath(v, "--priv"), help="SSH private key (default: ssh_priv of the master config)")
    add.add_argument("--thin-dir", type=lambda v: abspath(v, "--thin-dir"), help=f"pinned salt thin dir on the worker (default: the roster's, else {DEFAULT_THIN_DIR})")
    add.add_argument("--module-dir", type=lambda v: abspath(v, "--module-dir"), help=f"where the worker has the gfs2clvm modules (default: the roster's, else {DEFAULT_MODULE_DIR})")
    add.add_argument("--like", type=roster_id, help="copy minion_opts, thin_dir and priv from this roster entry")
    add.add_argument("--fingerprint", type=fingerprint, help="refuse unless the scanned host key has this SHA256 fingerprint")
    add.add_argument("--no-check", action="store_true", help="skip gfs2clvm.check")
    rem = sub.add_parser("remove", help="remove a worker's roster entry and its known_hosts lines")
    rem.add_argument("host", type=roster_id)
    chk = sub.add_parser("check", help="run gfs2clvm.check on an enrolled worker and show it")
    chk.add_argument("host", type=roster_id)
    lst = sub.add_parser("list", help="list the enrolled workers")
    lst.add_argument("--json", action="store_true")
    return top


COMMANDS = {"add": cmd_add, "remove": cmd_remove, "check": cmd_check, "list": cmd_list}


def main(argv=None, out=print, run=_run):
    """Exit status: 0 ok, 1 error (one ``ERROR:`` line), 2 enrolled but not ready (add, check)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser().parse_args(argv)
        conf = driver_config.load(args.conf)
        setup = Setup(conf)
        return COMMANDS[args.command](args, setup, out, run)
    except DriverError as err:
        sys.stderr.write(f"ERROR: {one_line(err)}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("ERROR: interrupted\n")
        return 1
    except Exception as err:  # noqa: BLE001 -- one line, never a traceback
        sys.stderr.write(f"ERROR: internal error: {type(err).__name__}: {one_line(err)}\n")
        return 1
