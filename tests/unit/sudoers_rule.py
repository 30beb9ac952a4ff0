# SPDX-License-Identifier: Apache-2.0
"""The formula's sudoers rule, rendered from ``defaults.yaml`` with Salt's jinja, and a
matcher that decides like sudo >= 1.9.10 whether an LVM argv is allowed: the command
path must be equal, and an argument pattern ``^...$`` must match the arguments joined
by single spaces (POSIX extended regex; the patterns use nothing where Python's ``re``
differs).  The lab checks the same rule with the real sudo (tests/lab/test_lab_security.py).
"""

import functools
import re
from pathlib import Path

import yaml
from formula_render import render_file

REPO = Path(__file__).resolve().parents[2]


def defaults():
    return yaml.safe_load((REPO / "salt" / "gfs2clvm" / "defaults.yaml").read_text())["values"]


@functools.lru_cache(maxsize=None)
def rendered(lvm_bin=None, commands=None):
    """The rule for ``commands`` (a tuple; default: ``sudoers:commands`` of defaults.yaml)."""
    values = defaults()
    return render_file(
        "worker/sudoers.jinja",
        owner=values["owner"],
        lvm_bin=lvm_bin or values["lvm_bin"],
        commands=list(commands) if commands is not None else values["sudoers"]["commands"],
    )


def entries(text=None):
    """The Cmnd_Alias GFS2CLVM_LVM entries (continuation lines joined; a comma escaped
    as ``\\,`` belongs to an argument pattern)."""
    text = (text if text is not None else rendered()).replace("\\\n", " ")
    match = re.search(r"^Cmnd_Alias GFS2CLVM_LVM = (.*)$", text, re.M)
    assert match, text
    return [entry.strip() for entry in re.split(r"(?<!\\),", match.group(1)) if entry.strip()]


def _sudoers_unescape(pattern):
    # sudoers escapes , : = and \ in Cmnd arguments; a regex escape such as \^ stays
    return re.sub(r"\\([,:=])", r"\1", pattern)


@functools.lru_cache(maxsize=None)
def compiled(lvm_bin=None, commands=None):
    """[(command path, compiled pattern or None for 'any arguments')]"""
    out = []
    for entry in entries(rendered(lvm_bin, commands)):
        path, _, args = entry.partition(" ")
        if not args:
            out.append((path, None))
            continue
        assert args.startswith("^") and args.endswith("$"), entry
        out.append((path, re.compile(_sudoers_unescape(args[1:-1]))))
    return out


def allowed(argv, lvm_bin=None, commands=None):
    """Would the rule (for ``commands``, a tuple; default defaults.yaml's) let ``argv``
    (``[path, *args]``, without ``sudo -n``) run?"""
    path, args = argv[0], " ".join(argv[1:])
    for cmd, pattern in compiled(lvm_bin, commands):
        if cmd == path and (pattern is None or pattern.fullmatch(args)):
            return True
    return False


def lvm_argv(argv):
    """The LVM part of a recorded argv (``sudo -n [-l]`` dropped), or None when it is
    not an LVM command of the rule (e.g. ``blkdiscard`` run as oneadmin)."""
    words = list(argv)
    if words[:2] == ["sudo", "-n"]:
        words = words[2:]
        if words[:1] == ["-l"]:
            words = words[1:]
    if not words:
        return None
    names = {path.rsplit("/", 1)[-1] for path, _ in compiled()}
    return words if words[0].rsplit("/", 1)[-1] in names else None
