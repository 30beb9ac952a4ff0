"""Front-end driver configuration: a YAML file named by ``GFS2CLVM_CONF``.

Default path ``/etc/one/gfs2clvm.conf``.  Every key is optional; see
docs/driver.md for their meaning.  Per-datastore overrides live under
``datastores: {<dsid>: {key: value}}`` and win over the top-level keys for the
actions of that datastore.
"""

import os
import socket

from .core import DriverError

DEFAULT_PATH = "/etc/one/gfs2clvm.conf"

DEFAULTS = {
    "salt_ssh": "/usr/bin/salt-ssh",
    "saltfile": "/etc/one/gfs2clvm/Saltfile",
    "saltssh_socket": "/run/gfs2clvm-saltssh.sock",  # the gfs2clvm-saltssh service ("": always the CLI)
    "vg": "vg_cloudstorage",
    "user": "oneadmin",
    "oned_user": "oneadmin",  # the front-end account oned (so the driver's salt-ssh) runs as
    "timeout": 900,
    "monitor_timeout": 240,  # a datastore monitor run ends within this (oned's interval is 300 s)
    "max_calls_per_host": 8,  # salt-ssh calls + data streams to one worker at once (0: no limit)
    "queue_timeout": 3600,  # seconds a call waits for one of them (not part of timeout)
    "mountpoint": "/var/lib/one",
    "mount_check": "gfs2",
    "datastores_dir": None,  # default: <mountpoint>/datastores
    "frontend_hosts": None,  # default: this host's names
    "bridge_list": [],  # workers for image actions when the datastore has no BRIDGE_LIST (3.2)
    "safe_dirs": ["/var/tmp"],  # 3.2 image driver (no datastore XML there)
    "restricted_dirs": ["/etc"],
    "ssh": "/usr/bin/ssh",
    "ssh_options": [],
    "oneimage": "oneimage",
    "onevm": "onevm",  # mkimage reads the VM's DISK/FS with `onevm show -x` (as fs_lvm/mkimage does); TM restore: the VM
    "onedatastore": "onedatastore",
    "one_remotes": None,  # OpenNebula's remotes (backup datastore drivers, downloader.sh);
    # default: $ONE_LOCATION/var/remotes, else /var/lib/one/remotes
    "context_max_bytes": 1024 * 1024,
    "default_size_mb": 1024,
    "datastores": {},
}

INT_KEYS = ("timeout", "monitor_timeout", "max_calls_per_host", "queue_timeout", "context_max_bytes", "default_size_mb")


class Config:
    """Merged configuration; ``for_ds(dsid)`` applies that datastore's overrides."""

    def __init__(self, values, path=None):
        self.path = path
        self._values = dict(values)

    def __getitem__(self, key):
        return self._values[key]

    def get(self, key, default=None):
        return self._values.get(key, default)

    @property
    def datastores_dir(self):
        return self._values.get("datastores_dir") or os.path.join(
            self._values["mountpoint"], "datastores"
        )

    @property
    def frontend_hosts(self):
        hosts = self._values.get("frontend_hosts")
        if hosts:
            return set(hosts)
        return {socket.gethostname(), socket.getfqdn()}

    def roster_hosts(self):
        """Host ids of the driver's salt-ssh roster (Saltfile -> config_dir -> roster)."""
        import yaml

        try:
            with open(self._values["saltfile"], encoding="utf-8") as handle:
                saltfile = yaml.safe_load(handle) or {}
            config_dir = saltfile["salt-ssh"]["config_dir"]
            master_path = os.path.join(config_dir, "master")
            master = {}
            if os.path.exists(master_path):
                with open(master_path, encoding="utf-8") as handle:
                    master = yaml.safe_load(handle) or {}
            with open(master.get("roster_file") or os.path.join(config_dir, "roster"), encoding="utf-8") as handle:
                roster = yaml.safe_load(handle) or {}
        except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError):
            return []
        return sorted(str(h) for h in roster) if isinstance(roster, dict) else []

    def worker_for(self, host):
        """``host`` itself, or -- when it is the front-end (a stopped VM's disks) -- a
        worker: the first of ``bridge_list``, else the first host of the roster."""
        if host not in self.frontend_hosts:
            return host
        workers = self._values.get("bridge_list") or self.roster_hosts()
        if not workers:
            raise DriverError(
                f"{host} is the front-end: set bridge_list (no worker found in the salt-ssh roster)"
            )
        return workers[0]

    def for_ds(self, dsid):
        """A Config with the overrides of datastore ``dsid`` applied."""
        overrides = (self._values.get("datastores") or {}).get(str(dsid)) or (
            self._values.get("datastores") or {}
        ).get(_int_or_none(dsid)) or {}
        if not isinstance(overrides, dict):
            raise DriverError(f"config {self.path}: datastores.{dsid} must be a mapping")
        merged = dict(self._values)
        merged.update(overrides)
        return Config(_check(merged, self.path), self.path)


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _check(values, path):
    for key in INT_KEYS:
        try:
            values[key] = int(values[key])
        except (TypeError, ValueError):
            raise DriverError(f"config {path}: {key} must be an integer") from None
    for key in ("bridge_list", "safe_dirs", "restricted_dirs", "ssh_options"):
        if isinstance(values.get(key), str):
            values[key] = values[key].split()
        if not isinstance(values.get(key) or [], list):
            raise DriverError(f"config {path}: {key} must be a list")
        values[key] = [str(v) for v in values.get(key) or []]
    if values.get("frontend_hosts") and isinstance(values["frontend_hosts"], str):
        values["frontend_hosts"] = values["frontend_hosts"].split()
    return values


def load(path=None):
    """Read the configuration file (``GFS2CLVM_CONF`` or the default path)."""
    path = path or os.environ.get("GFS2CLVM_CONF") or DEFAULT_PATH
    values = dict(DEFAULTS)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        raise DriverError(f"driver configuration {path} not found (set GFS2CLVM_CONF)") from None
    except OSError as err:
        raise DriverError(f"cannot read driver configuration {path}: {err.strerror}") from None
    try:
        import yaml  # the front-end has salt-ssh, hence PyYAML

        data = yaml.safe_load(text) or {}
    except Exception as err:  # noqa: BLE001 -- yaml errors have many types
        raise DriverError(f"driver configuration {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise DriverError(f"driver configuration {path} must be a YAML mapping")
    unknown = sorted(set(data) - set(DEFAULTS))
    if unknown:
        raise DriverError(f"driver configuration {path}: unknown key(s) {', '.join(unknown)}")
    values.update({k: v for k, v in data.items() if v is not None})
    return Config(_check(values, path), path)
