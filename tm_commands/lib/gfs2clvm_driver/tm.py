"""TM actions (OpenNebula 6.x/7.x ``remotes/tm/gfs2clvm/<action>``).

Each function takes oned's argv (without the program name), validates every
argument, and makes exactly one salt-ssh call of ``gfs2clvm_tm.<action>``
(migrations: one call with both hosts as a list target).  Returns the stdout
payload (None for most actions).
"""

import base64
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET

from . import config, stream, validate
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
    salt_ssh(conf.worker_for(loc.host), f"gfs2clvm_tm.{action}", loc.path, snapid, vmid=vmid, vg=conf["vg"], conf=conf)


def snap_create(argv, conf=None):
    """snap_create host:<ds>/<vmid>/disk.i snapid vmid dsid"""
    _snap("snap_create", argv, conf)


def snap_delete(argv, conf=None):
    """snap_delete host:<ds>/<vmid>/disk.i snapid vmid dsid"""
    _snap("snap_delete", argv, conf)


def snap_revert(argv, conf=None):
    """snap_revert host:<ds>/<vmid>/disk.i snapid vmid dsid"""
    _snap("snap_revert", argv, conf)


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
