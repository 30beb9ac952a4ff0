# SPDX-License-Identifier: Apache-2.0
"""Master/minion mode: a real salt-master and salt-minion on this machine.

pytest-salt-factories starts one salt-master whose file_roots are this
repository and its ``salt/`` directory (``_modules`` and the formula, exactly as
an admin would point a master at a checkout) with a ``gfs2clvm:`` pillar, and
two salt-minions, session-scoped:

* ``gfs2clvm-mm-node1`` -- gets the modules from the master (``saltutil.sync_all``)
  and runs the module and the worker formula in test mode;
* ``gfs2clvm-mm-ep``    -- is never synced: ``gfs2clvm`` must load through the
  ``salt.loader`` entry points of the pip-installed package (``gfs2clvm_ext``).

The host has no device-mapper and no GFS2, so the pillar sets
``mount_check: none`` and a temporary mountpoint; the file-level functions are
checked on disk, the LVM parts only through ``check`` and ``state.apply
test=True`` (which must render and report, never traceback).
"""

import base64
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from saltssh_env import REPO, UNPRIV_USER, _ensure_user

pytestmark = pytest.mark.integration

NODE = "gfs2clvm-mm-node1"
EP = "gfs2clvm-mm-ep"


@pytest.fixture(scope="session")
def mm_base():
    if os.geteuid() != 0:
        pytest.fail("master/minion tests need root (the minion chowns files to the test user)")
    base = Path(tempfile.mkdtemp(prefix="gfs2clvm-mm-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def salt_factories_config(mm_base):
    """Daemons' state (configs, pki, caches, logs) under our own temp dir, not /tmp."""
    root = mm_base / "factories"
    root.mkdir()
    # slow_stop only matters for coverage data; SIGTERM is enough here
    return {"root_dir": root, "slow_stop": False}


@pytest.fixture(scope="session")
def mm_user():
    """The account that owns what the module writes (oneadmin's stand-in)."""
    return _ensure_user(UNPRIV_USER)


@pytest.fixture(scope="session")
def mm_pillar(mm_base, mm_user):
    """The ``gfs2clvm:`` pillar both minions get."""
    mountpoint = mm_base / "one"
    mountpoint.mkdir()
    os.chown(mountpoint, mm_user.pw_uid, mm_user.pw_gid)
    pillar = {
        "gfs2clvm": {
            "vg": "vg_gfs2clvm_mm",
            "mountpoint": str(mountpoint),
            "mount_check": "none",
            "owner": mm_user.pw_name,
            "group": mm_user.pw_name,
            "oneadmin": {
                "uid": mm_user.pw_uid,
                "gid": mm_user.pw_gid,
                "home": mm_user.pw_dir,
                "shell": mm_user.pw_shell,
                "authorized_keys": [],
            },
            "cluster": {
                "name": "mmtest",
                "nodes": [{"name": NODE, "nodeid": 1, "ring0_addr": "127.0.0.1"}],
                # corosync crypto is on by default: the key is required (256 bytes, base64)
                "authkey": base64.b64encode(bytes(range(256))).decode(),
            },
            "lvm": {"creator": NODE, "pvs": ["/dev/gfs2clvm-mm-no-such-disk"]},
            "modules_dir": str(mm_base / "installed-modules"),
            "libvirt": {"manage": False},
        }
    }
    roots = mm_base / "pillar"
    roots.mkdir()
    (roots / "top.sls").write_text(yaml.safe_dump({"base": {"*": ["gfs2clvm"]}}))
    (roots / "gfs2clvm.sls").write_text(yaml.safe_dump(pillar))
    return {"roots": roots, "data": pillar["gfs2clvm"], "mountpoint": mountpoint}


@pytest.fixture(scope="session")
def mm_master(salt_factories, mm_pillar):
    overrides = {
        "file_roots": {"base": [str(REPO), str(REPO / "salt")]},
        "pillar_roots": {"base": [str(mm_pillar["roots"])]},
        # a checkout as file root: keep dot-dirs (.venv, .git, lab images) and
        # build output out of the fileserver's file list, and walk the tree once
        # per minute instead of on every request (saltfactories' default is 0)
        "file_ignore_regex": [r"^\.[^/]*(/|$)", r"^(build|dist)(/|$)", r"__pycache__"],
        "fileserver_list_cache_time": 60,
        "worker_threads": 2,
        "open_mode": True,
        "auto_accept": True,
    }
    factory = salt_factories.salt_master_daemon("gfs2clvm-mm-master", overrides=overrides)
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="session")
def mm_minion(mm_master):
    factory = mm_master.salt_minion_daemon(NODE)
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="session")
def mm_ep_minion(mm_master):
    factory = mm_master.salt_minion_daemon(EP)
    with factory.started(start_timeout=120):
        yield factory


@pytest.fixture(scope="session")
def salt_cli(mm_master):
    return mm_master.salt_cli(timeout=180)


@pytest.fixture(scope="session")
def synced(salt_cli, mm_minion):
    ret = salt_cli.run("saltutil.sync_all", minion_tgt=mm_minion.id)
    assert ret.returncode == 0, ret
    return ret.data


def _one_line(text):
    return isinstance(text, str) and "Traceback" not in text


# ---------------------------------------------------------------------------
def test_sync_all_ships_the_modules(synced, mm_minion):
    assert "modules.gfs2clvm" in synced["modules"], synced
    assert "states.gfs2clvm" in synced["states"], synced
    extmods = Path(mm_minion.config["extension_modules"])
    shipped = (extmods / "modules" / "gfs2clvm.py").read_bytes()
    assert shipped == (REPO / "_modules" / "gfs2clvm.py").read_bytes()


def test_check_returns_a_structured_result(synced, salt_cli, mm_minion, mm_pillar):
    ret = salt_cli.run("gfs2clvm.check", minion_tgt=mm_minion.id)
    data = ret.data
    assert isinstance(data, dict), ret
    assert ret.returncode == (0 if data["ok"] else 1), ret  # a failed check fails the job
    assert set(data) == {"ok", "checks"}
    assert isinstance(data["ok"], bool)
    for name, item in data["checks"].items():
        assert set(item) == {"ok", "detail"}, (name, item)
        assert isinstance(item["ok"], bool) and _one_line(item["detail"]), (name, item)
    # pillar reached the module: config valid, mount check as configured
    assert data["checks"]["config"]["ok"] is True
    assert data["checks"]["mount"] == {
        "ok": True,
        "detail": f"{mm_pillar['mountpoint']} ok (mount_check=none)",
    }
    # this host has no volume group vg_gfs2clvm_mm: reported as a failed check, not raised
    assert data["checks"]["vg"]["ok"] is False, data["checks"]["vg"]
    assert data["ok"] is False


def test_link_writes_under_the_pillar_mountpoint(synced, salt_cli, mm_minion, mm_pillar, mm_user):
    mountpoint = mm_pillar["mountpoint"]
    image = mountpoint / "datastores" / "1" / "image.iso"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"iso")
    link = mountpoint / "datastores" / "0" / "42" / "disk.1"
    ret = salt_cli.run("gfs2clvm.link", str(image), str(link), minion_tgt=mm_minion.id)
    assert ret.returncode == 0, ret
    assert ret.data == {"path": str(link), "target": str(image), "changed": True}
    assert os.readlink(link) == str(image)
    # the new VM directory and the link belong to the configured owner
    for path in (link.parent, link.parent.parent):
        st = os.lstat(path)
        assert (st.st_uid, st.st_gid) == (mm_user.pw_uid, mm_user.pw_gid), path
    assert os.lstat(link).st_uid == mm_user.pw_uid
    # idempotent
    ret = salt_cli.run("gfs2clvm.link", str(image), str(link), minion_tgt=mm_minion.id)
    assert ret.data["changed"] is False


def test_context_iso_builds_an_iso_on_disk(synced, salt_cli, mm_minion, mm_pillar, mm_user):
    path = mm_pillar["mountpoint"] / "datastores" / "0" / "43" / "disk.2"
    files = {"context.sh": base64.b64encode(b"ETH0_IP=192.0.2.5\n").decode()}
    ret = salt_cli.run(
        "gfs2clvm.context_iso", str(path), f"files={json.dumps(files)}", minion_tgt=mm_minion.id
    )
    assert ret.returncode == 0, ret
    assert ret.data["path"] == str(path) and ret.data["files"] == ["context.sh"]
    data = path.read_bytes()
    assert ret.data["size"] == len(data)
    assert data[0x8001:0x8006] == b"CD001"  # ISO 9660 primary volume descriptor
    assert os.stat(path).st_uid == mm_user.pw_uid


def test_link_outside_the_mountpoint_is_refused(synced, salt_cli, mm_minion, mm_base, mm_pillar):
    ret = salt_cli.run(
        "gfs2clvm.link", "/etc/hostname", str(mm_base / "elsewhere" / "disk.0"), minion_tgt=mm_minion.id
    )
    assert ret.returncode != 0
    text = json.dumps(ret.data) if not isinstance(ret.data, str) else ret.data
    assert f"target /etc/hostname is not under the mountpoint {mm_pillar['mountpoint']}" in text, ret
    assert "Traceback" not in text
    assert not (mm_base / "elsewhere").exists()


def test_entry_points_load_the_module_without_sync(salt_cli, mm_ep_minion, mm_pillar):
    # never synced: nothing of ours in its extension modules
    extmods = Path(mm_ep_minion.config["extension_modules"])
    assert not list(extmods.glob("**/gfs2clvm*.py")), list(extmods.glob("**/*"))
    # the pip-installed package ships the module files and registers the entry point
    probe = subprocess.run(
        [
            str(Path(os.sys.executable)),
            "-c",
            "import json, gfs2clvm_ext, importlib.metadata as m;"
            "eps = [e.value for e in m.entry_points(group='salt.loader') if e.value.startswith('gfs2clvm_ext')];"
            "print(json.dumps({'file': gfs2clvm_ext.__file__, 'dirs': gfs2clvm_ext.get_module_dirs(), 'eps': eps}))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    info = json.loads(probe.stdout)
    assert "gfs2clvm_ext:get_module_dirs" in info["eps"], info
    assert "site-packages" in info["file"], info
    installed = Path(info["dirs"][0]) / "gfs2clvm.py"
    assert installed.is_file(), f"{installed} missing: reinstall the project (pip install .)"
    ret = salt_cli.run("gfs2clvm.check", minion_tgt=mm_ep_minion.id)
    assert isinstance(ret.data, dict) and set(ret.data) == {"ok", "checks"}, ret
    assert ret.returncode == (0 if ret.data["ok"] else 1), ret
    assert ret.data["checks"]["mount"]["ok"] is True
    ret = salt_cli.run("sys.doc", "gfs2clvm.vm_disks", minion_tgt=mm_ep_minion.id)
    assert "CLI Example" in ret.data["gfs2clvm.vm_disks"]


def test_worker_formula_in_test_mode_renders_and_reports(synced, salt_cli, mm_minion, mm_base):
    ret = salt_cli.run("state.apply", "gfs2clvm.worker", "test=True", minion_tgt=mm_minion.id)
    data = ret.data
    # a render error comes back as a list of strings: the formula must render
    assert isinstance(data, dict), ret
    failed = {}
    for sid, item in data.items():
        assert {"result", "comment", "changes", "name", "__run_num__"} <= set(item), (sid, item)
        assert item["result"] in (True, False, None), (sid, item)
        comment = item["comment"] if isinstance(item["comment"], str) else "\n".join(item["comment"])
        assert "Traceback" not in comment, (sid, comment)
        if item["result"] is False:
            assert comment.strip(), (sid, item)
            failed[sid] = comment
    # every state of every worker sls was reported
    for sls in ("package", "user", "cluster", "lvm", "access", "storage", "modules"):
        assert any(item.get("__sls__") == f"gfs2clvm.worker.{sls}" for item in data.values()), sls
    # test mode changed nothing on this host
    assert not (mm_base / "installed-modules").exists()
    counts = {str(r): sum(1 for item in data.values() if item["result"] is r) for r in (True, None, False)}
    print(f"\nstate.apply gfs2clvm.worker test=True: {len(data)} states, results {counts}")
    for sid, comment in sorted(failed.items()):
        print(f"  False: {sid}: {comment.splitlines()[0] if comment else ''}")
