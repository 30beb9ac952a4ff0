"""``host:path`` arguments of OpenNebula and the VM directory layout on GFS2."""

import os

from . import validate
from .core import DriverError


class Location:
    """One ``host:path`` argument.

    ``.host`` / ``.path`` are validated; ``.vmdir`` is the VM directory (the path
    itself, or its parent when the path names a ``disk.N``); ``.disk_id`` is N or None.
    """

    def __init__(self, arg, what="location"):
        text = str(arg)
        host, sep, path = text.partition(":")
        if not sep or not host or not path:
            raise DriverError(f"invalid {what} {text!r}: expected host:path")
        self.arg = text
        self.host = validate.host(host, f"host in {what}")
        self.path = validate.path(path, f"path in {what}")
        match = validate.DISK_RE.match(os.path.basename(self.path))
        self.disk_id = int(match.group(1)) if match else None
        self.vmdir = os.path.dirname(self.path) if match else self.path

    @property
    def is_disk(self):
        return self.disk_id is not None

    def __repr__(self):
        return f"Location({self.arg!r})"

    def check_vm(self, vmid, base, legacy=False, disk=None):
        """Refuse a path that is not ``<base>/<dsid>/<vmid>[/disk.N]``.

        ``legacy`` (OpenNebula 3.2): ``<base>/<vmid>/images[/disk.N]``.
        ``disk``: True = must name a disk, False = must be the VM directory.
        """
        validate.path(self.path, "path", under=base)
        rel = os.path.relpath(self.vmdir, base).split("/")
        if legacy:
            ok = len(rel) == 2 and rel[1] == "images" and rel[0] == str(vmid)
            shape = f"{base}/{vmid}/images"
        else:
            ok = len(rel) == 2 and rel[0].isdigit() and rel[1] == str(vmid)
            shape = f"{base}/<dsid>/{vmid}"
        if not ok:
            raise DriverError(f"path {self.path} is not in the directory of VM {vmid} ({shape})")
        if disk is True and not self.is_disk:
            raise DriverError(f"path {self.path} does not name a disk (disk.N)")
        if disk is False and self.is_disk:
            raise DriverError(f"path {self.path} names a disk, expected the VM directory")
        return self


def legacy_vmid(loc, base):
    """The VM id of a 3.2 path ``<base>/<vmid>/images/disk.N`` (the seed's get_vid)."""
    rel = os.path.relpath(loc.vmdir, base).split("/")
    if len(rel) != 2 or rel[1] != "images":
        raise DriverError(f"path {loc.path} is not <VM_DIR>/<vmid>/images[/disk.N] under {base}")
    return validate.ident(rel[0], "VM id in path")
