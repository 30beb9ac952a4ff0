# SPDX-License-Identifier: Apache-2.0
"""The warm process: Salt imported once per front-end user, forked for every call.

Every driver action is a fresh process (oned starts one per action), and the
in-process transport (``transport.py``) still pays for importing Salt and setting it
up in each of them: 0.25 s of CPU on a quiet front-end, 0.5-0.7 s at load 5.  Like
ssh's ``ControlPersist`` for connections, the first action starts a *warm process*
in the background (it runs its own call in-process as before); the next actions hand
their salt-ssh argv to it over a Unix socket, it forks, and the fork -- Salt already
imported -- runs exactly the in-process call (``transport.run_here``) and sends back
``(returncode, stdout, stderr)`` and the worker's progress lines.  The action's own
process keeps everything else: arguments, validation, call slots, error lines.

Nothing depends on the warm process:

* no server (none started yet, gone idle, a stale socket) -> the call runs in the
  action's process, as without it, and a server is started for the next ones;
* the hand-over is two-phase: the fork says ``started``, the action answers ``go``,
  and only then does the fork run anything -- an action that gets no ``started``
  (a server that is exiting, stopped or overloaded: ``START_TIMEOUT``) runs the
  call itself and the fork, finding the socket closed, exits without doing anything;
* the fork watches the action's connection: an action killed by oned (or its
  timeout) closes it, and the fork kills every process of the call and exits --
  the same as killing an action that runs the call itself;
* a fork that dies mid-call fails the action with one error line (never "done").

The socket and its lock live in ``$GFS2CLVM_WARM_DIR`` or ``<tmp>/gfs2clvm-warm-<uid>``
(0700, refused otherwise); the server also checks that each peer runs as its own
user (``SO_PEERCRED``).  Their names carry a key of the Python, the salt-ssh script
and the driver library's files (path, size, mtime): after an upgrade the next action
starts a new server and the old one exits when idle.  A server exits after
``$GFS2CLVM_WARM_IDLE`` seconds (default 300) without a call.  One server per key:
the lock file is held with ``flock`` for the server's life.

``GFS2CLVM_WARM=0`` switches it off (every call in the action's process).  Only the
driver's executables use it (``core.run_main`` -> ``transport.allow_warm()``): a
library caller of ``transport.run`` runs its calls itself.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

if __name__ == "__main__" and not __package__:  # start_server: python3 -P <this file> serve SOCKET LOCK
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from gfs2clvm_driver.warm import script_main  # the package's module (its relative imports work)

    sys.exit(script_main(sys.argv[1:]))

from .transport import TransportError, private_dir  # noqa: E402

ENV_WARM = "GFS2CLVM_WARM"  # "0": off
ENV_DIR = "GFS2CLVM_WARM_DIR"
ENV_IDLE = "GFS2CLVM_WARM_IDLE"
IDLE = 300.0  # seconds without a call before the server exits
START_TIMEOUT = 10.0  # seconds an action waits for the fork's "started"
RESULT_GRACE = 60.0  # the fork's own watchdog fires at the call's timeout; the action waits this much longer
POLL = 1.0  # the server's loop: reap forks, idle check


class WarmError(TransportError):
    """The warm fork failed after it started the call (the action fails with one line)."""


def enabled():
    return os.environ.get(ENV_WARM, "1") != "0"


def _dir_path():
    """``$GFS2CLVM_WARM_DIR`` or ``<tmp>/gfs2clvm-warm-<uid>`` (not checked)."""
    return os.environ.get(ENV_DIR) or os.path.join(tempfile.gettempdir(), f"gfs2clvm-warm-{os.getuid()}")


def warm_dir():
    return private_dir(_dir_path(), "warm process directory")


def key(salt_ssh):
    """16 hex naming the code a server runs: this Python, the salt-ssh script, the driver library."""
    digest = hashlib.sha256()
    lib = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.realpath(sys.executable), os.path.realpath(salt_ssh)]
    with contextlib.suppress(OSError):
        paths += sorted(os.path.join(lib, n) for n in os.listdir(lib) if n.endswith(".py"))
    for path in paths:
        try:
            st = os.stat(path)
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}\n".encode())
        except OSError:
            digest.update(f"{path}\0-\n".encode())
    digest.update(f"{sys.prefix}\0{os.getuid()}".encode())
    return digest.hexdigest()[:16]


def paths(salt_ssh):
    base = os.path.join(warm_dir(), key(salt_ssh))
    return base + ".sock", base + ".lock"


# --------------------------------------------------------------------------
# the action's side
# --------------------------------------------------------------------------
def _send(sock, message):
    sock.sendall(json.dumps(message).encode() + b"\n")


def call(argv, timeout=None, multiplex=None, progress=None):
    """Run the salt-ssh call of ``argv`` in a fork of the warm server.

    Returns ``(returncode, stdout, stderr)``, or None when no server took the call
    (nothing ran: the caller runs it itself; a server is started for the next calls).
    Raises what ``transport.run`` raises."""
    try:
        sock_path, lock_path = paths(argv[0])
    except Exception:  # noqa: BLE001 -- an unusable directory: no warm process, the call still runs
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            sock.connect(sock_path)
        except OSError:
            start_server(sock_path, lock_path)
            return None
        request = {"argv": argv, "timeout": timeout, "multiplex": multiplex, "progress": progress is not None,
                   "env": dict(os.environ), "cwd": os.getcwd(), "umask": _umask()}
        reader = sock.makefile("rb")
        try:
            _send(sock, request)
            sock.settimeout(START_TIMEOUT)
            first = _message(reader)
        except (OSError, ValueError):
            return None  # nothing started: the server is exiting, stopped or too slow
        if not first or "started" not in first:
            return None
        _send(sock, {"go": True})
        sock.settimeout(None if timeout is None else timeout + RESULT_GRACE)
        return _results(reader, argv, timeout, progress, first["started"])
    finally:
        sock.close()


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _message(reader):
    line = reader.readline()
    return json.loads(line) if line else None


def _results(reader, argv, timeout, progress, pid):
    while True:
        try:
            message = _message(reader)
        except socket.timeout:
            raise subprocess.TimeoutExpired(argv, timeout) from None
        except (OSError, ValueError) as err:
            raise WarmError(f"lost the driver's warm process (pid {pid}) during the call: {err}") from None
        if message is None:
            raise WarmError(f"the driver's warm process (pid {pid}) died during the call")
        if "progress" in message:
            if progress is not None:
                with contextlib.suppress(Exception):  # progress never breaks the call
                    progress(*message["progress"])
            continue
        if "result" in message:
            code, out, err = message["result"]
            return code, out, err
        raised = message.get("raised") or {}
        kind, text = raised.get("type"), raised.get("text", "")
        if kind == "TimeoutExpired":
            raise subprocess.TimeoutExpired(argv, timeout, output=raised.get("stdout"), stderr=raised.get("stderr"))
        if kind == "FileNotFoundError":
            raise FileNotFoundError(errno.ENOENT, text, argv[0])
        if kind in ("TransportError", "WarmError"):
            raise TransportError(text)
        raise WarmError(f"the driver's warm process failed: {kind}: {text}")


def start_server(sock_path, lock_path):
    """Start a server in the background unless one holds the lock (starting or running)."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return  # a server holds it
    os.close(fd)  # (releases it: the server takes it; two racing starts -> one exits at once)
    # ps shows ".../python3 -P .../gfs2clvm_driver/warm.py serve <socket> <lock>"
    argv = [sys.executable, "-P", os.path.abspath(__file__), "serve", sock_path, lock_path]
    # double fork: the server is nobody's child (no zombie in a long-lived caller), in a
    # session of its own (oned's kill of an action's group spares it), no fd of the action
    # (oned waits for the action's stdout/stderr to close)
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                null = os.open(os.devnull, os.O_RDWR)
                for target in (0, 1, 2):
                    os.dup2(null, target)
                os.closerange(3, 65536)
                os.execv(sys.executable, argv)
        finally:
            os._exit(0)  # pylint: disable=protected-access
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


# --------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------
def serve(sock_path, lock_path, idle=None):
    """The warm server's main loop (``start_server`` runs it); returns its exit code."""
    if idle is None:
        try:
            idle = float(os.environ.get(ENV_IDLE) or IDLE)
        except ValueError:
            idle = IDLE
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return 0  # another server has it
    from . import transport  # pylint: disable=import-outside-toplevel

    signal.signal(signal.SIGTERM, _terminated)  # exit through the finally below (socket removed)
    transport._import_salt()  # pylint: disable=protected-access
    import gc  # pylint: disable=import-outside-toplevel

    gc.collect()
    gc.freeze()  # forks share these pages; their collections skip Salt's objects
    with contextlib.suppress(FileNotFoundError):
        os.unlink(sock_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(sock_path)
    finally:
        os.umask(old)
    listener.listen(128)
    inode = os.stat(sock_path).st_ino
    forks, last = set(), time.monotonic()
    try:
        while True:
            ready, _, _ = select.select([listener], [], [], POLL)
            if ready:
                with contextlib.suppress(OSError):
                    conn, _ = listener.accept()
                    last = time.monotonic()
                    if _peer_uid(conn) == os.getuid():
                        pid = os.fork()
                        if pid == 0:
                            signal.signal(signal.SIGTERM, signal.SIG_DFL)
                            listener.close()
                            os.close(lock)
                            _child(conn)  # never returns
                        forks.add(pid)
                    conn.close()
            for pid in list(forks):
                with contextlib.suppress(ChildProcessError):
                    if os.waitpid(pid, os.WNOHANG)[0] == 0:
                        continue
                forks.discard(pid)
                last = time.monotonic()
            try:
                if os.stat(sock_path).st_ino != inode:
                    return 0  # replaced: not ours any more
            except FileNotFoundError:
                return 0
            if not forks and time.monotonic() - last > idle:
                return 0
    finally:
        with contextlib.suppress(OSError):
            if os.stat(sock_path).st_ino == inode:
                os.unlink(sock_path)
        listener.close()
        os.close(lock)


def _terminated(signum, frame):  # pylint: disable=unused-argument
    sys.exit(0)


def stop(directory=None):
    """SIGTERM every warm server serving from ``directory`` (default: this user's); returns their pids.

    Operators do not need it (a server exits when idle, and an upgrade starts a new one);
    tests and the bench use it to leave nothing running."""
    directory = os.path.abspath(directory or _dir_path())
    prefix, pids = os.fsencode(directory) + b"/", []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                args = handle.read().split(b"\0")
        except OSError:
            continue
        is_server = any(a.endswith(b"/gfs2clvm_driver/warm.py") and b == b"serve" for a, b in zip(args, args[1:]))
        if is_server and any(a.startswith(prefix) for a in args):
            with contextlib.suppress(OSError):
                os.kill(int(entry), signal.SIGTERM)
                pids.append(int(entry))
    return pids


def _peer_uid(conn):
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _child(conn):
    """One call in a fork of the server; exits the process."""
    code = 1
    try:
        code = _child_call(conn)
    except BaseException:  # noqa: BLE001 -- a fork must never return into the server loop
        code = 1
    finally:
        os._exit(code)  # pylint: disable=protected-access


def _child_call(conn):
    reader = conn.makefile("rb")
    request = _message(reader)
    if not request:
        return 0
    _send(conn, {"started": os.getpid()})
    go = _message(reader)
    if not go or not go.get("go"):
        return 0  # the action runs the call itself
    # from here on the connection only closes when the action is gone: then stop the call
    threading.Thread(target=_watch, args=(conn,), daemon=True).start()
    from . import transport  # pylint: disable=import-outside-toplevel

    progress = None
    if request.get("progress"):
        def progress(host, percent, done, total):
            _send(conn, {"progress": [host, percent, done, total]})

    try:
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        code, out, err = transport.run_here(request["argv"], request.get("timeout"), request.get("multiplex"),
                                            progress)
        _send(conn, {"result": [code, out, err]})
    except subprocess.TimeoutExpired as exc:
        _send(conn, {"raised": {"type": "TimeoutExpired", "stdout": _text(exc.stdout), "stderr": _text(exc.stderr)}})
    except Exception as exc:  # noqa: BLE001 -- sent to the action, which raises it
        _send(conn, {"raised": {"type": type(exc).__name__, "text": str(exc)}})
    return 0


def _text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def _watch(conn):
    """The action closed the connection (it was killed): kill the call's processes, exit."""
    with contextlib.suppress(OSError, ValueError):
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        poller.poll()
    from .transport import _descendants  # pylint: disable=import-outside-toplevel

    for pid in _descendants(os.getpid()):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    os._exit(1)  # pylint: disable=protected-access


def script_main(args):
    """``warm.py serve SOCKET LOCK`` (how ``start_server`` runs the server)."""
    if len(args) != 3 or args[0] != "serve":
        sys.stderr.write("usage: warm.py serve SOCKET LOCK\n")
        return 2
    return serve(args[1], args[2])
