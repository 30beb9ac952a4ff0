"""At most ``max_calls_per_host`` driver connections to one worker at a time.

oned runs many actions at once (its TM_MAD ``-t`` threads, plus the datastore and
monitor drivers), and a burst of them -- 20 VMs instantiated together -- would
otherwise open 20 ssh connections to one worker in the same second: past its sshd's
``MaxStartups`` (10 by default) sshd drops new connections at random, and 20 salt-ssh
shims start their Python on the worker at once.  So every salt-ssh call and every
data stream first takes one of ``limit`` slots of each host it reaches: lock files
``<dir>/<host>.<i>`` held with ``flock`` for the length of the call.  A call that
finds every slot of a host taken waits -- outside the call's ``timeout`` -- until one
frees, up to ``queue_timeout`` seconds, and says so once in oned's log.  A driver
process that dies releases its slots (the kernel drops its locks); nothing is ever
left to clean up.

``<dir>`` is ``$GFS2CLVM_SLOT_DIR`` or ``<tmp>/gfs2clvm-slots-<uid>``, created 0700
and refused unless it is a real directory of this user closed to others.  Slots are
taken in host order, one call at a time per process, so calls waiting for each
other's slots cannot deadlock.  ``limit`` 0 turns the limit off.
"""

import contextlib
import fcntl
import os
import re
import stat
import tempfile
import time

from .core import DriverError, info

ENV_DIR = "GFS2CLVM_SLOT_DIR"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
POLL_FIRST = 0.02  # seconds between tries while waiting, growing ...
POLL_MAX = 0.5  # ... up to this


def slot_dir():
    """The private directory of the slot files (created 0700; refused when unsafe)."""
    path = os.environ.get(ENV_DIR) or os.path.join(tempfile.gettempdir(), f"gfs2clvm-slots-{os.getuid()}")
    return private_dir(path, "call slot directory", DriverError)


def private_dir(path, what, error=DriverError):
    """``path``, created 0700 when missing; refused (``error``) unless it is a real
    directory of this user closed to others."""
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


def for_conf(conf, hosts, label):
    """``held`` with the limits of a driver configuration (defaults for missing keys);
    a call that has to wait says so in oned's log as ``<label> <host>: waiting, …``."""
    from .config import DEFAULTS

    def get(key):
        value = conf.get(key)
        return DEFAULTS[key] if value is None else value

    def waiting(host, limit):
        info(f"{label} {host}: waiting, {limit} driver calls to {host} are running (max_calls_per_host)")

    return held(hosts, get("max_calls_per_host"), get("queue_timeout"), waiting)


@contextlib.contextmanager
def held(hosts, limit, wait, waiting=None):
    """Hold one slot of every host of ``hosts`` for the ``with`` block.

    ``limit``: slots per host (0: no limit); ``wait``: seconds to wait for a free one
    before raising DriverError; ``waiting(host, limit)`` is called once per host the
    call has to wait for."""
    limit, wait = int(limit), float(wait)
    if limit <= 0:
        yield
        return
    directory = slot_dir()
    fds = []
    try:
        for host in sorted(set(hosts)):
            fds.append(_take(directory, host, limit, wait, waiting))
        yield
    finally:
        for fd in fds:
            os.close(fd)  # closing the last descriptor of the open file drops the lock


def busy(host, limit):
    """How many slots of ``host`` are held right now (a report; takes nothing)."""
    directory = slot_dir()
    count = 0
    for fd in _open_all(directory, host, limit):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            count += 1
        finally:
            os.close(fd)
    return count


def _open_all(directory, host, limit):
    name = _UNSAFE.sub("_", str(host)) or "_"
    fds = []
    try:
        for i in range(limit):
            fds.append(os.open(os.path.join(directory, f"{name}.{i}"),
                               os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
    except OSError as err:
        for fd in fds:
            os.close(fd)
        raise DriverError(f"cannot open the call slots of {host} in {directory}: {err.strerror}") from None
    return fds


def _take(directory, host, limit, wait, waiting):
    """The descriptor of a free slot of ``host`` (locked), waiting for one if need be."""
    fds = _open_all(directory, host, limit)
    deadline = time.monotonic() + wait
    delay, said = POLL_FIRST, False
    # start at a slot of our own so that simultaneous callers spread over the slots
    first = os.getpid() % limit
    try:
        while True:
            for k in range(limit):
                fd = fds[(first + k) % limit]
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                fds.remove(fd)
                return fd
            if not said and waiting is not None:
                waiting(host, limit)
                said = True
            if time.monotonic() >= deadline:
                raise DriverError(
                    f"{host}: all {limit} call slots busy for {wait:g} s "
                    "(max_calls_per_host / queue_timeout of the driver configuration)"
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, POLL_MAX)
    finally:
        for fd in fds:
            os.close(fd)
