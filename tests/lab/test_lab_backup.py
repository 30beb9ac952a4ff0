# SPDX-License-Identifier: Apache-2.0
"""Backups in the qemu lab through the REAL driver executables (issue 14 item 6): the
calls oned 7.4 makes for ``onevm backup`` and ``onevm restore`` round-trip one small VM
disk -- the bytes after ``restore`` equal the bytes at backup time.

One salt-ssh call per driver action (prebackup, prebackup_live, postbackup_live,
restore); state is read and the VM disk written with plain ssh.  The backup datastore
is played by the test: the files prebackup left in ``<vmdir>/backup`` are copied to the
host (as rsync/restic upload them), and restore gets them back through stand-ins for
OpenNebula's CLI, the datastore's ``ls`` and ``downloader.sh`` (the front-end side of
src/tm_mad/lvm/restore in release-7.4.0).
"""

import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
TM = REPO / "tm_commands" / "tm" / "gfs2clvm"
MiB = 1024 * 1024
SIZE_MB = 8


def _exe(path, text):
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def env(lab_salt, tmp_path_factory):
    """Driver config for the lab (ssh_config mapping node ids to their ports for the
    data stream) and the stand-ins restore calls on the front-end."""
    lab = lab_salt
    base = tmp_path_factory.mktemp("backup")
    store = base / "store"
    store.mkdir()
    lines = []
    for node in lab.nodes:
        port = (lab.dir / "vms" / f"{node}.port").read_text().strip()
        lines += [f"Host {node}", "  HostName 127.0.0.1", f"  Port {port}", f"  IdentityFile {lab.key}",
                  "  IdentitiesOnly yes", f"  UserKnownHostsFile {lab.known_hosts}",
                  "  StrictHostKeyChecking yes", "  ConnectTimeout 15", "  LogLevel ERROR"]
    (base / "ssh_config").write_text("\n".join(lines) + "\n")
    remotes = base / "remotes"
    (remotes / "datastore" / "rsync").mkdir(parents=True)
    _exe(base / "onevm", "#!/bin/sh\necho \"<VM><ID>$3</ID></VM>\"\n")
    _exe(base / "oneimage", "#!/bin/sh\necho '<IMAGE><ID>7</ID><DATASTORE_ID>100</DATASTORE_ID></IMAGE>'\n")
    _exe(base / "onedatastore", "#!/bin/sh\necho '<DATASTORE><ID>100</ID><DS_MAD>rsync</DS_MAD></DATASTORE>'\n")
    _exe(remotes / "datastore" / "rsync" / "ls",
         f"#!/bin/sh\ncat >/dev/null\necho '{json.dumps({'0': f'rsync://100/0:lab//{store}/disk.0.0'})}'\n")
    _exe(remotes / "datastore" / "downloader.sh", "#!/bin/sh\nexec cat \"/${2##*//}\"\n")
    conf = base / "gfs2clvm.conf"
    conf.write_text(
        f"saltfile: {lab.driver_saltfile}\n"
        f"salt_ssh: {REPO / '.venv' / 'bin' / 'salt-ssh'}\n"
        f"vg: {lab.vg}\n"
        "frontend_hosts: [frontend-bk]\n"
        f"ssh_options: [-F, {base / 'ssh_config'}]\n"
        f"onevm: {base / 'onevm'}\noneimage: {base / 'oneimage'}\nonedatastore: {base / 'onedatastore'}\n"
        f"one_remotes: {remotes}\n"
        "timeout: 600\n"
    )
    return {"conf": conf, "store": store, "calls": []}


def run(env, action, *args, stdin=""):
    environ = dict(os.environ, GFS2CLVM_CONF=str(env["conf"]),
                   PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    t0 = time.monotonic()
    proc = subprocess.run([str(TM / action), *[str(a) for a in args]], input=stdin, capture_output=True,
                          text=True, timeout=900, env=environ, check=False)
    env["calls"].append((action, proc.returncode, round(time.monotonic() - t0, 1)))
    assert proc.returncode == 0, f"{action}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def sha_of(lab, device):
    return lab.out("node1", f"sha256sum {device}", user="oneadmin").split()[0]


def test_backup_and_restore_round_trip_a_vm_disk(lab_salt, env):
    lab = lab_salt
    vmid = 800000 + secrets.randbelow(10**5)
    name = f"lv-one-{vmid}-0"
    dev = f"/dev/{lab.vg}/{name}"
    vmdir = f"{lab.mountpoint}/datastores/0/{vmid}"
    bdir = f"{vmdir}/backup"
    xml = (f"<VM><ID>{vmid}</ID><BACKUPS><BACKUP_CONFIG><MODE>FULL</MODE></BACKUP_CONFIG>"
           "</BACKUPS></VM>")
    # BACKUP tm_mad host:remote_dir DISK_ID:...:DISK_ID deploy_id bj_id vmid dsid
    argv = [f"node1:{vmdir}", "0", f"one-{vmid}", "-", vmid, 0]
    holder = None
    lab.out("node1", ["lvcreate", "-q", "-y", "-n", name, "-L", f"{SIZE_MB}m", lab.vg])
    try:
        lab.out("node1", f"mkdir -p {vmdir} && ln -s {dev} {vmdir}/disk.0", user="oneadmin")
        lab.out("node1", f"head -c {SIZE_MB * MiB} /dev/urandom | dd of={dev} bs=1M iflag=fullblock oflag=direct status=none",
                user="oneadmin")
        # 1. powered off: prebackup reads the disk itself
        run(env, "prebackup", *argv, stdin=xml)
        listing = lab.out("node1", f"ls {bdir}", user="oneadmin").split()
        assert listing == ["disk.0.0", "vm.xml"], listing
        lab.out("node1", f"qemu-img compare -q -f qcow2 -F raw {bdir}/disk.0.0 {dev}", user="oneadmin")
        # 2. running (the disk held open as qemu holds it): a snapshot, removed afterwards
        lab.out("node1", f"head -c {MiB} /dev/urandom | dd of={dev} bs=1M seek=3 iflag=fullblock oflag=direct status=none",
                user="oneadmin")
        at_backup = sha_of(lab, dev)
        holder = lab.out("node1", f"nohup sh -c 'exec 3<>{dev}; exec sleep 900' >/dev/null 2>&1 & echo $!",
                         user="oneadmin").split()[-1]
        run(env, "prebackup_live", *argv, stdin=xml)
        names = lab.out("node1", ["lvs", "--noheadings", "-o", "lv_name", lab.vg]).split()
        assert f"{name}-backup" not in names and name in names
        lab.out("node1", f"qemu-img compare -q -f qcow2 -F raw {bdir}/disk.0.0 {dev}", user="oneadmin")
        # the backup datastore uploads the directory (rsync -aS <vmdir>/backup/ ...)
        got = subprocess.run([*lab.ssh_argv("node1", "oneadmin"), f"cat {bdir}/disk.0.0"],
                             capture_output=True, timeout=120, check=True).stdout
        (env["store"] / "disk.0.0").write_bytes(got)
        run(env, "postbackup_live", *argv, stdin=xml)
        assert lab.ssh("node1", ["test", "-e", bdir]).returncode == 1
        # 3. the disk changes; the VM is powered off; onevm restore puts the backup back
        lab.ssh("node1", ["kill", holder], user="oneadmin")
        holder = None
        lab.out("node1", f"head -c {SIZE_MB * MiB} /dev/urandom | dd of={dev} bs=1M iflag=fullblock oflag=direct status=none",
                user="oneadmin")
        assert sha_of(lab, dev) != at_backup
        # RESTORE tm_mad host:remote_dir vm_id img_id inc_id disk_id
        run(env, "restore", f"node1:{vmdir}", vmid, 7, -1, -1)
        assert sha_of(lab, dev) == at_backup
        staging = lab.out("node1", f"ls -A {lab.mountpoint}/.gfs2clvm-staging 2>/dev/null || true")
        assert not [f for f in staging.split() if f.endswith(".img")], staging
    finally:
        if holder:
            lab.ssh("node1", ["kill", holder], user="oneadmin")
        lab.ssh("node1", f"lvremove -y {lab.vg}/{name}-backup 2>/dev/null; lvremove -y {lab.vg}/{name}; "
                         f"rm -rf {vmdir}")
        (lab.dir / "backup-calls.json").write_text(json.dumps(env["calls"], indent=1) + "\n")
