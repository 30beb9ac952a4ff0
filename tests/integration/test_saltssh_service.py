# SPDX-License-Identifier: Apache-2.0
"""The gfs2clvm-saltssh service (service.py: Salt's public SSHClient in a long-lived
process) against the real salt-ssh CLI, through the local sshd: same exit code and
same JSON for success, a module error, bad arguments, an unknown host, a refused host
key and a refused connection, and the driver reads both alike.  Its ssh multiplexing
(the second call rides on the first call's connection), the timeout, the service
killed mid-call (one clear reason, the next call falls back), and an oned-like reader
(stdout/stderr to EOF within 0.1 s of the action's exit) with ControlPersist."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tm_commands" / "lib"))
from gfs2clvm_driver import saltssh as driver_saltssh  # noqa: E402
from gfs2clvm_driver import service as saltssh_service  # noqa: E402
from gfs2clvm_driver import transport  # noqa: E402
from gfs2clvm_driver.core import DriverError  # noqa: E402
from gfs2clvm_driver.service import salt_python as service_python  # noqa: E402

SERVICE = Path(saltssh_service.__file__)


class Service:
    """The service run directly (no systemd here), as the unit runs it, on a socket of its own."""

    def __init__(self, conf, base):
        self.conf, self.base = conf, Path(base)
        self.socket = str(self.base / "s.sock")
        self.cm_dir = self.base / "cm"
        self.proc = None

    def start(self):
        self.cm_dir.mkdir(mode=0o700, exist_ok=True)
        env = dict(os.environ, GFS2CLVM_CONF=str(self.conf), RUNTIME_DIRECTORY=str(self.cm_dir))
        self.proc = subprocess.Popen([sys.executable, str(SERVICE), "--socket", self.socket], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(self.base / "journal", "ab"), start_new_session=True)
        deadline = time.monotonic() + 60
        while b"serving" not in (self.base / "journal").read_bytes():
            assert self.proc.poll() is None and time.monotonic() < deadline, (self.base / "journal").read_text()
            time.sleep(0.05)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the service and its forks (systemd: its cgroup)
            self.proc.wait()
        for sock in self.cm_dir.glob("*"):
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], capture_output=True, check=False)


def _conf(saltssh, path, saltfile, **extra):
    data = {"salt_ssh": saltssh.salt_ssh, "saltfile": str(saltfile), "timeout": 300,
            "frontend_hosts": ["the-front-end"], **extra}
    Path(path).write_text(yaml.safe_dump(data))
    return Path(path)


@pytest.fixture(scope="module")
def service(saltssh, private):
    base = Path(tempfile.mkdtemp(prefix="sv", dir="/tmp"))  # short: socket paths have 107 bytes at most
    svc = Service(_conf(saltssh, base / "gfs2clvm.conf", private["saltfile"]), base)
    svc.start()
    yield svc
    svc.stop()
    shutil.rmtree(base, ignore_errors=True)


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


def _both(service, argv):
    sub = transport.run_subprocess(argv, timeout=300)
    svc = transport.run_by_service(service.socket, argv, timeout=300)
    assert svc is not None, (service.base / "journal").read_text()
    return sub, svc


def _same(sub, svc):
    assert svc[0] == sub[0], (sub, svc)
    assert json.loads(svc[1]) == json.loads(sub[1]), (sub, svc)


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


def test_success_is_identical(saltssh, private, service):
    argv = _argv(saltssh, private["saltfile"], saltssh.target("unpriv"), "gfs2clvm.name_vm", 42, 0)
    sub, svc = _both(service, argv)
    assert sub[0] == 0 and json.loads(sub[1]) == {saltssh.target("unpriv"): "lv-one-42-0"}
    _same(sub, svc)
    assert transport.run(argv, socket_path=service.socket) == svc


def test_module_error_is_identical(saltssh, private, service):
    argv = _argv(saltssh, private["saltfile"], saltssh.target("unpriv"), "gfs2clvm.lv_info", "lv-one-1-0",
                 vg="no_such_vg_h8")
    sub, svc = _both(service, argv)
    assert sub[0] != 0
    _same(sub, svc)
    assert _driver_view(argv, svc) == _driver_view(argv, sub)
    assert _driver_view(argv, svc)[0] == "failure"


def test_bad_arguments_are_identical(saltssh, private, service):
    argv = _argv(saltssh, private["saltfile"], saltssh.target("unpriv"), "gfs2clvm.name_vm", "x", 0)
    sub, svc = _both(service, argv)
    assert sub[0] != 0
    _same(sub, svc)
    assert "invalid arguments" in _driver_view(argv, svc)[1]


def test_unknown_host_is_identical(saltssh, private, service):
    argv = _argv(saltssh, private["saltfile"], "no-such-worker", "gfs2clvm.name_vm", 1, 0)
    sub, svc = _both(service, argv)
    _same(sub, svc)
    assert _driver_view(argv, svc) == _driver_view(argv, sub) == ("missing", True)


def test_refused_host_key_is_identical(saltssh, private, service, tmp_path):
    empty = tmp_path / "known_hosts.empty"
    empty.write_text("")
    saltfile = _variant(saltssh, tmp_path, "hostkey", private["base"] / "private", known_hosts_file=str(empty))
    argv = _argv(saltssh, saltfile, saltssh.target("unpriv"), "gfs2clvm.name_vm", 1, 0)
    sub, svc = _both(service, argv)
    assert sub[0] != 0
    _same(sub, svc)
    assert "host key" in _driver_view(argv, svc)[1]
    assert empty.read_text() == ""  # nothing accepted


def test_refused_connection_is_identical(saltssh, private, service, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    saltfile = _variant(saltssh, tmp_path, "refused", private["base"] / "private", port=port)
    argv = _argv(saltssh, saltfile, saltssh.target("unpriv"), "gfs2clvm.name_vm", 1, 0)
    sub, svc = _both(service, argv)
    assert sub[0] != 0
    _same(sub, svc)
    assert _driver_view(argv, svc) == _driver_view(argv, sub)
    assert "Connection refused" in str(_driver_view(argv, svc))


def test_second_call_reuses_the_connection(saltssh, private, service):
    argv = _argv(saltssh, private["saltfile"], saltssh.target("unpriv"), "gfs2clvm.name_vm", 7, 1)
    transport.run_by_service(service.socket, argv, timeout=300)
    before = saltssh.ssh_connections()
    first = transport.run_by_service(service.socket, argv, timeout=300)
    second = transport.run_by_service(service.socket, argv, timeout=300)
    assert first == second and first[0] == 0
    assert saltssh.ssh_connections() - before == 0  # both rode on the master of the first call
    assert [p.name for p in service.cm_dir.iterdir()]  # the master's socket, in the service's directory


def _call_processes(service):
    """The service's forks and what they started (the persisting ssh masters are no descendants)."""
    return set(saltssh_service.descendants(service.proc.pid))


def test_timeout_kills_the_call(saltssh, private, service):
    argv = _argv(saltssh, private["saltfile"], saltssh.target("unpriv"), "test.sleep", 60)
    seen = set()
    done = threading.Event()

    def watch():
        while not done.is_set():
            seen.update(_call_processes(service))
            time.sleep(0.1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            transport.run(argv, timeout=3, socket_path=service.socket)
    finally:
        done.set()
        watcher.join()
    assert seen  # the call ran in a fork of the service
    deadline = time.monotonic() + 5
    while _call_processes(service) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _call_processes(service) == set()  # the fork and its ssh are gone
    assert service.proc.poll() is None  # the service itself serves on


def test_no_service_is_the_cli(saltssh, private, tmp_path):
    argv = _argv(saltssh, private["saltfile"], saltssh.target("unpriv"), "gfs2clvm.name_vm", 5, 2)
    gone = str(tmp_path / "absent.sock")
    assert transport.run(argv, socket_path=gone) == transport.run_subprocess(argv)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(tmp_path / "stale.sock"))  # bound, never listening: connection refused
    assert transport.run(argv, socket_path=str(tmp_path / "stale.sock"))[0] == 0
    stale.close()


def test_another_salt_ssh_is_left_to_the_cli(saltssh, private, service, tmp_path):
    """The service serves the salt-ssh of its configuration only; any other runs as the CLI."""
    other = tmp_path / "salt-ssh"
    other.write_text(Path(saltssh.salt_ssh).read_text())
    other.chmod(0o755)
    argv = _argv(saltssh, private["saltfile"], saltssh.target("unpriv"), "gfs2clvm.name_vm", 5, 3)
    argv[0] = str(other)
    assert transport.run_by_service(service.socket, argv) is None


def test_killing_the_service_mid_call_fails_that_call_and_the_next_works(saltssh, private, tmp_path):
    base = Path(tempfile.mkdtemp(prefix="sk", dir="/tmp"))
    conf = _conf(saltssh, base / "gfs2clvm.conf", private["saltfile"], saltssh_socket=str(base / "s.sock"))
    svc = Service(conf, base).start()
    try:
        from gfs2clvm_driver import config as driver_config  # pylint: disable=import-outside-toplevel

        loaded = driver_config.load(str(conf))
        host = saltssh.target("unpriv")
        killer = threading.Timer(2.0, svc.stop)  # the service's whole cgroup, as systemd's kill does
        killer.start()
        start = time.monotonic()
        with pytest.raises(DriverError) as err:
            driver_saltssh.salt_ssh(host, "test.sleep", 30, conf=loaded)
        killer.join()
        assert time.monotonic() - start < 20
        assert str(err.value).startswith("the gfs2clvm-saltssh service (pid ") and \
            "ended during the call" in str(err.value), err.value
        # the next action: the socket refuses (nothing restarts it here) -> the CLI
        assert driver_saltssh.salt_ssh(host, "gfs2clvm.name_vm", 9, 0, conf=loaded) == "lv-one-9-0"
        # restarted (systemd's Restart=on-failure): served again
        svc.start()
        assert driver_saltssh.salt_ssh(host, "gfs2clvm.name_vm", 9, 1, conf=loaded) == "lv-one-9-1"
    finally:
        svc.stop()
        shutil.rmtree(base, ignore_errors=True)


# -- the driver's executables ------------------------------------------------------
LIB = Path(__file__).resolve().parents[2] / "tm_commands" / "lib"
TM = Path(__file__).resolve().parents[2] / "tm_commands" / "tm" / "gfs2clvm"


def _driver_env(conf):
    env = dict(os.environ, GFS2CLVM_CONF=str(conf), PYTHONPATH=str(LIB))
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    return env


def _like_oned(argv, env):
    """Run ``argv`` as oned does (CommandManager.rb capture3_timeout, release-7.4.0 lines 161-205):
    stdout/stderr read by threads, the process waited for, then each reader gets 0.1 s to
    reach EOF or its stream is dropped.  Returns ``(code, stdout, stderr, dropped streams)``."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)
    got = {}
    readers = [threading.Thread(target=lambda n=n, f=f: got.__setitem__(n, f.read()), daemon=True)
               for n, f in (("out", proc.stdout), ("err", proc.stderr))]
    for reader in readers:
        reader.start()
    code = proc.wait(300)
    dropped = []
    for name, reader in zip(("out", "err"), readers):
        reader.join(0.1)
        if reader.is_alive():
            dropped.append(name)
    return code, got.get("out", b"").decode(), got.get("err", b"").decode(), dropped


def _exe_cases(saltssh, mp, vmid):
    host = saltssh.target("unpriv")
    return [
        ("context", [f"{host}:{mp}/datastores/0/{vmid}/disk.1", vmid, 0]),
        ("mkswap", [512, f"nosuchnode:{mp}/datastores/0/5/disk.0", 5, 0]),
        ("mkimage", [64, "raw", f"{host}:{mp}/datastores/0/6/disk.0", 6, 0]),  # no LVM here: a worker error
        ("delete", [f"{host}:{mp}/datastores/0/10", 1, 0]),  # refused before any call
    ]


@pytest.fixture()
def exe_conf(saltssh, private, service, tmp_path):
    mp = saltssh.mountpoints["unpriv"]
    conf = saltssh.driver_conf(tmp_path / "gfs2clvm.conf", mountpoint=str(mp), mount_check="none",
                               frontend_hosts=["the-front-end"], timeout=300)
    data = yaml.safe_load(conf.read_text())
    data["saltfile"] = str(private["saltfile"])
    conf.write_text(yaml.safe_dump(data))
    ctx = tmp_path / "context.sh"
    ctx.write_text("ETH0_IP='10.0.0.42'\n")
    return conf, data, ctx, mp


def test_executables_by_the_service_match_the_cli(saltssh, service, exe_conf):
    """The real TM executables (``/usr/bin/env python3``): same exit code, stdout and stderr both
    ways, and nothing holds the action's stdout/stderr after it exits (oned's 0.1 s)."""
    conf, data, ctx, mp = exe_conf
    by_service = conf.parent / "service.conf"
    by_service.write_text(yaml.safe_dump(dict(data, saltssh_socket=service.socket)))
    vmid = 4200 + os.getpid() % 1000
    for action, args in _exe_cases(saltssh, mp, vmid):
        args = [ctx, *args] if action == "context" else args
        argv = [str(TM / action), *map(str, args)]
        svc = _like_oned(argv, _driver_env(by_service))
        cli = _like_oned(argv, _driver_env(conf))
        assert svc == cli, (action, svc, cli)
        assert svc[3] == [], (action, svc)
    argv = [str(TM / "mkimage"), *map(str, _exe_cases(saltssh, mp, vmid)[2][1])]
    code, out, err, dropped = _like_oned(argv, _driver_env(by_service))
    failure = [line for line in err.splitlines() if not line.startswith("INFO: ")]  # logged only
    why = failure[-1] if failure else ""
    assert (code, out, dropped) == (1, "", []) and why.startswith(
        f"gfs2clvm_tm.mkimage on {saltssh.target('unpriv')}: ") and failure == [f"ERROR: {why}", why], err


def test_control_persist_in_the_master_config_holds_no_action_stream(saltssh, private, exe_conf, tmp_path):
    """ssh multiplexing from the master config's ssh_options on the CLI path (no service): the
    ControlPersist master an action starts must not hold its stdout/stderr."""
    conf, data, ctx, mp = exe_conf
    cm = Path(tempfile.mkdtemp(prefix="cp", dir="/tmp"))
    src = private["base"] / "private"
    master = yaml.safe_load((src / "master").read_text())
    master["ssh_options"] = ["ControlMaster=auto", f"ControlPath={cm}/%C", "ControlPersist=60"]
    cfg = tmp_path / "persist"
    cfg.mkdir()
    (cfg / "master").write_text(yaml.safe_dump(master))
    (cfg / "Saltfile").write_text(yaml.safe_dump({"salt-ssh": {"config_dir": str(cfg), "log_level": "warning"}}))
    persist = conf.parent / "persist.conf"
    persist.write_text(yaml.safe_dump(dict(data, saltfile=str(cfg / "Saltfile"))))
    try:
        vmid = 5200 + os.getpid() % 1000
        for action, args in _exe_cases(saltssh, mp, vmid)[:3]:
            args = [ctx, *args] if action == "context" else args
            code, out, err, dropped = _like_oned([str(TM / action), *map(str, args)], _driver_env(persist))
            assert dropped == [], (action, code, out, err)
            assert action != "mkimage" or any(line.startswith("ERROR: gfs2clvm_tm.mkimage on ")
                                              for line in err.splitlines()), err
        assert list(cm.iterdir())  # a master was started and persists
    finally:
        for sock in cm.iterdir():
            subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "x"], capture_output=True,
                           check=False)
        shutil.rmtree(cm, ignore_errors=True)


FAKE_COPY = '''"""Stands in for a long gfs2clvm.copy on the worker: progress lines on stderr."""
import sys

from salt.exceptions import CommandExecutionError


def copy(steps=3, fail=False):
    total = 4 << 30
    for step in range(1, steps + 1):
        done = total * step // (steps + 1)
        sys.stderr.write("gfs2clvm-progress: %d %d %d\\n" % (100 * done // total, done, total))
    if fail:
        raise CommandExecutionError("fake copy failed after %d steps" % steps)
    return {"bytes": total, "steps": steps}
'''


def test_progress_lines_are_never_the_error(saltssh, private, service, tmp_path):
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
    host = saltssh.target("unpriv")
    runner = ("from gfs2clvm_driver import run_main, saltssh\n"
              "run_main(lambda a: str(saltssh.salt_ssh(a[0], 'gfs2clvm_fakecopy.copy', fail=a[1] == '1')))\n")
    why = f"gfs2clvm_fakecopy.copy on {host}: fake copy failed after 3 steps"
    error = f"ERROR: {why}\n{why}\n"  # the logged line, then the reason oned shows
    for socket_path in (service.socket, ""):
        conf = _conf(saltssh, tmp_path / "c.conf", saltfile, saltssh_socket=socket_path)
        code, out, err, _ = _like_oned([sys.executable, "-c", runner, host, "1"], _driver_env(conf))
        assert (code, out, err) == (1, "", error), socket_path
        code, out, err, _ = _like_oned([sys.executable, "-c", runner, host, "0"], _driver_env(conf))
        assert (code, err) == (0, "") and "4294967296" in out, (socket_path, out, err)


# -- the documented install layout (docs/operations.md §2.1), verbatim ------------------
def _install_steps():
    """The venv command of docs/operations.md §2.1, as an operator would paste it."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    section = text[text.index("### 2.1 What you need"):text.index("### 2.2")]
    commands = [c for c in re.findall(r"`([^`]*python3 -m venv [^`]*)`", section)]
    assert len(commands) == 1, commands
    return commands[0]


def test_the_documented_install_gets_the_service(saltssh, private, tmp_path):
    """Salt in a venv made by §2.1's command (paths moved under tmp_path, the checkout being
    this repository), the service started as its unit starts it (``/usr/bin/python3
    service.py``: it re-executes under the venv's Python), an executable on
    /usr/bin/python3: the action is served by the service (its ssh master), same result."""
    command = _install_steps()
    venv = Path(tempfile.mkdtemp(prefix="venv", dir="/tmp"))
    command = command.replace("/opt/gfs2clvm-salt", str(venv)).replace("/srv/gfs2clvm", str(LIB.parents[1]))
    subprocess.run(["sh", "-c", command], check=True, timeout=1800, capture_output=True)
    base = Path(tempfile.mkdtemp(prefix="sd", dir="/tmp"))
    try:
        salt_ssh = venv / "bin" / "salt-ssh"
        assert service_python(salt_ssh) == str(venv / "bin" / "python3")
        mp = saltssh.mountpoints["unpriv"]
        conf = _conf(saltssh, base / "gfs2clvm.conf", private["saltfile"], saltssh_socket=str(base / "s.sock"),
                     mountpoint=str(mp), mount_check="none")
        data = yaml.safe_load(conf.read_text())
        data["salt_ssh"] = str(salt_ssh)
        conf.write_text(yaml.safe_dump(data))
        svc = Service(conf, base)
        env = dict(os.environ, GFS2CLVM_CONF=str(conf), RUNTIME_DIRECTORY=str(svc.cm_dir))
        svc.cm_dir.mkdir(mode=0o700)
        svc.proc = subprocess.Popen(["/usr/bin/python3", str(SERVICE)], env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=open(base / "journal", "ab"),
                                    start_new_session=True)
        deadline = time.monotonic() + 120
        while b"serving" not in (base / "journal").read_bytes():
            assert svc.proc.poll() is None and time.monotonic() < deadline, (base / "journal").read_text()
            time.sleep(0.1)
        try:
            assert os.path.realpath(f"/proc/{svc.proc.pid}/exe") == os.path.realpath(venv / "bin" / "python3")
            host = saltssh.target("unpriv")
            vmid = 6200 + os.getpid() % 1000
            ctx = base / "context.sh"
            ctx.write_text("ETH0_IP='10.0.0.42'\n")
            argv = ["/usr/bin/python3", str(TM / "context"), str(ctx), f"{host}:{mp}/datastores/0/{vmid}/disk.1",
                    str(vmid), "0"]
            env = dict(os.environ, GFS2CLVM_CONF=str(conf), PATH="/usr/sbin:/usr/bin:/sbin:/bin")
            assert _like_oned(argv, env) == (0, "", "", [])
            assert list(svc.cm_dir.iterdir())  # the call ran in the service: its ssh master
        finally:
            svc.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(venv, ignore_errors=True)
