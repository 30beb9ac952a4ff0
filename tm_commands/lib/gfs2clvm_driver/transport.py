# SPDX-License-Identifier: Apache-2.0
"""The driver's one salt-ssh call, run inside this process (a drop-in for ``subprocess.run``).

``run(argv)`` takes the exact argv ``saltssh.build_argv()`` builds
(``<salt-ssh> --saltfile F --out json --static ... target fun args``) and returns
``(returncode, stdout, stderr)`` as ``subprocess.run(argv, capture_output=True,
text=True, stdin=DEVNULL)`` would -- but instead of starting the ``salt-ssh``
script it runs Salt's own CLI code (``salt.cli.ssh.SaltSSH`` option parser +
``salt.client.ssh.SSH``) here, when that script belongs to this Python.  Three
things make the call cheaper, none of them changes what Salt does:

* no second Python start-up and Salt import (the driver process is already running);
* Salt's fixed waits: ``salt.utils.vt.Terminal.close``/``terminate`` sleep 0.1 s per
  step for the ssh child to exit, ``SSH.handle_ssh`` polls its per-host process
  every 0.1 s and ``Shell._run_nb_cmd`` every 0.1 s.  For the duration of the call
  the ``time`` name in those three modules is a ``FastTime`` whose ``sleep(s)`` of
  ``s >= 0.05`` returns as soon as a child that the sleeping process started during
  the call has exited (``waitid(P_PID, ..., WNOWAIT)`` per child listed in
  ``/proc/<pid>/task/*/children``: nothing is reaped, Salt still sees the child) and
  otherwise after ``s`` -- so Salt waits exactly as long as it needs to, and its ssh
  child is never signalled earlier than before (a plain ``min(s, 0.005)`` could
  SIGHUP an ssh still exiting and turn a success into exit 129).  Children the
  caller already had (a stale zombie) never count, an exit wakes at most 3 sleeps
  within 1 s (Salt reaps right after), and with no such exit -- no child at all,
  children still running -- the sleep is the real one.  Shorter sleeps (the 0.01 s
  read poll) are untouched;
* ssh multiplexing: unless the roster entry or the master config already sets
  ``ssh_options`` with a ``ControlPath``, the call adds ``ControlMaster=auto``,
  ``ControlPath=<private dir>/<config key>-%C`` and ``ControlPersist=60``: the next
  action to the same worker within a minute skips the ssh handshake.  The config key
  hashes the master config, roster and known_hosts (contents too) and the key path,
  so a call never rides on a master opened under another configuration (whose host
  key check or key it would inherit).  The directory is ``$GFS2CLVM_SSH_CM_DIR`` or
  ``<tmp>/gfs2clvm-cm-<uid>``, created 0700 and refused unless it is a real
  directory owned by this user and closed to others.  ``GFS2CLVM_SSH_MUX=0`` leaves
  multiplexing out.

``progress`` (a callable) relays the worker's ``gfs2clvm-progress: <percent> <done>
<total>`` stderr lines while the call runs: Salt's per-host process reads the ssh
stderr chunk by chunk (``Terminal.recv``), the relay scans those chunks and calls
``progress(host, percent, done, total)`` there with ``sys.stderr`` on a dup of this
process's real stderr (fd 2 itself is captured during the call).

Everything is scoped to the call: file descriptors 0/1/2, ``sys.std*``, the three
``time`` names, ``Terminal.recv`` and ``SSH.handle_routine`` (progress), the root
logger, Salt's logging set-up, ``sys.excepthook``, the SIGINT/SIGTERM handlers, the
umask, the working directory and the environment are restored afterwards, so a
process can make many calls.

The subprocess is used instead when Salt is not importable here, when ``argv[0]``
is not Salt's ``salt-ssh`` script of this Python (its ``#!`` interpreter lives in
another prefix: another Salt; or it is not the ``salt.scripts.salt_ssh`` entry
point: a wrapper or a stand-in), or when ``GFS2CLVM_TRANSPORT=subprocess``.
``python -m gfs2clvm_driver.transport <argv...>`` runs one call and exits with its
code (used by bench/run.py).
"""

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time as _time

MIN_FAST = 0.05  # sleeps at least this long wake early when a child exits
STEP = 0.005  # poll step of those sleeps
GRACE = 1.0  # an exited child wakes sleeps only this long after it was first seen ...
MAX_WAKES = 3  # ... and at most this many (Terminal.close + terminate sleep twice before reaping)
CM_PERSIST = 60
ENV_MODE = "GFS2CLVM_TRANSPORT"  # "subprocess" forces the subprocess, "inprocess" forbids it
ENV_CM_DIR = "GFS2CLVM_SSH_CM_DIR"
ENV_MUX = "GFS2CLVM_SSH_MUX"  # "0": no ssh multiplexing added
PATCHED_MODULES = ("salt.utils.vt", "salt.client.ssh", "salt.client.ssh.shell")


class TransportError(RuntimeError):
    """The in-process call could not be set up (GFS2CLVM_TRANSPORT=inprocess)."""


# --------------------------------------------------------------------------
# the time wrapper
# --------------------------------------------------------------------------
def _children(pid=None):
    """PIDs of the children of ``pid`` (default: this process), exited-unreaped ones included;
    None when the kernel does not list them (no ``/proc/<pid>/task/<tid>/children``)."""
    pid = os.getpid() if pid is None else pid
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    found, listed = set(), False
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                found.update(int(word) for word in handle.read().split())
            listed = True
        except (OSError, ValueError):
            continue  # the thread ended meanwhile (or no CONFIG_PROC_CHILDREN)
    return found if listed else None


def _exited(pid):
    """The start time of child ``pid`` when it has exited and is not reaped yet, else None.

    ``waitid(..., WNOWAIT)`` leaves the child to its owner, who still reaps its status.
    The start time (``/proc/<pid>/stat`` field 22) tells a reused pid from the old one."""
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except OSError:  # reaped meanwhile (ChildProcessError), EINTR: not an exit to wake for
        return None
    if info is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def _awaited_pid(frame):
    """The pid a sleeping method waits for: ``self.pid`` of the object whose method sleeps
    (``salt.utils.vt.Terminal.close``/``terminate`` wait for their ssh child), else None."""
    owner = frame.f_locals.get("self") if frame is not None else None
    pid = getattr(owner, "pid", None) if owner is not None else None
    return pid if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0 else None


def _gone_or_exited(pid):
    """True when ``pid`` has exited (reaped or not) or is no child of this process."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True  # reaped already (Terminal.recv reaps at EOF): nothing to wait for
    except OSError:
        return False


class FastTime:
    """Stands in for the ``time`` module; ``sleep`` wakes up when a child started during the call exits.

    Only children of the sleeping process count, and not those the process already had
    when the wrapper was made (a stale zombie of the caller never wakes anything).  A
    child's exit wakes at most ``max_wakes`` sleeps, and only within ``grace`` seconds of
    being first seen: its owner reaps it right after the sleep it waits in, so an exited
    child that is still there later is nobody's business and the sleeps last their full
    time again.  With no such exit (no child at all, only running children) a sleep
    lasts exactly as long as asked.  When the kernel does not list children, every
    sleep is the real one.

    A method of an object owning a process (``self.pid``: ``salt.utils.vt.Terminal``'s
    ``close``/``terminate``) waits for that process only: at once when it has exited
    or was reaped already (Salt reaps its ssh at EOF, then sleeps 2 x 0.1 s in
    ``close``), else until it exits or ``seconds`` have passed.
    """

    def __init__(self, real=_time, min_fast=MIN_FAST, step=STEP, grace=GRACE, max_wakes=MAX_WAKES):
        self._real, self._min_fast, self._step = real, min_fast, step
        self._grace, self._max_wakes = grace, max_wakes
        self._owner = os.getpid()
        self._before = frozenset(_children() or ())
        self._seen = {}  # (sleeper pid, child pid, child start) -> [first seen, wakes]
        self.wakes = 0  # sleeps ended early (diagnostics, tests)

    def __getattr__(self, name):
        return getattr(self._real, name)

    def _old(self):
        # a process forked from the owner starts without children: nothing of it is old
        return self._before if os.getpid() == self._owner else frozenset()

    def _exit_to_wake_for(self):
        """True when a child started during the call has exited and may end this sleep;
        None when children cannot be listed."""
        kids = _children()
        if kids is None:
            return None
        me, now = os.getpid(), self._real.monotonic()
        for kid in kids - self._old():
            start = _exited(kid)
            if start is None:
                continue
            seen = self._seen.setdefault((me, kid, start), [now, 0])
            if seen[1] < self._max_wakes and now - seen[0] <= self._grace:
                seen[1] += 1
                return True
        return False

    def sleep(self, seconds):
        if seconds < self._min_fast:
            self._real.sleep(seconds)
            return
        deadline = self._real.monotonic() + seconds
        awaited = _awaited_pid(sys._getframe(1))  # pylint: disable=protected-access
        while True:
            wake = self._exit_to_wake_for() if awaited is None else _gone_or_exited(awaited)
            left = deadline - self._real.monotonic()
            if wake:
                self.wakes += 1
                return
            if left <= 0:
                return
            self._real.sleep(left if wake is None else min(self._step, left))


@contextlib.contextmanager
def fast_sleeps(modules=PATCHED_MODULES):
    """Within the block, the ``time`` name of ``modules`` is a ``FastTime``."""
    saved = []
    fast = FastTime()
    try:
        for name in modules:
            mod = sys.modules.get(name)
            if mod is not None and hasattr(mod, "time"):
                saved.append((mod, mod.time))
                mod.time = fast
        yield fast
    finally:
        for mod, orig in reversed(saved):
            mod.time = orig


# --------------------------------------------------------------------------
# ssh multiplexing
# --------------------------------------------------------------------------
def private_dir(path, what, error=None):
    """``path``, created 0700 when missing; refused (``error``, default TransportError)
    unless it is a real directory of this user closed to others."""
    error = error or TransportError
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as err:
        raise error(f"cannot create the {what} {path}: {err.strerror}") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise error(f"{what} {path} must be a directory of uid {os.getuid()} with mode 0700")
    return path


def control_dir():
    """The private ControlPath directory (created 0700; refused when unsafe)."""
    return private_dir(os.environ.get(ENV_CM_DIR) or os.path.join(tempfile.gettempdir(), f"gfs2clvm-cm-{os.getuid()}"),
                       "ssh control directory")
    return path


def config_key(opts):
    """8 hex naming the ssh set-up of a salt-ssh configuration: its master config, roster and
    known_hosts (paths and contents) and key path.  A master connection carries the
    authentication (key, host key check) of the call that opened it, so a call with
    another configuration -- another known_hosts, another roster -- never reuses it."""
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


def mux_options(existing, key=""):
    """ssh ``-o`` options for multiplexing, unless ``existing`` already multiplexes.

    ``key`` (``config_key``) is part of the socket name: one master per configuration."""
    keys = {str(opt).split("=", 1)[0].strip().lower() for opt in existing or ()}
    if keys & {"controlmaster", "controlpath", "controlpersist"}:
        return []
    path = control_dir()
    name = f"{key}-%C" if key else "%C"
    # ssh binds <path>/<name with %C = 40 hex>.<17 random chars>: a Unix socket path has 107 bytes at most
    if len(os.fsencode(path)) + 1 + len(name) - 2 + 40 + 18 > 107:
        return []
    return ["ControlMaster=auto", f"ControlPath={path}/{name}", f"ControlPersist={CM_PERSIST}"]


# --------------------------------------------------------------------------
# deciding
# --------------------------------------------------------------------------
def _interpreter(script):
    """The interpreter path of a ``#!`` script (``env`` resolved), or None."""
    try:
        with open(script, "rb") as handle:
            line = handle.readline(512)
    except OSError:
        return None
    if not line.startswith(b"#!"):
        return None
    words = line[2:].decode(errors="replace").split()
    if not words:
        return None
    if os.path.basename(words[0]) == "env":
        words = [w for w in words[1:] if not w.startswith("-")]
        return shutil.which(words[0]) if words else None
    return words[0]


def _is_salt_script(script):
    """Does ``script`` run Salt's own ``salt_ssh`` entry point (pip's or a distribution's script)?"""
    try:
        with open(script, "rb") as handle:
            text = handle.read(4096)
    except OSError:
        return False
    return b"salt.scripts" in text and b"salt_ssh" in text


def _same_prefix(interp):
    """Is ``interp`` this Python (same venv/prefix, so the same Salt)?"""
    if not interp:
        return False
    prefix = os.path.dirname(os.path.dirname(os.path.abspath(interp)))
    return os.path.realpath(prefix) == os.path.realpath(sys.prefix)


def _salt_ssh_of_this_python(argv):
    """None when ``argv`` is a call of this Python's own salt-ssh (without importing Salt), else why not."""
    mode = os.environ.get(ENV_MODE, "auto")
    if mode == "subprocess":
        return f"{ENV_MODE}=subprocess"
    if not argv or os.path.basename(argv[0]) != "salt-ssh":
        return "not a salt-ssh command"
    if not _same_prefix(_interpreter(argv[0])):
        return f"{argv[0]} runs another Python than {sys.executable}"
    if not _is_salt_script(argv[0]):
        return f"{argv[0]} is not Salt's salt-ssh script"
    return None


def in_process_possible(argv):
    """(True, "") when ``argv`` can run here, else (False, why)."""
    why = _salt_ssh_of_this_python(argv)
    if why:
        return False, why
    try:
        _import_salt()
    except Exception as err:  # noqa: BLE001 -- any import failure means: use the subprocess
        return False, f"salt not importable: {err}"
    return True, ""


def _import_salt():
    """Import Salt's CLI code; undo the logging handler Salt's import adds to the root logger."""
    if "salt.client.ssh" in sys.modules and "salt.cli.ssh" in sys.modules:
        return
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import salt.cli.ssh  # noqa: F401 pylint: disable=unused-import,import-outside-toplevel
    import salt.client.ssh  # noqa: F401 pylint: disable=unused-import,import-outside-toplevel

    _reset_salt_logging()
    root.handlers[:] = handlers
    root.setLevel(level)


# --------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------
def run(argv, timeout=None, multiplex=None, progress=None):
    """One salt-ssh call; returns ``(returncode, stdout, stderr)``.

    ``multiplex``: add the ssh multiplexing options (default: unless ``GFS2CLVM_SSH_MUX=0``).
    ``progress``: ``progress(host, percent, done, total)`` is called for every
    ``gfs2clvm-progress: <percent> <bytes done> <bytes total>`` line a worker writes to
    its stderr, while the call runs (in-process only; in Salt's per-host process, with
    ``sys.stderr`` writing to this process's real stderr).  The lines stay in ``stderr``.

    Raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds and
    ``FileNotFoundError`` when the salt-ssh of ``argv[0]`` does not exist, like
    ``subprocess.run``.
    """
    argv = [str(a) for a in argv]
    if _WARM and _salt_ssh_of_this_python(argv) is None:
        from . import warm  # pylint: disable=import-outside-toplevel

        if warm.enabled():
            result = warm.call(argv, timeout, multiplex, progress)
            if result is not None:
                return result
    return run_here(argv, timeout, multiplex, progress)


_WARM = []


def allow_warm(allowed=True):
    """Let ``run`` hand its calls to the warm process (``warm.py``): the executables do
    (``core.run_main``, for the length of the action)."""
    _WARM[:] = [True] if allowed else []


def run_here(argv, timeout=None, multiplex=None, progress=None):
    """``run`` in this process (in-process, or the subprocess), never the warm process."""
    argv = [str(a) for a in argv]
    possible, why = in_process_possible(argv)
    if not possible:
        if os.environ.get(ENV_MODE) == "inprocess":
            raise TransportError(f"in-process salt-ssh impossible: {why}")
        return run_subprocess(argv, timeout)
    return run_in_process(argv, timeout, multiplex, progress)


def run_subprocess(argv, timeout=None):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def run_in_process(argv, timeout=None, multiplex=None, progress=None):
    if multiplex is None:
        multiplex = os.environ.get(ENV_MUX, "1") != "0"
    _quick_exit_once()
    with _progress_relay(progress), _captured() as out, _restored_state(), fast_sleeps():
        # optparse names the program (usage text, the Saltfile's "salt-ssh:" section) after sys.argv[0]
        saved_argv, sys.argv = sys.argv, list(argv)
        watchdog = _Watchdog(timeout)
        try:
            code = _salt_ssh_main(argv[1:], multiplex)
        finally:
            watchdog.cancel()
            sys.argv = saved_argv
    stdout, stderr = out
    if watchdog.fired:
        raise subprocess.TimeoutExpired(argv, timeout, output=stdout, stderr=stderr)
    return code, stdout, stderr


_QUICK_EXIT = []


def _quick_exit_once():
    """At interpreter exit, freeze the garbage collector (``gc.freeze``).

    With Salt imported the process holds a few hundred thousand objects; the final
    collections of Python's shutdown then cost ~0.1-0.25 s of CPU per action (measured:
    ``import salt.client.ssh`` alone exits in 0.10 s, 0.02 s frozen).  Frozen, they are
    freed by reference counting only; nothing is collected any more once the process is
    exiting anyway (atexit handlers, logging's flush, still run).  Registered once, by the
    first in-process call, so a long-lived caller is not affected until it exits."""
    if not _QUICK_EXIT:
        import atexit  # pylint: disable=import-outside-toplevel
        import gc  # pylint: disable=import-outside-toplevel

        atexit.register(gc.freeze)
        _QUICK_EXIT.append(True)


def _salt_ssh_main(args, multiplex):
    """What the ``salt-ssh`` script does (salt.scripts.salt_ssh), returning the exit code."""
    import salt.cli.ssh  # pylint: disable=import-outside-toplevel
    import salt.client.ssh  # pylint: disable=import-outside-toplevel
    from salt.exceptions import SaltClientError  # pylint: disable=import-outside-toplevel

    client = None
    try:
        client = salt.cli.ssh.SaltSSH()
        client.parse_args(args)
        if multiplex:
            client.config["ssh_options"] = list(client.config.get("ssh_options") or [])
            client.config["ssh_options"] += mux_options(client.config["ssh_options"], config_key(client.config))
        ssh = salt.client.ssh.SSH(client.config)
        try:
            ssh.run()
        finally:
            ssh.fsclient.destroy()
    except SaltClientError as err:
        print(str(err), file=sys.stderr, flush=True)
        return 1
    except SystemExit as exc:
        return _exit_code(exc.code)
    except KeyboardInterrupt:
        return 130
    except Exception:  # noqa: BLE001 -- the script would print a traceback and exit 1
        import traceback  # pylint: disable=import-outside-toplevel

        traceback.print_exc()
        return 1
    return 0


def _exit_code(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


# --------------------------------------------------------------------------
# progress lines of the worker, live
# --------------------------------------------------------------------------
PROGRESS_MARK = "gfs2clvm-progress:"


def parse_progress(line):
    """``(percent, done, total)`` of a ``gfs2clvm-progress: <percent> <done> <total>`` line, else None."""
    line = line.strip()
    if not line.startswith(PROGRESS_MARK):
        return None
    words = line[len(PROGRESS_MARK):].split()
    if len(words) != 3:
        return None
    try:
        percent, done, total = float(words[0]), int(words[1]), int(words[2])
    except ValueError:
        return None
    if not (0 <= percent <= 100 and 0 <= done and 0 <= total):
        return None
    return percent, done, total


class _Relay:
    """Scans the stderr chunks Salt's per-host process reads from ssh for progress lines."""

    def __init__(self, callback, fd):
        self.callback, self.fd = callback, fd
        self.host = None  # set in Salt's per-host process (SSH.handle_routine)
        self.partial = {}  # id(Terminal) -> the unfinished last line

    def feed(self, key, chunk):
        text = self.partial.pop(key, "") + chunk
        *lines, rest = text.split("\n")
        if rest:
            self.partial[key] = rest[-4096:]
        for line in lines:
            parsed = parse_progress(line)
            if parsed is not None:
                self.report(*parsed)

    def report(self, percent, done, total):
        saved = sys.stderr
        stream = open(self.fd, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        try:
            sys.stderr = stream
            self.callback(self.host, percent, done, total)
        finally:
            sys.stderr = saved
            with contextlib.suppress(Exception):
                stream.flush()
            stream.close()


@contextlib.contextmanager
def _progress_relay(callback):
    """Within the block Salt's ``Terminal.recv`` shows stderr to a relay calling ``callback``."""
    if callback is None:
        yield None
        return
    import salt.client.ssh  # pylint: disable=import-outside-toplevel
    import salt.utils.vt  # pylint: disable=import-outside-toplevel

    terminal, ssh = salt.utils.vt.Terminal, salt.client.ssh.SSH
    recv, routine = terminal.__dict__["recv"], ssh.__dict__["handle_routine"]
    fd = os.dup(2)  # the caller's real stderr (fd 2 itself is captured during the call)
    relay = _Relay(callback, fd)

    def relaying_recv(term, maxsize=None):
        out, err = recv(term, maxsize)
        if err:
            try:
                relay.feed(id(term), err)
            except Exception:  # noqa: BLE001 -- progress must never break the call
                pass
        return out, err

    def host_routine(self, que, opts, host, *args, **kwargs):
        relay.host = host
        return routine(self, que, opts, host, *args, **kwargs)

    terminal.recv, ssh.handle_routine = relaying_recv, host_routine
    try:
        yield relay
    finally:
        terminal.recv, ssh.handle_routine = recv, routine
        os.close(fd)


@contextlib.contextmanager
def _captured():
    """Redirect fds 0/1/2 (and sys.std*) for the block; yields [stdout, stderr] filled at the end."""
    result = ["", ""]
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved_fds = [os.dup(fd) for fd in (0, 1, 2)]
    saved_std = (sys.stdin, sys.stdout, sys.stderr)
    null = os.open(os.devnull, os.O_RDONLY)
    files = [tempfile.TemporaryFile(), tempfile.TemporaryFile()]
    try:
        os.dup2(null, 0)
        os.dup2(files[0].fileno(), 1)
        os.dup2(files[1].fileno(), 2)
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 -- closed below
        sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False,  # noqa: SIM115
                          buffering=1)
        try:
            yield result
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            for stream in (sys.stdin, sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.close()
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved_std
        for fd, saved in zip((0, 1, 2), saved_fds):
            os.dup2(saved, fd)
            os.close(saved)
        os.close(null)
        for i, handle in enumerate(files):
            handle.seek(0)
            result[i] = handle.read().decode("utf-8", errors="replace")
            handle.close()


@contextlib.contextmanager
def _restored_state():
    """Undo what Salt's CLI set-up changes in the process (logging, hooks, signals, umask, cwd, env)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    root.handlers[:] = []  # the call's records go to the call's handlers only
    salt_logging = _stash_salt_logging()
    hook = sys.excepthook
    sigs = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    umask = os.umask(0o022)
    os.umask(umask)
    cwd = os.getcwd()
    environ = dict(os.environ)
    try:
        yield
    finally:
        _reset_salt_logging()
        _unstash_salt_logging(salt_logging)
        root.handlers[:] = handlers
        root.setLevel(level)
        sys.excepthook = hook
        if threading.current_thread() is threading.main_thread():
            for sig, handler in sigs.items():
                if handler is not None:
                    signal.signal(sig, handler)
        os.umask(umask)
        with contextlib.suppress(OSError):
            os.chdir(cwd)
        if dict(os.environ) != environ:
            os.environ.clear()
            os.environ.update(environ)


_SALT_LOGGING_STATE = (("setup_temp_handler", "__handler__"), ("setup_console_handler", "__handler__"),
                       ("setup_logfile_handler", "__handler__"), ("set_logging_options_dict", "__options_dict__"),
                       ("set_lowest_log_level", "__log_level__"))


def _stash_salt_logging():
    """Take away the logging set-up Salt may already have in this process (restored afterwards)."""
    impl = sys.modules.get("salt._logging.impl")
    saved = {}
    if impl is None:
        return saved
    for func, attr in _SALT_LOGGING_STATE:
        holder = getattr(impl, func)
        if attr in holder.__dict__:
            saved[(func, attr)] = holder.__dict__.pop(attr)
    return saved


def _unstash_salt_logging(saved):
    impl = sys.modules.get("salt._logging.impl")
    if impl is None:
        return
    for (func, attr), value in saved.items():
        setattr(getattr(impl, func), attr, value)


def _reset_salt_logging():
    try:
        import salt._logging.impl as impl  # pylint: disable=import-outside-toplevel
    except Exception:  # noqa: BLE001
        return
    temp = impl.get_temp_handler()
    if temp is not None:  # Salt's deferred handler: write what it holds into this call's stderr
        with contextlib.suppress(Exception):
            temp.flush()
        with contextlib.suppress(ValueError):
            logging.getLogger().removeHandler(temp)
        with contextlib.suppress(AttributeError):
            delattr(impl.setup_temp_handler, "__handler__")
    with contextlib.suppress(Exception):
        impl.shutdown_logging()
    for func, attr in _SALT_LOGGING_STATE:
        with contextlib.suppress(AttributeError):
            delattr(getattr(impl, func), attr)


class _Watchdog:
    """Kills the call's child processes (and theirs) after ``timeout`` seconds.

    Only the call's: children this process already had when the call began (and their
    descendants) are left alone, so a long-lived caller keeps its own processes."""

    def __init__(self, timeout):
        self.fired = False
        self._timer = None
        self._before = frozenset(_children() or ())
        if timeout:
            self._timer = threading.Timer(timeout, self._fire)
            self._timer.daemon = True
            self._timer.start()

    def cancel(self):
        if self._timer:
            self._timer.cancel()

    def _fire(self):
        self.fired = True
        for pid in _descendants(os.getpid(), skip=self._before):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _descendants(root, skip=()):
    """PIDs of every descendant of ``root`` (from /proc), deepest first; the children of
    ``root`` in ``skip`` and their descendants left out."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        parent = todo.pop()
        for child in children.get(parent, []):
            if parent == root and child in skip:
                continue
            found.append(child)
            todo.append(child)
    return list(reversed(found))


def main(argv=None):
    """``python -m gfs2clvm_driver.transport <salt-ssh argv...>``: one call, its output and exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.stderr.write("usage: python -m gfs2clvm_driver.transport SALT_SSH [salt-ssh args...]\n")
        return 2
    allow_warm()
    code, out, err = run(argv)
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
