# SPDX-License-Identifier: Apache-2.0
"""gfs2clvm-saltssh: the driver's salt-ssh calls served by Salt's public ``SSHClient``.

A managed service (units ``gfs2clvm-saltssh.socket``/``.service`` from the frontend
formula: socket activation, ``Accept=no``, oneadmin, ``Restart=on-failure``, journal).
It imports Salt once and holds ``salt.client.ssh.client.SSHClient``; per connection it
forks, the fork runs one call (``cmd_iter``) and answers what the ``salt-ssh`` CLI would
print and exit with.  ``python3 service.py`` reads the driver configuration
(``GFS2CLVM_CONF``) and re-executes itself under the Python of its ``salt_ssh`` (venv,
onedir or system), so one key names the Salt that serves; without ``LISTEN_FDS`` (tests)
it binds ``saltssh_socket`` itself.

Protocol (JSON lines): ``{"argv": [...]}`` -> ``{"started": pid}`` (or ``{"unsupported":
why}``: nothing runs) -> ``{"go": true}`` -> ``{"result": [code, stdout, stderr]}``.  A
closed connection (action killed, timed out) makes the fork kill the call.  ssh multiplexing
(``ControlPersist``) is added here only, so a master is always the service's child,
never holding an action's stdout/stderr (oned drops a stream still open 0.1 s after
the action exits: OpenNebula src/mad/ruby/CommandManager.rb:197-205, release-7.4.0).
"""

import contextlib
import gc
import hashlib
import io
import json
import logging
import os
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading

if __name__ == "__main__" and not __package__:  # python3 .../gfs2clvm_driver/service.py
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # not the package's own dir
    from gfs2clvm_driver.service import main  # the package's module (relative imports work)

    sys.exit(main(sys.argv[1:]))

from . import slots  # noqa: E402

CM_PERSIST = 60
VALUE_FLAGS, PLAIN_FLAGS = {"--saltfile", "--out", "-l", "-L"}, {"--static", "--key-deploy"}


def salt_python(salt_ssh):
    """The Python running ``salt_ssh``: its ``#!`` interpreter (``env`` resolved), else -- a
    onedir's shell-started script -- ``bin/python3`` beside it."""
    path = os.path.realpath(salt_ssh)
    with open(path, "rb") as handle:
        line = handle.readline(512)
    words = line[2:].decode(errors="replace").split() if line.startswith(b"#!") else []
    if words and os.path.basename(words[0]) == "env":
        words = [shutil.which(w) or w for w in words[1:] if not w.startswith("-")]
    if words and os.path.basename(words[0]).startswith("python"):
        return words[0]
    for candidate in ("bin/python3", "python3"):
        found = os.path.join(os.path.dirname(path), candidate)
        if os.access(found, os.X_OK):
            return found
    raise RuntimeError(f"cannot tell which Python runs {salt_ssh}")


def parse_argv(argv):
    """``(saltfile, tgt, tgt_type, fun, args)`` of a ``saltssh.build_argv`` argv; ValueError otherwise."""
    opts, rest, i = {}, [], 1
    while i < len(argv) and not rest:
        word = argv[i]
        if word in VALUE_FLAGS and i + 1 < len(argv):
            opts[word], i = argv[i + 1], i + 2
        elif word in PLAIN_FLAGS:
            i += 1
        elif word.startswith("-"):
            raise ValueError(f"option {word}")
        else:
            rest = argv[i:]
    if opts.get("--out") != "json" or "--saltfile" not in opts:
        raise ValueError("not --out json with a Saltfile")
    if "-L" in opts:
        return opts["--saltfile"], opts["-L"].split(","), "list", rest[0], rest[1:]
    if len(rest) < 2:
        raise ValueError("no target and function")
    return opts["--saltfile"], rest[0], "glob", rest[1], rest[2:]


def master_path(saltfile):
    import yaml  # pylint: disable=import-outside-toplevel

    with open(saltfile, encoding="utf-8") as handle:
        return os.path.join(yaml.safe_load(handle)["salt-ssh"]["config_dir"], "master")


def config_key(opts):
    """8 hex of the ssh set-up (master config, roster, known_hosts: paths and contents; key
    path): a call never rides on a master connection opened under another configuration."""
    digest = hashlib.sha256()
    roster = opts.get("roster_file") or os.path.join(str(opts.get("config_dir") or ""), "roster")
    for name, read in ((opts.get("conf_file"), True), (roster, True), (opts.get("known_hosts_file"), True),
                       (opts.get("ssh_priv"), False)):
        digest.update(f"{name}\0".encode())
        if read and name:
            try:
                with open(name, "rb") as handle:
                    digest.update(handle.read(1 << 20))
            except OSError:
                digest.update(b"-")
    return digest.hexdigest()[:8]


def mux_options(existing, directory, key):
    """``existing`` ssh options plus multiplexing (unless they choose it already or the path is too long)."""
    existing = list(existing or [])
    if {str(o).split("=", 1)[0].strip().lower() for o in existing} & {"controlmaster", "controlpath",
                                                                     "controlpersist"}:
        return existing
    # ssh binds <dir>/<key>-<%C: 40 hex>.<17 random chars>; a Unix socket path has 107 bytes at most
    if len(os.fsencode(directory)) + len(key) + 60 > 107:
        return existing
    return existing + ["ControlMaster=auto", f"ControlPath={directory}/{key}-%C", f"ControlPersist={CM_PERSIST}"]


def cli_result(rets, tgt, tgt_type):
    """``(exit code, stdout, stderr)`` as the salt-ssh CLI prints them with ``--out json --static``:
    the per-host mapping of ``SSH.run`` (salt/client/ssh/__init__.py, 3008.4) over ``cmd_iter``'s returns."""
    import salt.defaults.exitcodes as codes  # pylint: disable=import-outside-toplevel

    keep = {getattr(codes, n, None) for n in ("EX_THIN_PYTHON_INVALID", "EX_THIN_DEPLOY", "EX_THIN_CHECKSUM",
                                              "EX_MOD_DEPLOY", "EX_SCP_NOT_FOUND", "EX_CANTCREAT", "EX_SOFTWARE")}
    out, final, err = {}, 0, ""
    for host, ret in rets.items():
        code = ret.get("retcode", 0) if isinstance(ret, dict) else 1
        code = code if isinstance(code, int) else 1
        final = max(final, code if code in keep or code == 0 else codes.EX_AGGREGATE)
        if isinstance(ret, dict) and str(ret.get("stderr") or "").startswith("ssh:"):
            ret = ret["stderr"]
        if not isinstance(ret, dict):
            out[host] = ret
        elif "return" not in ret:
            out[host] = ret["stderr"] if ret.get("_error") == "Permission denied" else ret
        else:
            out[host] = ret.get("return", {})
    if not rets:
        err = "[ERROR   ] No matching targets found in roster.\n"
    return final, json.dumps(out, indent=4, default=repr) + "\n", err


class Server:
    """The listening loop: one fork per connection, Salt imported once before."""

    def __init__(self, conf, listener):
        self.conf, self.listener = conf, listener
        self.salt_ssh = os.path.realpath(conf["salt_ssh"])
        self.clients = {}
        self.cm_dir = os.environ.get("RUNTIME_DIRECTORY") or slots.private_dir(
            os.path.join(tempfile.gettempdir(), f"gfs2clvm-cm-{os.getuid()}"), "ssh control directory", RuntimeError)

    def client(self, saltfile):
        """A ``SSHClient`` of ``saltfile``'s master config (kept while the file is unchanged)."""
        import salt.client.ssh.client  # pylint: disable=import-outside-toplevel

        path = master_path(saltfile)
        st = os.stat(path)
        key = (saltfile, path, st.st_mtime_ns, st.st_size)
        if key not in self.clients:
            self.clients[key] = salt.client.ssh.client.SSHClient(c_path=path)
        return self.clients[key]

    def serve(self):
        import salt.client.ssh.client  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import

        try:
            self.client(self.conf["saltfile"])  # the driver's own set-up: ready before the first call
        except Exception as err:  # noqa: BLE001 -- a call with it says why
            print(f"gfs2clvm-saltssh: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
        gc.collect()
        gc.freeze()  # forks share these pages
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forks are reaped by the kernel
        print(f"gfs2clvm-saltssh: serving {self.salt_ssh} (pid {os.getpid()})", file=sys.stderr, flush=True)
        while True:
            try:
                conn, _ = self.listener.accept()
            except InterruptedError:
                continue
            with conn:
                creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
                if struct.unpack("3i", creds)[1] != os.getuid():
                    continue  # closed before "started": the action runs the CLI itself
                if os.fork() == 0:
                    code = 1
                    try:
                        self.listener.close()
                        code = self.one_call(conn)
                    finally:
                        os._exit(code)  # pylint: disable=protected-access

    def one_call(self, conn):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # Salt waits for its own children
        reader = conn.makefile("rb")
        request = json.loads(reader.readline() or "null") or {}
        argv = [str(a) for a in request.get("argv") or []]
        try:
            saltfile, tgt, tgt_type, fun, args = parse_argv(argv)
            if not argv or os.path.realpath(argv[0]) != self.salt_ssh:
                raise ValueError(f"{argv[:1]} is not the service's salt-ssh {self.salt_ssh}")
            client = self.client(saltfile)
        except Exception as err:  # noqa: BLE001 -- the action runs the CLI instead
            _send(conn, {"unsupported": f"{type(err).__name__}: {err}"})
            return 0
        _send(conn, {"started": os.getpid()})
        if not (json.loads(reader.readline() or "null") or {}).get("go"):
            return 0  # the action gave up: nothing runs
        threading.Thread(target=_watch, args=(conn,), daemon=True).start()
        handler = logging.StreamHandler(io.StringIO())  # Salt's warnings, as the CLI writes them
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("[%(levelname)-8s] %(message)s"))
        logging.getLogger().addHandler(handler)
        options = mux_options(client.opts.get("ssh_options"), self.cm_dir, config_key(client.opts))
        rets = {}
        try:
            for ret in client.cmd_iter(tgt, fun, arg=args, tgt_type=tgt_type, ssh_options=options):
                rets.update(ret)
            code, out, err = cli_result(rets, tgt, tgt_type)
        except Exception as exc:  # noqa: BLE001 -- the CLI prints it and exits 1
            code, out, err = 1, "", f"{type(exc).__name__}: {exc}\n"
        _send(conn, {"result": [code, out, handler.stream.getvalue() + err]})
        return 0


def _send(conn, message):
    conn.sendall(json.dumps(message).encode() + b"\n")


def _watch(conn):
    """The action closed its connection (killed, timed out): kill this call's processes."""
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
    poller.poll()
    for pid in descendants(os.getpid()):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    os._exit(1)  # pylint: disable=protected-access


def descendants(root):
    """PIDs of every descendant of ``root`` (from /proc), deepest first (ssh runs in sessions of
    its own: a process group does not reach it; a daemonised ControlPersist master is no descendant)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as handle:
                    children.setdefault(int(handle.read().rsplit(b")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return list(reversed(found))


def listener_socket(path):
    """systemd's socket (``LISTEN_FDS``), else ``path`` bound here (mode 0600)."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and int(os.environ.get("LISTEN_FDS") or 0) >= 1:
        return socket.socket(fileno=3)
    if not path:
        raise RuntimeError("no socket: set saltssh_socket or run under systemd's gfs2clvm-saltssh.socket")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(path)
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def main(args):
    """``service.py [--socket PATH]``: serve until killed (systemd stops it)."""
    from . import config  # pylint: disable=import-outside-toplevel

    conf = config.load()
    python = salt_python(conf["salt_ssh"])
    if os.path.realpath(python) != os.path.realpath(sys.executable):
        # the Salt named by salt_ssh serves (same pid: systemd's LISTEN_PID stays right)
        os.execv(python, [python, os.path.abspath(__file__), *args])
    path = args[1] if args[:1] == ["--socket"] and len(args) == 2 else conf.get("saltssh_socket")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    Server(conf, listener_socket(path)).serve()
    return 0
