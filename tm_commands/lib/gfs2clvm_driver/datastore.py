"""Datastore actions (``remotes/datastore/gfs2clvm/<action>``).

oned sends ``<DS_DRIVER_ACTION_DATA><DATASTORE/><IMAGE/></DS_DRIVER_ACTION_DATA>``
base64-encoded on stdin with the datastore/image id as the argument (up to
OpenNebula 6.6: the base64 XML was argv[1]).  Image volumes are
``lv-oneimg-<32 hex>`` LVs of the datastore's VG, made on a worker of its
BRIDGE_LIST.  Outputs are what oned parses: cp/clone ``SOURCE FORMAT``, mkfs
``SOURCE``, stat the size in MB, monitor ``USED_MB= FREE_MB= TOTAL_MB=``.
"""

import base64
import binascii
import fcntl
import json
import math
import os
import re
import struct
import subprocess
import sys
import time
import urllib.request
import uuid
import xml.etree.ElementTree as ET

from . import config, slots, stream, validate
from .core import DriverError, info
from .saltssh import salt_ssh

LVM_URL_RE = re.compile(r"^lvm://(\d+)/(\d+)$")
VOL_URL_RE = re.compile(r"^vol://(\d+|lv-oneimg-[0-9a-f]{32})$")


class DsAction:
    """The parsed ``DS_DRIVER_ACTION_DATA`` document."""

    def __init__(self, root, ds_id=None):
        if root.tag != "DS_DRIVER_ACTION_DATA":
            raise DriverError(f"unexpected driver action document <{root.tag}>")
        self.root = root
        xml_id = self.text("DATASTORE/ID")
        self.ds_id = validate.ident(xml_id if xml_id else ds_id, "datastore id")

    def text(self, xpath, default=""):
        node = self.root.find(xpath)
        return (node.text or "").strip() if node is not None and node.text else default

    def ds(self, attr, default=""):
        return self.text(f"DATASTORE/TEMPLATE/{attr}", default)

    def image(self, attr, default=""):
        return self.text(f"IMAGE/{attr}", default)

    @property
    def image_id(self):
        return validate.ident(self.image("ID", "0"), "image id")

    @property
    def bridge_list(self):
        return [validate.host(h, "BRIDGE_LIST host") for h in self.ds("BRIDGE_LIST").split()]

    def vg(self, conf):
        return validate.vg(self.ds("VG_NAME") or conf["vg"])

    def dirs(self, attr, fallback):
        value = self.ds(attr)
        return value.split() if value else list(fallback)


def decode(text):
    """Base64 → XML root (with a clear error for garbage)."""
    try:
        raw = base64.b64decode("".join(str(text).split()), validate=True)
        return ET.fromstring(raw)
    except (binascii.Error, ValueError, ET.ParseError) as err:
        raise DriverError(f"driver action data is not base64 XML: {err}") from None


def read_action(argv, stdin=None):
    """``[id]`` + stdin (>= 6.6) or ``[b64xml, id]`` (older)."""
    validate.argc(argv, 1, 2, usage="<action> [b64 xml] id")
    if len(argv) == 2:
        return DsAction(decode(argv[0]), argv[1])
    if stdin is None:
        stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    if not stdin.strip():
        raise DriverError("no driver action data on stdin")
    return DsAction(decode(stdin), argv[0])


def choose_host(action, conf, key=0):
    """A worker of BRIDGE_LIST (config bridge_list as fallback), spread by ``key``."""
    hosts = action.bridge_list or [validate.host(h) for h in conf["bridge_list"]]
    if not hosts:
        raise DriverError(f"datastore {action.ds_id} has no BRIDGE_LIST (workers to run on)")
    return hosts[key % len(hosts)]


def new_image_lv():
    return f"lv-oneimg-{uuid.uuid4().hex}"


def _mb(nbytes):
    return max(1, math.ceil(int(nbytes) / (1024 * 1024)))


def check_local(path, safe_dirs, restricted_dirs):
    """A front-end file may be imported only from SAFE_DIRS and outside RESTRICTED_DIRS.
    Its name may hold spaces, quotes, UTF-8 (``validate.local_path``): only this process
    opens it; the worker gets its bytes on the data stream under a generated name."""
    path = validate.local_path(path, "image path")
    real = os.path.realpath(path)

    def inside(dirs):
        return any(real == os.path.realpath(d) or real.startswith(os.path.realpath(d).rstrip("/") + "/")
                   for d in dirs if d)

    if inside(restricted_dirs) or not inside(safe_dirs):
        raise DriverError(f"not allowed to copy images from {path} (SAFE_DIRS/RESTRICTED_DIRS)")
    if not os.path.isfile(real):
        raise DriverError(f"image file {path} not found on the front-end")
    return real


def resolve_vol(text, conf, vg_name):
    """``vol://<image id>`` (looked up with ``oneimage show -x``) or ``vol://lv-oneimg-…``."""
    ref = VOL_URL_RE.match(text).group(1)
    if ref.startswith("lv-oneimg-"):
        return f"/dev/{vg_name}/{ref}"
    try:
        proc = subprocess.run([conf["oneimage"], "show", "-x", ref], capture_output=True,
                              text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DriverError(f"cannot look up image {ref}: {err}") from None
    if proc.returncode != 0:
        raise DriverError(f"cannot look up image {ref}: {' '.join(proc.stderr.split())}")
    try:
        source = (ET.fromstring(proc.stdout).findtext("SOURCE") or "").strip()
    except ET.ParseError:
        source = ""
    src_vg, lv = validate.device(source, None)
    validate.image_lv(lv)
    return f"/dev/{src_vg}/{lv}"


def remote_source(text, conf, vg_name):
    """A source the worker can read itself, or None for a front-end file."""
    if text.startswith(("http://", "https://")):
        return validate.url(text)
    match = LVM_URL_RE.match(text)
    if match:
        vmid = validate.ident(match.group(1), "VM id")
        diskid = validate.ident(match.group(2), "disk id")
        return f"/dev/{vg_name}/lv-one-{vmid}-{diskid}"
    if VOL_URL_RE.match(text):
        return resolve_vol(text, conf, vg_name)
    if text.startswith(("lvm://", "vol://")):
        raise DriverError(f"invalid image path {text!r}: lvm://VMID/DISKID or vol://IMAGEID")
    return None


def copy_in(action, conf, path, legacy_dirs=None):
    """Make a new image volume from ``path``; returns (SOURCE, size MB)."""
    vg_name = action.vg(conf) if action else validate.vg(conf["vg"])
    lv = new_image_lv()
    key = action.image_id if action else 0
    host = choose_host(action, conf, key) if action else _legacy_host(conf)
    size = validate.ident(action.image("SIZE", "0") or "0", "image SIZE") if action else 0
    src = remote_source(path, conf, vg_name)
    if src is not None and action and LVM_URL_RE.match(path):
        ret = _copy_vm_disk(action, conf, key, src, lv, size, vg_name)
    elif src is not None:
        ret = salt_ssh(host, "gfs2clvm_tm.ds_cp", src, lv, size_mb=size or None, vg=vg_name, conf=conf)
    else:
        safe, restricted = legacy_dirs or (
            action.dirs("SAFE_DIRS", ["/var/tmp"]), action.dirs("RESTRICTED_DIRS", ["/etc"]))
        local = check_local(path, safe, restricted)
        size = max(size, _mb(_file_size(local)))  # qcow2 refusals before a byte moves
        target = stream.staging_path(conf, "img")
        info(f"cp: streaming {path} to {host}")
        count, digest = stream.send(conf, host, stream.file_chunks(local), target)
        ret = salt_ssh(host, "gfs2clvm_tm.ds_cp", target, lv, size_mb=size, vg=vg_name,
                       staged_bytes=count, staged_sha256=digest, conf=conf)
    size_mb = int((ret or {}).get("size_mb") or size or 0)
    return f"/dev/{vg_name}/{lv}", size_mb


LOCKED_ELSEWHERE = "locked by other host"  # lvmlockd's refusal (lvchange: "LV locked by other host: vg/lv")


def _copy_vm_disk(action, conf, key, src, lv, size, vg_name):
    """``lvm://VMID/DISKID``: the VM's disk may be active exclusively on any worker
    (a SUSPENDED or POWEROFF VM keeps its LVs active where it ran), and lvmlockd
    lets only that host read it.  So the BRIDGE_LIST hosts are tried from
    ``key % n`` on: a host that lvmlockd refuses ("LV locked by other host") has
    undone its half (the new volume) and the next one is asked; any other failure
    is the answer.  An inactive disk is copied by the first host."""
    hosts = action.bridge_list or [validate.host(h) for h in conf["bridge_list"]]
    first = choose_host(action, conf, key)
    order = hosts[hosts.index(first):] + hosts[:hosts.index(first)]
    for i, host in enumerate(order):
        try:
            return salt_ssh(host, "gfs2clvm_tm.ds_cp", src, lv, size_mb=size or None, vg=vg_name, conf=conf)
        except DriverError as err:
            if LOCKED_ELSEWHERE not in str(err).lower() or i + 1 == len(order):
                raise
            info(f"cp: {src} is active on another host than {host}, trying {order[i + 1]}")
    raise DriverError(f"no BRIDGE_LIST host could read {src}")  # not reached: the loop returns or raises


def _legacy_host(conf):
    if not conf["bridge_list"]:
        raise DriverError("config bridge_list is empty: no worker to run image actions on")
    return validate.host(conf["bridge_list"][0])


def _load(action, conf):
    return (conf or config.load()).for_ds(action.ds_id)


def cp(argv, conf=None, stdin=None):
    """cp: IMAGE/PATH (front-end file, http(s), lvm://, vol://) → ``SOURCE raw``

    A qcow2 image is converted to raw data in its volume on the worker
    (gfs2clvm_tm.ds_cp), so FORMAT is raw for every image and the VM's disk is what
    its DRIVER (raw, TM_MAD_CONF) says."""
    action = read_action(argv, stdin)
    conf = _load(action, conf)
    path = action.image("PATH")
    if not path:
        raise DriverError("image has no PATH")
    source, _ = copy_in(action, conf, path)
    return f"{source} raw"


def mkfs(argv, conf=None, stdin=None):
    """mkfs: new empty image volume of IMAGE/SIZE (FS/FSTYPE formatted) → ``SOURCE``"""
    action = read_action(argv, stdin)
    conf = _load(action, conf)
    size = validate.size_mb(action.image("SIZE", "0"), "image SIZE")
    fs = action.image("FS") or action.image("FSTYPE") or action.image("TEMPLATE/FS")
    fs = validate.fstype(fs) if fs else None
    if fs in validate.NO_FILESYSTEM:
        fs = None
    vg_name = action.vg(conf)
    lv = new_image_lv()
    salt_ssh(choose_host(action, conf, action.image_id), "gfs2clvm_tm.ds_mkfs", lv, size,
             fs=fs, vg=vg_name, conf=conf)
    return f"/dev/{vg_name}/{lv}"


def _image_source(action, conf, attr="SOURCE"):
    vg_name, lv = validate.device(action.image(attr), action.vg(conf))
    validate.image_lv(lv)
    return vg_name, lv


def rm(argv, conf=None, stdin=None):
    """rm: remove the image volume IMAGE/SOURCE (absent is fine)"""
    action = read_action(argv, stdin)
    conf = _load(action, conf)
    vg_name, lv = _image_source(action, conf)
    salt_ssh(choose_host(action, conf, action.image_id), "gfs2clvm_tm.ds_rm", lv, vg=vg_name, conf=conf)


def stat(argv, conf=None, stdin=None):
    """stat: size in MB of IMAGE/PATH (a qcow2 image: its virtual size, the size of
    the raw volume cp makes of it)

    oned (src/image/ImageManagerProtocol.cc:39-56, release-7.4.0) hands a failure's
    reason -- our plain stderr line (core.error) -- to the allocate request, which fails
    with ``Cannot parse image SIZE: <reason>`` (src/rm/api/ImageAPI.cc:851-855); a success
    must print the size (an empty stdout is "Cannot get size from STAT").
    """
    action = read_action(argv, stdin)
    conf = _load(action, conf)
    path = action.image("PATH")
    if not path:
        raise DriverError("image has no PATH")
    vg_name = action.vg(conf)
    if path.startswith(("http://", "https://")):
        return str(_http_size(validate.url(path)))
    src = remote_source(path, conf, vg_name)
    if src is not None:
        host = choose_host(action, conf, action.image_id)
        ret = salt_ssh(host, "gfs2clvm_tm.ds_stat", src, vg=vg_name, conf=conf)
        try:
            return str(int(ret["size_mb"]))
        except (KeyError, TypeError, ValueError):
            raise DriverError(f"gfs2clvm_tm.ds_stat on {host}: no size in its answer {ret!r:.100}") from None
    local = check_local(path, action.dirs("SAFE_DIRS", ["/var/tmp"]),
                        action.dirs("RESTRICTED_DIRS", ["/etc"]))
    return str(_mb(_file_size(local)))


QCOW2_MAGIC = b"QFI\xfb"
QCOW2_HEAD = 104  # bytes of the header read: version .. incompatible features


def qcow2_virtual_size(head, what):
    """The virtual size (bytes) when ``head`` starts a qcow2 image, else None.

    What the worker's copy refuses (gfs2clvm._qcow2_size) is refused here already,
    before any byte moves: a backing file, an external data file (v3 incompatible
    feature bit 2), encryption."""
    if head[:4] != QCOW2_MAGIC:
        return None
    if len(head) < 48:
        raise DriverError(f"{what}: truncated qcow2 header")
    version, backing, _, _, size, crypt = struct.unpack(">IQIIQI", head[4:36])
    if version not in (2, 3):
        raise DriverError(f"{what}: qcow2 version {version} is not supported (2 or 3)")
    if backing:
        raise DriverError(f"{what} is a qcow2 image with a backing file: import a standalone image "
                          "(qemu-img convert -O qcow2 makes one)")
    if version == 3 and len(head) >= 80 and struct.unpack(">Q", head[72:80])[0] & 4:
        raise DriverError(f"{what} is a qcow2 image with an external data file: not supported")
    if crypt:
        raise DriverError(f"{what} is an encrypted qcow2 image: decrypt it first")
    return size


def _file_size(path):
    """Bytes a front-end image file will fill in its volume (qcow2: virtual size)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(QCOW2_HEAD)
    except OSError as err:
        raise DriverError(f"cannot read image file {path}: {err.strerror}") from None
    virtual = qcow2_virtual_size(head, path)
    return os.path.getsize(path) if virtual is None else virtual


def _http_size(url):
    """Size in MB of an http(s) image: a qcow2 header (its first bytes, a Range
    request) gives the virtual size, else the announced Content-Length."""
    request = urllib.request.Request(url, headers={"Range": f"bytes=0-{QCOW2_HEAD - 1}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 -- validated http(s)
            head = resp.read(QCOW2_HEAD)
    except OSError as err:
        raise DriverError(f"cannot reach {url}: {err}") from None
    virtual = qcow2_virtual_size(head, url)
    if virtual is not None:
        return _mb(virtual)
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 -- validated http(s)
            length = resp.headers.get("Content-Length")
    except OSError as err:
        raise DriverError(f"cannot reach {url}: {err}") from None
    if not length or not length.isdigit():
        raise DriverError(f"{url} does not announce its size (Content-Length)")
    return _mb(int(length))


def clone(argv, conf=None, stdin=None):
    """clone: copy image volume IMAGE/PATH into a new one → ``SOURCE raw``"""
    action = read_action(argv, stdin)
    conf = _load(action, conf)
    vg_name, src_lv = _image_source(action, conf, "PATH")
    lv = new_image_lv()
    salt_ssh(choose_host(action, conf, action.image_id), "gfs2clvm_tm.ds_clone",
             f"/dev/{vg_name}/{src_lv}", lv, vg=vg_name, conf=conf)
    return f"/dev/{vg_name}/{lv} raw"


# Image snapshots (``oneimage snapshot-delete/-revert/-flatten``): oned runs
# ``<action> <image id>`` with IMAGE/SOURCE and IMAGE/TARGET_SNAPSHOT in the action
# data (one_datastore.rb do_image_action; src/datastore_mad/remotes/fs/snap_revert reads
# /DS_DRIVER_ACTION_DATA/IMAGE/TARGET_SNAPSHOT).  An image of this datastore never has
# snapshots: they come from disk snapshots of a persistent image, and the TM refuses
# those (gfs2clvm_tm.snap_create: "snapshots of persistent images are not supported").
# So delete and flatten have nothing to remove (success: oned drops its record,
# ImageManagerProtocol.cc _snap_delete/_snap_flatten), and revert has nothing to go back
# to (a reason line, shown by oned as "Error reverting image N to snapshot M: <reason>").
def _image_snapshot(argv, stdin):
    action = read_action(argv, stdin)
    snap = action.image("TARGET_SNAPSHOT")
    snap = validate.ident(snap, "TARGET_SNAPSHOT") if snap else None
    return action, snap


def snap_delete(argv, conf=None, stdin=None):
    """snap_delete: images of this datastore have no snapshots; nothing to remove"""
    action, snap = _image_snapshot(argv, stdin)
    info(f"snap_delete: image {action.image_id} has no snapshot {snap} on gfs2clvm storage (nothing to remove)")


def snap_flatten(argv, conf=None, stdin=None):
    """snap_flatten: images of this datastore have no snapshots; the image is already flat"""
    action, _ = _image_snapshot(argv, stdin)
    info(f"snap_flatten: image {action.image_id} has no snapshots on gfs2clvm storage (already flat)")


def snap_revert(argv, conf=None, stdin=None):
    """snap_revert: refused, images of this datastore have no snapshots"""
    action, snap = _image_snapshot(argv, stdin)
    raise DriverError(
        f"image snapshots are not supported by the gfs2clvm datastore: image {action.image_id} has no "
        f"snapshot {snap} to revert to (disk snapshots of persistent images are refused)")


def monitor(argv, conf=None, stdin=None):
    """monitor: ``USED_MB= FREE_MB= TOTAL_MB=`` of the datastore's VG"""
    action = read_action(argv, stdin)
    conf = _load(action, conf)
    data = monitor_call(action, conf, "gfs2clvm_tm.ds_monitor", vg=action.vg(conf))
    from .tm import format_monitor

    return format_monitor(data)


def monitor_call(action, conf, fun, *args, **kwargs):
    """One monitor salt-ssh call of datastore ``action.ds_id``, guarded.

    oned starts a datastore's monitor every MONITORING_INTERVAL_DATASTORE (300 s by
    default, share/etc/oned.conf:73 of release-7.4.0) whether the last run ended or
    not.  So: one run at a time per datastore (``flock`` on ``<slot dir>/monitor-<id>``);
    a run that finds one going reports the last result instead (an ``INFO:`` line),
    or fails with a plain reason when there is none yet; the runs rotate over the
    BRIDGE_LIST hosts, a host that fails hands over to the next one; and the whole run
    ends within ``monitor_timeout`` seconds (below that interval).
    """
    hosts = action.bridge_list or [validate.host(h) for h in conf["bridge_list"]]
    if not hosts:
        raise DriverError(f"datastore {action.ds_id} has no BRIDGE_LIST (workers to run on)")
    state_path = os.path.join(slots.slot_dir(), f"monitor-{action.ds_id}")
    fd = os.open(state_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        state = _monitor_state(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _monitor_skipped(action, state)
        state = _monitor_state(fd)  # as the last run left it
        budget = max(1, min(int(conf["monitor_timeout"]), int(conf["timeout"])))
        deadline = time.monotonic() + budget
        first = int(state.get("next", 0)) % len(hosts)
        errors = []
        for k in range(len(hosts)):
            host = hosts[(first + k) % len(hosts)]
            left = int(deadline - time.monotonic())
            if left < 1:
                break
            try:
                data = salt_ssh(host, fun, *args, conf=_with_timeout(conf, left), **kwargs)
            except DriverError as err:
                errors.append(str(err))
                info(f"datastore {action.ds_id} monitor: {host} failed, trying the next host")
                continue
            _monitor_save(fd, {"next": (first + k + 1) % len(hosts), "host": host,
                               "time": time.time(), "data": data})
            return data
        _monitor_save(fd, dict(state, next=(first + 1) % len(hosts)))
        raise DriverError(
            f"datastore {action.ds_id} monitor: no BRIDGE_LIST host answered within {budget} s"
            + (f" ({errors[-1]})" if errors else "")
        )
    finally:
        os.close(fd)  # drops the lock


def _with_timeout(conf, seconds):
    values = {key: conf.get(key) for key in config.DEFAULTS}
    values["timeout"] = seconds
    return config.Config(values, conf.path)


def _monitor_state(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        state = json.loads(os.read(fd, 1 << 20) or b"{}")
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _monitor_save(fd, state):
    text = json.dumps(state).encode()
    os.lseek(fd, 0, os.SEEK_SET)
    os.ftruncate(fd, 0)
    os.write(fd, text)


def _monitor_skipped(action, state):
    if not isinstance(state.get("data"), dict):
        raise DriverError(f"datastore {action.ds_id} monitor: skipped, an earlier run is still going "
                          "and none has finished yet")
    age = int(time.time() - float(state.get("time") or 0))
    info(f"datastore {action.ds_id} monitor: skipped, an earlier run is still going; "
         f"reporting the result of {state.get('host')} from {age} s ago")
    return state["data"]
