# SPDX-License-Identifier: Apache-2.0
"""The driver library in-process: Location, validation, config, argv building,
run_main's output contract, XML parsing, the data stream's remote command."""

import base64
import json
import shlex
import subprocess

import pytest
import test_driver_support  # noqa: F401 -- puts tm_commands/lib on sys.path
from test_driver_support import TM
from gfs2clvm_driver import config, core, datastore, saltssh, stream, validate
from gfs2clvm_driver.core import DriverError
from gfs2clvm_driver.location import Location, legacy_vmid


def test_location_splits_host_and_path():
    loc = Location("node1:/var/lib/one/datastores/0/42/disk.3")
    assert (loc.host, loc.path, loc.vmdir, loc.disk_id) == (
        "node1", "/var/lib/one/datastores/0/42/disk.3", "/var/lib/one/datastores/0/42", 3)
    assert loc.is_disk
    vmdir = Location("node1.example.com:/var/lib/one/datastores/0/42")
    assert (vmdir.vmdir, vmdir.disk_id, vmdir.is_disk) == ("/var/lib/one/datastores/0/42", None, False)
    assert Location("n:/x/disk.10.bak").disk_id is None
    # what oned really passes: var_location "/var/lib/one/" + "/datastores"
    oned = Location("node1:/var/lib/one//datastores/0/42/disk.3")
    assert (oned.path, oned.vmdir, oned.disk_id) == (
        "/var/lib/one/datastores/0/42/disk.3", "/var/lib/one/datastores/0/42", 3)


@pytest.mark.parametrize("arg", [
    "node1", ":/x", "node1:", "node1:relative/path", "no de:/x", "node1:/a/../b", "node1:/a//../b",
    "node1:/a/b/", "node1:/a;b", "node1:/a$(x)", "node1:/a`x`", "-o:/x", "node1:/a\nb",
])
def test_location_refuses(arg):
    with pytest.raises(DriverError):
        Location(arg)


def test_check_vm_matches_whole_ids():
    base = "/var/lib/one/datastores"
    Location(f"h:{base}/0/1/disk.0").check_vm(1, base)
    for other in (10, 11, 100):
        with pytest.raises(DriverError, match="not in the directory of VM 1"):
            Location(f"h:{base}/0/{other}/disk.0").check_vm(1, base)
    loc = Location("h:/var/lib/one/42/images/disk.1")
    assert legacy_vmid(loc, "/var/lib/one") == 42
    loc.check_vm(42, "/var/lib/one", legacy=True, disk=True)


@pytest.mark.parametrize("value,ok", [
    ("0", 0), ("42", 42), (str(2**31 - 1), 2**31 - 1), (7, 7),
    ("", None), ("-1", None), ("+1", None), ("01", None), ("1.0", None), (" 1", None),
    (str(2**31), None), ("0x10", None), ("١", None),
])
def test_ident(value, ok):
    if ok is None:
        with pytest.raises(DriverError):
            validate.ident(value)
    else:
        assert validate.ident(value) == ok


def test_device_forms():
    assert validate.device("/dev/vg1/lv-one-1-0", None) == ("vg1", "lv-one-1-0")
    assert validate.device("vg1/lv-one-1-0", None) == ("vg1", "lv-one-1-0")
    for bad in ("/dev/vg1/a/b", "/dev/vg1", "vg 1/x", "vg1/-x", "/dev/vg1/x;y"):
        with pytest.raises(DriverError):
            validate.device(bad, None)


def test_config_defaults_and_datastore_overrides(tmp_path):
    path = tmp_path / "c.conf"
    path.write_text("vg: vg_a\ndatastores:\n  101: {vg: vg_b, timeout: 5}\n")
    conf = config.load(str(path))
    assert (conf["vg"], conf["timeout"], conf["salt_ssh"]) == ("vg_a", 900, "/usr/bin/salt-ssh")
    assert conf.datastores_dir == "/var/lib/one/datastores"
    assert (conf.for_ds(101)["vg"], conf.for_ds(101)["timeout"]) == ("vg_b", 5)
    assert conf.for_ds(1)["vg"] == "vg_a"
    path.write_text("timeout: soon\n")
    with pytest.raises(DriverError, match="timeout must be an integer"):
        config.load(str(path)).for_ds(0)


def test_build_argv_exact():
    conf = {"salt_ssh": "/usr/bin/salt-ssh", "saltfile": "/etc/one/gfs2clvm/Saltfile"}
    argv = saltssh.build_argv(conf, ["n1"], "gfs2clvm_tm.clone", ["/a", 42], {"vg": "v", "size_mb": None})
    assert argv == ["/usr/bin/salt-ssh", "--saltfile", "/etc/one/gfs2clvm/Saltfile", "--out", "json",
                    "--static", "-l", "warning", "--key-deploy", "n1", "gfs2clvm_tm.clone", '"/a"', "42", 'vg="v"']
    argv = saltssh.build_argv(conf, ["n1", "n2"], "f", [], {})
    assert argv[9:11] == ["-L", "n1,n2"]
    with pytest.raises(DriverError, match="arguments too large"):
        saltssh.build_argv(conf, ["n1"], "f", ["x" * saltssh.MAX_INLINE], {})


def test_failure_text_success_values_pass():
    for value in ({"ok": True}, {"retcode": 0}, True, "fine", [1], None):
        assert saltssh.failure_text("f", "h", value) is None


def test_run_main_contract(capsys):
    with pytest.raises(SystemExit) as ex:
        core.run_main(lambda argv: "SOURCE raw", [])
    assert ex.value.code == 0 and capsys.readouterr() == ("SOURCE raw\n", "")

    def boom(argv):
        raise KeyError("x\ny")

    with pytest.raises(SystemExit) as ex:
        core.run_main(boom, [])
    out, err = capsys.readouterr()
    assert (ex.value.code, out, err) == (1, "", "ERROR: internal error: KeyError: 'x\\ny'\n"
                                                "internal error: KeyError: 'x\\ny'\n")

    def fail(argv):
        raise DriverError("line one\nline two")

    with pytest.raises(SystemExit):
        core.run_main(fail, [], style="3.2")
    assert capsys.readouterr().err == "ERROR MESSAGE --8<------\nline one line two\nERROR MESSAGE ------>8--\n"


def test_read_action_both_protocols():
    xml = "<DS_DRIVER_ACTION_DATA><DATASTORE><ID>5</ID><TEMPLATE><BRIDGE_LIST>a b</BRIDGE_LIST>" \
          "</TEMPLATE></DATASTORE><IMAGE><ID>9</ID><PATH>/x</PATH></IMAGE></DS_DRIVER_ACTION_DATA>"
    b64 = base64.b64encode(xml.encode()).decode()
    for action in (datastore.read_action(["9"], stdin=b64 + "\n"), datastore.read_action([b64, "9"])):
        assert (action.ds_id, action.image_id, action.image("PATH"), action.bridge_list) == (5, 9, "/x", ["a", "b"])


def test_stream_gfs2_check_accepts_what_stat_prints_for_gfs2(tmp_path):
    """Found in the lab: stat -f -c %T prints "gfs/gfs2" for a GFS2 mount in Debian 12."""
    conf = {"mountpoint": "/var/lib/one", "mount_check": "gfs2"}
    check = stream.remote_command(conf, "/var/lib/one/.gfs2clvm-staging/a.img").split(" || ", 1)[0]
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    results = {}
    for fstype in ("gfs/gfs2", "gfs2", "ext2/ext3", "tmpfs"):
        (fake_bin / "stat").write_text(f"#!/bin/sh\necho '{fstype}'\n")
        (fake_bin / "stat").chmod(0o755)
        proc = subprocess.run(["sh", "-c", check], env={"PATH": f"{fake_bin}:/usr/bin:/bin"}, check=False)
        results[fstype] = proc.returncode == 0
    assert results == {"gfs/gfs2": True, "gfs2": True, "ext2/ext3": False, "tmpfs": False}


def test_path_folds_oneds_double_slash():
    """oned's default system datastore path is /var/lib/one//datastores/<id>."""
    assert validate.path("/var/lib/one//datastores/0/7/disk.0") == "/var/lib/one/datastores/0/7/disk.0"
    assert validate.path("/var/lib/one//datastores/0/7", under="/var/lib/one") == "/var/lib/one/datastores/0/7"
    with pytest.raises(DriverError):
        validate.path("/var/lib/one//datastores/../../etc")


def test_stream_remote_command_is_quoted_and_checks_the_mount():
    conf = {"mountpoint": "/var/lib/one", "mount_check": "gfs2"}
    target = "/var/lib/one/.gfs2clvm-staging/abc.img"
    cmd = stream.remote_command(conf, target)
    assert cmd == ('case "$(stat -f -c %T /var/lib/one)" in gfs2|gfs/gfs2) ;; *) false ;; esac || '
                   "{ echo '/var/lib/one is not mounted as "
                   "required' >&2; exit 3; }; umask 077 && mkdir -p /var/lib/one/.gfs2clvm-staging && "
                   "dd of=/var/lib/one/.gfs2clvm-staging/abc.img bs=4M status=none")
    assert shlex.split(cmd.rsplit("&&", 1)[1]) == ["dd", f"of={target}", "bs=4M", "status=none"]
    with pytest.raises(DriverError):
        stream.remote_command(conf, "/etc/passwd")
    with pytest.raises(DriverError):
        stream.remote_command(dict(conf, mount_check="nfs"), target)


def test_salt_ssh_json_roundtrip_types():
    """What build_argv sends parses back (as salt's YAML loader would) to the same values."""
    import yaml

    conf = {"salt_ssh": "s", "saltfile": "f"}
    values = ["010", "yes", "a: b", "x=y", "#c", 42, {"n.sh": "QQ=="}]
    argv = saltssh.build_argv(conf, ["h"], "f", values, {})
    assert [yaml.safe_load(word) for word in argv[11:]] == values
    assert [json.loads(word) for word in argv[11:]] == values


def test_log_lines_never_start_with_a_number_oned_would_take_for_a_vm_id(capsys):
    """``INFO: <n> ...`` goes to VM n's log (DriverExecHelper.rb:178, 7.4.0); oned 7.4.0
    crashes on an id that does not exist: a leading number is kept off, a VM id is explicit."""
    for message in ("3 calls queued", " 42% done", "2026-12-02 started"):
        core.info(message)
        line = capsys.readouterr().err
        match = core.ONED_LOG_LINE.match(line.strip())
        assert match and match.group(2) is None, line
    core.info("disk ready", vmid=7)
    assert capsys.readouterr().err == "INFO: 7 disk ready\n"
    core.error("5 LVs left")
    err = capsys.readouterr().err
    assert core.ONED_LOG_LINE.match(err.splitlines()[0]).group(2) is None
    assert core.oned_reason(err) == "5 LVs left"


def test_the_reason_line_is_never_taken_for_a_log_line(capsys):
    core.error("ERROR: INFO: worker said no")
    err = capsys.readouterr().err
    assert core.oned_reason(err) == "worker said no"
    assert core.oned_reason(err, version=6) == err.replace("\n", " ").strip()


def test_no_message_of_the_driver_starts_with_a_number():
    """Audit: every info()/error() message literal in the driver library starts with a word."""
    import ast

    for path in sorted((TM / "lib" / "gfs2clvm_driver").glob("*.py")):
        tree = ast.parse(path.read_text())
        for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
            name = getattr(call.func, "id", getattr(call.func, "attr", ""))
            if name not in ("info", "error", "DriverError") or not call.args:
                continue
            first = call.args[0]
            head = first.values[0] if isinstance(first, ast.JoinedStr) and first.values else first
            if isinstance(head, ast.Constant) and isinstance(head.value, str):
                assert not head.value.lstrip()[:1].isdigit(), f"{path.name}:{call.lineno}"
            elif isinstance(head, ast.FormattedValue):
                # an interpolated value first: it must not be a bare number (ids, counts)
                assert not isinstance(head.value, ast.Name) or head.value.id not in (
                    "count", "n", "total", "vmid", "size"), f"{path.name}:{call.lineno}"
