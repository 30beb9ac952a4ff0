"""TM actions (OpenNebula 6.x/7.x ``remotes/tm/gfs2clvm/<action>``).

Each function takes oned's argv (without the program name), validates every
argument, and makes exactly one salt-ssh call of ``gfs2clvm_tm.<action>``
(migrations: one call with both hosts as a list target).  Returns the stdout
payload (None for most actions).
"""

import base64
import io
import os
import re
import tarfile

from . import config, stream, validate
from .core import DriverError, info
from .location import Location
from .saltssh import MAX_INLINE, salt_ssh, salt_ssh_many

CONTEXT_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


def _load(conf, dsid):
    return (conf or config.load()).for_ds(dsid)


def _ids(vmid, dsid):
    return validate.ident(vmid, "VM id"), validate.ident(dsid, "datastore id")


def parse_source(arg, conf):
    """The SOURCE of clone/ln/mvds/cpds as the module expects it.

    ``fe:`` prefixes are dropped; accepted: http(s) URL, ``/dev/<vg>/<lv>`` or
    ``<vg>/<lv>`` (returned as ``/dev/<vg>/<lv>``), a ``.iso``/``.isox`` file under
    the mountpoint.
    """
    text = str(arg)
    if not text.startswith(("http://", "https://", "/")):
        head, sep, rest = text.partition(":")
        if sep and "/" not in head:
            validate.host(head, "front-end host in SOURCE")
            text = rest
    if text.startswith(("http://", "https://")):
        return validate.url(text)
    if text.endswith((".iso", ".isox")) and text.startswith("/") and not text.startswith("/dev/"):
        return validate.path(text, "ISO SOURCE", under=conf["mountpoint"])
    vg_name, lv = validate.device(text, None)
    return f"/dev/{vg_name}/{lv}"


def clone(argv, conf=None):
    """clone fe:SOURCE host:<ds>/<vmid>/disk.i vmid dsid"""
    src, dst, vmid, dsid = validate.argc(argv, 4, usage="clone fe:SOURCE host:dir/disk.i vmid dsid")
    vmid, dsid = _ids(vmid, dsid)
    conf = _load(conf, dsid)
    dst = Location(dst, "destination").check_vm(vmid, conf.datastores_dir, disk=True)
    source = parse_source(src, conf)
    salt_ssh(dst.host, "gfs2clvm_tm.clone", source, dst.path, vmid, dst.disk_id, vg=conf["vg"], conf=conf)


def ln(argv, conf=None):
    """ln fe:SOURCE host:<ds>/<vmid>/disk.i vmid dsid (persistent image volume)"""
    src, dst, vmid, dsid = validate.argc(argv, 4, usage="ln fe:SOURCE host:dir/disk.i vmid dsid")
    vmid, dsid = _ids(vmid, dsid)
    conf = _load(conf, dsid)
    dst = Location(dst, "destination").check_vm(vmid, conf.datastores_dir, disk=True)
    source = parse_source(src, conf)
    if source.startswith("/dev/"):
        validate.image_lv(source.rsplit("/", 1)[1])
    salt_ssh(dst.host, "gfs2clvm_tm.ln", source, dst.path, vmid, dst.disk_id, vg=conf["vg"], conf=conf)


def mkimage(argv, conf=None):
    """mkimage size format host:<ds>/<vmid>/disk.i vmid dsid"""
    size, fmt, dst, vmid, dsid = validate.argc(
        argv, 5, usage="mkimage size format host:dir/disk.i vmid dsid"
    )
    size = validate.size_mb(size)
    vmid, dsid = _ids(vmid, dsid)
    conf = _load(conf, dsid)
    dst = Location(dst, "destination").check_vm(vmid, conf.datastores_dir, disk=True)
    fmt = validate.fstype(fmt) if fmt else "raw"
    fs = None if fmt in ("raw", "qcow2", "none") else fmt
    salt_ssh(dst.host, "gfs2clvm_tm.mkimage", dst.path, vmid, dst.disk_id, size,
             fs=fs, vg=conf["vg"], conf=conf)


def mkswap(argv, conf=None):
    """mkswap size host:<ds>/<vmid>/disk.i vmid dsid"""
    size, dst, vmid, dsid = validate.argc(argv, 4, usage="mkswap size host:dir/disk.i vmid dsid")
    size = validate.size_mb(size)
    vmid, dsid = _ids(vmid, dsid)
    conf = _load(conf, dsid)
    dst = Location(dst, "destination").check_vm(vmid, conf.datastores_dir, disk=True)
    salt_ssh(dst.host, "gfs2clvm_tm.mkswap", dst.path, vmid, dst.disk_id, size, vg=conf["vg"], conf=conf)


def context_files(paths):
    """[(name on the ISO, local path)] from oned's ``file`` / ``file:'name'`` words."""
    files = []
    for word in paths:
        local, sep, name = str(word).partition(":")
        name = name.strip("'\"") if sep else os.path.basename(local)
        if local.startswith(("http", "ftp")):
            raise DriverError(f"context file {word!r}: URLs are not supported, use files")
        validate.path(local, "context file")
        if not CONTEXT_NAME_RE.match(name) or name in (".", ".."):
            raise DriverError(f"invalid context file name {name!r}")
        if not os.path.isfile(local):
            raise DriverError(f"context file {local} not found on the front-end")
        files.append((name, local))
    names = [n for n, _ in files]
    if len(set(names)) != len(names):
        raise DriverError("two context files have the same name")
    return files


def context(argv, conf=None):
    """context file1 ... fileN host:<ds>/<vmid>/disk.i vmid dsid

    Small sets (the usual context.sh) travel base64 in the call; larger ones are
    streamed as one tar to the staging area and verified by the module.
    """
    validate.argc(argv, 3, -1, usage="context file1 ... fileN host:dir/disk.i vmid dsid")
    *paths, dst, vmid, dsid = argv
    vmid, dsid = _ids(vmid, dsid)
    conf = _load(conf, dsid)
    dst = Location(dst, "destination").check_vm(vmid, conf.datastores_dir, disk=True)
    files = context_files(paths)
    total = sum(os.path.getsize(p) for _, p in files)
    if total > conf["context_max_bytes"]:
        raise DriverError(
            f"context files total {total} bytes > context_max_bytes {conf['context_max_bytes']}"
        )
    if total * 4 // 3 + 1024 <= MAX_INLINE // 2:
        payload = {}
        for name, local in files:
            with open(local, "rb") as handle:
                payload[name] = base64.b64encode(handle.read()).decode()
        salt_ssh(dst.host, "gfs2clvm_tm.context", dst.path, vmid, files=payload, vg=conf["vg"], conf=conf)
        return
    target = stream.staging_path(conf, "tar")
    info(f"context: streaming {total} bytes to {dst.host}")
    count, digest = stream.send(conf, dst.host, _tar_chunks(files), target)
    salt_ssh(dst.host, "gfs2clvm_tm.context", dst.path, vmid, staged=target,
             staged_bytes=count, staged_sha256=digest, vg=conf["vg"], conf=conf)


def _tar_chunks(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, local in files:
            tar.add(local, arcname=name, recursive=False)
    yield buf.getvalue()


def _workers(conf, *hosts):
    return [h for h in dict.fromkeys(hosts) if h and h not in conf.frontend_hosts]


def mv(argv, conf=None):
    """mv hostA:dir[/disk.i] hostB:dir[/disk.i] vmid dsid

    GFS2 and the VG are shared: nothing is copied; the source host deactivates
    the VM's LVs and the destination host activates them exclusively (waiting
    for the source's lock), in one call with both hosts as targets.
    """
    src, dst, vmid, dsid = validate.argc(argv, 4, usage="mv hostA:dir hostB:dir vmid dsid")
    vmid, dsid = _ids(vmid, dsid)
    conf = _load(conf, dsid)
    src = Location(src, "source").check_vm(vmid, conf.datastores_dir)
    dst = Location(dst, "destination").check_vm(vmid, conf.datastores_dir)
    if src.host == dst.host and src.path == dst.path:
        info(f"mv: {src.host} to itself, nothing to do")
        return
    hosts = _workers(conf, src.host, dst.host)
    if not hosts:
        info("mv: neither host is a worker, nothing to do")
        return
    # same host, another system datastore: only the destination role (move, stay active)
    src_host = src.host if src.host in hosts and src.host != dst.host else None
    salt_ssh_many(hosts, "gfs2clvm_tm.mv", src.path, dst.path, vmid, src_host=src_host,
                  dst_host=dst.host if dst.host in hosts else None, vg=conf["vg"], conf=conf)


def _image_target(arg):
    vg_name, lv = validate.device(str(arg).partition(":")[2] if ":" in str(arg) else arg, None)
    validate.image_lv(lv)
    return f"/dev/{vg_name}/{lv}"


def mvds(argv, conf=None):
    """mvds host:<ds>/<vmid>/disk.i fe:SOURCE vmid dsid"""
    src, dst, vmid, dsid = validate.argc(argv, 4, usage="mvds host:dir/disk.i fe:SOURCE vmid dsid")
    vmid, dsid = _ids(vmid, dsid)
    conf = _load(conf, dsid)
    src = Location(src, "source").check_vm(vmid, conf.datastores_dir, disk=True)
    salt_ssh(conf.worker_for(src.host), "gfs2clvm_tm.mvds", src.path, _image_target(dst), vmid, vg=conf["vg"], conf=conf)


def cpds(argv, conf=None):
    """cpds host:<ds>/<vmid>/disk.i fe:SOURCE snapid vmid dsid (snapid -1: the disk itself)"""
    validate.argc(argv, 4, 5, usage="cpds host:dir/disk.i fe:SOURCE [snapid] vmid dsid")
    src, dst, *rest = argv
    snapid = rest[0] if len(rest) == 3 else "-1"
    vmid, dsid = _ids(*rest[-2:])
    conf = _load(conf, dsid)
    src = Location(src, "source").check_vm(vmid, conf.datastores_dir, disk=True)
    snapid = None if str(snapid) == "-1" else validate.ident(snapid, "snapshot id")
    salt_ssh(conf.worker_for(src.host), "gfs2clvm_tm.cpds", src.path, _image_target(dst), vmid,
             snapid=snapid, vg=conf["vg"], conf=conf)


def delete(argv, conf=None):
    """delete host:<vmdir>[/disk.i] vmid dsid (front-end: a stopped VM, run on a worker)"""
    path, vmid, dsid = validate.argc(argv, 3, usage="delete host:dir[/disk.i] vmid dsid")
    vmid, dsid = _ids(vmid, dsid)
    conf = _load(conf, dsid)
    loc = Location(path, "path").check_vm(vmid, conf.datastores_dir)
    salt_ssh(conf.worker_for(loc.host), "gfs2clvm_tm.delete", loc.path, vmid, vg=conf["vg"], conf=conf)


def resize(argv, conf=None):
    """resize host:<ds>/<vmid>/disk.i sizeMB vmid dsid"""
    path, size, vmid, dsid = validate.argc(argv, 4, usage="resize host:dir/disk.i size vmid dsid")
    size = validate.size_mb(size)
    vmid, dsid = _ids(vmid, dsid)
    conf = _load(conf, dsid)
    loc = Location(path, "path").check_vm(vmid, conf.datastores_dir, disk=True)
    salt_ssh(conf.worker_for(loc.host), "gfs2clvm_tm.resize", loc.path, size, vmid=vmid, vg=conf["vg"], conf=conf)


def _snap(action, argv, conf):
    path, snapid, vmid, dsid = validate.argc(argv, 4, usage=f"{action} host:dir/disk.i snapid vmid dsid")
    snapid = validate.ident(snapid, "snapshot id")
    vmid, dsid = _ids(vmid, dsid)
    conf = _load(conf, dsid)
    loc = Location(path, "path").check_vm(vmid, conf.datastores_dir, disk=True)
    return salt_ssh(conf.worker_for(loc.host), f"gfs2clvm_tm.{action}", loc.path, snapid, vmid=vmid,
                    vg=conf["vg"], conf=conf)


def snap_create(argv, conf=None):
    """snap_create host:<ds>/<vmid>/disk.i snapid vmid dsid"""
    _snap("snap_create", argv, conf)


def snap_delete(argv, conf=None):
    """snap_delete host:<ds>/<vmid>/disk.i snapid vmid dsid"""
    ret = _snap("snap_delete", argv, conf)
    if isinstance(ret, dict) and ret.get("invalid"):
        info(f"snap_delete: snapshot {ret.get('snapshot')} was invalid (its copy-on-write area had overflowed); removed")


def snap_revert(argv, conf=None):
    """snap_revert host:<ds>/<vmid>/disk.i snapid vmid dsid"""
    _snap("snap_revert", argv, conf)


def snap_create_live(argv, conf=None):
    """snap_create_live host:<ds>/<vmid>/disk.i snapid vmid dsid: refused.

    oned calls it only for a RUNNING VM whose "<VM_MAD>-<TM_MAD>" is listed in
    LIVE_DISK_SNAPSHOTS (src/vmm_mad/exec/one_vmm_exec.rb, disk_snapshot_create;
    vmm_execrc); otherwise oned itself refuses ("Cannot perform a live
    disk_snapshot_create operation").  The driver never snapshots a disk in use
    (no guest freeze, crash-consistent at best), like fs_lvm (not_supported.sh)."""
    raise DriverError(
        "live disk snapshots are not supported by gfs2clvm (a disk in use is never snapshotted): "
        "power off the VM, take the snapshot, resume it; do not list kvm-gfs2clvm in LIVE_DISK_SNAPSHOTS")


def _migrate(action, argv, conf):
    validate.argc(argv, 5, 6, usage=f"{action} srchost dsthost vmdir vmid dsid [template]")
    src, dst, vmdir, vmid, dsid = argv[:5]
    src, dst = validate.host(src, "source host"), validate.host(dst, "destination host")
    vmid, dsid = _ids(vmid, dsid)
    conf = _load(conf, dsid)
    loc = Location(f"{dst}:{vmdir}", "VM directory")
    loc.check_vm(vmid, conf.datastores_dir, disk=False)
    vmdir = loc.path  # validated and normalised (oned passes /var/lib/one//datastores/...)
    if src == dst:
        info(f"{action}: {src} to itself, nothing to do")
        return
    salt_ssh_many([src, dst], f"gfs2clvm_tm.{action}", vmid, vmdir,
                  src_host=src, dst_host=dst, vg=conf["vg"], conf=conf)


def premigrate(argv, conf=None):
    """premigrate srchost dsthost vmdir vmid dsid [template]: shared on both hosts"""
    _migrate("premigrate", argv, conf)


def postmigrate(argv, conf=None):
    """postmigrate srchost dsthost vmdir vmid dsid [template]: src off, dst exclusive"""
    _migrate("postmigrate", argv, conf)


def failmigrate(argv, conf=None):
    """failmigrate srchost dsthost vmdir vmid dsid [template]: dst off, src exclusive again"""
    _migrate("failmigrate", argv, conf)


def monitor(argv, conf=None, stdin=None):
    """monitor [b64 xml] dsid  (system datastore; XML on stdin since 6.6)"""
    from .datastore import read_action, choose_host

    action = read_action(argv, stdin)
    conf = _load(conf, action.ds_id)
    host = choose_host(action, conf)
    data = salt_ssh(host, "gfs2clvm_tm.monitor", action.ds_id, vg=action.vg(conf), conf=conf)
    return format_monitor(data, action.text("MONITOR_VM_DISKS") == "1")


def format_monitor(data, vm_disks=False):
    """``USED_MB=`` ``FREE_MB=`` ``TOTAL_MB=`` lines (+ ``VM=[ID=..,MONITOR="b64"]``)."""
    try:
        lines = [f"{key.upper()}={int(data[key])}" for key in ("used_mb", "free_mb", "total_mb")]
    except (KeyError, TypeError, ValueError):
        raise DriverError(f"monitor: unexpected answer {data!r:.200}") from None
    if vm_disks:
        for vmid, disks in sorted((data.get("vms") or {}).items(), key=lambda kv: int(kv[0])):
            parts = [
                base64.b64encode(f"DISK_SIZE=[ID={int(d)},SIZE={int(s)}]".encode()).decode()
                for d, s in sorted(disks.items(), key=lambda kv: int(kv[0]))
            ]
            lines.append(f'VM=[ID={int(vmid)},MONITOR="{" ".join(parts)}"]')
    return "\n".join(lines)
