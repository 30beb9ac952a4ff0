"""
Worker side of the gfs2clvm OpenNebula driver: one public function per driver
action, composed of the ``gfs2clvm.*`` primitives through ``__salt__``.

The front-end driver (``tm_commands/lib/gfs2clvm_driver``) makes exactly one
salt-ssh call of one of these per OpenNebula action.  Every function validates
its arguments before doing anything and is atomic: on failure it undoes what it
created (LV, symlink, activation), in reverse order, and re-raises, so a retry of
the same action works.

Settings: ``config.get('gfs2clvm')`` like the primitives (``vg``,
``mountpoint``, ``default_size_mb``, ``thin_pool``) plus ``lock_wait`` (seconds a
host waits for another host to release an lvmlockd lock during migrations) and
``migrate_wait`` (seconds premigrate's destination waits for the source's half).
"""

import base64
import contextlib
import fcntl
import glob
import hashlib
import io
import logging
import math
import os
import re
import tarfile
import time

from salt.exceptions import CommandExecutionError, SaltInvocationError

log = logging.getLogger(__name__)

__virtualname__ = "gfs2clvm_tm"
__version__ = "0.1.0"  # = gfs2clvm_driver/version.py VERSION (tests/unit/test_version.py)

DEFAULTS = {
    "vg": "vg_cloudstorage",
    "mountpoint": "/var/lib/one",
    "default_size_mb": 1024,
    "thin_pool": "",
    "lock_wait": 60,
    "migrate_wait": 600,
}
STAGING = ".gfs2clvm-staging"
STAGING_MAX_AGE = 24 * 3600
PROGRESS_MB = 1024  # copies of at least 1 GiB write progress lines (gfs2clvm.copy progress=True)
MAX_ID = 2**31
RE_VM_LV = re.compile(r"^lv-one-(\d+)-(\d+)$")
RE_IMAGE_LV = re.compile(r"^lv-oneimg-[0-9a-f]{32}$")
RE_DISK = re.compile(r"^disk\.(\d+)$")
RE_VG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}$")
RE_LV = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,63}$")
RE_PATH = re.compile(r"^/[A-Za-z0-9._/+@-]*$")
RE_URL = re.compile(r"^https?://[A-Za-z0-9._~:/?#@!$&()*+,=%\[\]-]+$")
RE_FS = re.compile(r"^[a-z0-9]{1,16}$")
RE_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}$")


def __virtual__():
    """Always load; the primitives module reports what a host lacks."""
    return True


# --------------------------------------------------------------------------
# configuration and validation
# --------------------------------------------------------------------------
def _conf():
    given = __salt__["config.get"]("gfs2clvm", {}) or {}
    conf = dict(DEFAULTS)
    if isinstance(given, dict):
        conf.update({k: v for k, v in given.items() if k in DEFAULTS and v is not None})
    conf["mountpoint"] = _path(conf["mountpoint"], "mountpoint")
    conf["vg"] = _vg(conf["vg"])
    conf["lock_wait"] = int(conf["lock_wait"])
    conf["migrate_wait"] = int(conf["migrate_wait"])
    return conf


def _id(value, what="id"):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise SaltInvocationError(f"{what} must be an integer, not {value!r}")
    if isinstance(value, str) and not re.fullmatch(r"[0-9]{1,10}", value):
        raise SaltInvocationError(f"{what} must be a non-negative integer, not {value!r}")
    number = int(value)
    if not 0 <= number < MAX_ID:
        raise SaltInvocationError(f"{what} out of range: {value!r}")
    return number


def _size(value, what="size_mb"):
    number = _id(value, what)
    if number <= 0:
        raise SaltInvocationError(f"{what} must be > 0, not {value!r}")
    return number


def _vg(value):
    if not isinstance(value, str) or not RE_VG.match(value):
        raise SaltInvocationError(f"invalid volume group name {value!r}")
    return value


def _path(value, what="path"):
    if not isinstance(value, str) or not RE_PATH.match(value) or os.path.normpath(value) != value:
        raise SaltInvocationError(f"{what} must be a plain absolute path, not {value!r}")
    if ".." in value.split("/"):
        raise SaltInvocationError(f"{what} must not contain '..': {value!r}")
    return value


def _under(path, root):
    return path.startswith(root.rstrip("/") + "/")


def _vm_path(conf, path, vmid, diskid=None, disk=None):
    """A VM directory or ``disk.N`` path under the mountpoint, belonging to ``vmid``.

    Layouts: ``<mp>/datastores/<dsid>/<vmid>[/disk.N]`` and (OpenNebula 3.2)
    ``<mp>/<vmid>/images[/disk.N]``.  Returns ``(path, vmdir, diskid or None)``.
    """
    path = _path(path)
    if not _under(path, conf["mountpoint"]):
        raise SaltInvocationError(f"{path} is not under the mountpoint {conf['mountpoint']}")
    match = RE_DISK.match(os.path.basename(path))
    vmdir = os.path.dirname(path) if match else path
    found = int(match.group(1)) if match else None
    rel = os.path.relpath(vmdir, conf["mountpoint"]).split("/")
    # exactly <mp>/datastores/<dsid>/<vmid> or (3.2) <mp>/<vmid>/images: never a
    # datastore directory, whose last component may equal the VM id too
    modern = len(rel) == 3 and rel[0] == "datastores" and rel[1].isdigit() and rel[2] == str(vmid)
    legacy = len(rel) == 2 and rel[0] == str(vmid) and rel[1] == "images"
    if not (modern or legacy):
        raise SaltInvocationError(f"{path} is not in the directory of VM {vmid}")
    if disk is True and found is None:
        raise SaltInvocationError(f"{path} does not name a disk (disk.N)")
    if disk is False and found is not None:
        raise SaltInvocationError(f"{path} names a disk, expected a VM directory")
    if diskid is not None and found != diskid:
        raise SaltInvocationError(f"{path} is not disk.{diskid}")
    return path, vmdir, found


def _device(value, default_vg=None):
    """``/dev/<vg>/<lv>`` or ``<vg>/<lv>`` -> (vg, lv)."""
    if not isinstance(value, str):
        raise SaltInvocationError(f"invalid volume {value!r}")
    parts = value[5:].split("/") if value.startswith("/dev/") else value.split("/")
    if len(parts) == 1 and default_vg:
        parts = [default_vg, parts[0]]
    if len(parts) != 2 or not RE_VG.match(parts[0]) or not RE_LV.match(parts[1]):
        raise SaltInvocationError(f"invalid volume {value!r}: expected /dev/<vg>/<lv>")
    return parts[0], parts[1]


def _image(value, vg):
    svg, lv = _device(value, vg)
    if not RE_IMAGE_LV.match(lv):
        raise SaltInvocationError(f"{value} is not an image volume (lv-oneimg-<32 hex>)")
    return svg, lv


def _mb(nbytes):
    return max(1, math.ceil(nbytes / (1024 * 1024)))


# --------------------------------------------------------------------------
# rollback
# --------------------------------------------------------------------------
class _Undo:
    """Undo steps run in reverse order when the block fails; errors only logged."""

    def __init__(self):
        self.steps = []

    def add(self, what, fun, *args, **kwargs):
        self.steps.append((what, fun, args, kwargs))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            return False
        for what, fun, args, kwargs in reversed(self.steps):
            try:
                fun(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 -- keep undoing, report the first error
                log.error("gfs2clvm_tm: undo %s failed: %s", what, err)
        return False


def _p(name):
    return __salt__[f"gfs2clvm.{name}"]


def _remove_link(path):
    if os.path.islink(path):
        os.unlink(path)


def _new_lv(undo, name, vg, size_mb=None):
    """lv_create + its undo (lv_remove)."""
    ret = _p("lv_create")(name, size_mb=size_mb, vg=vg)
    undo.add(f"remove {vg}/{name}", _p("lv_remove"), name, vg=vg, missing_ok=True)
    return ret


LOCK_DIRS = ("/run/lock", "/var/lock", "/tmp")


def _lock_path(name):
    """``<lock dir>/gfs2clvm.<name>`` in the first writable of LOCK_DIRS."""
    for base in LOCK_DIRS:
        if os.path.isdir(base) and os.access(base, os.W_OK | os.X_OK):
            break
    return os.path.join(base, f"gfs2clvm.{name}")


def _lock_fd(name):
    return os.open(_lock_path(name), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)


@contextlib.contextmanager
def _disk_lock(name):
    """One operation at a time on VM disk ``name`` on this host (non-blocking: a
    second one fails at once).  Across hosts lvmlockd's exclusive LV lock decides."""
    fd = _lock_fd(f"{name}.lock")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CommandExecutionError(
                f"another operation on {name} is in progress on this host: try again when it has finished"
            ) from None
        yield
    finally:
        os.close(fd)


def _clear_leftover(vg, name):
    """Remove ``lv-one-<vm>-<disk>`` left by an earlier attempt of the same action.

    oned retries a prolog action whose ssh connection was lost although the worker
    completed it; the disk it made then stands in the way.  It is removed and made
    again -- unless it is open (a running VM), has snapshots, or is active on
    another host (lvmlockd refuses; that error is reported).  Returns True when one
    was removed.
    """
    found = [lv for lv in _p("lv_list")(vg=vg, prefix=name)["lvs"]
             if lv["name"] == name or lv["name"].startswith(f"{name}-s")]
    if not any(lv["name"] == name for lv in found):
        return False
    if any(lv["open"] for lv in found):
        raise CommandExecutionError(f"{vg}/{name} already exists and is open (in use by a running VM): not replacing it")
    if len(found) > 1:
        raise CommandExecutionError(f"{vg}/{name} already exists and has snapshots: not replacing it")
    log.warning("gfs2clvm_tm: %s/%s left by an earlier attempt: removing it to start again", vg, name)
    try:
        _p("lv_remove")(name, vg=vg)
    except CommandExecutionError as err:
        raise CommandExecutionError(f"{vg}/{name} already exists and could not be replaced: {err}") from None
    return True


def _link(undo, device, path):
    """Symlink ``path`` -> ``device``; undo removes it unless it was already right."""
    before = os.readlink(path) if os.path.islink(path) else None
    ret = _p("link")(device, path, force=True)
    if before != device:
        undo.add(f"unlink {path}", _remove_link, path)
    return ret


@contextlib.contextmanager
def _source_use(vg, lv):
    """Read source LV ``vg/lv`` in the ``with`` block: activated shared when it is not
    active here, and deactivated again by the last of this host's concurrent readers.

    Clones of one image run side by side on a host; a plain "activate if inactive,
    deactivate if I activated it" lets the first one to finish deactivate the image
    under another that found it active (seen in the lab: ``cannot read /dev/...: No
    such file or directory``).  So: ``<lv>.gate`` (exclusive, held only for the state
    changes) and ``<lv>.users`` (shared while reading); the reader that leaves last --
    it gets ``users`` exclusively -- deactivates, and only when readers activated it
    (``<lv>.ours`` marker): an image someone else had active stays active."""
    key = f"src.{vg}.{lv}"
    marker = _lock_path(f"{key}.ours")
    gate, users = _lock_fd(f"{key}.gate"), _lock_fd(f"{key}.users")
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(users, fcntl.LOCK_SH)
            if not _p("lv_info")(lv, vg=vg)["active"]:
                _p("lv_activate")(lv, vg=vg, mode="shared")
                os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
        except BaseException:
            fcntl.flock(users, fcntl.LOCK_UN)
            raise
        finally:
            fcntl.flock(gate, fcntl.LOCK_UN)
        yield
    finally:
        fcntl.flock(users, fcntl.LOCK_UN)
        try:
            fcntl.flock(gate, fcntl.LOCK_EX)
            try:
                fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # another reader is still copying: it deactivates when it leaves
            else:
                if os.path.exists(marker):
                    _release(vg, lv)
                    os.unlink(marker)
        finally:
            os.close(users)
            os.close(gate)


def _release(vg, lv):
    try:
        _p("lv_deactivate")(lv, vg=vg)
    except CommandExecutionError as err:
        log.warning("gfs2clvm_tm: could not deactivate %s/%s: %s", vg, lv, err)


def _copy_lv(undo, conf, svg, slv, name, vg, size_mb=None, fmt="raw", refuse_open=True):
    """A new LV ``name`` with the content of ``svg/slv`` (thin snapshot when possible)."""
    info = _p("lv_info")(slv, vg=svg)
    if info["open"] and refuse_open:
        raise CommandExecutionError(f"{svg}/{slv} is open (in use by a running VM): not copying it")
    size = max(size_mb or 0, info["size_mb"])
    thin_ok = info["thin"] and conf["thin_pool"] and info["pool"] == conf["thin_pool"] and svg == vg
    if thin_ok and fmt == "raw":
        _p("lv_snapshot")(slv, name, vg=vg)
        undo.add(f"remove {vg}/{name}", _p("lv_remove"), name, vg=vg, missing_ok=True)
        if size > info["size_mb"]:
            _p("lv_resize")(name, size, vg=vg)
        return {"method": "thin-snapshot", "size_mb": size}
    created = _new_lv(undo, name, vg, size)
    with _source_use(svg, slv):
        ret = _p("copy")(f"/dev/{svg}/{slv}", f"/dev/{vg}/{name}", fmt=fmt,
                         dst_zeroed=bool(created.get("zeroed") or created.get("thin")),
                         progress=info["size_mb"] >= PROGRESS_MB)
    return {"method": "copy", "size_mb": size, "bytes": ret.get("bytes")}


def _classify(conf, src, vg):
    """(kind, value) of a clone source: url / isox / iso / lv."""
    if not isinstance(src, str):
        raise SaltInvocationError(f"invalid source {src!r}")
    if src.startswith(("http://", "https://")):
        if not RE_URL.match(src):
            raise SaltInvocationError(f"invalid URL {src!r}")
        return "url", src
    if src.endswith((".iso", ".isox")) and not src.startswith("/dev/"):
        path = _path(src, "source")
        if not _under(path, conf["mountpoint"]):
            raise SaltInvocationError(f"ISO {path} is not under the mountpoint {conf['mountpoint']}")
        return ("isox" if path.endswith(".isox") else "iso"), path
    return "lv", _device(src, vg)


def _ret(action, **kwargs):
    return {"action": action, **kwargs}


# --------------------------------------------------------------------------
# TM actions
# --------------------------------------------------------------------------
def clone(src, dst, vmid, diskid, size_mb=None, fmt="raw", vg=None):
    """
    New VM disk ``lv-one-<vmid>-<diskid>`` linked at ``dst`` from ``src``: an
    image volume or other LV (thin snapshot when both are in ``thin_pool``,
    else a copy; a source open by a running VM is refused), an http(s) URL
    (fetched here), an ``.iso`` file on GFS2 (copied into the LV) or an
    ``.isox`` file (only linked).

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.clone /dev/vg_cloudstorage/lv-oneimg-0123456789abcdef0123456789abcdef /var/lib/one/datastores/0/42/disk.0 42 0
    """
    conf = _conf()
    vmid, diskid = _id(vmid, "vmid"), _id(diskid, "diskid")
    vg = _vg(vg or conf["vg"])
    dst, _, _ = _vm_path(conf, dst, vmid, diskid, disk=True)
    size = _size(size_mb) if size_mb is not None else None
    if fmt not in ("raw", "qcow2", "auto"):
        raise SaltInvocationError(f"fmt must be raw, qcow2 or auto, not {fmt!r}")
    kind, source = _classify(conf, src, vg)
    if kind == "isox":
        if not os.path.isfile(source):
            raise CommandExecutionError(f"ISO {source} not found")
        with _Undo() as undo:
            _link(undo, source, dst)
        return _ret("clone", kind=kind, path=dst, target=source)
    name = f"lv-one-{vmid}-{diskid}"
    device = f"/dev/{vg}/{name}"
    with _disk_lock(name), _Undo() as undo:
        _clear_leftover(vg, name)
        if kind == "lv":
            done = _copy_lv(undo, conf, source[0], source[1], name, vg, size, fmt)
        else:
            if kind == "iso":
                if not os.path.isfile(source):
                    raise CommandExecutionError(f"ISO {source} not found")
                size = max(size or 0, _mb(os.path.getsize(source)))
            created = _new_lv(undo, name, vg, size or conf["default_size_mb"])
            ret = _p("copy")(source, device, fmt="raw" if kind == "url" else fmt,
                             dst_zeroed=bool(created.get("zeroed") or created.get("thin")),
                             progress=created["size_mb"] >= PROGRESS_MB)
            done = {"method": "copy", "size_mb": created["size_mb"], "bytes": ret.get("bytes")}
        _p("lv_activate")(name, vg=vg, mode="exclusive")
        _link(undo, device, dst)
    return _ret("clone", kind=kind, path=dst, device=device, **done)


def ln(src, dst, vmid, diskid, vg=None):
    """
    Link the persistent image volume ``src`` as disk ``diskid`` of VM ``vmid``,
    activated exclusively on this host (refused while another host uses it).

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.ln /dev/vg_cloudstorage/lv-oneimg-0123456789abcdef0123456789abcdef /var/lib/one/datastores/0/42/disk.1 42 1
    """
    conf = _conf()
    vmid, diskid = _id(vmid, "vmid"), _id(diskid, "diskid")
    vg = _vg(vg or conf["vg"])
    dst, _, _ = _vm_path(conf, dst, vmid, diskid, disk=True)
    svg, lv = _image(src, vg)
    device = f"/dev/{svg}/{lv}"
    with _Undo() as undo:
        info = _p("lv_info")(lv, vg=svg)
        if not info["active"]:
            _p("lv_activate")(lv, vg=svg, mode="exclusive")
            undo.add(f"deactivate {svg}/{lv}", _p("lv_deactivate"), lv, vg=svg)
        _link(undo, device, dst)
    return _ret("ln", path=dst, device=device)


def _blank(action, dst, vmid, diskid, size_mb, vg, fs):
    conf = _conf()
    vmid, diskid = _id(vmid, "vmid"), _id(diskid, "diskid")
    vg = _vg(vg or conf["vg"])
    dst, _, _ = _vm_path(conf, dst, vmid, diskid, disk=True)
    size = _size(size_mb)
    if fs is not None and (not isinstance(fs, str) or not RE_FS.match(fs)):
        raise SaltInvocationError(f"invalid filesystem type {fs!r}")
    name = f"lv-one-{vmid}-{diskid}"
    device = f"/dev/{vg}/{name}"
    with _disk_lock(name), _Undo() as undo:
        _clear_leftover(vg, name)
        _new_lv(undo, name, vg, size)
        if fs == "swap":
            _p("mkswap")(device)
        elif fs:
            _p("mkfs")(device, fs)
        _p("lv_activate")(name, vg=vg, mode="exclusive")
        _link(undo, device, dst)
    return _ret(action, path=dst, device=device, size_mb=size, fs=fs)


def mkimage(dst, vmid, diskid, size_mb, fs=None, vg=None):
    """
    New empty VM disk of ``size_mb`` (zeroed by ``lv_create``), with file
    system ``fs`` when given, linked at ``dst``.

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.mkimage /var/lib/one/datastores/0/42/disk.2 42 2 2048 fs=ext4
    """
    return _blank("mkimage", dst, vmid, diskid, size_mb, vg, fs)


def mkswap(dst, vmid, diskid, size_mb, vg=None):
    """
    New swap disk of ``size_mb`` linked at ``dst``.

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.mkswap /var/lib/one/datastores/0/42/disk.3 42 3 512
    """
    return _blank("mkswap", dst, vmid, diskid, size_mb, vg, "swap")


def _staging_dir(conf):
    return os.path.join(conf["mountpoint"], STAGING)


def _staged(conf, path, nbytes, sha256):
    """Check a streamed staging file: place, size, sha256.  Returns the path."""
    path = _path(path, "staged")
    if os.path.dirname(path) != _staging_dir(conf) or not RE_FILE.match(os.path.basename(path)):
        raise SaltInvocationError(f"staged file {path} is not in {_staging_dir(conf)}")
    nbytes = _id(nbytes, "staged_bytes")
    if not isinstance(sha256, str) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise SaltInvocationError("staged_sha256 must be a hex sha256 digest")
    if not os.path.isfile(path) or os.path.islink(path):
        raise CommandExecutionError(f"staged file {path} not found (did the data stream fail?)")
    size = os.path.getsize(path)
    if size != nbytes:
        raise CommandExecutionError(f"staged file {path} has {size} bytes, expected {nbytes}")
    return path


def _drop_staged(conf, path):
    """Remove a staging file and stale ones (older than a day) left by failed streams."""
    for old in [path] + glob.glob(os.path.join(_staging_dir(conf), "*")):
        try:
            if old == path or time.time() - os.lstat(old).st_mtime > STAGING_MAX_AGE:
                os.unlink(old)
        except OSError:
            pass


def _read_tar(path, sha256):
    with open(path, "rb") as handle:
        data = handle.read()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise CommandExecutionError(f"staged file {path}: sha256 mismatch")
    files = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar.getmembers():
            if not member.isfile() or not RE_FILE.match(member.name):
                raise CommandExecutionError(f"staged context: refusing member {member.name!r}")
            files[member.name] = base64.b64encode(tar.extractfile(member).read()).decode()
    return files


def context(dst, vmid, files=None, staged=None, staged_bytes=None, staged_sha256=None, vg=None):
    """
    Build the context ISO at ``dst`` from ``files`` (``{name: base64}``) or from
    a tar streamed to the staging area (``staged``, verified by size and sha256,
    always removed).

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.context /var/lib/one/datastores/0/42/disk.4 42 files='{"context.sh": "QT0xCg=="}'
    """
    conf = _conf()
    vmid = _id(vmid, "vmid")
    dst, _, _ = _vm_path(conf, dst, vmid, disk=True)
    if vg is not None:
        _vg(vg)
    if (files is None) == (staged is None):
        raise SaltInvocationError("give files or staged, not both or neither")
    if files is not None and not isinstance(files, dict):
        raise SaltInvocationError("files must be a mapping of name to base64 content")
    if staged is not None:
        staged = _staged(conf, staged, staged_bytes, staged_sha256)
        try:
            files = _read_tar(staged, staged_sha256)
        finally:
            _drop_staged(conf, staged)
    ret = _p("context_iso")(dst, files=files)
    return _ret("context", path=dst, files=ret.get("files"), size=ret.get("size"))


def _vm_lvs(conf, vmdir, vmid, vg, disk=None):
    """LVs (vg, name) a VM uses: its ``lv-one-<vmid>-*`` disks and the image
    volumes its ``disk.*`` links point at (one disk only when ``disk`` is set)."""
    found = []
    for lv in _p("lv_list")(vg=vg, vmid=vmid)["lvs"]:
        match = RE_VM_LV.match(lv["name"])
        if match and (disk is None or int(match.group(2)) == disk):
            found.append((lv["vg"], lv["name"]))
    pattern = f"disk.{disk}" if disk is not None else "disk.*"
    for link in sorted(glob.glob(os.path.join(vmdir, pattern))):
        if os.path.islink(link):
            try:
                svg, lv = _device(os.readlink(link))
            except SaltInvocationError:
                continue
            if RE_IMAGE_LV.match(lv) and (svg, lv) not in found:
                found.append((svg, lv))
    return found


def _activate_wait(conf, vg, lv, mode):
    """Activate, retrying while another host still holds a conflicting lock."""
    deadline = time.monotonic() + conf["lock_wait"]
    while True:
        try:
            return _p("lv_activate")(lv, vg=vg, mode=mode)
        except CommandExecutionError as err:
            if time.monotonic() >= deadline:
                raise CommandExecutionError(
                    f"{vg}/{lv}: {mode} activation still refused after {conf['lock_wait']} s: {err}"
                ) from err
            time.sleep(1)


def _me():
    return __opts__.get("id")


def mv(src, dst, vmid, src_host=None, dst_host=None, vg=None):
    """
    Hand a VM's LVs (or one disk's) from one host to another: GFS2 and the VG
    are shared, nothing is copied.  Run on both hosts in one salt-ssh call; each
    acts by its minion id: ``src_host`` deactivates, ``dst_host`` activates
    exclusively (waiting up to ``lock_wait`` s for the source to let go) and,
    when ``dst`` is in another system datastore, moves the link or directory.

    CLI Example:

    .. code-block:: bash

        salt-ssh -L node1,node2 gfs2clvm_tm.mv /var/lib/one/datastores/0/42 /var/lib/one/datastores/0/42 42 src_host=node1 dst_host=node2
    """
    conf = _conf()
    vmid = _id(vmid, "vmid")
    vg = _vg(vg or conf["vg"])
    src, src_dir, disk = _vm_path(conf, src, vmid)
    dst, dst_dir, _ = _vm_path(conf, dst, vmid)
    me = _me()
    if me == src_host:
        lvs = _vm_lvs(conf, src_dir, vmid, vg, disk)
        for lv_vg, lv in lvs:
            _p("lv_deactivate")(lv, vg=lv_vg)
        return _ret("mv", role="source", deactivated=[lv for _, lv in lvs])
    if me == dst_host:
        here = src_dir if src != dst and os.path.lexists(src) else dst_dir
        lvs = _vm_lvs(conf, here, vmid, vg, disk)
        done = []
        with _Undo() as undo:
            for lv_vg, lv in lvs:
                _activate_wait(conf, lv_vg, lv, "exclusive")
                undo.add(f"deactivate {lv}", _p("lv_deactivate"), lv, vg=lv_vg)
                done.append(lv)
            moved = _relocate(src, dst)
        return _ret("mv", role="destination", activated=done, moved=moved)
    raise SaltInvocationError(f"this host ({me}) is neither src_host nor dst_host")


def _relocate(src, dst):
    """Another system datastore: move the disk link or VM directory on the shared
    GFS2 (after the activations, so the source host has read the links already).
    An existing destination directory receives the entries it lacks."""
    if src == dst or not os.path.lexists(src):
        return None
    try:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.isdir(src) and not os.path.islink(src) and os.path.isdir(dst):
            for name in sorted(os.listdir(src)):
                if not os.path.lexists(os.path.join(dst, name)):
                    os.rename(os.path.join(src, name), os.path.join(dst, name))
            os.rmdir(src)
        elif not os.path.lexists(dst):
            os.rename(src, dst)
        else:
            raise CommandExecutionError(f"cannot move {src} to {dst}: {dst} exists")
    except OSError as err:
        raise CommandExecutionError(f"cannot move {src} to {dst}: {err.strerror}") from err
    return dst


def _migrate(action, vmid, vmdir, src_host, dst_host, vg):
    conf = _conf()
    vmid = _id(vmid, "vmid")
    vg = _vg(vg or conf["vg"])
    _, vmdir, _ = _vm_path(conf, vmdir, vmid, disk=False)
    me = _me()
    if me not in (src_host, dst_host) or src_host == dst_host:
        raise SaltInvocationError(f"this host ({me}) must be exactly one of src_host/dst_host")
    role = "source" if me == src_host else "destination"
    lvs = _vm_lvs(conf, vmdir, vmid, vg)
    return conf, role, lvs


def _handoff_path(conf, handoff):
    if not isinstance(handoff, str) or not re.fullmatch(r"[0-9a-f]{32}", handoff):
        raise SaltInvocationError("handoff must be 32 hex digits")
    return os.path.join(_staging_dir(conf), f"premigrate-{handoff}")


def _handoff_write(conf, path, text):
    """The source's word to the destination, on the shared GFS2 (atomic: write + rename)."""
    try:
        os.makedirs(_staging_dir(conf), exist_ok=True)
        with open(f"{path}.tmp", "w", encoding="utf-8") as handle:
            handle.write(text)
        os.rename(f"{path}.tmp", path)
    except OSError as err:
        log.error("gfs2clvm_tm: cannot write %s: %s", path, err)


def _handoff_wait(conf, path, src_host):
    """Wait until the source has converted its exclusive locks to shared (or failed)."""
    start = time.monotonic()
    deadline = start + conf["migrate_wait"]
    while not os.path.exists(path):
        if time.monotonic() >= deadline:
            raise CommandExecutionError(f"the source host {src_host} did not share the VM's LVs "
                                        f"within {conf['migrate_wait']} s (migrate_wait)")
        time.sleep(0.2)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read().strip()
        os.unlink(path)
    except OSError as err:
        raise CommandExecutionError(f"cannot read {path}: {err.strerror}") from err
    if text != "shared":
        raise CommandExecutionError(f"the source host {src_host} could not share the VM's LVs: {text}")
    return round(time.monotonic() - start, 1)


def premigrate(vmid, vmdir, src_host=None, dst_host=None, vg=None, handoff=None):
    """
    Before a live migration: activate the VM's LVs shared on both hosts.  Thin
    LVs cannot be active on two hosts: refused before anything changes.

    Order: the source converts its exclusive locks to shared first; with
    ``handoff`` (32 hex digits, one per call) it then writes that word to the
    shared GFS2 and the destination activates only after reading it -- so the
    destination's ``lock_wait`` never runs out while the source is still
    starting (a TCG worker's salt-call alone takes seconds).  The destination
    waits up to ``migrate_wait`` s for the source.  Without ``handoff`` the
    destination just retries for ``lock_wait`` s.

    CLI Example:

    .. code-block:: bash

        salt-ssh -L node1,node2 gfs2clvm_tm.premigrate 42 /var/lib/one/datastores/0/42 src_host=node1 dst_host=node2
    """
    conf, role, lvs = _migrate("premigrate", vmid, vmdir, src_host, dst_host, vg)
    path = None if handoff is None else _handoff_path(conf, handoff)
    try:
        infos = [_p("lv_info")(lv, vg=lv_vg) for lv_vg, lv in lvs]
        thin = [info["name"] for info in infos if info["thin"]]
        if thin:
            raise CommandExecutionError(f"thin LVs cannot be active on two hosts: {', '.join(thin)} (no live migration)")
        if role == "source":
            for lv_vg, lv in lvs:
                _activate_wait(conf, lv_vg, lv, "shared")  # ex -> sh: lets the destination in
    except Exception as err:
        if path and role == "source":
            _handoff_write(conf, path, f"failed: {err}")
        raise
    if role == "source":
        if path:
            _handoff_write(conf, path, "shared")
        return _ret("premigrate", role=role, shared=[lv for _, lv in lvs])
    waited = _handoff_wait(conf, path, src_host) if path else None
    with _Undo() as undo:
        for lv_vg, lv in lvs:
            _activate_wait(conf, lv_vg, lv, "shared")
            undo.add(f"deactivate {lv}", _p("lv_deactivate"), lv, vg=lv_vg)
    return _ret("premigrate", role=role, shared=[lv for _, lv in lvs], waited_s=waited)


def postmigrate(vmid, vmdir, src_host=None, dst_host=None, vg=None):
    """
    After a live migration: the source deactivates the VM's LVs; the
    destination converts them to exclusive (waiting for the source).

    CLI Example:

    .. code-block:: bash

        salt-ssh -L node1,node2 gfs2clvm_tm.postmigrate 42 /var/lib/one/datastores/0/42 src_host=node1 dst_host=node2
    """
    conf, role, lvs = _migrate("postmigrate", vmid, vmdir, src_host, dst_host, vg)
    for lv_vg, lv in lvs:
        if role == "source":
            _p("lv_deactivate")(lv, vg=lv_vg)
        else:
            _activate_wait(conf, lv_vg, lv, "exclusive")
    return _ret("postmigrate", role=role, lvs=[lv for _, lv in lvs])


def failmigrate(vmid, vmdir, src_host=None, dst_host=None, vg=None):
    """
    After a failed live migration: the destination deactivates the VM's LVs;
    the source goes back to exclusive (waiting for the destination).

    CLI Example:

    .. code-block:: bash

        salt-ssh -L node1,node2 gfs2clvm_tm.failmigrate 42 /var/lib/one/datastores/0/42 src_host=node1 dst_host=node2
    """
    conf, role, lvs = _migrate("failmigrate", vmid, vmdir, src_host, dst_host, vg)
    for lv_vg, lv in lvs:
        if role == "destination":
            _p("lv_deactivate")(lv, vg=lv_vg)
        else:
            _activate_wait(conf, lv_vg, lv, "exclusive")
    return _ret("failmigrate", role=role, lvs=[lv for _, lv in lvs])


def _disk_lv(conf, path, vmid, vg):
    """(vg, lv, link target) of the ``disk.N`` link at ``path``."""
    path, _, diskid = _vm_path(conf, path, vmid, disk=True)
    if not os.path.islink(path):
        raise CommandExecutionError(f"{path} is not a link to a disk")
    target = os.readlink(path)
    lv_vg, lv = _device(target)
    return lv_vg, lv, diskid, path


def mvds(src, dst, vmid, vg=None):
    """
    A VM disk back to its image volume ``dst`` (undeploy/terminate of a
    persistent disk): when the link already points at ``dst`` it is removed
    and the volume deactivated; a VM LV is copied into ``dst`` and removed.

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.mvds /var/lib/one/datastores/0/42/disk.1 /dev/vg_cloudstorage/lv-oneimg-0123456789abcdef0123456789abcdef 42
    """
    conf = _conf()
    vmid = _id(vmid, "vmid")
    vg = _vg(vg or conf["vg"])
    dvg, dlv = _image(dst, vg)
    lv_vg, lv, diskid, path = _disk_lv(conf, src, vmid, vg)
    if (lv_vg, lv) != (dvg, dlv):
        if lv != f"lv-one-{vmid}-{diskid}":
            raise CommandExecutionError(f"{path} points at {lv_vg}/{lv}, not at a disk of VM {vmid}")
        if _p("lv_info")(lv, vg=lv_vg)["open"]:
            raise CommandExecutionError(f"{lv_vg}/{lv} is open (in use by a running VM): not copying it")
        info = _p("lv_info")(dlv, vg=dvg)
        if not info["active"]:
            _p("lv_activate")(dlv, vg=dvg, mode="exclusive")
        try:
            _p("copy")(f"/dev/{lv_vg}/{lv}", f"/dev/{dvg}/{dlv}", sparse=False,
                       progress=info["size_mb"] >= PROGRESS_MB)
        finally:
            _release(dvg, dlv)
        _p("lv_remove")(lv, vg=lv_vg, missing_ok=True)
        _remove_link(path)
        return _ret("mvds", path=path, copied=f"{lv_vg}/{lv}", image=f"{dvg}/{dlv}")
    _p("lv_deactivate")(dlv, vg=dvg)
    _remove_link(path)
    return _ret("mvds", path=path, image=f"{dvg}/{dlv}")


def cpds(src, dst, vmid, snapid=None, vg=None):
    """
    Copy a VM disk (or its snapshot ``snapid``) into the image volume ``dst``
    (created with the disk's size when absent, grown when smaller).  A disk in
    use by a running VM is refused.

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.cpds /var/lib/one/datastores/0/42/disk.0 /dev/vg_cloudstorage/lv-oneimg-0123456789abcdef0123456789abcdef 42
    """
    conf = _conf()
    vmid = _id(vmid, "vmid")
    vg = _vg(vg or conf["vg"])
    dvg, dlv = _image(dst, vg)
    lv_vg, lv, diskid, _ = _disk_lv(conf, src, vmid, vg)
    if snapid is not None:
        lv = f"lv-one-{vmid}-{diskid}-s{_id(snapid, 'snapid')}"
    info = _p("lv_info")(lv, vg=lv_vg)
    if info["open"]:
        raise CommandExecutionError(f"{lv_vg}/{lv} is open (in use by a running VM): not copying it")
    with _Undo() as undo:
        existing = [item for item in _p("lv_list")(vg=dvg, prefix=dlv)["lvs"] if item["name"] == dlv]
        if existing:
            _p("lv_resize")(dlv, max(info["size_mb"], existing[0]["size_mb"]), vg=dvg)
            if not existing[0]["active"]:
                _p("lv_activate")(dlv, vg=dvg, mode="exclusive")
                undo.add(f"deactivate {dvg}/{dlv}", _release, dvg, dlv)
        else:
            _new_lv(undo, dlv, dvg, info["size_mb"])
        with _source_use(lv_vg, lv):
            _p("copy")(f"/dev/{lv_vg}/{lv}", f"/dev/{dvg}/{dlv}", sparse=False,
                       progress=info["size_mb"] >= PROGRESS_MB)
        _release(dvg, dlv)
    return _ret("cpds", source=f"{lv_vg}/{lv}", image=f"{dvg}/{dlv}", size_mb=info["size_mb"])


def delete(path, vmid, vg=None):
    """
    Delete one disk (``.../disk.N``: its LV ``lv-one-<vmid>-N`` and snapshots;
    a persistent image volume is only deactivated) or a whole VM directory
    (exactly the LVs ``lv-one-<vmid>-*``, image volumes it links deactivated).
    Absent things are fine: a retry succeeds.

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.delete /var/lib/one/datastores/0/42 42
    """
    conf = _conf()
    vmid = _id(vmid, "vmid")
    vg = _vg(vg or conf["vg"])
    path, vmdir, diskid = _vm_path(conf, path, vmid)
    if diskid is None:
        images = [(v, lv) for v, lv in _vm_lvs(conf, vmdir, vmid, vg) if RE_IMAGE_LV.match(lv)]
        for lv_vg, lv in images:
            _release(lv_vg, lv)
        legacy = os.path.basename(vmdir) == "images"
        ret = _p("vm_delete")(vmid, vg=vg, path=None if legacy else vmdir)
        if legacy and os.path.isdir(vmdir):
            for link in glob.glob(os.path.join(vmdir, "disk.*")):
                _remove_link(link)
        return _ret("delete", path=path, removed=ret.get("removed", []),
                    deactivated=[lv for _, lv in images])
    removed, deactivated = [], []
    target = os.readlink(path) if os.path.islink(path) else None
    if target and target.startswith("/dev/"):
        lv_vg, lv = _device(target)
        if RE_IMAGE_LV.match(lv):
            _release(lv_vg, lv)
            deactivated.append(lv)
    name = f"lv-one-{vmid}-{diskid}"
    snaps = [lv["name"] for lv in _p("lv_list")(vg=vg, vmid=vmid)["lvs"]
             if re.fullmatch(rf"{name}-s\d+", lv["name"])]
    for lv in snaps + [name]:
        if _p("lv_remove")(lv, vg=vg, missing_ok=True).get("removed"):
            removed.append(lv)
    if os.path.lexists(path):
        if os.path.isdir(path) and not os.path.islink(path):
            raise CommandExecutionError(f"{path} is a directory, expected a disk link or file")
        os.unlink(path)
    return _ret("delete", path=path, removed=removed, deactivated=deactivated)


def resize(path, size_mb, vmid=None, vg=None):
    """
    Grow the LV behind the ``disk.N`` link at ``path`` to ``size_mb``.

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.resize /var/lib/one/datastores/0/42/disk.0 20480 vmid=42
    """
    conf = _conf()
    vmid = _id(vmid, "vmid")
    size = _size(size_mb)
    lv_vg, lv, _, path = _disk_lv(conf, path, vmid, _vg(vg or conf["vg"]))
    ret = _p("lv_resize")(lv, size, vg=lv_vg)
    return _ret("resize", path=path, lv=lv, size_mb=ret["size_mb"])


def _snap_names(conf, path, snapid, vmid, vg):
    vmid, snapid = _id(vmid, "vmid"), _id(snapid, "snapid")
    lv_vg, lv, diskid, path = _disk_lv(conf, path, vmid, _vg(vg or conf["vg"]))
    if lv != f"lv-one-{vmid}-{diskid}":
        raise CommandExecutionError(f"{path} is not a VM disk LV ({lv}): snapshots of persistent images are not supported")
    return lv_vg, lv, f"{lv}-s{snapid}", path


def snap_create(path, snapid, vmid=None, vg=None):
    """
    Snapshot the disk at ``path`` as ``lv-one-<vmid>-<disk>-s<snapid>``
    (refused while the VM runs: the disk is open).

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.snap_create /var/lib/one/datastores/0/42/disk.0 1 vmid=42
    """
    conf = _conf()
    lv_vg, lv, snap, path = _snap_names(conf, path, snapid, vmid, vg)
    ret = _p("lv_snapshot")(lv, snap, vg=lv_vg)
    return _ret("snap_create", path=path, snapshot=snap, thin=ret.get("thin"))


def _snapshot_invalid(lv):
    """A thick snapshot whose COW area overflowed (``lv_attr`` ``swi-I-s``)."""
    attr = lv.get("attr") or ""
    return attr[:1] in ("s", "S") and attr[4:5] in ("I", "S")


def snap_delete(path, snapid, vmid=None, vg=None):
    """
    Remove snapshot ``snapid`` of the disk at ``path`` (absent is fine; an
    invalid one -- its copy-on-write area overflowed -- is removed too and
    reported as ``invalid: True``).

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.snap_delete /var/lib/one/datastores/0/42/disk.0 1 vmid=42
    """
    conf = _conf()
    lv_vg, _, snap, path = _snap_names(conf, path, snapid, vmid, vg)
    found = [lv for lv in _p("lv_list")(vg=lv_vg, prefix=snap)["lvs"] if lv["name"] == snap]
    invalid = bool(found) and _snapshot_invalid(found[0])
    if invalid:
        log.warning("gfs2clvm_tm: snapshot %s/%s was invalid (its copy-on-write area overflowed)", lv_vg, snap)
    ret = _p("lv_remove")(snap, vg=lv_vg, missing_ok=True)
    return _ret("snap_delete", path=path, snapshot=snap, removed=ret.get("removed"), invalid=invalid)


def snap_revert(path, snapid, vmid=None, vg=None):
    """
    Put the content of snapshot ``snapid`` back into the disk; the snapshot
    stays (OpenNebula keeps it listed after a revert and may revert to it again
    or delete it: ``Snapshots::active_snapshot`` in oned, and the thin LVM driver
    ``src/datastore_mad/remotes/lvm.rb`` ``snap_revert_sh`` re-creates the disk
    from the snapshot and keeps it).  Refused while the disk is open.

    * thick disk: ``lvconvert --merge`` (``gfs2clvm.lv_merge``: LVM's own revert,
      which cannot overflow half way) and then the snapshot is taken again with
      the same name, so it still holds the reverted content;
    * thin disk: the disk LV is removed and made again as a thin snapshot of the
      snapshot (no copy, no COW limit), active again when it was.

    An invalid snapshot (its copy-on-write area overflowed) is refused with that
    reason before anything changes.

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.snap_revert /var/lib/one/datastores/0/42/disk.0 1 vmid=42
    """
    conf = _conf()
    lv_vg, lv, snap, path = _snap_names(conf, path, snapid, vmid, vg)
    with _disk_lock(lv):
        found = {item["name"]: item for item in _p("lv_list")(vg=lv_vg, prefix=lv)["lvs"]
                 if item["name"] in (lv, snap)}
        if lv in found and found[lv]["open"]:
            raise CommandExecutionError(f"{lv_vg}/{lv} is open (in use by a running VM): not reverting it")
        if snap not in found:
            raise CommandExecutionError(f"snapshot {lv_vg}/{snap} not found: nothing to revert to")
        if found[snap]["thin"]:
            return _thin_revert(lv_vg, lv, snap, path, found.get(lv))
        if lv not in found:
            raise CommandExecutionError(f"logical volume {lv_vg}/{lv} not found")
        if _snapshot_invalid(found[snap]):
            raise CommandExecutionError(
                f"snapshot {lv_vg}/{snap} is invalid (its copy-on-write area overflowed): it no longer holds"
                " the disk's old content and cannot be reverted to; delete it")
        _p("lv_merge")(snap, vg=lv_vg)
        try:
            made = _p("lv_snapshot")(lv, snap, vg=lv_vg)
        except CommandExecutionError as err:
            raise CommandExecutionError(
                f"{lv_vg}/{lv} was reverted to snapshot {snapid}, but taking the snapshot again failed: {err}"
            ) from err
    return _ret("snap_revert", path=path, snapshot=snap, method="merge", size_mb=made.get("size_mb"))


def _thin_revert(vg, lv, snap, path, origin):
    """Thin disk: ``lv`` removed and made again as a thin snapshot of ``snap``.

    A retry after a failure between the two steps finds ``lv`` absent and only
    makes it (the snapshot is never touched)."""
    active = bool(origin and origin["active"])
    if origin is not None:
        _p("lv_remove")(lv, vg=vg)
    _p("lv_snapshot")(snap, lv, vg=vg)
    if active:
        _p("lv_activate")(lv, vg=vg, mode="exclusive")
    return _ret("snap_revert", path=path, snapshot=snap, method="thin-snapshot")


def monitor(sysdsid, vg=None):
    """
    Usage of the VG of a system datastore and the size of every VM disk
    (``vms: {vmid: {diskid: size_mb}}``).

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.monitor 0
    """
    conf = _conf()
    _id(sysdsid, "sysdsid")
    vg = _vg(vg or conf["vg"])
    usage = _p("vg_usage")(vg=vg)
    vms = {}
    for lv in _p("lv_list")(vg=vg, prefix="lv-one-")["lvs"]:
        match = RE_VM_LV.match(lv["name"])
        if match:
            vms.setdefault(match.group(1), {})[match.group(2)] = lv["size_mb"]
    return {"used_mb": usage["used_mb"], "free_mb": usage["free_mb"], "total_mb": usage["total_mb"],
            "vms": vms}


# --------------------------------------------------------------------------
# datastore actions (image volumes lv-oneimg-<32 hex>, inactive at rest)
# --------------------------------------------------------------------------
def _image_name(lv):
    if not isinstance(lv, str) or not RE_IMAGE_LV.match(lv):
        raise SaltInvocationError(f"{lv!r} is not an image volume name (lv-oneimg-<32 hex>)")
    return lv


def ds_cp(src, lv, size_mb=None, vg=None, staged_bytes=None, staged_sha256=None):
    """
    New image volume ``lv`` from ``src``: an http(s) URL (fetched here), an LV
    device (e.g. a VM disk; refused while open) or a file streamed to the
    staging area (verified: size and sha256; always removed).  A qcow2 image (file
    or URL) is converted: the volume always holds raw data.  The volume is left
    inactive.  Returns ``{source, size_mb, bytes, format}`` (``format``: what the
    source was).

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.ds_cp https://example.com/img.raw lv-oneimg-0123456789abcdef0123456789abcdef size_mb=2048
    """
    conf = _conf()
    lv = _image_name(lv)
    vg = _vg(vg or conf["vg"])
    size = _size(size_mb) if size_mb is not None else None
    device = f"/dev/{vg}/{lv}"
    if isinstance(src, str) and src.startswith(("http://", "https://")):
        if not RE_URL.match(src):
            raise SaltInvocationError(f"invalid URL {src!r}")
        if _p("image_info")(src)["format"] == "qcow2":
            # qemu-img converts a file, not a stream: the image goes to the staging area first
            staged = os.path.join(_staging_dir(conf), f"{os.urandom(16).hex()}.qcow2")
            try:
                _p("copy")(src, staged)
                return _cp_file(conf, staged, lv, vg, size)
            finally:
                _drop_staged(conf, staged)
        with _Undo() as undo:
            created = _new_lv(undo, lv, vg, size or conf["default_size_mb"])
            ret = _p("copy")(src, device, dst_zeroed=bool(created.get("zeroed") or created.get("thin")),
                             progress=created["size_mb"] >= PROGRESS_MB)
            _release(vg, lv)
        return {"source": device, "size_mb": created["size_mb"], "bytes": ret.get("bytes"), "format": "raw"}
    if isinstance(src, str) and src.startswith("/dev/"):
        svg, slv = _device(src)
        with _Undo() as undo:
            done = _copy_lv(undo, conf, svg, slv, lv, vg, size)
            _release(vg, lv)
        return {"source": device, "size_mb": done["size_mb"], "bytes": done.get("bytes"), "format": "raw"}
    staged = _staged(conf, src, staged_bytes, staged_sha256)
    try:
        return _cp_file(conf, staged, lv, vg, size, staged_sha256)
    finally:
        _drop_staged(conf, staged)


def _cp_file(conf, path, lv, vg, size=None, sha256=None):
    """Image file ``path`` (raw, or qcow2 checked by ``image_info``) into a new LV, stored
    raw: the datastore reports FORMAT raw for every image (datastore.py), so the disk a
    VM gets is what its DRIVER says.  The LV holds the virtual size of a qcow2 image."""
    info = _p("image_info")(path)
    device = f"/dev/{vg}/{lv}"
    with _Undo() as undo:
        created = _new_lv(undo, lv, vg, max(size or 0, _mb(info["virtual_size"])))
        ret = _p("copy")(path, device, fmt=info["format"], sha256=sha256,
                         dst_zeroed=bool(created.get("zeroed") or created.get("thin")),
                         progress=created["size_mb"] >= PROGRESS_MB)
        _release(vg, lv)
    return {"source": device, "size_mb": created["size_mb"], "bytes": ret.get("bytes"), "format": info["format"]}


def ds_mkfs(lv, size_mb, fs=None, vg=None):
    """
    New empty image volume (zeroed; file system ``fs`` when given), left inactive.

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.ds_mkfs lv-oneimg-0123456789abcdef0123456789abcdef 1024 fs=ext4
    """
    conf = _conf()
    lv, size = _image_name(lv), _size(size_mb)
    vg = _vg(vg or conf["vg"])
    if fs is not None and (not isinstance(fs, str) or not RE_FS.match(fs)):
        raise SaltInvocationError(f"invalid filesystem type {fs!r}")
    with _Undo() as undo:
        created = _new_lv(undo, lv, vg, size)
        if fs:
            _p("mkfs")(f"/dev/{vg}/{lv}", fs)
        _release(vg, lv)
    return {"source": f"/dev/{vg}/{lv}", "size_mb": created["size_mb"], "fs": fs}


def ds_rm(lv, vg=None):
    """
    Remove image volume ``lv`` (absent is fine; refused while in use).

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.ds_rm lv-oneimg-0123456789abcdef0123456789abcdef
    """
    conf = _conf()
    lv, vg = _image_name(lv), _vg(vg or conf["vg"])
    ret = _p("lv_remove")(lv, vg=vg, missing_ok=True)
    return {"lv": lv, "vg": vg, "removed": ret.get("removed")}


def ds_stat(src, vg=None):
    """
    Size in MiB of an LV device (``/dev/<vg>/<lv>``).

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.ds_stat /dev/vg_cloudstorage/lv-one-42-0
    """
    conf = _conf()
    svg, lv = _device(src, _vg(vg or conf["vg"]))
    return {"size_mb": _p("lv_info")(lv, vg=svg)["size_mb"]}


def ds_clone(src, lv, vg=None):
    """
    New image volume ``lv`` with the content of image volume ``src`` (thin
    snapshot in ``thin_pool``, else a copy), left inactive.

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.ds_clone /dev/vg_cloudstorage/lv-oneimg-0123456789abcdef0123456789abcdef lv-oneimg-fedcba9876543210fedcba9876543210
    """
    conf = _conf()
    lv, vg = _image_name(lv), _vg(vg or conf["vg"])
    svg, slv = _image(src, vg)
    with _Undo() as undo:
        done = _copy_lv(undo, conf, svg, slv, lv, vg)
        _release(vg, lv)
    return {"source": f"/dev/{vg}/{lv}", "size_mb": done["size_mb"]}


def ds_monitor(vg=None):
    """
    ``{used_mb, free_mb, total_mb}`` of the VG.

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.ds_monitor
    """
    conf = _conf()
    usage = _p("vg_usage")(vg=_vg(vg or conf["vg"]))
    return {"used_mb": usage["used_mb"], "free_mb": usage["free_mb"], "total_mb": usage["total_mb"]}


# --------------------------------------------------------------------------
# backups (OpenNebula 7.4: src/vmm_mad/exec/one_vmm_exec.rb:1318-1386 runs TM
# prebackup[_live] on the front-end, then the backup datastore's ``backup``, which
# uploads ``<vmdir>/backup/`` from the host, then TM postbackup[_live])
# --------------------------------------------------------------------------
BACKUP_DIR = "backup"
MiB = 1024 * 1024


def _backup_snap(vmid, diskid):
    """The temporary snapshot of a live backup (never an OpenNebula snapshot id)."""
    return f"lv-one-{vmid}-{diskid}-backup"


def _disk_ids(disks):
    if isinstance(disks, (int, str)) and not isinstance(disks, bool):
        disks = [d for d in str(disks).split(":") if d != ""]
    if not isinstance(disks, (list, tuple)) or not disks:
        raise SaltInvocationError(f"disks must be a non-empty list of disk ids, not {disks!r}")
    ids = [_id(d, "disk id") for d in disks]
    if len(set(ids)) != len(ids):
        raise SaltInvocationError(f"disk ids repeat: {disks!r}")
    return ids


def _vm_xml_text(vm_xml):
    """The VM's XML from base64(zlib(xml)) as the front-end sends it."""
    import zlib

    try:
        text = zlib.decompress(base64.b64decode(vm_xml, validate=True)).decode()
    except (TypeError, ValueError, zlib.error) as err:
        raise SaltInvocationError(f"vm_xml must be base64 of zlib-compressed XML: {err}") from None
    if not text.lstrip().startswith("<VM"):
        raise SaltInvocationError("vm_xml is not a <VM> document")
    return text


def _rmtree(path):
    """Remove the backup directory ``path`` (files only, as the backup makes them)."""
    import shutil

    if os.path.islink(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _drop_snap(vg, snap):
    """Remove a backup snapshot left by an earlier attempt (absent is fine)."""
    found = [lv for lv in _p("lv_list")(vg=vg, prefix=snap)["lvs"] if lv["name"] == snap]
    if found and found[0]["open"]:
        raise CommandExecutionError(f"{vg}/{snap} (an earlier backup's snapshot) is open: not removing it")
    if found:
        log.warning("gfs2clvm_tm: removing %s/%s left by an earlier backup", vg, snap)
        _p("lv_remove")(snap, vg=vg, missing_ok=True)


@contextlib.contextmanager
def _live_snapshots(vmid, sources):
    """Snapshot every disk first (one point in time for all of them, as
    src/tm_mad/lib/backup.rb:134-142 in release-7.4.0 takes all snapshots before the
    exports), yield ``{diskid: snapshot device}``, and remove every snapshot whatever
    happens.  Thick COW snapshots, or thin ones for thin LVs: lvm.rb:151-164 does
    this for thin LVs only; a thick origin can be snapshotted while open as well."""
    made = []
    devices = {}
    try:
        for diskid, lv_vg, lv in sources:
            snap = _backup_snap(vmid, diskid)
            _drop_snap(lv_vg, snap)
            ret = _p("lv_snapshot")(lv, snap, vg=lv_vg, allow_open=True)
            made.append((lv_vg, snap))
            if ret.get("thin"):
                _p("lv_activate")(snap, vg=lv_vg, mode="exclusive")  # thin snapshots skip activation
            devices[diskid] = f"/dev/{lv_vg}/{snap}"
        yield devices
    except BaseException:
        for lv_vg, snap in reversed(made):
            try:
                _p("lv_remove")(snap, vg=lv_vg, missing_ok=True)
            except Exception as err:  # noqa: BLE001 -- the first error is the reason; postbackup retries
                log.error("gfs2clvm_tm: could not remove the backup snapshot %s/%s: %s", lv_vg, snap, err)
        raise
    failed = None
    for lv_vg, snap in reversed(made):  # success: every removal tried, the first failure raised
        try:
            _p("lv_remove")(snap, vg=lv_vg, missing_ok=True)
        except CommandExecutionError as err:
            failed = failed or err
    if failed:
        raise failed


def _export_offline(lv_vg, lv, dst):
    """The disk of a powered-off VM, read directly (activated here if it is not)."""
    info = _p("lv_info")(lv, vg=lv_vg)
    if info["open"]:
        raise CommandExecutionError(
            f"{lv_vg}/{lv} is open (in use by a running VM): not copying it (a running VM needs a live backup)"
        )
    if info["active"]:
        return _p("export_qcow2")(f"/dev/{lv_vg}/{lv}", dst)
    _p("lv_activate")(lv, vg=lv_vg, mode="exclusive")
    try:
        return _p("export_qcow2")(f"/dev/{lv_vg}/{lv}", dst)
    finally:
        _release(lv_vg, lv)


def backup(vmdir, vmid, disks, live=False, vm_xml=None, vg=None):
    """
    prebackup / prebackup_live: write ``<vmdir>/backup/disk.<id>.0`` (qcow2) for
    every disk in ``disks`` and ``<vmdir>/backup/vm.xml`` (base64 of the VM's
    XML), the files OpenNebula's backup datastores upload (rsync, restic:
    ``disk.*`` and ``vm.xml``).  ``live``: the VM runs; each disk is read from a
    temporary LVM snapshot ``lv-one-<vmid>-<disk>-backup`` (thin for a thin LV)
    that is always removed.  Atomic: on failure the backup directory is removed.

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.backup /var/lib/one/datastores/0/42 42 0:1 live=True vm_xml=eJyzCfO1AwAD5AGX
    """
    conf = _conf()
    vmid = _id(vmid, "vmid")
    vg = _vg(vg or conf["vg"])
    _, vmdir, _ = _vm_path(conf, vmdir, vmid, disk=False)
    ids = _disk_ids(disks)
    if not isinstance(live, bool):
        raise SaltInvocationError(f"live must be true or false, not {live!r}")
    xml = _vm_xml_text(vm_xml)
    sources = [(d, *_disk_lv(conf, os.path.join(vmdir, f"disk.{d}"), vmid, vg)[:2]) for d in ids]
    bdir = os.path.join(vmdir, BACKUP_DIR)
    _rmtree(bdir)  # a stale one of an earlier attempt (src/tm_mad/lib/backup.rb:128)
    done = []
    try:
        if live:
            with _live_snapshots(vmid, sources) as snaps:
                for diskid, lv_vg, lv in sources:
                    ret = _p("export_qcow2")(snaps[diskid], os.path.join(bdir, f"disk.{diskid}.0"))
                    done.append({"disk": diskid, "lv": f"{lv_vg}/{lv}", "bytes": ret.get("bytes"),
                                 "file_bytes": ret.get("file_bytes")})
        else:
            for diskid, lv_vg, lv in sources:
                ret = _export_offline(lv_vg, lv, os.path.join(bdir, f"disk.{diskid}.0"))
                done.append({"disk": diskid, "lv": f"{lv_vg}/{lv}", "bytes": ret.get("bytes"),
                             "file_bytes": ret.get("file_bytes")})
        # the base64 VM document, as src/tm_mad/lib/backup.rb:132 writes it
        with open(os.path.join(bdir, "vm.xml"), "w", encoding="ascii") as handle:
            handle.write(base64.encodebytes(xml.encode()).decode())
    except BaseException:
        try:
            _rmtree(bdir)
        except OSError as err:
            log.error("gfs2clvm_tm: could not remove %s: %s", bdir, err)
        raise
    return _ret("backup", path=bdir, live=live, disks=done)


def backup_cleanup(vmdir, vmid, vg=None):
    """
    postbackup / postbackup_live: remove ``<vmdir>/backup`` and any backup
    snapshot ``lv-one-<vmid>-<disk>-backup`` an interrupted backup left.

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.backup_cleanup /var/lib/one/datastores/0/42 42
    """
    conf = _conf()
    vmid = _id(vmid, "vmid")
    vg = _vg(vg or conf["vg"])
    _, vmdir, _ = _vm_path(conf, vmdir, vmid, disk=False)
    bdir = os.path.join(vmdir, BACKUP_DIR)
    existed = os.path.lexists(bdir)
    try:
        _rmtree(bdir)
    except OSError as err:
        raise CommandExecutionError(f"cannot remove {bdir}: {err.strerror}") from err
    removed = []
    for lv in _p("lv_list")(vg=vg, prefix=f"lv-one-{vmid}-")["lvs"]:
        if re.fullmatch(rf"lv-one-{vmid}-\d+-backup", lv["name"]):
            _p("lv_remove")(lv["name"], vg=vg, missing_ok=True)
            removed.append(lv["name"])
    return _ret("backup_cleanup", path=bdir, removed_dir=existed, removed=removed)


def _staged_sha256(path, want):
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(4 * MiB), b""):
            hasher.update(block)
    if hasher.hexdigest() != want:
        raise CommandExecutionError(f"staged file {path}: sha256 mismatch (the download was damaged)")


def _restore_plan(conf, vmdir, vmid, vg, disks):
    """Check every disk before any is written: staged file (place, size, sha256),
    image header and size, the target LV (exists, not in use, large enough)."""
    plan = []
    for key, item in sorted(disks.items(), key=lambda kv: _id(kv[0], "disk id")):
        diskid = _id(key, "disk id")
        if not isinstance(item, dict):
            raise SaltInvocationError(f"disks[{key}] must be a mapping of staged, bytes, sha256")
        staged = _staged(conf, item.get("staged"), item.get("bytes"), item.get("sha256"))
        _staged_sha256(staged, item["sha256"])
        image = _p("image_size")(staged)
        lv_vg, lv, _, path = _disk_lv(conf, os.path.join(vmdir, f"disk.{diskid}"), vmid, vg)
        info = _p("lv_info")(lv, vg=lv_vg)
        if info["open"]:
            raise CommandExecutionError(f"{lv_vg}/{lv} is open (in use by a running VM): power the VM off to restore")
        if image["bytes"] > info["size_mb"] * MiB:
            raise CommandExecutionError(
                f"the backup of disk {diskid} ({image['bytes']} bytes) is larger than {lv_vg}/{lv} ({info['size_mb']} MiB)"
            )
        plan.append((diskid, staged, image["fmt"], lv_vg, lv, info["active"]))
    return plan


def restore(vmdir, vmid, disks, vg=None):
    """
    TM restore: write backed-up disk images (streamed to the staging area by the
    front-end: ``disks = {diskid: {staged, bytes, sha256}}``; raw or qcow2) back
    into the LVs behind ``<vmdir>/disk.<id>``.  Every disk is checked (sha256,
    image header, size, not in use) before the first byte is written; the
    staged files are always removed.

    CLI Example:

    .. code-block:: bash

        salt-ssh node1 gfs2clvm_tm.restore /var/lib/one/datastores/0/42 42 '{"0": {"staged": "/var/lib/one/.gfs2clvm-staging/0123abcd.img", "bytes": 1048576, "sha256": "<hex>"}}'
    """
    conf = _conf()
    vmid = _id(vmid, "vmid")
    vg = _vg(vg or conf["vg"])
    _, vmdir, _ = _vm_path(conf, vmdir, vmid, disk=False)
    if not isinstance(disks, dict) or not disks:
        raise SaltInvocationError("disks must be a non-empty mapping of disk id to the staged image")
    staged = [item.get("staged") for item in disks.values() if isinstance(item, dict)]
    try:
        plan = _restore_plan(conf, vmdir, vmid, vg, disks)
        done = []
        for diskid, path, fmt, lv_vg, lv, active in plan:
            if not active:
                _p("lv_activate")(lv, vg=lv_vg, mode="exclusive")
            try:
                ret = _p("copy")(path, f"/dev/{lv_vg}/{lv}", fmt=fmt, sparse=True, dst_zeroed=False)
            finally:
                if not active:
                    _release(lv_vg, lv)
            done.append({"disk": diskid, "lv": f"{lv_vg}/{lv}", "fmt": fmt, "bytes": ret.get("bytes")})
    finally:
        for path in staged:
            if (isinstance(path, str) and RE_PATH.match(path) and os.path.normpath(path) == path
                    and os.path.dirname(path) == _staging_dir(conf)):
                _drop_staged(conf, path)
    return _ret("restore", path=vmdir, disks=done)
