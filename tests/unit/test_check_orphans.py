# SPDX-License-Identifier: Apache-2.0
"""gfs2clvm.check (GFS2 withdrawn, udev rule in effect, libvirt's qemu.conf) and
gfs2clvm.orphans_remove failing part-way.

The files check reads (/proc/self/mountinfo, /sys/fs/gfs2, /dev/<vg>,
/etc/libvirt/qemu.conf) are module constants pointed at real files in tmp_path,
laid out as the kernel, udev and the formula lay them out.
"""

import json
import os
import pwd
from pathlib import Path
from unittest.mock import patch

import pytest
from salt.exceptions import CommandExecutionError

from test_gfs2clvm_module import LVS, VG, conf, configure_loader_modules, data, fake, gfs2clvm, mnt  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
CHECKS = {"config", "lvm", "device_mapper", "sudo", "lvmlockd", "vg", "thin_pool", "mount", "tools", "udev", "libvirt"}


# ---------------------------------------------------------------- GFS2 withdrawn
@pytest.fixture
def gfs2_mounted(conf, mnt, tmp_path):
    """mnt mounted as gfs2 from 253:3 (mountinfo) and its /sys/fs/gfs2 entry (withdraw 0),
    next to another gfs2 (253:9) that is withdrawn and must not be mistaken for it."""
    conf["mount_check"] = "gfs2"
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        f"97 22 253:3 / {mnt} rw,noatime shared:40 - gfs2 /dev/mapper/vg_cloudstorage-gfs2 rw,lockproto=lock_dlm\n"
        "98 22 253:9 / /srv/other rw,noatime shared:41 - gfs2 /dev/mapper/vg2-gfs2 rw,lockproto=lock_dlm\n"
    )
    sysfs = tmp_path / "sys_fs_gfs2"
    for table, dev, withdrawn in (("onecluster:gfs2", "253:3", "0"), ("other:fs", "253:9", "1")):
        (sysfs / table).mkdir(parents=True)
        (sysfs / table / "id").write_text(f"{dev}\n")
        (sysfs / table / "withdraw").write_text(f"{withdrawn}\n")
    with patch.object(gfs2clvm, "MOUNTINFO", str(info)), patch.object(gfs2clvm, "SYS_GFS2", str(sysfs)):
        yield sysfs / "onecluster:gfs2"


def test_mounted_gfs2_not_withdrawn(fake, mnt, gfs2_mounted):
    assert gfs2clvm._check_mount(gfs2clvm._config()) == (True, f"{mnt}: gfs2 mounted (lock table onecluster:gfs2), not withdrawn")


def test_withdrawn_gfs2_fails_the_check(fake, mnt, gfs2_mounted):
    (gfs2_mounted / "withdraw").write_text("1\n")
    ret = gfs2clvm.check()
    assert ret["ok"] is False
    assert ret["checks"]["mount"] == {"ok": False, "detail": (
        f"GFS2 at {mnt} is withdrawn (lock table onecluster:gfs2): I/O there fails; move the VMs off this host, "
        "read the kernel log (journalctl -k -g gfs2), then reboot it (fsck.gfs2 only with the file system "
        "unmounted on every node)")}
    assert not fake.writes()


def test_gfs2_without_sysfs_entry_is_not_called_healthy(fake, mnt, gfs2_mounted):
    (gfs2_mounted / "id").write_text("253:4\n")
    ok, detail = gfs2clvm._check_mount(gfs2clvm._config())
    assert not ok and detail.endswith("has no " + str(gfs2_mounted.parent) + "/*/id entry: cannot tell whether it is withdrawn")
    assert f"(device 253:3)" in detail


def test_unreadable_withdraw_flag_is_reported(fake, mnt, gfs2_mounted):
    (gfs2_mounted / "withdraw").unlink()
    ok, detail = gfs2clvm._check_mount(gfs2clvm._config())
    assert not ok and detail == (f"cannot read {gfs2_mounted / 'withdraw'}: No such file or directory: "
                                 f"cannot tell whether GFS2 at {mnt} is withdrawn")


def test_an_unreadable_id_of_another_gfs2_is_skipped(fake, mnt, gfs2_mounted):
    """An entry that cannot be read (an id that is a directory here; a GFS2 being
    unmounted in real life) is not the mount's: the mount's own entry still decides."""
    other = gfs2_mounted.parent / "a-first:fs"
    (other / "id").mkdir(parents=True)
    assert sorted(gfs2_mounted.parent.glob("*/id"))[0] == other / "id"
    assert gfs2clvm._check_mount(gfs2clvm._config()) == (True, f"{mnt}: gfs2 mounted (lock table onecluster:gfs2), not withdrawn")


def test_withdraw_is_only_looked_at_for_gfs2(fake, conf, mnt, tmp_path):
    conf["mount_check"] = "none"
    with patch.object(gfs2clvm, "SYS_GFS2", str(tmp_path / "absent")):
        assert gfs2clvm._check_mount(gfs2clvm._config()) == (True, f"{mnt} ok (mount_check=none)")


# ---------------------------------------------------------------- udev rule
def _other_user():
    me = os.geteuid()
    return next(user.pw_name for user in pwd.getpwall() if user.pw_uid != me)


@pytest.fixture
def devdir(tmp_path):
    """/dev as udev lays it out: /dev/<vg>/<lv> -> ../dm-N, the node owned by the rule's owner."""
    dev = tmp_path / "dev"
    (dev / VG).mkdir(parents=True)
    with patch.object(gfs2clvm, "DEV_DIR", str(dev)):
        yield dev


def _active(dev, lv, number, mode=0o660):
    node = dev / f"dm-{number}"
    node.write_bytes(b"")
    node.chmod(mode)
    (dev / VG / lv).symlink_to(f"../dm-{number}")
    return node


def test_udev_nothing_active(fake, devdir):
    assert gfs2clvm._check_udev(gfs2clvm._config()) == (True, "no active driver LV to check")
    _active(devdir, "gfs2", 1)  # not a driver LV
    (devdir / VG / "lv-one-3-0").symlink_to("../dm-77")  # stale link: not active
    assert gfs2clvm._check_udev(gfs2clvm._config()) == (True, "no active driver LV to check")


def test_udev_no_vg_directory(fake, conf, tmp_path):
    with patch.object(gfs2clvm, "DEV_DIR", str(tmp_path)):
        assert gfs2clvm.check()["checks"]["udev"] == {"ok": True, "detail": "no active driver LV to check"}


def test_udev_rule_in_effect(fake, conf, devdir):
    _active(devdir, "gfs2", 1, 0o600)
    _active(devdir, "lv-one-7-0", 2)
    _active(devdir, "lv-one-7-0-s1", 3)
    _active(devdir, "lv-oneimg-0123456789abcdef0123456789abcdef", 4)
    ret = gfs2clvm.check()["checks"]["udev"]
    assert ret == {"ok": True, "detail": f"3 active driver LVs, all {conf['owner']}'s (udev rule in effect)"}


def test_udev_rule_not_in_effect(fake, conf, devdir):
    me = pwd.getpwuid(os.geteuid()).pw_name
    _active(devdir, "lv-one-7-0", 2)
    _active(devdir, "lv-one-8-0", 3)
    conf["owner"] = _other_user()  # the nodes are the test user's, the rule's owner is another one
    ok, detail = gfs2clvm._check_udev(gfs2clvm._config())
    assert not ok and detail == (
        f"2 of 2 active driver LVs are not {conf['owner']}'s (read+write): lv-one-7-0 ({me} 0660), lv-one-8-0 ({me} 0660); "
        f"the udev rule is not in effect: apply gfs2clvm.worker, then as root "
        f"udevadm control --reload && udevadm trigger --action=change {devdir / VG}/<lv>")


def test_udev_owner_without_write_permission(fake, conf, devdir):
    me = pwd.getpwuid(os.geteuid()).pw_name
    _active(devdir, "lv-one-7-0", 2)
    _active(devdir, "lv-one-7-1", 3, 0o440)
    ok, detail = gfs2clvm._check_udev(gfs2clvm._config())
    assert not ok and detail.startswith(f"1 of 2 active driver LVs are not {me}'s (read+write): lv-one-7-1 ({me} 0440);")


def test_udev_missing_owner_is_reported(fake, conf, devdir):
    _active(devdir, "lv-one-7-0", 2)
    conf["owner"] = "gfs2clvm_nosuchuser"
    assert gfs2clvm.check()["checks"]["udev"] == {"ok": False, "detail": "user gfs2clvm_nosuchuser does not exist on this host"}


# ---------------------------------------------------------------- libvirt
# qemu.conf as libvirt ships it (commented defaults) ...
SHIPPED = """# Master configuration file for the QEMU driver.
#vnc_listen = "0.0.0.0"
#user = "root"
#group = "root"
#dynamic_ownership = 1
"""
# ... and after the formula's file.keyvalue (separator ' = ', uncomment '#')
FORMULA = """# Master configuration file for the QEMU driver.
#vnc_listen = "0.0.0.0"
user = "{owner}"
group = "{group}"
dynamic_ownership = 0
"""


@pytest.fixture
def qemu_conf(tmp_path):
    path = tmp_path / "qemu.conf"
    with patch.object(gfs2clvm, "LIBVIRT_QEMU_CONF", str(path)):
        yield path


def test_libvirt_not_installed_is_fine(fake, qemu_conf):
    assert gfs2clvm.check()["checks"]["libvirt"] == {"ok": True, "detail": f"libvirt not installed (no {qemu_conf})"}


def test_libvirt_as_the_formula_sets_it(fake, conf, qemu_conf):
    qemu_conf.write_text(FORMULA.format(**conf))
    assert gfs2clvm.check()["checks"]["libvirt"] == {
        "ok": True, "detail": f"{qemu_conf}: user {conf['owner']}, group {conf['group']}, dynamic_ownership 0"}


def test_libvirt_defaults_are_reported(fake, conf, qemu_conf):
    qemu_conf.write_text(SHIPPED)
    ok, detail = gfs2clvm._check_libvirt(gfs2clvm._config())
    assert not ok and detail == (
        f"{qemu_conf}: user is not set, group is not set, dynamic_ownership is not set (the driver needs "
        f'user = "{conf["owner"]}", group = "{conf["group"]}", dynamic_ownership = 0): apply gfs2clvm.worker '
        "(libvirt:manage) or set them by hand, then restart libvirtd")


def test_libvirt_dynamic_ownership_on_is_reported(fake, conf, qemu_conf):
    qemu_conf.write_text(FORMULA.format(**conf).replace("dynamic_ownership = 0", "dynamic_ownership = 1  # back on"))
    ok, detail = gfs2clvm._check_libvirt(gfs2clvm._config())
    assert not ok and detail.startswith(f"{qemu_conf}: dynamic_ownership is 1 (the driver needs ")
    qemu_conf.write_text(FORMULA.format(owner="libvirt-qemu", group=conf["group"]))
    ok, detail = gfs2clvm._check_libvirt(gfs2clvm._config())
    assert not ok and detail.startswith(f'{qemu_conf}: user is "libvirt-qemu" (the driver needs ')


def test_libvirt_conf_unreadable_by_the_driver_user(fake, conf, qemu_conf):
    """Debian ships qemu.conf 0600 root: oneadmin (salt-ssh) cannot read it; that is
    no failure of the worker, and the detail says the settings were not checked."""
    qemu_conf.write_text(SHIPPED)
    with patch.object(gfs2clvm, "open", create=True, side_effect=PermissionError(13, "Permission denied")):
        ok, detail = gfs2clvm._check_libvirt(gfs2clvm._config())
    assert ok and detail.startswith(f"{qemu_conf} is not readable by ")
    assert detail.endswith(": its settings are not checked (run gfs2clvm.check as root)")


def test_formula_and_check_agree_on_qemu_conf():
    """The keys check wants are exactly the ones the formula's libvirt state writes."""
    text = (REPO / "salt" / "gfs2clvm" / "worker" / "libvirt.sls").read_text()
    assert "dynamic_ownership: '0'" in text
    assert "user: '\"{{ g.owner }}\"'" in text and "group: '\"{{ g.group }}\"'" in text


def test_check_keys_and_one_line_details(fake, conf, qemu_conf, devdir):
    ret = gfs2clvm.check()
    assert set(ret["checks"]) == CHECKS
    for name, item in ret["checks"].items():
        assert set(item) == {"ok", "detail"} and isinstance(item["ok"], bool), name
        assert isinstance(item["detail"], str) and item["detail"] and "\n" not in item["detail"], name
    json.dumps(ret)


# ---------------------------------------------------------------- orphans_remove part-way
def _tree(mnt):
    for vmid, links in ((7, {"disk.0": f"/dev/{VG}/lv-one-7-0", "disk.5": f"/dev/{VG}/lv-one-7-5"}),
                        (12, {"disk.1": str(mnt / "gone.img")})):
        vmdir = mnt / "datastores" / "0" / str(vmid)
        vmdir.mkdir(parents=True)
        for name, target in links.items():
            (vmdir / name).symlink_to(target)
    return mnt / "datastores/0/7/disk.5", mnt / "datastores/0/12/disk.1"


def _lvs_without(*names):
    report = json.loads(data("lvs_after.json"))
    report["report"][0]["lv"] = [row for row in report["report"][0]["lv"] if row["lv_name"] not in names]
    return json.dumps(report)


def test_orphans_remove_dry_run_is_the_default(fake, mnt):
    link5, link1 = _tree(mnt)
    fake.lvs("lvs_after.json")
    ret = gfs2clvm.orphans_remove(vmids=[7, 12])
    assert ret["dry_run"] is True and ret["links"] == [str(link1), str(link5)]
    assert not fake.writes() and link5.is_symlink() and link1.is_symlink()


def test_orphans_remove_unlink_failure_is_one_line_and_the_rest_goes_on(fake, mnt):
    link5, link1 = _tree(mnt)
    fake.lvs("lvs_after.json")
    real_unlink = os.unlink

    def unlink(path, *args, **kwargs):
        if str(path) == str(link1):
            raise PermissionError(13, "Permission denied", str(path))
        return real_unlink(path, *args, **kwargs)

    with patch.object(gfs2clvm.os, "unlink", side_effect=unlink):
        with pytest.raises(CommandExecutionError) as err:
            gfs2clvm.orphans_remove(vmids=[7, 12], dry_run=False)
    message = str(err.value)
    assert message == (
        f"orphans_remove did not finish: cannot remove {link1}: permission denied; "
        f"removed: lv-one-8-0-s0, lv-one-70-0, lv-one-8-0, lv-one-9-0, {link5}; not removed: {link1}")
    assert "\n" not in message
    assert "Permission denied" not in message  # salt-ssh would take it for an ssh login failure
    assert fake.writes() == [["/sbin/lvremove", "--yes", f"{VG}/lv-one-8-0-s0", f"{VG}/lv-one-70-0",
                              f"{VG}/lv-one-8-0", f"{VG}/lv-one-9-0"]]
    assert not link5.is_symlink() and link1.is_symlink()


def test_orphans_remove_lvremove_part_way_says_what_is_left(fake, mnt):
    link5, link1 = _tree(mnt)
    fake.lvs("lvs_after.json")  # the orphans' listing
    fake.answer("lvremove", rc=5, stderr="  Logical volume vg_cloudstorage/lv-one-8-0 in use.\n")
    fake.answer("lvs", _lvs_without("lv-one-8-0-s0", "lv-one-70-0", "lv-one-9-0"))  # after: 8-0 is left
    with pytest.raises(CommandExecutionError) as err:
        gfs2clvm.orphans_remove(vmids=[7, 12], dry_run=False)
    assert str(err.value) == (
        "orphans_remove did not finish: lvremove failed (rc 5): Logical volume vg_cloudstorage/lv-one-8-0 in use.; "
        f"removed: lv-one-8-0-s0, lv-one-70-0, lv-one-9-0, {link1}, {link5}; not removed: lv-one-8-0")
    assert fake.calls[-1] == LVS + [VG]  # the read-only look after the failure
    assert not link5.is_symlink() and not link1.is_symlink()  # the links still went


def test_orphans_remove_lvremove_failure_with_unknown_state(fake, mnt):
    fake.lvs("lvs_after.json")
    fake.answer("lvremove", rc=5, stderr="  Lock manager lvmlockd is not running.\n")
    fake.answer("lvs", rc=5, stderr="  Lock manager lvmlockd is not running.\n")
    with pytest.raises(CommandExecutionError) as err:
        gfs2clvm.orphans_remove(vmids=[7, 12], dry_run=False)
    assert str(err.value) == (
        "orphans_remove did not finish: lvremove failed (rc 5): Lock manager lvmlockd is not running. "
        "(and then lvs failed (rc 5): Lock manager lvmlockd is not running.: which LVs are left is unknown); "
        "removed: nothing; not removed: lv-one-8-0-s0, lv-one-70-0, lv-one-8-0, lv-one-9-0")


def test_orphan_unlink_leaves_a_replaced_link_alone(tmp_path):
    plain = tmp_path / "disk.0"
    plain.write_text("not a link any more")
    assert gfs2clvm._orphan_unlink(str(plain)) == f"{plain} is no longer a symlink: left alone"
    assert plain.exists()
    assert gfs2clvm._orphan_unlink(str(tmp_path / "gone")) is None
