"""The one salt-ssh call of an action: build argv, run, parse JSON, map failures.

Arguments are JSON-encoded on the command line: salt parses every argument as
YAML, so a bare ``010`` would become 8 and ``yes`` a bool; a JSON string literal
stays a string, and ``"..."`` never looks like ``key=value``.

``--key-deploy`` without a password in the roster only switches off salt-ssh's
interactive "Permission denied ... deploy the salt-ssh key? [Y/n]" prompt (salt
3008 asks it whenever a return's stderr says "Permission denied", even when a
command on the worker said so): it can never deploy anything without a password.

salt-ssh puts the whole call (arguments base64-encoded again) into one ssh
argument, which Linux caps at 128 KiB: ``MAX_INLINE`` keeps well below.

The call runs through ``transport.run``: the gfs2clvm-saltssh service (Salt's
``SSHClient`` kept loaded, ssh multiplexing) when its socket (``saltssh_socket``)
answers, else the salt-ssh subprocess -- the same output either way.
"""

import json
import re
import subprocess

from . import slots, transport
from .core import DriverError, one_line
from .version import VERSION

PROGRESS_MARK = "gfs2clvm-progress:"  # a worker's copy progress line (never an error message)
MAX_INLINE = 24 * 1024  # bytes of encoded arguments per call (x ~3.6 in the shim)
_ERROR_PREFIX = re.compile(r"^Error running '[\w.]+': ")
# ssh's own notes when the worker's sshd refuses another session on the shared master
# (MaxSessions): ssh then opens a connection of its own and the call goes on.
_MUX_NOTE = re.compile(r"^(mux_client_[a-z_]+: |ControlSocket .* already exists, disabling multiplexing)")


def build_argv(conf, targets, fun, args=(), kwargs=None):
    """The exact argv of one salt-ssh call (no -i, no -W/-w, no tty)."""
    targets = list(targets)
    argv = [
        conf["salt_ssh"],
        "--saltfile", conf["saltfile"],
        "--out", "json", "--static",
        "-l", "warning",
        "--key-deploy",
    ]
    argv += ["-L", ",".join(targets)] if len(targets) > 1 else [targets[0]]
    argv.append(fun)
    argv += [json.dumps(a) for a in args]
    argv += [f"{k}={json.dumps(v)}" for k, v in sorted((kwargs or {}).items()) if v is not None]
    size = sum(len(a) for a in argv[argv.index(fun):])
    if size > MAX_INLINE:
        raise DriverError(
            f"{fun}: arguments too large for one salt-ssh call ({size} bytes > {MAX_INLINE})"
        )
    return argv


def salt_ssh(host, fun, *args, conf=None, **kwargs):
    """Run ``fun`` on ``host`` in exactly one salt-ssh call; return its value.

    ``conf``: the driver Config (default: ``config.load()``); ``kwargs`` go to
    ``fun`` (None values are left out).
    """
    return salt_ssh_many([host], fun, *args, conf=conf, **kwargs)[host]


def salt_ssh_many(hosts, fun, *args, conf=None, **kwargs):
    """Run ``fun`` on every host of ``hosts`` in ONE salt-ssh call (``-L``).

    Returns ``{host: value}``; any host failing raises DriverError naming it.
    """
    if conf is None:
        from . import config

        conf = config.load()
    hosts = list(dict.fromkeys(hosts))
    argv = build_argv(conf, hosts, fun, args, kwargs)
    try:
        with slots.for_conf(conf, hosts, fun.rsplit(".", 1)[-1]):
            code, stdout, stderr = transport.run(argv, timeout=conf["timeout"], socket_path=conf.get("saltssh_socket"))
    except FileNotFoundError:
        raise DriverError(f"salt-ssh not found at {conf['salt_ssh']} (config salt_ssh)") from None
    except subprocess.TimeoutExpired:
        raise DriverError(f"{fun} on {', '.join(hosts)}: no answer in {conf['timeout']} s") from None
    except transport.TransportError as err:
        raise DriverError(str(err)) from None
    stderr = without_progress(stderr)
    try:
        data = json.loads(stdout) if stdout.strip() else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise DriverError(
            f"{fun} on {', '.join(hosts)}: salt-ssh exit {code}: "
            f"{_last_line(stderr or stdout)}"
        )
    failures = []
    for host in hosts:
        if host not in data:
            if "No matching targets" in stderr:
                failures.append(f"host {host} is not in the salt-ssh roster")
            else:
                failures.append(f"no answer from {host}: {_last_line(stderr)}")
            continue
        problem = failure_text(fun, host, data[host])
        if problem:
            failures.append(version_hint(fun, host, problem))
    if failures:
        raise DriverError("; ".join(failures))
    if code != 0:
        # every value looked like a success, yet salt-ssh says the call failed: never
        # report that as done
        values = "; ".join(f"{host}: {_last_line(data[host]) if isinstance(data[host], str) else 'returned'}"
                           for host in hosts)
        raise DriverError(f"{fun} on {', '.join(hosts)}: salt-ssh exit {code} ({values}): "
                          f"{_last_line(stderr) if stderr.strip() else 'no message'}")
    return {host: data[host] for host in hosts}


def without_progress(text):
    """``text`` without the worker's ``gfs2clvm-progress:`` lines and ssh's multiplexing
    notes (never an error message)."""
    text = str(text or "")
    if PROGRESS_MARK not in text and "mux_client_" not in text and "ControlSocket " not in text:
        return text
    return "".join(line for line in text.splitlines(keepends=True)
                   if not line.lstrip().startswith(PROGRESS_MARK) and not _MUX_NOTE.match(line))


# What Salt says when the call's arguments do not fit the worker's function (its
# signature differs: other module version), or the function is not there at all.
_SIGNATURE_MISMATCH = re.compile(
    r"keyword arguments are not valid|unexpected keyword argument|required positional argument"
    r"|positional arguments? but \d+ (?:were|was) given|is not available"
)


def version_hint(fun, host, problem):
    """``problem`` of a gfs2clvm module call that failed because the worker's function
    does not take the driver's arguments (or is missing): say it is a version mismatch."""
    if not fun.startswith(("gfs2clvm_tm.", "gfs2clvm.")) or not _SIGNATURE_MISMATCH.search(problem):
        return problem
    return (f"worker {host} runs other gfs2clvm modules than the front-end driver {VERSION} ({problem}): "
            f"apply gfs2clvm.worker there (highstate) so both are the same version; "
            f"gfs2clvm-host check {host} compares them")


# what ssh prints when it cannot reach or keep the worker
_SSH_FAILURES = (
    "Connection refused", "Connection reset", "Connection closed", "Connection timed out",
    "kex_exchange_identification", "No route to host", "Could not resolve hostname",
    "Network is unreachable", "Broken pipe",
)


def failure_text(fun, host, value):
    """One line describing a failed return, or None when ``value`` is a success."""
    if isinstance(value, str):
        text = without_progress(value)
        if text.lstrip().startswith("Traceback") or "is not available" in text:
            return f"{fun} on {host}: {_last_line(text)}"
        # salt-ssh returns ssh's own failure to connect as the host's bare string value
        # (e.g. "ssh: connect to host 10.1.1.1 port 22: Connection refused", exit 20)
        if text.lstrip().startswith("ssh:") or any(s in text for s in _SSH_FAILURES):
            return f"ssh to {host} failed: {_last_line(text)}"
    if not (isinstance(value, dict) and "retcode" in value and ("_error" in value or "stderr" in value)):
        return None
    retcode = value.get("retcode")
    stderr = without_progress(value.get("stderr"))
    err = str(value.get("_error") or "")
    if retcode == 254 or "host key" in stderr.lower():
        return f"host key of {host} not accepted: add it to the known_hosts file (never -i)"
    if err == "Permission denied":
        return f"{fun} on {host}: permission denied (ssh login or a command on the worker): {_last_line(stderr)}"
    if stderr.startswith("ssh:") or any(s in stderr for s in _SSH_FAILURES):
        return f"ssh to {host} failed: {_last_line(stderr)}"
    if retcode == 255 and not stderr.strip():
        # ssh's own exit status; salt-ssh passes no text (e.g. the connection was
        # reset before the banner, or a multiplexing master died with the worker)
        return f"ssh to {host} failed (exit 255, no message): is the worker up and its sshd running?"
    if "Passed invalid arguments:" in stderr:
        text = stderr.split("Passed invalid arguments:", 1)[1].split("\n\nUsage", 1)[0]
        return f"{fun} on {host}: invalid arguments: {one_line(text).rstrip('.')}"
    if stderr.startswith("Traceback"):
        return f"{fun} on {host}: {_last_line(stderr)}"
    if stderr.strip():
        return f"{fun} on {host}: {_ERROR_PREFIX.sub('', _first_real_line(stderr))}"
    if "Argument list too long" in err:
        return f"{fun} on {host}: arguments too large for salt-ssh"
    return f"{fun} on {host} failed (retcode {retcode}): {one_line(err) or 'no message'}"


def _first_real_line(text):
    for line in str(text).splitlines():
        if line.strip() and not line.startswith("[WARNING"):
            return one_line(line)
    return one_line(text)


def _last_line(text):
    lines = [line for line in str(text).splitlines() if line.strip()]
    return one_line(lines[-1]) if lines else "no output"
