# SPDX-License-Identifier: Apache-2.0
"""A small oned: for each user action, the driver calls OpenNebula makes.

The sequences follow OpenNebula's sources (7.x, ``src/tm/TransferManager.cc``,
``src/lcm/LifeCycleActions.cc``/``LifeCycleStates.cc``, ``src/vmm/VirtualMachineManager.cc``,
``src/vmm_mad/exec/one_vmm_exec.rb``, ``src/image/ImageManagerActions.cc``):

=====================  =======================================================================
user action            driver calls (in order)
=====================  =======================================================================
instantiate (deploy)   prolog: per disk CLONE|LN|MKSWAP|MKIMAGE; VMM deploy: CONTEXT, boot
terminate              VMM shutdown; epilog: per disk MVDS (SAVE=YES) or DELETE, DELETE vmdir
terminate --hard       VMM cancel; epilog (as above)
recover --delete       VMM cleanup: cancel, per disk DELETE, DELETE vmdir (no_fail each)
recover --recreate     VMM cleanup (as delete), then a new prolog + deploy, same VM id
reboot / poweroff      VMM only, no transfer
suspend                VMM save (checkpoint in the VM dir), no transfer
resume (suspended)     VMM restore: CONTEXT, restore
migrate (cold)         VMM save; prolog_migr: per disk MV, MV vmdir; VMM restore: CONTEXT, restore
migrate --live         VMM migrate: PREMIGRATE, migrate, POSTMIGRATE (FAILMIGRATE on failure)
stop                   VMM save; epilog_stop: per disk MV host->fe, MV vmdir host->fe
resume (stopped)       prolog_resume: per disk MV fe->host, MV vmdir fe->host; VMM restore
disk-saveas            image allocate: datastore MKFS; then CPDS host:disk SOURCE snapid
image create --path    datastore STAT, datastore CP   (prints SOURCE FORMAT)
image create (empty)   datastore MKFS                 (prints SOURCE)
image delete           datastore RM
datastore monitoring   datastore MONITOR; system DS: tm MONITOR (+ MONITOR_VM to onemonitord)
=====================  =======================================================================

The hypervisor side (what the KVM driver does between the transfers) is a
separate object, so unit tests run with :class:`NullHypervisor` and the lab
with :class:`onesim.lab.SshHypervisor`.
"""
from __future__ import annotations

import base64
import re
import socket
from pathlib import Path

from .driver import DriverError, DriverRunner
from .model import VM, Datastore, Disk, Host, Image, State

IMAGE_LV_RE = re.compile(r"lv-oneimg-[0-9a-f]{32}")


class NullHypervisor:
    """Records what the VMM driver would do; touches nothing."""

    def __init__(self):
        self.events: list[tuple] = []

    def deploy(self, vm, host):
        self.events.append(("deploy", vm.id, host))

    def shutdown(self, vm):
        self.events.append(("shutdown", vm.id, vm.host))

    def cancel(self, vm):
        self.events.append(("cancel", vm.id, vm.host))

    def reboot(self, vm):
        self.events.append(("reboot", vm.id, vm.host))

    def save(self, vm):
        self.events.append(("save", vm.id, vm.host))
        return b""

    def restore(self, vm, host):
        self.events.append(("restore", vm.id, host))

    def migrate(self, vm, src, dst):
        self.events.append(("migrate", vm.id, src, dst))

    def write(self, vm, disk_id, offset, data):
        self.events.append(("write", vm.id, disk_id, offset, len(data)))

    def close(self):
        pass


class SimError(RuntimeError):
    """A user action in a state oned would refuse."""


class Oned:
    """The state oned keeps and the driver calls it makes.

    ``fe_host`` is oned's own hostname (``fe:SOURCE``, stop/resume moves);
    ``fe_dir`` is where the simulated front-end keeps ``vms/<id>/context.sh``.
    """

    def __init__(self, driver: DriverRunner, hypervisor=None, *, hosts=(), fe_host=None, fe_dir=None,
                 ds_location="/var/lib/one//datastores", system_ds=0, image_ds=1,
                 tm_mad="gfs2clvm", ds_mad="gfs2clvm", ds_template=None, image_ds_template=None,
                 first_vm_id=0, first_image_id=0):
        self.driver = driver
        self.hv = hypervisor if hypervisor is not None else NullHypervisor()
        self.hosts = {h: Host(h) for h in hosts}
        self.fe_host = fe_host or socket.gethostname()
        self.fe_dir = Path(fe_dir) if fe_dir is not None else Path("/var/lib/one")
        self.ds_location = ds_location
        template = dict(ds_template or {})
        self.datastores = {
            system_ds: Datastore(system_ds, "system", "SYSTEM_DS", ds_mad="-", tm_mad=tm_mad,
                                 base_path=f"{ds_location}/{system_ds}", template=dict(template)),
            image_ds: Datastore(image_ds, "images", "IMAGE_DS", ds_mad=ds_mad, tm_mad=tm_mad,
                                base_path=f"{ds_location}/{image_ds}",
                                template={"DISK_TYPE": "BLOCK", **template, **(image_ds_template or {})}),
        }
        self.system_ds = system_ds
        self.image_ds = image_ds
        self.images: dict[int, Image] = {}
        self.vms: dict[int, VM] = {}
        self._next_vm = first_vm_id
        self._next_image = first_image_id
        self._next_request = 1000  # SyncRequest ids: never an image's (kept apart on purpose)
        self.monitord = None  # a onesim.monitord.Monitord: MONITOR_VM messages of the TM monitor
        self.disk_sizes: dict[int, dict[int, int]] = {}  # VM id -> disk id -> MB (DISK_SIZE)
        self._onevm_dir = self._install_onevm()

    def _install_onevm(self) -> Path:
        """An ``onevm`` on the drivers' PATH answering ``onevm show -x <id>`` with the VM as
        oned would (mkimage reads DISK/FS that way, like fs_lvm/mkimage:62-67)."""
        import os
        import sys
        import tempfile

        bindir = Path(tempfile.mkdtemp(prefix="onesim-onevm-"))
        script = bindir / "onevm"
        script.write_text(
            f"#!{sys.executable}\n"
            "import os, sys\n"
            "path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'vm-%s.xml' % sys.argv[-1])\n"
            "if sys.argv[1:3] != ['show', '-x'] or not os.path.exists(path):\n"
            "    sys.stderr.write('[one.vm.info] Error getting virtual machine [%s].\\n' % sys.argv[-1])\n"
            "    sys.exit(255)\n"
            "sys.stdout.write(open(path).read())\n")
        script.chmod(0o755)
        if self.driver is None:  # a model without a driver (listing the matrix's steps)
            return bindir
        env = self.driver.env
        env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', os.defpath)}"
        return bindir

    def _publish(self, vm: VM):
        """What ``onevm show -x`` prints for ``vm`` from now on."""
        (self._onevm_dir / f"vm-{vm.id}.xml").write_text(vm.to_xml())

    # ------------------------------------------------------------------ helpers
    def _request_id(self) -> int:
        self._next_request += 1
        return self._next_request

    def system_dir(self, vm: VM, previous=False) -> str:
        """``History::vm_rhome``: ``<ds_location>/<sysds>/<vmid>``."""
        ds_id = vm.prev_ds_id if previous else vm.ds_id
        return f"{self.ds_location}/{ds_id}/{vm.id}"

    def _vm_tm_mad(self, vm: VM) -> str:
        return self.datastores[vm.ds_id].tm_mad

    def _disk_tm(self, vm: VM, disk: Disk) -> tuple[str, int]:
        """TM_MAD and datastore id oned uses for a disk's MV/DELETE (volatile: the system DS's)."""
        if disk.volatile:
            return self._vm_tm_mad(vm), vm.ds_id
        return disk.tm_mad, disk.ds_id

    def _state(self, vm: VM, *allowed: State):
        if vm.state not in allowed:
            names = "/".join(s.value for s in allowed)
            raise SimError(f"VM {vm.id} is {vm.state.value}, the action needs {names}")

    def _vm_b64(self, vm: VM) -> bytes:
        return base64.b64encode(vm.to_xml().encode())

    # ------------------------------------------------------------------ images
    def image_create(self, name, *, path="", size_mb=None, type="OS", persistent=False, fs="",
                     ds_id=None, content=None) -> Image:
        """``oneimage create``: STAT + CP with a PATH, MKFS without."""
        ds = self.datastores[self.image_ds if ds_id is None else ds_id]
        img = Image(self._next_image, name, ds.id, type=type, persistent=persistent,
                    size_mb=size_mb or 0, path=path, fs=fs, content=content)
        self._next_image += 1
        self.images[img.id] = img
        try:
            if path:
                # ImageManagerActions.cc:1017-1032,1041-1045 (stat_image): <IMAGE> holds PATH and
                # SIZE only, and the id is a SyncRequest's (sr.id), not the image's: the image
                # is allocated only after STAT answered (ImageAPI.cc:840-866)
                stat_xml = f"<IMAGE><PATH>{_esc(path)}</PATH><SIZE>{size_mb or ''}</SIZE></IMAGE>"
                call = self.driver.ds(ds.ds_mad, "stat", self._request_id(), _action_data(stat_xml, ds.to_xml()),
                                      check=False)
                if not call.ok:
                    # src/image/ImageManagerProtocol.cc:39-56 passes the reason to the request;
                    # src/rm/api/ImageAPI.cc:851-855 (release-7.4.0): the allocate call fails
                    # with "Cannot parse image SIZE: <reason>" and no image is made
                    img.error = f"Cannot parse image SIZE: {call.reason()}"
                    raise DriverError(call)
                img.size_mb = _stat_size(call.stdout)
                call = self.driver.ds(ds.ds_mad, "cp", img.id, _action_data(img.to_xml(), ds.to_xml()),
                                      check=False)
                if not call.ok:
                    img.error = _copy_error(call)
                    raise DriverError(call)
                img.source, img.format = _source_format(call.stdout)
            else:
                call = self.driver.ds(ds.ds_mad, "mkfs", img.id, _action_data(img.to_xml(), ds.to_xml()),
                                      check=False)
                if not call.ok:
                    img.error = _copy_error(call)
                    raise DriverError(call)
                img.source = _mkfs_source(call.stdout)
        except (DriverError, SimError):  # a payload oned cannot use fails the image too
            img.state = "ERROR"
            raise
        img.state = "READY"
        return img

    # ------------------------------------------------------------------ monitoring
    def monitor_datastore(self, ds_id: int, vm_disks=True) -> dict:
        """oned's datastore monitoring, ImageManager::monitor_datastore (ImageManager.cc:178-261):
        the action data is ``<DATASTORE/>`` (+ for a shared system datastore
        ``<DATASTORE_LOCATION/>`` and ``<MONITOR_VM_DISKS>``); one_datastore.rb:158-161,211-231
        runs ``datastore/<DS_MAD>/monitor <id>`` (a system datastore: ``tm/<TM_MAD>/monitor
        <id>``) with it on stdin and sends stdout base64-encoded; ImageManagerProtocol.cc:
        603-636 parses it as a template and keeps TOTAL_MB/FREE_MB/USED_MB.  With a
        :class:`onesim.monitord.Monitord` attached, the MONITOR_VM message the TM monitor sent
        is read as onemonitord reads it and its DISK_SIZEs kept in ``disk_sizes``."""
        ds = self.datastores[ds_id]
        extra = ""
        if ds.type == "SYSTEM_DS":
            extra = f"<DATASTORE_LOCATION>{_esc(self.ds_location)}</DATASTORE_LOCATION>"
            extra += f"<MONITOR_VM_DISKS>{1 if vm_disks else 0}</MONITOR_VM_DISKS>"
        data = _action_data("", ds.to_xml(), extra)
        if ds.type == "SYSTEM_DS":
            self.driver.tm(ds.tm_mad, "monitor", [ds.id], stdin=base64.b64encode(data.encode()))
        else:
            self.driver.ds(ds.ds_mad, "monitor", ds.id, data)
        stdout = self.driver.calls[-1].stdout
        usage = _template_numbers(stdout)
        missing = [k for k in ("TOTAL_MB", "FREE_MB", "USED_MB") if k not in usage]
        if missing:
            raise SimError(f"datastore {ds_id} monitor: no {', '.join(missing)} in {stdout!r:.200}")
        ds.monitor = {k: usage[k] for k in ("TOTAL_MB", "FREE_MB", "USED_MB")}
        if ds.type == "SYSTEM_DS" and vm_disks and self.monitord is not None:
            for vmid, disks in self.monitord.receive().items():
                self.disk_sizes.setdefault(vmid, {}).update(disks)
        return ds.monitor

    def image_delete(self, img: Image):
        """``oneimage delete``: datastore RM."""
        ds = self.datastores[img.ds_id]
        self.driver.ds(ds.ds_mad, "rm", img.id, _action_data(img.to_xml(), ds.to_xml()))
        img.state = "DELETED"

    # ------------------------------------------------------------------ VMs
    def vm_create(self, name, disks, context=None) -> VM:
        """``onetemplate instantiate`` (allocation only). ``disks``: dicts with ``image`` or
        ``type`` SWAP/FS and ``size_mb`` (and ``format`` for FS)."""
        vm_disks = []
        for disk_id, spec in enumerate(disks):
            if "image" in spec:
                img = spec["image"]
                if img.state != "READY":
                    raise SimError(f"image {img.id} is {img.state}")
                ds = self.datastores[img.ds_id]
                disk = Disk(disk_id, type=ds.template.get("DISK_TYPE", "BLOCK"), image_id=img.id,
                            source=img.source, tm_mad=ds.tm_mad, ds_id=ds.id,
                            clone=not img.persistent, save=img.persistent, persistent=img.persistent,
                            size_mb=img.size_mb, format=img.format)
                if img.content is not None:
                    disk.content = img.content if img.persistent else bytearray(img.content)
            else:
                disk = Disk(disk_id, type=spec["type"], size_mb=spec["size_mb"],
                            format=spec.get("format", "raw"), fs=spec.get("fs", ""), clone=False)
            vm_disks.append(disk)
        vm = VM(self._next_vm, name, vm_disks, context=context)
        self._next_vm += 1
        self.vms[vm.id] = vm
        return vm

    def deploy(self, vm: VM, host: str):
        """``onevm deploy`` of a PENDING VM: prolog, then the VMM deploy (CONTEXT, boot)."""
        self._state(vm, State.PENDING)
        vm.prev_host, vm.prev_ds_id = vm.host, vm.ds_id
        vm.host, vm.ds_id = host, self.system_ds
        self._transfer(vm, self._prolog(vm))
        self._vmm_boot(vm, restore=False)

    def instantiate(self, name, disks, host, context=None) -> VM:
        vm = self.vm_create(name, disks, context)
        self.deploy(vm, host)
        return vm

    def reboot(self, vm: VM):
        self._state(vm, State.RUNNING)
        self.hv.reboot(vm)

    def poweroff(self, vm: VM):
        self._state(vm, State.RUNNING)
        self.hv.shutdown(vm)
        vm.state = State.POWEROFF

    def suspend(self, vm: VM):
        """``onevm suspend``: VMM save to ``<vmdir>/checkpoint``; no transfer."""
        self._state(vm, State.RUNNING)
        vm.checkpoint = self.hv.save(vm)
        vm.state = State.SUSPENDED

    def resume(self, vm: VM, host: str | None = None):
        """``onevm resume``: SUSPENDED → restore; POWEROFF → deploy; STOPPED → prolog_resume + restore."""
        self._state(vm, State.SUSPENDED, State.POWEROFF, State.STOPPED)
        if vm.state is State.SUSPENDED:
            self._vmm_boot(vm, restore=True)
        elif vm.state is State.POWEROFF:
            self._vmm_boot(vm, restore=False)
        else:
            # RESUME from STOPPED: back to PENDING, the scheduler picks a host, prolog_resume.
            vm.prev_host, vm.prev_ds_id = vm.host, vm.ds_id
            vm.host, vm.ds_id = host or vm.host, self.system_ds
            self._transfer(vm, self._moves(vm, f"{self.fe_host}", vm.host, previous_dir=True))
            self._vmm_boot(vm, restore=True)

    def migrate(self, vm: VM, dst: str):
        """``onevm migrate`` (cold, save type): save, prolog_migr, restore on ``dst``."""
        self._state(vm, State.RUNNING)
        vm.checkpoint = self.hv.save(vm)
        vm.state = State.SUSPENDED
        vm.prev_host, vm.prev_ds_id = vm.host, vm.ds_id
        vm.host, vm.ds_id = dst, self.system_ds
        self._transfer(vm, self._moves(vm, vm.prev_host, dst, previous_dir=True))
        self._vmm_boot(vm, restore=True)

    def live_migrate(self, vm: VM, dst: str):
        """``onevm migrate --live``: PREMIGRATE, VMM migrate, POSTMIGRATE (FAILMIGRATE on failure)."""
        self._state(vm, State.RUNNING)
        src = vm.host
        vm.prev_host, vm.prev_ds_id = src, vm.ds_id
        vm.host = dst
        args = [src, dst, self.system_dir(vm), vm.id, vm.ds_id]
        tm_mad = self._vm_tm_mad(vm)
        stdin = self._vm_b64(vm)
        try:
            self.driver.tm(tm_mad, "premigrate", args, stdin)
        except DriverError:
            self.driver.tm(tm_mad, "failmigrate", args, stdin, check=False)
            vm.host = src
            raise
        try:
            self.hv.migrate(vm, src, dst)
        except Exception:
            self.driver.tm(tm_mad, "failmigrate", args, stdin, check=False)
            vm.host = src
            raise
        # POSTMIGRATE is :no_fail (src/vmm_mad/exec/one_vmm_exec.rb:664-670, release-7.4.0;
        # execute_steps 282-292): its failure is only logged, the migration succeeds and the
        # VM runs on dst -- the driver must leave it usable there.
        call = self.driver.tm(tm_mad, "postmigrate", args, stdin, check=False)
        if not call.ok:
            vm.log.append(f"Failed to execute transfer manager driver operation: tm_postmigrate. "
                          f"{call.reason()}")

    def stop(self, vm: VM):
        """``onevm stop``: save, then epilog_stop moves disks and dir to the front-end."""
        self._state(vm, State.RUNNING)
        vm.checkpoint = self.hv.save(vm)
        vm.state = State.SUSPENDED
        self._transfer(vm, self._moves(vm, vm.host, self.fe_host, previous_dir=False, to_fe=True))
        vm.state = State.STOPPED

    def terminate(self, vm: VM, hard=False):
        """``onevm terminate [--hard]`` (3.2: shutdown / cancel): VMM shutdown|cancel, epilog."""
        self._state(vm, State.RUNNING, State.SUSPENDED, State.POWEROFF, State.STOPPED)
        local = vm.state is State.STOPPED
        if vm.state is State.RUNNING:
            (self.hv.cancel if hard else self.hv.shutdown)(vm)
        self._transfer(vm, self._epilog(vm, local))
        vm.state = State.DONE

    def delete(self, vm: VM):
        """``onevm recover --delete`` (3.2: delete): VMM cleanup with the epilog_delete lines."""
        self._state(vm, State.RUNNING, State.SUSPENDED, State.POWEROFF, State.STOPPED, State.FAILURE)
        try:
            self._cleanup(vm)
        finally:
            vm.state = State.DONE  # oned disposes of the VM whatever the cleanup said

    def resubmit(self, vm: VM, host: str | None = None):
        """``onevm recover --recreate`` (3.2: resubmit): cleanup, then a fresh prolog + deploy."""
        self._state(vm, State.RUNNING, State.SUSPENDED, State.POWEROFF, State.FAILURE)
        self._cleanup(vm)
        for disk in vm.disks:  # non-persistent disks start again from their image
            if disk.image_id is not None and not disk.persistent:
                img = self.images[disk.image_id]
                disk.content = None if img.content is None else bytearray(img.content)
        vm.state = State.PENDING
        self.deploy(vm, host or vm.host)

    def disk_saveas(self, vm: VM, disk_id: int, name: str, snap_id: int = -1) -> Image:
        """``onevm disk-saveas``: the new image's MKFS, then CPDS from the VM's disk."""
        self._state(vm, State.RUNNING, State.SUSPENDED, State.POWEROFF, State.STOPPED)
        disk = vm.disk(disk_id)
        img = self.image_create(name, size_mb=disk.size_mb, type="OS")  # is_saving → MKFS
        img.template.update({"SAVED_VM_ID": vm.id, "SAVED_DISK_ID": disk_id})
        host = self.fe_host if vm.state is State.STOPPED else vm.host
        tm_mad, ds_id = self._disk_tm(vm, disk)
        try:
            self.driver.tm(tm_mad, "cpds",
                           [f"{host}:{self.system_dir(vm)}/disk.{disk_id}", img.source, snap_id, vm.id, ds_id])
        except DriverError:
            img.state = "ERROR"
            raise
        img.content = None if disk.content is None else bytearray(disk.content)
        return img

    def guest_write(self, vm: VM, disk_id: int, offset: int, data: bytes):
        """What the guest OS does: write ``data`` to its disk (keeps the expected bytes in step)."""
        self._state(vm, State.RUNNING)
        self.hv.write(vm, disk_id, offset, data)
        disk = vm.disk(disk_id)
        if disk.content is not None:
            end = offset + len(data)
            if end > len(disk.content):
                disk.content.extend(bytes(end - len(disk.content)))
            disk.content[offset:end] = data

    # ------------------------------------------------------------------ transfer scripts
    def _transfer(self, vm: VM, lines):
        """Run a transfer script: stop at the first failure (one_tm.rb action_transfer)."""
        self._publish(vm)
        for tm_mad, action, args in lines:
            try:
                self.driver.tm(tm_mad, action, args)
            except DriverError:
                vm.state = State.FAILURE
                raise

    def _prolog(self, vm: VM):
        """``TransferManager::prolog_transfer_command`` for each disk."""
        host, sysdir = vm.host, self.system_dir(vm)
        lines = []
        for disk in vm.disks:
            dst = f"{host}:{sysdir}/disk.{disk.disk_id}"
            if disk.type == "SWAP":
                lines.append((self._vm_tm_mad(vm), "mkswap", [disk.size_mb, dst, vm.id, vm.ds_id]))
            elif disk.type == "FS":
                lines.append((self._vm_tm_mad(vm), "mkimage",
                              [disk.size_mb, disk.format, dst, vm.id, vm.ds_id]))
            else:
                src = disk.source if ":" in disk.source else f"{self.fe_host}:{disk.source}"
                lines.append((disk.tm_mad, "clone" if disk.clone else "ln", [src, dst, vm.id, disk.ds_id]))
        return lines

    def _moves(self, vm: VM, src_host: str, dst_host: str, previous_dir: bool, to_fe=False):
        """prolog_migr / prolog_resume / epilog_stop: per disk MV, then MV of the VM dir."""
        src_dir = self.system_dir(vm, previous=previous_dir)
        dst_dir = self.system_dir(vm)
        lines = []
        for disk in vm.disks:
            tm_mad, ds_id = self._disk_tm(vm, disk)
            lines.append((tm_mad, "mv", [f"{src_host}:{src_dir}/disk.{disk.disk_id}",
                                         f"{dst_host}:{dst_dir}/disk.{disk.disk_id}", vm.id, ds_id]))
        lines.append((self._vm_tm_mad(vm), "mv", [f"{src_host}:{src_dir}", f"{dst_host}:{dst_dir}",
                                                  vm.id, vm.ds_id]))
        return lines

    def _epilog(self, vm: VM, local: bool):
        """``TransferManager::trigger_epilog``: MVDS for SAVE=YES disks, DELETE for the rest, DELETE dir."""
        host = self.fe_host if local else vm.host
        sysdir = self.system_dir(vm)
        lines = []
        for disk in vm.disks:
            path = f"{host}:{sysdir}/disk.{disk.disk_id}"
            if disk.save:
                lines.append((disk.tm_mad, "mvds", [path, disk.source, vm.id, disk.ds_id]))
            else:
                tm_mad, ds_id = self._disk_tm(vm, disk)
                lines.append((tm_mad, "delete", [path, vm.id, ds_id]))
        lines.append((self._vm_tm_mad(vm), "delete", [f"{host}:{sysdir}", vm.id, vm.ds_id]))
        return lines

    def _epilog_delete(self, vm: VM, local: bool):
        """``TransferManager::epilog_delete_commands``: DELETE every disk, then the dir."""
        host = self.fe_host if local else vm.host
        sysdir = self.system_dir(vm)
        lines = []
        for disk in vm.disks:
            tm_mad, ds_id = self._disk_tm(vm, disk)
            lines.append((tm_mad, "delete", [f"{host}:{sysdir}/disk.{disk.disk_id}", vm.id, ds_id]))
        lines.append((self._vm_tm_mad(vm), "delete", [f"{host}:{sysdir}", vm.id, vm.ds_id]))
        return lines

    def _cleanup(self, vm: VM):
        """``LifeCycleManager::clean_up_vm``: STOPPED → TM epilog_delete (local); otherwise the
        VMM cleanup action: cancel the VM, then each DELETE line with ``:no_fail``."""
        if vm.state is State.STOPPED:
            self._transfer(vm, self._epilog_delete(vm, local=True))
            return
        if vm.state is State.RUNNING:
            self.hv.cancel(vm)
        failed = []
        for tm_mad, action, args in self._epilog_delete(vm, local=False):
            call = self.driver.tm(tm_mad, action, args, check=False)
            if not call.ok:
                failed.append(call)
        if failed:
            raise DriverError(failed[0])

    def _vmm_boot(self, vm: VM, restore: bool):
        """VMM deploy/restore: the CONTEXT transfer (do_context_command), then boot or restore."""
        if vm.context is not None:
            ctx = self._write_context_file(vm)
            dst = f"{vm.host}:{self.system_dir(vm)}/disk.{vm.context_disk_id}"
            try:
                self.driver.tm(self._vm_tm_mad(vm), "context", [ctx, dst, vm.id, vm.ds_id])
            except DriverError:
                vm.state = State.FAILURE
                raise
        if restore:
            self.hv.restore(vm, vm.host)
        else:
            self.hv.deploy(vm, vm.host)
        vm.state = State.RUNNING

    def _write_context_file(self, vm: VM) -> str:
        """oned's ``vms/<id>/context.sh`` on the front-end (VirtualMachine::generate_context)."""
        path = self.fe_dir / "vms" / str(vm.id) / "context.sh"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = ["# Context variables generated by OpenNebula"]
        for key, value in sorted(vm.context.items()):
            body.append(f"{key}='{str(value).replace(chr(39), chr(39) + chr(92) + chr(39) + chr(39))}'")
        path.write_text("\n".join(body) + "\n")
        return str(path)


def _copy_error(call) -> str:
    """An image's ERROR after a failed CP/MKFS (ImageManagerProtocol.cc:131-143, release-7.4.0)."""
    info = call.reason()
    return "Error copying image in the datastore" + (f": {info}" if info and info[0] != "-" else "")


def _esc(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text)


def _action_data(*parts: str) -> str:
    return "<DS_DRIVER_ACTION_DATA>" + "".join(parts) + "</DS_DRIVER_ACTION_DATA>"


def _first_token(stdout: str, what: str) -> str:
    tokens = stdout.split()
    if not tokens:
        raise SimError(f"datastore {what} printed nothing")
    return tokens[0]


def _payload(stdout: str, what: str) -> str:
    """What oned receives of a datastore action's stdout: one_datastore.rb:231 sends it
    whole in ``send_message`` (DriverExecHelper.rb:121, ``puts "ACTION RESULT ID INFO"``),
    and oned reads its driver's messages line by line, so the payload is the first line
    and any further line would reach oned as a message of its own (a protocol error)."""
    lines = stdout.split("\n")
    if len(lines) > 1 and any(line.strip() for line in lines[1:]):
        raise SimError(f"datastore {what} printed more than one line: {stdout!r:.200}")
    return lines[0]


def _stat_size(stdout: str) -> int:
    """ImageAPI.cc:855-866: ``istringstream >> size_mb`` of STAT's payload."""
    payload = _payload(stdout, "stat")
    match = re.match(r"\s*[-+]?\d+", payload)
    if not match:
        raise SimError(f"Cannot parse image SIZE: {payload}")
    return int(match.group(0))


def _mkfs_source(stdout: str) -> str:
    """ImageManagerProtocol.cc:272,312: the whole payload of MKFS is the SOURCE."""
    source = _payload(stdout, "mkfs")
    if not source:
        raise SimError("datastore mkfs printed nothing")
    return source


def _template_numbers(text: str) -> dict:
    """``KEY=number`` attributes of a template text (Template::parse; Template::get(float))."""
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"^\s*([A-Z_]+)\s*=\s*\"?([-+]?\d+(?:\.\d+)?)\"?\s*$", text, re.M)}


def _first_int(stdout: str, what: str) -> int:
    token = _first_token(stdout, what)
    try:
        return int(float(token))
    except ValueError as err:
        raise SimError(f"datastore {what} printed {token!r}, not a size in MB") from err


def _source_format(stdout: str) -> tuple[str, str]:
    """ImageManagerProtocol.cc:99-116: ``is >> source; is >> format``; no FORMAT fails the
    image ("CP operation succeeded but image FORMAT was not returned.")."""
    tokens = _payload(stdout, "cp").split()
    if not tokens:
        raise SimError("datastore cp printed nothing")
    if len(tokens) < 2:
        raise SimError("CP operation succeeded but image FORMAT was not returned.")
    return tokens[0], tokens[1]


def image_lv(source: str) -> str | None:
    """The ``lv-oneimg-<hash>`` name inside an image SOURCE, if any."""
    match = IMAGE_LV_RE.search(source or "")
    return match.group(0) if match else None
