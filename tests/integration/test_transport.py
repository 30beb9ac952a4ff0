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
import time
import uuid
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


def _front_end_processes():
    """Live descendants of this process that are not the worker side (the sshd's subtree)."""
    live = {}
    for pid in transport._descendants(os.getpid()):
        try:
            state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if state[0] != b"Z":
            live[pid] = (int(state[1]), cmdline)
    return live


def test_timeout_kills_the_call(saltssh, private, cm_dir, tmp_path):
    argv = _argv(saltssh, private["saltfile"], saltssh.target("unpriv"), "test.sleep", 60)
    worker_side = set(transport._descendants(saltssh.proc.pid)) | {saltssh.proc.pid}
    before = set(_front_end_processes()) - worker_side
    during = {}

    def watch():  # what the call started on the front-end (ssh client, Salt's per-host process)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            sshd_tree = set(transport._descendants(saltssh.proc.pid)) | {saltssh.proc.pid}
            during.update({p: v for p, v in _front_end_processes().items() if p not in sshd_tree})
            time.sleep(0.1)

    import threading

    watcher = threading.Thread(target=watch)
    watcher.start()
    with pytest.raises(subprocess.TimeoutExpired):
        transport.run_in_process(argv, timeout=3)
    watcher.join()
    started = set(during) - before
    assert any(b"ssh" in during[p][1].split(b"\0")[0] for p in started), during  # the call's ssh was seen
    sshd_tree = set(transport._descendants(saltssh.proc.pid)) | {saltssh.proc.pid}
    left = {p: v for p, v in _front_end_processes().items() if p in started and p not in sshd_tree}
    assert left == {}  # the call's processes are gone (a persisting ssh master leaves the tree: daemon)
    assert saltssh.proc.poll() is None  # the caller's own children (this session's sshd) are not the call's


# -- the driver wired to the transport ----------------------------------------------
LIB = Path(__file__).resolve().parents[2] / "tm_commands" / "lib"
TM = Path(__file__).resolve().parents[2] / "tm_commands" / "tm" / "gfs2clvm"

FAKE_COPY = '''"""Stands in for a long gfs2clvm.copy on the worker: progress lines on stderr, slowly."""
import sys
import time

from salt.exceptions import CommandExecutionError


def copy(steps=3, delay=1.0, fail=False):
    total = 4 << 30
    for step in range(1, steps + 1):
        time.sleep(delay)
        done = total * step // (steps + 1)
        sys.stderr.write("gfs2clvm-progress: %d %d %d\\n" % (100 * done // total, done, total))
        sys.stderr.flush()
    if fail:
        raise CommandExecutionError("fake copy failed after %d steps" % steps)
    return {"bytes": total, "steps": steps}
'''

RUNNER = """
import json
from gfs2clvm_driver import run_main, saltssh

def main(argv):
    host, fail = argv
    return json.dumps(saltssh.salt_ssh(host, "gfs2clvm_fakecopy.copy", steps=3, delay=1.0, fail=fail == "1"))

run_main(main)
"""


@pytest.fixture(scope="module")
def fake_copy_conf(saltssh, private):
    """A driver conf whose worker also has the fake module (module_dirs, readable by gfs2ci)."""
    base = Path(saltssh.base) / f"fakecopy-{uuid.uuid4().hex[:8]}"
    mods = base / "modules"
    mods.mkdir(parents=True)
    (mods / "gfs2clvm_fakecopy.py").write_text(FAKE_COPY)
    for path in (base, mods):
        path.chmod(0o755)
    (mods / "gfs2clvm_fakecopy.py").chmod(0o644)
    roster = yaml.safe_load((private["base"] / "private" / "roster").read_text())
    opts = dict(roster[saltssh.target("unpriv")]["minion_opts"])
    opts["module_dirs"] = [*opts.get("module_dirs", []), str(mods)]
    saltfile = _variant(saltssh, base, "cfg", private["base"] / "private", minion_opts=opts)
    conf = base / "gfs2clvm.conf"
    conf.write_text(yaml.safe_dump({"salt_ssh": saltssh.salt_ssh, "saltfile": str(saltfile), "timeout": 300,
                                    "frontend_hosts": ["the-front-end"]}))
    return conf


def _timed_lines(argv, env):
    """Run ``argv``; ``(exit code, stdout, [(seconds since start, stderr line)], seconds to exit)``."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = [(time.monotonic() - start, line.rstrip("\n")) for line in proc.stderr]
    out = proc.stdout.read()
    code = proc.wait(300)
    return code, out, lines, time.monotonic() - start


def _driver_env(conf, mode, cm):
    env = dict(os.environ, GFS2CLVM_CONF=str(conf), PYTHONPATH=str(LIB), GFS2CLVM_TRANSPORT=mode)
    env[transport.ENV_CM_DIR] = str(cm)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


EXPECTED_INFO = [f"INFO: copy local-user: {p}% ({g}.0 of 4.0 GiB)" for p, g in ((25, 1), (50, 2), (75, 3))]


def test_progress_reaches_the_driver_stderr_live(saltssh, fake_copy_conf, cm_dir):
    code, out, lines, took = _timed_lines([sys.executable, "-c", RUNNER, saltssh.target("unpriv"), "0"],
                                          _driver_env(fake_copy_conf, "inprocess", cm_dir))
    assert code == 0, lines
    assert json.loads(out) == {"bytes": 4 << 30, "steps": 3}
    assert [text for _, text in lines] == EXPECTED_INFO
    # live: the first line arrives while the worker still has two 1 s steps to go
    assert took - lines[0][0] >= 1.5, (lines, took)
    assert lines[1][0] - lines[0][0] >= 0.5 and lines[2][0] - lines[1][0] >= 0.5, lines


def test_progress_lines_are_never_the_error(saltssh, fake_copy_conf, cm_dir):
    argv = [sys.executable, "-c", RUNNER, saltssh.target("unpriv"), "1"]
    error = (f"ERROR: gfs2clvm_fakecopy.copy on {saltssh.target('unpriv')}: fake copy failed after 3 steps")
    code, out, lines, _ = _timed_lines(argv, _driver_env(fake_copy_conf, "inprocess", cm_dir))
    assert (code, out) == (1, ""), lines
    assert [text for _, text in lines] == [*EXPECTED_INFO, error, error.removeprefix("ERROR: ")]
    # the subprocess sees the lines only at the end: no INFO, the same one ERROR line
    code, out, lines, _ = _timed_lines(argv, _driver_env(fake_copy_conf, "subprocess", cm_dir))
    assert (code, out) == (1, ""), lines
    assert [text for _, text in lines] == [error, error.removeprefix("ERROR: ")]


def _run_exe(action, args, env):
    proc = subprocess.run([str(TM / action), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def test_executables_in_process_match_the_subprocess(saltssh, private, cm_dir, tmp_path):
    """The real TM executables (``/usr/bin/env python3`` = the venv's here, like /usr/bin/python3
    with a distribution's salt-ssh): same exit code, stdout and stderr both ways."""
    mp = saltssh.mountpoints["unpriv"]
    host = saltssh.target("unpriv")
    conf = saltssh.driver_conf(tmp_path / "gfs2clvm.conf", mountpoint=str(mp), mount_check="none",
                               frontend_hosts=["the-front-end"], timeout=300)
    data = yaml.safe_load(conf.read_text())
    data["saltfile"] = str(private["saltfile"])
    conf.write_text(yaml.safe_dump(data))
    ctx = tmp_path / "context.sh"
    ctx.write_text("ETH0_IP='10.0.0.42'\n")
    vmid = 4200 + os.getpid() % 1000
    cases = [
        ("context", [ctx, f"{host}:{mp}/datastores/0/{vmid}/disk.1", vmid, 0]),
        ("mkswap", [512, f"nosuchnode:{mp}/datastores/0/5/disk.0", 5, 0]),
        ("mkimage", [64, "raw", f"{host}:{mp}/datastores/0/6/disk.0", 6, 0]),  # no LVM here: a worker error
        ("delete", [f"{host}:{mp}/datastores/0/10", 1, 0]),  # refused before any call
    ]
    for action, args in cases:
        inp = _run_exe(action, args, _driver_env(conf, "inprocess", cm_dir))
        sub = _run_exe(action, args, _driver_env(conf, "subprocess", cm_dir))
        assert inp == sub, (action, inp, sub)
    assert _run_exe(*cases[0], _driver_env(conf, "inprocess", cm_dir)) == (0, "", "")
    code, out, err = _run_exe(*cases[2], _driver_env(conf, "inprocess", cm_dir))
    # no onevm on this host: mkimage logs that it could not read DISK/FS (INFO:), then fails
    lines = [line for line in err.splitlines() if not line.startswith("INFO: mkimage: ")]
    assert (code, out) == (1, "") and lines[0].startswith(f"ERROR: gfs2clvm_tm.mkimage on {host}: ") and \
        len(lines) == 2, err
    assert lines[1] == lines[0].removeprefix("ERROR: "), err  # the plain reason line oned shows
