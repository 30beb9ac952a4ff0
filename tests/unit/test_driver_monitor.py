# SPDX-License-Identifier: Apache-2.0
"""Monitoring as oned and onemonitord take it: the TM monitor's stdout, the
MONITOR_VM message it sends (parsed here the way onemonitord parses it), and the
datastore monitor's guard (one run at a time, rotation over BRIDGE_LIST, timeout),
and qcow2 images at stat and cp on the front-end (virtual size, refusals)."""

import base64
import binascii
import re
import socket
import subprocess
import time
import zlib

import pytest
from test_driver_support import TM, VG, Fakes, ds_xml

from gfs2clvm_driver import monitord

# OpenNebula release-7.4.0 src/monitor/etc/monitord.conf:70-77, the port made ours
MONITORD_CONF = """
#*******************************************************************************
NETWORK = [
    ADDRESS         = "::",
    MONITOR_ADDRESS = "auto",
    PORT    = {port},
    THREADS = 8,
    PUBKEY  = "",
    PRIKEY  = ""
]
"""


def evp_decode_block(text):
    """ssl_util::base64_decode (src/common/SSLUtil.cc:29): EVP_DecodeBlock trims blanks
    at both ends only; one inside the text makes it fail and the result empty."""
    text = text.strip(" \t\r\n")
    if re.search(r"\s", text):
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error:
        return b""


def parse_message(line):
    """Message::parse_from (include/Message.h:209-271), encode and compress on:
    type, status, oid, timestamp, then base64(zlib(payload)) to the end of the line."""
    mtype, status, oid, ts, rest = line.decode().rstrip("\n").split(" ", 4)
    payload = zlib.decompress(evp_decode_block(rest)).decode()
    return mtype, status, int(oid), int(ts), payload


def parse_monitor_vm(payload):
    """MonitorDriverProtocol::_monitor_vm (src/monitor/src/monitor/MonitorDriverProtocol.cc:
    104-149): every VM=[ID=..,MONITOR=".."]; MONITOR base64-decoded, parsed as a template;
    returns {vmid: {diskid: size}} of its DISK_SIZE attributes."""
    vms = {}
    for vmid, b64 in re.findall(r'VM=\[ID=(\d+),MONITOR="([^"]*)"\]', payload):
        plain = evp_decode_block(b64).decode()
        disks = vms.setdefault(int(vmid), {})
        for line in plain.split("\n"):
            match = re.fullmatch(r"DISK_SIZE=\[ID=(\d+),SIZE=(\d+)\]", line.strip())
            if match:
                disks[int(match.group(1))] = int(match.group(2))
    return vms


@pytest.fixture
def listener():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


@pytest.fixture
def fakes(tmp_path):
    return Fakes(tmp_path)


def _with(b64xml, extra):
    xml = base64.b64decode(b64xml).decode().replace("</DS_DRIVER_ACTION_DATA>", extra + "</DS_DRIVER_ACTION_DATA>")
    return base64.b64encode(xml.encode()).decode()


def test_tm_monitor_prints_the_usage_and_sends_the_disk_sizes_to_monitord(fakes, listener, tmp_path):
    one = tmp_path / "one"
    (one / "etc").mkdir(parents=True)
    (one / "etc" / "monitord.conf").write_text(MONITORD_CONF.format(port=listener.getsockname()[1]))
    fakes.env["ONE_LOCATION"] = str(one)
    fakes.reply(value={"used_mb": 10, "free_mb": 90, "total_mb": 100,
                       "vms": {"42": {"0": 2048, "1": 512}, "7": {"0": 10}}})
    xml = ds_xml(ds={"BRIDGE_LIST": "node2"}, ds_id=0)
    rc, out, err = fakes.run("tm", "monitor", 0, stdin=_with(xml, "<MONITOR_VM_DISKS>1</MONITOR_VM_DISKS>"))
    assert rc == 0, err
    assert out == "USED_MB=10\nFREE_MB=90\nTOTAL_MB=100\n"  # all oned reads
    mtype, status, oid, ts, payload = parse_message(listener.recv(65536))
    assert (mtype, status, oid, ts) == ("MONITOR_VM", "SUCCESS", -1, 0)
    assert parse_monitor_vm(payload) == {42: {0: 2048, 1: 512}, 7: {0: 10}}
    # fs_lvm's exact per-VM form: one base64 block of newline-separated lines
    b64 = base64.b64encode(b"DISK_SIZE=[ID=0,SIZE=2048]\nDISK_SIZE=[ID=1,SIZE=512]").decode()
    assert f'VM=[ID=42,MONITOR="{b64}"]' in payload
    assert fakes.only_call() == (["node2"], "gfs2clvm_tm.monitor", [0], {"vg": VG})


def test_the_old_one_chunk_per_disk_shape_is_lost_by_monitord():
    """Why the payload changed: blank-separated chunks fail EVP_DecodeBlock."""
    chunks = " ".join(base64.b64encode(t.encode()).decode()
                      for t in ("DISK_SIZE=[ID=0,SIZE=1]", "DISK_SIZE=[ID=1,SIZE=2]"))
    assert parse_monitor_vm(f'VM=[ID=3,MONITOR="{chunks}"]') == {3: {}}
    assert parse_monitor_vm(monitord.vm_disks_payload({"3": {"0": 1, "1": 2}})) == {3: {0: 1, 1: 2}}


def test_without_monitor_vm_disks_or_monitord_conf_nothing_is_sent(fakes, listener, tmp_path):
    fakes.env.pop("ONE_LOCATION", None)
    fakes.reply(value={"used_mb": 1, "free_mb": 2, "total_mb": 3, "vms": {"1": {"0": 5}}})
    rc, out, err = fakes.run("tm", "monitor", 0, stdin=ds_xml(ds={"BRIDGE_LIST": "node1"}, ds_id=0))
    assert (rc, out) == (0, "USED_MB=1\nFREE_MB=2\nTOTAL_MB=3\n"), err
    assert monitord.conf_path({"ONE_LOCATION": str(tmp_path / "none")}) in (None, *monitord.CONF_PATHS)


def test_monitord_conf_is_read_like_scripts_common(tmp_path):
    conf = tmp_path / "monitord.conf"
    conf.write_text(MONITORD_CONF.format(port=4999).replace('"auto"', '"10.1.2.3"'))
    assert monitord.read_conf(conf) == ("10.1.2.3", 4999, "")
    conf.write_text(MONITORD_CONF.format(port=4124))
    assert monitord.read_conf(conf) == ("127.0.0.1", 4124, "")
    assert monitord.message("MONITOR_VM", False, 5, "A=1", timestamp=77).startswith(b"MONITOR_VM FAILURE 5 77 ")
    assert parse_message(monitord.message("MONITOR_VM", True, -1, "VM=[ID=1]\nVM=[ID=2]"))[4] == "VM=[ID=1] VM=[ID=2]\n"


# ------------------------------------------------------------- datastore monitor guard
def test_datastore_monitor_rotates_over_the_bridge_list(fakes):
    xml = ds_xml(ds={"BRIDGE_LIST": "node1 node2 node3"}, ds_id=100)
    hosts = []
    for _ in range(4):
        fakes.reply(value={"used_mb": 1, "free_mb": 2, "total_mb": 3})
        rc, out, err = fakes.run("datastore", "monitor", 100, stdin=xml)
        assert (rc, out) == (0, "USED_MB=1\nFREE_MB=2\nTOTAL_MB=3\n"), err
        hosts.append(fakes.calls()[-1][8])
    assert hosts == ["node1", "node2", "node3", "node1"]


def test_datastore_monitor_hands_over_to_the_next_host_on_failure(fakes):
    xml = ds_xml(ds={"BRIDGE_LIST": "node1 node2"}, ds_id=100)
    fakes.reply(rc=1, out="", stderr="ssh: connect to host node1: Connection refused")
    fakes.reply(value={"used_mb": 4, "free_mb": 5, "total_mb": 9})
    rc, out, err = fakes.run("datastore", "monitor", 100, stdin=xml)
    assert (rc, out) == (0, "USED_MB=4\nFREE_MB=5\nTOTAL_MB=9\n"), err
    assert [c[8] for c in fakes.calls()] == ["node1", "node2"]
    assert "INFO: datastore 100 monitor: node1 failed, trying the next host\n" in err


def test_datastore_monitor_is_bounded_by_monitor_timeout(fakes):
    fakes.write_conf(monitor_timeout=1)
    fakes.reply(value={"used_mb": 1, "free_mb": 2, "total_mb": 3}, sleep=5)
    rc, out, err = fakes.run("datastore", "monitor", 100, stdin=ds_xml(ds={"BRIDGE_LIST": "node1"}, ds_id=100))
    assert (rc, out) == (1, "")
    assert "datastore 100 monitor: no BRIDGE_LIST host answered within 1 s" in err


def test_an_overlapping_datastore_monitor_reports_the_last_result(fakes):
    xml = ds_xml(ds={"BRIDGE_LIST": "node1"}, ds_id=100)
    fakes.reply(value={"used_mb": 1, "free_mb": 2, "total_mb": 3})
    assert fakes.run("datastore", "monitor", 100, stdin=xml)[0] == 0
    fakes.reply(value={"used_mb": 7, "free_mb": 8, "total_mb": 15}, sleep=3)
    exe = str(TM / "datastore" / "gfs2clvm" / "monitor")
    slow = subprocess.Popen([exe, "100"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=fakes.env)
    slow.stdin.write(xml.encode())
    slow.stdin.close()
    deadline = time.monotonic() + 10
    while len(fakes.calls()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    rc, out, err = fakes.run("datastore", "monitor", 100, stdin=xml)
    assert (rc, out) == (0, "USED_MB=1\nFREE_MB=2\nTOTAL_MB=3\n"), err
    assert re.search(r"^INFO: datastore 100 monitor: skipped, an earlier run is still going; "
                     r"reporting the result of node1 from \d+ s ago$", err, re.M)
    assert len(fakes.calls()) == 2  # the skipped run made no call
    assert slow.wait(20) == 0 and slow.stdout.read() == b"USED_MB=7\nFREE_MB=8\nTOTAL_MB=15\n"


# ------------------------------------------------------------- qcow2 images: stat and cp
MiB = 1024 * 1024


def _qemu_img(*args):
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.fixture
def http_dir(tmp_path):
    from module_loaders import http_dir_server

    yield from http_dir_server(tmp_path)


def test_stat_of_a_qcow2_file_is_its_virtual_size(fakes, tmp_path):
    safe = tmp_path / "safe"
    safe.mkdir()
    _qemu_img("create", "-f", "qcow2", str(safe / "cloud.qcow2"), "3G")
    assert (safe / "cloud.qcow2").stat().st_size < MiB
    xml = ds_xml({"ID": 3, "PATH": str(safe / "cloud.qcow2")}, {"SAFE_DIRS": str(safe)})
    rc, out, err = fakes.run("datastore", "stat", 3, stdin=xml)
    assert (rc, out) == (0, "3072\n"), err
    assert fakes.calls() == []


def test_stat_refuses_a_qcow2_with_a_backing_file_on_the_front_end(fakes, tmp_path):
    safe = tmp_path / "safe"
    safe.mkdir()
    _qemu_img("create", "-f", "qcow2", str(safe / "base.qcow2"), "1G")
    _qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", str(safe / "base.qcow2"), str(safe / "top.qcow2"))
    xml = ds_xml({"ID": 3, "PATH": str(safe / "top.qcow2")}, {"SAFE_DIRS": str(safe)})
    for action in ("stat", "cp"):
        rc, out, err = fakes.run("datastore", action, 3, stdin=xml)
        assert (rc, out) == (1, "")
        assert f"{safe / 'top.qcow2'} is a qcow2 image with a backing file" in err
    assert fakes.calls() == [] and fakes.ssh_calls() == []


def test_stat_of_an_http_image(fakes, http_dir):
    root, url = http_dir
    _qemu_img("create", "-f", "qcow2", str(root / "cloud.qcow2"), "2G")
    (root / "disk.raw").write_bytes(b"\1" * (3 * MiB + 1))
    for name, size in (("cloud.qcow2", "2048"), ("disk.raw", "4")):
        rc, out, err = fakes.run("datastore", "stat", 3, stdin=ds_xml({"ID": 3, "PATH": f"{url}/{name}"}))
        assert (rc, out) == (0, f"{size}\n"), err


def test_cp_of_a_qcow2_file_streams_it_and_sizes_the_volume_by_its_virtual_size(fakes, tmp_path):
    safe = tmp_path / "safe"
    safe.mkdir()
    _qemu_img("create", "-f", "qcow2", str(safe / "cloud.qcow2"), "1G")
    fakes.reply(value={"source": "x", "size_mb": 1024, "format": "qcow2"})
    rc, out, err = fakes.run("datastore", "cp", 2, stdin=ds_xml({"ID": 2, "PATH": str(safe / "cloud.qcow2"), "SIZE": 0},
                                                               {"SAFE_DIRS": str(safe)}))
    assert rc == 0, err
    assert re.fullmatch(rf"/dev/{VG}/lv-oneimg-[0-9a-f]{{32}} raw\n", out)  # stored raw: FORMAT raw
    targets, fun, args, kwargs = fakes.only_call()
    assert fun == "gfs2clvm_tm.ds_cp" and kwargs["size_mb"] == 1024
    assert (fakes.state / "streamed.bin").read_bytes() == (safe / "cloud.qcow2").read_bytes()
