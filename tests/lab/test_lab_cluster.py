"""The lab cluster itself, checked with plain ssh: GFS2 shared by the workers, the shared
VG under lvmlockd (dlm), exclusive/shared activation, the oneadmin udev rule and the
sudoers rule that the driver relies on."""

import secrets
import shlex

import pytest

pytestmark = pytest.mark.lab

VG = "vg_cloudstorage"


def lvm(lab, node, args, user="root"):
    """An LVM command on ``node``: as root directly, as oneadmin through ``sudo -n``."""
    prefix = [] if user == "root" else ["sudo", "-n"]
    return lab.ssh(node, [*prefix, *args], user=user, check=True)


@pytest.fixture
def lv_name(lab):
    """A fresh ``lv-one-<vmid>-0`` name; the LV is removed afterwards."""
    name = f"lv-one-{secrets.randbelow(10**9) + 10**9}-0"
    yield name
    remove_lvs(lab, [name])


def remove_lvs(lab, names):
    """Deactivate on every node (lvremove needs the LV inactive everywhere), remove."""
    lvs = [f"{VG}/{name}" for name in names]
    for node in lab.nodes[1:]:
        lab.ssh(node, ["lvchange", "-q", "-an", *lvs])
    lab.ssh(lab.nodes[0], shlex.join(["lvchange", "-q", "-an", *lvs]) + "; "
            + shlex.join(["lvremove", "-q", "-y", *lvs]))


def test_gfs2_file_written_on_node1_is_read_on_node2(lab):
    node1, node2 = lab.nodes[:2]
    token = secrets.token_hex(16)
    path = f"/var/lib/one/lab-test-{token}"
    for node in lab.nodes:
        assert lab.out(node, "findmnt -n -o FSTYPE -M /var/lib/one") == "gfs2"
        assert lab.out(node, "stat -c %U:%G /var/lib/one") == "oneadmin:oneadmin"
    lab.ssh(node1, f"echo {token} >{path}", user="oneadmin", check=True)
    assert lab.out(node2, ["cat", path], user="oneadmin") == token
    lab.ssh(node2, f"echo appended >>{path}", user="oneadmin", check=True)
    assert lab.out(node1, ["cat", path], user="oneadmin").split() == [token, "appended"]
    lab.ssh(node2, ["rm", path], user="oneadmin", check=True)
    assert lab.ssh(node1, ["test", "-e", path]).returncode == 1


def test_lv_created_on_node1_is_listed_on_node2(lab, lv_name):
    node1, node2 = lab.nodes[:2]
    lvm(lab, node1, ["lvcreate", "-q", "-y", "-L", "8M", "-n", lv_name, VG])
    listed = lab.out(node2, ["lvs", "--noheadings", "-o", "lv_name", VG]).split()
    assert lv_name in listed
    assert lab.out(node2, ["vgs", "--noheadings", "-o", "vg_lock_type", VG]) == "dlm"


REFUSALS = r"""
for m in -aey -asy -ay; do
  err=$(lvchange $m @LV@ 2>&1 >/dev/null); rc=$?
  echo "$m $rc ${err//$'\n'/ }"
done
test -e @DEV@; echo "dev $?"
"""


def test_exclusive_activation_excludes_other_node_then_shared_on_both(lab, lv_name):
    node1, node2 = lab.nodes[:2]
    dev = f"/dev/{VG}/{lv_name}"
    lab.ssh(node1, ["lvcreate", "-q", "-y", "-an", "-Zn", "-L", "8M", "-n", lv_name, VG], check=True)
    lab.ssh(node1, ["lvchange", "-aey", f"{VG}/{lv_name}"], check=True)
    assert lab.ssh(node1, ["test", "-b", dev]).returncode == 0
    # one ssh for the three refusals: "<mode> <rc> <stderr>" per line, then "dev <rc of test -e>"
    script = REFUSALS.replace("@LV@", f"{VG}/{lv_name}").replace("@DEV@", dev)
    lines = lab.out(node2, script).splitlines()
    assert lines[-1] == "dev 1", lines  # no device node on node2
    assert [line.split()[0] for line in lines[:-1]] == ["-aey", "-asy", "-ay"], lines
    for line in lines[:-1]:
        mode, rc, err = line.split(" ", 2)
        assert rc != "0", f"node2 {mode} succeeded while node1 holds the LV exclusively"
        assert "locked by other host" in err or "Failed to lock" in err, line
    lab.ssh(node1, ["lvchange", "-an", f"{VG}/{lv_name}"], check=True)
    for node in (node1, node2):
        lab.ssh(node, ["lvchange", "-asy", f"{VG}/{lv_name}"], check=True)
        assert lab.ssh(node, ["test", "-b", dev]).returncode == 0
    # while shared on both, nobody gets it exclusively
    assert lab.ssh(node1, ["lvchange", "-aey", f"{VG}/{lv_name}"]).returncode != 0


def test_new_driver_lvs_belong_to_oneadmin_on_every_node(lab, lv_name):
    node1 = lab.nodes[0]
    image = f"lv-oneimg-{secrets.token_hex(16)}"
    plain = f"lab-plain-{secrets.token_hex(4)}"
    names = (lv_name, image, plain)
    try:
        # made by root: the rule lets oneadmin create only the driver's names, in the
        # module's argv shape (test_lab_security); this test is about udev ownership
        create = " && ".join(
            shlex.join(["lvcreate", "-q", "-y", "-an", "-Zn", "-L", "8M", "-n", name, VG]) for name in names
        )
        lab.ssh(node1, create, check=True)
        for node in lab.nodes:
            # activate all three, then: symlink target owner, dm node owner (driver LVs), plain LV
            out = lab.out(
                node,
                shlex.join(["lvchange", "-q", "-asy", *(f"{VG}/{n}" for n in names)])
                + f" && stat -L -c %U:%G:%a /dev/{VG}/{lv_name} /dev/{VG}/{image}"
                + f" && stat -c %U:%G:%a $(readlink -f /dev/{VG}/{lv_name} /dev/{VG}/{image})"
                + f" && stat -L -c %U:%G /dev/{VG}/{plain}",
            )
            assert out.splitlines() == ["oneadmin:disk:660"] * 4 + ["root:disk"], (node, out)
    finally:
        remove_lvs(lab, [image, plain])


def test_oneadmin_writes_its_lv_without_sudo(lab, lv_name):
    node1, node2 = lab.nodes[:2]
    dev = f"/dev/{VG}/{lv_name}"
    # the module's argv shape (the sudoers rule allows only those)
    lvm(lab, node1, ["/sbin/lvcreate", "--yes", "-W", "y", "-Z", "y", "-n", lv_name, "-L", "8m", VG],
        user="oneadmin")
    assert lab.out(node1, "id -Gn", user="oneadmin").split() == ["oneadmin"]  # not in 'disk'
    lab.ssh(
        node1,
        f"head -c 4194304 /dev/urandom >/tmp/blk && dd if=/tmp/blk of={dev} bs=1M oflag=direct status=none"
        " && sha256sum </tmp/blk",
        user="oneadmin",
        check=True,
    )
    want = lab.out(node1, "sha256sum </tmp/blk", user="oneadmin")
    # what the other node reads from the SAN after the LV moves there
    lvm(lab, node1, ["/sbin/lvchange", "-an", f"{VG}/{lv_name}"], user="oneadmin")
    lvm(lab, node2, ["/sbin/lvchange", "-aey", f"{VG}/{lv_name}"], user="oneadmin")
    got = lab.out(node2, f"head -c 4194304 {dev} | sha256sum", user="oneadmin")
    assert got == want
    # a root LV is not writable for oneadmin
    refused = lab.ssh(node2, "dd if=/dev/zero of=/dev/vda bs=512 count=1 status=none", user="oneadmin")
    assert refused.returncode != 0


@pytest.mark.parametrize(
    "argv",
    [
        ["/sbin/vgremove", "-f", VG],
        ["/sbin/lvm", "lvs"],
        ["/sbin/pvcreate", "/dev/vda"],
        ["/bin/bash", "-c", "id"],
        ["/bin/dd", "if=/dev/zero", "of=/dev/vda", "count=1"],
    ],
    ids=["vgremove", "lvm", "pvcreate", "bash", "dd"],
)
def test_sudo_refuses_other_commands(lab, argv):
    proc = lab.ssh(lab.nodes[0], ["sudo", "-n", *argv], user="oneadmin")
    assert proc.returncode != 0
    assert "password is required" in proc.stderr or "not allowed" in proc.stderr


def test_sudo_allows_exactly_the_lvm_commands(lab):
    listed = lab.out(lab.nodes[0], "sudo -n -l", user="oneadmin")
    for cmd in ("lvcreate", "lvremove", "lvchange", "lvs", "vgs", "lvextend", "lvconvert"):
        assert f"/sbin/{cmd}" in listed
    for cmd in ("blkdiscard",):
        assert f"/sbin/{cmd}" not in listed
    lvs = lvm(lab, lab.nodes[1], ["/sbin/lvs", "--reportformat", "json", "--units", "m", "--nosuffix",
                                  "-o", "lv_name,lv_size", VG], user="oneadmin")
    assert '"lv_name":"gfs2"' in lvs.stdout.replace(" ", "")


def test_corosync_traffic_is_encrypted_with_the_pillar_key(lab):
    """Issue 13.7: the formula turned knet crypto on (aes256/sha256) with the lab pillar's
    authkey (lab/lab.sh write_pillar), root's 0400 and identical on every node, and every
    node is a member.  (That a node with another key cannot join is corosync's own
    guarantee; proving it here would split the shared lab's GFS2 cluster.)"""
    import base64  # pylint: disable=import-outside-toplevel
    import hashlib  # pylint: disable=import-outside-toplevel

    key = base64.b64decode((lab.dir / "corosync-authkey.b64").read_text())
    want = hashlib.sha256(key).hexdigest()
    probe = ("corosync-cmapctl -g totem.crypto_cipher; corosync-cmapctl -g totem.crypto_hash; "
             "stat -c '%a %U' /etc/corosync/authkey; sha256sum /etc/corosync/authkey; corosync-quorumtool -l")
    for node in lab.nodes:
        out = lab.out(node, probe).splitlines()
        assert out[0].endswith("= aes256") and out[1].endswith("= sha256"), (node, out[:2])
        assert out[2] == "400 root" and out[3].split()[0] == want, (node, out[2:4])
        members = [line.split()[2] for line in out[4:] if line.split()[:1] and line.split()[0].isdigit()]
        assert sorted(members) == sorted(lab.nodes), (node, out[4:])
