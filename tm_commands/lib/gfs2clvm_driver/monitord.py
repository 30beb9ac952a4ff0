"""Messages to onemonitord, sent the way OpenNebula's own drivers send them.

A system datastore's monitor prints only ``USED_MB= FREE_MB= TOTAL_MB=`` for oned;
the size of every VM disk goes to onemonitord as a ``MONITOR_VM`` message, as
``src/tm_mad/fs_lvm/monitor`` (release-7.4.0, line 160) does with
``send_to_monitor`` of ``src/mad/sh/scripts_common.sh`` (lines 1350-1423).

Wire format (scripts_common.sh:1421, parsed by ``Message::parse_from`` in
``include/Message.h``:209-271 with encode+compress on)::

    <TYPE> <SUCCESS|FAILURE> <oid> <timestamp> <base64(zlib(payload))>\\n

one UDP datagram to monitord.conf's ``NETWORK/MONITOR_ADDRESS`` (``auto``:
127.0.0.1) and ``PORT``.  The ``MONITOR_VM`` payload is a template of
``VM=[ID=<vmid>,MONITOR="<base64>"]`` entries; monitord base64-decodes each
MONITOR with ``EVP_DecodeBlock`` (``src/common/SSLUtil.cc``:29, which refuses
blanks inside the text) and parses the result as a template
(``src/monitor/src/monitor/MonitorDriverProtocol.cc``:118-127): so one VM's disks
are ONE base64 block of newline-separated ``DISK_SIZE=[ID=<disk>,SIZE=<MB>]``
lines.
"""

import base64
import os
import re
import socket
import zlib

from .core import info

# scripts_common.sh:1369-1378: the first of these that exists; none: no message, no error
CONF_PATHS = ("/var/tmp/one_db/etc/monitord.conf", "/etc/one/monitord.conf")
_ADDRESS_RE = re.compile(r'^\s*MONITOR_ADDRESS\s*=\s*"?([^",\s]*)"?', re.M)
_PORT_RE = re.compile(r"^\s*PORT\s*=\s*\"?(\d+)", re.M)
_PUBKEY_RE = re.compile(r'^\s*PUBKEY\s*=\s*"?([^",\s]*)"?', re.M)
DEFAULT_PORT = 4124  # src/monitor/etc/monitord.conf:73


def conf_path(env=None):
    """monitord.conf as scripts_common.sh:1369-1378 finds it (None when there is none)."""
    env = os.environ if env is None else env
    paths = list(CONF_PATHS)
    if env.get("ONE_LOCATION"):
        paths.append(os.path.join(env["ONE_LOCATION"], "etc", "monitord.conf"))
    return next((p for p in paths if os.path.isfile(p)), None)


def read_conf(path):
    """``(address, port, pubkey)`` of a monitord.conf (scripts_common.sh:1381-1389)."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        text = "\n".join(line.split("#", 1)[0] for line in handle)
    address = (_ADDRESS_RE.search(text) or [None, "auto"])[1] or "auto"
    if "auto" in address:  # scripts_common.sh:1387-1389
        address = "127.0.0.1"
    port = int((_PORT_RE.search(text) or [None, DEFAULT_PORT])[1])
    pubkey = (_PUBKEY_RE.search(text) or [None, ""])[1]
    return address, port, pubkey


def vm_disks_payload(vms):
    """The ``MONITOR_VM`` payload of ``{vmid: {diskid: size_mb}}``: one
    ``VM=[ID=..,MONITOR="<b64>"]`` per VM, its disks one base64 block of
    newline-separated ``DISK_SIZE=[ID=..,SIZE=..]`` lines.  The entries are joined
    by one blank: the payload passes ``echo $msg_payload`` unquoted
    (scripts_common.sh:1417), which makes it one line."""
    entries = []
    for vmid, disks in sorted((vms or {}).items(), key=lambda kv: int(kv[0])):
        lines = "\n".join(f"DISK_SIZE=[ID={int(d)},SIZE={int(s)}]"
                          for d, s in sorted(disks.items(), key=lambda kv: int(kv[0])))
        entries.append(f'VM=[ID={int(vmid)},MONITOR="{base64.b64encode(lines.encode()).decode()}"]')
    return " ".join(entries)


def message(msg_type, ok, oid, payload, timestamp=0):
    """One line as ``send_to_monitor`` writes it (scripts_common.sh:1407-1421).

    oid -1 goes with timestamp 0 (scripts_common.sh:1363-1367: monitord then skips
    its per-host timestamp check, HostMonitorManager.cc:568)."""
    text = " ".join(str(payload).split()) + "\n"  # `echo $msg_payload`
    packed = base64.b64encode(zlib.compress(text.encode())).decode()
    status = "SUCCESS" if ok else "FAILURE"
    return f"{msg_type} {status} {int(oid)} {int(timestamp) if int(oid) != -1 else 0} {packed}\n".encode()


def send(msg_type, ok, oid, payload, path=None):
    """Send one message to onemonitord; returns the ``(address, port)`` or None when
    there is no monitord.conf (as scripts_common.sh: no error).  A failed send is an
    ``INFO:`` line, never a failure of the action (the datastore figures are good)."""
    path = path or conf_path()
    if path is None:
        info("no monitord.conf found (/etc/one, $ONE_LOCATION/etc): VM disk sizes not sent")
        return None
    try:
        address, port, pubkey = read_conf(path)
    except (OSError, ValueError) as err:
        info(f"cannot read {path}: {err}: VM disk sizes not sent")
        return None
    if pubkey:
        # sent in clear: monitord accepts a message that does not decrypt (Message.h:258-263)
        info(f"monitord PUBKEY {pubkey} is set: VM disk sizes are sent unencrypted")
    data = message(msg_type, ok, oid, payload)
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(address, port, 0, socket.SOCK_DGRAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.sendto(data, addr)
    except OSError as err:
        info(f"cannot send {msg_type} to onemonitord at {address}:{port}: {err}")
        return None
    return address, port
