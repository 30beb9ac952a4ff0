# SPDX-License-Identifier: Apache-2.0
"""gfs2clvm_driver.warm: the warm process that runs an action's salt-ssh call in a fork
with Salt already imported.

The protocol tests run ``warm.serve`` in a forked process of the test with
``transport.run_here`` replaced (the fork inherits the replacement), so what a call
does is under the test's control; the last tests use the real server, started the way
an action starts it, for a real in-process salt-ssh call that fails before any ssh."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_driver_support  # noqa: F401 -- puts tm_commands/lib on sys.path
from gfs2clvm_driver import core, transport, warm

SALT_SSH = str(Path(sys.executable).parent / "salt-ssh")


@pytest.fixture
def wdir(tmp_path, monkeypatch):
    path = Path(tempfile_short()) / "w"
    path.mkdir(mode=0o700, parents=True)
    monkeypatch.setenv(warm.ENV_DIR, str(path))
    monkeypatch.delenv(warm.ENV_WARM, raising=False)
    monkeypatch.delenv(transport.ENV_MODE, raising=False)
    yield path
    for entry in path.iterdir():
        entry.unlink()
    path.rmdir()
    path.parent.rmdir()


def tempfile_short():
    import tempfile

    return tempfile.mkdtemp(prefix="gw", dir="/tmp")  # a Unix socket path has 107 bytes at most


def _wait_for(predicate, seconds=30, what="condition"):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def fork_server(wdir, monkeypatch):
    """Start ``warm.serve`` in a fork with ``run_here`` replaced by ``fake``; yields a starter."""
    servers = []

    def start(fake, idle=60):
        monkeypatch.setattr(transport, "run_here", fake)
        sock_path, lock_path = warm.paths(SALT_SSH)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = warm.serve(sock_path, lock_path, idle=idle)
            finally:
                os._exit(code)
        servers.append(pid)
        _wait_for(lambda: os.path.exists(sock_path), what="the server's socket")
        return pid, sock_path, lock_path

    yield start
    for pid in servers:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


ARGV = [SALT_SSH, "--saltfile", "/x/Saltfile", "node1", "gfs2clvm_tm.ln", '"a"']


def test_a_call_runs_in_the_fork_with_the_actions_env_cwd_and_umask(fork_server, tmp_path, monkeypatch):
    def fake(argv, timeout, multiplex, progress):
        return 0, json.dumps({"argv": argv, "env": os.environ.get("ACTION_ONLY"), "cwd": os.getcwd(),
                              "umask": os.umask(0o022), "timeout": timeout, "pid": os.getpid()}), "warn\n"

    server, _, _ = fork_server(fake)
    monkeypatch.setenv("ACTION_ONLY", "yes")
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o027)
    try:
        code, out, err = warm.call(ARGV, timeout=30)
    finally:
        os.umask(old)
    seen = json.loads(out)
    assert (code, err) == (0, "warn\n")
    assert seen["argv"] == ARGV and seen["env"] == "yes" and seen["cwd"] == str(tmp_path)
    assert seen["umask"] == 0o027 and seen["timeout"] == 30
    assert seen["pid"] not in (os.getpid(), server)  # a fork of the server


def test_progress_lines_reach_the_action_live(fork_server):
    def fake(argv, timeout, multiplex, progress):
        progress("node1", 5.0, 1, 20)
        time.sleep(1.0)
        progress("node1", 50.0, 10, 20)
        return 0, "{}", ""

    fork_server(fake)
    seen = []
    start = time.monotonic()
    assert warm.call(ARGV, progress=lambda *a: seen.append((time.monotonic() - start, a))) == (0, "{}", "")
    assert [a for _, a in seen] == [("node1", 5.0, 1, 20), ("node1", 50.0, 10, 20)]
    assert seen[0][0] < seen[1][0] - 0.5  # the first one before the call ended


@pytest.mark.parametrize("exc, expected", [
    (subprocess.TimeoutExpired(["x"], 5, output="o", stderr="e"), subprocess.TimeoutExpired),
    (FileNotFoundError(2, "No such file", "salt-ssh"), FileNotFoundError),
    (transport.TransportError("in-process salt-ssh impossible: x"), transport.TransportError),
    (ZeroDivisionError("boom"), warm.WarmError),
])
def test_what_the_call_raises_is_raised_in_the_action(fork_server, exc, expected):
    def fake(argv, timeout, multiplex, progress):
        raise exc

    fork_server(fake)
    with pytest.raises(expected) as info:
        warm.call(ARGV, timeout=5)
    if expected is subprocess.TimeoutExpired:
        assert (info.value.stdout, info.value.stderr) == ("o", "e")
    if expected is warm.WarmError:
        assert "ZeroDivisionError: boom" in str(info.value)


def test_a_fork_that_dies_mid_call_fails_the_action(fork_server):
    def fake(argv, timeout, multiplex, progress):
        os._exit(3)

    fork_server(fake)
    with pytest.raises(warm.WarmError) as info:
        warm.call(ARGV)
    assert "the driver's warm process (pid " in str(info.value)
    assert ") died during the call" in str(info.value)
    assert isinstance(info.value, transport.TransportError)  # saltssh: one ERROR: line


def test_a_killed_action_stops_its_call(fork_server, tmp_path):
    """The action's connection closes (oned killed it): the fork kills the call's processes."""
    marker = tmp_path / "sleeper"

    def fake(argv, timeout, multiplex, progress):
        proc = subprocess.Popen(["sleep", "60"])
        marker.write_text(str(proc.pid))
        proc.wait()
        return 0, "", ""

    fork_server(fake)
    action = os.fork()
    if action == 0:
        try:
            warm.call(ARGV)
        finally:
            os._exit(0)
    _wait_for(lambda: marker.exists() and marker.read_text(), what="the call's process")
    sleeper = int(marker.read_text())
    os.kill(action, signal.SIGKILL)
    os.waitpid(action, 0)
    _wait_for(lambda: not Path(f"/proc/{sleeper}").exists()
              or Path(f"/proc/{sleeper}/stat").read_text().split(") ")[1].startswith("Z"),
              seconds=10, what="the call's sleep to be killed")


def test_nothing_runs_when_the_action_gives_up_before_go(fork_server, tmp_path):
    """Two-phase hand-over: a fork that said 'started' but got no 'go' runs nothing."""
    ran = tmp_path / "ran"

    def fake(argv, timeout, multiplex, progress):
        ran.write_text("yes")
        return 0, "", ""

    _, sock_path, _ = fork_server(fake)
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(sock_path)
    conn.sendall(json.dumps({"argv": ARGV, "env": {}, "cwd": "/", "umask": 0o022}).encode() + b"\n")
    reader = conn.makefile("rb")
    assert "started" in json.loads(reader.readline())
    conn.close()
    time.sleep(0.5)
    assert not ran.exists()
    assert warm.call(ARGV) == (0, "", "") and ran.exists()  # the server goes on serving


def test_no_server_means_the_action_runs_the_call_and_one_is_started(wdir, monkeypatch):
    started = []
    monkeypatch.setattr(warm, "start_server", lambda *a: started.append(a))
    assert warm.call(ARGV) is None
    assert started == [warm.paths(SALT_SSH)]


def test_a_stopped_server_is_not_waited_for(fork_server, monkeypatch):
    monkeypatch.setattr(warm, "START_TIMEOUT", 0.5)
    server, _, _ = fork_server(lambda *a: (0, "", ""))
    os.kill(server, signal.SIGSTOP)
    try:
        start = time.monotonic()
        assert warm.call(ARGV) is None
        assert time.monotonic() - start < 5
    finally:
        os.kill(server, signal.SIGCONT)


def test_one_server_per_key_and_it_exits_when_idle(fork_server):
    server, sock_path, lock_path = fork_server(lambda *a: (0, "", ""), idle=1)
    assert warm.serve(sock_path, lock_path) == 0  # the lock is held: returns at once
    assert warm.call(ARGV) == (0, "", "")
    _wait_for(lambda: os.waitpid(server, os.WNOHANG)[0] == server, seconds=15, what="the idle exit")
    assert not os.path.exists(sock_path)


def test_the_key_follows_the_code(tmp_path):
    script = tmp_path / "salt-ssh"
    script.write_text("#!/bin/sh\n")
    first = warm.key(str(script))
    assert len(first) == 16 and warm.key(str(script)) == first
    script.write_text("#!/bin/sh\n# upgraded\n")
    assert warm.key(str(script)) != first
    assert warm.key(SALT_SSH) != first


def test_the_directory_must_be_private(tmp_path, monkeypatch):
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    monkeypatch.setenv(warm.ENV_DIR, str(open_dir))
    with pytest.raises(transport.TransportError, match="0700"):
        warm.warm_dir()
    assert warm.call(ARGV) is None  # the call still runs, in the action


def test_run_uses_the_warm_process_only_in_an_action(wdir, monkeypatch):
    calls = []
    monkeypatch.setattr(warm, "call", lambda *a: calls.append(a) or (0, "warm", ""))
    monkeypatch.setattr(transport, "run_here", lambda *a: (0, "here", ""))
    assert transport.run(ARGV)[1] == "here"  # a library caller
    seen = []

    def main(argv):
        seen.append(transport.run(ARGV)[1])
        monkeypatch.setenv(warm.ENV_WARM, "0")
        seen.append(transport.run(ARGV)[1])
        monkeypatch.delenv(warm.ENV_WARM)
        monkeypatch.setenv(transport.ENV_MODE, "subprocess")
        seen.append(transport.run(ARGV)[1])

    with pytest.raises(SystemExit):
        core.run_main(main, [])
    assert seen == ["warm", "here", "here"]
    assert transport.run(ARGV)[1] == "here"  # run_main's scope ended


# -- the real server -------------------------------------------------------------
def test_a_real_server_answers_like_the_action_itself(wdir, tmp_path, monkeypatch):
    """Started as an action starts it (a detached ``python -c``); its fork's in-process
    salt-ssh call gives what the action's own call gives."""
    monkeypatch.chdir(tmp_path)
    argv = [SALT_SSH, "--saltfile", "/nonexistent/Saltfile", "x", "test.ping"]
    expected = transport.run_here(argv, timeout=120)
    assert expected[0] != 0 and "does not exist" in expected[2]
    assert warm.call(argv, timeout=120) is None  # none yet: starts one
    sock_path, lock_path = warm.paths(SALT_SSH)
    _wait_for(lambda: os.path.exists(sock_path), seconds=60, what="the real server")
    for _ in range(2):
        assert warm.call(argv, timeout=120) == expected
    # an action whose call the server took never imports Salt (the whole point)
    probe = ("import json, sys; from gfs2clvm_driver import transport; transport.allow_warm(); "
             "result = transport.run(sys.argv[1:], timeout=120); "
             "print(json.dumps([list(result), sorted(m for m in sys.modules if m == 'salt' or m.startswith('salt.'))]))")
    lib = str(Path(transport.__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=lib), check=True)
    result, salt_modules = json.loads(proc.stdout)
    assert tuple(result) == expected and salt_modules == []
    pid = _server_pid(lock_path)
    assert warm.stop(str(wdir)) == [pid]
    _wait_for(lambda: not Path(f"/proc/{pid}").exists(), what="the server to stop")
    assert not os.path.exists(sock_path)  # SIGTERM: it removed its socket


def _server_pid(lock_path):
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                for fd in os.listdir(f"/proc/{entry}/fd"):
                    if os.readlink(f"/proc/{entry}/fd/{fd}") == lock_path:
                        return int(entry)
            except OSError:
                continue
    raise AssertionError("no process holds the lock")
