# SPDX-License-Identifier: Apache-2.0
"""The gfs2clvm execution modules loaded by saltfactories' ``Loaders`` from ``_modules``
(as salt-call would load them), with a throw-away minion state under ``world/salt`` and
the mountpoint ``world/one``; shared by the unit tests that run the module on real files."""

import grp
import http.server
import os
import pwd
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

import salt._logging.impl
import salt.config
from saltfactories.utils.functional import Loaders

REPO = Path(__file__).resolve().parents[2]


def module_loaders(world, **settings):
    """Generator for a module-scoped fixture: yields ``Loaders`` whose ``gfs2clvm``
    settings are the test defaults (no sudo, no mount check, the caller's own user and
    group) updated with ``settings``; stops Salt's temporary log handler afterwards."""
    opts = salt.config.minion_config(None)
    state = world / "salt"
    opts.update(
        root_dir=str(state),
        cachedir=str(state / "cache"),
        pki_dir=str(state / "pki"),
        sock_dir=str(state / "run"),
        log_file=str(state / "minion.log"),
        file_client="local",
        file_roots={"base": [str(state / "empty")]},
        module_dirs=[str(REPO / "_modules")],
        gfs2clvm={
            "mountpoint": str(world / "one"),
            "mount_check": "none",
            "owner": pwd.getpwuid(os.geteuid()).pw_name,
            "group": grp.getgrgid(os.getegid()).gr_name,
            "sudo": False,
            **settings,
        },
    )
    (state / "empty").mkdir(parents=True)
    yield Loaders(opts)
    salt._logging.impl.shutdown_temp_handler()


def loop_device_lv(tmp_path, tag, size_mib=16):
    """Generator for a fixture: a real block device at an LV-style path
    ``/dev/gfs2clvm-<tag>-<pid>/lv-one-1-0`` (a loop device over a file filled with a
    previous tenant's bytes, 0xee); skipped where the host allows no loop device."""
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup for a loop block device")
    backing = tmp_path / "disk.img"
    backing.write_bytes(b"\xee" * size_mib * 1024 * 1024)
    dev = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True, check=False)
    if dev.returncode != 0:
        pytest.skip(f"no loop device: {dev.stderr.strip()}")
    vgdir = Path(f"/dev/gfs2clvm-{tag}-{os.getpid()}")
    vgdir.mkdir()
    lv = vgdir / "lv-one-1-0"
    lv.symlink_to(dev.stdout.strip())
    try:
        yield lv
    finally:
        lv.unlink()
        vgdir.rmdir()
        subprocess.run(["losetup", "-d", dev.stdout.strip()], check=True)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory without logging every request to stderr."""

    def log_message(self, *args):
        pass


def http_dir_server(tmp_path):
    """Generator for a fixture: ``(root, url)`` of a local HTTP server of ``tmp_path/www``."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: QuietHandler(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
