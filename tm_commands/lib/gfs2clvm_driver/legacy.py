"""The seed's OpenNebula 3.2 interface over the same library.

3.2 had no VM id or datastore id arguments: paths look like
``host:<VM_DIR>/<vmid>/images/disk.N`` (VM_DIR = the mountpoint) and the VM id is
read from the path.  TM scripts (``tm_gfs2clvm.conf``)::

    tm_clone.sh SRC DST [SIZE]     tm_ln.sh SRC DST        tm_mkswap.sh SIZE DST
    tm_mkimage.sh SIZE FSTYPE DST  tm_delete.sh SRC [DST]  tm_mv.sh SRC DST
    tm_context.sh FILE... DST

Image driver ``fs/``: ``cp SRC ID``, ``mkfs FSTYPE SIZE ID``, ``mv SRC DST ID``,
``rm SRC``; cp/mkfs/mv print ``PATH SIZE``.  Failures use the 3.2 block
(``run_main(..., style="3.2")``).
"""

import os
import re

from . import config, datastore, tm, validate
from .core import DriverError, info
from .location import Location, legacy_vmid
from .saltssh import salt_ssh, salt_ssh_many


def _vm_loc(arg, conf, what="destination", disk=True):
    loc = Location(arg, what)
    vmid = legacy_vmid(loc, conf["mountpoint"])
    loc.check_vm(vmid, conf["mountpoint"], legacy=True, disk=disk)
    return loc, vmid


def _size(args, conf):
    return validate.size_mb(args[0]) if args else conf["default_size_mb"]


def clone(argv, conf=None):
    validate.argc(argv, 2, 3, usage="tm_clone.sh SRC DST [SIZE]")
    conf = conf or config.load()
    dst, vmid = _vm_loc(argv[1], conf)
    source = tm.parse_source(argv[0], conf)
    size = validate.size_mb(argv[2]) if len(argv) == 3 else None
    salt_ssh(dst.host, "gfs2clvm_tm.clone", source, dst.path, vmid, dst.disk_id,
             size_mb=size, vg=conf["vg"], conf=conf)


def ln(argv, conf=None):
    validate.argc(argv, 2, usage="tm_ln.sh SRC DST")
    conf = conf or config.load()
    dst, vmid = _vm_loc(argv[1], conf)
    source = tm.parse_source(argv[0], conf)
    salt_ssh(dst.host, "gfs2clvm_tm.ln", source, dst.path, vmid, dst.disk_id, vg=conf["vg"], conf=conf)


def mkswap(argv, conf=None):
    validate.argc(argv, 2, usage="tm_mkswap.sh SIZE DST")
    conf = conf or config.load()
    dst, vmid = _vm_loc(argv[1], conf)
    salt_ssh(dst.host, "gfs2clvm_tm.mkswap", dst.path, vmid, dst.disk_id,
             validate.size_mb(argv[0]), vg=conf["vg"], conf=conf)


def mkimage(argv, conf=None):
    validate.argc(argv, 3, usage="tm_mkimage.sh SIZE FSTYPE DST")
    conf = conf or config.load()
    dst, vmid = _vm_loc(argv[2], conf)
    fs = validate.fstype(argv[1])
    salt_ssh(dst.host, "gfs2clvm_tm.mkimage", dst.path, vmid, dst.disk_id,
             validate.size_mb(argv[0]), fs=None if fs in validate.NO_FILESYSTEM else fs, vg=conf["vg"], conf=conf)


def delete(argv, conf=None):
    validate.argc(argv, 1, 2, usage="tm_delete.sh SRC [DST]")
    conf = conf or config.load()
    loc, vmid = _vm_loc(argv[0], conf, "source", disk=None)
    salt_ssh(loc.host, "gfs2clvm_tm.delete", loc.path, vmid, vg=conf["vg"], conf=conf)


def mv(argv, conf=None):
    validate.argc(argv, 2, usage="tm_mv.sh SRC DST")
    conf = conf or config.load()
    src, vmid = _vm_loc(argv[0], conf, "source", disk=None)
    dst, dst_vmid = _vm_loc(argv[1], conf, "destination", disk=None)
    if vmid != dst_vmid:
        raise DriverError(f"tm_mv.sh: source VM {vmid} and destination VM {dst_vmid} differ")
    if src.host == dst.host:
        info(f"mv: {src.host} to itself, nothing to do")
        return
    hosts = [h for h in (src.host, dst.host) if h not in conf.frontend_hosts]
    if hosts:
        salt_ssh_many(hosts, "gfs2clvm_tm.mv", src.path, dst.path, vmid,
                      src_host=src.host if src.host in hosts else None,
                      dst_host=dst.host if dst.host in hosts else None, vg=conf["vg"], conf=conf)


def context(argv, conf=None):
    validate.argc(argv, 2, -1, usage="tm_context.sh FILE... DST")
    conf = conf or config.load()
    dst, vmid = _vm_loc(argv[-1], conf)
    files = tm.context_files(argv[:-1])
    if sum(os.path.getsize(p) for _, p in files) * 4 // 3 + 1024 > tm.MAX_INLINE // 2:
        raise DriverError("tm_context.sh: context files too large for the 3.2 adapter")
    payload = {}
    for name, local in files:
        with open(local, "rb") as handle:
            payload[name] = tm.base64.b64encode(handle.read()).decode()
    salt_ssh(dst.host, "gfs2clvm_tm.context", dst.path, vmid, files=payload, vg=conf["vg"], conf=conf)


# ----- image driver fs/ --------------------------------------------------------------

_DISK_PATH_RE = re.compile(r"^(?:[A-Za-z0-9._-]+:)?(/.*)$")


def _image_src(arg, conf):
    """3.2 image sources; a VM disk path ``<VM_DIR>/<vmid>/images/disk.N`` means that disk."""
    text = str(arg)
    match = _DISK_PATH_RE.match(text)
    if match and match.group(1).startswith(conf["mountpoint"].rstrip("/") + "/"):
        loc = Location(f"x:{match.group(1)}")
        if loc.is_disk:
            vmid = legacy_vmid(loc, conf["mountpoint"])
            return f"lvm://{vmid}/{loc.disk_id}"
    return text


def fs_cp(argv, conf=None):
    """cp SRC ID → ``PATH SIZE``"""
    validate.argc(argv, 1, 2, usage="cp SRC ID")
    conf = conf or config.load()
    source, size = datastore.copy_in(None, conf, _image_src(argv[0], conf),
                                     legacy_dirs=(conf["safe_dirs"], conf["restricted_dirs"]))
    return f"{source} {size}"


def fs_mv(argv, conf=None):
    """mv SRC DST ID → ``PATH SIZE`` (DST must be '-': a new image volume)"""
    validate.argc(argv, 2, 3, usage="mv SRC DST ID")
    if argv[1] != "-":
        raise DriverError("fs/mv: only DST '-' (a new image volume) is supported")
    return fs_cp([argv[0]], conf)


def fs_mkfs(argv, conf=None):
    """mkfs FSTYPE SIZE ID → ``PATH SIZE``"""
    validate.argc(argv, 2, 3, usage="mkfs FSTYPE SIZE ID")
    conf = conf or config.load()
    fs = validate.fstype(argv[0])
    size = validate.size_mb(argv[1])
    lv = datastore.new_image_lv()
    vg_name = validate.vg(conf["vg"])
    salt_ssh(datastore._legacy_host(conf), "gfs2clvm_tm.ds_mkfs", lv, size,
             fs=None if fs in validate.NO_FILESYSTEM else fs, vg=vg_name, conf=conf)
    return f"/dev/{vg_name}/{lv} {size}"


def fs_rm(argv, conf=None):
    """rm SRC (an image volume)"""
    validate.argc(argv, 1, usage="rm SRC")
    conf = conf or config.load()
    vg_name, lv = validate.device(argv[0], None)
    validate.image_lv(lv)
    salt_ssh(datastore._legacy_host(conf), "gfs2clvm_tm.ds_rm", lv, vg=vg_name, conf=conf)
