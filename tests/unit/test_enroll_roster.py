# SPDX-License-Identifier: Apache-2.0
"""Unit tests of gfs2clvm_driver.enroll (``gfs2clvm-host``): argument handling,
roster and known_hosts editing, rollback, exact argv of ssh-keyscan and salt-ssh.

A fake runner answers ``ssh-keyscan``, ``ssh-keygen`` and ``salt-ssh``; nothing
touches the network.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tm_commands" / "lib"))
from gfs2clvm_driver import enroll  # noqa: E402

KEY = "AAAAC3NzaC1lZDI1NTE5AAAAIKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKeyKey1"
FP = "SHA256:" + "f" * 43


class Proc:
    def __init__(self, stdout="", stderr="", returncode=0):
        self.stdout, self.stderr, self.returncode = stdout, stderr, returncode


class FakeRunner:
    """Answers the commands enroll runs; records argv and stdin."""

    def __init__(self):
        self.calls = []
        self.as_users = []
        self.keyscan = None  # stdout of ssh-keyscan (default: one ed25519 key for the name asked)
        self.salt = {"test.ping": True, "gfs2clvm.check": {"ok": True, "checks": {"vg": {"ok": True, "detail": "fine"}}}}
        self.salt_raw = {}  # fun -> raw stdout

    def __call__(self, argv, timeout, stdin="", as_user=None):
        self.calls.append((list(argv), stdin))
        self.as_users.append(as_user)
        if argv[0] == "ssh-keyscan":
            if self.keyscan is not None:
                return Proc(self.keyscan)
            port, addr = argv[argv.index("-p") + 1], argv[-1]
            name = addr if port == "22" else f"[{addr}]:{port}"
            return Proc(f"# {addr}:{port} SSH-2.0-OpenSSH_9.2p1\n{name} ssh-ed25519 {KEY}\n")
        if argv[0] == "ssh-keygen":
            lines = Path(argv[-1]).read_text().splitlines()
            return Proc("".join(f"256 {FP} host (ED25519)\n" for _ in lines))
        if argv[0].endswith("salt-ssh"):
            host, fun = argv[argv.index("warning") + 1:argv.index("warning") + 3]
            if fun in self.salt_raw:
                return Proc(self.salt_raw[fun], returncode=1)
            return Proc(json.dumps({host: self.salt[fun]}))
        raise AssertionError(f"unexpected command {argv}")

    def salt_calls(self):
        return [argv for argv, _ in self.calls if argv[0].endswith("salt-ssh")]


@pytest.fixture
def env(tmp_path, monkeypatch):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "master").write_text(
        yaml.safe_dump({"roster_file": str(etc / "roster"), "known_hosts_file": str(tmp_path / "known_hosts"),
                        "ssh_priv": "/var/lib/one/.ssh/id_ed25519", "root_dir": str(tmp_path / "state"),
                        "cachedir": str(tmp_path / "state" / "cache")})
    )
    (tmp_path / "Saltfile").write_text(yaml.safe_dump({"salt-ssh": {"config_dir": str(etc)}}))
    conf = tmp_path / "gfs2clvm.conf"
    conf.write_text(yaml.safe_dump({"saltfile": str(tmp_path / "Saltfile"), "salt_ssh": "/usr/bin/salt-ssh",
                                    "vg": "vg_one", "mountpoint": "/var/lib/one", "mount_check": "gfs2",
                                    # no such account: the tests of the other rules (test_oned_user_* set one)
                                    "oned_user": "gfs2clvm-nosuch"}))
    monkeypatch.setenv("GFS2CLVM_CONF", str(conf))

    class Env:
        root = tmp_path
        roster = etc / "roster"
        known_hosts = tmp_path / "known_hosts"
        runner = FakeRunner()
        out = []

        def main(self, *argv):
            self.out.clear()
            return enroll.main([str(a) for a in argv], out=self.out.append, run=self.runner)

        def entries(self):
            return yaml.safe_load(self.roster.read_text()) or {}

    return Env()


def err_line(capsys):
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), lines
    return lines[0][len("ERROR: "):]


# ---------------------------------------------------------------- arguments
@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: command (see gfs2clvm-host --help)"),
        (["frob"], "argument command: invalid choice: 'frob' (choose from 'add', 'remove', 'check', 'list') (see gfs2clvm-host --help)"),
        (["check"], "the following arguments are required: host (see gfs2clvm-host --help)"),
        (["add"], "the following arguments are required: host (see gfs2clvm-host --help)"),
        (["add", "bad host"], "invalid host name 'bad host': letters, digits, '.', '-', '_' only"),
        (["add", "-node"], "the following arguments are required: host (see gfs2clvm-host --help)"),
        (["add", "a..b"], "invalid host name 'a..b': letters, digits, '.', '-', '_' only"),
        (["add", "n1", "--port", "0"], "invalid port '0': expected 1-65535"),
        (["add", "n1", "--port", "65536"], "invalid port '65536': expected 1-65535"),
        (["add", "n1", "--port", "22x"], "invalid port '22x': expected 1-65535"),
        (["add", "n1", "--user", "Root;id"], "invalid user 'Root;id': not a login name"),
        (["add", "n1", "--address", "-oProxyCommand=x"], "argument --address: expected one argument (see gfs2clvm-host --help)"),
        (["add", "n1", "--address", "a b"], "invalid address 'a b': not a host name or IP address"),
        (["add", "n1", "--thin-dir", "relative/dir"], "invalid --thin-dir 'relative/dir': not a plain absolute path"),
        (["add", "n1", "--thin-dir", "/var/tmp/../etc"], "invalid --thin-dir '/var/tmp/../etc': not a plain absolute path"),
        (["add", "n1", "--fingerprint", "MD5:aa"], "invalid fingerprint 'MD5:aa': expected SHA256:<43 base64 chars> (ssh-keygen -lf)"),
        (["remove"], "the following arguments are required: host (see gfs2clvm-host --help)"),
        (["list", "extra"], "unrecognized arguments: extra (see gfs2clvm-host --help)"),
    ],
)
def test_bad_arguments_are_one_line_errors_and_run_nothing(env, capsys, argv, message):
    assert env.main(*argv) == 1
    assert err_line(capsys) == message
    assert env.runner.calls == []
    assert not env.roster.exists()


def test_missing_driver_config(env, capsys, monkeypatch):
    monkeypatch.setenv("GFS2CLVM_CONF", str(env.root / "nope.conf"))
    assert env.main("list") == 1
    assert err_line(capsys) == f"driver configuration {env.root}/nope.conf not found (set GFS2CLVM_CONF)"


def test_saltfile_without_config_dir(env, capsys):
    (env.root / "Saltfile").write_text("salt-ssh: {log_level: warning}\n")
    assert env.main("list") == 1
    assert err_line(capsys) == f"Saltfile {env.root}/Saltfile has no salt-ssh: config_dir"


def test_master_without_known_hosts_file_is_refused(env, capsys):
    (env.root / "etc" / "master").write_text("ssh_priv: /k\n")
    assert env.main("list") == 1
    assert err_line(capsys) == (
        f"{env.root}/etc/master sets no known_hosts_file: salt-ssh would fall back to ~/.ssh/known_hosts; "
        "set it so host keys are pinned in one place"
    )


def test_templated_roster_is_not_rewritten(env, capsys):
    env.roster.write_text("{% for n in [1,2] %}node{{ n }}: {host: 10.0.0.{{ n }}}\n{% endfor %}\n")
    before = env.roster.read_bytes()
    assert env.main("add", "node3") == 1
    assert err_line(capsys) == f"roster {env.roster} is a template: edit it by hand"
    assert env.roster.read_bytes() == before


# ---------------------------------------------------------------- add
def test_add_to_an_empty_roster(env, capsys):
    assert env.main("add", "node1", "--address", "192.0.2.11") == 0
    entry = env.entries()["node1"]
    assert entry == {
        "host": "192.0.2.11",
        "port": 22,
        "user": "oneadmin",
        "priv": "/var/lib/one/.ssh/id_ed25519",
        "set_path": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "thin_dir": "/var/tmp/.gfs2clvm_salt",
        "minion_opts": {
            "module_dirs": ["/usr/lib/gfs2clvm/_modules"],
            "gfs2clvm": {"vg": "vg_one", "mountpoint": "/var/lib/one", "mount_check": "gfs2"},
        },
    }
    assert env.known_hosts.read_text() == f"192.0.2.11 ssh-ed25519 {KEY}\n"
    argvs = [argv for argv, _ in env.runner.calls]
    assert argvs[0] == ["ssh-keyscan", "-T", "10", "-p", "22", "-t", "ed25519,ecdsa,rsa", "192.0.2.11"]
    salt = env.runner.salt_calls()
    base = ["/usr/bin/salt-ssh", "--saltfile", f"{env.root}/Saltfile", "--out", "json", "--static", "-l", "warning", "node1"]
    assert salt == [base + ["test.ping"], base + ["gfs2clvm.check", 'driver="0.1.0"']]
    # never -i / --ignore-host-keys / --no-host-keys / -W / -w
    for argv in salt:
        assert not {"-i", "--ignore-host-keys", "--no-host-keys", "-W", "-w"} & set(argv)
    # salt-ssh's key-deploy question is answered "no", never left to EOF
    assert all(stdin == "n\n" for argv, stdin in env.runner.calls if argv[0].endswith("salt-ssh"))
    assert env.out[0] == f"host key 192.0.2.11 ssh-ed25519 {FP}"
    assert env.out[1].startswith("node1: enrolled as oneadmin@192.0.2.11:22 in ")
    assert env.out[-2:] == ["  ok   vg: fine", "node1: ready"]


def test_add_copies_the_shared_minion_opts_of_the_roster(env):
    opts = {"module_dirs": ["/srv/mods"], "gfs2clvm": {"vg": "vg_x", "mount_check": "gfs2"}}
    common = {"port": 22, "user": "oneadmin", "priv": "/k", "thin_dir": "/var/tmp/.pinned", "minion_opts": opts}
    env.roster.write_text(yaml.safe_dump({"n1": {"host": "10.0.0.1", **common}, "n2": {"host": "10.0.0.2", **common}}))
    assert env.main("add", "n3", "--address", "10.0.0.3", "--port", "2222", "--user", "one") == 0
    entry = env.entries()["n3"]
    assert entry["minion_opts"] == opts and entry["thin_dir"] == "/var/tmp/.pinned"
    assert (entry["host"], entry["port"], entry["user"]) == ("10.0.0.3", 2222, "one")
    assert entry["priv"] == "/var/lib/one/.ssh/id_ed25519"  # the master's ssh_priv
    assert env.known_hosts.read_text() == f"[10.0.0.3]:2222 ssh-ed25519 {KEY}\n"
    assert set(env.entries()) == {"n1", "n2", "n3"}


def test_add_with_differing_roster_entries_needs_like(env, capsys):
    env.roster.write_text(yaml.safe_dump({"n1": {"host": "a", "minion_opts": {"x": 1}}, "n2": {"host": "b", "minion_opts": {"x": 2}}}))
    before = env.roster.read_bytes()
    assert env.main("add", "n3") == 1
    assert err_line(capsys) == "the roster's hosts differ in minion_opts: say which to copy with --like HOST"
    assert env.roster.read_bytes() == before
    assert env.main("add", "n3", "--like", "n9") == 1
    assert err_line(capsys) == "--like n9: no such host in the roster"
    assert env.main("add", "n3", "--like", "n2", "--thin-dir", "/var/tmp/.t", "--module-dir", "/opt/m") == 0
    assert env.entries()["n3"]["minion_opts"] == {"x": 2, "module_dirs": ["/opt/m"]}
    assert env.entries()["n3"]["thin_dir"] == "/var/tmp/.t"


def test_add_of_an_enrolled_host_is_refused(env, capsys):
    env.roster.write_text(yaml.safe_dump({"n1": {"host": "a"}}))
    assert env.main("add", "n1") == 1
    assert err_line(capsys) == f"n1 is already in the roster {env.roster} (gfs2clvm-host remove n1 first)"
    assert env.runner.calls == []


def test_no_host_key_found(env, capsys):
    env.runner.keyscan = "# 10.0.0.9:22 SSH-2.0-OpenSSH_9.2p1\n"
    assert env.main("add", "n9", "--address", "10.0.0.9") == 1
    assert err_line(capsys) == (
        "ssh-keyscan found no host key at 10.0.0.9 port 22 (is sshd running there? address and port right?)"
    )
    assert not env.roster.exists() and not env.known_hosts.exists()


def test_keyscan_lines_for_another_name_are_ignored(env, capsys):
    env.runner.keyscan = f"[10.0.0.9]:2222 ssh-ed25519 {KEY}\n"  # asked for port 22
    assert env.main("add", "n9", "--address", "10.0.0.9") == 1
    assert "ssh-keyscan found no host key" in err_line(capsys)


def test_fingerprint_must_match(env, capsys):
    other = "SHA256:" + "a" * 43
    assert env.main("add", "n1", "--fingerprint", other) == 1
    assert err_line(capsys) == f"no host key of n1 port 22 has fingerprint {other} (scanned: {FP})"
    assert not env.roster.exists()
    assert env.main("add", "n1", "--fingerprint", FP) == 0


def test_failed_ping_restores_roster_and_known_hosts_byte_for_byte(env, capsys):
    env.roster.write_text("# hand-written\nn1: {host: a, minion_opts: {}}\n")
    env.known_hosts.write_text("# mine\nother ssh-ed25519 AAAA")  # no final newline
    roster, known = env.roster.read_bytes(), env.known_hosts.read_bytes()
    env.runner.salt_raw["test.ping"] = (
        "Permission denied for host n2, do you want to deploy the salt-ssh key? (password required):\n"
        '[Y/n] {\n    "n2": "oneadmin@n2: Permission denied (publickey)."\n}\n'
    )
    assert env.main("add", "n2") == 1
    assert err_line(capsys) == "salt-ssh n2 test.ping failed: oneadmin@n2: Permission denied (publickey)."
    assert env.roster.read_bytes() == roster
    assert env.known_hosts.read_bytes() == known


@pytest.mark.parametrize(
    "value, message",
    [
        ({"retcode": 254, "stderr": "The host key needs to be accepted, to auto accept run salt-ssh with the -i flag"}, "host key not accepted"),
        ({"retcode": 255, "stderr": "ssh: connect to host n2 port 22: Connection refused\n", "stdout": ""}, "ssh: connect to host n2 port 22: Connection refused"),
        ("ssh: Could not resolve hostname n2: Name or service not known", "ssh: Could not resolve hostname n2: Name or service not known"),
    ],
)
def test_salt_ssh_failures_become_one_line(env, capsys, value, message):
    env.runner.salt["test.ping"] = value
    assert env.main("add", "n2") == 1
    assert err_line(capsys) == f"salt-ssh n2 test.ping failed: {message}"
    assert not env.roster.exists() and not env.known_hosts.exists()


def test_salt_ssh_garbage_output(env, capsys):
    env.runner.salt_raw["test.ping"] = "Traceback (most recent call last):\n  boom\nKeyError: 'x'\n"
    assert env.main("add", "n2") == 1
    assert err_line(capsys) == "salt-ssh n2 test.ping failed: salt-ssh exit 1: KeyError: 'x'"


def test_a_different_known_host_key_is_refused(env, capsys):
    env.known_hosts.write_text("n1 ssh-ed25519 AAAAother\n")
    assert env.main("add", "n1") == 1
    assert err_line(capsys) == (
        f"{env.known_hosts} holds a different host key for n1: if the host was reinstalled, "
        f"remove it (ssh-keygen -R 'n1' -f {env.known_hosts}) and add again"
    )
    assert not env.roster.exists()


def test_a_known_key_is_not_duplicated(env):
    env.known_hosts.write_text(f"n1 ssh-ed25519 {KEY}\n")
    assert env.main("add", "n1") == 0
    assert env.known_hosts.read_text() == f"n1 ssh-ed25519 {KEY}\n"


def test_check_problems_leave_the_host_enrolled_with_exit_2(env):
    env.runner.salt["gfs2clvm.check"] = {
        "ok": False,
        "checks": {"lvm": {"ok": True, "detail": "/sbin/lvm"}, "vg": {"ok": False, "detail": "volume group vg_one not found"}},
    }
    assert env.main("add", "n1") == 2
    assert "n1" in env.entries()
    assert env.out[-3:] == ["  ok   lvm: /sbin/lvm", "  FAIL vg: volume group vg_one not found", "n1: enrolled, but not ready: vg failed"]


def test_check_module_missing_on_the_worker(env):
    env.runner.salt["gfs2clvm.check"] = "'gfs2clvm.check' is not available."
    assert env.main("add", "n1") == 2
    assert env.out[-1] == "n1: gfs2clvm.check could not run: 'gfs2clvm.check' is not available. (apply the gfs2clvm.worker formula there)"


def test_no_check(env):
    assert env.main("add", "n1", "--no-check") == 0
    assert [argv[-1] for argv in env.runner.salt_calls()] == ["test.ping"]


# ---------------------------------------------------------------- remove / list
def test_remove_drops_entry_and_only_its_host_key_lines(env, capsys):
    env.roster.write_text(yaml.safe_dump({"n1": {"host": "10.0.0.1", "port": 2222}, "n2": {"host": "10.0.0.2"}}))
    env.known_hosts.write_text(
        "# comment\n[10.0.0.1]:2222 ssh-ed25519 AAAA1\n[10.0.0.1]:2222 ssh-rsa AAAA2\n"
        "10.0.0.1 ssh-ed25519 AAAA3\n10.0.0.2 ssh-ed25519 AAAA4\n"
    )
    assert env.main("remove", "n1") == 0
    assert env.out == [f"n1: removed from {env.roster}; 2 host key line(s) for [10.0.0.1]:2222 removed"]
    assert env.entries() == {"n2": {"host": "10.0.0.2"}}
    assert env.known_hosts.read_text() == "# comment\n10.0.0.1 ssh-ed25519 AAAA3\n10.0.0.2 ssh-ed25519 AAAA4\n"
    assert env.runner.calls == []


def test_remove_keeps_a_host_key_another_entry_uses(env):
    env.roster.write_text(yaml.safe_dump({"n1": {"host": "10.0.0.1"}, "alias": {"host": "10.0.0.1", "port": 22}}))
    env.known_hosts.write_text("10.0.0.1 ssh-ed25519 AAAA1\n")
    assert env.main("remove", "n1") == 0
    assert env.out == [f"n1: removed from {env.roster}; host key kept (also used by alias)"]
    assert env.known_hosts.read_text() == "10.0.0.1 ssh-ed25519 AAAA1\n"


def test_remove_unknown_host(env, capsys):
    assert env.main("remove", "n1") == 1
    assert err_line(capsys) == f"n1 is not in the roster {env.roster}"


def test_list(env):
    assert env.main("list") == 0
    assert env.out == [f"no hosts in {env.roster}"]
    env.roster.write_text(yaml.safe_dump({"n1": {"host": "10.0.0.1", "user": "oneadmin", "thin_dir": "/t"},
                                          "n2": {"host": "10.0.0.2", "port": 2222, "user": "oneadmin", "thin_dir": "/t"}}))
    env.known_hosts.write_text("10.0.0.1 ssh-ed25519 AAAA1\n")
    assert env.main("list") == 0
    assert env.out == [
        "n1\toneadmin@10.0.0.1:22\tthin /t\thost key known",
        "n2\toneadmin@10.0.0.2:2222\tthin /t\thost key MISSING",
    ]
    assert env.main("list", "--json") == 0
    rows = json.loads(env.out[0])
    assert rows[1] == {"host": "n2", "address": "10.0.0.2", "port": 2222, "user": "oneadmin", "thin_dir": "/t", "host_key": False}


def test_roster_keeps_its_mode(env):
    env.roster.write_text(yaml.safe_dump({}))
    env.roster.chmod(0o640)
    assert env.main("add", "n1") == 0
    assert env.roster.stat().st_mode & 0o777 == 0o640
    assert not list(env.roster.parent.glob(".gfs2clvm-*"))  # no temp file left


def test_tool_runs_from_the_checkout():
    import subprocess

    proc = subprocess.run([sys.executable, str(REPO / "tm_commands" / "bin" / "gfs2clvm-host"), "--help"],
                          capture_output=True, text=True, cwd="/")
    assert proc.returncode == 0 and "add,remove,check,list" in proc.stdout


# ---------------------------------------------------------------- who runs salt-ssh
def test_salt_ssh_runs_as_the_owner_of_the_salt_cache_when_root_enrols(env, monkeypatch):
    import os
    import pwd

    cache = env.root / "state" / "cache"
    cache.mkdir(parents=True)
    nobody = pwd.getpwnam("nobody")
    if os.geteuid() == 0:
        os.chown(cache, nobody.pw_uid, nobody.pw_gid)
        owner = nobody
    else:
        owner = pwd.getpwuid(os.geteuid())
    monkeypatch.setattr(enroll.os, "geteuid", lambda: 0)
    assert env.main("add", "n1") == 0
    salt_users = [u for (argv, _), u in zip(env.runner.calls, env.runner.as_users) if argv[0].endswith("salt-ssh")]
    assert [u.pw_uid for u in salt_users] == [owner.pw_uid, owner.pw_uid]
    # ssh-keyscan and ssh-keygen need no other user
    assert all(u is None for (argv, _), u in zip(env.runner.calls, env.runner.as_users) if not argv[0].endswith("salt-ssh"))


def test_before_the_first_call_the_cache_parent_decides(env, monkeypatch):
    import os
    import pwd

    state = env.root / "state"  # cachedir state/cache does not exist yet
    state.mkdir()
    nobody = pwd.getpwnam("nobody")
    if os.geteuid() == 0:
        os.chown(state, nobody.pw_uid, nobody.pw_gid)
        owner = nobody
    else:
        owner = pwd.getpwuid(os.geteuid())
    monkeypatch.setattr(enroll.os, "geteuid", lambda: 0)
    assert env.main("add", "n1") == 0
    assert {u.pw_uid for u in env.runner.as_users if u is not None} == {owner.pw_uid}


def test_salt_ssh_runs_as_the_caller_otherwise(env, monkeypatch):
    (env.root / "state" / "cache").mkdir(parents=True)
    monkeypatch.setattr(enroll.os, "geteuid", lambda: 1000)  # not root: never switch
    assert env.main("add", "n1") == 0
    assert env.runner.as_users and all(u is None for u in env.runner.as_users)


def test_salt_ssh_runs_as_root_when_root_owns_the_cache(env, monkeypatch):
    master = env.root / "etc" / "master"
    data = yaml.safe_load(master.read_text())
    data["cachedir"] = "/"  # owned by root on every system
    master.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(enroll.os, "geteuid", lambda: 0)
    assert env.main("add", "n1") == 0
    assert env.runner.as_users and all(u is None for u in env.runner.as_users)


def test_runner_errors_are_one_line(tmp_path):
    with pytest.raises(enroll.DriverError, match=r"^/nonexistent/salt-ssh not found$"):
        enroll._run(["/nonexistent/salt-ssh"], 5)
    script = tmp_path / "salt-ssh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)  # not executable
    with pytest.raises(enroll.DriverError, match=rf"^cannot run {script}: Permission denied$"):
        enroll._run([str(script)], 5)


def test_unexpected_errors_are_one_line_not_a_traceback(env, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise ValueError("bad\nthing")

    monkeypatch.setattr(enroll, "keyscan", boom)
    assert env.main("add", "n1") == 1
    assert err_line(capsys) == "internal error: ValueError: bad thing"
    assert not env.roster.exists()


def test_check_of_an_enrolled_host(env, capsys):
    assert env.main("check", "n1") == 1
    assert err_line(capsys) == f"n1 is not in the roster {env.roster}"
    env.roster.write_text(yaml.safe_dump({"n1": {"host": "10.0.0.1"}}))
    assert env.main("check", "n1") == 0
    assert env.out == ["  ok   vg: fine", "n1: ready"]
    assert [argv[-2:] for argv in env.runner.salt_calls()] == [["gfs2clvm.check", 'driver="0.1.0"']]
    env.runner.salt["gfs2clvm.check"] = {"ok": False, "checks": {"mount": {"ok": False, "detail": "not mounted"}}}
    assert env.main("check", "n1") == 2
    assert env.out == ["  FAIL mount: not mounted", "n1: enrolled, but not ready: mount failed"]


# ---------------------------------------------------------------- the formula's layout
def test_add_leaves_shared_settings_to_the_masters_ssh_minion_opts(env):
    """The formula puts module_dirs and the module settings in the master config
    (ssh_minion_opts): a new entry of an empty roster carries no minion_opts, which
    would shadow them (salt-ssh merges the two only one level deep)."""
    master = env.root / "etc" / "master"
    data = yaml.safe_load(master.read_text())
    data["ssh_minion_opts"] = {"module_dirs": ["/usr/lib/gfs2clvm/_modules"], "gfs2clvm": {"vg": "vg_one"}}
    master.write_text(yaml.safe_dump(data))
    assert env.main("add", "n1", "--address", "10.0.0.1") == 0
    assert "minion_opts" not in env.entries()["n1"]
    assert env.main("add", "n2", "--address", "10.0.0.2") == 0  # copies the (absent) opts of n1
    assert "minion_opts" not in env.entries()["n2"]


def test_root_runs_salt_ssh_as_the_owner_of_the_roster(env, monkeypatch):
    """A roster another user may edit never drives a root salt-ssh (its ssh_options could run commands)."""
    import os
    import pwd

    if os.geteuid() != 0:
        pytest.skip("needs root to give the roster to another user")  # CI runs the unit tier as root
    env.roster.write_text("{}")
    nobody = pwd.getpwnam("nobody")
    os.chown(env.roster, nobody.pw_uid, nobody.pw_gid)
    master = env.root / "etc" / "master"
    data = yaml.safe_load(master.read_text())
    data["cachedir"] = "/"  # root's: would mean "run as root" without the roster rule
    master.write_text(yaml.safe_dump(data))
    assert env.main("add", "n1") == 0
    salt_users = [u for (argv, _), u in zip(env.runner.calls, env.runner.as_users) if argv[0].endswith("salt-ssh")]
    assert [u.pw_uid for u in salt_users] == [nobody.pw_uid, nobody.pw_uid]
    assert env.roster.stat().st_uid == nobody.pw_uid  # the rewritten roster keeps its owner


def test_root_refuses_a_root_cache_others_may_write(env, monkeypatch, capsys, tmp_path):
    """e.g. oneadmin pointing its cache dir at /tmp with a symlink: root would load modules from there."""
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root: a world-writable directory owned by root")
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    open_dir.chmod(0o1777)
    (env.root / "state").mkdir()
    (env.root / "state" / "cache").symlink_to(open_dir)
    assert env.main("add", "n1") == 1
    assert err_line(capsys) == (
        f"the salt cache {open_dir} is root's but writable by others: refusing to run salt-ssh as root "
        f"(set cachedir in {env.root / 'etc' / 'master'} to a directory of the driver's user)"
    )
    assert not env.roster.exists()


def test_lock_file_is_never_followed_through_a_symlink(env, capsys, tmp_path):
    target = tmp_path / "elsewhere"
    env.roster.write_text("{}")
    (env.roster.parent / "roster.lock").symlink_to(target)
    assert env.main("add", "n1") == 1
    assert err_line(capsys) == f"cannot lock {env.roster}.lock: Too many levels of symbolic links (run as the owner of the roster)"
    assert not target.exists()


def test_a_lock_file_of_another_user_does_not_lock_out(env):
    lock = env.roster.parent / "roster.lock"
    lock.write_text("")
    lock.chmod(0o444)  # read-only is enough: the lock is taken on a read-only descriptor
    assert env.main("add", "n1") == 0


# ---------------------------------------------------------------- hashed known_hosts (issue 13.6)
@pytest.fixture
def real_keys(tmp_path):
    """Two real ed25519 public keys ``(type, base64)`` (ssh-keygen -H must parse them)."""
    keys = []
    for name in ("a", "b"):
        path = tmp_path / f"key_{name}"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        keys.append(tuple((path.parent / f"key_{name}.pub").read_text().split()[:2]))
    return keys


def hashed(path, text):
    """Write ``text`` and hash its host names the way HashKnownHosts does (ssh-keygen -H)."""
    path.write_text(text)
    subprocess.run(["ssh-keygen", "-H", "-f", str(path)], check=True, capture_output=True)
    Path(f"{path}.old").unlink()
    assert all(line.startswith("|1|") for line in path.read_text().splitlines())  # no plain host name left


def test_hashed_entry_of_the_same_key_is_seen(env, real_keys):
    (ktype, key), _ = real_keys
    env.runner.keyscan = f"[10.0.0.1]:2222 {ktype} {key}\n"
    hashed(env.known_hosts, f"[10.0.0.1]:2222 {ktype} {key}\n")
    before = env.known_hosts.read_bytes()
    assert env.main("add", "n1", "--address", "10.0.0.1", "--port", "2222") == 0
    assert env.known_hosts.read_bytes() == before  # not appended a second time


def test_hashed_entry_of_another_key_is_refused(env, capsys, real_keys):
    (ktype, key), (otype, other) = real_keys
    env.runner.keyscan = f"n1 {ktype} {key}\n"
    hashed(env.known_hosts, f"n1 {otype} {other}\n")
    before = env.known_hosts.read_bytes()
    assert env.main("add", "n1") == 1
    assert err_line(capsys) == (
        f"{env.known_hosts} holds a different host key for n1: if the host was reinstalled, "
        f"remove it (ssh-keygen -R 'n1' -f {env.known_hosts}) and add again"
    )
    assert env.known_hosts.read_bytes() == before and not env.roster.exists()


def test_add_to_a_hashed_file_appends_a_hashed_line(env, real_keys):
    (ktype, key), (otype, other) = real_keys
    env.runner.keyscan = f"[10.0.0.3]:2222 {ktype} {key}\n"
    hashed(env.known_hosts, f"10.0.0.9 {otype} {other}\n")
    assert env.main("add", "n3", "--address", "10.0.0.3", "--port", "2222") == 0
    lines = env.known_hosts.read_text().splitlines()
    assert len(lines) == 2 and all(line.startswith("|1|") for line in lines), lines
    assert enroll.kh_keys(str(env.known_hosts), "[10.0.0.3]:2222") == {(ktype, key)}
    assert enroll.kh_keys(str(env.known_hosts), "10.0.0.9") == {(otype, other)}


def test_remove_and_list_see_hashed_entries(env, real_keys):
    (ktype, key), (otype, other) = real_keys
    env.roster.write_text(yaml.safe_dump({"n1": {"host": "10.0.0.1", "port": 2222, "user": "oneadmin", "thin_dir": "/t"},
                                          "n2": {"host": "10.0.0.2", "user": "oneadmin", "thin_dir": "/t"}}))
    hashed(env.known_hosts, f"[10.0.0.1]:2222 {ktype} {key}\n10.0.0.2 {otype} {other}\n")
    env.known_hosts.chmod(0o640)
    assert env.main("list") == 0
    assert env.out == ["n1\toneadmin@10.0.0.1:2222\tthin /t\thost key known",
                       "n2\toneadmin@10.0.0.2:22\tthin /t\thost key known"]
    assert env.main("remove", "n1") == 0
    assert env.out == [f"n1: removed from {env.roster}; 1 host key line(s) for [10.0.0.1]:2222 removed"]
    assert enroll.kh_keys(str(env.known_hosts), "[10.0.0.1]:2222") == set()
    assert enroll.kh_keys(str(env.known_hosts), "10.0.0.2") == {(otype, other)}
    assert len(env.known_hosts.read_text().splitlines()) == 1
    assert env.known_hosts.stat().st_mode & 0o777 == 0o640  # replaced with its mode
    assert sorted(p.name for p in env.known_hosts.parent.glob("known_hosts*")) == ["known_hosts"]  # no .old left


# ---------------------------------------------------------------- versions (issue 13.9)
def test_version_option(capsys):
    with pytest.raises(SystemExit) as done:
        enroll.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"gfs2clvm-host {enroll.VERSION}\n"


def test_version_option_of_the_executable():
    proc = subprocess.run([sys.executable, str(REPO / "tm_commands" / "bin" / "gfs2clvm-host"), "--version"],
                          capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "gfs2clvm-host 0.1.0\n", "")


def test_check_shows_a_version_mismatch(env):
    env.roster.write_text(yaml.safe_dump({"n1": {"host": "10.0.0.1"}}))
    detail = ("this worker runs gfs2clvm modules 0.0.9, the front-end driver 0.1.0: apply gfs2clvm.worker here "
              "(highstate), or update the front-end, so both are the same")
    env.runner.salt["gfs2clvm.check"] = {"ok": False, "checks": {"vg": {"ok": True, "detail": "fine"},
                                                                 "version": {"ok": False, "detail": detail}}}
    assert env.main("check", "n1") == 2
    assert env.out == ["  ok   vg: fine", f"  FAIL version: {detail}", "n1: enrolled, but not ready: version failed"]


def test_check_of_a_worker_older_than_the_version_check(env):
    env.roster.write_text(yaml.safe_dump({"n1": {"host": "10.0.0.1"}}))
    env.runner.salt_raw["gfs2clvm.check"] = json.dumps({"n1": {
        "retcode": 1, "_error": "The command resulted in a non-zero exit code", "stdout": "",
        "stderr": "Passed invalid arguments: The following keyword arguments are not valid: driver=0.1.0.\n\n"
                  "Usage:\n\n    Health of this worker ...\n        salt '*' gfs2clvm.check\n"}})
    assert env.main("check", "n1") == 2
    assert env.out == ["n1: runs gfs2clvm modules older than the front-end driver 0.1.0 (their gfs2clvm.check "
                       "takes no driver version): apply the gfs2clvm.worker formula there"]


# ---------------------------------------------------------------- the user oned runs as (issue 19.7)
def oned_user_conf(env, name):
    conf = Path(os.environ["GFS2CLVM_CONF"])
    data = yaml.safe_load(conf.read_text())
    data["oned_user"] = name
    conf.write_text(yaml.safe_dump(data))


def test_oned_user_runs_salt_ssh_when_root_enrols(env, monkeypatch):
    """Root enrols with a root roster and a root cache (a hand-made set-up): salt-ssh
    still runs as the account oned runs as, so the thin is pre-paid for the driver."""
    import pwd

    master = env.root / "etc" / "master"
    data = yaml.safe_load(master.read_text())
    data["cachedir"] = "/"  # root's: the other rules would run salt-ssh as root
    master.write_text(yaml.safe_dump(data))
    oned_user_conf(env, "nobody")
    monkeypatch.setattr(enroll.os, "geteuid", lambda: 0)
    assert env.main("add", "n1") == 0
    salt_users = [u for (argv, _), u in zip(env.runner.calls, env.runner.as_users) if argv[0].endswith("salt-ssh")]
    assert [u.pw_name for u in salt_users] == ["nobody", "nobody"]  # test.ping (the thin) and check
    assert env.out[1].startswith("n1: enrolled as oneadmin@n1:22 in ") and "for nobody's salt-ssh" in env.out[1]
    assert pwd.getpwnam("nobody").pw_uid in {u.pw_uid for u in salt_users}


def test_another_caller_than_oned_user_is_told(env, monkeypatch):
    import pwd

    me = pwd.getpwuid(os.geteuid()).pw_name
    oned_user_conf(env, "nobody" if me != "nobody" else "root")
    monkeypatch.setattr(enroll.os, "geteuid", lambda: 4242)  # not root, not oned_user
    assert env.main("add", "n1", "--no-check") == 0
    assert env.out[-1] == ("note: salt-ssh ran as uid 4242, not as nobody (oned_user, the account oned runs the "
                           "driver as): run gfs2clvm-host as root or nobody so the first VM action does not pay "
                           "salt's first call")
