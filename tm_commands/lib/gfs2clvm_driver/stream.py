"""The data path: front-end bytes cross the SSH link as ONE stream.

Bytes that only exist on the front-end (an image file being imported, context
files too large for salt-ssh arguments) are written by ``ssh <host> dd`` as the
configured user into a staging file on the workers' GFS2
(``<mountpoint>/.gfs2clvm-staging/<name>``), hashing them on the way.  The
action's one salt-ssh call then hands the staging path, byte count and sha256 to
the module, which verifies them before using the file and always removes it.

The remote command is a fixed template of validated, shell-quoted words.  It
refuses to write unless the mountpoint holds the expected filesystem
(``mount_check``: gfs2 / mount / none).
"""

import hashlib
import os
import shlex
import subprocess
import uuid

from . import slots, validate
from .core import DriverError

STAGING = ".gfs2clvm-staging"
CHUNK = 4 * 1024 * 1024


def staging_path(conf, suffix):
    """A fresh staging path on the workers' GFS2."""
    name = f"{uuid.uuid4().hex}.{suffix}"
    return os.path.join(conf["mountpoint"], STAGING, name)


def remote_command(conf, target):
    """The shell text ssh runs on the worker (all words quoted, values validated)."""
    mountpoint = validate.path(conf["mountpoint"], "mountpoint")
    validate.path(target, "staging path", under=os.path.join(mountpoint, STAGING))
    q = shlex.quote
    check = {
        # stat names GFS2 "gfs/gfs2" (coreutils 9.1, in the lab's guests) or "gfs2"
        "gfs2": f'case "$(stat -f -c %T {q(mountpoint)})" in gfs2|gfs/gfs2) ;; *) false ;; esac',
        "mount": f"mountpoint -q {q(mountpoint)}",
        "none": "true",
    }.get(conf["mount_check"])
    if check is None:
        raise DriverError(f"invalid mount_check {conf['mount_check']!r}")
    return (
        f"{check} || {{ echo {q(mountpoint + ' is not mounted as required')} >&2; exit 3; }}; "
        f"umask 077 && mkdir -p {q(os.path.dirname(target))} && "
        f"dd of={q(target)} bs=4M status=none"
    )


def ssh_argv(conf, host):
    validate.host(host)
    return [conf["ssh"], *conf["ssh_options"], "-o", "BatchMode=yes", "-l", conf["user"], host, "--"]


def send(conf, host, source, target):
    """Stream ``source`` (an iterable of byte chunks) to ``target`` on ``host``.

    Returns ``(bytes, sha256 hex)`` of what was sent.  Holds one of ``host``'s call
    slots (``slots``) while the stream runs.
    """
    with slots.for_conf(conf, [host], "copy to"):
        return _send(conf, host, source, target)


def _send(conf, host, source, target):
    argv = ssh_argv(conf, host) + [remote_command(conf, target)]
    digest = hashlib.sha256()
    count = 0
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    except FileNotFoundError:
        raise DriverError(f"ssh not found at {conf['ssh']} (config ssh)") from None
    try:
        for chunk in source:
            digest.update(chunk)
            count += len(chunk)
            proc.stdin.write(chunk)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # the remote side ended early: its exit status and stderr say why
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdin = None  # closed (or broken): communicate() must not flush it
    try:
        _, err = proc.communicate(timeout=conf["timeout"])
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise DriverError(f"copy to {host}: no progress in {conf['timeout']} s") from None
    if proc.returncode != 0:
        text = " ".join(err.decode(errors="replace").split()) or f"exit {proc.returncode}"
        raise DriverError(f"copy to {host}:{target} failed: {text}")
    return count, digest.hexdigest()


def file_chunks(path):
    """Read a local file in 4 MiB chunks."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 -- closed by the generator
    except OSError as err:
        raise DriverError(f"cannot read {path}: {err.strerror}") from None
    with handle:
        while True:
            chunk = handle.read(CHUNK)
            if not chunk:
                return
            yield chunk
