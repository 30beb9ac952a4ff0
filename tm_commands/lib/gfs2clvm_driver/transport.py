# SPDX-License-Identifier: Apache-2.0
"""Runs the driver's one salt-ssh call: by the gfs2clvm-saltssh service, else the salt-ssh CLI.

``run(argv, timeout, socket_path)`` takes the exact argv ``saltssh.build_argv()`` builds
and returns ``(returncode, stdout, stderr)`` as ``subprocess.run(argv,
capture_output=True, text=True, stdin=DEVNULL)`` would.  When ``socket_path`` (config
``saltssh_socket``) answers, the managed service ``gfs2clvm-saltssh`` (``service.py``:
Salt imported once, its public ``SSHClient``, ssh multiplexing) runs the call and
sends back what the CLI would have printed; this module imports nothing of Salt, so an
action on ``/usr/bin/python3`` reaches any install of Salt (venv, onedir, system).

No socket, a refused connection or no ``started`` within ``START_TIMEOUT`` s: nothing
ran there, the ``salt-ssh`` subprocess runs the call.  ``go`` answers ``started``, so a
call given up on never runs twice.  The service dying mid-call fails that call (its
result is unknown); the next one reaches the restarted service or falls back.  A
timeout or a killed action closes the connection: the service kills the call.

``python -m gfs2clvm_driver.transport <argv...>`` runs one call (bench/run.py), with
the socket of ``$GFS2CLVM_SALTSSH_SOCKET`` when set.
"""

import json
import os
import socket
import subprocess
import sys

START_TIMEOUT = 20.0  # seconds to wait for "started" (a service being started by systemd imports Salt)


class TransportError(RuntimeError):
    """The call was handed to the service, and its result is lost."""


def run(argv, timeout=None, socket_path=None):
    """One salt-ssh call; returns ``(returncode, stdout, stderr)``.

    Raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds, ``FileNotFoundError``
    when the salt-ssh of ``argv[0]`` does not exist (both like ``subprocess.run``), and
    TransportError when the service died during the call."""
    argv = [str(a) for a in argv]
    if socket_path:
        result = run_by_service(socket_path, argv, timeout)
        if result is not None:
            return result
    return run_subprocess(argv, timeout)


def run_subprocess(argv, timeout=None):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def run_by_service(path, argv, timeout=None):
    """The call through the service at ``path``, or None when it did not take it (nothing ran)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        reader = sock.makefile("rb")
        try:
            sock.settimeout(START_TIMEOUT)
            sock.connect(path)
            _send(sock, {"argv": argv})
            first = _message(reader)
        except (OSError, ValueError):
            return None
        if not first or "started" not in first:
            return None  # refused ("unsupported", another user): the CLI runs it
        pid = first["started"]
        try:
            _send(sock, {"go": True})
            sock.settimeout(timeout)
            message = _message(reader)
        except socket.timeout:
            raise subprocess.TimeoutExpired(argv, timeout) from None
        except (OSError, ValueError) as err:
            raise TransportError(f"lost the gfs2clvm-saltssh service (pid {pid}) during the call: {err}") from None
        if not message or "result" not in message:
            raise TransportError(f"the gfs2clvm-saltssh service (pid {pid}) ended during the call; "
                                 "its result is unknown, check the worker before retrying")
        return tuple(message["result"])
    finally:
        sock.close()


def _send(sock, message):
    sock.sendall(json.dumps(message).encode() + b"\n")


def _message(reader):
    return json.loads(reader.readline() or "null")


def main(argv=None):
    """``python -m gfs2clvm_driver.transport <salt-ssh argv...>``: one call, its output and exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    code, out, err = run(argv, socket_path=os.environ.get("GFS2CLVM_SALTSSH_SOCKET"))
    sys.stdout.write(out)
    sys.stderr.write(err)
    return code


if __name__ == "__main__":
    sys.exit(main())
