"""
Worker primitives of the gfs2clvm OpenNebula storage driver: clustered LVM
(lvmlockd) volumes of one shared VG and VM files on the GFS2 file system
mounted at ``mountpoint``.

This module is the only code of the driver that touches disks. It is
self-contained (stdlib + salt) because salt-ssh ships it alone to the workers.

Settings come from ``config.get('gfs2clvm', {})`` (minion options, e.g. the
salt-ssh roster's ``minion_opts``, then pillar) merged over ``DEFAULTS``.

Rules every public function follows:

* every argument is validated before any command runs (``SaltInvocationError``);
* commands run as argv lists through ``_run`` (``cmd.run_all``,
  ``python_shell=False``), LVM ones as ``sudo -n <lvm_bin>/<cmd>`` when not root,
  always non-interactive;
* LVM state is read only from ``lvs``/``vgs --reportformat json``;
* failures raise ``CommandExecutionError`` with one line an admin can act on;
* nothing is written under ``mountpoint`` unless ``mount_check`` passes;
* a function that creates something and then fails removes it again.
"""

import base64
import binascii
import errno
import fcntl
import glob
import grp
import hashlib
import json
import logging
import mmap
import os
import pwd
import re
import shutil
import stat
import struct
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "gfs2clvm"
__version__ = "0.1.0"  # = gfs2clvm_driver/version.py VERSION (tests/unit/test_version.py)
_RE_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+-]{0,31}$")

DEFAULTS = {
    "vg": "vg_cloudstorage",
    "mountpoint": "/var/lib/one",
    "mount_check": "gfs2",
    "default_size_mb": 1024,
    "dd_bs": "4M",
    "zero_new": True,
    "wipe_on_delete": False,
    "thin_pool": "",
    "owner": "oneadmin",
    "group": "oneadmin",
    "sudo": "auto",
    "lvm_bin": "/sbin",
    "snapshot_size_pct": 100,
}

# Fields read from lvs/vgs (one list each, so every call parses the same JSON).
# LV fields only: a segment field (segtype, seg_size...) makes lvs print one row
# per segment, so a grown LV would be listed twice.
LV_FIELDS = (
    "lv_name,vg_name,lv_path,lv_size,lv_attr,lv_layout,lv_active,lv_active_locally,"
    "lv_active_exclusively,lv_device_open,origin,pool_lv,data_percent"
)
# orphans also reads when each LV was made (lv_time: LVM's report/time_format,
# by default "%Y-%m-%d %T %z" in the host's local time; "" when unknown)
ORPHAN_LV_FIELDS = LV_FIELDS + ",lv_time"
VG_FIELDS = (
    "vg_name,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,"
    "lv_count,vg_shared,vg_lock_type,vg_attr"
)

MOUNTINFO = "/proc/self/mountinfo"
PROC_MISC = "/proc/misc"
MAX_ID = 2**31
MAX_MB = 2**40

RE_VM_LV = re.compile(r"^lv-one-(\d+)-(\d+)$")
RE_SNAP_LV = re.compile(r"^lv-one-(\d+)-(\d+)-s(\d+)$")
RE_IMAGE_LV = re.compile(r"^lv-oneimg-[0-9a-f]{32}$")
_RE_VG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}$")
_RE_LV = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,63}$")
_RE_PREFIX = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
_RE_ID = re.compile(r"^[0-9]{1,10}$")
_RE_SIZE = re.compile(r"^([0-9]{1,15})([MmGgTt]?)$")
_RE_BS = re.compile(r"^([0-9]{1,10})([KkMm]?)$")
_RE_USER = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}\$?$")
_RE_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")
_RE_LABEL = re.compile(r"^[A-Za-z0-9_]{1,32}$")
_RE_URL = re.compile(r"^https?://[A-Za-z0-9._~:/?#@!$&()*+,=%\[\]-]+$")
_BAD_CHARS = re.compile(r"[\s;'\"`\\$|&<>*?\x00-\x1f]")

# ioctl numbers of linux/fs.h
_BLKGETSIZE64 = 0x80081272
_BLKZEROOUT = 0x127F
_ALIGN = 4096

_MKFS = {
    "ext2": ["mkfs.ext2", "-F", "-q"],
    "ext3": ["mkfs.ext3", "-F", "-q"],
    "ext4": ["mkfs.ext4", "-F", "-q"],
    "xfs": ["mkfs.xfs", "-f", "-q"],
    "btrfs": ["mkfs.btrfs", "-f", "-q"],
    "vfat": ["mkfs.vfat"],
}


def __virtual__():
    """
    Always load: ``gfs2clvm.check`` must be able to report what a host lacks.
    """
    return True


# --------------------------------------------------------------------------
# validators: one per kind of input, all raise SaltInvocationError
# --------------------------------------------------------------------------
def _id(value, what="id"):
    """A non-negative integer id ``< 2**31`` given as int or decimal string."""
    if isinstance(value, bool):
        raise SaltInvocationError(f"{what} must be an integer, not {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _RE_ID.match(value):
        number = int(value)
    else:
        raise SaltInvocationError(f"{what} must be a non-negative integer, not {value!r}")
    if not 0 <= number < MAX_ID:
        raise SaltInvocationError(f"{what} must be between 0 and {MAX_ID - 1}, not {value!r}")
    return number


def _vg(value):
    """A VG name."""
    if not isinstance(value, str) or not _RE_VG.match(value) or value in (".", ".."):
        raise SaltInvocationError(f"invalid volume group name {value!r}")
    return value


def _lv(value):
    """An LV name (LVM's characters, at most 64 of them)."""
    if not isinstance(value, str) or not _RE_LV.match(value) or value in (".", ".."):
        raise SaltInvocationError(f"invalid logical volume name {value!r}")
    return value


def _size_mb(value, what="size"):
    """A positive size: int MiB, or a string with an optional M/G/T suffix -> MiB."""
    if isinstance(value, bool):
        raise SaltInvocationError(f"{what} must be a positive size, not {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _RE_SIZE.match(value):
        digits, unit = _RE_SIZE.match(value).groups()
        number = int(digits) * {"": 1, "m": 1, "g": 1024, "t": 1024**2}[unit.lower()]
    else:
        raise SaltInvocationError(f"{what} must be a positive size in MiB (or with M/G/T), not {value!r}")
    if not 0 < number < MAX_MB:
        raise SaltInvocationError(f"{what} must be a positive size in MiB, not {value!r}")
    return number


def _flag(value, what):
    """A boolean option (True/False or 'true'/'false')."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise SaltInvocationError(f"{what} must be true or false, not {value!r}")


def _choice(value, choices, what):
    """One of a fixed set of strings."""
    if value not in choices:
        raise SaltInvocationError(f"{what} must be one of {', '.join(choices)}, not {value!r}")
    return value


def _account(value, what):
    """A user or group name."""
    if not isinstance(value, str) or not _RE_USER.match(value):
        raise SaltInvocationError(f"invalid {what} name {value!r}")
    return value


def _clean_path(value, what="path"):
    """An absolute, normalised path without '..' or shell/quote/space characters."""
    if not isinstance(value, str) or not value.startswith("/") or _BAD_CHARS.search(value):
        raise SaltInvocationError(f"{what} must be an absolute path without spaces, quotes or ';': {value!r}")
    if ".." in value.split("/") or len(value) > 4096:
        raise SaltInvocationError(f"{what} must not contain '..': {value!r}")
    return os.path.normpath(value).replace("//", "/")


def _lv_device(path):
    """(vg, lv) when ``path`` is an LV device path ``/dev/<vg>/<lv>``, else None."""
    parts = path.split("/")
    if len(parts) == 4 and parts[1] == "dev" and _RE_VG.match(parts[2]) and _RE_LV.match(parts[3]):
        if parts[2] not in ("mapper", "disk", "block", "shm", "pts", "fd", "net"):
            return parts[2], parts[3]
    return None


def _under(path, root):
    """True when ``path`` is ``root`` itself or inside it (both normalised)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _local_path(conf, value, what="path", follow=True):
    """Classify and check one end of an operation: ``(kind, path)``.

    kind ``"lv"``: an LV device path ``/dev/<vg>/<lv>``; a symlink under the
    mountpoint pointing at one (``disk.N``) counts as that device when
    ``follow``. kind ``"file"``: a path strictly under ``mountpoint`` that stays
    there after resolving symlinks (of its parents only, unless ``follow``).
    """
    path = _clean_path(value, what)
    if _lv_device(path):
        return "lv", path
    root = conf["mountpoint"]
    if not _under(path, root) or path == root:
        raise SaltInvocationError(f"{what} {path} is not under the mountpoint {root}")
    if follow and os.path.islink(path):
        target = os.readlink(path)
        if target.startswith("/") and _lv_device(os.path.normpath(target)):
            return "lv", os.path.normpath(target)
    real = os.path.realpath(path if follow else os.path.dirname(path))
    if not _under(real, os.path.realpath(root)):
        raise SaltInvocationError(f"{what} {path} resolves to {real}, outside the mountpoint {root}")
    return "file", path


def _file_path(conf, value, what="path", follow=True):
    """A path under ``mountpoint`` that is not an LV device (see ``_local_path``)."""
    kind, path = _local_path(conf, value, what, follow)
    if kind != "file":
        raise SaltInvocationError(f"{what} must be a file under {conf['mountpoint']}, not the device {path}")
    return path


def _vmids(value):
    """None, or a set of VM ids from a list (or a comma-separated string)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [item for item in value.split(",") if item]
    if not isinstance(value, (list, tuple, set)):
        raise SaltInvocationError(f"vmids must be a list of VM ids, not {value!r}")
    return {_id(item, "vmid") for item in value}


def _url(value):
    """An http(s) URL without spaces or quotes."""
    if not isinstance(value, str) or not _RE_URL.match(value) or len(value) > 4096 or "'" in value:
        raise SaltInvocationError(f"invalid URL {value!r}")
    return value


def _sha256(value):
    """None, True (compute) or a 64-hex digest (compute and verify)."""
    if value is None or value is False:
        return None
    if value is True:
        return True
    if isinstance(value, str) and re.match(r"^[0-9a-fA-F]{64}$", value):
        return value.lower()
    raise SaltInvocationError(f"sha256 must be true or a hex sha256 digest, not {value!r}")


# --------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------
def _config():
    """The module settings: ``config.get('gfs2clvm')`` over ``DEFAULTS``, validated."""
    given = __salt__["config.get"]("gfs2clvm", {}) or {}
    if not isinstance(given, dict):
        raise SaltInvocationError("the gfs2clvm configuration must be a mapping")
    conf = dict(DEFAULTS)
    conf.update({key: val for key, val in given.items() if key in DEFAULTS})
    checks = {
        "vg": _vg,
        "mountpoint": lambda v: _clean_path(v, "mountpoint"),
        "mount_check": lambda v: _choice(v, ("gfs2", "mount", "none"), "mount_check"),
        "default_size_mb": lambda v: _size_mb(v, "default_size_mb"),
        "dd_bs": _block_size,
        "zero_new": lambda v: _flag(v, "zero_new"),
        "wipe_on_delete": lambda v: _flag(v, "wipe_on_delete"),
        "thin_pool": lambda v: _lv(v) if v else "",
        "owner": lambda v: _account(v, "owner"),
        "group": lambda v: _account(v, "group"),
        "sudo": lambda v: "auto" if v == "auto" else _flag(v, "sudo"),
        "lvm_bin": lambda v: _clean_path(v, "lvm_bin"),
        "snapshot_size_pct": _percent,
    }
    for key, check in checks.items():
        try:
            conf[key] = check(conf[key])
        except SaltInvocationError as err:
            raise SaltInvocationError(f"gfs2clvm setting {key}: {err}") from err
    return conf


def _percent(value):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 100:
        raise SaltInvocationError(f"must be a percentage 1..100, not {value!r}")
    return value


def _block_size(value):
    """dd-style block size ('4M', '512K', bytes) -> bytes, a multiple of 4 KiB."""
    match = _RE_BS.match(str(value)) if not isinstance(value, bool) else None
    if not match:
        raise SaltInvocationError(f"dd_bs must look like 4M, 512K or a byte count, not {value!r}")
    size = int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2}[match.group(2).lower()]
    if size <= 0 or size % _ALIGN or size > 256 * 1024**2:
        raise SaltInvocationError(f"dd_bs must be a multiple of 4K up to 256M, not {value!r}")
    return size


# --------------------------------------------------------------------------
# the one command runner
# --------------------------------------------------------------------------
def _run(argv, quiet=False):
    """Run ``argv`` (a list, no shell) through ``cmd.run_all``.

    quiet=True: a probe; return the result whatever the exit code.
    Otherwise raise ``CommandExecutionError`` with one actionable line.
    """
    try:
        ret = __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=quiet)
    except CommandExecutionError as err:
        raise CommandExecutionError(f"{_cmd_name(argv)}: {_first_line(str(err))}") from err
    if ret["retcode"] != 0 and not quiet:
        raise CommandExecutionError(_error_line(argv, ret))
    return ret


def _cmd_name(argv):
    """The command's base name, skipping a ``sudo -n`` prefix."""
    words = [word for word in argv if not word.startswith("-")]
    if words and words[0] == "sudo" and len(words) > 1:
        words = words[1:]
    return os.path.basename(words[0]) if words else "?"


def _first_line(text):
    """The first line of ``text`` that is neither empty nor an LVM warning."""
    lines = [line.strip() for line in (text or "").splitlines()]
    useful = [line for line in lines if line and not line.startswith("WARNING:") and " leaked on " not in line]
    return useful[0] if useful else ""


def _error_line(argv, ret):
    """One line from a failed command: '<cmd> failed (rc N): <first stderr line>'."""
    line = _first_line(ret.get("stderr")) or _first_line(ret.get("stdout")) or "no error output"
    if line.startswith("sudo:"):
        line += f" (is there a NOPASSWD sudoers rule for {argv[2] if len(argv) > 2 else argv[-1]}?)"
    return f"{_cmd_name(argv)} failed (rc {ret['retcode']}): {line}"


def _lvm(conf, cmd, *args):
    """argv of an LVM command, with ``sudo -n`` when configured/needed."""
    use_sudo = (os.geteuid() != 0) if conf["sudo"] == "auto" else conf["sudo"]
    return (["sudo", "-n"] if use_sudo else []) + [f"{conf['lvm_bin']}/{cmd}", *args]


# --------------------------------------------------------------------------
# LVM state: JSON reports only
# --------------------------------------------------------------------------
def _report(ret, kind, argv):
    """The list of rows of an lvs/vgs JSON report."""
    try:
        return json.loads(ret["stdout"])["report"][0][kind]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise CommandExecutionError(f"{_cmd_name(argv)}: unparsable JSON report ({err})") from err


def _mb(text):
    """'64.00' / '<15.88' (MiB, --nosuffix) -> int MiB."""
    try:
        return int(round(float(str(text).lstrip("<>"))))
    except ValueError:
        return 0


def _lv_record(row):
    """One JSON-safe LV dict from one ``lvs`` JSON row."""
    attr = row.get("lv_attr", "")
    active = bool(row.get("lv_active_locally"))
    exclusive = row.get("lv_active_exclusively") == "active exclusively"
    layout = row.get("lv_layout", "")
    kind = {"thin,sparse": "thin", "thin,pool": "thin-pool"}.get(layout, layout.split(",")[0] or "unknown")
    thin = kind == "thin"
    data = row.get("data_percent") or ""
    return {
        "name": row["lv_name"],
        "vg": row["vg_name"],
        "path": row.get("lv_path") or "",
        "size_mb": _mb(row.get("lv_size", "0")),
        "attr": attr,
        "type": kind,
        "active": active,
        "exclusive": active and exclusive,
        "shared": active and not exclusive,
        "open": row.get("lv_device_open") == "open",
        "origin": row.get("origin") or None,
        "pool": row.get("pool_lv") or None,
        "thin": thin,
        "snapshot": attr[:1] in ("s", "S") or (thin and bool(row.get("origin"))),
        "data_percent": float(data) if data else None,
    }


def _lv_rows(conf, vg, select=None, fields=LV_FIELDS):
    """The ``lvs`` JSON rows of ``vg`` (optionally an LVM ``-S`` selection); raises if the VG is unknown."""
    argv = _lvm(conf, "lvs", "--reportformat", "json", "--units", "m", "--nosuffix", "-o", fields)
    if select:
        argv += ["-S", select]
    argv.append(vg)
    ret = _run(argv, quiet=True)
    if ret["retcode"] != 0:
        line = _first_line(ret.get("stderr"))
        if "not found" in line and "olume group" in line:
            raise CommandExecutionError(f"volume group {vg} not found on this host")
        raise CommandExecutionError(_error_line(argv, ret))
    return _report(ret, "lv", argv)


def _lvs(conf, vg, select=None):
    """LV records of ``vg`` (optionally an LVM ``-S`` selection); raises if the VG is unknown."""
    return [_lv_record(row) for row in _lv_rows(conf, vg, select)]


def _lv_get(conf, vg, name):
    """The record of LV ``vg/name`` (whole-name match) or None."""
    rows = [lv for lv in _lvs(conf, vg, f"lv_name={name}") if lv["name"] == name]
    return rows[0] if rows else None


def _lv_need(conf, vg, name):
    """The record of LV ``vg/name``; raises when it does not exist."""
    lv = _lv_get(conf, vg, name)
    if lv is None:
        raise CommandExecutionError(f"logical volume {vg}/{name} not found")
    return lv


def _vgs(conf, vg):
    """The ``vgs`` JSON row of ``vg``; raises if unknown."""
    argv = _lvm(conf, "vgs", "--reportformat", "json", "--units", "m", "--nosuffix", "-o", VG_FIELDS, vg)
    ret = _run(argv, quiet=True)
    rows = _report(ret, "vg", argv) if ret["retcode"] == 0 else []
    if not rows:
        line = _first_line(ret.get("stderr"))
        if ret["retcode"] == 0 or ("not found" in line and "olume group" in line):
            raise CommandExecutionError(f"volume group {vg} not found on this host")
        raise CommandExecutionError(_error_line(argv, ret))
    return rows[0]


# --------------------------------------------------------------------------
# names: one builder per name, whole-name matching
# --------------------------------------------------------------------------
def name_vm(vmid, diskid):
    """
    Name of the LV of disk ``diskid`` of VM ``vmid``: ``lv-one-<vmid>-<diskid>``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.name_vm 42 0
    """
    return f"lv-one-{_id(vmid, 'vmid')}-{_id(diskid, 'diskid')}"


def name_snap(vmid, diskid, snapid):
    """
    Name of snapshot ``snapid`` of a VM disk: ``lv-one-<vmid>-<diskid>-s<snapid>``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.name_snap 42 0 1
    """
    return f"lv-one-{_id(vmid, 'vmid')}-{_id(diskid, 'diskid')}-s{_id(snapid, 'snapid')}"


def name_image(key):
    """
    Name of an image volume: ``lv-oneimg-<32 hex>``.

    key
        32 lowercase hex digits (used as they are), or any other id string
        (e.g. ``<dsid>-<imageid>``), hashed to 32 hex digits (sha256 prefix).

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.name_image 0123456789abcdef0123456789abcdef
    """
    if isinstance(key, int) and not isinstance(key, bool):
        key = str(key)
    if not isinstance(key, str) or not key or len(key) > 256 or _BAD_CHARS.search(key):
        raise SaltInvocationError(f"invalid image key {key!r}")
    if not re.match(r"^[0-9a-f]{32}$", key):
        key = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"lv-oneimg-{key}"


def name_parse(name):
    """
    What an LV name means: ``{kind, vmid, diskid, snapid}``; kind is ``disk``,
    ``snapshot``, ``image`` or ``other`` (ids None when not applicable).

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.name_parse lv-one-42-0-s1
    """
    _lv(name)
    ret = {"name": name, "kind": "other", "vmid": None, "diskid": None, "snapid": None}
    match = RE_VM_LV.match(name) or RE_SNAP_LV.match(name)
    if match:
        ids = [int(x) for x in match.groups()]
        ret.update(kind="disk" if len(ids) == 2 else "snapshot", vmid=ids[0], diskid=ids[1])
        ret["snapid"] = ids[2] if len(ids) == 3 else None
    elif RE_IMAGE_LV.match(name):
        ret["kind"] = "image"
    return ret


def vm_dir(sysdsid, vmid):
    """
    Directory of VM ``vmid`` in system datastore ``sysdsid``:
    ``<mountpoint>/datastores/<sysdsid>/<vmid>``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.vm_dir 0 42
    """
    sysdsid, vmid = _id(sysdsid, "sysdsid"), _id(vmid, "vmid")
    return f"{_config()['mountpoint']}/datastores/{sysdsid}/{vmid}"


def _is_vm_lv(name, vmid):
    """Whole-name match: ``name`` is a disk or disk snapshot of VM ``vmid``."""
    match = RE_VM_LV.match(name) or RE_SNAP_LV.match(name)
    return bool(match) and int(match.group(1)) == vmid


# --------------------------------------------------------------------------
# local file system helpers
# --------------------------------------------------------------------------
def _mount_check(conf):
    """Raise unless ``mountpoint`` is mounted as ``mount_check`` demands."""
    if conf["mount_check"] == "none":
        return
    root = os.path.realpath(conf["mountpoint"])
    fstype = None
    try:
        with open(MOUNTINFO, encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) > 4 and fields[4].replace("\\040", " ") == root and " - " in line:
                    fstype = line.split(" - ", 1)[1].split()[0]
    except OSError as err:
        raise CommandExecutionError(f"cannot read {MOUNTINFO}: {err.strerror}") from err
    if fstype is None or (conf["mount_check"] == "gfs2" and fstype != "gfs2"):
        found = f"a {fstype} mount" if fstype else "not a mount point"
        wanted = "gfs2 file system" if conf["mount_check"] == "gfs2" else "file system"
        raise CommandExecutionError(f"{conf['mountpoint']} is {found}, not a mounted {wanted}: refusing to write there")


def _owner_ids(conf, user=None, group=None):
    """(uid, gid) of the configured (or given) owner and group."""
    user, group = user or conf["owner"], group or conf["group"]
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError as err:
        raise CommandExecutionError(f"user {user} does not exist on this host") from err
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError as err:
        raise CommandExecutionError(f"group {group} does not exist on this host") from err
    return uid, gid


def _give(conf, path):
    """When running as root, hand a file we created to owner:group."""
    if os.geteuid() == 0:
        uid, gid = _owner_ids(conf)
        os.lchown(path, uid, gid)


def _makedirs(conf, path):
    """Create ``path`` (under the mountpoint) and missing parents, owned by owner:group."""
    missing = []
    while not os.path.isdir(path) and _under(path, conf["mountpoint"]) and path != conf["mountpoint"]:
        missing.append(path)
        path = os.path.dirname(path)
    for new in reversed(missing):
        try:
            os.mkdir(new, 0o755)
        except FileExistsError:
            continue
        except OSError as err:
            raise CommandExecutionError(f"cannot create directory {new}: {err.strerror}") from err
        _give(conf, new)


def _os_error(what, path, err):
    return CommandExecutionError(f"{what} {path}: {err.strerror or err}")


# --------------------------------------------------------------------------
# LVM primitives
# --------------------------------------------------------------------------
def _byte_size(path):
    """Bytes of a file or block device (its end offset); unreadable: ``cannot read`` error."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
    except OSError as err:
        raise _os_error("cannot read", path, err) from err


def _zero_device(path):
    """Make a whole block device read zeros: ``blkdiscard -z``, else the BLKZEROOUT ioctl."""
    ret = _run(["blkdiscard", "-z", path], quiet=True)
    if ret["retcode"] == 0:
        return "blkdiscard"
    log.info("blkdiscard -z %s failed (%s): BLKZEROOUT ioctl instead", path, _first_line(ret.get("stderr")))
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
            fcntl.ioctl(fd, _BLKZEROOUT, struct.pack("QQ", 0, size))
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as err:
        raise _os_error("cannot zero", path, err) from err
    return "ioctl"


def lv_create(name, size_mb=None, vg=None, thin=None, zero=None):
    """
    Create a logical volume (thick, or thin in ``thin_pool``) and zero it.

    name
        LV name (see ``name_vm``, ``name_image``)
    size_mb
        size in MiB (int) or with an M/G/T suffix; default ``default_size_mb``
    vg
        volume group; default ``vg``
    thin
        create a thin LV in ``thin_pool``; default: thin when ``thin_pool`` is set
    zero
        zero a thick LV (blkdiscard -z, else BLKZEROOUT); default ``zero_new``.
        Thin LVs are not zeroed: the pool hands out zeroed blocks.

    Refuses an existing name. On failure after creation the LV is removed.
    Returns ``{name, vg, path, size_mb, thin, zeroed}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.lv_create lv-one-42-0 size_mb=10G
    """
    conf = _config()
    name, vg = _lv(name), _vg(vg or conf["vg"])
    size = _size_mb(size_mb) if size_mb is not None else conf["default_size_mb"]
    thin = bool(conf["thin_pool"]) if thin is None else _flag(thin, "thin")
    zero = conf["zero_new"] if zero is None else _flag(zero, "zero")
    if thin and not conf["thin_pool"]:
        raise SaltInvocationError("thin=True needs thin_pool in the gfs2clvm configuration")
    if _lv_get(conf, vg, name):
        raise CommandExecutionError(f"logical volume {vg}/{name} already exists")
    if thin:
        pool = f"{vg}/{conf['thin_pool']}"
        argv = _lvm(conf, "lvcreate", "--yes", "-W", "y", "-n", name, "-V", f"{size}m", "--thin", pool)
    else:
        argv = _lvm(conf, "lvcreate", "--yes", "-W", "y", "-Z", "y", "-n", name, "-L", f"{size}m", vg)
    _run(argv)
    path = f"/dev/{vg}/{name}"
    zeroed = False
    if zero and not thin:
        try:
            _zero_device(path)
            zeroed = True
        except CommandExecutionError:
            _run(_lvm(conf, "lvremove", "--yes", f"{vg}/{name}"), quiet=True)
            raise
    return {"name": name, "vg": vg, "path": path, "size_mb": size, "thin": thin, "zeroed": zeroed}


def lv_remove(name, vg=None, wipe=None, missing_ok=False):
    """
    Remove a logical volume, optionally zeroing it first.

    name
        LV name
    vg
        volume group; default ``vg``
    wipe
        zero the LV before removing it (thick, non-snapshot LVs; a thin LV's
        blocks return to the pool, which zeroes them for the next user);
        default ``wipe_on_delete``
    missing_ok
        an absent LV is not an error (``removed: False``)

    Refuses an LV that is open (in use). Returns ``{name, vg, removed, wiped}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.lv_remove lv-one-42-0 wipe=True
    """
    conf = _config()
    name, vg = _lv(name), _vg(vg or conf["vg"])
    wipe = conf["wipe_on_delete"] if wipe is None else _flag(wipe, "wipe")
    missing_ok = _flag(missing_ok, "missing_ok")
    lv = _lv_get(conf, vg, name)
    if lv is None:
        if missing_ok:
            return {"name": name, "vg": vg, "removed": False, "wiped": False}
        raise CommandExecutionError(f"logical volume {vg}/{name} not found")
    if lv["open"]:
        raise CommandExecutionError(f"logical volume {vg}/{name} is open (in use): not removing it")
    wiped = wipe and _wipe(conf, lv)
    _run(_lvm(conf, "lvremove", "--yes", f"{vg}/{name}"))
    return {"name": name, "vg": vg, "removed": True, "wiped": wiped}


def _wipe(conf, lv):
    """Zero a thick, non-snapshot LV before removal (activating it exclusively if needed)."""
    if lv["thin"] or lv["snapshot"] or lv["type"] == "thin-pool":
        return False
    if not lv["active"]:
        _run(_lvm(conf, "lvchange", "-aey", f"{lv['vg']}/{lv['name']}"))
    _zero_device(f"/dev/{lv['vg']}/{lv['name']}")
    return True


def lv_list(vg=None, vmid=None, prefix=None):
    """
    List logical volumes of the VG, of one VM, or with a name prefix.

    vg
        volume group; default ``vg``
    vmid
        only the disks and disk snapshots of this VM (``lv-one-<vmid>-*``,
        selected by LVM, so the cost grows with the VM, not the VG)
    prefix
        only LVs whose name starts with this (letters, digits, ``_``, ``-``)

    Returns ``{vg, lvs: [lv_info dicts]}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.lv_list vmid=42
    """
    conf = _config()
    vg = _vg(vg or conf["vg"])
    if vmid is not None and prefix is not None:
        raise SaltInvocationError("give vmid or prefix, not both")
    if vmid is not None:
        vmid = _id(vmid, "vmid")
        lvs = [lv for lv in _lvs(conf, vg, f"lv_name=~^lv-one-{vmid}-") if _is_vm_lv(lv["name"], vmid)]
    elif prefix is not None:
        if not isinstance(prefix, str) or not _RE_PREFIX.match(prefix):
            raise SaltInvocationError(f"invalid name prefix {prefix!r}")
        lvs = [lv for lv in _lvs(conf, vg, f"lv_name=~^{prefix}") if lv["name"].startswith(prefix)]
    else:
        lvs = _lvs(conf, vg)
    return {"vg": vg, "lvs": lvs}


def lv_info(name, vg=None):
    """
    Facts about one logical volume; raises if it does not exist.

    Returns ``{name, vg, path, size_mb, attr, type, active, exclusive, shared,
    open, origin, pool, thin, snapshot, data_percent}`` (``exclusive``/``shared``
    as LVM reports them for the local host).

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.lv_info lv-one-42-0
    """
    conf = _config()
    name, vg = _lv(name), _vg(vg or conf["vg"])
    return _lv_need(conf, vg, name)


def lv_activate(name, vg=None, mode="exclusive"):
    """
    Activate a logical volume on this host under an lvmlockd lock.

    mode
        ``exclusive`` (``lvchange -aey``: refused while another host has it
        active) or ``shared`` (``lvchange -asy``: for the duration of a live
        migration; thin LVs cannot be shared)

    Activation-skip flags (thin snapshots) are ignored (``-K``). Raises when
    the LV does not exist, or for ``shared`` on a thin LV.
    Returns ``{name, vg, active, mode}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.lv_activate lv-one-42-0 mode=shared
    """
    conf = _config()
    name, vg = _lv(name), _vg(vg or conf["vg"])
    mode = _choice(mode, ("exclusive", "shared"), "mode")
    if _lv_need(conf, vg, name)["thin"] and mode == "shared":
        raise CommandExecutionError(f"{vg}/{name} is a thin LV: lvmlockd allows thin LVs only exclusively")
    flag = "-aey" if mode == "exclusive" else "-asy"
    _run(_lvm(conf, "lvchange", flag, "-K", f"{vg}/{name}"))
    return {"name": name, "vg": vg, "active": True, "mode": mode}


def lv_deactivate(name, vg=None):
    """
    Deactivate a logical volume on this host (releases its lvmlockd lock);
    raises when it does not exist.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.lv_deactivate lv-one-42-0
    """
    conf = _config()
    name, vg = _lv(name), _vg(vg or conf["vg"])
    _lv_need(conf, vg, name)
    _run(_lvm(conf, "lvchange", "-an", f"{vg}/{name}"))
    return {"name": name, "vg": vg, "active": False}


def lv_snapshot(origin, name, vg=None, size_mb=None, allow_open=False):
    """
    Snapshot a logical volume that is not in use.

    origin
        LV to snapshot; refused while it is open (a running VM's disk)
    name
        snapshot LV name (see ``name_snap``)
    size_mb
        COW size of a thick snapshot; default ``snapshot_size_pct`` % of the
        origin, and at 100 (the default) the origin's size plus the COW
        metadata (``_cow_full_mb``): such a snapshot cannot overflow, however
        much of the origin is rewritten.  A thin origin gets a thin snapshot
        (no size).
    allow_open
        snapshot an open origin too (the live backup of a running VM: a
        crash-consistent point-in-time copy that is read and removed at once)

    Returns ``{name, vg, origin, path, thin, size_mb}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.lv_snapshot lv-one-42-0 lv-one-42-0-s1
    """
    conf = _config()
    origin, name, vg = _lv(origin), _lv(name), _vg(vg or conf["vg"])
    size = _size_mb(size_mb) if size_mb is not None else None
    allow_open = _flag(allow_open, "allow_open")
    src = _lv_need(conf, vg, origin)
    if src["open"] and not allow_open:
        raise CommandExecutionError(f"logical volume {vg}/{origin} is open (in use): not snapshotting it")
    if _lv_get(conf, vg, name):
        raise CommandExecutionError(f"logical volume {vg}/{name} already exists")
    if src["thin"]:
        size = src["size_mb"]
        _run(_lvm(conf, "lvcreate", "--yes", "-s", "-n", name, f"{vg}/{origin}"))
    else:
        size = size or _cow_size_mb(src["size_mb"], conf["snapshot_size_pct"])
        _run(_lvm(conf, "lvcreate", "--yes", "-s", "-n", name, "-L", f"{size}m", f"{vg}/{origin}"))
    path = f"/dev/{vg}/{name}"
    return {"name": name, "vg": vg, "origin": origin, "path": path, "thin": src["thin"], "size_mb": size}


def _cow_size_mb(origin_mb, pct):
    """COW size (MiB) of a thick snapshot of ``origin_mb`` at ``pct`` %.

    At 100 % the snapshot must hold every chunk of the origin plus the exception
    store's metadata: dm-snapshot keeps one 16-byte exception per chunk, 256 per
    4 KiB chunk (LVM's default chunk size), plus a header chunk -- the same sum
    as lvm2's ``cow_max_extents``.  So origin + 1/256 + 1 MiB; LVM rounds the size
    up to whole extents.  Less than 100 % may overflow (the snapshot then turns
    invalid, ``swi-I-s``; ``lv_merge`` and the TM actions refuse such one)."""
    if pct >= 100:
        return origin_mb + -(-origin_mb // 256) + 1
    return max(4, -(-origin_mb * pct // 100))


def _snapshot_invalid(lv):
    """True when a thick snapshot is invalid: its COW area overflowed (``lv_attr``
    state ``I``, or ``S`` when suspended).  LVM shows it only while the snapshot
    is active (with its origin)."""
    attr = lv.get("attr") or ""
    return attr[:1] in ("s", "S") and attr[4:5] in ("I", "S")


def lv_merge(snapshot, vg=None):
    """
    Put a thick snapshot's content back into its origin with ``lvconvert
    --merge`` (LVM's own revert: the snapshot's chunks are copied back by the
    kernel's snapshot-merge target and nothing new is pushed into the snapshot,
    so it cannot overflow half way; an interrupted merge resumes on the origin's
    next activation).  The snapshot LV is gone afterwards.

    snapshot
        thick snapshot LV (``lv-one-<vm>-<disk>-s<snap>``); a thin snapshot is
        refused (revert a thin disk by snapshotting the snapshot)
    vg
        volume group; default ``vg``

    Refused while the origin is open (a running VM), and when the snapshot is
    invalid (its copy-on-write area overflowed).  An inactive origin is
    activated exclusively for the merge (lvmlockd: snapshots are exclusive) and
    deactivated again.  ``lvconvert`` waits until the merge has finished.
    Returns ``{name, vg, origin, merged}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.lv_merge lv-one-42-0-s1
    """
    conf = _config()
    name, vg = _lv(snapshot), _vg(vg or conf["vg"])
    snap = _lv_need(conf, vg, name)
    if snap["thin"] or not snap["snapshot"] or not snap["origin"]:
        raise CommandExecutionError(f"{vg}/{name} is not a thick snapshot: lvconvert --merge does not apply")
    origin = _lv_need(conf, vg, snap["origin"])
    if origin["open"]:
        raise CommandExecutionError(f"logical volume {vg}/{origin['name']} is open (in use): not merging into it")
    activated = not origin["active"]
    if activated:
        _run(_lvm(conf, "lvchange", "-aey", f"{vg}/{origin['name']}"))
    try:
        snap = _lv_need(conf, vg, name)  # active now: LVM can tell whether it is still valid
        if _snapshot_invalid(snap):
            raise CommandExecutionError(
                f"snapshot {vg}/{name} is invalid (its copy-on-write area overflowed, lv_attr {snap['attr']}):"
                " it no longer holds the disk's old content; delete it")
        _run(_lvm(conf, "lvconvert", "--yes", "--merge", f"{vg}/{name}"))
        if _lv_get(conf, vg, name) is not None:
            raise CommandExecutionError(
                f"lvconvert --merge of {vg}/{name} did not finish (LVM resumes it on the next activation of {origin['name']})")
    finally:
        if activated:
            _run(_lvm(conf, "lvchange", "-an", f"{vg}/{origin['name']}"), quiet=True)
    return {"name": name, "vg": vg, "origin": origin["name"], "merged": True}


def lv_resize(name, size_mb, vg=None):
    """
    Grow a logical volume to ``size_mb`` (never shrinks; same size = no-op).

    Returns ``{name, vg, size_mb, previous_mb, resized}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.lv_resize lv-one-42-0 20G
    """
    conf = _config()
    name, vg, size = _lv(name), _vg(vg or conf["vg"]), _size_mb(size_mb)
    lv = _lv_need(conf, vg, name)
    if size < lv["size_mb"]:
        raise CommandExecutionError(f"refusing to shrink {vg}/{name} from {lv['size_mb']} MiB to {size} MiB")
    if size > lv["size_mb"]:
        _run(_lvm(conf, "lvextend", "--yes", "-L", f"{size}m", f"{vg}/{name}"))
    return {"name": name, "vg": vg, "size_mb": size, "previous_mb": lv["size_mb"], "resized": size > lv["size_mb"]}


# --------------------------------------------------------------------------
# copy: dd semantics, sparse-aware, qcow2 through qemu-img, http(s) streamed
# --------------------------------------------------------------------------
PROGRESS_PREFIX = "gfs2clvm-progress:"
_PROGRESS_SECONDS = 5.0
_PROGRESS_PERCENT = 5
_QCOW2_MAGIC = b"QFI\xfb"
_QCOW2_DATA_FILE = 1 << 2  # incompatible feature bit: external data file
_progress_clock = time.monotonic  # the unit tests' fake clock replaces it


def _set_direct(fd, on):
    """Turn O_DIRECT on or off for ``fd``; False when the file system refuses it."""
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        want = flags | os.O_DIRECT if on else flags & ~os.O_DIRECT
        if want != flags:
            fcntl.fcntl(fd, fcntl.F_SETFL, want)
    except OSError:
        return False
    return True


class _Progress:
    """Throttled progress of a long copy, where an operator sees it while it runs: the
    worker's journal (syslog, tag ``gfs2clvm``: ``journalctl -t gfs2clvm -f``), as
    ``copy <label>: 42% (1717986918 of 4294967296 bytes)``; with ``stream`` (tests) the
    line ``gfs2clvm-progress: <percent> <done> <total>`` goes there instead.  oned reads
    an action's stderr only after it exits, so nothing goes to stderr.

    A line is written only when at least 5 s have passed since the start or the
    previous line AND the percentage grew by at least 5 points since the previous
    line, so a copy shorter than 5 s logs nothing.
    """

    def __init__(self, total, stream=None, clock=None, label=""):
        self.total, self.stream, self.clock, self.label = total, stream, clock or _progress_clock, label
        self.last_time, self.last_percent = self.clock(), 0
        self.lines = 0

    def update(self, done):
        if not self.total:
            return
        now = self.clock()
        if now - self.last_time < _PROGRESS_SECONDS:
            return
        percent = min(100, done * 100 // self.total)
        if percent - self.last_percent < _PROGRESS_PERCENT:
            return
        self.last_time, self.last_percent = now, percent
        try:
            if self.stream is None:
                import syslog  # pylint: disable=import-outside-toplevel

                syslog.openlog("gfs2clvm", 0, syslog.LOG_USER)
                syslog.syslog(syslog.LOG_INFO, f"copy {self.label}: {percent}% ({done} of {self.total} bytes)")
            else:
                self.stream.write(f"{PROGRESS_PREFIX} {percent} {done} {self.total}\n")
                self.stream.flush()
        except (OSError, ValueError):  # a closed stream must not fail the copy
            self.total = 0
            return
        self.lines += 1


class _Writer:
    """Writes chunks at offsets to a file or block device with O_DIRECT when possible.

    Holes (ranges never written) read as zeros afterwards: a file destination is
    written as a new sparse file beside its final name and renamed over it when
    complete; a device destination gets BLKZEROOUT on them unless it was freshly
    zeroed (``zeroed``).
    """

    def __init__(self, path, is_device, zeroed):
        self.path, self.is_device, self.zeroed = path, is_device, zeroed
        self.tmp = None if is_device else _temp_name(path)
        flags = os.O_WRONLY | os.O_CLOEXEC | (0 if is_device else os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW)
        self.fd = os.open(self.tmp or path, flags, 0o640)
        self.direct = self.on = _set_direct(self.fd, True)
        self.capacity = os.lseek(self.fd, 0, os.SEEK_END) if is_device else None
        self.pending = None  # [start, end) of zero bytes not yet written
        self.written = 0

    def write(self, offset, view):
        """Write ``view`` at ``offset`` (O_DIRECT when aligned)."""
        self.flush_zero()
        self._direct(offset % _ALIGN == 0 and len(view) % _ALIGN == 0)
        done, length = 0, len(view)
        while done < length:
            done += os.pwrite(self.fd, view[done:] if done else view, offset + done)
        self.written += length

    def zero(self, start, end):
        """Record that [start, end) must read as zeros."""
        if self.pending and self.pending[1] == start:
            self.pending[1] = end
        else:
            self.flush_zero()
            self.pending = [start, end]

    def flush_zero(self):
        if not self.pending:
            return
        start, end = self.pending
        self.pending = None
        if not self.is_device or self.zeroed or end <= start:
            return  # a new file has holes there already
        head, tail = -(-start // 512) * 512, end // 512 * 512
        if tail > head:
            fcntl.ioctl(self.fd, _BLKZEROOUT, struct.pack("QQ", head, tail - head))
        for lo, hi in ((start, min(head, end)), (max(tail, start), end)):
            if hi > lo:
                self._direct(False)
                os.pwrite(self.fd, bytes(hi - lo), lo)

    def _direct(self, on):
        if self.direct and on != self.on:
            _set_direct(self.fd, on)
            self.on = on

    def finish(self, size):
        self.flush_zero()
        if self.tmp:
            os.ftruncate(self.fd, size)
        os.fsync(self.fd)
        os.close(self.fd)
        self.fd = None
        if self.tmp:
            os.replace(self.tmp, self.path)

    def abort(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.tmp and os.path.lexists(self.tmp):
            os.unlink(self.tmp)


def _temp_name(path):
    """Where a file is built before it is renamed to ``path`` (same directory)."""
    return f"{path}.gfs2clvm-{os.getpid()}"


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s) URLs."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # pylint: disable=too-many-arguments
        if not re.match(r"^https?://", newurl):
            raise urllib.error.HTTPError(newurl, code, "redirect to a non-http(s) URL refused", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _urlopen(url):
    return urllib.request.build_opener(_HttpOnlyRedirects).open(url, timeout=60)  # nosec: validated http(s)


def _extents(fd, size):
    """Data extents [start, end) of a file (SEEK_DATA/SEEK_HOLE); whole range when unsupported."""
    offset = 0
    while offset < size:
        try:
            data = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:
                return
            yield offset, size
            return
        hole = min(os.lseek(fd, data, os.SEEK_HOLE), size)
        if hole > data:
            yield data, hole
        offset = hole


class _Copier:
    """One chunk loop for every raw source: zero chunks become holes when sparse.

    One page-aligned buffer for the whole copy; the source is read with O_DIRECT
    while offsets stay aligned (no page-cache copy, no cache pollution), and the
    zero test compares the buffer in place (``bytes.startswith`` takes a
    memoryview: a memcmp, no copy of the chunk).
    """

    def __init__(self, writer, bs, sparse, hasher, progress=None):
        self.writer, self.bs, self.sparse, self.hasher = writer, bs, sparse, hasher
        self.progress = progress
        self.buf = mmap.mmap(-1, bs)  # page aligned, as O_DIRECT wants
        self.view = memoryview(self.buf)
        self.zeros = bytes(bs)
        self.offset = 0
        self.rdirect = False

    def hole(self, end):
        """Source bytes up to ``end`` are zeros (a hole of the source)."""
        if end <= self.offset:
            return
        if self.hasher:
            zeros = memoryview(self.zeros)
            for start in range(self.offset, end, self.bs):
                self.hasher.update(zeros[: min(self.bs, end - start)])
        self.writer.zero(self.offset, end)
        self.offset = end
        if self.progress:
            self.progress.update(end)

    def chunk(self, length):
        """The first ``length`` bytes of the buffer are the next source bytes."""
        data = self.view[:length]
        if self.hasher:
            self.hasher.update(data)
        if self.sparse and self.zeros.startswith(data):
            self.writer.zero(self.offset, self.offset + length)
        else:
            self.writer.write(self.offset, data)
        self.offset += length
        if self.progress:
            self.progress.update(self.offset)

    def _read(self, fd, length):
        """Read the next ``length`` source bytes into the buffer; the count read."""
        if self.rdirect:
            if self.offset % _ALIGN == 0:
                try:  # a whole number of blocks; the tail of a file comes back short
                    got = os.preadv(fd, [self.view[: -(-length // _ALIGN) * _ALIGN]], self.offset)
                    return min(got, length)
                except OSError as err:
                    if err.errno != errno.EINVAL:
                        raise
            self.rdirect = False  # unaligned or refused: through the page cache from here on
            _set_direct(fd, False)
        return os.preadv(fd, [self.view[:length]], self.offset)

    def from_fd(self, fd, size, extents):
        self.rdirect = _set_direct(fd, True)
        for start, end in extents:
            self.hole(start)
            while self.offset < end:
                got = self._read(fd, min(self.bs, end - self.offset))
                if got <= 0:
                    raise CommandExecutionError(f"short read at offset {self.offset}")
                self.chunk(got)
        self.hole(size)

    def from_stream(self, stream):
        while True:
            got = 0
            while got < self.bs:
                step = stream.readinto(self.view[got:])
                if not step:
                    break
                got += step
            if got:
                self.chunk(got)
            if got < self.bs:
                return self.offset


def _copy_target(conf, value, what):
    """(kind, path) of a copy end: LV device, file under the mountpoint, or URL (src only)."""
    if isinstance(value, str) and re.match(r"^https?://", value):
        if what != "src":
            raise SaltInvocationError("dst cannot be a URL")
        return "url", _url(value)
    return _local_path(conf, value, what)


def copy(src, dst, fmt="raw", sparse=True, progress=False, sha256=None, dst_zeroed=False):
    """
    Copy an image with dd semantics: ``dd_bs`` blocks, O_DIRECT reads and
    writes, skipping the holes of the source while the destination reads zeros
    there.

    src
        LV device ``/dev/<vg>/<lv>``, a file under ``mountpoint`` (a ``disk.N``
        symlink to an LV counts as that LV), or an http(s) URL (streamed)
    dst
        LV device or file under ``mountpoint`` (a file is replaced)
    fmt
        ``raw``, ``qcow2`` (converted by ``qemu-img convert -O raw -n -W``; backing
        files, external data files and encryption refused from the header) or
        ``auto`` (qcow2 when the source has its magic)
    sparse
        skip holes and all-zero blocks of the source (default True)
    sha256
        True: return the source's sha256; a hex digest: verify it too
    dst_zeroed
        the destination device already reads zeros (freshly zeroed LV)
    progress
        log the copy's progress to the worker's journal (``journalctl -t gfs2clvm``:
        ``copy <src> -> <dst>: 42% (<done> of <total> bytes)``), at most one line per
        5 s and per 5 % (none for a copy shorter than 5 s); raw copies only, and
        URLs only with a Content-Length

    Returns ``{src, dst, fmt, bytes, written, seconds, sha256}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.copy /var/lib/one/datastores/1/0123abcd /dev/vg_cloudstorage/lv-one-42-0
    """
    conf = _config()
    src_kind, src = _copy_target(conf, src, "src")
    dst_kind, dst = _copy_target(conf, dst, "dst")
    fmt = _choice(fmt, ("raw", "qcow2", "auto"), "fmt")
    sparse, progress = _flag(sparse, "sparse"), _flag(progress, "progress")
    want, dst_zeroed = _sha256(sha256), _flag(dst_zeroed, "dst_zeroed")
    if src == dst:
        raise SaltInvocationError("src and dst are the same")
    if src_kind == "url" and fmt != "raw":
        raise SaltInvocationError("only raw images can be streamed from a URL")
    if dst_kind == "file":
        _mount_check(conf)
        _makedirs(conf, os.path.dirname(dst))
    if fmt == "auto":
        fmt = "qcow2" if _is_qcow2(src) else "raw"
    started = time.monotonic()
    if fmt == "qcow2":
        size, written = _copy_qcow2(src, dst, dst_kind == "lv", dst_zeroed), None
        digest = _file_sha256(src, conf["dd_bs"]) if want else None
    else:
        size, written, digest = _copy_raw(conf, src_kind, src, dst_kind, dst,
                                          sparse, bool(want), dst_zeroed, progress)
    if dst_kind == "file":
        _give(conf, dst)
    if want not in (None, True) and digest != want:
        if dst_kind == "file":
            os.unlink(dst)
        raise CommandExecutionError(f"sha256 mismatch for {src}: got {digest}, expected {want}")
    seconds = round(time.monotonic() - started, 3)
    if progress:
        log.info("gfs2clvm.copy %s -> %s: %d bytes in %.1f s", src, dst, size, seconds)
    return {"src": src, "dst": dst, "fmt": fmt, "bytes": size, "written": written, "seconds": seconds, "sha256": digest}


def _is_qcow2(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == _QCOW2_MAGIC
    except OSError as err:
        raise _os_error("cannot read", path, err) from err


def _qcow2_size(path):
    """Virtual size of a qcow2 image, read from its header (no ``qemu-img info`` process).

    Refuses what must not be followed or cannot be converted alone: a backing
    file, an external data file (v3 incompatible feature bit 2), encryption.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(104)
    except OSError as err:
        raise _os_error("cannot read", path, err) from err
    if len(head) < 72 or head[:4] != _QCOW2_MAGIC:
        raise CommandExecutionError(f"{path} is not a qcow2 image (no qcow2 header)")
    version, backing_offset, _, _, size, crypt = struct.unpack(">IQIIQI", head[4:36])
    if version not in (2, 3):
        raise CommandExecutionError(f"{path}: qcow2 version {version} is not supported (2 or 3)")
    if backing_offset:
        raise CommandExecutionError(f"{path} has a backing file: refusing to follow it")
    if version == 3 and len(head) >= 80 and struct.unpack(">Q", head[72:80])[0] & _QCOW2_DATA_FILE:
        raise CommandExecutionError(f"{path} has an external data file: refusing to follow it")
    if crypt:
        raise CommandExecutionError(f"{path} is encrypted: convert it to an unencrypted image first")
    return size


def image_info(src):
    """
    Format and virtual size of an image: ``raw``, or ``qcow2`` checked by
    ``qemu-img info --output=json`` (a backing file, an external data file or
    encryption refused, with the header read first so qemu-img never opens any).
    A raw file costs no process; a URL is only peeked at (its first bytes: the
    qcow2 magic), so its ``virtual_size`` is None.

    src
        a file under ``mountpoint``, an LV device or an http(s) URL

    Returns ``{src, format, virtual_size, bytes}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.image_info /var/lib/one/.gfs2clvm-staging/0123abcd.img
    """
    conf = _config()
    kind, src = _copy_target(conf, src, "src")
    if kind == "url":
        try:
            with _urlopen(src) as resp:
                head = resp.read(len(_QCOW2_MAGIC))
        except (OSError, ValueError) as err:
            raise CommandExecutionError(f"cannot read {src}: {getattr(err, 'reason', None) or err}") from err
        return {"src": src, "format": "qcow2" if head == _QCOW2_MAGIC else "raw", "virtual_size": None, "bytes": None}
    nbytes = _byte_size(src)
    if not _is_qcow2(src):
        return {"src": src, "format": "raw", "virtual_size": nbytes, "bytes": nbytes}
    _qcow2_size(src)  # the header's refusals, before qemu-img opens the image
    out = _run(["qemu-img", "info", "--output=json", "-f", "qcow2", src])["stdout"]
    try:
        info = json.loads(out)
        size = int(info["virtual-size"])
    except (ValueError, KeyError, TypeError) as err:
        raise CommandExecutionError(f"qemu-img info {src}: unexpected output ({err})") from err
    data = (info.get("format-specific") or {}).get("data") or {}
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise CommandExecutionError(f"{src} has a backing file: refusing to follow it")
    if data.get("data-file"):
        raise CommandExecutionError(f"{src} has an external data file: refusing to follow it")
    if info.get("encrypted") or data.get("encrypt"):
        raise CommandExecutionError(f"{src} is encrypted: convert it to an unencrypted image first")
    return {"src": src, "format": "qcow2", "virtual_size": size, "bytes": nbytes}


def _direct_ok(path, flags):
    """Can ``path`` be opened with O_DIRECT (qemu-img ``-t/-T none``)? tmpfs says no."""
    try:
        os.close(os.open(path, flags | os.O_DIRECT | os.O_CLOEXEC))
    except OSError:
        return False
    return True


def _file_sha256(path, bs):
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(bs), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _copy_raw(conf, src_kind, src, dst_kind, dst, sparse, want_hash, dst_zeroed, progress=False):
    """Raw copy loop; returns (source bytes, bytes written, sha256 or None)."""
    hasher = hashlib.sha256() if want_hash else None
    try:  # the source first: a missing source must not touch the destination
        source = _urlopen(src) if src_kind == "url" else os.open(src, os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, ValueError) as err:
        raise CommandExecutionError(f"cannot read {src}: {getattr(err, 'strerror', None) or err}") from err
    writer = None
    try:
        writer = _Writer(dst, dst_kind == "lv", dst_zeroed)
        copier = _Copier(writer, conf["dd_bs"], sparse, hasher)
        if src_kind == "url":
            length = (source.headers.get("Content-Length") or "").strip()
            copier.progress = _Progress(int(length), label=f"{src} -> {dst}") if progress and length.isdigit() else None
            size = copier.from_stream(source)
        else:
            size = _copy_local(copier, writer, source, src, sparse, progress)
        writer.finish(size)
    except (OSError, ValueError, CommandExecutionError) as err:
        if writer:
            writer.abort()
        if isinstance(err, CommandExecutionError):
            raise
        raise CommandExecutionError(f"copy {src} -> {dst} failed: {getattr(err, 'strerror', None) or err}") from err
    finally:
        if src_kind == "url":
            source.close()
        else:
            os.close(source)
    return size, writer.written, hasher.hexdigest() if hasher else None


def _copy_local(copier, writer, fd, src, sparse, progress=False):
    size = os.lseek(fd, 0, os.SEEK_END)
    if writer.capacity is not None and writer.capacity < size:
        raise CommandExecutionError(
            f"destination {writer.path} ({writer.capacity} bytes) is smaller than {src} ({size} bytes)"
        )
    copier.progress = _Progress(size, label=f"{src} -> {writer.path}") if progress else None
    extents = _extents(fd, size) if sparse else [(0, size)]
    copier.from_fd(fd, size, extents)
    return size


def _copy_qcow2(src, dst, dst_is_device, dst_zeroed):
    """qemu-img convert a qcow2 image (no backing file) to a raw file or device."""
    size = _qcow2_size(src)
    if dst_is_device:
        fd = os.open(dst, os.O_RDONLY)
        try:
            capacity = os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
        if capacity < size:
            raise CommandExecutionError(f"destination {dst} ({capacity} bytes) is smaller than {src} ({size} bytes)")
    target = dst if dst_is_device else _temp_name(dst)
    if not dst_is_device:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640)
        try:
            os.ftruncate(fd, size)  # a sparse file of zeros: --target-is-zero holds
        finally:
            os.close(fd)
    # -n: write into the prepared target; --target-is-zero: skip zero clusters
    # (a new sparse file, a zeroed LV); -t/-T none: O_DIRECT both ways, as dd oflag=direct;
    # -W: out-of-order writes (the raw target is preallocated; ~10 % faster measured here)
    argv = ["qemu-img", "convert", "-q", "-W", "-f", "qcow2", "-O", "raw", "-n"]
    argv += ["-T", "none"] if _direct_ok(src, os.O_RDONLY) else []
    argv += ["-t", "none"] if _direct_ok(target, os.O_WRONLY) else []
    argv += ["--target-is-zero"] if dst_zeroed or not dst_is_device else []
    try:
        _run(argv + [src, target])
        if not dst_is_device:
            os.replace(target, dst)
    except (CommandExecutionError, OSError):
        if not dst_is_device and os.path.lexists(target):
            os.unlink(target)
        raise
    return size


# --------------------------------------------------------------------------
# backups: an LV as a qcow2 file on GFS2, the format of a staged image
# --------------------------------------------------------------------------
def export_qcow2(src, dst):
    """
    Write the content of ``src`` (an LV device, or a ``disk.N`` link to one) to
    a new qcow2 file ``dst`` under ``mountpoint`` with ``qemu-img convert -O
    qcow2`` (zero blocks are not stored) -- what OpenNebula's backup datastores
    expect as ``<vmdir>/backup/disk.<id>.0`` (src/tm_mad/lib/lvm.rb:172 in
    release-7.4.0).  Built under a temporary name and renamed; on failure
    nothing is left.  Returns ``{src, dst, bytes, file_bytes, seconds}``
    (``bytes``: the virtual size).

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.export_qcow2 /dev/vg_cloudstorage/lv-one-42-0-backup /var/lib/one/datastores/0/42/backup/disk.0.0
    """
    conf = _config()
    src_kind, src = _local_path(conf, src, "src")
    dst = _file_path(conf, dst, "dst", follow=False)
    if src_kind != "lv":
        raise SaltInvocationError(f"src must be an LV device, not {src}")
    _mount_check(conf)
    _makedirs(conf, os.path.dirname(dst))
    size = _byte_size(src)
    target = _temp_name(dst)
    started = time.monotonic()
    argv = ["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2"]
    argv += ["-T", "none"] if _direct_ok(src, os.O_RDONLY) else []
    try:
        _run(argv + [src, target])
        _give(conf, target)
        os.replace(target, dst)
    except (CommandExecutionError, OSError) as err:
        if os.path.lexists(target):
            os.unlink(target)
        if isinstance(err, OSError):
            raise _os_error("cannot write", dst, err) from err
        raise
    return {"src": src, "dst": dst, "bytes": size, "file_bytes": os.path.getsize(dst),
            "seconds": round(time.monotonic() - started, 3)}


def image_size(path):
    """
    Format and virtual size of an image file under ``mountpoint``: ``qcow2``
    (its header; backing files, external data files and encryption refused as
    by ``copy``) or ``raw`` (the file size), read before anything is written.
    Returns ``{path, fmt, bytes}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.image_size /var/lib/one/.gfs2clvm-staging/0123abcd.img
    """
    conf = _config()
    path = _file_path(conf, path, "path", follow=False)
    if not os.path.isfile(path) or os.path.islink(path):
        raise CommandExecutionError(f"{path} is not a file")
    if _is_qcow2(path):
        return {"path": path, "fmt": "qcow2", "bytes": _qcow2_size(path)}
    return {"path": path, "fmt": "raw", "bytes": os.path.getsize(path)}


# --------------------------------------------------------------------------
# files on the GFS2 mount
# --------------------------------------------------------------------------
def chown(path, user=None, group=None):
    """
    Change the owner of a file or symlink (not followed) under ``mountpoint``.

    user / group
        default ``owner`` / ``group`` from the configuration

    Returns ``{path, user, group}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.chown /var/lib/one/datastores/0/42/disk.1
    """
    conf = _config()
    path = _file_path(conf, path, follow=False)
    user = _account(user, "user") if user is not None else conf["owner"]
    group = _account(group, "group") if group is not None else conf["group"]
    _mount_check(conf)
    uid, gid = _owner_ids(conf, user, group)
    try:
        os.lchown(path, uid, gid)
    except OSError as err:
        raise _os_error("cannot chown", path, err) from err
    return {"path": path, "user": user, "group": group}


def link(target, path, force=False):
    """
    Make ``path`` (under ``mountpoint``) a symlink to ``target`` (an LV device
    or a file under ``mountpoint``); creates missing directories.

    force
        replace an existing file or symlink (atomically)

    An existing symlink to the same target is left alone (``changed: False``).
    Returns ``{path, target, changed}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.link /dev/vg_cloudstorage/lv-one-42-0 /var/lib/one/datastores/0/42/disk.0
    """
    conf = _config()
    target = _clean_path(target, "target")
    if not _lv_device(target):
        _file_path(conf, target, "target", follow=False)
    path = _file_path(conf, path, follow=False)
    force = _flag(force, "force")
    _mount_check(conf)
    if os.path.islink(path) and os.readlink(path) == target:
        return {"path": path, "target": target, "changed": False}
    if os.path.lexists(path) and (not force or os.path.isdir(path) and not os.path.islink(path)):
        raise CommandExecutionError(f"{path} exists (use force=True to replace a file or link)")
    _makedirs(conf, os.path.dirname(path))
    tmp = f"{path}.gfs2clvm-{os.getpid()}"
    try:
        os.symlink(target, tmp)
        _give(conf, tmp)
        os.replace(tmp, path)
    except (OSError, CommandExecutionError) as err:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        if isinstance(err, CommandExecutionError):
            raise
        raise _os_error("cannot link", path, err) from err
    return {"path": path, "target": target, "changed": True}


def _format_target(conf, path):
    """An existing LV device or a file under the mountpoint to put a file system on."""
    kind, path = _local_path(conf, path)
    if kind == "file":
        _mount_check(conf)
        if not os.path.isfile(path):
            raise CommandExecutionError(f"{path} is not an existing file")
    return path


def mkswap(path):
    """
    Make swap space on an LV device or an existing file under ``mountpoint``.

    Returns ``{path, fstype}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.mkswap /dev/vg_cloudstorage/lv-one-42-2
    """
    conf = _config()
    path = _format_target(conf, path)
    _run(["mkswap", path])
    return {"path": path, "fstype": "swap"}


def mkfs(path, fstype):
    """
    Make a file system on an LV device or an existing file under ``mountpoint``.

    fstype
        ext2, ext3, ext4, xfs, btrfs, vfat or swap

    Returns ``{path, fstype}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.mkfs /dev/vg_cloudstorage/lv-one-42-1 ext4
    """
    conf = _config()
    fstype = _choice(fstype, tuple(_MKFS) + ("swap",), "fstype")
    path = _format_target(conf, path)
    _run(["mkswap", path] if fstype == "swap" else _MKFS[fstype] + [path])
    return {"path": path, "fstype": fstype}


def _iso_tool():
    for tool in ("genisoimage", "mkisofs"):
        if shutil.which(tool):
            return tool
    raise CommandExecutionError("neither genisoimage nor mkisofs is installed")


def context_iso(path, files=None, label="CONTEXT"):
    """
    Build an ISO 9660 (Joliet + Rock Ridge) image at ``path`` (under
    ``mountpoint``) holding ``files``; replaces ``path`` atomically.

    files
        ``{name: base64 content}``; names are plain file names
    label
        volume id (letters, digits, ``_``)

    Returns ``{path, label, files: [names], size}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.context_iso /var/lib/one/datastores/0/42/disk.3 files='{"context.sh": "QT0xCg=="}'
    """
    conf = _config()
    path = _file_path(conf, path)
    if not isinstance(label, str) or not _RE_LABEL.match(label):
        raise SaltInvocationError(f"invalid ISO label {label!r}")
    contents = _decode_files(files or {})
    _mount_check(conf)
    _makedirs(conf, os.path.dirname(path))
    workdir = tempfile.mkdtemp(prefix="gfs2clvm-ctx-")
    tmp_iso = f"{path}.gfs2clvm-{os.getpid()}"
    try:
        staging = os.path.join(workdir, "iso")
        os.mkdir(staging)
        for name, data in contents.items():
            with open(os.path.join(staging, name), "wb") as handle:
                handle.write(data)
        _run([_iso_tool(), "-quiet", "-J", "-R", "-V", label, "-o", tmp_iso, staging])
        _give(conf, tmp_iso)
        os.replace(tmp_iso, path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if os.path.lexists(tmp_iso):
            os.unlink(tmp_iso)
    return {"path": path, "label": label, "files": sorted(contents), "size": os.path.getsize(path)}


def _decode_files(files):
    """``{name: base64}`` -> ``{name: bytes}``, names and contents validated."""
    if not isinstance(files, dict):
        raise SaltInvocationError("files must be a mapping of file name to base64 content")
    out = {}
    for name, data in files.items():
        if not isinstance(name, str) or not _RE_FILE.match(name):
            raise SaltInvocationError(f"invalid file name {name!r}")
        try:
            out[name] = base64.b64decode(data or "", validate=True)
        except (binascii.Error, TypeError, ValueError) as err:
            raise SaltInvocationError(f"content of {name} is not valid base64") from err
    return out


# --------------------------------------------------------------------------
# VMs and admin reports
# --------------------------------------------------------------------------
def _vm_dirs(conf, vmid):
    """Existing VM directories ``<mountpoint>/datastores/<id>/<vmid>``."""
    root = f"{conf['mountpoint']}/datastores"
    found = []
    for path in sorted(glob.glob(f"{root}/*/{vmid}")):
        numbered = re.match(r"^\d+$", os.path.basename(os.path.dirname(path)))
        if numbered and os.path.isdir(path) and not os.path.islink(path):
            found.append(path)
    return found


def _links(directory):
    """``disk.*`` symlinks of a VM directory: ``[{path, target, lv, exists}]``."""
    out = []
    for path in sorted(glob.glob(f"{directory}/disk.*")):
        if os.path.islink(path):
            target = os.readlink(path)
            device = _lv_device(os.path.normpath(target)) if target.startswith("/") else None
            lv = device[1] if device else None
            out.append({"path": path, "target": target, "lv": lv, "exists": os.path.exists(path)})
    return out


def vm_disks(vmid, vg=None):
    """
    The LVs of VM ``vmid`` (disks and disk snapshots, whole-name match) and the
    ``disk.*`` symlinks of its directories under ``mountpoint``.

    Returns ``{vmid, vg, disks: [lv_info dicts], links: [{path, target, lv, exists}]}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.vm_disks 42
    """
    conf = _config()
    vmid, vg = _id(vmid, "vmid"), _vg(vg or conf["vg"])
    disks = [lv for lv in _lvs(conf, vg, f"lv_name=~^lv-one-{vmid}-") if _is_vm_lv(lv["name"], vmid)]
    links = [item for directory in _vm_dirs(conf, vmid) for item in _links(directory)]
    return {"vmid": vmid, "vg": vg, "disks": disks, "links": links}


def vm_delete(vmid, vg=None, path=None, wipe=None):
    """
    Remove exactly the LVs ``lv-one-<vmid>-*`` (snapshots first, one
    ``lvremove``) and the VM directory ``path``.

    path
        the VM directory (under ``mountpoint``, its last component must be
        ``vmid``); None = leave directories alone
    wipe
        zero thick disks before removal; default ``wipe_on_delete``

    Refuses (removing nothing) while any of them is open.
    Returns ``{vmid, vg, removed: [names], wiped: [names], dir}``.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.vm_delete 42 path=/var/lib/one/datastores/0/42
    """
    conf = _config()
    vmid, vg = _id(vmid, "vmid"), _vg(vg or conf["vg"])
    wipe = conf["wipe_on_delete"] if wipe is None else _flag(wipe, "wipe")
    if path is not None:
        path = _file_path(conf, path, follow=False)
        if os.path.basename(path) != str(vmid):
            raise SaltInvocationError(f"path must be the directory of VM {vmid} under {conf['mountpoint']}")
        _mount_check(conf)
    lvs = [lv for lv in _lvs(conf, vg, f"lv_name=~^lv-one-{vmid}-") if _is_vm_lv(lv["name"], vmid)]
    busy = [lv["name"] for lv in lvs if lv["open"]]
    if busy:
        raise CommandExecutionError(f"VM {vmid} still uses {', '.join(busy)} (open): nothing removed")
    lvs.sort(key=lambda lv: (not lv["snapshot"], lv["name"]))
    # with wipe, snapshots go first so zeroing an origin copies nothing into them
    batches = [[lv for lv in lvs if lv["snapshot"]], [lv for lv in lvs if not lv["snapshot"]]] if wipe else [lvs]
    wiped = []
    for batch in [batch for batch in batches if batch]:
        wiped += [lv["name"] for lv in batch if wipe and _wipe(conf, lv)]
        _run(_lvm(conf, "lvremove", "--yes", *[f"{vg}/{lv['name']}" for lv in batch]))
    removed_dir = None
    if path is not None and os.path.lexists(path):
        try:
            shutil.rmtree(path)
        except OSError as err:
            raise _os_error("cannot remove", path, err) from err
        removed_dir = path
    return {"vmid": vmid, "vg": vg, "removed": [lv["name"] for lv in lvs], "wiped": wiped, "dir": removed_dir}


def _now():
    """Seconds since the epoch (one place, so that tests can fix the clock)."""
    return time.time()


def _lv_time(text):
    """Epoch seconds of an ``lv_time`` value, or None.

    LVM prints its ``report/time_format``, by default ``2026-11-25 20:57:30 +0100``
    (the host's local time and its offset), and ``""`` when it does not know. Also
    read: ISO 8601 and epoch seconds (``%s``); a time without an offset is local
    time, as LVM wrote it. Anything else is unknown (None), never an error."""
    text = str(text or "").strip()
    if re.match(r"^[0-9]{1,11}$", text):
        return float(text)
    for parse in (lambda value: datetime.strptime(value, "%Y-%m-%d %H:%M:%S %z"), datetime.fromisoformat):
        try:
            return parse(text).timestamp()
        except (ValueError, OverflowError, OSError):
            continue
    return None


def _when(seconds, now):
    """``(ISO 8601 UTC, age in days to 0.1)`` of an epoch time, or ``(None, None)``."""
    try:
        iso = datetime.fromtimestamp(int(seconds), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError, OverflowError, OSError):
        return None, None
    return iso, round((now - seconds) / 86400, 1)


def _reason(err):
    """The lower-case reason of an OSError: salt-ssh takes a capitalised
    "Permission denied" on stderr for an ssh login failure and prompts to deploy its key."""
    reason = err.strerror or str(err)
    return f"{reason[:1].lower()}{reason[1:]}"


def _vm_dir_id(conf, path):
    """The vmid when ``path`` is a VM directory ``<mountpoint>/datastores/<dsid>/<vmid>``:
    numeric names, a real directory, no symlink at either level; else None."""
    dsdir, name = os.path.split(path)
    root, dsid = os.path.split(dsdir)
    if root != f"{conf['mountpoint']}/datastores" or not (_RE_ID.match(dsid) and _RE_ID.match(name)):
        return None
    if int(name) >= MAX_ID or os.path.islink(dsdir):
        return None
    try:
        return int(name) if stat.S_ISDIR(os.lstat(path).st_mode) else None
    except OSError:
        return None


def _dir_report(path, vmid, now):
    """``{path, vmid, size_bytes, modified, age_days, error}`` of one VM directory:
    bytes of the regular files in it (apparent size), newest mtime of it and of
    everything in it; symlinks are counted as themselves, never followed. A
    directory that cannot be read has None and the reason in ``error``."""
    size, error = 0, None
    try:
        newest = os.lstat(path).st_mtime
        pending = [path]
        while pending:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    info = entry.stat(follow_symlinks=False)
                    newest = max(newest, info.st_mtime)
                    if stat.S_ISREG(info.st_mode):
                        size += info.st_size
                    elif stat.S_ISDIR(info.st_mode):
                        pending.append(entry.path)
    except OSError as err:
        size, newest, error = None, None, f"cannot read {err.filename or path}: {_reason(err)}"
    modified, age = _when(newest, now) if newest is not None else (None, None)
    return {"path": path, "vmid": vmid, "size_bytes": size, "modified": modified, "age_days": age, "error": error}


def _orphans(conf, vg, known):
    """Orphan VM LVs, dangling ``disk.*`` links and, with ``known``, VM directories
    of other VMs (see ``orphans``); ``names``: every LV of ``vg``."""
    now = _now()
    all_lvs = [(_lv_record(row), row.get("lv_time")) for row in _lv_rows(conf, vg, fields=ORPHAN_LV_FIELDS)]
    names = {lv["name"] for lv, _ in all_lvs}
    linked, dangling, vm_dirs = set(), [], []
    for directory in sorted(glob.glob(f"{conf['mountpoint']}/datastores/*/*")):
        if not re.match(r"^\d+$", os.path.basename(directory)) or os.path.islink(directory):
            continue
        vmid = _vm_dir_id(conf, directory) if known is not None else None
        if vmid is not None and vmid not in known:
            vm_dirs.append(_dir_report(directory, vmid, now))
        for item in _links(directory):
            device = _lv_device(os.path.normpath(item["target"])) if item["target"].startswith("/") else None
            if device and device[0] == vg:
                linked.add(device[1])
                if device[1] not in names:
                    dangling.append({"path": item["path"], "target": item["target"]})
            elif not device and not item["exists"]:
                dangling.append({"path": item["path"], "target": item["target"]})
    lvs = []
    for lv, made in all_lvs:
        parsed = RE_VM_LV.match(lv["name"]) or RE_SNAP_LV.match(lv["name"])
        if not parsed:
            continue
        vmid = int(parsed.group(1))
        if known is not None and vmid not in known:
            reason = "VM not in the given vmids"
        elif known is None and lv["name"] not in linked and not _vm_dirs(conf, vmid):
            reason = "no VM directory links it"
        else:
            continue
        created, age = _when(_lv_time(made), now)
        lvs.append({"name": lv["name"], "vmid": vmid, "size_mb": lv["size_mb"], "created": created,
                    "age_days": age, "open": lv["open"], "reason": reason})
    return {"lvs": lvs, "links": dangling, "dirs": vm_dirs, "names": names}


def orphans(vg=None, vmids=None):
    """
    Report VM LVs nobody uses, ``disk.*`` symlinks pointing nowhere and, with
    ``vmids``, the directories of VMs that do not exist. Reads only.

    vmids
        the ids of the VMs that exist (e.g. from ``onevm list``): every
        ``lv-one-<id>-*`` and every VM directory of another id is an orphan.
        Without it, an LV is an orphan when no ``disk.*`` link points at it and
        its VM has no directory, and no directory is reported (``dirs: []``).

    A dangling link is a ``disk.*`` symlink to an LV of ``vg`` that does not
    exist, or to a missing file. A VM directory is
    ``<mountpoint>/datastores/<dsid>/<vmid>`` (numeric names, no symlink).
    Reads the whole VG (an admin report).

    Returns ``{vg, lvs: [{name, vmid, size_mb, created, age_days, open, reason}],
    links: [{path, target}], dirs: [{path, vmid, size_bytes, modified, age_days, error}]}``.
    ``created`` is LVM's ``lv_time`` in ISO 8601 UTC (None when LVM does not
    know it); ``size_bytes`` sums the regular files in the directory (symlinks
    not followed), ``modified`` is the newest mtime of the directory and all in
    it; ``age_days`` counts from those times (one decimal). A directory that
    cannot be read has None there and the reason in ``error`` (else None).

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.orphans vmids=[1,2,42]
    """
    conf = _config()
    vg, vmids = _vg(vg or conf["vg"]), _vmids(vmids)
    found = _orphans(conf, vg, vmids)
    return {"vg": vg, "lvs": found["lvs"], "links": found["links"], "dirs": found["dirs"]}


ORPHAN_MIN_AGE = 3600  # seconds: default min_age of orphans_remove
LIST_SKEW = 60  # seconds between the front-end's and the workers' clocks allowed for listed_at


def _epoch(value, what):
    """Epoch seconds of ``value``: a number (or decimal string) of seconds, or ISO 8601."""
    if isinstance(value, bool):
        raise SaltInvocationError(f"{what} must be epoch seconds or an ISO 8601 time, not {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if re.match(r"^[0-9]{1,11}(\.[0-9]+)?$", text):
        return float(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SaltInvocationError(f"{what} must be epoch seconds or an ISO 8601 time, not {value!r}") from None
    if moment.tzinfo is None:
        raise SaltInvocationError(f"{what} needs a time zone (e.g. 2026-11-25T20:00:00Z), not {value!r}")
    return moment.timestamp()


def _young_before(now, listed_at, min_age):
    """The time after which an orphan is too young to remove: ``now - min_age`` and, with
    ``listed_at``, ``listed_at - LIST_SKEW`` (whichever is earlier)."""
    if isinstance(min_age, bool) or not isinstance(min_age, (int, str)) or not re.match(r"^[0-9]{1,10}$", str(min_age)):
        raise SaltInvocationError(f"min_age must be a number of seconds >= 0, not {min_age!r}")
    cutoff = now - int(min_age)
    if listed_at is not None:
        cutoff = min(cutoff, _epoch(listed_at, "listed_at") - LIST_SKEW)
    return cutoff


def _iso_epoch(text):
    """Epoch seconds of a ``created``/``modified`` value of the report, or None."""
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    except (TypeError, ValueError):
        return None


def orphans_remove(vg=None, vmids=None, dry_run=True, listed_at=None, min_age=ORPHAN_MIN_AGE):
    """
    Remove what ``orphans`` reports (open LVs are skipped); ``dry_run``
    (default True) only says what would be removed.

    listed_at
        when ``vmids`` was listed (``onevm list``): epoch seconds or ISO 8601 with
        a zone. An orphan LV made, or VM directory changed, after that (less
        60 s for clock differences) is not removed: its VM may have been created
        after the list.
    min_age
        seconds (default 3600): an orphan LV made, or VM directory changed,
        less than ``min_age`` ago is not removed either (``0``: only
        ``listed_at`` counts). Those are returned in ``young``. An LV whose time
        LVM does not know, or a directory that cannot be read, is judged by the
        other rules only.

    LVs go first (snapshots first, one ``lvremove``), then the dangling links,
    then (only with ``vmids``) the orphan VM directories, whole. A directory that
    still has a ``disk.*`` link to an LV that exists (one not removed here, e.g.
    open) is skipped. Links and directories only when the mount check passes.

    Returns ``{vg, dry_run, lvs: [names], links: [paths], dirs: [paths],
    skipped: [open LV names, then directory paths], young: [LV names, then
    directory paths too young to remove]}``.
    A failure part-way (``lvremove`` refused an LV that became open, a link or
    directory that cannot be removed) does not stop the rest; it then raises
    one line naming the problems, what was removed and what was not.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.orphans_remove vmids=[1,2,42]
        salt '*' gfs2clvm.orphans_remove vmids=[1,2,42] dry_run=False listed_at=2026-11-25T20:00:00Z
    """
    conf = _config()
    vg, vmids = _vg(vg or conf["vg"]), _vmids(vmids)
    dry_run = _flag(dry_run, "dry_run")
    cutoff = _young_before(_now(), listed_at, min_age)
    found = _orphans(conf, vg, vmids)

    def young(when):
        made = _iso_epoch(when)
        return made is not None and made > cutoff

    fresh = [lv["name"] for lv in found["lvs"] if young(lv["created"])]
    # a snapshot of a young origin stays with it
    fresh += [lv["name"] for lv in found["lvs"] if lv["name"] not in fresh and RE_SNAP_LV.match(lv["name"])
              and any(lv["name"].startswith(f"{origin}-s") for origin in fresh)]
    lvs = [lv for lv in found["lvs"] if lv["name"] not in fresh]
    names = sorted((lv["name"] for lv in lvs if not lv["open"]), key=lambda name: (not RE_SNAP_LV.match(name), name))
    skipped = [lv["name"] for lv in lvs if lv["open"]]
    paths = [item["path"] for item in found["links"]]
    young_dirs = [item["path"] for item in found["dirs"] if young(item["modified"])]
    dirs = [item["path"] for item in found["dirs"] if item["path"] not in young_dirs]
    busy = [path for path in dirs if _links_an_lv(vg, path, found["names"] - set(names))]
    dirs, skipped = [path for path in dirs if path not in busy], skipped + busy
    problems, kept = [], []
    if not dry_run:
        if paths or dirs:
            _mount_check(conf)
        if names:
            problem, left = _orphan_lvremove(conf, vg, names)
            problems += [problem] if problem else []
            kept += left
        for path in paths + dirs:
            if path in dirs and kept and _links_an_lv(vg, path, found["names"] - (set(names) - set(kept))):
                kept.append(path)  # it links an LV that lvremove left (that problem is reported)
                continue
            problem = _orphan_unlink(path) if path in paths else _orphan_rmdir(conf, path)
            problems += [problem] if problem else []
            kept += [path] if problem else []
    if problems:
        gone = [item for item in names + paths + dirs if item not in kept]
        raise CommandExecutionError(
            f"orphans_remove did not finish: {'; '.join(problems)}; "
            f"removed: {', '.join(gone) or 'nothing'}; not removed: {', '.join(kept)}"
        )
    return {"vg": vg, "dry_run": dry_run, "lvs": names, "links": paths, "dirs": dirs, "skipped": skipped,
            "young": fresh + young_dirs}


def _orphan_lvremove(conf, vg, names):
    """``lvremove`` the orphan LVs: ``(None, [])``, or ``(problem, names still there)``.

    LVM removes the others when one fails (e.g. it was opened meanwhile), so a
    failure is followed by a read-only ``lvs`` that tells which are left."""
    try:
        _run(_lvm(conf, "lvremove", "--yes", *[f"{vg}/{name}" for name in names]))
        return None, []
    except CommandExecutionError as err:
        problem = str(err)
    try:
        present = {lv["name"] for lv in _lvs(conf, vg)}
    except CommandExecutionError as err:
        return f"{problem} (and then {err}: which LVs are left is unknown)", list(names)
    return problem, [name for name in names if name in present]


def _orphan_unlink(path):
    """Unlink one dangling ``disk.*`` link: None, or the problem (one line)."""
    try:
        if not os.path.islink(path):
            if os.path.lexists(path):
                return f"{path} is no longer a symlink: left alone"
            return None  # already gone
        os.unlink(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        return f"cannot remove {path}: {_reason(err)}"
    return None


def _links_an_lv(vg, directory, present):
    """True when a ``disk.*`` link of ``directory`` points at an LV that exists:
    one of ``present`` (the LVs of ``vg`` left), or a device of another VG that is there."""
    for item in _links(directory):
        target = os.path.normpath(os.path.join(directory, item["target"]))
        device = _lv_device(target)
        if device and (device[1] in present if device[0] == vg else os.path.exists(target)):
            return True
    return False


def _orphan_rmdir(conf, path):
    """Remove one orphan VM directory, whole: None, or the problem (one line)."""
    try:
        if not os.path.lexists(path):
            return None  # already gone
        if _vm_dir_id(conf, path) is None:
            return f"{path} is no longer a VM directory: left alone"
        shutil.rmtree(path)
    except FileNotFoundError:
        return None
    except OSError as err:
        where = f" ({err.filename})" if err.filename and err.filename != path else ""
        return f"cannot remove {path}{where}: {_reason(err)}"
    return None


def vg_usage(vg=None):
    """
    Size and use of the VG (and of ``thin_pool`` when configured), in MiB.

    Returns ``{vg, total_mb, used_mb, free_mb, extent_mb, lv_count, shared,
    lock_type, thin_pool}`` (``thin_pool``: None or ``{name, size_mb, used_mb,
    data_percent}``).

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.vg_usage
    """
    conf = _config()
    vg = _vg(vg or conf["vg"])
    row = _vgs(conf, vg)
    total, free = _mb(row["vg_size"]), _mb(row["vg_free"])
    pool = None
    if conf["thin_pool"]:
        lv = _lv_need(conf, vg, conf["thin_pool"])
        used = int(lv["size_mb"] * (lv["data_percent"] or 0.0) / 100)
        pool = {"name": lv["name"], "size_mb": lv["size_mb"], "used_mb": used, "data_percent": lv["data_percent"]}
    return {
        "vg": vg,
        "total_mb": total,
        "used_mb": total - free,
        "free_mb": free,
        "extent_mb": _mb(row["vg_extent_size"]),
        "lv_count": int(row.get("lv_count") or 0),
        "shared": row.get("vg_shared") == "shared",
        "lock_type": row.get("vg_lock_type") or None,
        "thin_pool": pool,
    }


# --------------------------------------------------------------------------
# node health
# --------------------------------------------------------------------------
def _check_config():
    _config()
    return True, "valid"


def _check_lvm(conf):
    path = f"{conf['lvm_bin']}/lvm"
    if not os.access(path, os.X_OK):
        return False, f"{path} not found (install lvm2, or set lvm_bin)"
    return True, path


def _check_dm():
    try:
        with open(PROC_MISC, encoding="ascii") as handle:
            if any(line.split()[-1:] == ["device-mapper"] for line in handle):
                return True, "device-mapper available"
    except OSError as err:
        return False, f"cannot read {PROC_MISC}: {err.strerror}"
    return False, "the kernel has no device-mapper (modprobe dm_mod)"


def _sudo_probes(conf, vg):
    """One argv of each shape the module runs through sudo, for ``sudo -n -l`` (which
    only asks the policy; nothing runs)."""
    lv = f"{vg}/lv-one-0-0"
    return {
        "lvs": ("--reportformat", "json", "--units", "m", "--nosuffix", "-o", LV_FIELDS, vg),
        "vgs": ("--reportformat", "json", "--units", "m", "--nosuffix", "-o", VG_FIELDS, vg),
        "lvcreate": ("--yes", "-W", "y", "-Z", "y", "-n", "lv-one-0-0", "-L", "1m", vg),
        "lvremove": ("--yes", lv),
        "lvchange": ("-aey", "-K", lv),
        "lvextend": ("--yes", "-L", "1m", lv),
    }


def _check_sudo(conf):
    if not ((os.geteuid() != 0) if conf["sudo"] == "auto" else conf["sudo"]):
        return True, "LVM commands run without sudo (running as root)"
    lvm = conf["lvm_bin"]
    missing = []
    for cmd, args in _sudo_probes(conf, conf["vg"]).items():
        if _run(["sudo", "-n", "-l", f"{lvm}/{cmd}", *args], quiet=True)["retcode"] != 0:
            missing.append(cmd)
    if missing:
        return False, f"no NOPASSWD sudo rule for {', '.join(missing)}"
    # a rule without argument patterns is root for its holder (LVM's --config runs programs)
    if _run(["sudo", "-n", "-l", f"{lvm}/lvs", "--config", "log/level=0", conf["vg"]], quiet=True)["retcode"] == 0:
        return False, ("the sudo rule allows any arguments to the LVM commands (--config lets its "
                       "user run programs as root): install the formula's argument-restricted rule")
    return True, "sudo -n allowed for the LVM commands, with the module's arguments only"


def _check_lvmlockd():
    # /run/lvm is root's (0700): oneadmin, the driver's user, cannot see the
    # socket there, but every user can read the process names in /proc.
    if os.path.exists("/run/lvm/lvmlockd.socket"):
        return True, "lvmlockd is running"
    for comm in glob.glob("/proc/[0-9]*/comm"):
        try:
            with open(comm, encoding="utf-8") as handle:
                if handle.read().strip() == "lvmlockd":
                    return True, f"lvmlockd is running (pid {comm.split('/')[2]})"
        except OSError:
            continue
    return False, "lvmlockd is not running (no lvmlockd process, no /run/lvm/lvmlockd.socket)"


def _check_vg(conf):
    row = _vgs(conf, conf["vg"])
    if row.get("vg_shared") != "shared":
        return False, f"volume group {conf['vg']} exists but is not shared (vgcreate --shared / vgchange --locktype)"
    size, free = _mb(row["vg_size"]), _mb(row["vg_free"])
    return True, f"{conf['vg']}: {size} MiB, {free} MiB free, lock type {row.get('vg_lock_type')}"


def _check_thin_pool(conf):
    if not conf["thin_pool"]:
        return True, "no thin pool configured (thick LVs)"
    lv = _lv_need(conf, conf["vg"], conf["thin_pool"])
    if lv["type"] != "thin-pool":
        return False, f"{conf['vg']}/{conf['thin_pool']} is not a thin pool"
    return True, f"thin pool {conf['thin_pool']}: {lv['size_mb']} MiB, {lv['data_percent']}% used"


# what check reads (module constants so tests can point them at fake trees)
SYS_GFS2 = "/sys/fs/gfs2"
DEV_DIR = "/dev"
LIBVIRT_QEMU_CONF = "/etc/libvirt/qemu.conf"


def _check_mount(conf):
    _mount_check(conf)
    if conf["mount_check"] != "gfs2":
        return True, f"{conf['mountpoint']} ok (mount_check={conf['mount_check']})"
    return _check_withdrawn(conf)


def _mount_device(root):
    """``major:minor`` of the file system mounted at ``root`` (last mount wins), or None."""
    device = None
    with open(MOUNTINFO, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) > 4 and fields[4].replace("\\040", " ") == root:
                device = fields[2]
    return device


def _check_withdrawn(conf):
    """A withdrawn GFS2 stays in mountinfo; its ``/sys/fs/gfs2/<lock table>/withdraw``
    (mode 0644, found by its ``id`` = the mount's major:minor) says so."""
    mountpoint = conf["mountpoint"]
    device = _mount_device(os.path.realpath(mountpoint))
    for id_file in sorted(glob.glob(f"{SYS_GFS2}/*/id")):
        try:
            with open(id_file, encoding="ascii") as handle:
                if handle.read().strip() != device:
                    continue
        except OSError:
            continue  # another GFS2, unmounted meanwhile
        table = os.path.basename(os.path.dirname(id_file))
        withdraw = os.path.join(os.path.dirname(id_file), "withdraw")
        try:
            with open(withdraw, encoding="ascii") as handle:
                flag = handle.read().strip()
        except OSError as err:
            return False, f"cannot read {withdraw}: {err.strerror}: cannot tell whether GFS2 at {mountpoint} is withdrawn"
        if flag != "0":
            return False, (
                f"GFS2 at {mountpoint} is withdrawn (lock table {table}): I/O there fails; move the VMs "
                "off this host, read the kernel log (journalctl -k -g gfs2), then reboot it "
                "(fsck.gfs2 only with the file system unmounted on every node)"
            )
        return True, f"{mountpoint}: gfs2 mounted (lock table {table}), not withdrawn"
    return False, f"GFS2 at {mountpoint} (device {device}) has no {SYS_GFS2}/*/id entry: cannot tell whether it is withdrawn"


def _check_tools():
    tools = ("blkdiscard", "qemu-img", "mkswap", "mkfs.ext4")
    missing = [tool for tool in tools if not shutil.which(tool)]
    if not (shutil.which("genisoimage") or shutil.which("mkisofs")):
        missing.append("genisoimage|mkisofs")
    if missing:
        return False, f"missing: {', '.join(missing)}"
    return True, "all present"


def _check_udev(conf):
    """The udev rule is in effect: each driver LV active here has a /dev node of
    ``owner`` (read+write). Only active LVs have a node, so no LVM call is needed."""
    vg_dir = os.path.join(DEV_DIR, conf["vg"])
    try:
        names = sorted(name for name in os.listdir(vg_dir)
                       if RE_VM_LV.match(name) or RE_SNAP_LV.match(name) or RE_IMAGE_LV.match(name))
    except FileNotFoundError:
        names = []
    nodes = []
    for name in names:
        try:
            nodes.append((name, os.stat(os.path.join(vg_dir, name))))
        except FileNotFoundError:
            continue  # a stale link: not active
    if not nodes:
        return True, "no active driver LV to check"
    uid, _ = _owner_ids(conf)
    wrong = []
    for name, info in nodes:
        if info.st_uid != uid or (info.st_mode & 0o600) != 0o600:
            try:
                who = pwd.getpwuid(info.st_uid).pw_name
            except KeyError:
                who = str(info.st_uid)
            wrong.append(f"{name} ({who} {info.st_mode & 0o7777:04o})")
    if wrong:
        shown = ", ".join(wrong[:5]) + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else "")
        return False, (
            f"{len(wrong)} of {len(nodes)} active driver LVs are not {conf['owner']}'s (read+write): {shown}; "
            f"the udev rule is not in effect: apply gfs2clvm.worker, then as root "
            f"udevadm control --reload && udevadm trigger --action=change {vg_dir}/<lv>"
        )
    return True, f"{len(nodes)} active driver LVs, all {conf['owner']}'s (udev rule in effect)"


def _qemu_conf_settings(text):
    """``key = value`` settings of a libvirt conf file (comments dropped, quotes removed)."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$", line)
        if match:
            value = match.group(2).strip()
            if value.startswith('"'):
                value = value[1:].split('"', 1)[0]
            else:
                value = value.split("#", 1)[0].strip()
            found[match.group(1)] = value
    return found


def _check_libvirt(conf):
    """What the formula sets in qemu.conf: qemu runs as owner:group and libvirt
    leaves device ownership to the udev rule (``dynamic_ownership = 0``)."""
    path = LIBVIRT_QEMU_CONF
    if not os.path.lexists(path):
        return True, f"libvirt not installed (no {path})"
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            settings = _qemu_conf_settings(handle.read())
    except PermissionError:
        me = pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() else "root"
        return True, f"{path} is not readable by {me}: its settings are not checked (run gfs2clvm.check as root)"
    except OSError as err:
        return False, f"cannot read {path}: {err.strerror}"
    want = {"user": conf["owner"], "group": conf["group"], "dynamic_ownership": "0"}

    def shown(key, value):  # as qemu.conf spells it
        return value if key == "dynamic_ownership" else f'"{value}"'

    wrong = [f"{key} is {shown(key, settings[key])}" if key in settings else f"{key} is not set"
             for key in want if settings.get(key) != want[key]]
    if wrong:
        wanted = ", ".join(f"{key} = {shown(key, value)}" for key, value in want.items())
        return False, (f"{path}: {', '.join(wrong)} (the driver needs {wanted}): "
                       "apply gfs2clvm.worker (libvirt:manage) or set them by hand, then restart libvirtd")
    return True, f"{path}: user {conf['owner']}, group {conf['group']}, dynamic_ownership 0"


def _check_version(driver):
    if not isinstance(driver, str) or not _RE_VERSION.match(driver):
        return False, f"invalid front-end driver version {driver!r}"
    if driver != __version__:
        return False, (f"this worker runs gfs2clvm modules {__version__}, the front-end driver {driver}: "
                       "apply gfs2clvm.worker here (highstate), or update the front-end, so both are the same")
    return True, f"gfs2clvm modules {__version__} = front-end driver {driver}"


def check(driver=None):
    """
    Health of this worker for gfs2clvm: configuration, LVM and device-mapper,
    sudo rules, lvmlockd, the shared VG, the thin pool, the GFS2 mount (and
    not withdrawn), the helper tools, the udev rule on the driver's active LVs
    and libvirt's qemu.conf (when libvirt is installed). Never raises: every
    problem is one failed check with a reason.

    driver
        the front-end driver's version (``gfs2clvm-host`` passes it): adds the
        check ``version``, ok when this module's ``__version__`` is the same

    Returns ``{ok, checks: {name: {ok, detail}}}``. With ``ok`` false the job's
    retcode is 1 (``__context__["retcode"]``), so ``salt-call
    --retcode-passthrough``, salt-ssh and ``salt`` exit non-zero for monitoring;
    the report is returned all the same.

    CLI Example:

    .. code-block:: bash

        salt '*' gfs2clvm.check
        salt '*' gfs2clvm.check driver=0.1.0
    """
    checks = {"config": _check_config}
    if driver is not None:
        checks["version"] = lambda: _check_version(driver)
    try:
        conf = _config()
    except SaltInvocationError:
        conf = None
    if conf:
        checks.update(
            lvm=lambda: _check_lvm(conf),
            device_mapper=_check_dm,
            sudo=lambda: _check_sudo(conf),
            lvmlockd=_check_lvmlockd,
            vg=lambda: _check_vg(conf),
            thin_pool=lambda: _check_thin_pool(conf),
            mount=lambda: _check_mount(conf),
            tools=_check_tools,
            udev=lambda: _check_udev(conf),
            libvirt=lambda: _check_libvirt(conf),
        )
    results = {}
    for name, probe in checks.items():
        try:
            ok, detail = probe()
        except (CommandExecutionError, SaltInvocationError, OSError) as err:
            ok, detail = False, str(err)
        results[name] = {"ok": bool(ok), "detail": detail}
    healthy = all(item["ok"] for item in results.values())
    if not healthy:
        __context__["retcode"] = 1  # the loader's public way to fail a job that returns data
    return {"ok": healthy, "checks": results}
