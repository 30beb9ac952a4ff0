# SPDX-License-Identifier: Apache-2.0
"""The backup executables (tm_commands/tm/gfs2clvm/{pre,post}backup[_live], restore)
run for real with OpenNebula 7.4's argv and stdin, salt-ssh and ssh replaced by the
recording fakes of test_driver_support, and -- for restore -- OpenNebula's CLI,
the backup datastore's ``ls`` and ``downloader.sh`` by small scripts."""

import base64
import hashlib
import json
import zlib

import pytest
from test_driver_support import DS, Fakes

D42 = f"{DS}/0/42"
# BACKUP tm_mad host:remote_dir DISK_ID:...:DISK_ID deploy_id bj_id vmid dsid (TransferManager.cc:2397)
ARGV = [f"node1:{D42}", "0:2", "one-42", "-", 42, 0]
VM_XML = ("<VM><ID>42</ID><NAME>web</NAME><BACKUPS><BACKUP_CONFIG><MODE>FULL</MODE>"
          "<FS_FREEZE>NONE</FS_FREEZE></BACKUP_CONFIG></BACKUPS></VM>")


@pytest.fixture
def fakes(tmp_path):
    return Fakes(tmp_path)


def unpack(kwargs):
    return zlib.decompress(base64.b64decode(kwargs.pop("vm_xml"))).decode()


@pytest.mark.parametrize("action,live", [("prebackup", False), ("prebackup_live", True)])
@pytest.mark.parametrize("encode", [False, True], ids=["xml", "base64"])
def test_prebackup_is_one_call_with_the_vm_xml(fakes, action, live, encode):
    stdin = base64.b64encode(VM_XML.encode()).decode() if encode else VM_XML + "\n"
    rc, out, err = fakes.run("tm", action, *ARGV, stdin=stdin)
    assert (rc, out, err) == (0, "", "")
    targets, fun, args, kwargs = fakes.only_call()
    assert (targets, fun, args) == (["node1"], "gfs2clvm_tm.backup", [D42, 42])
    assert unpack(kwargs) == VM_XML
    assert kwargs == {"disks": [0, 2], "live": live, "vg": "vg_cloudstorage"}


def test_prebackup_takes_the_vm_out_of_the_vmm_action_data(fakes):
    stdin = f"<VMM_DRIVER_ACTION_DATA><HOST>node1</HOST>{VM_XML}</VMM_DRIVER_ACTION_DATA>"
    rc, _, err = fakes.run("tm", "prebackup", *ARGV, stdin=stdin)
    assert rc == 0, err
    assert unpack(fakes.only_call()[3]) == VM_XML


def test_live_backup_says_fs_freeze_is_not_applied(fakes):
    stdin = VM_XML.replace("<FS_FREEZE>NONE", "<FS_FREEZE>AGENT")
    rc, _, err = fakes.run("tm", "prebackup_live", *ARGV, stdin=stdin)
    assert rc == 0 and err.startswith("INFO: prebackup_live: FS_FREEZE=AGENT is not applied")


BAD = [
    ("prebackup", ARGV, VM_XML.replace("FULL", "INCREMENT"),
     "incremental backups are not supported by gfs2clvm: use MODE=FULL"),
    ("prebackup_live", ARGV, VM_XML.replace("FULL", "increment"),
     "incremental backups are not supported by gfs2clvm: use MODE=FULL"),
    ("prebackup", ARGV, "", "no VM XML on stdin"),
    ("prebackup", ARGV, "<VM><ID>43</ID></VM>", "the VM XML on stdin is VM 43, not VM 42"),
    ("prebackup", ARGV, "<VM><ID>42", "not valid XML"),
    ("prebackup", ARGV, "<IMAGE/>", "no <VM>"),
    ("prebackup", ARGV[:5], VM_XML, "usage"),
    ("prebackup", [f"node1:{D42}/disk.0", *ARGV[1:]], VM_XML, "names a disk"),
    ("prebackup", [f"node1:{DS}/0/43", *ARGV[1:]], VM_XML, "not in the directory of VM 42"),
    ("prebackup", [ARGV[0], "0:x", *ARGV[2:]], VM_XML, "disk id"),
    ("prebackup", [ARGV[0], "", *ARGV[2:]], VM_XML, "no disks to back up"),
    ("postbackup", [ARGV[0], "0", "one-42", "-", "4x2", 0], VM_XML, "VM id"),
    ("restore", [f"node1:{D42}", 42, 7, -1], "", "usage"),
    ("restore", [f"node1:{D42}", 42, "x", -1, -1], "", "backup image id"),
    ("restore", [f"node1:{D42}", 42, 7, -2, -1], "", "increment id"),
    ("restore", [f"node1:{D42}/disk.0", 42, 7, -1, -1], "", "not a VM directory"),
    ("restore", [f"node1:{DS}/0/43", 42, 7, -1, -1], "", "not in the directory of VM 42"),
]


@pytest.mark.parametrize("action,argv,stdin,message", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_is_a_clear_reason_and_no_call(fakes, action, argv, stdin, message):
    rc, out, err = fakes.run("tm", action, *argv, stdin=stdin)
    assert (rc, out) == (1, "") and "Traceback" not in err
    assert message in err
    assert fakes.calls() == [] and fakes.ssh_calls() == []


@pytest.mark.parametrize("action", ["postbackup", "postbackup_live"])
def test_postbackup_cleans_up_and_never_fails_the_backup(fakes, action):
    rc, out, err = fakes.run("tm", action, *ARGV, stdin=VM_XML)
    assert (rc, out, err) == (0, "", "")
    assert fakes.only_call() == (["node1"], "gfs2clvm_tm.backup_cleanup", [D42, 42], {"vg": "vg_cloudstorage"})
    fakes.reply(rc=1, value="cannot remove it")
    rc, out, err = fakes.run("tm", action, *ARGV, stdin=VM_XML)
    assert (rc, out) == (0, "") and err.startswith(f"ERROR: {action}: cleanup failed:")


def test_backup_base_path_is_refused(fakes, tmp_path):
    remotes = tmp_path / "remotes"
    (remotes / "etc" / "datastore").mkdir(parents=True)
    conf = remotes / "etc" / "datastore" / "datastore.conf"
    conf.write_text('#BACKUP_BASE_PATH="/x"\nSUPPORTED_FS="ext4"\n')
    fakes.write_conf(one_remotes=str(remotes))
    assert fakes.run("tm", "prebackup", *ARGV, stdin=VM_XML)[0] == 0
    conf.write_text('BACKUP_BASE_PATH="/var/backups"\n')
    rc, _, err = fakes.run("tm", "prebackup", *ARGV, stdin=VM_XML)
    assert rc == 1 and "BACKUP_BASE_PATH (datastore.conf) is not supported by gfs2clvm" in err
    assert len(fakes.calls()) == 1


# ------------------------------------------------------------------ restore
def _exe(path, text):
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def one(fakes, tmp_path):
    """Fake onevm/oneimage/onedatastore, a backup datastore ``rsync`` whose ``ls``
    lists disk 0 and 2 (and a tpm), and a downloader.sh that cats ``<url>``'s file."""
    state = tmp_path / "one"
    state.mkdir()
    remotes = tmp_path / "remotes"
    (remotes / "datastore" / "rsync").mkdir(parents=True)
    show = {
        "onevm": "<VM><ID>42</ID></VM>",
        "oneimage": "<IMAGE><ID>7</ID><DATASTORE_ID>100</DATASTORE_ID><FORMAT>raw</FORMAT></IMAGE>",
        "onedatastore": "<DATASTORE><ID>100</ID><DS_MAD>rsync</DS_MAD></DATASTORE>",
    }
    for name, xml in show.items():
        _exe(tmp_path / name, f"#!/bin/sh\necho \"$@\" >> {state}/{name}.args\ncat <<'X'\n{xml}\nX\n")
    (state / "disk.0").write_bytes(b"QFI\xfb" + b"zero" * 1000)
    (state / "disk.2").write_bytes(b"two" * 2000)
    listing = {"0": f"rsync://100/0:abc//{state}/disk.0", "2": f"rsync://100/0:abc//{state}/disk.2",
               "tpm": "rsync://100/0:abc//x/disk.tpm"}
    _exe(remotes / "datastore" / "rsync" / "ls",
         f"#!/bin/sh\necho \"$@\" > {state}/ls.args\ncat > {state}/ls.stdin\n"
         f"[ -e {state}/ls.fail ] && {{ echo 'cannot reach the backup server' >&2; exit 1; }}\n"
         f"echo '{json.dumps(listing)}'\n")
    _exe(remotes / "datastore" / "downloader.sh",
         f"#!/bin/sh\necho \"$@\" >> {state}/dl.args\n"
         f"[ -e {state}/dl.fail ] && {{ echo 'rsync: connection refused' >&2; exit 1; }}\n"
         "exec cat \"/${2##*//}\"\n")
    fakes.write_conf(onevm=str(tmp_path / "onevm"), oneimage=str(tmp_path / "oneimage"),
                     onedatastore=str(tmp_path / "onedatastore"), one_remotes=str(remotes))
    return state


def test_restore_lists_downloads_streams_and_makes_one_call(fakes, one):
    # RESTORE tm_mad host:remote_dir vm_id img_id inc_id disk_id (TransferManager.cc:2322)
    rc, out, err = fakes.run("tm", "restore", f"node1:{D42}", 42, 7, -1, -1)
    assert (rc, out) == (0, ""), err
    assert (one / "ls.args").read_text().split() == ["-i", "-1"]
    ls_in = (one / "ls.stdin").read_text()
    assert ls_in.startswith("<DS_DRIVER_ACTION_DATA>") and "<DS_MAD>rsync" in ls_in
    assert "<VM><ID>42" in ls_in and "<IMAGE><ID>7" in ls_in
    assert (one / "onedatastore.args").read_text().split() == ["show", "-x", "--decrypt", "100"]
    assert [line.split() for line in (one / "dl.args").read_text().splitlines()] == [
        ["--nodecomp", f"rsync://100/0:abc//{one}/disk.0", "-"], ["--nodecomp", f"rsync://100/0:abc//{one}/disk.2", "-"]]
    targets, fun, args, kwargs = fakes.only_call()
    assert (targets, fun, args) == (["node1"], "gfs2clvm_tm.restore", [D42, 42])
    disks = kwargs.pop("disks")
    assert kwargs == {"vg": "vg_cloudstorage"} and sorted(disks) == ["0", "2"]
    for key in ("0", "2"):
        data = (one / f"disk.{key}").read_bytes()
        assert disks[key]["bytes"] == len(data) and disks[key]["sha256"] == hashlib.sha256(data).hexdigest()
        assert disks[key]["staged"].startswith("/var/lib/one/.gfs2clvm-staging/")
    assert len(fakes.ssh_calls()) == 2  # one stream per disk


def test_restore_of_one_disk(fakes, one):
    rc, _, err = fakes.run("tm", "restore", f"node1:{D42}", 42, 7, 3, 2)
    assert rc == 0, err
    assert (one / "ls.args").read_text().split() == ["-i", "3"]
    assert sorted(fakes.only_call()[3]["disks"]) == ["2"]
    rc, _, err = fakes.run("tm", "restore", f"node1:{D42}", 42, 7, 3, 5)
    assert rc == 1 and "backup image 7 (increment 3) has no disk 5" in err


@pytest.mark.parametrize("fault,message", [
    ("ls.fail", "cannot list backup image 7 (rsync ls): cannot reach the backup server"),
    ("dl.fail", "rsync: connection refused"),
])
def test_restore_failures_before_the_call_are_a_reason_and_no_call(fakes, one, fault, message):
    (one / fault).touch()
    rc, out, err = fakes.run("tm", "restore", f"node1:{D42}", 42, 7, -1, -1)
    assert (rc, out) == (1, "") and message in err and "Traceback" not in err
    assert fakes.calls() == []
