# SPDX-License-Identifier: Apache-2.0
"""A small onemonitord: the UDP end that receives a system datastore monitor's
``MONITOR_VM`` message and reads the VM disk sizes out of it as OpenNebula does.

The driver finds it through ``$ONE_LOCATION/etc/monitord.conf`` (the third place
``send_to_monitor`` looks, src/mad/sh/scripts_common.sh:1369-1378 of release-7.4.0);
the conf is the NETWORK block of src/monitor/etc/monitord.conf:70-77 with our port.
"""
from __future__ import annotations

import base64
import binascii
import re
import socket
import tempfile
import zlib
from pathlib import Path

CONF = """NETWORK = [
    ADDRESS         = "127.0.0.1",
    MONITOR_ADDRESS = "auto",
    PORT    = {port},
    THREADS = 8,
    PUBKEY  = "",
    PRIKEY  = ""
]
"""


def evp_decode(text: str) -> bytes:
    """ssl_util::base64_decode (src/common/SSLUtil.cc:29-60): EVP_DecodeBlock trims
    blanks at the ends only; a blank inside fails the decode and gives nothing."""
    text = text.strip(" \t\r\n")
    if re.search(r"\s", text):
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return b""


def parse_message(data: bytes) -> tuple[str, str, int, int, str]:
    """Message::parse_from (include/Message.h:209-271, encode + compress on):
    ``TYPE STATUS OID TS base64(zlib(payload))``."""
    mtype, status, oid, ts, rest = data.decode().rstrip("\n").split(" ", 4)
    return mtype, status, int(oid), int(ts), zlib.decompress(evp_decode(rest)).decode()


def disk_sizes(payload: str) -> dict[int, dict[int, int]]:
    """MonitorDriverProtocol::_monitor_vm (src/monitor/src/monitor/MonitorDriverProtocol.cc:
    104-149): each ``VM=[ID=..,MONITOR="b64"]``, MONITOR decoded and parsed as a template;
    its DISK_SIZE=[ID=..,SIZE=..] attributes, merged per VM id."""
    vms: dict[int, dict[int, int]] = {}
    for vmid, b64 in re.findall(r'VM=\[ID=(\d+),MONITOR="([^"]*)"\]', payload):
        disks = vms.setdefault(int(vmid), {})
        for disk, size in re.findall(r"DISK_SIZE=\[ID=(\d+),SIZE=(\d+)\]", evp_decode(b64).decode()):
            disks[int(disk)] = int(size)
    return vms


class Monitord:
    """UDP listener on 127.0.0.1 with a ``$ONE_LOCATION/etc/monitord.conf`` naming it."""

    def __init__(self, base=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.location = Path(base or tempfile.mkdtemp(prefix="onesim-monitord-"))
        (self.location / "etc").mkdir(parents=True, exist_ok=True)
        (self.location / "etc" / "monitord.conf").write_text(CONF.format(port=self.sock.getsockname()[1]))
        self.messages: list[tuple] = []

    def attach(self, oned) -> "Monitord":
        """Make ``oned``'s driver calls find this monitord (``ONE_LOCATION``)."""
        oned.driver.env["ONE_LOCATION"] = str(self.location)
        oned.monitord = self
        return self

    def receive(self, timeout=2.0) -> dict[int, dict[int, int]]:
        """DISK_SIZEs of the MONITOR_VM messages that arrived (waits ``timeout`` for the first)."""
        sizes: dict[int, dict[int, int]] = {}
        self.sock.settimeout(timeout)
        while True:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, BlockingIOError):
                break
            msg = parse_message(data)
            self.messages.append(msg)
            if msg[0] == "MONITOR_VM" and msg[1] == "SUCCESS":
                for vmid, disks in disk_sizes(msg[4]).items():
                    sizes.setdefault(vmid, {}).update(disks)
            self.sock.settimeout(0.05)
        return sizes

    def close(self):
        self.sock.close()
