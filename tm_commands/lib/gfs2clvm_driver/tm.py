"""TM actions (OpenNebula 6.x/7.x ``remotes/tm/gfs2clvm/<action>``).

Each function takes oned's argv (without the program name), validates every
argument, and makes exactly one salt-ssh call of ``gfs2clvm_tm.<action>``
(migrations: one call with both hosts as a list target).  Returns the stdout
payload (None for most actions).
"""

import base64
import binascii
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import uuid
import xml.etree.ElementTree as ET

from . import config, monitord, stream, validate
from .core import DriverError, error, info, one_line
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



def mkimage(argv, conf=None, stdin=None):
    """mkimage size format host:<ds>/<vmid>/disk.i vmid dsid

    ``format`` is the disk FORMAT (src/tm/TransferManager.cc:124-133, release-7.4.0):
    ``raw`` (LVs are raw block devices; ``qcow2`` is refused).  The file system of a
    volatile disk is the VM's ``DISK[DISK_ID=i]/FS``, read as fs_lvm/mkimage does
    (``onevm show -x``, src/tm_mad/fs_lvm/mkimage:62-67): oned passes no VM on a TM
    transfer line's stdin (one_tm.rb:85-86,133: ``do_transfer_action(id, command)``,
    stdin nil).  A VM XML on stdin (base64 or plain) is used when present.  A FORMAT
    that names a file system (``ext4``: OpenNebula <= 5 and the 3.2 FSTYPE) or ``swap``
    is kept working.
    """
    size, fmt, dst, vmid, dsid = validate.argc(
        argv, 5, usage="mkimage size format host:dir/disk.i vmid dsid"
    )
    size = validate.size_mb(size)
    vmid, dsid = _ids(vmid, dsid)
    conf = _load(conf, dsid)
    dst = Location(dst, "destination").check_vm(vmid, conf.datastores_dir, disk=True)
    fmt = str(fmt).strip().lower() or "raw"  # checked below: qcow2 refused, a file system by check_fs
    if fmt == "qcow2":
        raise DriverError(f"volatile disk {dst.disk_id} of VM {vmid}: FORMAT qcow2 is not supported "
                          "(gfs2clvm disks are raw LVs): use FORMAT=raw")
    if fmt in ("raw", "none"):
        fs = vm_disk_attr(conf, vmid, dst.disk_id, "FS", stdin) or None
    else:  # a FORMAT naming the file system (OpenNebula <= 5, the 3.2 FSTYPE): checked below
        fs = fmt
    if fs is not None:
        fs = check_fs(fs, f"volatile disk {dst.disk_id} of VM {vmid}")
    salt_ssh(dst.host, "gfs2clvm_tm.mkimage", dst.path, vmid, dst.disk_id, size,
             fs=fs, vg=conf["vg"], conf=conf)


def check_fs(fs, what):
    """``fs`` when the workers can make it (or ``swap``), None for no file system
    (raw/none …), else a clear refusal: the one list is ``validate.FILESYSTEMS``."""
    try:
        text = validate.fstype(str(fs).strip())
    except DriverError as err:
        raise DriverError(f"{what}: {err}") from None
    return None if text in validate.NO_FILESYSTEM else text


def read_vm_stdin(stdin=None):
    """The VM XML root oned (or a calling TM) gave on stdin, base64 or plain; None when
    stdin is empty, a terminal (run by hand) or absent.  Never blocks on a tty."""
    if stdin is None:
        if sys.stdin is None or sys.stdin.closed or sys.stdin.isatty():
            return None
        try:
            stdin = sys.stdin.read()
        except (OSError, ValueError):
            return None
    text = str(stdin).strip()
    if not text:
        return None
    if not text.startswith("<"):
        try:
            text = base64.b64decode("".join(text.split()), validate=True).decode()
        except (binascii.Error, ValueError):
            raise DriverError("the VM template on stdin is neither base64 nor XML") from None
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise DriverError(f"the VM template on stdin is not XML: {err}") from None
    if root.tag != "VM":
        raise DriverError(f"the template on stdin is <{root.tag}>, not <VM>")
    return root


def vm_disk_attr(conf, vmid, disk_id, attr, stdin=None):
    """``/VM/TEMPLATE/DISK[DISK_ID=disk_id]/<attr>`` from stdin's VM, else ``onevm show -x``.

    No ``onevm`` on this host (the driver run by hand or in tests, never under oned):
    logged, and "" returned.
    """
    root = read_vm_stdin(stdin)
    if root is None:
        try:
            proc = subprocess.run([conf["onevm"], "show", "-x", str(vmid)], capture_output=True,
                                  text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            info(f"mkimage: {conf['onevm']} not found: DISK/FS of VM {vmid} not read (config onevm)")
            return ""
        except (OSError, subprocess.TimeoutExpired) as err:
            raise DriverError(f"cannot read VM {vmid} with onevm show -x: {err}") from None
        if proc.returncode != 0:
            raise DriverError(f"cannot read VM {vmid} with onevm show -x: "
                              f"{' '.join(proc.stderr.split()) or f'exit {proc.returncode}'}")
        try:
            root = ET.fromstring(proc.stdout)
        except ET.ParseError as err:
            raise DriverError(f"onevm show -x {vmid} printed no XML: {err}") from None
    for disk in root.findall("TEMPLATE/DISK"):
        if (disk.findtext("DISK_ID") or "").strip() == str(disk_id):
            return (disk.findtext(attr) or "").strip()
    return ""


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


TM_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def _own_tm():
    """This TM's name: the directory of the running executable (``remotes/tm/<name>/<action>``),
    as tm_common.sh ``migrate_other`` takes it (``MAD=${DRIVER_PATH##*/}``)."""
    name = os.path.basename(os.path.dirname(os.path.abspath(sys.argv[0] or "")))
    return name if TM_NAME_RE.match(name) and name not in ("lib", "bin", "") else "gfs2clvm"


def other_tms(vm, own):
    """TM_MADs of the VM's disks other than ``own`` (``/VM/TEMPLATE/DISK/TM_MAD``), in order."""
    found = []
    for disk in vm.findall("TEMPLATE/DISK") if vm is not None else []:
        name = (disk.findtext("TM_MAD") or "").strip()
        if name and name != own and name not in found:
            if not TM_NAME_RE.match(name):
                raise DriverError(f"invalid TM_MAD {name[:40]!r} in the VM template")
            found.append(name)
    return found


def _migrate(action, argv, conf, stdin=None):
    """premigrate/postmigrate/failmigrate ``srchost dsthost vmdir vmid dsid [system TM_MAD]``.

    oned (src/vmm_mad/exec/one_vmm_exec.rb:598-673, release-7.4.0) runs them with 5
    arguments (TransferManager.cc:1974-1988) and the VM template base64 on stdin
    (``:stdin => action.data[:vm]``, one_vmm_exec.rb:88-90); a system TM handing the call
    on to the TM of some disks adds its own name as 6th argument (tm_common.sh
    ``migrate_other``, called by src/tm_mad/fs_lvm/premigrate:65).  Called as the system
    TM, the same is done here for the VM's disks of other TM_MADs (premigrate refuses to
    go on when one fails; post/failmigrate log it).  postmigrate is ``:no_fail`` for oned
    (one_vmm_exec.rb:664-670): the VM already runs on the destination, and a failure
    there never deactivates its disks on the destination.
    """
    validate.argc(argv, 5, 6, usage=f"{action} srchost dsthost vmdir vmid dsid [system TM_MAD]")
    src, dst, vmdir, vmid, dsid = argv[:5]
    caller, vm = _sixth(argv[5]) if len(argv) == 6 else (None, None)
    src, dst = validate.host(src, "source host"), validate.host(dst, "destination host")
    vmid, dsid = _ids(vmid, dsid)
    conf = _load(conf, dsid)
    loc = Location(f"{dst}:{vmdir}", "VM directory")
    loc.check_vm(vmid, conf.datastores_dir, disk=False)
    vmdir = loc.path  # validated and normalised (oned passes /var/lib/one//datastores/...)
    vm = read_vm_stdin(stdin) if vm is None else vm
    own = _own_tm()
    others = [] if caller is not None else other_tms(vm, own)
    scripts = _other_scripts(action, others)
    if src == dst:
        info(f"{action}: {src} to itself, nothing to do")
        return
    kwargs = {"handoff": uuid.uuid4().hex} if action == "premigrate" else {}
    salt_ssh_many([src, dst], f"gfs2clvm_tm.{action}", vmid, vmdir,
                  src_host=src, dst_host=dst, vg=conf["vg"], conf=conf, **kwargs)
    _migrate_other(action, scripts, list(map(str, argv[:5])) + [own], vm)


def _sixth(arg):
    """(system TM name, None) -- or (None, VM root) for a base64 VM template there
    (fs_lvm/premigrate's stale header comment calls the 6th argument "template")."""
    text = str(arg)
    try:
        decoded = base64.b64decode(text, validate=True).lstrip()
    except (binascii.Error, ValueError):
        decoded = b""
    if decoded.startswith(b"<"):
        return None, read_vm_stdin(text)
    if not TM_NAME_RE.match(text):
        raise DriverError(f"invalid system TM_MAD {text[:40]!r} (6th argument)")
    return text, None


def _other_scripts(action, others):
    """``remotes/tm/<TM_MAD>/<action>`` of each other TM, checked before anything changes."""
    base = os.path.dirname(os.path.dirname(os.path.abspath(sys.argv[0] or "")))
    scripts = []
    for name in others:
        path = os.path.join(base, name, action)
        if not os.access(path, os.X_OK):
            if action == "premigrate":
                raise DriverError(f"the VM has disks of TM_MAD {name}, but {path} does not exist: "
                                  "cannot prepare them for live migration")
            info(f"{action}: no {path} for the VM's {name} disks, skipped")
            continue
        scripts.append((name, path))
    return scripts


def _migrate_other(action, scripts, args, vm):
    """Run the other TMs' ``action`` with our arguments + our name, the VM on stdin."""
    data = base64.b64encode(ET.tostring(vm)) if vm is not None else b""
    for name, path in scripts:
        info(f"{action}: calling {name}/{action}")
        try:
            proc = subprocess.run([path, *args], input=data, capture_output=True, check=False,
                                  timeout=3600)
        except (OSError, subprocess.TimeoutExpired) as err:
            proc, why = None, str(err)
        if proc is not None and proc.returncode == 0:
            continue
        if proc is not None:
            from .core import oned_reason  # pylint: disable=import-outside-toplevel

            why = oned_reason(proc.stderr.decode(errors="replace"))
            if why == "-":
                why = f"exit {proc.returncode}"
        if action == "premigrate":
            raise DriverError(f"{name}/{action} failed: {why}")
        info(f"{action}: {name}/{action} failed: {why}")


def premigrate(argv, conf=None, stdin=None):
    """premigrate srchost dsthost vmdir vmid dsid [system TM_MAD] (VM base64 on stdin): shared on both hosts"""
    _migrate("premigrate", argv, conf, stdin)


def postmigrate(argv, conf=None, stdin=None):
    """postmigrate srchost dsthost vmdir vmid dsid [system TM_MAD] (VM base64 on stdin): src off, dst exclusive"""
    _migrate("postmigrate", argv, conf, stdin)


def failmigrate(argv, conf=None, stdin=None):
    """failmigrate srchost dsthost vmdir vmid dsid [system TM_MAD] (VM base64 on stdin): dst off, src exclusive"""
    _migrate("failmigrate", argv, conf, stdin)


def monitor(argv, conf=None, stdin=None, monitord_conf=None):
    """monitor [b64 xml] dsid  (system datastore; XML on stdin since 6.6)

    stdout: ``USED_MB= FREE_MB= TOTAL_MB=`` only (all oned reads of it,
    ImageManagerProtocol.cc:620-625).  With ``MONITOR_VM_DISKS`` 1 the VM disk sizes
    go to onemonitord as one ``MONITOR_VM`` message, as src/tm_mad/fs_lvm/monitor:159-161
    does (monitord.py)."""
    from .datastore import monitor_call, read_action

    action = read_action(argv, stdin)
    conf = _load(conf, action.ds_id)
    data = monitor_call(action, conf, "gfs2clvm_tm.monitor", action.ds_id, vg=action.vg(conf))
    text = format_monitor(data)
    if action.text("MONITOR_VM_DISKS") == "1":
        # fs_lvm/monitor:160: send_to_monitor MONITOR_VM <status> -1 "<VM=[..] lines>"
        monitord.send("MONITOR_VM", True, -1, monitord.vm_disks_payload(data.get("vms")), path=monitord_conf)
    return text


def format_monitor(data):
    """``USED_MB=`` ``FREE_MB=`` ``TOTAL_MB=`` lines."""
    try:
        lines = [f"{key.upper()}={int(data[key])}" for key in ("used_mb", "free_mb", "total_mb")]
    except (KeyError, TypeError, ValueError):
        raise DriverError(f"monitor: unexpected answer {data!r:.200}") from None
    return "\n".join(lines)


# --------------------------------------------------------------------------
# backups and restore (OpenNebula 7.4)
# --------------------------------------------------------------------------
INCREMENTAL_REFUSED = "incremental backups are not supported by gfs2clvm: use MODE=FULL"
DS_MAD_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def one_remotes(conf):
    """OpenNebula's remotes directory on the front-end (config ``one_remotes``)."""
    if conf.get("one_remotes"):
        return validate.path(str(conf["one_remotes"]), "one_remotes")
    location = os.environ.get("ONE_LOCATION")
    return os.path.join(location, "var", "remotes") if location else "/var/lib/one/remotes"


def _backup_base_path(conf):
    """BACKUP_BASE_PATH of datastore.conf, read as TransferManager::Datastore.load_env
    does (src/tm_mad/lib/datastore.rb:53-65 in release-7.4.0), or None."""
    path = os.path.join(one_remotes(conf), "etc", "datastore", "datastore.conf")
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            lines = handle.readlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("#"):
            continue
        match = re.match(r'(export)?[ \t]*([^=]+)="?([^"]+)"?$', line)
        if match and match.group(2).strip() == "BACKUP_BASE_PATH":
            return match.group(3).strip()
    return None


def _stdin(stdin):
    if stdin is None:
        stdin = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read()
    return stdin


def vm_document(text, vmid):
    """The ``<VM>`` on prebackup's stdin: one_vmm_exec.rb:1366-1369 (release-7.4.0)
    passes the VM element of the VMM action as plain XML; base64 is accepted too.
    Returns (root element, XML text)."""
    text = (text or "").strip()
    if not text:
        raise DriverError("no VM XML on stdin")
    if not text.startswith("<"):
        try:
            text = base64.b64decode(text).decode().strip()
        except (ValueError, UnicodeDecodeError):
            raise DriverError("the VM XML on stdin is neither XML nor base64") from None
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise DriverError(f"the VM XML on stdin is not valid XML: {err}") from None
    if root.tag != "VM":
        inner = root.find(".//VM")
        if inner is None:
            raise DriverError(f"no <VM> in the XML on stdin (found <{root.tag}>)")
        root, text = inner, ET.tostring(inner, encoding="unicode")
    found = (root.findtext("ID") or "").strip()
    if found and found != str(vmid):
        raise DriverError(f"the VM XML on stdin is VM {found}, not VM {vmid}")
    return root, text


def _backup_args(action, argv, conf):
    """``host:<sysds>/<vmid> DISK_ID:...:DISK_ID deploy_id bj_id vmid dsid``
    (src/tm/TransferManager.cc:2397-2415 in release-7.4.0; the VMM driver runs
    it as PREBACKUP[_LIVE]/POSTBACKUP[_LIVE], one_vmm_exec.rb:1328-1344)."""
    loc, disk_ids, _deploy_id, _bjid, vmid, dsid = validate.argc(
        argv, 6, usage=f"{action} host:vmdir disk_id[:disk_id...] deploy_id bj_id vmid dsid"
    )
    vmid, dsid = _ids(vmid, dsid)
    conf = _load(conf, dsid)
    loc = Location(loc, "VM directory").check_vm(vmid, conf.datastores_dir, disk=False)
    disks = [validate.ident(d, "disk id") for d in str(disk_ids).split(":") if d != ""]
    return loc, disks, vmid, conf


def _prebackup(action, argv, conf, stdin, live):
    import zlib

    loc, disks, vmid, conf = _backup_args(action, argv, conf)
    root, text = vm_document(_stdin(stdin), vmid)
    mode = (root.findtext("BACKUPS/BACKUP_CONFIG/MODE") or "FULL").strip().upper()
    if mode == "INCREMENT":  # lvm.rb:103-112: MODE=INCREMENT selects incremental backups
        raise DriverError(INCREMENTAL_REFUSED)
    if _backup_base_path(conf):
        raise DriverError(
            "BACKUP_BASE_PATH (datastore.conf) is not supported by gfs2clvm: "
            "backups are staged in the VM directory on GFS2; unset it"
        )
    if not disks:
        raise DriverError(f"{action}: no disks to back up")
    freeze = (root.findtext("BACKUPS/BACKUP_CONFIG/FS_FREEZE") or "NONE").strip().upper()
    if live and freeze != "NONE":
        info(f"{action}: FS_FREEZE={freeze} is not applied by gfs2clvm: the LVM snapshot is crash-consistent")
    packed = base64.b64encode(zlib.compress(text.encode(), 9)).decode()
    salt_ssh(conf.worker_for(loc.host), "gfs2clvm_tm.backup", loc.path, vmid, disks=disks,
             live=live, vm_xml=packed, vg=conf["vg"], conf=conf)


def prebackup(argv, conf=None, stdin=None):
    """prebackup host:vmdir disk_ids deploy_id bj_id vmid dsid (VM XML on stdin): powered-off VM"""
    _prebackup("prebackup", argv, conf, stdin, live=False)


def prebackup_live(argv, conf=None, stdin=None):
    """prebackup_live host:vmdir disk_ids deploy_id bj_id vmid dsid: running VM, LVM snapshots"""
    _prebackup("prebackup_live", argv, conf, stdin, live=True)


def _postbackup(action, argv, conf, stdin):
    loc, _, vmid, conf = _backup_args(action, argv, conf)
    _stdin(stdin)  # the VM XML; not needed to clean up
    try:
        salt_ssh(conf.worker_for(loc.host), "gfs2clvm_tm.backup_cleanup", loc.path, vmid,
                 vg=conf["vg"], conf=conf)
    except DriverError as err:
        # as OpenNebula's own postbackup: the error is logged and the action succeeds
        # (src/tm_mad/lvm/postbackup_live:70-78): the backup itself is already stored;
        # the next backup or the VM's deletion removes what is left
        error(f"{action}: cleanup failed: {err}")


def postbackup(argv, conf=None, stdin=None):
    """postbackup host:vmdir disk_ids deploy_id bj_id vmid dsid: remove <vmdir>/backup"""
    _postbackup("postbackup", argv, conf, stdin)


def postbackup_live(argv, conf=None, stdin=None):
    """postbackup_live host:vmdir disk_ids deploy_id bj_id vmid dsid: remove <vmdir>/backup"""
    _postbackup("postbackup_live", argv, conf, stdin)


def _one_show(conf, key, ident, *extra):
    """``<onevm|oneimage|onedatastore> show -x [extra] <id>`` -> (root, XML text)."""
    argv = [str(conf[key]), "show", "-x", *extra, str(ident)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DriverError(f"cannot run {argv[0]} show {ident}: {err}") from None
    if proc.returncode != 0:
        raise DriverError(f"{argv[0]} show {ident} failed: {one_line(proc.stderr) or proc.returncode}")
    try:
        return ET.fromstring(proc.stdout), proc.stdout.strip()
    except ET.ParseError as err:
        raise DriverError(f"{argv[0]} show {ident}: not XML: {err}") from None


def _optional_id(value, what):
    text = str(value)
    if text == "-1":
        return -1
    return validate.ident(text, what)


def backup_urls(conf, img_id, inc_id, disk_id, vmid):
    """{disk id: URL} of backup image ``img_id`` from its datastore driver's ``ls -i``,
    as src/tm_mad/lvm/restore:66-92 (release-7.4.0) does: stdin is
    <DS_DRIVER_ACTION_DATA> with the DATASTORE, the VM and the IMAGE (datastore.rb:153-168)."""
    image, image_text = _one_show(conf, "oneimage", img_id)
    ds_id = validate.ident((image.findtext("DATASTORE_ID") or "").strip(), "backup datastore id")
    ds, ds_text = _one_show(conf, "onedatastore", ds_id, "--decrypt")
    _, vm_text = _one_show(conf, "onevm", vmid)
    ds_mad = (ds.findtext("DS_MAD") or "").strip().lower()
    if not DS_MAD_RE.match(ds_mad):
        raise DriverError(f"datastore {ds_id} has no valid DS_MAD ({ds_mad!r})")
    ls = os.path.join(one_remotes(conf), "datastore", ds_mad, "ls")
    stdin = f"<DS_DRIVER_ACTION_DATA>\n{ds_text}\n{vm_text}\n{image_text}\n</DS_DRIVER_ACTION_DATA>\n"
    try:
        proc = subprocess.run([ls, "-i", str(inc_id)], input=stdin, capture_output=True, text=True,
                              timeout=conf["timeout"], check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise DriverError(f"cannot list backup image {img_id} with {ls}: {err}") from None
    if proc.returncode != 0:
        raise DriverError(f"cannot list backup image {img_id} ({ds_mad} ls): {one_line(proc.stderr)}")
    try:
        listed = json.loads(proc.stdout)
    except ValueError:
        raise DriverError(f"{ds_mad} ls of backup image {img_id}: not JSON: {one_line(proc.stdout)[:200]}") from None
    if not isinstance(listed, dict):
        raise DriverError(f"{ds_mad} ls of backup image {img_id}: not a JSON object")
    # 'tpm' (a TPM state) and other non-disk entries are not disks of this driver
    urls = {int(k): str(v) for k, v in listed.items() if str(k).isdigit()}
    if disk_id != -1:
        urls = {k: v for k, v in urls.items() if k == disk_id}
    if not urls:
        which = f"disk {disk_id}" if disk_id != -1 else "disks"
        raise DriverError(f"backup image {img_id} (increment {inc_id}) has no {which}")
    return urls


def _download_chunks(proc):
    while True:
        chunk = proc.stdout.read(stream.CHUNK)
        if not chunk:
            return
        yield chunk


def _download(conf, host, url, target):
    """``downloader.sh --nodecomp URL -`` (src/tm_mad/lvm/restore:102-104) into ``target``."""
    argv = [os.path.join(one_remotes(conf), "datastore", "downloader.sh"), "--nodecomp", url, "-"]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except OSError as err:
        raise DriverError(f"cannot run {argv[0]}: {err.strerror}") from None
    try:
        count, digest = stream.send(conf, host, _download_chunks(proc), target)
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace")
        proc.wait()
    if proc.returncode != 0:
        raise DriverError(f"downloading {url} failed: {one_line(err) or f'exit {proc.returncode}'}")
    return count, digest


def _unstage(conf, host, paths):
    """Best effort: remove staging files the worker never got to use."""
    if not paths:
        return
    remote = "rm -f -- " + " ".join(shlex.quote(p) for p in paths)
    try:
        subprocess.run(stream.ssh_argv(conf, host) + [remote], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        pass


def restore(argv, conf=None):
    """restore host:<sysds>/<vmid> vmid img_id inc_id disk_id (src/tm/TransferManager.cc:2322-2330)"""
    loc, vmid, img_id, inc_id, disk_id = validate.argc(
        argv, 5, usage="restore host:vmdir vmid img_id inc_id disk_id"
    )
    vmid = validate.ident(vmid, "VM id")
    img_id = validate.ident(img_id, "backup image id")
    inc_id, disk_id = _optional_id(inc_id, "increment id"), _optional_id(disk_id, "disk id")
    raw = Location(loc, "VM directory")
    base = (conf or config.load()).datastores_dir
    rel = os.path.relpath(raw.path, base).split("/")
    sysds = validate.ident(rel[0], "system datastore id") if len(rel) == 2 and rel[0].isdigit() else None
    if sysds is None:
        raise DriverError(f"path {raw.path} is not a VM directory ({base}/<dsid>/{vmid})")
    conf = _load(conf, sysds)
    loc = raw.check_vm(vmid, conf.datastores_dir, disk=False)
    host = conf.worker_for(loc.host)
    urls = backup_urls(conf, img_id, inc_id, disk_id, vmid)
    staged, sent = {}, []
    try:
        for diskid, url in sorted(urls.items()):
            target = stream.staging_path(conf, "img")
            sent.append(target)
            info(f"restore: disk {diskid} of backup image {img_id} to {host}")
            count, digest = _download(conf, host, url, target)
            staged[str(diskid)] = {"staged": target, "bytes": count, "sha256": digest}
    except BaseException:
        _unstage(conf, host, sent)
        raise
    salt_ssh(host, "gfs2clvm_tm.restore", loc.path, vmid, disks=staged, vg=conf["vg"], conf=conf)
