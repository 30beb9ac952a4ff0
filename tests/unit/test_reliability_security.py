# SPDX-License-Identifier: Apache-2.0
"""Least privilege and secrets, checked on the repository itself (no lab needed).

* no private key or other secret is committed (every tracked file is scanned);
* the sudoers rule oneadmin gets on a worker -- the formula's (``defaults.yaml``
  ``sudoers.commands`` rendered through ``files/worker/sudoers.jinja``; the lab uses
  the formula) -- grants exactly the LVM commands the modules run with ``sudo -n``,
  and restricts their arguments (an LVM command with free arguments
  takes ``--config``, which names executables LVM runs as root: see
  docs/reliability.md and tests/lab/test_lab_security.py, which shows it in a guest).
"""

import re
import subprocess
from pathlib import Path

import pytest
import sudoers_rule

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
    return sudoers_rule.entries()


def test_module_sudo_commands_are_found():
    assert {"lvs", "vgs", "lvcreate", "lvremove", "lvchange", "lvextend"} <= module_sudo_commands()


def test_formula_sudoers_grants_only_what_the_module_runs():
    """Nothing the modules do not run with sudo: no blkdiscard (as root it
    wipes any block device, e.g. the SAN PV; the module's blkdiscard -z runs as oneadmin
    on the oneadmin-owned LV)."""
    commands = {entry.split()[0].rsplit("/", 1)[-1] for entry in formula_rule()}
    assert commands == module_sudo_commands()


def _entries_without_args(entries):
    """Cmnd entries that are a bare path (sudoers: a bare path allows any arguments)."""
    return [entry for entry in entries if len(entry.split(None, 1)) == 1]


def test_formula_sudoers_restricts_arguments():
    """Free arguments would let oneadmin pass --config 'global/fsadm_executable=...' (or
    thin_check_executable, log/file) and run any program as root (shown in the lab by
    tests/lab/test_lab_security.py before the rule was restricted)."""
    assert _entries_without_args(formula_rule()) == []


VG = "vg_cloudstorage"
LV = f"{VG}/lv-one-1-0"
ESCAPES = [
    ["/sbin/lvextend", "-r", "--config", 'global{fsadm_executable="/tmp/x"}', "-L", "+4m", LV],
    ["/sbin/lvextend", "--yes", "-L", "32m", LV, "--config", "global/fsadm_executable=/tmp/x"],
    ["/sbin/lvextend", "--yes", "-L", "32m", LV, "-r"],
    ["/sbin/lvs", "--config", "log/file=/root/x", VG],
    ["/sbin/lvs", "--reportformat", "json", "--units", "m", "--nosuffix", "-o", "lv_name", VG, "--config=log/file=/x"],
    ["/sbin/lvs", "--reportformat", "json", "--units", "m", "--nosuffix", "-o", "lv_name", VG, "--commandprofile", "x"],
    ["/sbin/lvs", "--reportformat", "json", "--units", "m", "--nosuffix", "-o", "lv_name", "--config", VG],
    ["/sbin/vgs", "--reportformat", "json", "--units", "m", "--nosuffix", "-o", "vg_name", "--config x", VG],
    ["/sbin/lvcreate", "--yes", "-W", "y", "-Z", "y", "-n", "lv-one-1-0", "-L", "16m", VG, "--config", "x"],
    ["/sbin/lvcreate", "--yes", "-W", "y", "-Z", "y", "-n", "gfs3", "-L", "16m", VG],
    ["/sbin/lvcreate", "--yes", "-s", "-n", "lv-one-1-0-s1", f"{VG}/gfs2"],
    ["/sbin/lvremove", "--yes", f"{VG}/gfs2"],
    ["/sbin/lvremove", "--yes", LV, f"{VG}/gfs2"],
    ["/sbin/lvremove", "--yes", f"{VG}/lv-one-1-0/../gfs2"],
    ["/sbin/lvchange", "-an", f"{VG}/gfs2"],
    ["/sbin/lvchange", "-aey", LV, "--monitor", "y"],
    ["/sbin/lvchange", "-aey", f"{LV} -an {VG}/gfs2"],
    ["/sbin/lvconvert", "--merge", f"{LV}-s1"],
    ["/sbin/lvconvert", "--yes", "--merge", f"{VG}/gfs2"],
    ["/sbin/lvconvert", "--yes", "--merge", LV],
    ["/sbin/lvconvert", "--yes", "--merge", f"{LV}-s1", "--config", "x"],
    ["/sbin/lvconvert", "--yes", "--splitsnapshot", f"{LV}-s1"],
    ["/sbin/lvcreate", "--yes", "-s", "-n", "gfs2", f"{LV}-s1"],
    ["/sbin/blkdiscard", "/dev/vda"],
    ["/sbin/lvm", "lvs"],
    ["/bin/bash"],
]


@pytest.mark.parametrize("argv", ESCAPES, ids=lambda a: " ".join(a)[:60])
def test_formula_sudoers_denies_the_escapes(argv):
    assert not sudoers_rule.allowed(argv)


def test_the_matcher_allows_the_modules_argv():
    """The matcher itself is not vacuous (every argv the module builds is checked against
    the rule in tests/unit/test_gfs2clvm_module.py)."""
    assert sudoers_rule.allowed(["/sbin/lvchange", "-asy", "-K", LV])
    assert sudoers_rule.allowed(["/sbin/lvs", "--reportformat", "json", "--units", "m", "--nosuffix",
                                 "-o", "lv_name,vg_name", "-S", "lv_name=~^lv-one-42-", VG])


def test_the_lab_has_no_second_copy_of_the_node_configuration():
    """The lab's workers are configured by the formula's highstate only, so the lab
    tests the rule operators install (a lab-only copy had drifted: broad rule)."""
    assert not (REPO / "lab" / "bootstrap.sh").exists()
    assert "sudoers" not in (REPO / "lab" / "lab.sh").read_text()
