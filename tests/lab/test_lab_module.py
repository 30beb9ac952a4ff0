"""``_modules/gfs2clvm.py`` on the lab workers through the host's real salt-ssh, as
oneadmin (roster targets ``node1``/``node2``, LVM through ``sudo -n``), the way the driver
calls it. Results are checked with plain ssh. A warm salt-ssh call costs 7-9 s under TCG,
so every test spends few of them (the thin is pre-deployed once by ``lab_salt``)."""

import base64
import secrets

import pytest

pytestmark = pytest.mark.lab

VG = "vg_cloudstorage"


def vmid():
    return 10**8 + secrets.randbelow(9 * 10**8)


def call(lab, target, fun, *args, **kwargs):
    """A salt-ssh call that must succeed; returns the function's return value."""
    rc, data, err = lab.salt_ssh(target, fun, *args, **kwargs)
    assert rc == 0, f"salt-ssh {target} {fun} {args} {kwargs}: rc={rc} data={data} stderr={err[-3000:]}"
    return data


def refused(lab, target, fun, *args, **kwargs):
    """A salt-ssh call that must fail; returns its output (error text) as a string."""
    rc, data, err = lab.salt_ssh(target, fun, *args, **kwargs)
    assert rc != 0, f"salt-ssh {target} {fun} {args} succeeded: {data}"
    return f"{data} {err}"


def cleanup_lvs(lab, names):
    for name in names:
        for node in lab.nodes:
            lab.ssh(node, ["lvchange", "-q", "-an", f"{VG}/{name}"])
    for name in names:
        lab.ssh(lab.nodes[0], ["lvremove", "-q", "-y", "-f", f"{VG}/{name}"])


def sha256_of(lab, node, path, size=None, user="oneadmin"):
    head = f"head -c {size} {path}" if size else f"cat {path}"
    return lab.out(node, f"{head} | sha256sum", user=user).split()[0]


def test_lv_lifecycle(lab_salt):
    lab = lab_salt
    node1, node2 = lab.nodes[:2]
    vm = vmid()
    name, snap = f"lv-one-{vm}-0", f"lv-one-{vm}-0-s0"
    dev = f"/dev/{VG}/{name}"
    try:
        made = call(lab, node1, "gfs2clvm.lv_create", name, size_mb=16)
        assert made["name"] == name and made["vg"] == VG and made["path"] == dev
        assert made["size_mb"] == 16 and made["thin"] is False
        assert lab.out(node1, f"stat -L -c %U:%G:%a {dev}") == "oneadmin:disk:660"
        assert lab.out(node2, f"lvs --noheadings -o lv_size --units m --nosuffix {VG}/{name}") == "16.00"
        assert lab.out(node1, f"cmp -n 16777216 {dev} /dev/zero && echo zeroed", user="oneadmin") == "zeroed"

        grown = call(lab, node1, "gfs2clvm.lv_resize", name, 32)
        assert grown["size_mb"] == 32 and grown["previous_mb"] == 16 and grown["resized"] is True
        assert "refusing to shrink" in refused(lab, node1, "gfs2clvm.lv_resize", name, 8)

        made = call(lab, node1, "gfs2clvm.lv_snapshot", name, snap)
        assert made["origin"] == name and made["name"] == snap and made["path"] == f"/dev/{VG}/{snap}"

        listed = call(lab, node2, "gfs2clvm.lv_list", vmid=vm)
        assert listed["vg"] == VG
        assert sorted(lv["name"] for lv in listed["lvs"]) == [name, snap]

        info = call(lab, node1, "gfs2clvm.lv_info", name)
        assert info["size_mb"] == 32 and info["active"] and info["exclusive"]

        removed = call(lab, node1, "gfs2clvm.lv_remove", snap)
        assert removed == {"name": snap, "vg": VG, "removed": True, "wiped": False}
        call(lab, node1, "gfs2clvm.lv_remove", name)
        assert lab.ssh(node2, ["lvs", f"{VG}/{name}"]).returncode != 0
    finally:
        cleanup_lvs(lab, [snap, name])


def test_lv_activate_exclusive_is_refused_on_the_other_node(lab_salt):
    lab = lab_salt
    node1, node2 = lab.nodes[:2]
    name = f"lv-one-{vmid()}-0"
    try:
        lab.ssh(node1, ["lvcreate", "-q", "-y", "-an", "-Zn", "-L", "8M", "-n", name, VG], check=True)
        got = call(lab, node1, "gfs2clvm.lv_activate", name, mode="exclusive")
        assert got == {"name": name, "vg": VG, "active": True, "mode": "exclusive"}
        assert "locked by other host" in refused(lab, node2, "gfs2clvm.lv_activate", name, mode="exclusive")
        assert lab.ssh(node2, ["test", "-e", f"/dev/{VG}/{name}"]).returncode == 1
        lab.ssh(node1, ["lvchange", "-an", f"{VG}/{name}"], check=True)
        got = call(lab, node2, "gfs2clvm.lv_activate", name, mode="shared")
        assert got["mode"] == "shared"
        lab.ssh(node1, ["lvchange", "-asy", f"{VG}/{name}"], check=True)  # live migration
    finally:
        cleanup_lvs(lab, [name])


def test_copy_between_lvs_keeps_the_bytes(lab_salt):
    lab = lab_salt
    node1, node2 = lab.nodes[:2]
    vm = vmid()
    src, dst = f"lv-one-{vm}-0", f"lv-one-{vm}-1"
    size = 8 * 1024 * 1024
    try:
        for name in (src, dst):
            lab.ssh(node1, ["lvcreate", "-q", "-y", "-L", "16M", "-n", name, VG], check=True)
        # 8 MiB of random data, a hole of zeros, then 1 MiB of data at the end
        lab.ssh(
            node1,
            f"head -c {size} /dev/urandom | dd of=/dev/{VG}/{src} bs=1M oflag=direct status=none"
            f" && head -c 1048576 /dev/urandom | dd of=/dev/{VG}/{src} bs=1M seek=15 oflag=direct status=none"
            f" && dd if=/dev/urandom of=/dev/{VG}/{dst} bs=1M count=16 oflag=direct status=none",
            user="oneadmin",
            check=True,
        )
        want = sha256_of(lab, node1, f"/dev/{VG}/{src}")
        got = call(lab, node1, "gfs2clvm.copy", f"/dev/{VG}/{src}", f"/dev/{VG}/{dst}", sha256=True)
        assert got["bytes"] == 16 * 1024 * 1024 and got["sha256"] == want
        assert sha256_of(lab, node1, f"/dev/{VG}/{dst}") == want
        # and what the SAN holds, read by the other node
        lab.ssh(node1, ["lvchange", "-an", f"{VG}/{dst}"], check=True)
        lab.ssh(node2, ["lvchange", "-aey", f"{VG}/{dst}"], check=True)
        assert sha256_of(lab, node2, f"/dev/{VG}/{dst}") == want
    finally:
        cleanup_lvs(lab, [src, dst])


def test_gfs2_files_are_seen_by_both_nodes(lab_salt):
    lab = lab_salt
    node1, node2 = lab.nodes[:2]
    vm = vmid()
    vmdir = f"/var/lib/one/datastores/0/{vm}"
    name = f"lv-one-{vm}-0"
    context = b"ONEGATE_ENDPOINT=\"http://lab\"\nHOSTNAME=vm\n"
    try:
        lab.ssh(node1, ["lvcreate", "-q", "-y", "-an", "-Zn", "-L", "8M", "-n", name, VG], check=True)
        got = call(lab, node1, "gfs2clvm.link", f"/dev/{VG}/{name}", f"{vmdir}/disk.0")
        assert got == {"path": f"{vmdir}/disk.0", "target": f"/dev/{VG}/{name}", "changed": True}
        got = call(lab, node1, "gfs2clvm.context_iso", f"{vmdir}/disk.1",
                   files={"context.sh": base64.b64encode(context).decode()})
        assert got["files"] == ["context.sh"] and got["label"] == "CONTEXT"
        lab.ssh(node1, ["truncate", "-s", "16M", f"{vmdir}/disk.2"], user="oneadmin", check=True)
        assert call(lab, node2, "gfs2clvm.mkswap", f"{vmdir}/disk.2")["fstype"] == "swap"
        # everything as the other node sees it on the shared GFS2
        assert lab.out(node2, ["readlink", f"{vmdir}/disk.0"]) == f"/dev/{VG}/{name}"
        assert lab.out(node2, f"stat -c %U:%G {vmdir} {vmdir}/disk.1 && stat -c %U {vmdir}/disk.0").split() == [
            "oneadmin:oneadmin", "oneadmin:oneadmin", "oneadmin"]
        assert lab.out(node2, ["blkid", "-o", "value", "-s", "LABEL", f"{vmdir}/disk.1"]) == "CONTEXT"
        iso = lab.ssh(node2, ["isoinfo", "-R", "-i", f"{vmdir}/disk.1", "-x", "/context.sh"], check=True)
        assert iso.stdout.encode() == context
        assert lab.out(node1, ["blkid", "-o", "value", "-s", "TYPE", f"{vmdir}/disk.2"]) == "swap"
    finally:
        lab.ssh(node1, ["rm", "-rf", vmdir])
        cleanup_lvs(lab, [name])


def test_check_healthy_then_broken_without_gfs2(lab_salt):
    lab = lab_salt
    node2 = lab.nodes[1]
    report = call(lab, node2, "gfs2clvm.check")
    failed = {k: v for k, v in report["checks"].items() if not v["ok"]}
    assert report["ok"] is True, failed
    lab.ssh(node2, ["umount", "/var/lib/one"], check=True)
    try:
        rc, report, err = lab.salt_ssh(node2, "gfs2clvm.check")
        assert rc != 0, (rc, report, err)  # a failed check fails the call (monitoring), with the report
        assert report["ok"] is False
        assert report["checks"]["mount"]["ok"] is False
        # nothing is written under an unmounted mountpoint
        assert "refusing to write" in refused(
            lab, node2, "gfs2clvm.context_iso", f"/var/lib/one/datastores/0/{vmid()}/disk.1",
            files={"a": base64.b64encode(b"x").decode()})
    finally:
        lab.ssh(node2, "grep -q ' /var/lib/one gfs2 ' /proc/mounts || "
                "mount -t gfs2 -o noatime /dev/vg_cloudstorage/gfs2 /var/lib/one", check=True)
