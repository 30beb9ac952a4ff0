# SPDX-License-Identifier: Apache-2.0
"""Every error message quoted in the troubleshooting section of docs/operations.md
is produced by a test.

Each row of the troubleshooting tables is ``| `message` | cause and fix | `tests/<file>.py::<test>` |``.
The message is quoted without the ``ERROR: `` prefix the commands put in front of
it, with ``…`` for host-specific parts.  This test reads the named test function
(and its decorators) with ``ast`` and requires every piece of the message between
two ``…`` to be part of a string that test asserts: a string inside an ``assert``,
a ``pytest.raises(match=...)`` pattern, or a ``parametrize`` table (inline or a
module-level name).  An f-string
counts with ``…`` in place of each interpolated value, so the doc must put ``…``
wherever the test does.

Messages that no other test asserted word for word are produced here, by running
the module's code (the ``test_module_*`` functions below), and the doc names them.
"""

import ast
import importlib.util
import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "operations.md"
ROW = re.compile(r"^\|\s*`(?P<msg>[^`]+)`(?P<rest>.*)\|\s*`(?P<test>tests/[\w/]+\.py::\w+)`\s*\|\s*$")


def troubleshooting_rows():
    text = GUIDE.read_text()
    match = re.search(r"^## [^\n]*Troubleshooting[^\n]*\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, "docs/operations.md has no '## ... Troubleshooting' section"
    rows = []
    for line in match.group(1).splitlines():
        if not line.startswith("|") or set(line) <= set("|-: ") or line.startswith("| message"):
            continue
        row = ROW.match(line)
        assert row, f"troubleshooting row without `message` ... `tests/<file>.py::<test>`: {line}"
        rows.append((row["msg"], row["test"]))
    return rows


ROWS = troubleshooting_rows()


def _text(node):
    """A str constant, or an f-string with ``…`` for each interpolation; else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "…" for v in node.values)
    return None


def _unregex(text):
    """A ``match=`` pattern as plain text (anchors and backslash escapes dropped)."""
    return re.sub(r"\\(.)", r"\1", text.removeprefix("^").removesuffix("$"))


def asserted_strings(test_ref):
    """The strings test ``path::name`` asserts (see the module docstring)."""
    path, name = test_ref.split("::")
    tree = ast.parse((REPO / path).read_text())
    funcs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == name]
    assert len(funcs) == 1, f"{test_ref}: no such test function"
    func = funcs[0]
    found = []
    scopes = [n for n in ast.walk(func) if isinstance(n, ast.Assert)] + list(func.decorator_list)
    for scope in scopes:
        found += [t for t in map(_text, ast.walk(scope)) if t]
    for call in (n for n in ast.walk(func) if isinstance(n, ast.Call)):
        for keyword in call.keywords:
            if keyword.arg == "match" and _text(keyword.value):
                found.append(_unregex(_text(keyword.value)))
    # a parametrize table kept in a module-level name (``@parametrize("a,b", TABLE)``)
    table_names = {n.id for d in func.decorator_list for n in ast.walk(d) if isinstance(n, ast.Name)}
    for assign in (n for n in tree.body if isinstance(n, ast.Assign)):
        if any(isinstance(t, ast.Name) and t.id in table_names for t in assign.targets):
            found += [t for t in map(_text, ast.walk(assign.value)) if t]
    # ``expected = "..."`` then ``assert x == expected``: names assigned and asserted
    asserted_names = {n.id for s in scopes for n in ast.walk(s) if isinstance(n, ast.Name)}
    for assign in (n for n in ast.walk(func) if isinstance(n, ast.Assign)):
        if any(isinstance(t, ast.Name) and t.id in asserted_names for t in assign.targets):
            found += [t for t in map(_text, ast.walk(assign.value)) if t]
    return found


def test_the_guide_quotes_messages_with_tests():
    assert len(ROWS) >= 25, ROWS
    assert len({msg for msg, _ in ROWS}) == len(ROWS), "a message is quoted twice"


@pytest.mark.parametrize("message, test_ref", ROWS, ids=[m[:60] for m, _ in ROWS])
def test_quoted_message_is_asserted_by_the_named_test(message, test_ref):
    assert not message.startswith("ERROR: "), "quote messages without the ERROR: prefix"
    pieces = [piece for piece in message.split("…") if piece.strip()]
    assert pieces and max(map(len, pieces)) >= 12, f"too little of the message is quoted: {message!r}"
    strings = asserted_strings(test_ref)
    missing = [piece for piece in pieces if not any(piece in s for s in strings)]
    assert not missing, f"{test_ref} asserts no string containing {missing} (it asserts {strings})"


def test_the_checker_rejects_an_unasserted_message():
    """The mechanism itself: a made-up message, or one with a literal where the test interpolates, fails."""
    ref = "tests/integration/test_enroll_saltssh.py::test_add_twice_is_refused"
    strings = asserted_strings(ref)
    assert any("w1 is already in the roster …" in s for s in strings), strings
    assert not any("w1 is already in the roster /etc/one/gfs2clvm/roster" in s for s in strings)
    with pytest.raises(AssertionError, match="no such test function"):
        asserted_strings("tests/integration/test_enroll_saltssh.py::test_does_not_exist")


# ---------------------------------------------------------------------------
# messages produced here by the module's own code (no other test asserts them exactly)
# ---------------------------------------------------------------------------
_spec = importlib.util.spec_from_file_location("gfs2clvm_mod_docs", REPO / "_modules" / "gfs2clvm.py")
gfs2clvm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gfs2clvm)

VG = "vg_cloudstorage"


class Cmd:
    """``cmd.run_all`` stand-in answering by command name; every argv recorded."""

    def __init__(self, answers=None):
        self.answers = answers or {}
        self.calls = []

    def __call__(self, argv, python_shell=None, ignore_retcode=False, **kwargs):
        assert python_shell is False and isinstance(argv, list)
        self.calls.append(argv)
        name = argv[2] if argv[:2] == ["sudo", "-n"] and argv[2] != "-l" else argv[0]
        rc, out = self.answers.get(name.rsplit("/", 1)[-1], (0, ""))
        return {"retcode": rc, "stdout": out, "stderr": "", "pid": 1}


@pytest.fixture
def module(monkeypatch, tmp_path):
    conf = {"vg": VG, "mountpoint": str(tmp_path), "mount_check": "none", "sudo": False}
    cmd = Cmd()

    def config_get(key, default="", *args, **kwargs):
        return conf if key == "gfs2clvm" else default

    monkeypatch.setattr(gfs2clvm, "__salt__", {"cmd.run_all": cmd, "config.get": config_get}, raising=False)
    monkeypatch.setattr(gfs2clvm, "__context__", {}, raising=False)  # the loader gives every module one
    return conf, cmd


def _lv_row(name, open_=False):
    return {"lv_name": name, "vg_name": VG, "lv_path": f"/dev/{VG}/{name}", "lv_size": "1024.00",
            "lv_attr": "-wi-ao----" if open_ else "-wi-a-----", "lv_layout": "linear", "lv_active": "active",
            "lv_active_locally": "active locally", "lv_active_exclusively": "active exclusively",
            "lv_device_open": "open" if open_ else "", "origin": "", "pool_lv": "", "data_percent": ""}


def test_module_refuses_to_remove_an_open_lv(module):
    _, cmd = module
    cmd.answers["lvs"] = (0, json.dumps({"report": [{"lv": [_lv_row("lv-one-7-1", open_=True)]}]}))
    with pytest.raises(gfs2clvm.CommandExecutionError) as err:
        gfs2clvm.lv_remove("lv-one-7-1")
    assert str(err.value) == "logical volume vg_cloudstorage/lv-one-7-1 is open (in use): not removing it"
    assert not [argv for argv in cmd.calls if "lvremove" in argv[0]]


def test_module_check_sudo_refuses_a_rule_with_free_arguments(module):
    conf, _ = module
    conf["sudo"] = True  # every sudo -l probe answers 0: also `lvs --config ...` is allowed
    ok, detail = gfs2clvm._check_sudo(gfs2clvm._config())
    assert not ok
    assert detail == (
        "the sudo rule allows any arguments to the LVM commands (--config lets its user run programs as root): "
        "install the formula's argument-restricted rule"
    )


def test_module_check_vg_not_shared(module):
    _, cmd = module
    row = {"vg_name": VG, "vg_size": "4092.00", "vg_free": "3716.00", "vg_extent_size": "4.00",
           "vg_extent_count": "1023", "vg_free_count": "929", "lv_count": "1", "vg_shared": "",
           "vg_lock_type": "", "vg_attr": "wz--n-"}
    cmd.answers["vgs"] = (0, json.dumps({"report": [{"vg": [row]}]}))
    assert gfs2clvm.check()["checks"]["vg"] == {
        "ok": False,
        "detail": "volume group vg_cloudstorage exists but is not shared (vgcreate --shared / vgchange --locktype)",
    }


def test_module_check_lvmlockd_not_running(module, monkeypatch):
    monkeypatch.setattr(gfs2clvm.os.path, "exists", lambda path: False)
    monkeypatch.setattr(gfs2clvm.glob, "glob", lambda pattern: [])
    assert gfs2clvm._check_lvmlockd() == (
        False, "lvmlockd is not running (no lvmlockd process, no /run/lvm/lvmlockd.socket)"
    )


def test_module_check_device_mapper_missing(module, monkeypatch, tmp_path):
    misc = tmp_path / "misc"
    misc.write_text(" 58 rfkill\n183 hw_random\n")
    monkeypatch.setattr(gfs2clvm, "PROC_MISC", str(misc))
    assert gfs2clvm._check_dm() == (False, "the kernel has no device-mapper (modprobe dm_mod)")


def test_module_check_lvm_missing(module):
    conf, _ = module
    conf["lvm_bin"] = "/nonexistent/sbin"
    assert gfs2clvm.check()["checks"]["lvm"] == {
        "ok": False, "detail": "/nonexistent/sbin/lvm not found (install lvm2, or set lvm_bin)"
    }


def test_formula_vg_state_never_converts_a_local_vg(monkeypatch):
    """A 2012 VG made local (or any VG of another lock type) is never converted by the formula."""
    spec = importlib.util.spec_from_file_location("gfs2clvm_state_docs", REPO / "_states" / "gfs2clvm.py")
    state = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(state)
    calls = []

    def run_all(argv, python_shell=None, ignore_retcode=None):
        assert python_shell is False
        calls.append(argv)
        rows = [{"vg_name": "vg_cloudstorage", "vg_lock_type": ""}] if argv[0] == "vgs" else []
        return {"retcode": 0, "stdout": json.dumps({"report": [{"vg": rows}]}), "stderr": ""}

    monkeypatch.setattr(state, "__salt__", {"cmd.run_all": run_all}, raising=False)
    monkeypatch.setattr(state, "__opts__", {"test": False}, raising=False)
    ret = state.vg_shared("vg_cloudstorage", devices=["/dev/mapper/mpatha"], create=True)
    assert ret["result"] is False
    assert ret["comment"] == "VG vg_cloudstorage exists with lock type 'none', not 'dlm'; refusing to change it"
    assert {argv[0] for argv in calls} <= {"vgs", "lvmlockctl"}  # probes only: nothing changed
