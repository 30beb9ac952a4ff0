# SPDX-License-Identifier: Apache-2.0
"""gfs2clvm_driver.transport without ssh: the sleep wrapper, its scoping, the
multiplexing options, the in-process/subprocess decision, and the salt-ssh CLI
run in-process for calls that fail before any ssh (same exit code and message
as the real ``salt-ssh`` script)."""

import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import test_driver_support  # noqa: F401 -- puts tm_commands/lib on sys.path
from gfs2clvm_driver import transport

SALT_SSH = str(Path(sys.executable).parent / "salt-ssh")


# -- the sleep wrapper --------------------------------------------------------
def test_short_sleeps_are_untouched():
    fast = transport.FastTime()
    start = time.monotonic()
    fast.sleep(0.02)
    assert 0.019 <= time.monotonic() - start < 0.2


def _in_fresh_interpreter(code):
    """The wrapper looks at every child of the process: a child reaped late by an
    earlier test of this pytest process would wake it, so run it where the only
    children are the test's own."""
    lib = str(Path(transport.__file__).parent.parent)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": lib})
    assert proc.returncode == 0, proc.stderr


def test_long_sleep_wakes_when_a_child_exits():
    _in_fresh_interpreter(
        "import subprocess, time\n"
        "from gfs2clvm_driver import transport\n"
        "proc = subprocess.Popen(['true'])\n"
        "time.sleep(0.3)  # the child is a zombie now, not reaped\n"
        "start = time.monotonic()\n"
        "transport.FastTime().sleep(2)\n"
        "assert time.monotonic() - start < 0.5, time.monotonic() - start\n"
        "assert proc.poll() == 0  # WNOWAIT: the owner still reaps its exit status\n")


def test_long_sleep_lasts_while_the_child_runs():
    _in_fresh_interpreter(
        "import subprocess, time\n"
        "from gfs2clvm_driver import transport\n"
        "proc = subprocess.Popen(['sleep', '5'])\n"
        "start = time.monotonic()\n"
        "transport.FastTime().sleep(0.3)\n"
        "assert time.monotonic() - start >= 0.29, time.monotonic() - start\n"
        "proc.kill(); proc.wait()\n")


def test_other_time_attributes_are_the_real_ones():
    fast = transport.FastTime()
    assert fast.monotonic is time.monotonic and fast.time is time.time


def test_fast_sleeps_is_scoped_to_the_block():
    import salt.client.ssh
    import salt.client.ssh.shell
    import salt.utils.vt

    mods = (salt.utils.vt, salt.client.ssh, salt.client.ssh.shell)
    with transport.fast_sleeps():
        assert all(isinstance(m.time, transport.FastTime) for m in mods)
    assert all(m.time is time for m in mods)
    with pytest.raises(RuntimeError):
        with transport.fast_sleeps():
            raise RuntimeError("boom")
    assert all(m.time is time for m in mods)


# -- ssh multiplexing ---------------------------------------------------------
def test_mux_options_in_a_private_dir(monkeypatch):
    cm = Path(tempfile.mkdtemp(prefix="cm", dir="/tmp")) / "cm"
    monkeypatch.setenv(transport.ENV_CM_DIR, str(cm))
    opts = transport.mux_options([])
    assert opts == ["ControlMaster=auto", f"ControlPath={cm}/%C", "ControlPersist=60"]
    assert cm.stat().st_mode & 0o777 == 0o700


def test_no_mux_when_the_socket_path_would_be_too_long(tmp_path, monkeypatch):
    cm = tmp_path / ("x" * 60)
    monkeypatch.setenv(transport.ENV_CM_DIR, str(cm))
    assert transport.mux_options([]) == []


@pytest.mark.parametrize("existing", [["ControlPath=/x/%C"], ["controlmaster=no"], ["ControlPersist=5"]])
def test_mux_options_leave_an_existing_choice(existing):
    assert transport.mux_options(existing) == []


def test_control_dir_refuses_an_open_directory(tmp_path, monkeypatch):
    cm = tmp_path / "cm"
    cm.mkdir(mode=0o755)
    cm.chmod(0o755)
    monkeypatch.setenv(transport.ENV_CM_DIR, str(cm))
    with pytest.raises(transport.TransportError, match="mode 0700"):
        transport.control_dir()
    cm.rmdir()
    cm.symlink_to(tmp_path)
    with pytest.raises(transport.TransportError):
        transport.control_dir()


# -- deciding -----------------------------------------------------------------
def test_in_process_for_this_pythons_salt_ssh(monkeypatch):
    monkeypatch.delenv(transport.ENV_MODE, raising=False)
    assert transport.in_process_possible([SALT_SSH, "x", "test.ping"]) == (True, "")


def test_subprocess_when_asked(monkeypatch):
    monkeypatch.setenv(transport.ENV_MODE, "subprocess")
    assert transport.in_process_possible([SALT_SSH])[0] is False


def test_subprocess_for_another_pythons_salt_ssh(tmp_path, monkeypatch):
    monkeypatch.delenv(transport.ENV_MODE, raising=False)
    other = tmp_path / "bin" / "salt-ssh"
    other.parent.mkdir()
    other.write_text("#!/bin/sh\necho other salt-ssh \"$@\"; echo err >&2; exit 3\n")
    other.chmod(0o755)
    possible, why = transport.in_process_possible([str(other)])
    assert possible is False and "another Python" in why
    assert transport.run([str(other), "a", "b"]) == (3, "other salt-ssh a b\n", "err\n")
    monkeypatch.setenv(transport.ENV_MODE, "inprocess")
    with pytest.raises(transport.TransportError):
        transport.run([str(other)])


def test_not_salt_ssh_runs_as_a_subprocess(monkeypatch):
    monkeypatch.delenv(transport.ENV_MODE, raising=False)
    assert transport.in_process_possible(["/bin/echo"])[0] is False
    assert transport.run(["/bin/echo", "hi"]) == (0, "hi\n", "")


def test_env_interpreter_is_resolved(tmp_path):
    script = tmp_path / "salt-ssh"
    script.write_text("#!/usr/bin/env python3\n")
    assert transport._interpreter(str(script)) == __import__("shutil").which("python3")
    script.write_text("no shebang\n")
    assert transport._interpreter(str(script)) is None


def test_missing_salt_ssh_is_file_not_found(tmp_path, monkeypatch):
    monkeypatch.delenv(transport.ENV_MODE, raising=False)
    with pytest.raises(FileNotFoundError):
        transport.run([str(tmp_path / "salt-ssh"), "x"])


# -- the CLI in-process, failing before any ssh ---------------------------------
@pytest.mark.parametrize("args", [
    ["--no-such-option", "x", "test.ping"],
    ["--saltfile", "/nonexistent/Saltfile", "x", "test.ping"],
    ["--out", "json"],  # no target, no function
])
def test_cli_errors_match_the_script(args, monkeypatch, tmp_path):
    monkeypatch.delenv(transport.ENV_MODE, raising=False)
    monkeypatch.chdir(tmp_path)
    expected = transport.run_subprocess([SALT_SSH, *args], timeout=120)
    assert expected[0] != 0
    got = transport.run_in_process([SALT_SSH, *args], timeout=120)
    assert got[0] == expected[0]
    assert got[1:] == expected[1:]


def test_the_process_is_left_as_it_was(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    before = (list(root.handlers), root.level, sys.excepthook, os.getcwd(), dict(os.environ),
              sys.stdin, sys.stdout, sys.stderr, list(sys.argv))
    umask = os.umask(0o022)
    os.umask(umask)
    argv = [SALT_SSH, "--saltfile", "/nonexistent", "x", "y"]
    expected = transport.run_subprocess(argv)
    assert expected[0] != 0 and "does not exist" in expected[2]
    for _ in range(2):
        assert transport.run_in_process(argv) == expected
    after = (list(root.handlers), root.level, sys.excepthook, os.getcwd(), dict(os.environ),
             sys.stdin, sys.stdout, sys.stderr, list(sys.argv))
    assert after == before
    assert os.umask(umask) == umask


def test_salt_logging_already_set_up_is_kept_apart(monkeypatch, tmp_path):
    """A process where Salt's logging is set up (pytest-salt-factories) keeps it; the call's
    records do not land in its handlers."""
    import salt._logging.impl as impl

    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    import logging.handlers as lh

    mine = lh.MemoryHandler(1000, flushLevel=100)
    root.addHandler(mine)
    try:
        before = impl.__dict__.get("setup_temp_handler").__dict__.get("__handler__")
        code, _, err = transport.run_in_process([SALT_SSH, "--saltfile", "/nonexistent", "x", "y"])
        assert code != 0 and err
        assert impl.setup_temp_handler.__dict__.get("__handler__") is before
        assert not [r for r in mine.buffer if "Saltfile" in r.getMessage() or "does not exist" in r.getMessage()]
    finally:
        root.removeHandler(mine)
    assert os.fstat(1) and os.fstat(2)


def test_exit_codes():
    assert transport._exit_code(None) == 0
    assert transport._exit_code(20) == 20
    assert transport._exit_code("message") == 1


def test_watchdog_finds_descendants():
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pids = transport._descendants(os.getpid())
            if len([p for p in pids if p != proc.pid]) >= 1:
                break
            time.sleep(0.05)
        assert proc.pid in pids and len(pids) >= 2
    finally:
        for pid in transport._descendants(proc.pid):
            os.kill(pid, 9)
        proc.kill()
        proc.wait()
