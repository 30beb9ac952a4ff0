# SPDX-License-Identifier: Apache-2.0
"""gfs2clvm_driver.transport and service.py without ssh: the hand-over to the service
(two-phase, fallback to the CLI, the service dying mid-call, timeout), the service's
reading of the driver's argv, its CLI-shaped results, the Python of a salt-ssh, the
multiplexing options, and no private name of Salt anywhere in the driver library."""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import test_driver_support  # noqa: F401 -- puts tm_commands/lib on sys.path
from gfs2clvm_driver import saltssh, service, slots, transport

SALT_SSH = str(Path(sys.executable).parent / "salt-ssh")
LIB = Path(transport.__file__).parent


# -- no private Salt ----------------------------------------------------------
def test_the_driver_library_touches_no_private_salt_name():
    private_import = re.compile(r"^\s*(import|from)\s+salt\.[a-z_.]*\._|salt\.[a-z_.]*\._[a-z]", re.M)
    assignment = re.compile(r"^\s*salt\.[\w.]+\s*=(?!=)|setattr\(\s*salt\.", re.M)
    for path in sorted(LIB.glob("*.py")):
        text = path.read_text()
        assert not private_import.search(text), (path.name, private_import.search(text).group(0))
        assert not assignment.search(text), (path.name, assignment.search(text).group(0))
    assert len((LIB / "transport.py").read_text().splitlines()) + \
        len((LIB / "service.py").read_text().splitlines()) <= 400


def test_the_action_side_never_imports_salt():
    code = ("import sys; from gfs2clvm_driver import transport, saltssh, tm, datastore; "
            "print(any(m == 'salt' or m.startswith('salt.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(LIB.parent))).stdout
    assert out.strip() == "False"


# -- the hand-over ----------------------------------------------------------------
class FakeService:
    """A Unix socket answering with ``script(conn, request)`` in a thread."""

    def __init__(self, script):
        self.path = os.path.join(tempfile.mkdtemp(prefix="fs", dir="/tmp"), "s.sock")
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(self.path)
        self.sock.listen(8)
        self.got = []
        self.thread = threading.Thread(target=self._serve, args=(script,), daemon=True)
        self.thread.start()

    def _serve(self, script):
        conn, _ = self.sock.accept()
        with conn:
            reader = conn.makefile("rb")
            request = json.loads(reader.readline())
            self.got.append(request)
            script(conn, reader)

    def close(self):
        self.sock.close()
        __import__("shutil").rmtree(os.path.dirname(self.path), ignore_errors=True)


def _say(conn, message):
    conn.sendall(json.dumps(message).encode() + b"\n")


def _read(reader):
    line = reader.readline()
    return json.loads(line) if line else None


ECHO = ["/bin/echo", "from", "the", "cli"]


def test_no_socket_runs_the_cli(tmp_path):
    assert transport.run(ECHO, socket_path=str(tmp_path / "none.sock")) == (0, "from the cli\n", "")
    assert transport.run(ECHO, socket_path="") == (0, "from the cli\n", "")


def test_the_result_of_the_service_is_the_result():
    def script(conn, reader):
        _say(conn, {"started": 42})
        assert _read(reader) == {"go": True}
        _say(conn, {"result": [20, '{"n": 1}\n', "[ERROR   ] x\n"]})

    fake = FakeService(script)
    assert transport.run(ECHO, socket_path=fake.path) == (20, '{"n": 1}\n', "[ERROR   ] x\n")
    assert fake.got == [{"argv": ECHO}]
    fake.close()


def test_a_refusal_runs_the_cli():
    fake = FakeService(lambda conn, reader: _say(conn, {"unsupported": "ValueError: option -i"}))
    assert transport.run(ECHO, socket_path=fake.path) == (0, "from the cli\n", "")
    fake.close()


def test_a_service_that_never_starts_the_call_runs_the_cli_and_gets_no_go(monkeypatch):
    monkeypatch.setattr(transport, "START_TIMEOUT", 0.3)
    seen = []

    def script(conn, reader):
        threading.Event().wait(0.6)
        try:
            _say(conn, {"started": 7})
            seen.append(_read(reader))
        except OSError:  # the action closed the connection (as the service's fork sees it)
            seen.append(None)

    fake = FakeService(script)
    assert transport.run(ECHO, socket_path=fake.path) == (0, "from the cli\n", "")
    fake.thread.join(5)
    assert seen == [None]  # the connection was closed: the call never runs there
    fake.close()


def test_the_service_dying_mid_call_fails_that_call():
    def script(conn, reader):
        _say(conn, {"started": 4242})
        _read(reader)  # go -- then the service is gone

    fake = FakeService(script)
    with pytest.raises(transport.TransportError, match=r"^the gfs2clvm-saltssh service \(pid 4242\) ended during the call; its result is unknown, "
                                                  r"check the worker before retrying$"):
        transport.run(ECHO, socket_path=fake.path)
    fake.close()


def test_a_timeout_closes_the_connection():
    closed = []

    def script(conn, reader):
        _say(conn, {"started": 1})
        _read(reader)
        closed.append(_read(reader))  # EOF when the action gives up

    fake = FakeService(script)
    with pytest.raises(subprocess.TimeoutExpired):
        transport.run(ECHO, timeout=0.3, socket_path=fake.path)
    fake.thread.join(5)
    assert closed == [None]
    fake.close()


def test_missing_salt_ssh_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        transport.run([str(tmp_path / "salt-ssh"), "x"])


def test_the_driver_call_goes_through_the_transport(tmp_path, monkeypatch):
    from test_driver_support import Fakes  # pylint: disable=import-outside-toplevel

    fakes = Fakes(tmp_path)
    seen = []
    real = transport.run

    def spy(argv, timeout=None, socket_path=None):
        seen.append((argv[0], timeout, socket_path))
        return real(argv, timeout=timeout, socket_path=socket_path)

    monkeypatch.setattr(transport, "run", spy)
    monkeypatch.setenv("FAKE_STATE", str(fakes.state))
    conf = dict(fakes.conf, saltssh_socket=str(tmp_path / "absent.sock"))
    assert saltssh.salt_ssh("n1", "gfs2clvm_tm.clone", 1, conf=conf) == {"ok": True}  # no service: the CLI
    assert seen == [(str(fakes.salt_ssh), 30, str(tmp_path / "absent.sock"))]


# -- the service's side -----------------------------------------------------------
def test_the_service_reads_the_drivers_argv():
    conf = {"salt_ssh": "/x/salt-ssh", "saltfile": "/e/Saltfile"}
    argv = saltssh.build_argv(conf, ["n1"], "gfs2clvm_tm.clone", ["a b", 10], {"vg": "v"})
    assert service.parse_argv(argv) == ("/e/Saltfile", "n1", "glob", "gfs2clvm_tm.clone", ['"a b"', "10", 'vg="v"'])
    argv = saltssh.build_argv(conf, ["n1", "n2"], "gfs2clvm_tm.mv", [1])
    assert service.parse_argv(argv) == ("/e/Saltfile", ["n1", "n2"], "list", "gfs2clvm_tm.mv", ["1"])
    for bad in (argv[:1] + ["-i"] + argv[1:], argv[:1] + ["--saltfile", "/s", "n1", "f"], argv[:9]):
        with pytest.raises(ValueError):
            service.parse_argv(bad)


def test_results_are_shaped_like_the_cli():
    ok = {"return": "lv-one-1-0", "retcode": 0, "id": "n1", "fun": "f"}
    failed = {"_error": "Error", "stderr": "Error running 'f': no\n", "stdout": "", "retcode": 1}
    assert service.cli_result({"n1": ok}, "n1", "glob") == (0, json.dumps({"n1": "lv-one-1-0"}, indent=4) + "\n", "")
    code, out, _ = service.cli_result({"n1": ok, "n2": failed}, ["n1", "n2"], "list")
    assert code == 20 and json.loads(out) == {"n1": "lv-one-1-0", "n2": failed}
    ssh = {"_error": "", "stderr": "ssh: connect to host h port 22: Connection refused", "retcode": 255}
    denied = {"_error": "Permission denied", "stderr": "oneadmin@h: Permission denied (publickey).", "retcode": 255}
    code, out, _ = service.cli_result({"a": ssh, "b": denied, "c": "Target 'c' did not return any data"}, "*", "glob")
    assert code == 20 and json.loads(out) == {"a": ssh["stderr"], "b": denied["stderr"],
                                              "c": "Target 'c' did not return any data"}
    assert service.cli_result({"n": dict(failed, retcode=11)}, "n", "glob")[0] == 11  # EX_THIN_DEPLOY kept
    assert service.cli_result({}, "x", "glob") == (0, "{}\n", "[ERROR   ] No matching targets found in roster.\n")


def test_the_python_of_a_salt_ssh(tmp_path):
    script = tmp_path / "salt-ssh"
    script.write_text("#!/opt/venv/bin/python3\nimport salt.scripts\n")
    assert service.salt_python(str(script)) == "/opt/venv/bin/python3"
    script.write_text("#!/usr/bin/env python3\n")
    assert service.salt_python(str(script)) == __import__("shutil").which("python3")
    # a onedir (relenv): a shell-started script, its Python in bin/ beside it, reached by a symlink
    onedir = tmp_path / "opt" / "saltstack" / "salt"
    (onedir / "bin").mkdir(parents=True)
    (onedir / "bin" / "python3").symlink_to(sys.executable)
    (onedir / "salt-ssh").write_text('#!/bin/sh\n"exec" "$(dirname "$(readlink -f "$0")")/bin/python3.10" "$0" "$@"\n')
    (tmp_path / "usr-bin-salt-ssh").symlink_to(onedir / "salt-ssh")
    assert service.salt_python(str(tmp_path / "usr-bin-salt-ssh")) == str(onedir / "bin" / "python3")
    script.write_text("#!/bin/sh\n")
    with pytest.raises(RuntimeError, match="which Python"):
        service.salt_python(str(script))


def test_mux_options(tmp_path):
    assert service.mux_options(["A=b"], "/run/x", "0123abcd") == [
        "A=b", "ControlMaster=auto", "ControlPath=/run/x/0123abcd-%C", "ControlPersist=60"]
    for existing in (["ControlPath=/x/%C"], ["controlmaster=no"], ["ControlPersist=5"]):
        assert service.mux_options(existing, "/run/x", "0123abcd") == existing
    fits = "/tmp/" + "y" * (107 - len("/tmp/") - 1 - 9 - 40 - 18)
    assert service.mux_options([], fits, "0123abcd")
    assert service.mux_options([], fits + "y", "0123abcd") == []


def test_config_key_separates_configurations(tmp_path):
    """A master opened under one configuration (its known_hosts, key, roster) is never reused
    by a call with another one."""
    for name in ("master", "roster", "known_hosts"):
        (tmp_path / name).write_text(f"{name} 1\n")
    opts = {"conf_file": str(tmp_path / "master"), "config_dir": str(tmp_path), "roster_file": "",
            "known_hosts_file": str(tmp_path / "known_hosts"), "ssh_priv": "/k/id"}
    key = service.config_key(opts)
    assert len(key) == 8 and key == service.config_key(dict(opts))
    assert service.config_key(dict(opts, ssh_priv="/k/other")) != key
    assert service.config_key(dict(opts, known_hosts_file=None)) != key
    for name in ("roster", "known_hosts", "master"):
        (tmp_path / name).write_text(f"{name} 2\n")
        assert service.config_key(opts) != key, name
        key = service.config_key(opts)


def test_private_dir_refuses_an_open_directory(tmp_path):
    cm = tmp_path / "cm"
    cm.mkdir(mode=0o755)
    cm.chmod(0o755)
    with pytest.raises(RuntimeError, match="mode 0700"):
        slots.private_dir(str(cm), "ssh control directory", RuntimeError)
    cm.rmdir()
    cm.symlink_to(tmp_path)
    with pytest.raises(RuntimeError):
        slots.private_dir(str(cm), "ssh control directory", RuntimeError)
    assert slots.private_dir(str(tmp_path / "new"), "x") == str(tmp_path / "new")
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700


# -- the driver's wiring (saltssh.py) ---------------------------------------------
from gfs2clvm_driver import saltssh  # noqa: E402
from gfs2clvm_driver.core import DriverError  # noqa: E402
from test_driver_support import Fakes  # noqa: E402

PROGRESS = "gfs2clvm-progress: 40 1717986918 4294967296\ngfs2clvm-progress: 80 3435973836 4294967296\n"


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
