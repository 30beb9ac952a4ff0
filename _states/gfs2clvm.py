# SPDX-License-Identifier: Apache-2.0
"""
States for a gfs2clvm worker that Salt lacks: a quorate corosync cluster, the
shared (lvmlockd) VG with its lockspace started, an LV active in shared mode,
and a GFS2 filesystem that is created only on a blank device.

Every state follows Salt's pattern: probe -> in test mode return ``None`` with
the predicted changes -> act -> probe again.  Exactly one node of the cluster
(``create: True``) creates the VG, the LV and the filesystem; the other nodes
wait (up to ``timeout`` seconds) for them to appear, so all nodes can run their
highstate at the same time.

.. code-block:: yaml

    cluster-quorate:
      gfs2clvm.quorate:
        - name: onecluster
        - timeout: 600

    vg_cloudstorage:
      gfs2clvm.vg_shared:
        - devices: [/dev/mapper/mpatha]
        - create: {{ grains['id'] == 'node1' }}

    gfs2-lv:
      gfs2clvm.lv_shared:
        - name: gfs2
        - vg: vg_cloudstorage
        - size: 10G
        - create: {{ grains['id'] == 'node1' }}

    /dev/vg_cloudstorage/gfs2:
      gfs2clvm.gfs2_formatted:
        - locktable: onecluster:one
        - journals: 2
        - create: {{ grains['id'] == 'node1' }}
"""

import json
import re
import time

from salt.exceptions import CommandExecutionError, SaltException

__virtualname__ = "gfs2clvm"

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}$")
_SIZE_RE = re.compile(r"^[0-9]+(\.[0-9]+)?[bBsSkKmMgGtTpPeE]?$")
_LOCKTABLE_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}:[A-Za-z0-9_-]{1,30}$")


def __virtual__():
    if "cmd.run_all" not in __salt__:
        return (False, "gfs2clvm states need the cmd execution module")
    return __virtualname__


# --------------------------------------------------------------------------- helpers


def _ret(name):
    return {"name": name, "result": False, "changes": {}, "comment": ""}


def _run(argv, ok_codes=(0,)):
    """Run argv (no shell); return the cmd.run_all dict, raise on other exit codes."""
    res = __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=True)
    if res["retcode"] not in ok_codes:
        detail = (res.get("stderr") or res.get("stdout") or "").strip().splitlines()
        detail = detail[-1] if detail else f"exit code {res['retcode']}"
        raise CommandExecutionError(f"{argv[0]} failed: {detail}")
    return res


def _sleep(seconds):
    time.sleep(seconds)


def _wait(probe, timeout, interval):
    """Call probe() until it returns a truthy value or timeout expires; return the last value."""
    deadline = time.monotonic() + max(0, timeout)
    while True:
        value = probe()
        if value or time.monotonic() >= deadline:
            return value
        _sleep(interval)


def _check_name(kind, value):
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise SaltException(f"invalid {kind} name: {value!r}")


def _json_report(res, key):
    """Rows of an LVM JSON report (`--reportformat json`); [] when unparsable."""
    try:
        report = json.loads(res.get("stdout") or "{}").get("report") or [{}]
    except ValueError:
        return []
    return report[0].get(key) or []


# --------------------------------------------------------------------------- probes


def _quorate():
    res = _run(["corosync-quorumtool", "-s"], ok_codes=(0, 1, 2))
    for line in (res.get("stdout") or "").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "Quorate":
            return value.strip() == "Yes"
    return False


def _vg(vg):
    """{'vg_name', 'vg_lock_type'} of vg, or None when the VG is not visible."""
    res = _run(
        ["vgs", "--reportformat", "json", "-o", "vg_name,vg_lock_type", "--readonly"],
        ok_codes=(0, 5),
    )
    for row in _json_report(res, "vg"):
        if row.get("vg_name") == vg:
            return row
    return None


def _lockspace_started(vg):
    """True when lvmlockd has the lockspace of vg started on this node."""
    res = _run(["lvmlockctl", "--info"], ok_codes=(0, 1))
    for line in (res.get("stdout") or "").splitlines():
        words = line.split()
        if words[:2] == ["VG", vg] or f"vg_name={vg}" in words:
            return True
    return False


def _lv(vg, lv):
    """{'lv_name', 'lv_active_locally', ...} of vg/lv, or None when absent."""
    res = _run(
        [
            "lvs",
            "--reportformat",
            "json",
            "-o",
            "lv_name,lv_size,lv_active_locally",
            "--units",
            "b",
            "--nosuffix",
            "-S",
            f"lv_name={lv}",
            vg,
        ],
        ok_codes=(0, 5),
    )
    for row in _json_report(res, "lv"):
        if row.get("lv_name") == lv:
            return row
    return None


def _lv_active(row):
    return bool(row) and row.get("lv_active_locally") not in ("", None)


def _try_activate_shared(vg, lv):
    res = __salt__["cmd.run_all"](
        ["lvchange", "-asy", f"{vg}/{lv}"], python_shell=False, ignore_retcode=True
    )
    return res["retcode"] == 0


def _signature(device):
    """What blkid -p finds on device: {} when blank, else its key=value pairs.

    Exit code 2 = nothing found.  Every other outcome (a filesystem, a partition
    table, an ambivalent probe, a probe error) counts as "not blank".
    """
    # another node may have just written the device: drop this node's stale
    # page cache of it first (blkid reads through the cache)
    __salt__["cmd.run_all"](
        ["blockdev", "--flushbufs", device], python_shell=False, ignore_retcode=True
    )
    res = __salt__["cmd.run_all"](
        ["blkid", "-p", "-o", "export", device], python_shell=False, ignore_retcode=True
    )
    if res["retcode"] == 2:
        return {}
    found = {}
    for line in (res.get("stdout") or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            found[key] = value
    if res["retcode"] != 0 or not found:
        detail = (res.get("stderr") or "").strip() or f"blkid exit code {res['retcode']}"
        found.setdefault("UNKNOWN", detail)
    return found


# --------------------------------------------------------------------------- states


def quorate(name, timeout=600, interval=2):
    """
    Wait until corosync reports this node quorate (``corosync-quorumtool -s``).

    Changes nothing; fails after ``timeout`` seconds.  lvmlockd (dlm) and GFS2
    lock_dlm mounts need quorum.

    name
        The cluster name (informational).
    """
    ret = _ret(name)
    try:
        if _quorate():
            ret.update(result=True, comment=f"Cluster {name} is quorate")
            return ret
        if __opts__["test"]:
            ret.update(result=None, comment=f"Cluster {name} is not quorate yet; would wait")
            return ret
        if _wait(_quorate, timeout, interval):
            ret.update(result=True, comment=f"Cluster {name} became quorate")
        else:
            ret["comment"] = f"Cluster {name} not quorate after {timeout} s (corosync-quorumtool -s)"
    except SaltException as err:
        ret["comment"] = str(err)
    return ret


def vg_shared(name, devices=None, create=False, lock_type="dlm", timeout=600, interval=5):
    """
    Ensure the shared VG ``name`` exists and its lockspace is started on this node.

    name
        The VG name.
    devices
        Devices for ``vgcreate`` (only used when ``create`` is true).
    create
        True on exactly one node: it runs ``vgcreate --shared --lock-type``.
        Other nodes wait up to ``timeout`` seconds for the VG to appear.
    lock_type
        ``dlm`` (default) or ``sanlock``.  An existing VG with another lock type
        is an error; it is never converted.
    """
    ret = _ret(name)
    try:
        _check_name("VG", name)
        if lock_type not in ("dlm", "sanlock"):
            raise SaltException(f"lock_type must be dlm or sanlock, not {lock_type!r}")
        devices = list(devices or [])
        if create and not devices:
            raise SaltException(f"vgcreate of {name} needs devices")

        vg = _vg(name)
        started = bool(vg) and _lockspace_started(name)
        if vg and vg.get("vg_lock_type") != lock_type:
            ret["comment"] = (
                f"VG {name} exists with lock type {vg.get('vg_lock_type') or 'none'!r},"
                f" not {lock_type!r}; refusing to change it"
            )
            return ret
        if vg and started:
            ret.update(result=True, comment=f"Shared VG {name} present, lockspace started")
            return ret

        if __opts__["test"]:
            if vg:
                ret["changes"] = {"lockspace": "started"}
                ret["comment"] = f"Lockspace of VG {name} would be started"
            elif create:
                ret["changes"] = {"created": name, "devices": devices, "lock_type": lock_type}
                ret["comment"] = f"Shared VG {name} would be created on {', '.join(devices)}"
            else:
                ret["changes"] = {"lockspace": "started"}
                ret["comment"] = f"Would wait for VG {name} and start its lockspace"
            ret["result"] = None
            return ret

        if not vg and create:
            _run(["vgcreate", "--yes", "--shared", "--lock-type", lock_type, name, *devices])
            ret["changes"].update(created=name, devices=devices, lock_type=lock_type)
        elif not vg:
            vg = _wait(lambda: _vg(name), timeout, interval)
            if not vg:
                ret["comment"] = f"VG {name} did not appear within {timeout} s (created by another node)"
                return ret
            if vg.get("vg_lock_type") != lock_type:
                ret["comment"] = f"VG {name} appeared with lock type {vg.get('vg_lock_type')!r}"
                return ret

        if not _lockspace_started(name):
            _run(["vgchange", "--lock-start", name])
            ret["changes"]["lockspace"] = "started"

        if not (_vg(name) and _lockspace_started(name)):
            ret["comment"] = f"VG {name}: lockspace not started after vgchange --lock-start"
            return ret
        ret.update(result=True, comment=f"Shared VG {name} present, lockspace started")
    except SaltException as err:
        ret["comment"] = str(err)
    return ret


def lv_shared(name, vg, size=None, create=False, timeout=600, interval=5):
    """
    Ensure LV ``vg/name`` exists and is active on this node in shared mode (``-asy``).

    name
        LV name.
    vg
        The shared VG (its lockspace must be started: see ``vg_shared``).
    size
        ``lvcreate -L`` size (e.g. ``10G``); needed when ``create`` is true.
    create
        True on exactly one node; the others wait up to ``timeout`` seconds for the LV.
    """
    ret = _ret(name)
    try:
        _check_name("VG", vg)
        _check_name("LV", name)
        if create and not (isinstance(size, str) and _SIZE_RE.match(size)):
            raise SaltException(f"invalid size for LV {vg}/{name}: {size!r}")
        lv = _lv(vg, name)
        if _lv_active(lv):
            ret.update(result=True, comment=f"LV {vg}/{name} present and active")
            return ret

        if __opts__["test"]:
            ret["result"] = None
            if not lv and create:
                ret["changes"] = {"created": f"{vg}/{name}", "size": size, "active": "shared"}
                ret["comment"] = f"LV {vg}/{name} would be created and activated shared"
            else:
                ret["changes"] = {"active": "shared"}
                ret["comment"] = f"LV {vg}/{name} would be activated shared"
            return ret

        if not lv and create:
            # lvcreate activates exclusively (and wipes signatures); then switch to shared
            _run(["lvcreate", "--yes", "--wipesignatures", "y", "-L", size, "-n", name, vg])
            _run(["lvchange", "-an", f"{vg}/{name}"])
            ret["changes"].update(created=f"{vg}/{name}", size=size)
        elif not lv:
            lv = _wait(lambda: _lv(vg, name), timeout, interval)
            if not lv:
                ret["comment"] = f"LV {vg}/{name} did not appear within {timeout} s (created by another node)"
                return ret

        if create:
            _run(["lvchange", "-asy", f"{vg}/{name}"])
        elif not _wait(lambda: _try_activate_shared(vg, name), timeout, interval):
            # the creating node may still hold it exclusively for a moment
            _run(["lvchange", "-asy", f"{vg}/{name}"])
        ret["changes"]["active"] = "shared"
        if not _lv_active(_lv(vg, name)):
            ret["comment"] = f"LV {vg}/{name} is not active after lvchange -asy"
            return ret
        ret.update(result=True, comment=f"LV {vg}/{name} present and active (shared)")
    except SaltException as err:
        ret["comment"] = str(err)
    return ret


def gfs2_formatted(
    name, locktable, journals=2, journal_size_mb=128, create=False, timeout=600, interval=5
):
    """
    Ensure device ``name`` holds a GFS2 filesystem; create it only on a blank device.

    A device that carries any signature ``blkid -p`` recognises (another
    filesystem, a partition table, LVM, an ambivalent probe) is never formatted:
    the state fails and names what it found.  An existing GFS2 is left alone.

    name
        Block device (e.g. ``/dev/vg_cloudstorage/gfs2``), active on this node.
    locktable
        ``<corosync cluster_name>:<fsname>`` for ``mkfs.gfs2 -p lock_dlm -t``.
    journals
        Number of journals = the number of nodes that may mount it.
    create
        True on exactly one node; the others wait up to ``timeout`` seconds for
        the filesystem to appear.
    """
    ret = _ret(name)
    try:
        if not isinstance(name, str) or not name.startswith("/dev/"):
            raise SaltException(f"not a device path: {name!r}")
        if not isinstance(locktable, str) or not _LOCKTABLE_RE.match(locktable):
            raise SaltException(f"invalid GFS2 lock table {locktable!r} (want cluster:fsname)")
        try:
            journals = int(journals)
            journal_size_mb = int(journal_size_mb)
        except (TypeError, ValueError):
            raise SaltException("journals and journal_size_mb must be integers") from None
        if journals < 1 or journal_size_mb < 8:
            raise SaltException("journals must be >= 1 and journal_size_mb >= 8")

        found = _signature(name)
        if found.get("TYPE") == "gfs2":
            ret.update(result=True, comment=f"{name} holds GFS2 ({found.get('LABEL', '?')})")
            return ret
        if found:
            what = ", ".join(f"{k}={v}" for k, v in sorted(found.items()) if k in ("TYPE", "PTTYPE", "UNKNOWN"))
            ret["comment"] = f"{name} is not blank ({what or 'signature found'}); refusing to format it"
            return ret

        if __opts__["test"]:
            ret["result"] = None
            if create:
                ret["changes"] = {"formatted": "gfs2", "locktable": locktable, "journals": journals}
                ret["comment"] = f"{name} is blank and would be formatted GFS2 ({locktable})"
            else:
                ret["comment"] = f"{name} is blank; would wait for another node to format it"
            return ret

        if create:
            _run(
                [
                    "mkfs.gfs2", "-O", "-p", "lock_dlm", "-t", locktable,
                    "-j", str(journals), "-J", str(journal_size_mb), name,
                ]
            )
            ret["changes"] = {"formatted": "gfs2", "locktable": locktable, "journals": journals}
        else:
            if not _wait(lambda: _signature(name).get("TYPE") == "gfs2", timeout, interval):
                ret["comment"] = f"{name} not formatted by another node within {timeout} s"
                return ret

        found = _signature(name)
        if found.get("TYPE") != "gfs2":
            ret["comment"] = f"{name} holds {found.get('TYPE') or 'no filesystem'}, not GFS2"
            return ret
        ret.update(result=True, comment=f"{name} holds GFS2 ({found.get('LABEL', locktable)})")
    except SaltException as err:
        ret["comment"] = str(err)
    return ret
