# SPDX-License-Identifier: Apache-2.0
"""Loader-level unit tests of _states/gfs2clvm.py.

A small fake of one node (corosync quorum, VGs, lockspaces, LVs, block device
signatures) answers ``cmd.run_all``; every test checks the probe -> test mode ->
act -> re-probe path and the exact argv of what was run.
"""

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gfs2clvm_state_ut", REPO / "_states" / "gfs2clvm.py")
gfs2clvm_state = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gfs2clvm_state)


class FakeNode:
    """Answers the commands the states run, from a little model of one node."""

    def __init__(self):
        self.quorate = True
        self.vgs = {}  # name -> lock type
        self.started = set()  # VG lockspaces started here
        self.lvs = {}  # (vg, lv) -> active locally (bool)
        self.signatures = {}  # device -> {"TYPE": ...}
        self.calls = []
        self.fail = {}  # argv[0] -> (rc, stderr)
        self.on_probe = None  # hook called on every probe (simulates another node)
        self.exclusive_elsewhere = 0  # lvchange -asy fails this many times

    def acts(self):
        probes = {"vgs", "lvs", "lvmlockctl", "blkid", "blockdev", "corosync-quorumtool"}
        return [c for c in self.calls if c[0] not in probes]

    def run_all(self, argv, python_shell=None, ignore_retcode=None):
        assert python_shell is False
        assert isinstance(argv, list)
        self.calls.append(list(argv))
        cmd = argv[0]
        if cmd in self.fail:
            rc, err = self.fail[cmd]
            return {"retcode": rc, "stdout": "", "stderr": err}
        if self.on_probe and cmd in ("vgs", "lvs", "blkid"):
            self.on_probe(self)
        return getattr(self, "_" + cmd.replace("-", "_").replace(".", "_"))(argv)

    @staticmethod
    def _ok(stdout="", rc=0, stderr=""):
        return {"retcode": rc, "stdout": stdout, "stderr": stderr}

    def _corosync_quorumtool(self, argv):
        return self._ok(f"Quorum information\nQuorate:          {'Yes' if self.quorate else 'No'}\n")

    def _vgs(self, argv):
        rows = [{"vg_name": n, "vg_lock_type": t} for n, t in self.vgs.items()]
        return self._ok(json.dumps({"report": [{"vg": rows}]}))

    def _lvmlockctl(self, argv):
        lines = [f"VG {vg} lock_type={self.vgs[vg]} 1234-uuid" for vg in sorted(self.started)]
        return self._ok("\n".join(lines) + "\n")

    def _lvs(self, argv):
        vg = argv[-1]
        sel = argv[argv.index("-S") + 1].split("=", 1)[1]
        rows = [
            {"lv_name": lv, "lv_size": "1073741824", "lv_active_locally": "active locally" if act else ""}
            for (g, lv), act in self.lvs.items()
            if g == vg and lv == sel
        ]
        return self._ok(json.dumps({"report": [{"lv": rows}]}))

    def _vgcreate(self, argv):
        name = argv[argv.index("--lock-type") + 2]
        self.vgs[name] = argv[argv.index("--lock-type") + 1]
        self.started.add(name)
        return self._ok()

    def _vgchange(self, argv):
        self.started.add(argv[-1])
        return self._ok()

    def _lvcreate(self, argv):
        self.lvs[(argv[-1], argv[argv.index("-n") + 1])] = True
        return self._ok()

    def _lvchange(self, argv):
        vg, lv = argv[-1].split("/")
        if argv[1] == "-asy" and self.exclusive_elsewhere:
            self.exclusive_elsewhere -= 1
            return self._ok(rc=5, stderr="LV locked by other host")
        self.lvs[(vg, lv)] = argv[1] != "-an"
        return self._ok()

    def _blockdev(self, argv):
        return self._ok()

    def _blkid(self, argv):
        found = self.signatures.get(argv[-1])
        if not found:
            return self._ok(rc=2)
        return self._ok("\n".join(f"{k}={v}" for k, v in found.items()) + "\n")

    def _mkfs_gfs2(self, argv):
        self.signatures[argv[-1]] = {"TYPE": "gfs2", "LABEL": argv[argv.index("-t") + 1]}
        return self._ok()


@pytest.fixture
def node():
    return FakeNode()


@pytest.fixture
def opts():
    return {"test": False}


@pytest.fixture
def configure_loader_modules(node, opts):
    return {gfs2clvm_state: {"__salt__": {"cmd.run_all": node.run_all}, "__opts__": opts}}


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    monkeypatch.setattr(gfs2clvm_state, "_sleep", lambda seconds: None)


def test_virtual():
    assert gfs2clvm_state.__virtual__() == "gfs2clvm"


# ------------------------------------------------------------------ quorate


def test_quorate_already(node):
    ret = gfs2clvm_state.quorate("labc")
    assert ret == {"name": "labc", "result": True, "changes": {}, "comment": "Cluster labc is quorate"}


def test_quorate_test_mode_does_not_wait(node, opts):
    node.quorate = False
    opts["test"] = True
    ret = gfs2clvm_state.quorate("labc", timeout=600)
    assert ret["result"] is None and ret["changes"] == {}
    assert len(node.calls) == 1


def test_quorate_waits_until_quorate(node):
    node.quorate = False
    count = {"n": 0}

    def become_quorate(*args, **kwargs):
        count["n"] += 1
        if count["n"] == 3:
            node.quorate = True
        return FakeNode.run_all(node, *args, **kwargs)

    gfs2clvm_state.__salt__["cmd.run_all"] = become_quorate
    ret = gfs2clvm_state.quorate("labc", timeout=60)
    assert ret["result"] is True and "became quorate" in ret["comment"]


def test_quorate_timeout_fails(node):
    node.quorate = False
    ret = gfs2clvm_state.quorate("labc", timeout=0)
    assert ret["result"] is False and "not quorate after 0 s" in ret["comment"]


# ------------------------------------------------------------------ vg_shared


def test_vg_present_and_started_changes_nothing(node):
    node.vgs["vg1"] = "dlm"
    node.started.add("vg1")
    ret = gfs2clvm_state.vg_shared("vg1", devices=["/dev/vda"], create=True)
    assert ret["result"] is True and ret["changes"] == {}
    assert node.acts() == []


def test_vg_create_test_mode_predicts(node, opts):
    opts["test"] = True
    ret = gfs2clvm_state.vg_shared("vg1", devices=["/dev/vda"], create=True)
    assert ret["result"] is None
    assert ret["changes"] == {"created": "vg1", "devices": ["/dev/vda"], "lock_type": "dlm"}
    assert node.acts() == []


def test_vg_create_on_creator(node):
    ret = gfs2clvm_state.vg_shared("vg1", devices=["/dev/vda"], create=True)
    assert ret["result"] is True, ret
    assert node.acts() == [["vgcreate", "--yes", "--shared", "--lock-type", "dlm", "vg1", "/dev/vda"]]
    assert ret["changes"] == {"created": "vg1", "devices": ["/dev/vda"], "lock_type": "dlm"}


def test_vg_other_node_waits_then_lock_starts(node):
    def appear(n):
        if sum(1 for c in n.calls if c[0] == "vgs") >= 3:
            n.vgs["vg1"] = "dlm"

    node.on_probe = appear
    ret = gfs2clvm_state.vg_shared("vg1", create=False, timeout=60)
    assert ret["result"] is True, ret
    assert node.acts() == [["vgchange", "--lock-start", "vg1"]]
    assert ret["changes"] == {"lockspace": "started"}


def test_vg_other_node_timeout(node):
    ret = gfs2clvm_state.vg_shared("vg1", create=False, timeout=0)
    assert ret["result"] is False and "did not appear within 0 s" in ret["comment"]
    assert node.acts() == []


def test_vg_lockspace_only(node, opts):
    node.vgs["vg1"] = "dlm"
    opts["test"] = True
    ret = gfs2clvm_state.vg_shared("vg1", create=False)
    assert ret["result"] is None and ret["changes"] == {"lockspace": "started"}
    opts["test"] = False
    ret = gfs2clvm_state.vg_shared("vg1", create=False)
    assert ret["result"] is True and node.acts() == [["vgchange", "--lock-start", "vg1"]]


def test_vg_wrong_lock_type_is_never_converted(node):
    node.vgs["vg1"] = ""
    ret = gfs2clvm_state.vg_shared("vg1", devices=["/dev/vda"], create=True)
    assert ret["result"] is False and "refusing to change it" in ret["comment"]
    assert node.acts() == []


def test_vg_create_failure_is_a_clean_comment(node):
    node.fail["vgcreate"] = (5, "  Global lock failed: check that global lockspace is started\n")
    ret = gfs2clvm_state.vg_shared("vg1", devices=["/dev/vda"], create=True)
    assert ret["result"] is False
    assert ret["comment"] == "vgcreate failed: Global lock failed: check that global lockspace is started"
    assert "Traceback" not in ret["comment"]


@pytest.mark.parametrize("kwargs", [{"name": "bad name"}, {"name": "vg1", "create": True}, {"name": "vg1", "lock_type": "x"}])
def test_vg_invalid_arguments(node, kwargs):
    ret = gfs2clvm_state.vg_shared(**kwargs)
    assert ret["result"] is False and node.calls == []


# ------------------------------------------------------------------ lv_shared


def test_lv_active_changes_nothing(node):
    node.lvs[("vg1", "gfs2")] = True
    ret = gfs2clvm_state.lv_shared("gfs2", "vg1", size="1G", create=True)
    assert ret["result"] is True and ret["changes"] == {} and node.acts() == []


def test_lv_create_test_mode(node, opts):
    opts["test"] = True
    ret = gfs2clvm_state.lv_shared("gfs2", "vg1", size="1G", create=True)
    assert ret["result"] is None
    assert ret["changes"] == {"created": "vg1/gfs2", "size": "1G", "active": "shared"}
    assert node.acts() == []


def test_lv_create_then_shared(node):
    ret = gfs2clvm_state.lv_shared("gfs2", "vg1", size="1G", create=True)
    assert ret["result"] is True, ret
    assert node.acts() == [
        ["lvcreate", "--yes", "--wipesignatures", "y", "-L", "1G", "-n", "gfs2", "vg1"],
        ["lvchange", "-an", "vg1/gfs2"],
        ["lvchange", "-asy", "vg1/gfs2"],
    ]
    assert ret["changes"] == {"created": "vg1/gfs2", "size": "1G", "active": "shared"}


def test_lv_other_node_retries_while_held_exclusively(node):
    node.lvs[("vg1", "gfs2")] = False
    node.exclusive_elsewhere = 2
    ret = gfs2clvm_state.lv_shared("gfs2", "vg1", create=False, timeout=60)
    assert ret["result"] is True, ret
    assert node.acts() == [["lvchange", "-asy", "vg1/gfs2"]] * 3
    assert ret["changes"] == {"active": "shared"}


def test_lv_other_node_never_creates(node):
    ret = gfs2clvm_state.lv_shared("gfs2", "vg1", size="1G", create=False, timeout=0)
    assert ret["result"] is False and "did not appear" in ret["comment"]
    assert node.acts() == []


def test_lv_bad_size(node):
    ret = gfs2clvm_state.lv_shared("gfs2", "vg1", size="1G; rm -rf /", create=True)
    assert ret["result"] is False and node.calls == []


# ------------------------------------------------------------------ gfs2_formatted

DEV = "/dev/vg1/gfs2"


def test_gfs2_present_changes_nothing(node):
    node.signatures[DEV] = {"TYPE": "gfs2", "LABEL": "labc:one"}
    ret = gfs2clvm_state.gfs2_formatted(DEV, "labc:one", journals=2, create=True)
    assert ret["result"] is True and ret["changes"] == {} and node.acts() == []


def test_gfs2_blank_test_mode(node, opts):
    opts["test"] = True
    ret = gfs2clvm_state.gfs2_formatted(DEV, "labc:one", journals=2, create=True)
    assert ret["result"] is None
    assert ret["changes"] == {"formatted": "gfs2", "locktable": "labc:one", "journals": 2}
    assert node.acts() == []


def test_gfs2_blank_is_formatted_on_creator(node):
    ret = gfs2clvm_state.gfs2_formatted(DEV, "labc:one", journals=3, journal_size_mb=32, create=True)
    assert ret["result"] is True, ret
    assert node.acts() == [
        ["mkfs.gfs2", "-O", "-p", "lock_dlm", "-t", "labc:one", "-j", "3", "-J", "32", DEV]
    ]
    # the cache is dropped before each probe
    assert ["blockdev", "--flushbufs", DEV] in node.calls


@pytest.mark.parametrize(
    "found",
    [
        {"TYPE": "ext4", "UUID": "x"},
        {"TYPE": "xfs"},
        {"PTTYPE": "gpt"},
        {"TYPE": "LVM2_member"},
    ],
)
def test_gfs2_never_formats_a_device_with_a_signature(node, opts, found):
    node.signatures[DEV] = found
    for test in (True, False):
        opts["test"] = test
        ret = gfs2clvm_state.gfs2_formatted(DEV, "labc:one", create=True)
        assert ret["result"] is False
        assert "refusing to format it" in ret["comment"]
    assert node.acts() == []


def test_gfs2_ambivalent_or_failed_probe_is_not_blank(node):
    node.fail["blkid"] = (8, "ambivalent result (probably more filesystems on the device)")
    ret = gfs2clvm_state.gfs2_formatted(DEV, "labc:one", create=True)
    assert ret["result"] is False and "refusing to format it" in ret["comment"]
    assert "ambivalent" in ret["comment"]
    assert node.acts() == []


def test_gfs2_other_node_waits_for_the_creator(node):
    def creator_formats(n):
        if sum(1 for c in n.calls if c[0] == "blkid") >= 3:
            n.signatures[DEV] = {"TYPE": "gfs2", "LABEL": "labc:one"}

    node.on_probe = creator_formats
    ret = gfs2clvm_state.gfs2_formatted(DEV, "labc:one", create=False, timeout=60)
    assert ret["result"] is True, ret
    assert ret["changes"] == {}
    assert node.acts() == []


def test_gfs2_other_node_timeout(node):
    ret = gfs2clvm_state.gfs2_formatted(DEV, "labc:one", create=False, timeout=0)
    assert ret["result"] is False and "not formatted by another node" in ret["comment"]


@pytest.mark.parametrize("locktable", ["nocolon", "a:b:c", "x" * 33 + ":one", "labc:" + "y" * 31])
def test_gfs2_invalid_locktable(node, locktable):
    ret = gfs2clvm_state.gfs2_formatted(DEV, locktable, create=True)
    assert ret["result"] is False and node.calls == []


def test_gfs2_mkfs_failure(node):
    node.fail["mkfs.gfs2"] = (1, "Error: device busy\n")
    ret = gfs2clvm_state.gfs2_formatted(DEV, "labc:one", create=True)
    assert ret["result"] is False and ret["comment"] == "mkfs.gfs2 failed: Error: device busy"


@pytest.mark.parametrize("kwargs", [{"journals": "two"}, {"journal_size_mb": None}, {"journals": 0}])
def test_gfs2_bad_numbers_are_a_comment_not_a_traceback(node, kwargs):
    ret = gfs2clvm_state.gfs2_formatted(DEV, "labc:one", create=True, **kwargs)
    assert ret["result"] is False and "Traceback" not in ret["comment"] and node.calls == []
