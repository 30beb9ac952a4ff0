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


def _slept(fast, seconds):
    start = time.monotonic()
    fast.sleep(seconds)
    return time.monotonic() - start


def _zombie(argv=("true",)):
    """A child that has exited and is not reaped (its Popen still owns the status)."""
    proc = subprocess.Popen(list(argv))
    deadline = time.monotonic() + 10
    while transport._exited(proc.pid) is None:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return proc


def test_children_lists_live_and_exited_children():
    running = subprocess.Popen(["sleep", "30"])
    done = _zombie()
    try:
        kids = transport._children()
        assert {running.pid, done.pid} <= kids
        assert transport._exited(running.pid) is None and transport._exited(done.pid) is not None
    finally:
        running.kill()
        running.wait()
        done.wait()
    assert running.pid not in transport._children() and transport._exited(done.pid) is None


def test_a_stale_zombie_of_the_caller_never_wakes_a_sleep():
    stale = _zombie()  # exited before the call began and nobody reaps it during the call
    try:
        fast = transport.FastTime()
        assert _slept(fast, 0.3) >= 0.29
        assert _slept(fast, 0.3) >= 0.29 and fast.wakes == 0
    finally:
        stale.wait()


def test_no_child_at_all_is_the_real_sleep(monkeypatch):
    monkeypatch.setattr(transport, "_children", lambda pid=None: set())
    fast = transport.FastTime()
    assert _slept(fast, 0.2) >= 0.19 and fast.wakes == 0


def test_unlisted_children_are_the_real_sleep(monkeypatch):
    """No /proc/<pid>/task/<tid>/children: every sleep is the one asked for, not a busy loop."""
    monkeypatch.setattr(transport, "_children", lambda pid=None: None)
    fast = transport.FastTime()
    calls = []
    real_sleep = time.sleep
    monkeypatch.setattr(fast, "_real", type("T", (), {"sleep": staticmethod(lambda s: calls.append(s) or real_sleep(s)),
                                                     "monotonic": staticmethod(time.monotonic)})())
    fast.sleep(0.2)
    assert len(calls) == 1 and 0.19 <= calls[0] <= 0.2


def test_long_sleep_wakes_when_a_child_of_the_call_exits():
    fast = transport.FastTime()
    proc = subprocess.Popen(["sleep", "0.2"])
    took = _slept(fast, 5)
    assert 0.15 <= took < 2, took
    assert fast.wakes == 1
    assert proc.poll() == 0  # WNOWAIT: the owner still reaps its exit status


def test_a_child_already_exited_wakes_at_once():
    fast = transport.FastTime()
    proc = _zombie()
    assert _slept(fast, 2) < 0.05
    proc.wait()


def test_long_sleep_lasts_while_the_child_runs():
    fast = transport.FastTime()
    proc = subprocess.Popen(["sleep", "5"])
    try:
        assert _slept(fast, 0.3) >= 0.29 and fast.wakes == 0
    finally:
        proc.kill()
        proc.wait()


def test_an_unreaped_exit_wakes_a_few_sleeps_only():
    """Salt reaps right after the sleep it waits in (Terminal.close + terminate: two sleeps);
    an exited child nobody reaps must not make a polling loop spin."""
    fast = transport.FastTime()
    proc = _zombie()
    try:
        for _ in range(transport.MAX_WAKES):
            assert _slept(fast, 1) < 0.05
        assert _slept(fast, 0.2) >= 0.19
        assert fast.wakes == transport.MAX_WAKES
    finally:
        proc.wait()


def test_an_unreaped_exit_wakes_only_within_the_grace_time():
    fast = transport.FastTime(grace=0.1)
    proc = _zombie()
    try:
        assert _slept(fast, 1) < 0.05
        time.sleep(0.15)
        assert _slept(fast, 0.2) >= 0.19
    finally:
        proc.wait()


def test_a_new_exit_wakes_even_behind_a_stale_zombie():
    """waitid(P_ALL) would only ever see the first zombie: each child is looked at."""
    stale = _zombie()
    try:
        fast = transport.FastTime()
        proc = subprocess.Popen(["sleep", "0.2"])
        assert _slept(fast, 5) < 2
        assert proc.wait() == 0
    finally:
        stale.wait()


def test_a_forked_process_waits_for_its_own_children():
    """Salt's per-host process is forked from the caller: its children are all new to it."""
    lib = str(Path(transport.__file__).parent.parent)
    code = (
        "import os, subprocess, sys, time\n"
        "from gfs2clvm_driver import transport\n"
        "fast = transport.FastTime()\n"
        "old = subprocess.Popen(['true']); time.sleep(0.3)  # a stale zombie of the owner\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    start = time.monotonic(); fast.sleep(0.3); idle = time.monotonic() - start\n"
        "    proc = subprocess.Popen(['sleep', '0.2'])\n"
        "    start = time.monotonic(); fast.sleep(5); woke = time.monotonic() - start\n"
        "    os._exit(0 if idle >= 0.29 and woke < 2 and proc.wait() == 0 else 1)\n"
        "start = time.monotonic(); fast.sleep(0.3)  # the forked child is new: its exit may wake this\n"
        "_, status = os.waitpid(pid, 0)\n"
        "sys.exit(os.waitstatus_to_exitcode(status))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": lib})
    assert proc.returncode == 0, proc.stderr


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
    assert transport.mux_options([], "0123abcd")[1] == f"ControlPath={cm}/0123abcd-%C"


def test_config_key_separates_configurations(tmp_path):
    """A master opened under one configuration (its known_hosts, key, roster) is never reused
    by a call with another one."""
    for name in ("master", "roster", "known_hosts"):
        (tmp_path / name).write_text(f"{name} 1\n")
    opts = {"conf_file": str(tmp_path / "master"), "config_dir": str(tmp_path), "roster_file": "",
            "known_hosts_file": str(tmp_path / "known_hosts"), "ssh_priv": "/k/id"}
    key = transport.config_key(opts)
    assert len(key) == 8 and key == transport.config_key(dict(opts))
    assert transport.config_key(dict(opts, ssh_priv="/k/other")) != key
    assert transport.config_key(dict(opts, known_hosts_file=None)) != key
    for name in ("roster", "known_hosts", "master"):
        (tmp_path / name).write_text(f"{name} 2\n")
        assert transport.config_key(opts) != key, name
        key = transport.config_key(opts)


def test_no_mux_when_the_socket_path_would_be_too_long(tmp_path, monkeypatch):
    cm = tmp_path / ("x" * 60)
    monkeypatch.setenv(transport.ENV_CM_DIR, str(cm))
    assert transport.mux_options([]) == []
    cm = Path("/tmp") / ("y" * (107 - len("/tmp/") - 1 - 9 - 40 - 18))
    monkeypatch.setenv(transport.ENV_CM_DIR, str(cm))
    try:
        assert transport.mux_options([], "0123abcd")  # exactly fits
        monkeypatch.setenv(transport.ENV_CM_DIR, str(cm) + "y")
        assert transport.mux_options([], "0123abcd") == []
    finally:
        for path in (cm, Path(str(cm) + "y")):
            if path.is_dir():
                path.rmdir()


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


# -- progress lines -------------------------------------------------------------
@pytest.mark.parametrize("line, expected", [
    ("gfs2clvm-progress: 42 1744830464 4294967296", (42.0, 1744830464, 4294967296)),
    ("  gfs2clvm-progress: 100 5 5\r", (100.0, 5, 5)),
    ("gfs2clvm-progress: 7.5 1 2", (7.5, 1, 2)),
    ("gfs2clvm-progress: 42 1744830464", None),
    ("gfs2clvm-progress: 142 1 2", None),
    ("gfs2clvm-progress: x 1 2", None),
    ("[WARNING ] gfs2clvm-progress: 1 2 3", None),
    ("Error running 'gfs2clvm.copy': boom", None),
])
def test_parse_progress(line, expected):
    assert transport.parse_progress(line) == expected


def test_relay_finds_lines_across_chunks_and_writes_to_the_real_stderr():
    got = []
    before = sys.stderr
    read_fd, write_fd = os.pipe()
    try:
        def callback(host, percent, done, total):
            got.append((host, percent, done, total))
            sys.stderr.write(f"seen {host} {percent:.0f}\n")

        relay = transport._Relay(callback, write_fd)
        relay.host = "node1"
        relay.feed(1, "SALT_ARGV: [...]\ngfs2clvm-progr")
        relay.feed(2, "gfs2clvm-progress: 9 9 9\n")  # another terminal: its own line buffer
        relay.feed(1, "ess: 10 1 10\nnoise\ngfs2clvm-progress: 50 5 10")
        assert got == [("node1", 9.0, 9, 9), ("node1", 10.0, 1, 10)]
        relay.feed(1, "\n")
        assert got[-1] == ("node1", 50.0, 5, 10)
        assert sys.stderr is before  # only during the callback
    finally:
        os.close(write_fd)
        with os.fdopen(read_fd) as handle:
            text = handle.read()
    assert text == "seen node1 9\nseen node1 10\nseen node1 50\n"


def test_relay_is_scoped_to_the_call(monkeypatch):
    import salt.client.ssh
    import salt.utils.vt

    recv, routine = salt.utils.vt.Terminal.recv, salt.client.ssh.SSH.handle_routine
    with transport._progress_relay(lambda *a: None) as relay:
        assert relay is not None
        assert salt.utils.vt.Terminal.recv is not recv and salt.client.ssh.SSH.handle_routine is not routine
    assert salt.utils.vt.Terminal.recv is recv and salt.client.ssh.SSH.handle_routine is routine
    with transport._progress_relay(None) as relay:
        assert relay is None and salt.utils.vt.Terminal.recv is recv


def test_salt_script_detection(tmp_path):
    assert transport._is_salt_script(SALT_SSH)
    fake = tmp_path / "salt-ssh"
    fake.write_text(f"#!{sys.executable}\nprint('a stand-in')\n")
    fake.chmod(0o755)
    assert not transport._is_salt_script(str(fake))
    assert transport.in_process_possible([str(fake)]) == (False, f"{fake} is not Salt's salt-ssh script")


# -- the driver's wiring (saltssh.py) ---------------------------------------------
from gfs2clvm_driver import saltssh  # noqa: E402
from gfs2clvm_driver.core import DriverError  # noqa: E402
from test_driver_support import Fakes  # noqa: E402

PROGRESS = "gfs2clvm-progress: 40 1717986918 4294967296\ngfs2clvm-progress: 80 3435973836 4294967296\n"


def test_progress_lines_become_oned_info_lines(capsys):
    report = saltssh.progress_reporter("gfs2clvm_tm.clone")
    report("node1", 42.0, 1717986918, 4294967296)
    report("node2", 7.4, 10 << 20, 256 << 20)
    assert capsys.readouterr().err == ("INFO: clone node1: 42% (1.6 of 4.0 GiB)\n"
                                       "INFO: clone node2: 7% (10.0 of 256.0 MiB)\n")


@pytest.mark.parametrize("stderr, expected", [
    (PROGRESS + "Error running 'gfs2clvm_tm.clone': lvcreate failed (rc 5): no space\n",
     "f on h: lvcreate failed (rc 5): no space"),
    (PROGRESS + "Traceback (most recent call last):\n  File x\nOSError: disk gone\n" + PROGRESS,
     "f on h: OSError: disk gone"),
    (PROGRESS + "ssh: connect to host h port 22: Connection refused\n",
     "ssh to h failed: ssh: connect to host h port 22: Connection refused"),
    (PROGRESS, "f on h failed (retcode 1): no message"),
])
def test_failure_text_skips_progress_lines(stderr, expected):
    value = {"retcode": 1, "stderr": stderr, "stdout": "", "_error": ""}
    assert saltssh.failure_text("f", "h", value) == expected


def test_failure_text_string_value_skips_progress_lines():
    value = PROGRESS + "Traceback (most recent call last):\nValueError: bad\n" + PROGRESS
    assert saltssh.failure_text("f", "h", value) == "f on h: ValueError: bad"


def test_the_driver_call_goes_through_the_transport(tmp_path, monkeypatch):
    fakes = Fakes(tmp_path)
    seen = []
    real = transport.run

    def spy(argv, timeout=None, multiplex=None, progress=None):
        seen.append((argv[0], timeout, progress))
        return real(argv, timeout=timeout, multiplex=multiplex, progress=progress)

    monkeypatch.setattr(transport, "run", spy)
    monkeypatch.setenv("FAKE_STATE", str(fakes.state))
    monkeypatch.delenv(transport.ENV_MODE, raising=False)
    assert saltssh.salt_ssh("n1", "gfs2clvm_tm.clone", 1, conf=fakes.conf) == {"ok": True}
    assert seen[0][:2] == (str(fakes.salt_ssh), 30) and callable(seen[0][2])


def test_the_driver_error_ignores_progress_lines_of_a_broken_call(tmp_path, monkeypatch):
    fakes = Fakes(tmp_path)
    monkeypatch.setenv("FAKE_STATE", str(fakes.state))
    fakes.reply(out="not json", rc=1, stderr="worker says no\n" + PROGRESS)
    with pytest.raises(DriverError) as err:
        saltssh.salt_ssh("n1", "gfs2clvm_tm.clone", conf=fakes.conf)
    assert str(err.value) == "gfs2clvm_tm.clone on n1: salt-ssh exit 1: worker says no"
    fakes.reply(out={}, rc=1, stderr="boom\n" + PROGRESS)
    with pytest.raises(DriverError, match=r"^no answer from n1: boom$"):
        saltssh.salt_ssh("n1", "gfs2clvm_tm.clone", conf=fakes.conf)


def test_in_process_forced_but_impossible_is_one_driver_error(tmp_path, monkeypatch):
    fakes = Fakes(tmp_path)
    monkeypatch.setenv("FAKE_STATE", str(fakes.state))
    monkeypatch.setenv(transport.ENV_MODE, "inprocess")
    with pytest.raises(DriverError, match="in-process salt-ssh impossible: .* is not Salt's salt-ssh script"):
        saltssh.salt_ssh("n1", "f", conf=fakes.conf)
    assert fakes.calls() == []


def test_subprocess_mode_keeps_the_subprocess(tmp_path, monkeypatch):
    monkeypatch.setenv(transport.ENV_MODE, "subprocess")
    monkeypatch.setattr(transport, "run_in_process", lambda *a, **k: pytest.fail("in-process used"))
    fakes = Fakes(tmp_path)
    monkeypatch.setenv("FAKE_STATE", str(fakes.state))
    fakes.reply(value={"x": 1})
    assert saltssh.salt_ssh("n1", "f", conf=fakes.conf) == {"x": 1}
    assert transport.in_process_possible([SALT_SSH]) == (False, "GFS2CLVM_TRANSPORT=subprocess")


def test_watchdog_kills_only_the_calls_processes():
    """A long-lived caller (bench, tests: their sshd) keeps the children it had before the call."""
    old = subprocess.Popen(["sleep", "30"])
    try:
        dog = transport._Watchdog(None)
        new = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
        deadline = time.monotonic() + 5
        while len(transport._descendants(new.pid)) < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        grandchild = transport._descendants(new.pid)[0]
        dog._fire()
        new.wait(5)  # ended (killed, or its shell saw its sleep killed first and exited)
        deadline = time.monotonic() + 5
        while Path(f"/proc/{grandchild}").exists() and b") Z" not in Path(f"/proc/{grandchild}/stat").read_bytes() \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not Path(f"/proc/{grandchild}").exists() or b") Z" in Path(f"/proc/{grandchild}/stat").read_bytes()
        assert old.poll() is None and dog.fired
    finally:
        old.kill()
        old.wait()


class _Owner:
    """Like salt.utils.vt.Terminal: a method sleeping for the object's own process."""

    def __init__(self, fast, pid):
        self.fast, self.pid = fast, pid

    def wait_a_bit(self, seconds):
        start = time.monotonic()
        self.fast.sleep(seconds)
        return time.monotonic() - start


def test_a_method_waits_for_its_own_process_only():
    fast = transport.FastTime()
    mine = subprocess.Popen(["sleep", "0.3"])
    other = subprocess.Popen(["true"])  # exits at once: not what the method waits for
    try:
        took = _Owner(fast, mine.pid).wait_a_bit(5)
        assert 0.25 <= took < 2, took
    finally:
        mine.wait()
        other.wait()


def test_a_method_whose_process_was_reaped_does_not_wait():
    """Terminal.recv reaps ssh at EOF, then close() sleeps 0.1 s twice for it: nothing to wait for."""
    fast = transport.FastTime()
    proc = subprocess.Popen(["true"])
    proc.wait()
    busy = subprocess.Popen(["sleep", "5"])  # another child still running does not matter
    try:
        assert _Owner(fast, proc.pid).wait_a_bit(1) < 0.05
    finally:
        busy.kill()
        busy.wait()


def test_quick_exit_freezes_the_collector_at_exit():
    code = ("import atexit, gc\n"
            "from gfs2clvm_driver import transport\n"
            "atexit.register(lambda: print('at exit', gc.get_freeze_count() > 0))  # runs after the freeze\n"
            "transport._quick_exit_once(); transport._quick_exit_once()\n"
            "print('running', gc.get_freeze_count(), len(transport._QUICK_EXIT))\n")
    lib = str(Path(transport.__file__).parent.parent)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": lib})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "running 0 1\nat exit True\n"


MUX_NOTES = ("mux_client_request_session: session request failed: Session open refused by peer\n"
             "ControlSocket /tmp/gfs2clvm-cm-0/0123abcd-f999428370e9fd9e7be43e4e5ec9f070bf98e3f2 already exists, "
             "disabling multiplexing\n")


@pytest.mark.parametrize("stderr, expected", [
    (MUX_NOTES + "Error running 'gfs2clvm_tm.clone': no space\n", "f on h: no space"),
    (MUX_NOTES + "ssh: connect to host h port 22: Connection refused\n",
     "ssh to h failed: ssh: connect to host h port 22: Connection refused"),
])
def test_failure_text_skips_ssh_multiplexing_notes(stderr, expected):
    """Over MaxSessions the worker's sshd refuses a session on the shared master: ssh says so
    in two lines, opens a connection of its own and the call goes on (measured with OpenSSH
    9.2); those lines are never the error message."""
    assert saltssh.failure_text("f", "h", {"retcode": 1, "stderr": stderr, "_error": ""}) == expected
