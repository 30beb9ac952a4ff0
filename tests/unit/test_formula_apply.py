# SPDX-License-Identifier: Apache-2.0
"""The front-end states applied for real (salt-call --local state.apply) into a
throw-away tree: the driver files from tm_commands/, gfs2clvm-host and its
library, /etc/one/gfs2clvm.conf, the oned.conf edits, the salt-ssh
master/roster/Saltfile; a second run changes nothing; an enrolled host survives
a highstate; clean removes what the formula installed.  (The package state is
excluded, and enrolment is off: no package manager changes and no ssh here;
tests/integration/test_enroll_saltssh.py applies it with enrolment.)"""

import json
import os
import subprocess
import sys

import pytest
import yaml
from formula_render import REPO, salt_call

ONED_CONF = """# oned.conf excerpt
TM_MAD = [
    EXECUTABLE = "one_tm",
    ARGUMENTS = "-t 15 -d dummy,lvm,shared,fs_lvm,fs_lvm_ssh,qcow2,ssh,ceph,dev,vcenter,iscsi_libvirt"
]

DATASTORE_MAD = [
    EXECUTABLE = "one_datastore",
    ARGUMENTS  = "-t 15 -d dummy,fs,lvm,ceph,dev,iscsi_libvirt,vcenter,restic,rsync -s shared,ssh,ceph,fs_lvm,fs_lvm_ssh,qcow2,vcenter"
]
"""

EXCLUDE = json.dumps([{"id": "gfs2clvm-frontend-package-pkg-installed"}])


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("fe")
    (root / "oned.conf").write_text(ONED_CONF)
    pillar = {
        "gfs2clvm": {
            "owner": "root",
            "group": "root",
            "oneadmin": {"home": str(root / "home")},
            "frontend": {
                "enabled": True,
                "remotes": str(root / "remotes"),
                "oned_conf": str(root / "oned.conf"),
                "driver_conf": str(root / "gfs2clvm.conf"),
                "salt_dir": str(root / "salt"),
                "known_hosts": str(root / "home" / ".ssh" / "known_hosts"),
                "tool_dir": str(root / "usr-lib-gfs2clvm"),
                "tool_link": str(root / "bin" / "gfs2clvm-host"),
                "enroll": False,
                "conf": {"timeout": 600},
                "unit_dir": str(root / "systemd"),
                "saltssh_start": False,  # no systemd here: the units only
            },
        }
    }
    return root, pillar


def apply(pillar, sls="gfs2clvm.frontend"):
    rc, data, raw = salt_call("state.apply", sls, f"exclude={EXCLUDE}", minion_id="frontend", pillar=pillar)
    assert isinstance(data, dict), raw[-3000:]
    bad = {sid: ret["comment"] for sid, ret in data.items() if ret["result"] is not True}
    assert rc == 0 and not bad, bad
    return {sid.split("_|-")[1]: ret for sid, ret in data.items()}


@pytest.fixture(scope="module")
def first(tree):
    _, pillar = tree
    return apply(pillar)


def test_saltssh_service_units_written(tree, first):
    root, _ = tree
    socket_unit = (root / "systemd" / "gfs2clvm-saltssh.socket").read_text()
    service_unit = (root / "systemd" / "gfs2clvm-saltssh.service").read_text()
    assert "ListenStream=/run/gfs2clvm-saltssh.sock\n" in socket_unit and "Accept=no\n" in socket_unit
    assert f"ExecStart=/usr/bin/python3 {root}/usr-lib-gfs2clvm/lib/gfs2clvm_driver/service.py\n" in service_unit
    assert (root / "usr-lib-gfs2clvm" / "lib" / "gfs2clvm_driver" / "service.py").is_file()


def test_driver_files_installed(tree, first):
    root, _ = tree
    for action in ("clone", "ln", "mkimage", "delete", "mv"):
        path = root / "remotes" / "tm" / "gfs2clvm" / action
        assert path.is_file() and os.access(path, os.X_OK), path
        assert path.read_bytes() == (REPO / "tm_commands" / "tm" / "gfs2clvm" / action).read_bytes()
    ds = sorted(p.name for p in (root / "remotes" / "datastore" / "gfs2clvm").iterdir())
    assert ds == sorted(p.name for p in (REPO / "tm_commands" / "datastore" / "gfs2clvm").iterdir()
                        if p.name != "__pycache__")
    lib = root / "remotes" / "lib" / "gfs2clvm_driver"
    assert (lib / "__init__.py").is_file() and not (lib / "__pycache__").exists()


def test_driver_conf(tree, first):
    root, _ = tree
    conf = yaml.safe_load((root / "gfs2clvm.conf").read_text())
    assert conf == {
        "saltfile": f"{root}/salt/Saltfile", "salt_ssh": "/usr/bin/salt-ssh", "vg": "vg_cloudstorage",
        "mountpoint": "/var/lib/one", "user": "root", "oned_user": "root", "datastores": {}, "timeout": 600,
        "saltssh_socket": "/run/gfs2clvm-saltssh.sock",
    }


def test_oned_conf_edited(tree, first):
    root, _ = tree
    text = (root / "oned.conf").read_text()
    assert '-d gfs2clvm,dummy,lvm,shared' in text
    assert '-d gfs2clvm,dummy,fs,lvm' in text and '-s gfs2clvm,shared,ssh' in text
    block = text.split("# BEGIN gfs2clvm -- managed by Salt, do not edit")[1].split("# END gfs2clvm")[0]
    assert 'TM_MAD_CONF = [' in block and 'DISK_TYPE = "BLOCK"' in block and 'DS_MAD_CONF = [' in block


def test_gfs2clvm_host_installed_and_runnable_from_path(tree, first):
    root, _ = tree
    link = root / "bin" / "gfs2clvm-host"
    tool = root / "usr-lib-gfs2clvm" / "bin" / "gfs2clvm-host"
    assert link.is_symlink() and os.readlink(link) == str(tool)
    assert tool.read_bytes() == (REPO / "tm_commands" / "bin" / "gfs2clvm-host").read_bytes()
    assert tool.stat().st_mode & 0o777 == 0o755 and tool.stat().st_uid == 0
    lib = root / "usr-lib-gfs2clvm" / "lib" / "gfs2clvm_driver"
    assert (lib / "enroll.py").read_bytes() == (REPO / "tm_commands" / "lib" / "gfs2clvm_driver" / "enroll.py").read_bytes()
    # through the PATH link, from anywhere, with the installed library and the formula's config
    env = dict(os.environ, GFS2CLVM_CONF=str(root / "gfs2clvm.conf"), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, str(link), "list", "--json"], capture_output=True, text=True, cwd="/",
                          env=env, timeout=60)
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, "[]", "")


def test_saltssh_config(tree, first):
    root, _ = tree
    saltfile = yaml.safe_load((root / "salt" / "Saltfile").read_text())
    assert saltfile == {"salt-ssh": {"config_dir": f"{root}/salt", "log_level": "warning"}}
    master = yaml.safe_load((root / "salt" / "master").read_text())
    assert master["roster_file"] == f"{root}/salt/roster"
    assert master["known_hosts_file"] == f"{root}/home/.ssh/known_hosts"
    assert master["ssh_minion_opts"]["module_dirs"] == ["/usr/lib/gfs2clvm/_modules"]
    assert master["ssh_minion_opts"]["gfs2clvm"]["vg"] == "vg_cloudstorage"
    # an empty roster, the driver user's, in a sticky directory that user may write to
    assert yaml.safe_load((root / "salt" / "roster").read_text()) == {}
    assert (root / "salt").stat().st_mode & 0o7777 == 0o1770
    assert (root / "home" / ".ssh").stat().st_mode & 0o777 == 0o700


def test_datastore_templates_written(tree, first):
    """The templates for `onedatastore create`: the system DS with DISK_TYPE = BLOCK
    (volatile disks take it, issue 19.1)."""
    root, _ = tree
    system = (root / "salt" / "datastores" / "system.ds").read_text().splitlines()
    assert {'TYPE = "SYSTEM_DS"', 'TM_MAD = "gfs2clvm"', 'DISK_TYPE = "BLOCK"'} <= set(system)
    images = (root / "salt" / "datastores" / "images.ds").read_text().splitlines()
    assert {'DS_MAD = "gfs2clvm"', 'DISK_TYPE = "BLOCK"'} <= set(images)


def test_highstate_keeps_what_gfs2clvm_host_wrote(tree, first):
    """The roster's entries belong to gfs2clvm-host: a highstate neither drops nor rewrites them."""
    root, pillar = tree
    roster = root / "salt" / "roster"
    text = yaml.safe_dump({"w9": {"host": "192.0.2.99", "port": 22, "user": "root", "thin_dir": "/var/tmp/.t"}})
    roster.write_text(text)
    again = apply(pillar)
    assert roster.read_text() == text
    assert {sid: ret["changes"] for sid, ret in again.items() if ret["changes"]} == {}
    roster.write_text("{}")


def test_second_run_changes_nothing(tree, first):
    _, pillar = tree
    again = apply(pillar)
    assert {sid: ret["changes"] for sid, ret in again.items() if ret["changes"]} == {}


def test_clean(tree, first):
    root, pillar = tree
    apply(pillar, "gfs2clvm.frontend.clean")
    assert not (root / "remotes" / "tm" / "gfs2clvm").exists()
    assert not (root / "remotes" / "lib" / "gfs2clvm_driver").exists()
    assert not (root / "gfs2clvm.conf").exists() and not (root / "salt").exists()
    assert not (root / "bin" / "gfs2clvm-host").is_symlink()
    assert not (root / "usr-lib-gfs2clvm" / "bin").exists() and not (root / "usr-lib-gfs2clvm" / "lib").exists()
    assert not list((root / "systemd").glob("gfs2clvm-saltssh.*"))
    text = (root / "oned.conf").read_text()
    assert "TM_MAD_CONF" not in text
