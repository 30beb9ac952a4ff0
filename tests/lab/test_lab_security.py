# SPDX-License-Identifier: Apache-2.0
"""Least privilege on a provisioned lab worker (plain ssh only, no salt-ssh cost).

* the driver reaches workers as oneadmin (the lab roster's driver targets);
* oneadmin's sudo rights are the LVM commands and nothing else: no root shell, no
  other command, no environment passing, no sudoedit;
* oneadmin is not in the ``disk`` group; the udev rule gives it the driver's LVs only
  (not the GFS2 LV, not the SAN disk);
* LVM's ``--config`` (free arguments to an allowed command) does not let oneadmin run a
  program or write a file as root (it did with the first, unrestricted rule);
* the installed rule -- the formula's, argument-restricted with sudo >= 1.9.10 regular
  expressions -- allows every argv the module builds and denies the escapes, asked of the
  real sudo with ``sudo -l -U oneadmin <argv>`` (policy check only, nothing runs);
* ``gfs2clvm.check`` as oneadmin finds the rule valid (and restricted).
"""

import re
import secrets
import shlex

import pytest
import yaml

pytestmark = pytest.mark.lab

NODE = "node1"
LVM = "/sbin"
FIELDS_LV = ("lv_name,vg_name,lv_path,lv_size,lv_attr,lv_active,lv_active_locally,"
             "lv_active_exclusively,lv_device_open,origin,pool_lv,segtype,data_percent")
FIELDS_VG = ("vg_name,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,"
             "lv_count,vg_shared,vg_lock_type,vg_attr")
MODULE_COMMANDS = {"lvcreate", "lvremove", "lvchange", "lvs", "vgs", "lvextend", "lvconvert"}

VG = "vg_cloudstorage"
# every argv shape _modules/gfs2clvm.py builds through _lvm() (see its lv_* functions)
MODULE_ARGVS = [
    f"{LVM}/lvs --reportformat json --units m --nosuffix -o {FIELDS_LV} {VG}",
    f"{LVM}/lvs --reportformat json --units m --nosuffix -o {FIELDS_LV} -S lv_name=lv-one-1-0 {VG}",
    f"{LVM}/lvs --reportformat json --units m --nosuffix -o {FIELDS_LV} -S lv_name=~^lv-one-42- {VG}",
    f"{LVM}/vgs --reportformat json --units m --nosuffix -o {FIELDS_VG} {VG}",
    f"{LVM}/lvcreate --yes -W y -Z y -n lv-one-1-0 -L 16m {VG}",
    f"{LVM}/lvcreate --yes -W y -Z y -n lv-oneimg-{'0123456789abcdef' * 2} -L 16m {VG}",
    f"{LVM}/lvcreate --yes -W y -n lv-one-1-0 -V 16m --thin {VG}/pool",
    f"{LVM}/lvcreate --yes -s -n lv-one-1-0-s3 {VG}/lv-one-1-0",
    f"{LVM}/lvcreate --yes -s -n lv-one-1-0-s3 -L 4m {VG}/lv-one-1-0",
    f"{LVM}/lvremove --yes {VG}/lv-one-1-0",
    f"{LVM}/lvremove --yes {VG}/lv-one-1-0-s2 {VG}/lv-one-1-0",
    f"{LVM}/lvchange -aey {VG}/lv-one-1-0",
    f"{LVM}/lvchange -asy -K {VG}/lv-one-1-0",
    f"{LVM}/lvchange -an {VG}/lv-oneimg-{'0123456789abcdef' * 2}",
    f"{LVM}/lvextend --yes -L 32m {VG}/lv-one-1-0",
    f"{LVM}/lvconvert --yes --merge {VG}/lv-one-1-0-s3",
    f"{LVM}/lvcreate --yes -s -n lv-one-1-0 {VG}/lv-one-1-0-s3",
]
ESCAPES = [
    f"{LVM}/lvextend -r --config global{{fsadm_executable=\"/tmp/x\"}} -L +4m {VG}/lv-one-1-0",
    f"{LVM}/lvextend --yes -L 32m {VG}/lv-one-1-0 --config global/fsadm_executable=/tmp/x",
    f"{LVM}/lvextend --yes -L 32m {VG}/lv-one-1-0 -r",
    f"{LVM}/lvs --config log/file=/root/x {VG}",
    f"{LVM}/lvs --reportformat json --units m --nosuffix -o {FIELDS_LV} {VG} --config=log/file=/root/x",
    f"{LVM}/lvs --reportformat json --units m --nosuffix -o {FIELDS_LV} {VG} --commandprofile x",
    f"{LVM}/lvcreate --yes -W y -Z y -n lv-one-1-0 -L 16m {VG} --config x",
    f"{LVM}/lvcreate --yes -W y -Z y -n gfs3 -L 16m {VG}",
    f"{LVM}/lvremove --yes {VG}/gfs2",
    f"{LVM}/lvchange -an {VG}/gfs2",
    f"{LVM}/lvchange -aey {VG}/lv-one-1-0 --monitor y",
    f"{LVM}/lvconvert --merge {VG}/lv-one-1-0-s1",
    f"{LVM}/lvconvert --yes --merge {VG}/gfs2",
    f"{LVM}/lvconvert --yes --merge {VG}/lv-one-1-0",
    f"{LVM}/lvconvert --yes --splitsnapshot {VG}/lv-one-1-0-s1",
    f"{LVM}/lvcreate --yes -s -n gfs2 {VG}/lv-one-1-0-s3",
    f"{LVM}/blkdiscard /dev/vda",
    "/bin/bash",
    f"{LVM}/lvm",
]


def as_oneadmin(lab, cmd):
    return lab.ssh(NODE, cmd, user="oneadmin", timeout=60)


def test_driver_targets_log_in_as_oneadmin(lab):
    roster = yaml.safe_load(lab.roster.read_text())
    for node in lab.nodes:
        assert roster[node]["user"] == "oneadmin", roster[node]
        assert not roster[node].get("sudo"), "the driver must not run the salt shim as root"
    assert as_oneadmin(lab, "id -un").stdout.strip() == "oneadmin"


def test_sudo_grants_only_lvm_commands(lab):
    out = as_oneadmin(lab, "sudo -n -l").stdout
    # the rule may be listed over several lines; entries are separated by unescaped commas
    text = " ".join(line.strip() for line in out.split("NOPASSWD:", 1)[1].splitlines()) if "NOPASSWD:" in out else ""
    assert text, out
    commands = [c.strip() for c in re.split(r"(?<!\\),", text) if c.strip()]
    names = {c.split()[0].rsplit("/", 1)[-1] for c in commands}
    assert "ALL" not in names and not {"bash", "sh", "lvm", "su", "env"} & names, commands
    assert names == MODULE_COMMANDS, names
    assert all(c.startswith(f"{LVM}/") for c in commands), commands
    # every entry carries an argument pattern: a bare path would allow any arguments
    assert all(len(c.split(None, 1)) == 2 and c.split(None, 1)[1].startswith("^") for c in commands), commands


@pytest.mark.parametrize("cmd", [
    "sudo -n bash -c id",
    "sudo -n /bin/sh -c id",
    "sudo -n -s id",
    "sudo -n -i id",
    "sudo -n -u root /usr/bin/id",
    "sudo -n /sbin/lvm lvs",
    "sudo -n lvm version",
    "sudo -n /sbin/../bin/sh -c id",
    "sudo -n -E /sbin/lvs",
    "sudo -n LVM_SYSTEM_DIR=/tmp /sbin/lvs",
    "sudo -n -e /etc/shadow",
    "sudo -n /usr/bin/env id",
    "cd /tmp && ln -sf /bin/sh lvs && sudo -n ./lvs -c id",
    "sudo -n -u nobody /sbin/lvs",
], ids=lambda c: c.split("sudo -n ", 1)[-1][:40])
def test_no_root_shell_or_other_command(lab, cmd):
    proc = as_oneadmin(lab, f"{cmd} 2>&1; echo rc=$?")
    out = proc.stdout
    assert "uid=0" not in out and not out.rstrip().endswith("rc=0"), f"{cmd!r} -> {out}"


def test_oneadmin_owns_only_the_drivers_lvs(lab):
    name = f"lv-one-{900000 + secrets.randbelow(10**5)}-0"
    lab.out(NODE, ["lvcreate", "-q", "-y", "-n", name, "-L", "4m", lab.vg])
    try:
        owners = lab.out(NODE, f"stat -L -c '%n %U:%G %a' /dev/{lab.vg}/{name} /dev/{lab.vg}/gfs2 /dev/vda")
        lines = dict(line.split(" ", 1) for line in owners.splitlines())
        assert lines[f"/dev/{lab.vg}/{name}"] == "oneadmin:disk 660", owners
        assert lines[f"/dev/{lab.vg}/gfs2"].startswith("root:"), owners
        assert lines["/dev/vda"].startswith("root:"), owners
        assert "disk" not in as_oneadmin(lab, "id -nG").stdout.split()
        # oneadmin cannot write the GFS2 LV or the SAN disk
        for dev in (f"/dev/{lab.vg}/gfs2", "/dev/vda"):
            proc = as_oneadmin(lab, f"dd if=/dev/zero of={dev} bs=512 count=0 conv=notrunc 2>&1; echo rc=$?")
            assert "rc=0" not in proc.stdout, (dev, proc.stdout)
    finally:
        lab.ssh(NODE, ["lvremove", "-q", "-y", f"{lab.vg}/{name}"])


def test_lvm_config_cannot_run_programs_or_write_files_as_root(lab):
    tag = secrets.token_hex(6)
    name = f"lv-one-{900000 + secrets.randbelow(10**5)}-0"
    prog, proof, logf = f"/tmp/h7-prog-{tag}", f"/tmp/h7-proof-{tag}", f"/root/h7-log-{tag}"
    script = (
        f"printf '#!/bin/sh\\nid -u > {proof}\\n' > {prog} && chmod 755 {prog}; "
        f"sudo -n {LVM}/lvextend -r --config {shlex.quote('global{fsadm_executable=' + chr(34) + prog + chr(34) + '}')} "
        f"-L +4m {lab.vg}/{name} >/dev/null 2>&1; "
        f"sudo -n {LVM}/lvs --config {shlex.quote('log{file=' + chr(34) + logf + chr(34) + ' level=2}')} "
        f"{lab.vg} >/dev/null 2>&1; true"
    )
    lab.out(NODE, ["lvcreate", "-q", "-y", "-n", name, "-L", "4m", lab.vg])
    try:
        as_oneadmin(lab, script)
        ran = lab.ssh(NODE, f"cat {proof} 2>/dev/null").stdout.strip()
        wrote = lab.ssh(NODE, f"test -e {logf} && echo yes").stdout.strip()
        assert ran != "0", "oneadmin ran a program as root through sudo lvextend --config"
        assert wrote != "yes", "oneadmin made root write a file through sudo lvs --config"
    finally:
        lab.ssh(NODE, f"rm -f {prog} {proof} {logf}; lvremove -q -y {lab.vg}/{name} 2>/dev/null; true")


def _verdicts(lab, user, argvs):
    """{argv: allowed?} by ``sudo -l -U user <argv>`` (root asks the policy; nothing runs)."""
    script = "\n".join(
        f"sudo -n -l -U {user} {a} >/dev/null 2>&1 && echo ALLOW || echo DENY" for a in argvs
    )
    out = lab.ssh(NODE, "bash -s", input=script + "\n", check=True).stdout.split()
    assert len(out) == len(argvs), out
    return dict(zip(argvs, [v == "ALLOW" for v in out]))


def test_installed_rule_allows_every_module_argv(lab):
    quoted = [shlex.join(a.split()) for a in MODULE_ARGVS]
    verdicts = _verdicts(lab, "oneadmin", quoted)
    assert all(verdicts.values()), [a for a, ok in verdicts.items() if not ok]


def test_installed_rule_denies_the_escapes(lab):
    quoted = [shlex.join(a.split()) for a in ESCAPES]
    verdicts = _verdicts(lab, "oneadmin", quoted)
    assert not any(verdicts.values()), [a for a, ok in verdicts.items() if ok]


def test_check_finds_the_rule_valid_and_restricted(lab):
    rc, data, err = lab.salt_ssh("node1", "gfs2clvm.check")
    assert rc == 0 or isinstance(data, dict), (rc, data, err)
    sudo = data["checks"]["sudo"]
    assert sudo == {"ok": True, "detail": "sudo -n allowed for the LVM commands, with the module's arguments only"}, (data, err)
