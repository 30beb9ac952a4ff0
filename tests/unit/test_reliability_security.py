# SPDX-License-Identifier: Apache-2.0
"""Least privilege and secrets, checked on the repository itself (no lab needed).

* no private key or other secret is committed (every tracked file is scanned);
* the sudoers rule oneadmin gets on a worker -- the formula's (``defaults.yaml``
  ``sudoers.commands`` rendered through ``files/worker/sudoers.jinja``) and the lab's
  (``lab/bootstrap.sh``) -- grants exactly the LVM commands the modules run with
  ``sudo -n``, and restricts their arguments (an LVM command with free arguments
  takes ``--config``, which names executables LVM runs as root: see
  docs/reliability.md and tests/lab/test_lab_security.py, which shows it in a guest).
"""

import re
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

# Built so this file does not match itself.
_DASHES = "-" * 5
PEM_PRIVATE = re.compile(
    _DASHES + r"BEGIN ((RSA|DSA|EC|OPENSSH|ENCRYPTED|PGP|SSH2 ENCRYPTED) )?PRIVATE KEY( BLOCK)?" + _DASHES
)
OTHER_SECRETS = {
    "AWS access key id": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),
    "PuTTY private key": re.compile(r"^PuTTY-User-Key-File-\d", re.M),
}
# Where the lab and the tests keep keys they generate: never tracked.
KEY_FILE_NAMES = re.compile(r"(^|/)(id_(rsa|dsa|ecdsa|ed25519)|ssh_host_[a-z0-9]+_key|host_key)$")


def tracked_files():
    """The files git tracks (CI's checkout is a git clone); the walk is the fallback
    for a plain copy of the tree, minus the untracked state dirs."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True
        ).stdout
        files = [REPO / name for name in out.decode().split("\0") if name]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    skip = re.compile(r"^\.(venv|git|lab[^/]*|cache|pytest_cache)(/|$)|(^|/)__pycache__(/|$)")
    return [
        path
        for path in REPO.rglob("*")
        if path.is_file() and not skip.search(str(path.relative_to(REPO)))
    ]


def test_the_scan_sees_the_repository():
    files = {str(p.relative_to(REPO)) for p in tracked_files()}
    assert "_modules/gfs2clvm.py" in files and "lab/lab.sh" in files, sorted(files)[:20]


def test_the_patterns_catch_real_keys(tmp_path):
    """The scanner is not blind: a freshly generated key of each type is caught."""
    for kind in ("ed25519", "rsa", "ecdsa"):
        key = tmp_path / f"k-{kind}"
        subprocess.run(
            ["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(key)], check=True
        )
        assert PEM_PRIVATE.search(key.read_text()), kind
        assert KEY_FILE_NAMES.search(f"x/id_{kind}")
    assert PEM_PRIVATE.search(_DASHES + "BEGIN PRIVATE KEY" + _DASHES)


def test_no_private_key_or_secret_is_committed():
    found = []
    for path in tracked_files():
        rel = str(path.relative_to(REPO))
        if KEY_FILE_NAMES.search(rel):
            found.append(f"{rel}: a key file name")
        try:
            text = path.read_bytes()[:2_000_000].decode("utf-8", "replace")
        except OSError:
            continue
        if PEM_PRIVATE.search(text):
            found.append(f"{rel}: PEM private key header")
        for what, pattern in OTHER_SECRETS.items():
            if pattern.search(text):
                found.append(f"{rel}: {what}")
    assert not found, "secrets in tracked files:\n" + "\n".join(found)


def test_lab_state_dirs_are_not_tracked():
    """The lab's key pairs live under LAB_DIR (default .lab/): nothing from there is tracked."""
    tracked = [str(p.relative_to(REPO)) for p in tracked_files()]
    assert not [t for t in tracked if re.match(r"^\.lab[^/]*/", t)]


# ------------------------------------------------------------------ sudoers
def module_sudo_commands():
    """LVM commands the execution modules run through ``_lvm(conf, "<cmd>", ...)``
    (the only place that adds ``sudo -n``)."""
    cmds = set()
    for path in sorted((REPO / "_modules").glob("*.py")):
        cmds |= set(re.findall(r"_lvm\(\s*\w+,\s*\"([a-z]+)\"", path.read_text()))
    return cmds


def formula_rule():
    """The Cmnd_Alias entries of the formula's sudoers file, rendered by Salt's jinja
    from ``defaults.yaml`` exactly as the sudoers state passes them."""
    from formula_render import render_file  # noqa: PLC0415 -- the unit tier's helper

    values = yaml.safe_load((REPO / "salt" / "gfs2clvm" / "defaults.yaml").read_text())["values"]
    text = render_file(
        "worker/sudoers.jinja",
        owner=values["owner"],
        lvm_bin=values["lvm_bin"],
        commands=values["sudoers"]["commands"],
    )
    match = re.search(r"^Cmnd_Alias GFS2CLVM_LVM = (.*)$", text, re.M)
    assert match, text
    return _split_entries(match.group(1))


def _split_entries(alias):
    """Entries of a Cmnd_Alias value (a comma escaped as \\, belongs to an argument)."""
    return [entry.strip() for entry in re.split(r"(?<!\\),", alias) if entry.strip()]


def lab_rule():
    """The Cmnd_Alias line lab/bootstrap.sh installs in the guests."""
    text = (REPO / "lab" / "bootstrap.sh").read_text()
    match = re.search(r"^Cmnd_Alias GFS2CLVM_LVM = (.*)$", text, re.M)
    assert match, "lab/bootstrap.sh has no GFS2CLVM_LVM alias"
    return _split_entries(match.group(1))


def test_module_sudo_commands_are_found():
    assert {"lvs", "vgs", "lvcreate", "lvremove", "lvchange", "lvextend"} <= module_sudo_commands()


EXTRA_REASON = (
    "sudoers grants commands the modules never run with sudo: lvconvert and blkdiscard "
    "(blkdiscard as root wipes ANY block device, e.g. the SAN PV). Fix: drop them from "
    "salt/gfs2clvm/defaults.yaml sudoers.commands and from lab/bootstrap.sh's Cmnd_Alias "
    "(the module's blkdiscard -z runs as oneadmin on the oneadmin-owned LV)."
)


@pytest.mark.xfail(strict=True, reason=EXTRA_REASON)
def test_formula_sudoers_grants_only_what_the_module_runs():
    commands = {entry.split()[0].rsplit("/", 1)[-1] for entry in formula_rule()}
    assert commands == module_sudo_commands()


@pytest.mark.xfail(strict=True, reason=EXTRA_REASON)
def test_lab_sudoers_grants_only_what_the_module_runs():
    commands = {entry.split()[0].rsplit("/", 1)[-1] for entry in lab_rule()}
    assert commands == module_sudo_commands()


ARGS_REASON = (
    "the sudoers rule allows ANY arguments to the LVM commands, so oneadmin can pass "
    "--config 'global/fsadm_executable=...' (or thin_check_executable, log/file) and run "
    "any program as root (shown in tests/lab/test_lab_security.py). Fix: restrict the "
    "arguments to the argv shapes the module builds (sudo >= 1.9.10 regex arguments, the "
    "rule in docs/reliability.md), or allow only a root-owned wrapper that validates argv."
)


def _entries_without_args(entries):
    """Cmnd entries that are a bare path (sudoers: a bare path allows any arguments)."""
    return [entry for entry in entries if len(entry.split(None, 1)) == 1]


@pytest.mark.xfail(strict=True, reason=ARGS_REASON)
def test_lab_sudoers_restricts_arguments():
    assert _entries_without_args(lab_rule()) == []


@pytest.mark.xfail(strict=True, reason=ARGS_REASON)
def test_formula_sudoers_restricts_arguments():
    assert _entries_without_args(formula_rule()) == []
