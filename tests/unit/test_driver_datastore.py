# SPDX-License-Identifier: Apache-2.0
"""Datastore executables (tm_commands/datastore/gfs2clvm/*) with oned's input
(base64 DS_DRIVER_ACTION_DATA on stdin, or argv[1] up to 6.6) and exact outputs."""

import base64
import hashlib
import re

import pytest
from test_driver_support import IMG, MP, TM, VG, Fakes, ds_xml, failed, reason

SOURCE_RE = rf"/dev/{VG}/lv-oneimg-[0-9a-f]{{32}}"


@pytest.fixture
def fakes(tmp_path):
    return Fakes(tmp_path)


def test_executables_are_thin():
    names = sorted(p.name for p in (TM / "datastore" / "gfs2clvm").iterdir())
    assert names == ["clone", "cp", "mkfs", "monitor", "rm", "snap_delete", "snap_flatten", "snap_revert", "stat"]
    for name in names:
        text = (TM / "datastore" / "gfs2clvm" / name).read_text()
        code = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
        assert len(text.splitlines()) <= 20 and "# ARGUMENTS:" in text and "# RETURNS:" in text


def test_cp_http_prints_source_and_format(fakes):
    fakes.reply(value={"source": "x", "size_mb": 40})
    xml = ds_xml({"ID": 5, "PATH": "https://example.com/ttylinux.img", "SIZE": 40})
    rc, out, err = fakes.run("datastore", "cp", 5, stdin=xml)
    assert rc == 0, err
    assert re.fullmatch(rf"{SOURCE_RE} raw\n", out)
    targets, fun, args, kwargs = fakes.only_call()
    lv = out.split()[0].rsplit("/", 1)[1]
    # image 5 on a BRIDGE_LIST of two: spread by image id
    assert (targets, fun, args, kwargs) == (["node2"], "gfs2clvm_tm.ds_cp",
                                             ["https://example.com/ttylinux.img", lv],
                                             {"size_mb": 40, "vg": VG})


def test_cp_xml_in_argv_like_opennebula_6_6_and_older(fakes):
    xml = ds_xml({"ID": 4, "PATH": "https://example.com/a.img", "SIZE": 1})
    rc, out, err = fakes.run("datastore", "cp", xml, 4)
    assert rc == 0, err
    assert fakes.only_call()[0] == ["node1"]


def test_cp_local_file_is_one_stream_and_one_call(fakes, tmp_path):
    safe = tmp_path / "safe"
    safe.mkdir()
    img = safe / "disk.img"
    img.write_bytes(b"\x01" * (3 * 1024 * 1024 + 5))
    xml = ds_xml({"ID": 2, "PATH": str(img), "SIZE": 0},
                 {"SAFE_DIRS": str(safe), "RESTRICTED_DIRS": "/etc", "VG_NAME": "vg_other"})
    rc, out, err = fakes.run("datastore", "cp", 2, stdin=xml)
    assert rc == 0, err
    assert re.fullmatch(r"/dev/vg_other/lv-oneimg-[0-9a-f]{32} raw\n", out)
    assert len(fakes.ssh_calls()) == 1
    assert (fakes.state / "streamed.bin").read_bytes() == img.read_bytes()
    targets, fun, args, kwargs = fakes.only_call()
    assert (targets, fun) == (["node1"], "gfs2clvm_tm.ds_cp")
    assert re.fullmatch(rf"{MP}/\.gfs2clvm-staging/[0-9a-f]{{32}}\.img", args[0])
    assert args[1] == out.split()[0].rsplit("/", 1)[1]
    assert kwargs == {"size_mb": 4, "vg": "vg_other", "staged_bytes": 3 * 1024 * 1024 + 5,
                      "staged_sha256": hashlib.sha256(img.read_bytes()).hexdigest()}


def test_cp_local_file_outside_safe_dirs_or_inside_restricted_is_refused(fakes, tmp_path):
    img = tmp_path / "x.img"
    img.write_bytes(b"1")
    for ds in ({"SAFE_DIRS": "/var/tmp"}, {"SAFE_DIRS": str(tmp_path), "RESTRICTED_DIRS": str(tmp_path)}):
        rc, out, err = fakes.run("datastore", "cp", 1, stdin=ds_xml({"ID": 1, "PATH": str(img)}, ds))
        assert (rc, out) == (1, "")
        assert err == failed(f"not allowed to copy images from {img} (SAFE_DIRS/RESTRICTED_DIRS)")
    link = tmp_path / "safe"
    link.mkdir()
    (link / "shadow").symlink_to("/etc/shadow")
    rc, _, err = fakes.run("datastore", "cp", 1, stdin=ds_xml(
        {"ID": 1, "PATH": str(link / "shadow")}, {"SAFE_DIRS": str(link)}))
    assert rc == 1 and "not allowed" in err
    assert fakes.calls() == [] and fakes.ssh_calls() == []


def test_cp_failing_stream_makes_no_control_call(fakes, tmp_path):
    img = tmp_path / "x.img"
    img.write_bytes(b"1" * 10)
    fakes.env["FAKE_SSH_RC"] = "3"
    rc, _, err = fakes.run("datastore", "cp", 1, stdin=ds_xml({"ID": 1, "PATH": str(img)},
                                                               {"SAFE_DIRS": str(tmp_path)}))
    assert rc == 1 and err.splitlines()[-2].startswith("ERROR: copy to node2:")
    assert reason(err).startswith("copy to node2:") and err.splitlines()[-1] == reason(err)
    assert fakes.calls() == []


@pytest.mark.parametrize("path,src", [
    ("lvm://42/1", f"/dev/{VG}/lv-one-42-1"),
    (f"vol://{IMG}", f"/dev/{VG}/{IMG}"),
])
def test_cp_from_a_vm_disk_or_another_volume(fakes, path, src):
    rc, out, err = fakes.run("datastore", "cp", 3, stdin=ds_xml({"ID": 3, "PATH": path, "SIZE": 10}))
    assert rc == 0, err
    assert fakes.only_call()[2][0] == src


LOCKED = {"rc": 20, "value": {"stdout": "", "retcode": 1, "_error": "x",
                              "stderr": "Error running 'gfs2clvm_tm.ds_cp': lvchange failed (rc 5): "
                                        "LV locked by other host: vg_cloudstorage/lv-one-42-1"}}


@pytest.mark.parametrize("image_id,first,then", [(3, "node2", "node1"), (4, "node1", "node2")])
def test_cp_of_a_vm_disk_moves_on_to_the_host_holding_it(fakes, image_id, first, then):
    """Issue 13.3: lvm://VMID/DISKID ran only on BRIDGE_LIST[image id % n]; when the
    VM's disk is active exclusively on another worker lvmlockd refuses there.  Both
    parities: the next host is asked, and it is the one that copies."""
    fakes.reply(**LOCKED)
    fakes.reply(value={"source": "x", "size_mb": 10})
    rc, out, err = fakes.run("datastore", "cp", image_id,
                             stdin=ds_xml({"ID": image_id, "PATH": "lvm://42/1", "SIZE": 10}))
    assert rc == 0, err
    assert re.fullmatch(rf"{SOURCE_RE} raw\n", out)
    calls = [decode_call for decode_call in fakes.calls()]
    assert len(calls) == 2
    assert [c[c.index("--key-deploy") + 1] for c in calls] == [first, then]
    assert f"INFO: cp: /dev/{VG}/lv-one-42-1 is active on another host than {first}, trying {then}" in err


def test_cp_of_a_vm_disk_other_failures_and_the_last_host_are_the_answer(fakes):
    fakes.reply(rc=20, value={"stdout": "", "retcode": 1, "_error": "x",
                              "stderr": "Error running 'gfs2clvm_tm.ds_cp': lvcreate failed (rc 5): VG full"})
    rc, out, err = fakes.run("datastore", "cp", 3, stdin=ds_xml({"ID": 3, "PATH": "lvm://42/1", "SIZE": 10}))
    assert rc == 1 and out == "" and len(fakes.calls()) == 1
    why = "gfs2clvm_tm.ds_cp on node2: lvcreate failed (rc 5): VG full"
    assert err.splitlines()[-2:] == [f"ERROR: {why}", why]
    fakes.reply(**LOCKED)
    fakes.reply(**LOCKED)
    rc, out, err = fakes.run("datastore", "cp", 3, stdin=ds_xml({"ID": 3, "PATH": "lvm://42/1", "SIZE": 10}))
    assert rc == 1 and len(fakes.calls()) == 3
    assert "ERROR: gfs2clvm_tm.ds_cp on node1: lvchange failed (rc 5): LV locked by other host" in err


def test_mkfs_prints_source(fakes):
    rc, out, err = fakes.run("datastore", "mkfs", 7, stdin=ds_xml({"ID": 7, "SIZE": 100, "FS": "ext4"}))
    assert rc == 0, err
    assert re.fullmatch(rf"{SOURCE_RE}\n", out)
    targets, fun, args, kwargs = fakes.only_call()
    assert (fun, args[1:], kwargs) == ("gfs2clvm_tm.ds_mkfs", [100], {"fs": "ext4", "vg": VG})
    assert out.strip().endswith(args[0])


def test_mkfs_save_as_makes_no_filesystem(fakes):
    rc, _, err = fakes.run("datastore", "mkfs", 7, stdin=ds_xml({"ID": 7, "SIZE": 100, "FSTYPE": "save_as"}))
    assert rc == 0, err
    assert fakes.only_call()[3] == {"vg": VG}


def test_rm_stat_clone_monitor(fakes, tmp_path):
    rc, out, err = fakes.run("datastore", "rm", 3, stdin=ds_xml({"ID": 3, "SOURCE": f"/dev/{VG}/{IMG}"}))
    assert (rc, out) == (0, ""), err
    assert fakes.only_call()[1:] == ("gfs2clvm_tm.ds_rm", [IMG], {"vg": VG})

    img = tmp_path / "f.img"
    img.write_bytes(b"x" * (5 * 1024 * 1024 + 1))
    rc, out, _ = fakes.run("datastore", "stat", 3, stdin=ds_xml({"ID": 3, "PATH": str(img)},
                                                                {"SAFE_DIRS": str(tmp_path)}))
    assert (rc, out) == (0, "6\n") and len(fakes.calls()) == 1

    fakes.reply(value={"size_mb": 2048})
    rc, out, _ = fakes.run("datastore", "stat", 3, stdin=ds_xml({"ID": 3, "PATH": "lvm://9/0"}))
    assert (rc, out) == (0, "2048\n")
    assert fakes.calls()[-1][-3:] == ["gfs2clvm_tm.ds_stat", f'"/dev/{VG}/lv-one-9-0"', f'vg="{VG}"']

    rc, out, _ = fakes.run("datastore", "clone", 4, stdin=ds_xml({"ID": 4, "PATH": f"/dev/{VG}/{IMG}"}))
    assert rc == 0 and re.fullmatch(rf"{SOURCE_RE} raw\n", out)
    assert fakes.calls()[-1][-4] == "gfs2clvm_tm.ds_clone"

    fakes.reply(value={"used_mb": 1, "free_mb": 2, "total_mb": 3})
    rc, out, _ = fakes.run("datastore", "monitor", 100, stdin=ds_xml())
    assert (rc, out) == (0, "USED_MB=1\nFREE_MB=2\nTOTAL_MB=3\n")
    assert len(fakes.calls()) == 4  # rm, stat lvm://, clone, monitor (local stat: none)


BAD = [
    ("cp", "bm90IHhtbA==", "driver action data is not base64 XML"),
    ("cp", "%%%", "driver action data is not base64 XML"),
    ("cp", base64.b64encode(b"<OTHER/>").decode(), "unexpected driver action document <OTHER>"),
    ("cp", ds_xml({"ID": 1, "PATH": "http://x/y"}, {"BRIDGE_LIST": ""}), "has no BRIDGE_LIST"),
    ("cp", ds_xml({"ID": 1, "PATH": "http://x/y"}, {"BRIDGE_LIST": "a;b"}), "not a host name"),
    ("cp", ds_xml({"ID": 1, "PATH": "lvm://x/1"}), "invalid image path"),
    ("cp", ds_xml({"ID": 1, "PATH": "http://x/y"}, {"VG_NAME": "vg bad"}), "invalid VG"),
    ("cp", ds_xml({"ID": 1}), "image has no PATH"),
    ("mkfs", ds_xml({"ID": 1, "SIZE": 0}), "must be > 0"),
    ("mkfs", ds_xml({"ID": 1, "SIZE": 10, "FS": "ext4 -O x"}), "invalid filesystem type"),
    ("rm", ds_xml({"ID": 1, "SOURCE": f"/dev/{VG}/lv-one-1-0"}), "invalid image volume"),
    ("rm", ds_xml({"ID": 1, "SOURCE": "/dev/vg/../x"}), "invalid"),
    ("clone", ds_xml({"ID": 1, "PATH": "/dev/vg/gfs2"}), "invalid image volume"),
]


@pytest.mark.parametrize("action,stdin,message", BAD, ids=range(len(BAD)))
def test_bad_action_data_is_one_error_line(fakes, action, stdin, message):
    rc, out, err = fakes.run("datastore", action, 1, stdin=stdin)
    assert (rc, out) == (1, "")
    assert err.startswith("ERROR: ") and err.count("\n") == 2 and message in err
    assert err == failed(reason(err)) and message in reason(err)
    assert fakes.calls() == []


def test_mkfs_of_an_unknown_filesystem_is_refused_before_salt_ssh(fakes):
    rc, out, err = fakes.run("datastore", "mkfs", 7, stdin=ds_xml({"ID": 7, "SIZE": 100, "FS": "bogus9"}))
    assert (rc, out) == (1, "")
    why = ("unknown filesystem type 'bogus9': the workers make ext2, ext3, ext4, xfs, btrfs, vfat, "
           "swap (or none: raw, qcow2, none, save_as)")
    assert err == f"ERROR: {why}\n{why}\n"
    assert fakes.calls() == []


def test_front_end_filesystems_are_what_the_worker_makes():
    """validate.FILESYSTEMS is the worker's list (gfs2clvm.mkfs: _MKFS and swap)."""
    import importlib.util

    from test_driver_support import REPO
    from gfs2clvm_driver import validate

    spec = importlib.util.spec_from_file_location("gfs2clvm_fs_ut", REPO / "_modules" / "gfs2clvm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert set(validate.FILESYSTEMS) == set(module._MKFS) | {"swap"}


from xml.sax.saxutils import escape as xml_escape  # noqa: E402

# image PATHs OpenNebula can give (issue 13.11): any name; only this process opens the file
ODD_NAMES = ["my disk.img", "Bild-äöü ß.img", "it's \"quoted\".img", "semi;colon $(x) `y` & | <z>.img",
             "tab\there.img", "-leading-dash.img", "日本語.qcow2"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_cp_and_stat_of_a_front_end_file_with_any_name(fakes, tmp_path, name):
    safe = tmp_path / "safe dir ä"
    safe.mkdir()
    img = safe / name
    img.write_bytes(b"\x02" * (1024 * 1024 + 1))
    ds = {"SAFE_DIRS": str(tmp_path)}  # SAFE_DIRS is space-separated: its parent
    path = xml_escape(str(img), {'"': "&quot;"})  # as oned writes it into the XML
    rc, out, err = fakes.run("datastore", "stat", 2, stdin=ds_xml({"ID": 2, "PATH": path}, ds))
    assert (rc, out) == (0, "2\n"), err
    rc, out, err = fakes.run("datastore", "cp", 2, stdin=ds_xml({"ID": 2, "PATH": path, "SIZE": 0}, ds))
    assert rc == 0, err
    assert (fakes.state / "streamed.bin").read_bytes() == img.read_bytes()
    targets, fun, args, kwargs = fakes.only_call()
    assert fun == "gfs2clvm_tm.ds_cp" and re.fullmatch(rf"{MP}/\.gfs2clvm-staging/[0-9a-f]{{32}}\.img", args[0])
    assert name not in " ".join(map(str, fakes.ssh_calls()))  # the name never leaves this host


@pytest.mark.parametrize("path, reason", [
    ("relative/x.img", "not an absolute path"),
    ("/var/tmp/../etc/shadow", "holds a '.' or '..' segment"),
    ("/var/tmp/./x.img", "holds a '.' or '..' segment"),
    ("/var/tmp/a\nb.img", "holds a NUL or a line break"),
])
def test_front_end_paths_refused_only_for_what_is_unsafe(fakes, path, reason):
    rc, out, err = fakes.run("datastore", "cp", 2, stdin=ds_xml({"ID": 2, "PATH": path}, {"SAFE_DIRS": "/var/tmp"}))
    assert (rc, out) == (1, "")
    assert err.startswith("ERROR: invalid image path ") and err.rstrip("\n").endswith(reason), err
    assert fakes.calls() == [] and fakes.ssh_calls() == []


def test_stat_refusals_reach_the_user_as_a_reason(fakes, tmp_path):
    """Found under real oned: a path outside SAFE_DIRS showed ``Cannot parse image SIZE: `` --
    oned makes the plain stderr line the reason (ImageManagerProtocol.cc:39-56, ImageAPI.cc:853)."""
    img = tmp_path / "x.img"
    img.write_bytes(b"1")
    rc, out, err = fakes.run("datastore", "stat", 3, stdin=ds_xml({"ID": 3, "PATH": str(img)},
                                                                   {"SAFE_DIRS": "/var/tmp"}))
    assert (rc, out) == (1, "")
    assert reason(err) == f"not allowed to copy images from {img} (SAFE_DIRS/RESTRICTED_DIRS)"
    rc, out, err = fakes.run("datastore", "stat", 3, stdin=ds_xml({"ID": 3}))
    assert (rc, out, reason(err)) == (1, "", "image has no PATH")
    fakes.reply(value={"ok": True})
    rc, out, err = fakes.run("datastore", "stat", 3, stdin=ds_xml({"ID": 3, "PATH": "lvm://9/0"}))
    assert (rc, out) == (1, "") and reason(err).startswith("gfs2clvm_tm.ds_stat on node")
    fakes.reply(rc=0, out={}, stderr="[ERROR   ] No matching targets found in roster.\n")
    rc, out, err = fakes.run("datastore", "stat", 3, stdin=ds_xml({"ID": 3, "PATH": "lvm://9/0"}))
    assert (rc, out) == (1, "") and reason(err).startswith("host node") and "is not in the salt-ssh roster" in reason(err)


@pytest.mark.parametrize("action", ["snap_delete", "snap_flatten"])
def test_image_snapshot_delete_and_flatten_have_nothing_to_remove(fakes, action):
    """Issue 14.7: images of this datastore never have snapshots (the TM refuses disk
    snapshots of persistent images): nothing to remove, no worker call."""
    xml = ds_xml({"ID": 6, "SOURCE": f"/dev/{VG}/{IMG}", "TARGET_SNAPSHOT": 2})
    rc, out, err = fakes.run("datastore", action, 6, stdin=xml)
    assert (rc, out) == (0, "") and "Traceback" not in err
    assert all(line.startswith("INFO: ") for line in err.splitlines())
    assert fakes.calls() == []


def test_image_snapshot_revert_is_a_clear_refusal(fakes):
    xml = ds_xml({"ID": 6, "SOURCE": f"/dev/{VG}/{IMG}", "TARGET_SNAPSHOT": 2})
    rc, out, err = fakes.run("datastore", "snap_revert", 6, stdin=xml)
    assert (rc, out) == (1, "") and "Traceback" not in err
    assert "image snapshots are not supported by the gfs2clvm datastore: image 6 has no snapshot 2" in err
    assert fakes.calls() == []
    rc, _, err = fakes.run("datastore", "snap_revert", 6, stdin="not base64 !")
    assert rc == 1 and "not base64 XML" in err
