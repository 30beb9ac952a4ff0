# SPDX-License-Identifier: Apache-2.0
"""gfs2clvm primitives through REAL salt-ssh, as root and as an unprivileged user.

The module is shipped by salt-ssh from the file roots (the provisioning set-up of
saltssh_env) and runs on this host over a real sshd on 127.0.0.1 with
``mount_check: none``. File primitives run for real. LVM cannot run here (no
device-mapper), so the VM-tree tests use a set-up of their own whose ``lvm_bin``
holds stand-in ``lvs``/``lvremove`` scripts (printing LVM JSON captured in the
lab); the unprivileged user reaches them exactly as oneadmin reaches LVM in
production: ``sudo -n <lvm_bin>/<cmd>`` through a NOPASSWD rule for those paths only.
"""

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "unit" / "data"
MiB = 1024 * 1024
VG = "vg_cloudstorage"
WHO = ["root", "unpriv"]


def _login(saltssh, who):
    return "root" if who == "root" else saltssh.user.pw_name


def _own(saltssh, who, *paths):
    """Files the test (root) prepares for a target belong to that target's user."""
    if who == "unpriv":
        for path in paths:
            os.lchown(path, saltssh.user.pw_uid, saltssh.user.pw_gid)


@pytest.fixture
def area(saltssh, who, request):
    """A fresh directory in the target's mountpoint, owned by its user."""
    path = saltssh.mountpoints[who] / f"m-{request.node.name.split('[')[0]}"
    path.mkdir()
    _own(saltssh, who, path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _ok(result):
    rc, data, err = result
    assert rc == 0, f"rc={rc} data={data!r} stderr={err}"
    assert isinstance(data, dict), data
    return data


@pytest.mark.parametrize("who", WHO)
def test_copy_file_to_file_with_checksum(saltssh, who, area):
    src = area / "src.img"
    with open(src, "wb") as handle:
        handle.truncate(16 * MiB)
        handle.write(os.urandom(MiB))
        handle.seek(9 * MiB)
        handle.write(os.urandom(4096 + 17))
    _own(saltssh, who, src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    dst = area / "datastores" / "0" / "3" / "disk.0"
    data = _ok(saltssh.call("gfs2clvm.copy", str(src), str(dst), sha256=digest, user=who))
    assert data["bytes"] == src.stat().st_size and data["sha256"] == digest
    assert dst.read_bytes() == src.read_bytes()
    assert os.stat(dst).st_blocks * 512 < 4 * MiB  # sparse
    assert dst.stat().st_uid == (0 if who == "root" else saltssh.user.pw_uid)
    rc, data, err = saltssh.call("gfs2clvm.copy", str(src), str(area / "bad.img"), sha256="f" * 64, user=who)
    assert rc != 0 and "sha256 mismatch" in f"{data}{err}"
    assert not (area / "bad.img").exists()


@pytest.mark.parametrize("who", WHO)
def test_link_and_chown(saltssh, who, area):
    path = area / "datastores" / "0" / "4" / "disk.0"
    target = f"/dev/{VG}/lv-one-4-0"
    data = _ok(saltssh.call("gfs2clvm.link", target, str(path), user=who))
    assert data == {"path": str(path), "target": target, "changed": True}
    assert os.readlink(path) == target
    login = _login(saltssh, who)
    data = _ok(saltssh.call("gfs2clvm.chown", str(path), user=who))
    assert data == {"path": str(path), "user": login, "group": login}
    assert os.lstat(path).st_uid == (0 if who == "root" else saltssh.user.pw_uid)
    rc, data, err = saltssh.call("gfs2clvm.link", target, "/etc/gfs2clvm-escape", user=who)
    assert rc != 0 and "not under the mountpoint" in f"{data}{err}"
    assert not os.path.lexists("/etc/gfs2clvm-escape")


@pytest.mark.parametrize("who", WHO)
def test_mkswap_and_mkfs(saltssh, who, area):
    swap, fs = area / "swap.img", area / "fs.img"
    swap.write_bytes(bytes(4 * MiB))
    fs.write_bytes(bytes(8 * MiB))
    _own(saltssh, who, swap, fs)
    assert _ok(saltssh.call("gfs2clvm.mkswap", str(swap), user=who)) == {"path": str(swap), "fstype": "swap"}
    assert _ok(saltssh.call("gfs2clvm.mkfs", str(fs), "ext4", user=who)) == {"path": str(fs), "fstype": "ext4"}
    for path, kind in ((swap, "swap"), (fs, "ext4")):
        blkid = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", str(path)], capture_output=True, text=True)
        assert blkid.stdout.strip() == kind


@pytest.mark.parametrize("who", WHO)
def test_context_iso(saltssh, who, area):
    files = {"context.sh": "ETH0_IP='10.0.0.7'\nSET_HOSTNAME=vm-5\n", "id_rsa.pub": "ssh-ed25519 AAAA test\n"}
    encoded = {name: base64.b64encode(text.encode()).decode() for name, text in files.items()}
    path = area / "datastores" / "0" / "5" / "disk.2"
    data = _ok(saltssh.call("gfs2clvm.context_iso", str(path), files=encoded, user=who))
    assert data["files"] == sorted(files) and data["label"] == "CONTEXT" and data["size"] == path.stat().st_size
    listing = subprocess.run(["isoinfo", "-R", "-i", str(path), "-f"], capture_output=True, text=True, check=True)
    assert sorted(listing.stdout.split()) == ["/context.sh", "/id_rsa.pub"]
    for name, text in files.items():
        out = subprocess.run(["isoinfo", "-R", "-i", str(path), "-x", f"/{name}"], capture_output=True, text=True, check=True)
        assert out.stdout == text


# ---------------------------------------------------------------- VM trees (LVM stand-ins)
@pytest.fixture(scope="module")
def lvm_setup(saltssh):
    """A salt-ssh set-up like the provisioning one, with lvm_bin = stand-in scripts."""
    base = saltssh.base / "h1-lvm"
    fake_bin = base / "bin"
    fake_bin.mkdir(parents=True)
    log = base / "lvm.log"
    log.write_text("")
    log.chmod(0o666)
    answer = base / "lvs.json"
    shutil.copy(DATA / "lvs_after.json", answer)
    for path in (base, fake_bin, answer):
        path.chmod(0o755 if path.is_dir() else 0o644)
    for cmd in ("lvs", "lvremove"):
        script = fake_bin / cmd
        body = f'echo "$(id -un) {cmd} $*" >> {log}\n'
        if cmd == "lvs":
            body += f"cat {answer}\n"
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(0o755)
    rule = f"{saltssh.user.pw_name} ALL=(root) NOPASSWD: {fake_bin}/lvs, {fake_bin}/lvremove\n"
    sudoers = Path(f"/etc/sudoers.d/gfs2clvm-it-{os.getpid()}")
    staged = base / "sudoers"
    staged.write_text(rule)
    subprocess.run(["visudo", "-cf", str(staged)], check=True, capture_output=True)
    shutil.copy(staged, sudoers)
    sudoers.chmod(0o440)
    try:
        cfg = base / "etc"
        shutil.copytree(saltssh.config_dir, cfg)
        roster = yaml.safe_load((cfg / "roster").read_text())
        for target in roster.values():
            target["minion_opts"]["gfs2clvm"]["lvm_bin"] = str(fake_bin)  # sudo: auto
        (cfg / "roster").write_text(yaml.safe_dump(roster))
        master = yaml.safe_load((cfg / "master").read_text())
        master["roster_file"] = str(cfg / "roster")
        (cfg / "master").write_text(yaml.safe_dump(master))
        saltfile = base / "Saltfile"
        saltfile.write_text(yaml.safe_dump({"salt-ssh": {"config_dir": str(cfg), "log_level": "warning"}}))
        yield saltfile, log
    finally:
        sudoers.unlink()


def _vm_tree(saltssh, who, sysds, vmid, links):
    vmdir = saltssh.mountpoints[who] / "datastores" / str(sysds) / str(vmid)
    vmdir.mkdir(parents=True)
    for name, target in links.items():
        (vmdir / name).symlink_to(target)
    (vmdir / "deployment.0").write_text("<domain/>")
    for path in [vmdir.parent.parent, vmdir.parent, vmdir, *vmdir.iterdir()]:
        _own(saltssh, who, path)
    return vmdir


@pytest.mark.parametrize("who", WHO)
def test_vm_delete_and_orphans_on_a_vm_tree(saltssh, who, lvm_setup):
    saltfile, log = lvm_setup
    target = saltssh.target(who)
    vm7 = _vm_tree(saltssh, who, 0, 7, {"disk.0": f"/dev/{VG}/lv-one-7-0", "disk.4": f"/dev/{VG}/lv-one-7-4"})
    vm70 = _vm_tree(saltssh, who, 0, 70, {"disk.0": f"/dev/{VG}/lv-one-70-0"})
    try:
        log.write_text("")
        rc, data, err = saltssh.run(target, "gfs2clvm.orphans", saltfile=saltfile)
        assert rc == 0, f"{data} {err}"
        assert [lv["name"] for lv in data["lvs"]] == ["lv-one-8-0", "lv-one-8-0-s0", "lv-one-9-0"]
        assert data["links"] == [{"path": str(vm7 / "disk.4"), "target": f"/dev/{VG}/lv-one-7-4"}]
        rc, data, err = saltssh.run(target, "gfs2clvm.vm_delete", "7", f"path={vm7}", saltfile=saltfile)
        assert rc == 0, f"{data} {err}"
        assert data == {"vmid": 7, "vg": VG, "removed": ["lv-one-7-0-s1", "lv-one-7-0", "lv-one-7-1"], "wiped": [], "dir": str(vm7)}
        assert not vm7.exists() and vm70.exists()
        calls = log.read_text().splitlines()
        # every LVM command ran as root: directly, or through sudo -n for the unprivileged user
        assert [c.split()[:2] for c in calls] == [["root", "lvs"], ["root", "lvs"], ["root", "lvremove"]]
        assert calls[1].endswith(f"-S lv_name=~^lv-one-7- {VG}")
        assert calls[2] == f"root lvremove --yes {VG}/lv-one-7-0-s1 {VG}/lv-one-7-0 {VG}/lv-one-7-1"
    finally:
        shutil.rmtree(saltssh.mountpoints[who] / "datastores", ignore_errors=True)


@pytest.mark.parametrize("who", WHO)
def test_bad_input_is_refused_remotely(saltssh, who, area):
    rc, data, err = saltssh.call("gfs2clvm.lv_create", "lv;rm", "10", user=who)
    assert rc != 0 and "invalid logical volume name" in f"{data}{err}"
    rc, data, err = saltssh.call("gfs2clvm.copy", "/etc/shadow", str(area / "x"), user=who)
    assert rc != 0 and "not under the mountpoint" in f"{data}{err}"
    assert not (area / "x").exists()


# ---------------------------------------------------------------- check and orphans_remove
@pytest.mark.parametrize("who", WHO)
def test_check_reports_udev_and_libvirt(saltssh, who):
    assert not os.path.exists(f"/dev/{VG}"), "this host has no device-mapper: no LV can be active here"
    rc, data, err = saltssh.call("gfs2clvm.check", user=who)
    assert isinstance(data, dict), (rc, data, err)
    # a failed check fails the call (salt-ssh's EX_AGGREGATE), the report comes all the same
    assert rc == (0 if data["ok"] else 20), (rc, data, err)
    checks = data["checks"]
    assert set(checks) == {"config", "lvm", "device_mapper", "sudo", "lvmlockd", "vg", "thin_pool", "mount", "tools",
                           "udev", "libvirt"}
    for name, item in checks.items():
        assert set(item) == {"ok", "detail"} and isinstance(item["ok"], bool), (name, item)
        assert item["detail"] and "\n" not in item["detail"], (name, item)
    assert checks["udev"] == {"ok": True, "detail": "no active driver LV to check"}
    assert checks["mount"]["ok"] is True, checks["mount"]  # mount_check: none (no withdraw look)
    if not os.path.lexists("/etc/libvirt/qemu.conf"):
        assert checks["libvirt"] == {"ok": True, "detail": "libvirt not installed (no /etc/libvirt/qemu.conf)"}
    else:
        assert checks["libvirt"]["detail"].startswith("/etc/libvirt/qemu.conf"), checks["libvirt"]


def test_orphans_remove_part_way_is_one_line_through_saltssh(saltssh, lvm_setup):
    """The unprivileged user (as oneadmin) cannot unlink a dangling link in a
    root-owned VM directory: the LVs and the other link still go, and the error
    names what was removed and what was not (no traceback, no silent partial result)."""
    saltfile, log = lvm_setup
    who = "unpriv"
    target = saltssh.target(who)
    vm7 = _vm_tree(saltssh, who, 0, 7, {"disk.0": f"/dev/{VG}/lv-one-7-0", "disk.4": f"/dev/{VG}/lv-one-7-4"})
    _vm_tree(saltssh, who, 0, 70, {"disk.0": f"/dev/{VG}/lv-one-70-0"})
    vm12 = saltssh.mountpoints[who] / "datastores" / "0" / "12"
    vm12.mkdir()  # root's, 0755
    vm12.chmod(0o755)
    (vm12 / "disk.1").symlink_to("/nonexistent/gone.img")
    try:
        log.write_text("")
        rc, data, err = saltssh.run(target, "gfs2clvm.orphans_remove", saltfile=saltfile)
        assert rc == 0, f"{data} {err}"
        assert data == {"vg": VG, "dry_run": True, "lvs": ["lv-one-8-0-s0", "lv-one-8-0", "lv-one-9-0"],
                        "links": [str(vm12 / "disk.1"), str(vm7 / "disk.4")], "dirs": [], "skipped": [], "young": []}
        assert [c.split()[1] for c in log.read_text().splitlines()] == ["lvs"]  # the dry run removed nothing
        rc, data, err = saltssh.run(target, "gfs2clvm.orphans_remove", "dry_run=False", saltfile=saltfile)
        text = f"{data} {err}"
        assert rc != 0 and "Traceback" not in text, text
        assert (
            f"orphans_remove did not finish: cannot remove {vm12}/disk.1: permission denied; "
            f"removed: lv-one-8-0-s0, lv-one-8-0, lv-one-9-0, {vm7}/disk.4; not removed: {vm12}/disk.1"
        ) in text, text
        calls = log.read_text().splitlines()
        assert calls[-1] == f"root lvremove --yes {VG}/lv-one-8-0-s0 {VG}/lv-one-8-0 {VG}/lv-one-9-0"
        assert not os.path.lexists(vm7 / "disk.4") and os.path.islink(vm12 / "disk.1")
    finally:
        shutil.rmtree(saltssh.mountpoints[who] / "datastores", ignore_errors=True)
