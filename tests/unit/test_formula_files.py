# SPDX-License-Identifier: Apache-2.0
"""The formula's file templates rendered with Salt's jinja, checked by the real
tools where the host has them (visudo, lvmconfig), and the oned.conf edits
applied to a stock-like oned.conf excerpt (idempotent)."""

import os
import re
import shutil
import subprocess

import pytest
import sudoers_rule
from formula_render import args, render_file, show_sls

VISUDO = shutil.which("visudo") or "/usr/sbin/visudo"
LVMCONFIG = shutil.which("lvmconfig") or "/sbin/lvmconfig"
COMMANDS = ["lvcreate", "lvremove", "lvchange", "lvs", "vgs", "lvextend"]


def _visudo(path):
    return subprocess.run([VISUDO, "-c", "-q", "-f", str(path)], capture_output=True, text=True, check=False)


def test_sudoers_passes_visudo(tmp_path):
    text = render_file("worker/sudoers.jinja", owner="oneadmin", lvm_bin="/sbin", commands=COMMANDS)
    path = tmp_path / "gfs2clvm"
    path.write_text(text)
    res = _visudo(path)
    assert res.returncode == 0, res.stderr
    entries = sudoers_rule.entries(text)
    # every command, and every entry restricted to an argument pattern (^...$)
    assert {e.split()[0] for e in entries} == {f"/sbin/{c}" for c in COMMANDS}
    assert all(len(e.split(" ", 1)) == 2 and e.split(" ", 1)[1].startswith("^") and e.endswith("$")
               for e in entries), entries
    assert "oneadmin ALL=(root) NOPASSWD: GFS2CLVM_LVM" in text.splitlines()
    # nothing but the LVM commands: no ALL, no shell, no lvm multiplexer
    assert "NOPASSWD: ALL" not in text and "/sbin/lvm," not in text and "/bin/" not in text


def test_visudo_check_catches_a_broken_rule(tmp_path):
    """The check_cmd the sudoers state uses really rejects a bad file."""
    path = tmp_path / "bad"
    path.write_text(render_file("worker/sudoers.jinja", owner="oneadmin", lvm_bin="/sbin", commands=COMMANDS)
                    .replace("NOPASSWD:", "NOPASSWD"))
    assert _visudo(path).returncode != 0


def test_sudoers_state_uses_the_same_check():
    high = show_sls("gfs2clvm.worker.access")
    check = args(high["gfs2clvm-worker-access-sudoers-file-managed"])["check_cmd"]
    assert check.split() == ["/usr/sbin/visudo", "-c", "-q", "-f"]


def _lvmconfig(tmp_path, text, *keys):
    shutil.copy("/etc/lvm/lvm.conf", tmp_path / "lvm.conf")
    (tmp_path / "lvmlocal.conf").write_text(text)
    env = {**os.environ, "LVM_SYSTEM_DIR": str(tmp_path)}
    res = subprocess.run([LVMCONFIG, *keys], capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 0, res.stderr
    return dict(line.split("=", 1) for line in res.stdout.split())


@pytest.mark.skipif(not os.path.exists("/etc/lvm/lvm.conf"), reason="lvm2 not installed (.ci/setup installs it)")
def test_lvmlocal_overrides_lvm_conf(tmp_path):
    lvm = {"use_lvmlockd": 1, "global_filter": ["a|^/dev/vda$|", "r|.*|"]}
    text = render_file("worker/lvmlocal.conf.jinja", lvm=lvm)
    got = _lvmconfig(tmp_path, text, "global/use_lvmlockd", "devices/global_filter")
    assert got == {"use_lvmlockd": "1", "global_filter": '["a|^/dev/vda$|","r|.*|"]'}


@pytest.mark.skipif(not os.path.exists("/etc/lvm/lvm.conf"), reason="lvm2 not installed (.ci/setup installs it)")
def test_lvmlocal_without_filter(tmp_path):
    text = render_file("worker/lvmlocal.conf.jinja", lvm={"use_lvmlockd": 1, "global_filter": []})
    assert "devices" not in text
    assert _lvmconfig(tmp_path, text, "global/use_lvmlockd") == {"use_lvmlockd": "1"}


def test_corosync_conf():
    cluster = {
        "name": "labc", "transport": "knet", "token": 10000, "crypto_cipher": "none", "crypto_hash": "none",
        "nodes": [{"name": "node1", "nodeid": 1, "ring0_addr": "169.254.1.1"},
                  {"name": "node2", "ring0_addr": "169.254.1.2"}],
    }
    text = render_file("worker/corosync.conf.jinja", cluster=cluster, two_node=True)
    assert re.search(r"^\s+cluster_name: labc$", text, re.M)
    assert re.search(r"^\s+transport: knet$", text, re.M)
    assert re.search(r"^\s+token: 10000$", text, re.M)
    assert re.findall(r"ring0_addr: (\S+)", text) == ["169.254.1.1", "169.254.1.2"]
    assert re.findall(r"nodeid: (\d+)", text) == ["1", "2"]
    assert "two_node: 1" in text
    assert text.count("{") == text.count("}")
    text3 = render_file("worker/corosync.conf.jinja", cluster=cluster, two_node=False)
    assert "two_node" not in text3


def test_dlm_conf_fencing():
    text = render_file("worker/dlm.conf.jinja", dlm={"enable_fencing": 0, "enable_startup_fencing": 0,
                                                     "extra": {"post_join_delay": 10}})
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == ["enable_fencing=0", "enable_startup_fencing=0", "post_join_delay=10"]
    prod = render_file("worker/dlm.conf.jinja", dlm={"enable_fencing": 1, "enable_startup_fencing": 1, "extra": {}})
    assert "enable_fencing=1" in prod.splitlines()


def test_udev_rule():
    text = render_file("worker/udev.rules.jinja", vg_dm="vg--san", owner="oneadmin",
                       udev={"dev_group": "disk", "mode": "0660"})
    rules = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert rules == [
        'ENV{DM_NAME}=="vg--san-lv--one--*", OWNER="oneadmin", GROUP="disk", MODE="0660"',
        'ENV{DM_NAME}=="vg--san-lv--oneimg--*", OWNER="oneadmin", GROUP="disk", MODE="0660"',
    ]


def test_polkit_rule():
    text = render_file("worker/polkit-libvirt.rules.jinja", owner="oneadmin")
    assert 'action.id == "org.libvirt.unix.manage" && subject.user == "oneadmin"' in text
    assert "polkit.Result.YES" in text


ONED_CONF = '''
TM_MAD = [
    EXECUTABLE = "one_tm",
    ARGUMENTS = "-t 15 -d dummy,lvm,shared,fs_lvm,fs_lvm_ssh,qcow2,ssh,ceph,dev,vcenter,iscsi_libvirt"
]

DATASTORE_MAD = [
    EXECUTABLE = "one_datastore",
    ARGUMENTS  = "-t 15 -d dummy,fs,lvm,ceph,dev,iscsi_libvirt,vcenter,restic,rsync -s shared,ssh,ceph,fs_lvm,fs_lvm_ssh,qcow2,vcenter"
]
'''


def _apply_replaces(text, high):
    """Apply the formula's file.replace states as Salt does (re.MULTILINE, count)."""
    for sid in sorted(high):
        a = args(high[sid])
        if a["fun"] == "file.replace":
            text = re.sub(a["pattern"], a["repl"], text, count=a["count"], flags=re.MULTILINE)
    return text


def test_oned_mad_arguments_idempotent():
    high = show_sls("gfs2clvm.frontend.oned", minion_id="frontend")
    once = _apply_replaces(ONED_CONF, high)
    assert 'ARGUMENTS = "-t 15 -d gfs2clvm,dummy,lvm,shared,' in once
    assert '-d gfs2clvm,dummy,fs,lvm,ceph' in once
    assert '-s gfs2clvm,shared,ssh,ceph' in once
    assert once.count("gfs2clvm") == 3
    assert _apply_replaces(once, high) == once


def test_oned_mad_conf_block():
    high = show_sls("gfs2clvm.frontend.oned", minion_id="frontend")
    block = args(high["gfs2clvm-frontend-oned-madconf-file-blockreplace"])
    text = render_file("frontend/oned-madconf.jinja", tm=block["context"]["tm"], ds=block["context"]["ds"])
    tm = text.split("DS_MAD_CONF")[0]
    for pair in ('NAME = "gfs2clvm"', 'LN_TARGET = "SYSTEM"', 'CLONE_TARGET = "SYSTEM"', 'SHARED = "YES"',
                 'DRIVER = "raw"', 'DISK_TYPE = "BLOCK"', 'DS_MIGRATE = "YES"'):
        assert pair in tm
    assert 'PERSISTENT_ONLY = "NO"' in text.split("DS_MAD_CONF")[1]
    assert not re.search(r",\s*\]", text)  # no trailing comma before ]


def test_corosync_reload_sees_whether_gfs2_is_mounted(tmp_path):
    """Regression: ``findmnt -n -t gfs2`` exits 0 even when nothing is mounted, so the
    state took the 'GFS2 mounted: reload only' branch on a bare node.  The condition it
    renders is run here for real (this host has no GFS2 mounted; it has ext4 or another
    root file system)."""
    high = show_sls("gfs2clvm.worker.cluster")
    cmd = args(high["gfs2clvm-worker-cluster-corosync-cmd-run"])["name"]
    cond = re.search(r"if (findmnt [^;]*); then corosync-cfgtool -R", cmd)
    assert cond, cmd
    probe = cond.group(1)
    assert subprocess.run(["sh", "-c", probe], check=False).returncode != 0
    root_fs = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "/"], capture_output=True, text=True,
                             check=True).stdout.strip()
    assert subprocess.run(["sh", "-c", probe.replace("gfs2", root_fs)], check=False).returncode == 0
