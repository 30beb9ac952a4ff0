# SPDX-License-Identifier: Apache-2.0
"""onesim: an oned simulator that drives the gfs2clvm driver executables, and the
seed's test matrix replayed against the qemu lab (``python -m onesim --lab-dir DIR``)."""
from .driver import Call, DriverError, DriverRunner
from .model import VM, Datastore, Disk, Host, Image, State
from .oned import NullHypervisor, Oned, SimError, image_lv

__all__ = [
    "Call", "DriverError", "DriverRunner", "VM", "Datastore", "Disk", "Host", "Image", "State",
    "NullHypervisor", "Oned", "SimError", "image_lv",
]
