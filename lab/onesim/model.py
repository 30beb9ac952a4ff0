# SPDX-License-Identifier: Apache-2.0
"""The objects oned keeps for a VM's storage: hosts, datastores, images, VMs.

Only what the transfer manager reads when it writes its transfer scripts
(OpenNebula ``TransferManager.cc``) is modelled: disk attributes SOURCE, CLONE,
SAVE, TM_MAD, DATASTORE_ID, TYPE, SIZE, FORMAT; the VM's history (host, system
datastore, previous host); the image's SOURCE/PATH/SIZE/FORMAT.
"""
from __future__ import annotations

import dataclasses
import enum
from xml.sax.saxutils import escape

# Image types as oned writes them in <IMAGE><TYPE> (include/Image.h).
IMAGE_TYPES = {"OS": 0, "CDROM": 1, "DATABLOCK": 2, "KERNEL": 3, "RAMDISK": 4, "CONTEXT": 5}
# Datastore types in <DATASTORE><TYPE> (include/Datastore.h).
DS_TYPES = {"IMAGE_DS": 0, "SYSTEM_DS": 1, "FILE_DS": 2}


class State(enum.Enum):
    """The VM states the matrix walks through (oned: VmState/LcmState)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    POWEROFF = "POWEROFF"
    STOPPED = "STOPPED"
    DONE = "DONE"
    FAILURE = "FAILURE"


@dataclasses.dataclass
class Host:
    """A KVM worker as oned names it (the name is also the salt-ssh roster id)."""

    name: str


@dataclasses.dataclass
class Datastore:
    """A system or image datastore."""

    id: int
    name: str
    type: str = "IMAGE_DS"
    ds_mad: str = "gfs2clvm"
    tm_mad: str = "gfs2clvm"
    base_path: str = ""
    template: dict = dataclasses.field(default_factory=dict)
    monitor: dict = dataclasses.field(default_factory=dict)  # TOTAL_MB/FREE_MB/USED_MB oned keeps

    def to_xml(self) -> str:
        tmpl = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in self.template.items())
        return (
            f"<DATASTORE><ID>{self.id}</ID><NAME>{escape(self.name)}</NAME>"
            f"<DS_MAD>{escape(self.ds_mad)}</DS_MAD><TM_MAD>{escape(self.tm_mad)}</TM_MAD>"
            f"<BASE_PATH>{escape(self.base_path)}</BASE_PATH><TYPE>{DS_TYPES[self.type]}</TYPE>"
            f"<TEMPLATE>{tmpl}</TEMPLATE></DATASTORE>"
        )


@dataclasses.dataclass
class Image:
    """An image of an image datastore; SOURCE is what the datastore driver printed."""

    id: int
    name: str
    ds_id: int
    type: str = "OS"
    persistent: bool = False
    size_mb: int = 0
    format: str = "raw"
    path: str = ""
    source: str = ""
    fs: str = ""
    state: str = "LOCKED"
    error: str = ""  # the image's ERROR message as oned sets it (what `oneimage show` shows)
    template: dict = dataclasses.field(default_factory=dict)
    # What the matrix expects the image to hold (first len(content) bytes), or None.
    content: bytearray | None = None

    def to_xml(self) -> str:
        tmpl = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in self.template.items())
        return (
            f"<IMAGE><ID>{self.id}</ID><NAME>{escape(self.name)}</NAME>"
            f"<TYPE>{IMAGE_TYPES[self.type]}</TYPE><PERSISTENT>{int(self.persistent)}</PERSISTENT>"
            f"<DATASTORE_ID>{self.ds_id}</DATASTORE_ID>"
            f"<SOURCE>{escape(self.source)}</SOURCE><PATH>{escape(self.path)}</PATH>"
            f"<FS>{escape(self.fs)}</FS><FORMAT>{escape(self.format)}</FORMAT>"
            f"<SIZE>{self.size_mb}</SIZE><TEMPLATE>{tmpl}</TEMPLATE></IMAGE>"
        )


@dataclasses.dataclass
class Disk:
    """A VM DISK attribute after oned filled it in (Image::disk_attribute)."""

    disk_id: int
    type: str = "BLOCK"  # BLOCK/FILE (image disks), SWAP, FS (volatile)
    image_id: int | None = None
    source: str = ""
    tm_mad: str = ""
    ds_id: int | None = None
    clone: bool = True
    save: bool = False
    persistent: bool = False
    size_mb: int = 0
    format: str = "raw"
    fs: str = ""  # DISK/FS of a volatile disk (mkimage reads it with `onevm show -x`)
    # What the matrix expects the disk to hold (first len(content) bytes), or None.
    content: bytearray | None = None

    @property
    def volatile(self) -> bool:
        return self.type in ("SWAP", "FS")


@dataclasses.dataclass
class VM:
    """A VM with its history (current and previous host and system datastore)."""

    id: int
    name: str
    disks: list[Disk]
    context: dict | None = None  # CONTEXT variables; None = no context disk
    state: State = State.PENDING
    host: str | None = None
    ds_id: int | None = None
    prev_host: str | None = None
    prev_ds_id: int | None = None
    checkpoint: bytes | None = None  # what the hypervisor saved on suspend/stop
    log: list[str] = dataclasses.field(default_factory=list)  # what oned writes to the VM log

    @property
    def context_disk_id(self) -> int:
        """oned gives the context CD-ROM the next free disk id."""
        return max((d.disk_id for d in self.disks), default=-1) + 1

    def disk(self, disk_id: int) -> Disk:
        for disk in self.disks:
            if disk.disk_id == disk_id:
                return disk
        raise KeyError(f"VM {self.id} has no disk {disk_id}")

    def to_xml(self) -> str:
        disks = "".join(
            f"<DISK><DISK_ID>{d.disk_id}</DISK_ID><TYPE>{escape(d.type)}</TYPE>"
            f"<SOURCE>{escape(d.source)}</SOURCE><TM_MAD>{escape(d.tm_mad)}</TM_MAD>"
            f"<DATASTORE_ID>{'' if d.ds_id is None else d.ds_id}</DATASTORE_ID>"
            f"<CLONE>{'YES' if d.clone else 'NO'}</CLONE><SAVE>{'YES' if d.save else 'NO'}</SAVE>"
            f"<PERSISTENT>{'YES' if d.persistent else 'NO'}</PERSISTENT>"
            f"<SIZE>{d.size_mb}</SIZE><FORMAT>{escape(d.format)}</FORMAT>"
            + (f"<FS>{escape(d.fs)}</FS>" if d.fs else "") + "</DISK>"
            for d in self.disks
        )
        return (
            f"<VM><ID>{self.id}</ID><NAME>{escape(self.name)}</NAME><TEMPLATE>{disks}</TEMPLATE>"
            f"<HISTORY_RECORDS><HISTORY><HOSTNAME>{escape(self.host or '')}</HOSTNAME>"
            f"<DS_ID>{'' if self.ds_id is None else self.ds_id}</DS_ID></HISTORY></HISTORY_RECORDS></VM>"
        )
