# SPDX-License-Identifier: Apache-2.0
"""The formula with the shipped example pillar (pillar/gfs2clvm.sls, exactly as shipped,
as docs/operations.md §2.2 tells the operator to copy it): every file template of every
state renders on every map.jinja family, and a dry run (state.apply test=True) on this
host's family reports nothing as failed -- also on a fresh worker without libvirt, whose
qemu.conf edit reports what it would write (issue 13 items 1 and 8).  The sudoers
command names: each needs an argument pattern, an unknown one fails naming the key."""

import os
import subprocess

import pytest
import sudoers_rule
import yaml
from formula_render import REPO, args, render_file, salt_call, show_sls

FAMILIES = ["Debian", "RedHat"]
TARGETS = [("node1", None), ("node2", None), ("frontend", {"gfs2clvm": {"frontend": {"enabled": True}}})]


def host_family():
    if os.path.exists("/etc/debian_version"):
        return "Debian"
    if os.path.exists("/etc/redhat-release"):
        return "RedHat"
    return None


def templated_files(high):
    """(state id, source file under salt/gfs2clvm/files, context) of every file.managed
    rendered with jinja."""
    out = []
    for sid, state in high.items():
        a = args(state)
        if a["fun"] == "file.managed" and a.get("template") == "jinja":
            source = a["source"]
            assert source.startswith("salt://gfs2clvm/files/"), (sid, source)
            out.append((sid, source[len("salt://gfs2clvm/files/"):], a.get("context") or {}))
    return out


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("minion_id,pillar", TARGETS, ids=[t[0] for t in TARGETS])
def test_shipped_pillar_renders_every_file_template(family, minion_id, pillar):
    """Before the fix the sudoers template failed: the example listed lvconvert and
    blkdiscard, the template had no pattern for them ('dict object' has no attribute)."""
    high = show_sls("gfs2clvm", os_family=family, minion_id=minion_id, pillar=pillar)
    files = templated_files(high)
    assert files or minion_id == "frontend"
    for sid, name, context in files:
        try:
            render_file(name, **context)
        except Exception as err:  # pylint: disable=broad-except
            pytest.fail(f"{family} {minion_id} {sid}: {name} does not render: {err}")


def test_shipped_pillar_dry_run_reports_no_failure():
    """state.apply test=True, shipped pillar, this host's family: no state is False (the
    sudoers template failed before; a worker without libvirt reported False for qemu.conf)."""
    family = host_family()
    if family is None:
        pytest.skip("not a Debian or RedHat host")
    rc, data, raw = salt_call("state.apply", "gfs2clvm", "test=True", os_family=family, minion_id="node1")
    assert isinstance(data, dict), raw[-3000:]
    bad = {sid.split("_|-")[1]: ret["comment"] for sid, ret in data.items() if ret["result"] is False}
    assert (rc, bad) == (0, {})
    sudoers = [ret for sid, ret in data.items() if "gfs2clvm-worker-access-sudoers-file-managed" in sid]
    assert sudoers and sudoers[0]["result"] in (None, True)


def test_example_pillar_grants_what_the_module_runs():
    """The example lists the defaults' commands (what _modules run with sudo): an operator
    copying it grants nothing more than docs/reliability.md's least-privilege rows say."""
    example = yaml.safe_load((REPO / "pillar" / "gfs2clvm.sls").read_text())["gfs2clvm"]
    assert example["sudoers"]["commands"] == sudoers_rule.defaults()["sudoers"]["commands"]


def test_unknown_sudoers_command_fails_naming_the_key():
    with pytest.raises(Exception) as err:
        render_file("worker/sudoers.jinja", owner="oneadmin", lvm_bin="/sbin", commands=["lvs", "lvm"])
    assert 'gfs2clvm:sudoers:commands: no argument pattern for "lvm"' in str(err.value)


def test_unknown_sudoers_command_in_a_dry_run_names_the_key():
    rc, data, raw = salt_call("state.apply", "gfs2clvm.worker.access", "test=True", minion_id="node1",
                              pillar={"gfs2clvm": {"sudoers": {"commands": ["lvs", "dd"]}}})
    assert rc != 0 and isinstance(data, dict), raw[-3000:]
    ret = [r for sid, r in data.items() if "gfs2clvm-worker-access-sudoers-file-managed" in sid][0]
    assert ret["result"] is False
    assert 'gfs2clvm:sudoers:commands: no argument pattern for "dd"' in ret["comment"]


EXTRA = ("lvcreate", "lvremove", "lvchange", "lvs", "vgs", "lvextend", "lvconvert", "blkdiscard")
VG = "vg_cloudstorage"


@pytest.mark.parametrize("argv", [
    ["/sbin/blkdiscard", f"/dev/{VG}/lv-one-1-0"],
    ["/sbin/blkdiscard", "-z", f"/dev/{VG}/lv-oneimg-{'0123456789abcdef' * 2}"],
], ids=lambda a: " ".join(a)[:60])
def test_lvconvert_and_blkdiscard_patterns_allow_the_driver_shapes(argv):
    assert sudoers_rule.allowed(argv, commands=EXTRA)
    assert not sudoers_rule.allowed(argv)  # not granted unless listed


@pytest.mark.parametrize("argv", [
    ["/sbin/lvconvert", "--yes", "--merge", f"{VG}/lv-one-1-0-s2"],
    ["/sbin/lvconvert", "--yes", "--merge", f"{VG}/lv-one-12-3-s0"],
], ids=lambda a: " ".join(a)[:60])
def test_lvconvert_merge_of_a_driver_snapshot_is_granted_by_default(argv):
    """snap_revert merges with exactly this argv (gfs2clvm.lv_merge), so the default
    command list (defaults.yaml, the example pillar) grants it."""
    assert sudoers_rule.allowed(argv, commands=EXTRA)
    assert sudoers_rule.allowed(argv)


@pytest.mark.parametrize("argv", [
    ["/sbin/lvconvert", "--merge", f"{VG}/lv-one-1-0-s2"],  # only the module's exact shape
    ["/sbin/lvconvert", "--yes", "--mergesnapshot", "--background", f"{VG}/lv-one-12-3-s0"],
    ["/sbin/lvconvert", "--merge", f"{VG}/gfs2"],
    ["/sbin/lvconvert", "--merge", f"{VG}/lv-one-1-0"],
    ["/sbin/lvconvert", "--merge", f"{VG}/lv-one-1-0-s2", "--config", "global/fsadm_executable=/tmp/x"],
    ["/sbin/lvconvert", "--merge", f"{VG}/lv-one-1-0-s2 {VG}/gfs2"],
    ["/sbin/lvconvert", "--type", "thin-pool", f"{VG}/lv-one-1-0"],
    ["/sbin/lvconvert", "--splitsnapshot", f"{VG}/lv-one-1-0-s2"],
    ["/sbin/lvconvert", "--merge", f"{VG}/lv-one-1-0-s2/../gfs2"],
    ["/sbin/blkdiscard", "/dev/vda"],
    ["/sbin/blkdiscard", f"/dev/{VG}/gfs2"],
    ["/sbin/blkdiscard", f"/dev/{VG}/lv-one-1-0/../gfs2"],
    ["/sbin/blkdiscard", f"/dev/{VG}/lv-one-1-0", "/dev/vda"],
    ["/sbin/blkdiscard", "-o", "0", f"/dev/{VG}/lv-one-1-0"],
    ["/sbin/blkdiscard", "-f", f"/dev/{VG}/lv-one-1-0"],
], ids=lambda a: " ".join(a)[:60])
def test_lvconvert_and_blkdiscard_patterns_deny_the_rest(argv):
    assert not sudoers_rule.allowed(argv, commands=EXTRA)


def test_rule_with_lvconvert_and_blkdiscard_passes_visudo(tmp_path):
    visudo = "/usr/sbin/visudo"
    if not os.access(visudo, os.X_OK):
        pytest.skip("no visudo")
    path = tmp_path / "gfs2clvm"
    path.write_text(sudoers_rule.rendered(commands=EXTRA))
    res = subprocess.run([visudo, "-c", "-q", "-f", str(path)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


# ---- issue 13.8: the qemu.conf edit in a dry run on a fresh worker, at loader level ----

@pytest.fixture(scope="module")
def loaders(tmp_path_factory):
    import salt._logging.impl  # pylint: disable=import-outside-toplevel
    import salt.config  # pylint: disable=import-outside-toplevel
    from saltfactories.utils.functional import Loaders  # pylint: disable=import-outside-toplevel

    state = tmp_path_factory.mktemp("salt")
    opts = salt.config.minion_config(None)
    opts.update(root_dir=str(state), cachedir=str(state / "cache"), pki_dir=str(state / "pki"),
                sock_dir=str(state / "run"), log_file=str(state / "minion.log"), file_client="local",
                file_roots={"base": [str(state)]})
    yield Loaders(opts)
    salt._logging.impl.shutdown_temp_handler()


def qemu_conf_state():
    """The formula's qemu.conf state arguments, as rendered for a worker."""
    high = show_sls("gfs2clvm.worker.libvirt", minion_id="node1")
    a = args(high["gfs2clvm-worker-libvirt-qemu-file-keyvalue"])
    assert a.pop("fun") == "file.keyvalue"
    a.pop("require", None)
    return a


def test_qemu_conf_dry_run_without_libvirt_reports_the_change(loaders, tmp_path):
    state = qemu_conf_state()
    conf = tmp_path / "etc-libvirt" / "qemu.conf"  # not there: libvirt not installed yet
    ret = loaders.states.file.keyvalue(**{**state, "name": str(conf)}, test=True)
    assert ret.result is None, ret.comment
    assert ret.changes and not conf.exists()
    diff = str(ret.changes)
    assert 'dynamic_ownership = 0' in diff and 'user = "oneadmin"' in diff and 'group = "oneadmin"' in diff


def test_qemu_conf_edit_keeps_the_packaged_file(loaders, tmp_path):
    """A real run edits the file the package installed (the commented defaults), in place."""
    state = qemu_conf_state()
    conf = tmp_path / "qemu.conf"
    conf.write_text('# stock\n#user = "root"\n#group = "root"\n#dynamic_ownership = 1\nvnc_listen = "0.0.0.0"\n')
    ret = loaders.states.file.keyvalue(**{**state, "name": str(conf)})
    assert ret.result is True, ret.comment
    assert conf.read_text() == ('# stock\nuser = "oneadmin"\ngroup = "oneadmin"\ndynamic_ownership = 0\n'
                                'vnc_listen = "0.0.0.0"\n')
