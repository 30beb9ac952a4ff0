# SPDX-License-Identifier: Apache-2.0
"""transport.run (salt-ssh in-process) against the real salt-ssh subprocess, through
the local sshd: same exit code and same JSON for success, a module error, bad
arguments, an unknown host, a refused host key and a refused connection; and the
driver's failure mapping reads both alike.  Multiplexing: the second call reuses
the first call's ssh connection."""

import json
import os
import shutil
import socket
import subprocess
import tempfile
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tm_commands" / "lib"))
from gfs2clvm_driver import saltssh as driver_saltssh  # noqa: E402
from gfs2clvm_driver import transport  # noqa: E402


@pytest.fixture()
def cm_dir(monkeypatch):
    path = Path(tempfile.mkdtemp(prefix="cm", dir="/tmp"))  # short: a socket path has 107 bytes at most
    monkeypatch.setenv(transport.ENV_CM_DIR, str(path))
    monkeypatch.delenv(transport.ENV_MODE, raising=False)
    yield path
    for sock in path.iterdir():
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], capture_output=True, check=False)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def private(saltssh, tmp_path_factory):
    """The driver set-up with a thin dir of this module's own (the shared one races with other
    test sessions deploying into it at the same time); warmed up once."""
    base = tmp_path_factory.mktemp("transport")
    thin = f"/var/tmp/.gfs2clvm-it-transport-{base.name}"
    saltfile = _variant(saltssh, base, "private", thin_dir=thin)
    argv = _argv(saltssh, saltfile, saltssh.target("unpriv"), "test.ping")
    code, out, err = transport.run_subprocess(argv, timeout=600)
    assert code == 0, (out, err)
    yield {"saltfile": saltfile, "thin_dir": thin, "base": base}
    subprocess.run(["rm", "-rf", "--one-file-system", thin], check=False)


def _argv(saltssh, saltfile, target, fun, *args, **kwargs):
    conf = {"salt_ssh": saltssh.salt_ssh, "saltfile": str(saltfile)}
    return driver_saltssh.build_argv(conf, [target], fun, args, kwargs)


def _variant(saltssh, tmp_path, name, base=None, **roster_changes):
    """A copy of the driver set-up (or of ``base``) whose roster entry for the unprivileged user is changed."""
    cfg = tmp_path / name
    cfg.mkdir()
    src = Path(base) if base else saltssh.driver_config_dir
    master = yaml.safe_load((src / "master").read_text())
    roster = yaml.safe_load((src / "roster").read_text())
    target = saltssh.target("unpriv")
    entry = dict(roster[target], **roster_changes)
    master["roster_file"] = str(cfg / "roster")
    if "known_hosts_file" in roster_changes:
        master["known_hosts_file"] = entry.pop("known_hosts_file")
    (cfg / "master").write_text(yaml.safe_dump(master))
    (cfg / "roster").write_text(yaml.safe_dump({target: entry}))
    saltfile = cfg / "Saltfile"
    saltfile.write_text(yaml.safe_dump({"salt-ssh": {"config_dir": str(cfg), "log_level": "warning"}}))
    return saltfile


def _both(argv):
    sub = transport.run_subprocess(argv, timeout=300)
    inp = transport.run_in_process(argv, timeout=300)
    return sub, inp


def _same(sub, inp):
    assert inp[0] == sub[0], (sub, inp)
    assert json.loads(inp[1]) == json.loads(sub[1]), (sub, inp)


def _driver_view(argv, result):
    """What the driver makes of a result (its value or its one-line error)."""
    code, out, err = result
    try:
        data = json.loads(out) if out.strip() else {}
    except ValueError:
        return ("unparsed", code)
    host = argv[argv.index("--key-deploy") + 1]
    if host not in data:
        return ("missing", "No matching targets" in err)
    return ("failure", driver_saltssh.failure_text("f", host, data[host])) if driver_saltssh.failure_text(
        "f", host, data[host]) else ("ok", data[host])


def test_success_is_identical(saltssh, private, cm_dir):
    argv = _argv(saltssh, private["saltfile"], saltssh.target("unpriv"), "gfs2clvm.name_vm", 42, 0)
    sub, inp = _both(argv)
    assert sub[0] == 0 and json.loads(sub[1]) == {saltssh.target("unpriv"): "lv-one-42-0"}
    _same(sub, inp)
    assert transport.run(argv) == inp  # run() takes the in-process path here


def test_module_error_is_identical(saltssh, private, cm_dir):
    argv = _argv(saltssh, private["saltfile"], saltssh.target("unpriv"), "gfs2clvm.lv_info", "lv-one-1-0",
                 vg="no_such_vg_h8")
    sub, inp = _both(argv)
    assert sub[0] != 0
    _same(sub, inp)
    assert _driver_view(argv, inp) == _driver_view(argv, sub)
    assert _driver_view(argv, inp)[0] == "failure"


def test_bad_arguments_are_identical(saltssh, private, cm_dir):
    argv = _argv(saltssh, private["saltfile"], saltssh.target("unpriv"), "gfs2clvm.name_vm", "x", 0)
    sub, inp = _both(argv)
    assert sub[0] != 0
    _same(sub, inp)
    assert "invalid arguments" in _driver_view(argv, inp)[1]


def test_unknown_host_is_identical(saltssh, private, cm_dir):
    argv = _argv(saltssh, private["saltfile"], "no-such-worker", "gfs2clvm.name_vm", 1, 0)
    sub, inp = _both(argv)
    _same(sub, inp)
    assert inp[2].strip() == sub[2].strip()
    assert _driver_view(argv, inp) == _driver_view(argv, sub) == ("missing", True)


def test_refused_host_key_is_identical(saltssh, private, cm_dir, tmp_path):
    empty = tmp_path / "known_hosts.empty"
    empty.write_text("")
    saltfile = _variant(saltssh, tmp_path, "hostkey", private["base"] / "private", known_hosts_file=str(empty))
    argv = _argv(saltssh, saltfile, saltssh.target("unpriv"), "gfs2clvm.name_vm", 1, 0)
    sub, inp = _both(argv)
    assert sub[0] != 0
    _same(sub, inp)
    assert "host key" in _driver_view(argv, inp)[1]
    assert empty.read_text() == ""  # nothing accepted


def test_refused_connection_is_identical(saltssh, private, cm_dir, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    saltfile = _variant(saltssh, tmp_path, "refused", private["base"] / "private", port=port)
    argv = _argv(saltssh, saltfile, saltssh.target("unpriv"), "gfs2clvm.name_vm", 1, 0)
    sub, inp = _both(argv)
    assert sub[0] != 0
    _same(sub, inp)
    assert _driver_view(argv, inp) == _driver_view(argv, sub)
    assert "Connection refused" in str(_driver_view(argv, inp))


def test_second_call_reuses_the_connection(saltssh, private, cm_dir):
    argv = _argv(saltssh, private["saltfile"], saltssh.target("unpriv"), "gfs2clvm.name_vm", 7, 1)
    before = saltssh.ssh_connections()
    first = transport.run_in_process(argv, timeout=300)
    second = transport.run_in_process(argv, timeout=300)
    assert first == second and first[0] == 0
    assert saltssh.ssh_connections() - before == 1
    assert [p.name for p in cm_dir.iterdir()]  # the master's socket, under the private dir


def test_timeout_kills_the_call(saltssh, private, cm_dir, tmp_path):
    argv = _argv(saltssh, private["saltfile"], saltssh.target("unpriv"), "test.sleep", 60)
    with pytest.raises(subprocess.TimeoutExpired):
        transport.run_in_process(argv, timeout=3)
    left = []
    for pid in transport._descendants(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"test.sleep" in cmdline and b"Z" not in Path(f"/proc/{pid}/stat").read_bytes().split(b")")[-1][:3]:
            left.append(cmdline)
    assert left == []  # the call's processes are gone (a persisting ssh master may stay, by design)
