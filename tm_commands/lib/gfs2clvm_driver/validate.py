"""Validation of every argument oned passes, before anything runs.

Each validator returns the clean value or raises ``DriverError`` with one line
naming the bad argument.  Nothing here touches the network or a disk.
"""

import os
import re

from .core import DriverError

MAX_ID = 2**31
HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,252})$")
# Paths oned builds: no spaces, no shell metacharacters, nothing to interpret.
PATH_RE = re.compile(r"^/[A-Za-z0-9._/+@-]*$")
VG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}$")
LV_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}$")
IMAGE_LV_RE = re.compile(r"^lv-oneimg-[0-9a-f]{32}$")
VM_LV_RE = re.compile(r"^lv-one-(\d+)-(\d+)$")
DISK_RE = re.compile(r"^disk\.(\d+)$")
FS_RE = re.compile(r"^[a-z0-9_]{1,16}$")
# What the worker can format (_modules/gfs2clvm.py: _MKFS and swap; a unit test keeps
# them equal), and the words that mean "no file system" (a raw/qcow2 volatile disk,
# oned's save_as): checked here, so an unknown type is refused before any salt-ssh call.
FILESYSTEMS = ("ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "swap")
NO_FILESYSTEM = ("raw", "qcow2", "none", "save_as")
URL_RE = re.compile(r"^https?://[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+$")


def ident(value, what="id"):
    """A decimal id ``0 <= id < 2**31`` (no sign, no leading zeros, no spaces)."""
    text = str(value)
    if not re.fullmatch(r"0|[1-9][0-9]{0,9}", text) or int(text) >= MAX_ID:
        raise DriverError(f"invalid {what} {text!r}: expected a decimal integer")
    return int(text)


def size_mb(value, what="size"):
    """A size in MB, > 0."""
    number = ident(value, what)
    if number <= 0:
        raise DriverError(f"invalid {what} {value!r}: must be > 0 MB")
    return number


def host(value, what="host"):
    text = str(value)
    if not HOST_RE.match(text) or ".." in text:
        raise DriverError(f"invalid {what} {text!r}: not a host name")
    return text


def path(value, what="path", under=None):
    """An absolute, normalised path without metacharacters, optionally under ``under``.

    Repeated slashes are folded first: oned's default system datastore path is
    ``/var/lib/one//datastores/<id>`` (``var_location`` ends in a slash).
    """
    text = re.sub("/{2,}", "/", str(value))
    if not PATH_RE.match(text) or os.path.normpath(text) != text or "/../" in text + "/":
        raise DriverError(f"invalid {what} {text!r}: not a plain absolute path")
    if under is not None:
        base = os.path.normpath(under)
        if not text.startswith(base.rstrip("/") + "/"):
            raise DriverError(f"invalid {what} {text!r}: not under {base}")
    return text


def local_path(value, what="path"):
    """A front-end file the driver only opens itself (an image PATH streamed to a worker):
    any name OpenNebula can hand over -- spaces, quotes, UTF-8 -- since no shell, argv
    or protocol line of another program ever carries it.  Refused only: not absolute,
    a ``.``/``..`` segment (the SAFE_DIRS check must judge the real name), a NUL or a
    line break (oned's one-line messages), over 4096 bytes."""
    text = str(value)
    if not text.startswith("/"):
        raise DriverError(f"invalid {what} {text!r}: not an absolute path")
    if "\0" in text or "\n" in text or "\r" in text:
        raise DriverError(f"invalid {what} {text!r}: holds a NUL or a line break")
    if len(text.encode("utf-8", "surrogateescape")) > 4096:
        raise DriverError(f"invalid {what}: longer than 4096 bytes")
    if any(part in (".", "..") for part in text.split("/")):
        raise DriverError(f"invalid {what} {text!r}: holds a '.' or '..' segment")
    return re.sub("/{2,}", "/", text)


def vg(value, what="VG"):
    text = str(value)
    if not VG_RE.match(text):
        raise DriverError(f"invalid {what} {text!r}")
    return text


def image_lv(value):
    text = str(value)
    if not IMAGE_LV_RE.match(text):
        raise DriverError(f"invalid image volume {text!r}: expected lv-oneimg-<32 hex>")
    return text


def fstype(value):
    """A file system the workers can make (``FILESYSTEMS``) or one of ``NO_FILESYSTEM``."""
    text = str(value).lower()
    if not FS_RE.match(text):
        raise DriverError(f"invalid filesystem type {value!r}")
    if text not in FILESYSTEMS + NO_FILESYSTEM:
        raise DriverError(
            f"unknown filesystem type {value!r}: the workers make {', '.join(FILESYSTEMS)} "
            f"(or none: {', '.join(NO_FILESYSTEM)})"
        )
    return text


def url(value):
    text = str(value)
    if not URL_RE.match(text):
        raise DriverError(f"invalid URL {text!r}")
    return text


def device(value, default_vg):
    """``/dev/<vg>/<lv>`` or ``<vg>/<lv>`` → (vg, lv); LV names are checked."""
    text = str(value)
    parts = text[len("/dev/"):].split("/") if text.startswith("/dev/") else text.split("/")
    if len(parts) == 2:
        return vg(parts[0]), _lv(parts[1])
    if len(parts) == 1 and default_vg:
        return vg(default_vg), _lv(parts[0])
    raise DriverError(f"invalid volume {text!r}: expected /dev/<vg>/<lv> or <vg>/<lv>")


def _lv(value):
    if not LV_RE.match(value) or value.startswith("-"):
        raise DriverError(f"invalid LV name {value!r}")
    return value


def argc(argv, low, high=None, usage=""):
    """Check the argument count (``high=None``: exactly ``low``; -1: unlimited)."""
    high = low if high is None else high
    if len(argv) < low or (high >= 0 and len(argv) > high):
        raise DriverError(f"wrong number of arguments ({len(argv)}); usage: {usage}")
    return argv
