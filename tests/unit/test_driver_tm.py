# SPDX-License-Identifier: Apache-2.0
"""The TM executables (tm_commands/tm/gfs2clvm/*) run for real with oned's argv,
salt-ssh replaced by a recording fake: exactly one salt-ssh call per action with
the exact module function and arguments; bad input -> exit 1, one ``ERROR:`` line,
and no salt-ssh call at all."""

import base64
import re

import pytest
from test_driver_support import DS, IMG, MP, TM, VG, Fakes, decode, ds_xml, failed, reason

D42 = f"{DS}/0/42"
ACTIONS = sorted(p.name for p in (TM / "tm" / "gfs2clvm").iterdir())


@pytest.fixture
def fakes(tmp_path):
    return Fakes(tmp_path)


def test_every_action_exists_and_is_thin():
    assert ACTIONS == sorted([
        "clone", "ln", "mkimage", "mkswap", "context", "mv", "mvds", "cpds", "delete", "resize",
        "snap_create", "snap_delete", "snap_revert", "premigrate", "postmigrate", "failmigrate",
        "monitor", "prebackup", "prebackup_live", "postbackup", "postbackup_live", "restore", "snap_create_live",
    ])
    for name in ACTIONS:
        text = (TM / "tm" / "gfs2clvm" / name).read_text()
        assert text.startswith("#!/usr/bin/env python3\n")
        assert "# ARGUMENTS:" in text and "# RETURNS:" in text
        code = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        assert len(code) <= 20 and len(text.splitlines()) <= 20, name
        assert "def main(argv):" in text and "run_main(main)" in text


# (action, argv, targets, fun, args, kwargs)
CASES = [
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"node1:{D42}/disk.0", 42, 1],
     ["node1"], "clone", [f"/dev/{VG}/{IMG}", f"{D42}/disk.0", 42, 0], {"vg": VG}),
    ("clone", [f"fe:{VG}/{IMG}", f"node1:{D42}/disk.3", 42, 1],
     ["node1"], "clone", [f"/dev/{VG}/{IMG}", f"{D42}/disk.3", 42, 3], {"vg": VG}),
    ("clone", ["https://example.com/a.img?x=1", f"node1:{D42}/disk.0", 42, 1],
     ["node1"], "clone", ["https://example.com/a.img?x=1", f"{D42}/disk.0", 42, 0], {"vg": VG}),
    ("clone", [f"fe:{MP}/datastores/1/boot.iso", f"node1:{D42}/disk.2", 42, 1],
     ["node1"], "clone", [f"{MP}/datastores/1/boot.iso", f"{D42}/disk.2", 42, 2], {"vg": VG}),
    ("clone", [f"fe:{MP}/datastores/1/boot.isox", f"node1:{D42}/disk.2", 42, 1],
     ["node1"], "clone", [f"{MP}/datastores/1/boot.isox", f"{D42}/disk.2", 42, 2], {"vg": VG}),
    ("clone", [f"fe:/dev/{VG}/lv-one-7-0", f"node1:{D42}/disk.0", 42, 1],
     ["node1"], "clone", [f"/dev/{VG}/lv-one-7-0", f"{D42}/disk.0", 42, 0], {"vg": VG}),
    ("ln", [f"fe:/dev/{VG}/{IMG}", f"node2:{D42}/disk.1", 42, 1],
     ["node2"], "ln", [f"/dev/{VG}/{IMG}", f"{D42}/disk.1", 42, 1], {"vg": VG}),
    ("mkimage", [2048, "raw", f"node1:{D42}/disk.4", 42, 0],
     ["node1"], "mkimage", [f"{D42}/disk.4", 42, 4, 2048], {"vg": VG}),
    ("mkimage", [100, "ext4", f"node1:{D42}/disk.4", 42, 0],
     ["node1"], "mkimage", [f"{D42}/disk.4", 42, 4, 100], {"vg": VG, "fs": "ext4"}),
    ("mkswap", [512, f"node1:{D42}/disk.5", 42, 0],
     ["node1"], "mkswap", [f"{D42}/disk.5", 42, 5, 512], {"vg": VG}),
    ("mv", [f"node1:{D42}", f"node2:{D42}", 42, 0],
     ["node1", "node2"], "mv", [D42, D42, 42], {"vg": VG, "src_host": "node1", "dst_host": "node2"}),
    ("mv", [f"node1:{D42}/disk.0", f"fe:{D42}/disk.0", 42, 0],
     ["node1"], "mv", [f"{D42}/disk.0", f"{D42}/disk.0", 42], {"vg": VG, "src_host": "node1"}),
    ("mv", [f"fe:{D42}", f"node2:{D42}", 42, 0],
     ["node2"], "mv", [D42, D42, 42], {"vg": VG, "dst_host": "node2"}),
    ("mv", [f"node1:{D42}", f"node1:{DS}/100/42", 42, 100],
     ["node1"], "mv", [D42, f"{DS}/100/42", 42], {"vg": VG, "dst_host": "node1"}),
    ("mv", [f"node1:{D42}/disk.1", f"node2:{DS}/100/42/disk.1", 42, 1],
     ["node1", "node2"], "mv", [f"{D42}/disk.1", f"{DS}/100/42/disk.1", 42],
     {"vg": VG, "src_host": "node1", "dst_host": "node2"}),
    ("mvds", [f"node1:{D42}/disk.1", f"fe:/dev/{VG}/{IMG}", 42, 1],
     ["node1"], "mvds", [f"{D42}/disk.1", f"/dev/{VG}/{IMG}", 42], {"vg": VG}),
    ("cpds", [f"node1:{D42}/disk.0", f"fe:/dev/{VG}/{IMG}", -1, 42, 1],
     ["node1"], "cpds", [f"{D42}/disk.0", f"/dev/{VG}/{IMG}", 42], {"vg": VG}),
    ("cpds", [f"node1:{D42}/disk.0", f"fe:/dev/{VG}/{IMG}", 3, 42, 1],
     ["node1"], "cpds", [f"{D42}/disk.0", f"/dev/{VG}/{IMG}", 42], {"vg": VG, "snapid": 3}),
    ("delete", [f"node1:{D42}", 42, 0], ["node1"], "delete", [D42, 42], {"vg": VG}),
    ("delete", [f"node1:{D42}/disk.0", 42, 1], ["node1"], "delete", [f"{D42}/disk.0", 42], {"vg": VG}),
    ("resize", [f"node1:{D42}/disk.0", 4096, 42, 0],
     ["node1"], "resize", [f"{D42}/disk.0", 4096], {"vg": VG, "vmid": 42}),
    ("snap_create", [f"node1:{D42}/disk.0", 2, 42, 1],
     ["node1"], "snap_create", [f"{D42}/disk.0", 2], {"vg": VG, "vmid": 42}),
    ("snap_delete", [f"node1:{D42}/disk.0", 2, 42, 1],
     ["node1"], "snap_delete", [f"{D42}/disk.0", 2], {"vg": VG, "vmid": 42}),
    ("snap_revert", [f"node1:{D42}/disk.0", 0, 42, 1],
     ["node1"], "snap_revert", [f"{D42}/disk.0", 0], {"vg": VG, "vmid": 42}),
    ("premigrate", ["node1", "node2", D42, 42, 0],
     ["node1", "node2"], "premigrate", [42, D42], {"vg": VG, "src_host": "node1", "dst_host": "node2"}),
    ("postmigrate", ["node1", "node2", D42, 42, 0, "PFZNPjwvVk0+"],
     ["node1", "node2"], "postmigrate", [42, D42], {"vg": VG, "src_host": "node1", "dst_host": "node2"}),
    ("failmigrate", ["node1", "node2", D42, 42, 0],
     ["node1", "node2"], "failmigrate", [42, D42], {"vg": VG, "src_host": "node1", "dst_host": "node2"}),
    # oned's own form of the path (found by the matrix in the lab): the worker gets it folded
    ("premigrate", ["node1", "node2", D42.replace("/datastores", "//datastores"), 42, 0],
     ["node1", "node2"], "premigrate", [42, D42], {"vg": VG, "src_host": "node1", "dst_host": "node2"}),
]


@pytest.mark.parametrize("action,argv,targets,fun,args,kwargs", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_action_is_one_salt_ssh_call(fakes, action, argv, targets, fun, args, kwargs):
    rc, out, err = fakes.run("tm", action, *argv)
    assert (rc, out, err) == (0, "", "")
    call = fakes.only_call()
    if fun == "premigrate":  # one fresh handoff word per call (the source tells the destination)
        assert re.fullmatch(r"[0-9a-f]{32}", call[3].pop("handoff"))
    assert call == (targets, f"gfs2clvm_tm.{fun}", args, kwargs)


def test_per_datastore_override_of_the_vg(fakes):
    fakes.write_conf(datastores={"7": {"vg": "vg_fast"}})
    rc, _, err = fakes.run("tm", "mkswap", 512, f"node1:{D42}/disk.5", 42, 7)
    assert rc == 0, err
    assert fakes.only_call()[3] == {"vg": "vg_fast"}


def test_context_small_files_ride_in_the_call(fakes, tmp_path):
    ctx = tmp_path / "context.sh"
    ctx.write_text("ETH0_IP=10.0.0.5\n")
    extra = tmp_path / "init.sh"
    extra.write_text("echo hi\n")
    rc, out, err = fakes.run("tm", "context", ctx, f"{extra}:'start.sh'", f"node1:{D42}/disk.6", 42, 0)
    assert (rc, out, err) == (0, "", "")
    targets, fun, args, kwargs = fakes.only_call()
    assert (targets, fun, args) == (["node1"], "gfs2clvm_tm.context", [f"{D42}/disk.6", 42])
    assert kwargs["files"] == {
        "context.sh": base64.b64encode(b"ETH0_IP=10.0.0.5\n").decode(),
        "start.sh": base64.b64encode(b"echo hi\n").decode(),
    }
    assert fakes.ssh_calls() == []


def test_context_large_files_are_streamed_then_one_call(fakes, tmp_path):
    import hashlib
    import io
    import tarfile

    big = tmp_path / "data.bin"
    big.write_bytes(bytes(range(256)) * 400)  # 100 KiB: too big for salt-ssh arguments
    ctx = tmp_path / "context.sh"
    ctx.write_text("A=1\n")
    rc, _, err = fakes.run("tm", "context", ctx, big, f"node1:{D42}/disk.6", 42, 0)
    assert rc == 0, err
    assert err.startswith("INFO: context: streaming")
    (ssh_argv,) = fakes.ssh_calls()
    assert ssh_argv[-3:-1] == ["node1", "--"] and "-l" in ssh_argv and "oneadmin" in ssh_argv
    streamed = (fakes.state / "streamed.bin").read_bytes()
    with tarfile.open(fileobj=io.BytesIO(streamed)) as tar:
        assert sorted(tar.getnames()) == ["context.sh", "data.bin"]
    targets, fun, args, kwargs = fakes.only_call()
    assert (targets, fun, args) == (["node1"], "gfs2clvm_tm.context", [f"{D42}/disk.6", 42])
    assert kwargs["staged_bytes"] == len(streamed)
    assert kwargs["staged_sha256"] == hashlib.sha256(streamed).hexdigest()
    assert re.fullmatch(rf"{MP}/\.gfs2clvm-staging/[0-9a-f]{{32}}\.tar", kwargs["staged"])
    remote = (fakes.state / "ssh-remote.txt").read_text()
    assert remote.startswith(f'case "$(stat -f -c %T {MP})" in gfs2|gfs/gfs2) ;; *) false ;; esac ||')


def test_context_over_the_limit_is_refused(fakes, tmp_path):
    fakes.write_conf(context_max_bytes=1000)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 1001)
    rc, out, err = fakes.run("tm", "context", big, f"node1:{D42}/disk.6", 42, 0)
    assert (rc, out) == (1, "")
    assert err == failed("context files total 1001 bytes > context_max_bytes 1000")
    assert fakes.calls() == [] and fakes.ssh_calls() == []


def test_mv_and_migrate_to_the_same_host_do_nothing(fakes):
    rc, _, err = fakes.run("tm", "mv", f"node1:{D42}", f"node1:{D42}", 42, 0)
    assert rc == 0 and err.startswith("INFO:")
    rc, _, err = fakes.run("tm", "premigrate", "node1", "node1", D42, 42, 0)
    assert rc == 0 and err.startswith("INFO:")
    assert fakes.calls() == []


def test_a_stopped_vms_disks_are_handled_on_a_worker(fakes):
    """A stopped VM's actions name the front-end; its LVs are in the shared VG: any worker."""
    rc, _, err = fakes.run("tm", "delete", f"fe:{D42}", 42, 0)
    assert (rc, err) == (1, failed("fe is the front-end: set bridge_list (no worker found in the salt-ssh roster)"))
    cfg = fakes.tmp / "salt"
    cfg.mkdir()
    (cfg / "master").write_text(f"roster_file: {cfg / 'nodes'}\n")
    (cfg / "nodes").write_text("nodeB: {host: 10.0.0.2}\nnodeA: {host: 10.0.0.1}\n")
    (fakes.tmp / "Saltfile").write_text(f"salt-ssh: {{config_dir: {cfg}}}\n")
    rc, _, err = fakes.run("tm", "cpds", f"fe:{D42}/disk.0", f"/dev/{VG}/{IMG}", -1, 42, 1)
    assert rc == 0, err
    assert fakes.calls()[-1][8:10] == ["nodeA", "gfs2clvm_tm.cpds"]
    fakes.write_conf(bridge_list=["node2"])
    for action, argv in (("delete", [f"fe:{D42}", 42, 0]),
                         ("mvds", [f"fe:{D42}/disk.1", f"/dev/{VG}/{IMG}", 42, 1])):
        rc, _, err = fakes.run("tm", action, *argv)
        assert rc == 0, err
        assert fakes.calls()[-1][8:10] == ["node2", f"gfs2clvm_tm.{action}"]


def test_monitor_prints_what_oned_parses(fakes):
    """oned reads only USED_MB/FREE_MB/TOTAL_MB from stdout; the VM disk sizes go to
    onemonitord (test_driver_monitor.py checks that message)."""
    fakes.reply(value={"used_mb": 10, "free_mb": 90, "total_mb": 100,
                       "vms": {"42": {"0": 2048, "1": 512}, "7": {"0": 10}}})
    xml = ds_xml(ds={"BRIDGE_LIST": "node2"}, ds_id=0).replace("", "")
    rc, out, err = fakes.run("tm", "monitor", 0, stdin=_with(xml, "<MONITOR_VM_DISKS>1</MONITOR_VM_DISKS>"))
    assert rc == 0, err
    assert out.splitlines() == ["USED_MB=10", "FREE_MB=90", "TOTAL_MB=100"]
    assert fakes.only_call() == (["node2"], "gfs2clvm_tm.monitor", [0], {"vg": VG})


def _with(b64xml, extra):
    xml = base64.b64decode(b64xml).decode().replace("</DS_DRIVER_ACTION_DATA>", extra + "</DS_DRIVER_ACTION_DATA>")
    return base64.b64encode(xml.encode()).decode()


# ------------------------------------------------------------------ bad input
BAD = [
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"node1:{D42}/disk.0", "4x", 1], "invalid VM id '4x'"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"node1:{D42}/disk.0", "-1", 1], "invalid VM id '-1'"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"node1:{D42}/disk.0", "042", 1], "invalid VM id '042'"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"node1:{D42}/disk.0", 2**31, 1], "invalid VM id"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"node1:{D42}/disk.0", 42, "x"], "invalid datastore id 'x'"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"node1:{DS}/0/43/disk.0", 42, 1], "not in the directory of VM 42"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"node1:{DS}/0/420/disk.0", 42, 1], "not in the directory of VM 42"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"node1:{DS}/0/42/../43/disk.0", 42, 1], "not a plain absolute path"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"node1:{D42}/disk.0;reboot", 42, 1], "not a plain absolute path"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"node1:{D42}/disk 0", 42, 1], "not a plain absolute path"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"node1:/tmp/42/disk.0", 42, 1], f"not under {DS}"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"node1:{D42}", 42, 1], "does not name a disk"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"$(reboot):{D42}/disk.0", 42, 1], "not a host name"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"-oProxyCommand=x:{D42}/disk.0", 42, 1], "not a host name"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"{D42}/disk.0", 42, 1], "expected host:path"),
    ("clone", [f"fe:/dev/{VG}/lv;rm", f"node1:{D42}/disk.0", 42, 1], "invalid LV name"),
    ("clone", ["fe:/etc/shadow.iso", f"node1:{D42}/disk.0", 42, 1], f"not under {MP}"),
    ("clone", ["http://x/a b", f"node1:{D42}/disk.0", 42, 1], "invalid URL"),
    ("clone", [f"fe:/dev/{VG}/{IMG}", f"node1:{D42}/disk.0", 42], "wrong number of arguments (3)"),
    ("ln", [f"fe:/dev/{VG}/lv-one-7-0", f"node1:{D42}/disk.0", 42, 1], "invalid image volume"),
    ("mkimage", [0, "raw", f"node1:{D42}/disk.4", 42, 0], "must be > 0"),
    ("mkimage", ["1G", "raw", f"node1:{D42}/disk.4", 42, 0], "invalid size '1G'"),
    ("mkimage", [10, "ext4;x", f"node1:{D42}/disk.4", 42, 0], "invalid filesystem type"),
    # refused on the front-end, before the (slow) salt-ssh call the worker refused it in (issue 19.6)
    ("mkimage", [10, "bogus9", f"node1:{D42}/disk.4", 42, 0],
     "unknown filesystem type 'bogus9': the workers make ext2, ext3, ext4, xfs, btrfs, vfat, swap "
     "(or none: raw, qcow2, none, save_as)"),
    ("mkswap", [512, f"node1:{D42}/disk.5", 42], "wrong number of arguments"),
    ("mv", [f"node1:{D42}", f"node2:{DS}/0/43", 42, 0], "not in the directory of VM 42"),
    ("mvds", [f"node1:{D42}/disk.1", f"fe:/dev/{VG}/lv-one-42-1", 42, 1], "invalid image volume"),
    ("cpds", [f"node1:{D42}/disk.0", f"fe:/dev/{VG}/{IMG}", "s1", 42, 1], "invalid snapshot id"),
    ("delete", [f"node1:{DS}/0/4", 42, 0], "not in the directory of VM 42"),
    ("delete", [f"node1:{DS}/0", 42, 0], "not in the directory of VM 42"),
    ("delete", [f"node1:{DS}/x/42", 42, 0], "not in the directory of VM 42"),
    ("resize", [f"node1:{D42}/disk.0", "big", 42, 0], "invalid size 'big'"),
    ("snap_create", [f"node1:{D42}/disk.0", "-1", 42, 0], "invalid snapshot id"),
    ("premigrate", ["node1", "node2", f"{D42}/disk.0", 42, 0], "names a disk"),
    ("premigrate", ["node1", "no de2", D42, 42, 0], "not a host name"),
    ("postmigrate", ["node1", "node2", f"{DS}/0/41", 42, 0], "not in the directory of VM 42"),
    ("monitor", [0], "no driver action data on stdin"),
]


@pytest.mark.parametrize("action,argv,message", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_one_error_line_and_no_call(fakes, action, argv, message):
    rc, out, err = fakes.run("tm", action, *argv)
    assert (rc, out) == (1, "")
    assert err.count("\n") == 2 and err.startswith("ERROR: ") and "Traceback" not in err
    assert message in err
    assert err == failed(reason(err)) and message in reason(err)  # the plain reason line oned shows
    assert fakes.calls() == []


# ------------------------------------------------------- salt-ssh failures
FAILURES = [
    ({"rc": 20, "value": {"stdout": "", "retcode": 1, "_error": "The command resulted in a non-zero exit code",
                          "stderr": "Error running 'gfs2clvm_tm.mkswap': lvcreate failed (rc 5): "
                                    "Volume group \"vg_cloudstorage\" has insufficient free space"}},
     "ERROR: gfs2clvm_tm.mkswap on node1: lvcreate failed (rc 5): Volume group \"vg_cloudstorage\" "
     "has insufficient free space"),
    ({"rc": 20, "value": {"stdout": "None", "retcode": 1, "_error": "x",
                          "stderr": "Passed invalid arguments: vmid must be an integer.\n\nUsage:\n..."}},
     "ERROR: gfs2clvm_tm.mkswap on node1: invalid arguments: vmid must be an integer"),
    ({"rc": 0, "out": {}, "stderr": "[ERROR   ] No matching targets found in roster.\n"},
     "ERROR: host node1 is not in the salt-ssh roster"),
    ({"rc": 20, "value": {"stdout": "", "retcode": 254, "_error": "x",
                          "stderr": "The host key needs to be accepted, to auto accept run salt-ssh with the -i flag"}},
     "ERROR: host key of node1 not accepted: add it to the known_hosts file (never -i)"),
    ({"rc": 20, "value": {"stdout": "", "retcode": 255, "_error": "x",
                          "stderr": "ssh: connect to host 10.1.1.1 port 22: Connection refused"}},
     "ERROR: ssh to node1 failed: ssh: connect to host 10.1.1.1 port 22: Connection refused"),
    # found in the lab: every sshd session of the worker killed (worker down); the
    # connection reset before the banner, and ssh's exit 255 with no text at all
    ({"rc": 20, "value": {"stdout": "", "retcode": 255, "_error": "x",
                          "stderr": "kex_exchange_identification: read: Connection reset by peer"}},
     "ERROR: ssh to node1 failed: kex_exchange_identification: read: Connection reset by peer"),
    ({"rc": 20, "value": {"stdout": "", "retcode": 255, "stderr": "",
                          "_error": "The command resulted in a non-zero exit code"}},
     "ERROR: ssh to node1 failed (exit 255, no message): is the worker up and its sshd running?"),
    ({"rc": 20, "value": {"stdout": "", "retcode": 1, "_error": "x",
                          "stderr": "Traceback (most recent call last):\n  File \"x\", line 1\nValueError: oops"}},
     "ERROR: gfs2clvm_tm.mkswap on node1: ValueError: oops"),
    ({"rc": 20, "value": {"stdout": "", "retcode": 255, "_error": "x",
                          "stderr": "'gfs2clvm_tm.mkswap' is not available."}},
     "ERROR: worker node1 runs other gfs2clvm modules than the front-end driver 0.1.0 (gfs2clvm_tm.mkswap on node1: "
     "'gfs2clvm_tm.mkswap' is not available.): apply gfs2clvm.worker there (highstate) so both are the same version; "
     "gfs2clvm-host check node1 compares them"),
    # the worker's function has another signature (issue 13.9): a version mismatch, not a TypeError
    ({"rc": 20, "value": {"stdout": "None", "retcode": 1, "_error": "x",
                          "stderr": "Passed invalid arguments: mkswap() got an unexpected keyword argument 'fs'.\n\n"
                                    "Usage:\n..."}},
     "ERROR: worker node1 runs other gfs2clvm modules than the front-end driver 0.1.0 (gfs2clvm_tm.mkswap on node1: "
     "invalid arguments: mkswap() got an unexpected keyword argument 'fs'): apply gfs2clvm.worker there (highstate) "
     "so both are the same version; gfs2clvm-host check node1 compares them"),
    ({"rc": 20, "value": {"stdout": "None", "retcode": 1, "_error": "x",
                          "stderr": "Passed invalid arguments: The following keyword arguments are not valid: vg=vg1\n"}},
     "ERROR: worker node1 runs other gfs2clvm modules than the front-end driver 0.1.0 (gfs2clvm_tm.mkswap on node1: "
     "invalid arguments: The following keyword arguments are not valid: vg=vg1): apply gfs2clvm.worker there "
     "(highstate) so both are the same version; gfs2clvm-host check node1 compares them"),
    ({"rc": 20, "value": {"stdout": "", "retcode": 1, "_error": "Permission denied",
                          "stderr": "Error running 'gfs2clvm_tm.mkswap': [Errno 13] Permission denied: '/x'"}},
     "ERROR: gfs2clvm_tm.mkswap on node1: permission denied (ssh login or a command on the worker): "
     "Error running 'gfs2clvm_tm.mkswap': [Errno 13] Permission denied: '/x'"),
    ({"rc": 1, "out": "Traceback (most recent\nnot json", "stderr": "boom\nlast words\n"},
     "ERROR: gfs2clvm_tm.mkswap on node1: salt-ssh exit 1: last words"),
    # found in the lab (worker down, its ssh port closed): salt-ssh 3008 returns ssh's
    # failure to connect as the host's bare string value, exit 20 -- once taken for success
    ({"rc": 20, "out": {"node1": "ssh: connect to host 127.0.0.1 port 2202: Connection refused"}},
     "ERROR: ssh to node1 failed: ssh: connect to host 127.0.0.1 port 2202: Connection refused"),
    ({"rc": 20, "out": {"node1": "kex_exchange_identification: read: Connection reset by peer"}},
     "ERROR: ssh to node1 failed: kex_exchange_identification: read: Connection reset by peer"),
    # salt-ssh failed the call though its value looks fine: never reported as done
    ({"rc": 11, "value": {"ok": True}},
     "ERROR: gfs2clvm_tm.mkswap on node1: salt-ssh exit 11 (node1: returned): no message"),
    ({"rc": 20, "out": {"node1": "something odd"}, "stderr": "[ERROR   ] it broke\n"},
     "ERROR: gfs2clvm_tm.mkswap on node1: salt-ssh exit 20 (node1: something odd): [ERROR ] it broke"),
]


@pytest.mark.parametrize("reply,line", FAILURES, ids=range(len(FAILURES)))
def test_failures_become_one_clear_line(fakes, reply, line):
    fakes.reply(**reply)
    rc, out, err = fakes.run("tm", "mkswap", 512, f"node1:{D42}/disk.5", 42, 0)
    assert (rc, out, err) == (1, "", line + "\n" + line.removeprefix("ERROR: ") + "\n")
    assert reason(err) == line.removeprefix("ERROR: ")
    assert len(fakes.calls()) == 1


def test_one_failing_host_of_a_migration_is_named(fakes):
    fakes.reply(rc=20, out={
        "node1": {"role": "source"},
        "node2": {"retcode": 1, "_error": "x", "stderr": "Error running 'gfs2clvm_tm.premigrate': "
                  "vg_cloudstorage/lv-one-42-0: shared activation still refused after 60 s"},
    })
    rc, _, err = fakes.run("tm", "premigrate", "node1", "node2", D42, 42, 0)
    assert rc == 1
    assert err == ("ERROR: gfs2clvm_tm.premigrate on node2: vg_cloudstorage/lv-one-42-0: "
                   "shared activation still refused after 60 s\n"
                   "gfs2clvm_tm.premigrate on node2: vg_cloudstorage/lv-one-42-0: "
                   "shared activation still refused after 60 s\n")


def test_timeout_and_missing_salt_ssh(fakes):
    fakes.write_conf(timeout=1)
    fakes.reply(sleep=5)
    rc, _, err = fakes.run("tm", "mkswap", 512, f"node1:{D42}/disk.5", 42, 0)
    assert (rc, err) == (1, failed("gfs2clvm_tm.mkswap on node1: no answer in 1 s"))
    fakes.write_conf(salt_ssh="/nonexistent/salt-ssh")
    rc, _, err = fakes.run("tm", "mkswap", 512, f"node1:{D42}/disk.5", 42, 0)
    assert (rc, err) == (1, failed("salt-ssh not found at /nonexistent/salt-ssh (config salt_ssh)"))


def test_bad_configuration_is_one_line(fakes):
    fakes.conf_path.write_text("vg: [unclosed\n")
    rc, _, err = fakes.run("tm", "mkswap", 512, f"node1:{D42}/disk.5", 42, 0)
    assert rc == 1 and err.startswith(f"ERROR: driver configuration {fakes.conf_path} is not valid YAML")
    assert err.count("\n") == 2 and reason(err).startswith(f"driver configuration {fakes.conf_path} is not")
    fakes.conf_path.write_text("vgg: x\n")
    rc, _, err = fakes.run("tm", "mkswap", 512, f"node1:{D42}/disk.5", 42, 0)
    assert err == failed(f"driver configuration {fakes.conf_path}: unknown key(s) vgg")
    fakes.env["GFS2CLVM_CONF"] = str(fakes.tmp / "missing.conf")
    rc, _, err = fakes.run("tm", "mkswap", 512, f"node1:{D42}/disk.5", 42, 0)
    assert err == failed(f"driver configuration {fakes.tmp / 'missing.conf'} not found (set GFS2CLVM_CONF)")


def test_arguments_are_json_so_yaml_cannot_reinterpret_them(fakes):
    """salt parses arguments as YAML: '010' would be 8, 'yes' a bool, a=b a kwarg."""
    rc, _, err = fakes.run("tm", "clone", "https://h/x?a=b&yes=010", f"node1:{D42}/disk.0", 42, 1)
    assert rc == 0, err
    argv = fakes.calls()[0]
    assert '"https://h/x?a=b&yes=010"' in argv
    assert decode(argv, fakes.conf)[2][0] == "https://h/x?a=b&yes=010"


# ------------------------------------------------------- mkimage: FORMAT + the VM's DISK/FS
def test_mkimage_formats_a_volatile_disk_with_the_vms_disk_fs(fakes):
    """The 2nd argument is the disk FORMAT; the file system is DISK/FS (onevm show -x), as
    fs_lvm/mkimage reads it: a volatile FS=ext4 disk must come out formatted."""
    fakes.vm(42, {4: {"TYPE": "fs", "FS": "ext4", "FORMAT": "raw", "SIZE": 100}})
    rc, out, err = fakes.run("tm", "mkimage", 100, "raw", f"node1:{D42}/disk.4", 42, 0)
    assert (rc, out, err) == (0, "", "")
    targets, fun, args, kwargs = fakes.only_call()
    assert (targets, fun, args, kwargs) == (["node1"], "gfs2clvm_tm.mkimage", [f"{D42}/disk.4", 42, 4, 100],
                                            {"vg": VG, "fs": "ext4"})
    assert (fakes.state / "onevm.log").read_text() == "show -x 42\n"


def test_mkimage_takes_the_vm_from_stdin_when_given(fakes):
    vm = "<VM><ID>42</ID><TEMPLATE><DISK><DISK_ID>4</DISK_ID><FS>xfs</FS></DISK></TEMPLATE></VM>"
    rc, _, err = fakes.run("tm", "mkimage", 100, "raw", f"node1:{D42}/disk.4", 42, 0,
                           stdin=base64.b64encode(vm.encode()).decode())
    assert (rc, err) == (0, "")
    assert fakes.only_call()[3] == {"vg": VG, "fs": "xfs"}
    assert not (fakes.state / "onevm.log").exists()


@pytest.mark.parametrize("fs,fmt,message", [
    ("bogus9", "raw", "volatile disk 4 of VM 42: unknown filesystem type 'bogus9': the workers make ext2, ext3, "
                      "ext4, xfs, btrfs, vfat, swap"),
    ("", "qcow2", "volatile disk 4 of VM 42: FORMAT qcow2 is not supported (gfs2clvm disks are raw LVs): "
                  "use FORMAT=raw"),
    ("", "zfs", "volatile disk 4 of VM 42: unknown filesystem type 'zfs'"),
])
def test_mkimage_refuses_on_the_front_end_before_any_call(fakes, fs, fmt, message):
    fakes.vm(42, {4: {"FS": fs}})
    rc, out, err = fakes.run("tm", "mkimage", 100, fmt, f"node1:{D42}/disk.4", 42, 0)
    assert (rc, out) == (1, "") and reason(err).startswith(message)
    assert fakes.calls() == []


def test_mkimage_names_a_vm_oned_cannot_show(fakes):
    (fakes.state / "vm-42.xml.missing").write_text("")
    rc, _, err = fakes.run("tm", "mkimage", 100, "raw", f"node1:{D42}/disk.4", 42, 0)
    assert rc == 1 and reason(err) == ("cannot read VM 42 with onevm show -x: "
                                       "[one.vm.info] Error getting virtual machine [42].")
    assert fakes.calls() == []


# ------------------------------------------------------- migrations: VM on stdin, migrate_other
def _remotes(fakes, other=None, other_rc=0):
    """A ``remotes/`` tree: our premigrate/postmigrate + lib, and an ``other`` TM recording its calls."""
    import shutil

    base = fakes.tmp / "remotes"
    (base / "tm" / "gfs2clvm").mkdir(parents=True)
    (base / "lib").symlink_to(TM / "lib")
    for action in ("premigrate", "postmigrate", "failmigrate"):
        shutil.copy(TM / "tm" / "gfs2clvm" / action, base / "tm" / "gfs2clvm" / action)
        if other:
            script = base / "tm" / other / action
            script.parent.mkdir(exist_ok=True)
            script.write_text(f"#!/bin/sh\necho \"$0 $*\" >> {fakes.state}/other.log\n"
                              f"cat >> {fakes.state}/other.stdin\n"
                              f"[ {other_rc} = 0 ] || echo 'ERROR: other broke'; [ {other_rc} = 0 ] || "
                              f"echo 'shared LUN busy' >&2; exit {other_rc}\n")
            script.chmod(0o755)
    return base


def _run_remote(fakes, base, action, *args, stdin=""):
    import subprocess

    proc = subprocess.run([str(base / "tm" / "gfs2clvm" / action), *map(str, args)], input=stdin.encode(),
                          capture_output=True, env=fakes.env, timeout=60, check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


VM_TWO_TMS = ("<VM><ID>42</ID><TEMPLATE><DISK><DISK_ID>0</DISK_ID><TM_MAD>gfs2clvm</TM_MAD></DISK>"
              "<DISK><DISK_ID>1</DISK_ID><TM_MAD>shared</TM_MAD></DISK><DISK><DISK_ID>2</DISK_ID>"
              "<TYPE>fs</TYPE></DISK></TEMPLATE></VM>")


def test_premigrate_hands_the_call_on_to_the_other_tm_of_the_vms_disks(fakes):
    """As fs_lvm/premigrate's migrate_other: the other TM gets our 5 arguments + our name and the
    VM base64 on stdin; called with a 6th argument (by another system TM), nothing is handed on."""
    base = _remotes(fakes, "shared")
    b64 = base64.b64encode(VM_TWO_TMS.encode()).decode()
    rc, out, err = _run_remote(fakes, base, "premigrate", "node1", "node2", D42, 42, 0, stdin=b64 + "\n")
    assert (rc, out) == (0, ""), err
    assert (fakes.state / "other.log").read_text() == (
        f"{base}/tm/shared/premigrate node1 node2 {D42} 42 0 gfs2clvm\n")
    assert base64.b64decode((fakes.state / "other.stdin").read_text()).decode() == VM_TWO_TMS
    assert len(fakes.calls()) == 1
    (fakes.state / "other.log").unlink()
    rc, _, err = _run_remote(fakes, base, "premigrate", "node1", "node2", D42, 42, 0, "fs_lvm", stdin=b64)
    assert rc == 0, err
    assert not (fakes.state / "other.log").exists() and len(fakes.calls()) == 2


def test_premigrate_refuses_when_the_other_tm_fails_or_is_missing(fakes):
    b64 = base64.b64encode(VM_TWO_TMS.encode()).decode()
    base = _remotes(fakes, "shared", other_rc=3)
    rc, _, err = _run_remote(fakes, base, "premigrate", "node1", "node2", D42, 42, 0, stdin=b64)
    assert rc == 1 and reason(err) == "shared/premigrate failed: shared LUN busy"
    # postmigrate is no_fail for oned: the other TM's failure is logged, ours succeeded
    rc, _, err = _run_remote(fakes, base, "postmigrate", "node1", "node2", D42, 42, 0, stdin=b64)
    assert rc == 0 and "INFO: postmigrate: shared/postmigrate failed: shared LUN busy" in err
    (fakes.tmp / "two").mkdir()
    fakes2 = Fakes(fakes.tmp / "two")
    base = _remotes(fakes2)
    rc, _, err = _run_remote(fakes2, base, "premigrate", "node1", "node2", D42, 42, 0, stdin=b64)
    assert rc == 1 and reason(err) == (f"the VM has disks of TM_MAD shared, but {base}/tm/shared/premigrate "
                                       "does not exist: cannot prepare them for live migration")
    assert fakes2.calls() == []


def test_migrate_without_stdin_and_with_a_bad_template(fakes):
    rc, _, err = fakes.run("tm", "failmigrate", "node1", "node2", D42, 42, 0)  # stdin empty: run by hand
    assert (rc, err) == (0, "")
    rc, _, err = fakes.run("tm", "premigrate", "node1", "node2", D42, 42, 0, stdin="not base64 at all!")
    assert rc == 1 and reason(err) == "the VM template on stdin is neither base64 nor XML"
    rc, _, err = fakes.run("tm", "premigrate", "node1", "node2", D42, 42, 0, "bad;name")
    assert rc == 1 and reason(err) == "invalid system TM_MAD 'bad;name' (6th argument)"


def test_snap_create_live_is_a_clear_refusal(fakes):
    """Issue 14.7: oned calls snap_create_live only with kvm-gfs2clvm in LIVE_DISK_SNAPSHOTS
    (one_vmm_exec.rb); the driver never snapshots a disk in use, and says so."""
    rc, out, err = fakes.run("tm", "snap_create_live", f"node1:{D42}/disk.0", 1, 42, 0)
    assert (rc, out) == (1, "") and "Traceback" not in err
    assert "live disk snapshots are not supported by gfs2clvm" in err and "power off the VM" in err
    assert fakes.calls() == []


def test_snap_delete_of_an_invalid_snapshot_says_so(fakes):
    fakes.reply(value={"action": "snap_delete", "snapshot": "lv-one-42-0-s1", "removed": True, "invalid": True})
    rc, out, err = fakes.run("tm", "snap_delete", f"node1:{D42}/disk.0", 1, 42, 0)
    assert (rc, out) == (0, "")
    assert ("INFO: snap_delete: snapshot lv-one-42-0-s1 was invalid (its copy-on-write area had overflowed); removed"
            in err.splitlines())
