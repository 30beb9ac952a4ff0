# SPDX-License-Identifier: Apache-2.0
"""The real driver executables end to end through real salt-ssh to sshd on 127.0.0.1.

The worker side is the production set-up of the lead's ``saltssh`` fixture
(``driver_saltfile``: modules deployed on the worker, one SSH connection per
call), as the unprivileged user.  The host has no device-mapper, so the
delete tests give the worker a fake LVM (``lvm_bin`` pointing at a small
script that keeps a VG in a JSON file and answers ``lvs --reportformat json``
with lvm2's field names); everything else -- salt-ssh, the shipped modules, the
file system work on the "GFS2" mountpoint -- is real.
"""

import json
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TM = REPO / "tm_commands" / "tm" / "gfs2clvm"
VG = "vg_cloudstorage"

FAKE_LVM = r'''#!/usr/bin/python3
"""A fake LVM for tests: one VG in state.json next to this script."""
import json, os, re, sys
here = os.path.dirname(os.path.abspath(__file__))
path = os.path.join(here, "state.json")
cmd, args = os.path.basename(sys.argv[0]), sys.argv[1:]
state = json.load(open(path))
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps([cmd] + args) + "\n")
def row(name):
    snap = re.search(r"-s\d+$", name) is not None
    return {"lv_name": name, "vg_name": state["vg"], "lv_path": "/dev/%s/%s" % (state["vg"], name),
            "lv_size": "100.00", "lv_attr": "swi-a-s---" if snap else "-wi-a-----",
            "lv_active": "active", "lv_active_locally": "active locally",
            "lv_active_exclusively": "active exclusively", "lv_device_open": "",
            "origin": name.rsplit("-s", 1)[0] if snap else "", "pool_lv": "",
            "segtype": "linear", "data_percent": ""}
if cmd == "lvs":
    if args[-1] != state["vg"]:
        sys.stderr.write('  Volume group "%s" not found\n' % args[-1]); sys.exit(5)
    sel = args[args.index("-S") + 1] if "-S" in args else None
    rows = []
    for name in state["lvs"]:
        if sel:
            key, op, val = re.match(r"(\w+)(=~|=)(.*)$", sel).groups()
            if (op == "=~" and not re.search(val, name)) or (op == "=" and name != val):
                continue
        rows.append(row(name))
    print(json.dumps({"report": [{"lv": rows}]}))
elif cmd == "lvremove":
    for word in args:
        if "/" in word:
            state["lvs"].remove(word.split("/", 1)[1])
    json.dump(state, open(path, "w"))
elif cmd in ("lvchange",):
    pass
else:
    sys.stderr.write("  %s: not available in this fake\n" % cmd); sys.exit(3)
'''


@pytest.fixture(scope="module")
def worker(saltssh):
    """A Saltfile like the driver's whose worker uses the fake LVM (unprivileged target)."""
    base = Path(saltssh.base) / f"h2-{uuid.uuid4().hex[:8]}"
    fake = base / "fakelvm"
    fake.mkdir(parents=True)
    script = fake / "lvm.py"
    script.write_text(FAKE_LVM)
    script.chmod(0o755)
    for name in ("lvs", "lvremove", "lvchange", "lvcreate", "vgs"):
        (fake / name).symlink_to(script)
    master = yaml.safe_load((saltssh.driver_config_dir / "master").read_text())
    roster = yaml.safe_load((saltssh.driver_config_dir / "roster").read_text())
    target = saltssh.target("unpriv")
    roster[target]["minion_opts"]["gfs2clvm"].update({"lvm_bin": str(fake), "sudo": False})
    cfg = base / "etc"
    cfg.mkdir()
    master["roster_file"] = str(cfg / "roster")
    (cfg / "master").write_text(yaml.safe_dump(master))
    (cfg / "roster").write_text(yaml.safe_dump({target: roster[target]}))
    saltfile = base / "Saltfile"
    saltfile.write_text(yaml.safe_dump({"salt-ssh": {"config_dir": str(cfg), "log_level": "warning"}}))
    user = pwd.getpwnam("gfs2ci")
    for path in (base, fake, cfg):
        path.chmod(0o755)
    os.chown(fake, user.pw_uid, user.pw_gid)
    return {"saltfile": saltfile, "fake": fake, "target": target, "mp": saltssh.mountpoints["unpriv"],
            "user": user}


def set_vg(worker, lvs):
    state = worker["fake"] / "state.json"
    state.write_text(json.dumps({"vg": VG, "lvs": lvs}))
    os.chown(state, worker["user"].pw_uid, worker["user"].pw_gid)
    return state


def driver_conf(saltssh, tmp_path, saltfile=None, **extra):
    mp = saltssh.mountpoints["unpriv"]
    conf = saltssh.driver_conf(tmp_path / "gfs2clvm.conf", mountpoint=str(mp), mount_check="none",
                               frontend_hosts=["the-front-end"], timeout=120, **extra)
    if saltfile:
        data = yaml.safe_load(conf.read_text())
        data["saltfile"] = str(saltfile)
        conf.write_text(yaml.safe_dump(data))
    return conf


def run(conf, action, *args):
    env = dict(os.environ, GFS2CLVM_CONF=str(conf))
    proc = subprocess.run([str(TM / action), *[str(a) for a in args]], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def as_user(path, user):
    os.chown(path, user.pw_uid, user.pw_gid)


def test_context_end_to_end(saltssh, tmp_path):
    conf = driver_conf(saltssh, tmp_path)
    mp = saltssh.mountpoints["unpriv"]
    ctx = tmp_path / "context.sh"
    ctx.write_text("ETH0_IP='10.0.0.42'\nHOSTNAME='vm42'\n")
    key = tmp_path / "id.pub"
    key.write_text("ssh-ed25519 AAAA test\n")
    target = saltssh.target("unpriv")
    before = saltssh.ssh_connections()
    rc, out, err = run(conf, "context", ctx, f"{key}:'authorized_keys'", f"{target}:{mp}/datastores/0/42/disk.1",
                       42, 0)
    assert (rc, out, err) == (0, "", "")
    assert saltssh.ssh_connections() - before == 1
    iso = mp / "datastores" / "0" / "42" / "disk.1"
    data = iso.read_bytes()
    assert b"CD001" in data[32768:32775] and b"HOSTNAME='vm42'" in data and b"ssh-ed25519 AAAA test" in data
    assert iso.stat().st_uid == pwd.getpwnam("gfs2ci").pw_uid


def test_context_too_big_for_arguments_is_streamed(saltssh, tmp_path):
    opts = ["-p", str(saltssh.port), "-i", str(saltssh.key), "-o", f"UserKnownHostsFile={saltssh.known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "HostName=127.0.0.1"]
    conf = driver_conf(saltssh, tmp_path, user="gfs2ci", ssh_options=opts)
    mp = saltssh.mountpoints["unpriv"]
    ctx = tmp_path / "context.sh"
    ctx.write_text("A=1\n")
    blob = tmp_path / "payload.bin"
    blob.write_bytes(os.urandom(200 * 1024))
    before = saltssh.ssh_connections()
    rc, out, err = run(conf, "context", ctx, blob, f"{saltssh.target('unpriv')}:{mp}/datastores/0/43/disk.2", 43, 0)
    assert (rc, out) == (0, ""), err
    assert err.startswith("INFO: context: streaming")
    assert saltssh.ssh_connections() - before == 2  # one data stream + one salt-ssh call
    data = (mp / "datastores" / "0" / "43" / "disk.2").read_bytes()
    assert blob.read_bytes()[:4096] in data
    assert list((mp / ".gfs2clvm-staging").iterdir()) == []


def test_bad_input_never_reaches_the_worker(saltssh, tmp_path):
    conf = driver_conf(saltssh, tmp_path)
    mp = saltssh.mountpoints["unpriv"]
    before = saltssh.ssh_connections()
    rc, out, err = run(conf, "delete", f"{saltssh.target('unpriv')}:{mp}/datastores/0/10", 1, 0)
    assert (rc, out) == (1, "")
    message = f"path {mp}/datastores/0/10 is not in the directory of VM 1 ({mp}/datastores/<dsid>/1)"
    assert err == f"ERROR: path {mp}/datastores/0/10 is not in the directory of VM 1 ({mp}/datastores/<dsid>/1)\n" \
        + message + "\n"  # the logged ERROR: line, then the plain reason oned shows
    assert saltssh.ssh_connections() == before


def test_unknown_host_is_one_line(saltssh, tmp_path):
    conf = driver_conf(saltssh, tmp_path)
    mp = saltssh.mountpoints["unpriv"]
    rc, out, err = run(conf, "mkswap", 512, f"nosuchnode:{mp}/datastores/0/5/disk.0", 5, 0)
    assert (rc, out, err) == (1, "", "ERROR: host nosuchnode is not in the salt-ssh roster\n"
                                     "host nosuchnode is not in the salt-ssh roster\n")


def _vm_tree(mp, user, vmid, disks):
    vmdir = mp / "datastores" / "0" / str(vmid)
    vmdir.mkdir(parents=True, exist_ok=True)
    for d in disks:
        (vmdir / f"disk.{d}").symlink_to(f"/dev/{VG}/lv-one-{vmid}-{d}")
    (vmdir / "deployment.0").write_text("<domain/>")
    for path in (mp / "datastores", mp / "datastores" / "0", vmdir, *vmdir.iterdir()):
        os.lchown(path, user.pw_uid, user.pw_gid)
    return vmdir


def test_delete_vm_dir_removes_exactly_that_vm(saltssh, worker, tmp_path):
    mp, user = worker["mp"], worker["user"]
    others = ["lv-one-10-0", "lv-one-11-0", "lv-one-100-0", "lv-one-100-1"]
    state = set_vg(worker, ["lv-one-1-0", "lv-one-1-1", "lv-one-1-0-s0"] + others)
    vm1 = _vm_tree(mp, user, 1, [0, 1])
    kept = [_vm_tree(mp, user, v, [0]) for v in (10, 11, 100)]
    conf = driver_conf(saltssh, tmp_path, saltfile=worker["saltfile"])
    before = saltssh.ssh_connections()
    rc, out, err = run(conf, "delete", f"{worker['target']}:{vm1}", 1, 0)
    assert (rc, out) == (0, ""), err
    assert err == ""
    assert saltssh.ssh_connections() - before == 1
    assert json.loads(state.read_text())["lvs"] == others
    assert not vm1.exists()
    assert all((d / "disk.0").is_symlink() and (d / "deployment.0").exists() for d in kept)
    removes = [c for c in map(json.loads, (worker["fake"] / "calls.jsonl").read_text().splitlines())
               if c[0] == "lvremove"]
    assert removes[-1] == ["lvremove", "--yes", f"{VG}/lv-one-1-0-s0", f"{VG}/lv-one-1-0", f"{VG}/lv-one-1-1"]
    # a retry of the same delete succeeds and touches nothing else
    rc, _, err = run(conf, "delete", f"{worker['target']}:{vm1}", 1, 0)
    assert rc == 0, err
    assert json.loads(state.read_text())["lvs"] == others
    for d in kept:
        shutil.rmtree(d)


def test_delete_one_disk(saltssh, worker, tmp_path):
    mp, user = worker["mp"], worker["user"]
    state = set_vg(worker, ["lv-one-10-0", "lv-one-10-1", "lv-one-100-0"])
    vm10 = _vm_tree(mp, user, 10, [0, 1])
    conf = driver_conf(saltssh, tmp_path, saltfile=worker["saltfile"])
    rc, out, err = run(conf, "delete", f"{worker['target']}:{vm10}/disk.0", 10, 0)
    assert (rc, out, err) == (0, "", "")
    assert json.loads(state.read_text())["lvs"] == ["lv-one-10-1", "lv-one-100-0"]
    assert not (vm10 / "disk.0").exists() and (vm10 / "disk.1").is_symlink()
    shutil.rmtree(vm10)


def test_a_worker_failure_is_one_error_line(saltssh, worker, tmp_path):
    """A real CommandExecutionError on the worker (here: lvcreate missing) -> one line for oned."""
    mp = worker["mp"]
    set_vg(worker, [])
    conf = driver_conf(saltssh, tmp_path, saltfile=worker["saltfile"])
    rc, out, err = run(conf, "mkswap", 512, f"{worker['target']}:{mp}/datastores/0/5/disk.0", 5, 0)
    assert (rc, out) == (1, "")
    assert err == (f"ERROR: gfs2clvm_tm.mkswap on {worker['target']}: lvcreate failed (rc 3): "
                   "lvcreate: not available in this fake\n"
                   f"gfs2clvm_tm.mkswap on {worker['target']}: lvcreate failed (rc 3): "
                   "lvcreate: not available in this fake\n")
    assert not (mp / "datastores" / "0" / "5" / "disk.0").exists()
