# SPDX-License-Identifier: Apache-2.0
"""Issue #9 acceptance: a new operator, following docs/operations.md alone, makes this
host the front-end of the lab's workers and runs a VM's disks through the driver.

* §2.1: a salt-ssh the driver's user can run (here a venv of the system python3 that
  reuses .venv's packages: .venv lives under /root, which oneadmin cannot enter) and
  an account ``oneadmin`` on the front-end (created for the test when absent, with
  oneadmin's SSH key = the lab key, which the workers accept for oneadmin).
* §2.4: ``gfs2clvm.frontend`` applied for real (``salt-call --local``, as root) with a
  pillar made from pillar/gfs2clvm.sls: ``cluster:nodes`` = the lab's node1/node2 with
  ``ssh_host: 127.0.0.1`` and ``ssh_port`` = the lab ports, ``frontend:enroll`` on, and
  every front-end path relocated into a throw-away directory (no /etc/one, no
  /var/lib/one on this host).  The package state is excluded (no package manager here).
  The workers were configured by the lab's own worker highstate; it is not re-applied.
* §3: what the operator checks afterwards: ``gfs2clvm-host list`` and ``check``, the
  roster entries, the host keys pinned by ssh-keyscan (compared with the keys the lab
  recorded when it booted the guests), and finally ``gfs2clvm-host remove``.
* §2.5: the oned.conf the formula wrote carries the block the docs quote.
* A VM's disks through the INSTALLED driver (``remotes/tm/gfs2clvm/*`` and the formula's
  gfs2clvm.conf), run as oneadmin as oned would: clone of an image volume, context,
  live migration node1 -> node2 (premigrate/postmigrate), delete; real state read with
  plain ssh (lvs, links under the GFS2 mount, which host has the LVs active), and
  nothing left behind.

Salt-ssh calls: 2 enrolments (a cold thin deploy each the first time), 2 checks, 1
datastore monitor (§2.5's images.ds template, read from the docs), 5 TM actions.
"""

import base64
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from test_lab_faults import files, lvs, make_image, root_cleanup, vm_ids

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "unit"))
from formula_render import salt_call  # noqa: E402

USER = "oneadmin"
THIN_DIR = "/var/tmp/.gfs2clvm_salt"  # the formula's default frontend:thin_dir
SET_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SYSDS = 0
ONED_CONF = """TM_MAD = [
    EXECUTABLE = "one_tm",
    ARGUMENTS = "-t 15 -d dummy,lvm,shared,fs_lvm,ssh"
]

DATASTORE_MAD = [
    EXECUTABLE = "one_datastore",
    ARGUMENTS  = "-t 15 -d dummy,fs,lvm -s shared,ssh,fs_lvm"
]
"""


def _attrs(text):
    """{NAME: {key: value}} of the TM_MAD_CONF / DS_MAD_CONF vectors in ``text``."""
    out = {}
    for kind, body in re.findall(r"^(TM_MAD_CONF|DS_MAD_CONF)\s*=\s*\[(.*?)\]", text, re.S | re.M):
        out[kind] = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', body))
    return out


class FrontEnd:
    """This host as the operator's front-end, relocated under ``self.base``."""

    def __init__(self, lab):
        self.lab = lab
        self.base = Path(tempfile.mkdtemp(prefix="gfs2clvm-operator-", dir="/var/tmp"))
        self.base.chmod(0o755)  # oneadmin walks into it
        self.created_user = False
        self.home = self.base / "home"  # oneadmin's home (frontend formula: oneadmin:home)
        self.venv = self.base / "gfs2clvm-salt"  # §2.1's /opt/gfs2clvm-salt
        self.salt_ssh = self.venv / "bin" / "salt-ssh"
        self.python = self.venv / "bin" / "python3"
        self.remotes = self.base / "remotes"
        self.oned_conf = self.base / "etc-one" / "oned.conf"
        self.driver_conf = self.base / "etc-one" / "gfs2clvm.conf"
        self.salt_dir = self.base / "etc-one" / "gfs2clvm"
        self.roster = self.salt_dir / "roster"
        self.known_hosts = self.home / ".ssh" / "known_hosts"
        self.priv = self.home / ".ssh" / "id_ed25519"
        self.tool_dir = self.base / "usr-lib-gfs2clvm"
        self.tool = self.base / "bin" / "gfs2clvm-host"
        self.ports = {node: int((lab.dir / "vms" / f"{node}.port").read_text()) for node in lab.nodes}
        self.name = socket.gethostname()  # how oned names the front-end in its host:path arguments

    # -- §2.1 -----------------------------------------------------------------
    def prepare(self):
        try:
            pw = pwd.getpwnam(USER)
        except KeyError:
            subprocess.run(["useradd", "-r", "-U", "-M", "-d", str(self.home), "-s", "/bin/sh", USER], check=True)
            pw = pwd.getpwnam(USER)
            self.created_user = True
        else:
            if pw.pw_dir.startswith("/var/tmp/gfs2clvm-operator-"):  # left by an interrupted run of this test
                subprocess.run(["usermod", "-d", str(self.home), USER], check=True)
                self.created_user = True
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        # salt-ssh that oneadmin can run: the system python3 in a venv, with .venv's
        # packages (salt==3008.4 and its dependencies) on its path
        site = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        system = subprocess.run(["/usr/bin/python3", "-c", "import sys; print(f'python{sys.version_info[0]}."
                                 "{sys.version_info[1]}')"], capture_output=True, text=True, check=False)
        if system.stdout.strip() != site:
            pytest.fail(f"/usr/bin/python3 is {system.stdout.strip() or system.stderr.strip()!r}, .venv is {site}: "
                        "cannot make a salt-ssh oneadmin can run from .venv's packages", pytrace=False)
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(self.venv)], check=True)
        import salt  # noqa: PLC0415 -- where .venv's site-packages are

        (self.venv / "lib" / site / "site-packages" / "gfs2clvm-dev.pth").write_text(
            str(Path(salt.__file__).resolve().parents[1]) + "\n")
        self.salt_ssh.write_text(f"#!{self.python}\nimport sys\nfrom salt.scripts import salt_ssh\n"
                                 "sys.exit(salt_ssh())\n")
        self.salt_ssh.chmod(0o755)
        # oneadmin's home and SSH key (the key the workers accept for oneadmin)
        (self.home / ".ssh").mkdir(parents=True)
        shutil.copyfile(self.lab.key, self.priv)
        for path in (self.home, self.home / ".ssh", self.priv):
            os.chown(path, self.uid, self.gid)
        self.priv.chmod(0o600)
        (self.home / ".ssh").chmod(0o700)
        self.oned_conf.parent.mkdir()
        self.oned_conf.write_text(ONED_CONF)

    def pillar(self):
        """The override of pillar/gfs2clvm.sls (merged over it as the operator edits it)."""
        return {"gfs2clvm": {
            "cluster": {"name": "gfs2lab", "nodes": [
                {"name": node, "nodeid": i, "ring0_addr": f"169.254.77.{i}", "ssh_host": "127.0.0.1",
                 "ssh_port": self.ports[node]}
                for i, node in enumerate(self.lab.nodes, start=1)]},
            "lvm": {"creator": "node1", "pvs": ["/dev/vda"]},
            "vg": self.lab.vg,
            "mountpoint": self.lab.mountpoint,
            "oneadmin": {"home": str(self.home)},
            "frontend": {
                "enabled": True,
                "enroll": True,
                "salt_ssh": str(self.salt_ssh),
                "remotes": str(self.remotes),
                "oned_conf": str(self.oned_conf),
                "driver_conf": str(self.driver_conf),
                "salt_dir": str(self.salt_dir),
                "ssh_priv": str(self.priv),
                "known_hosts": str(self.known_hosts),
                "tool_dir": str(self.tool_dir),
                "tool_link": str(self.tool),
                "unit_dir": str(self.base / "systemd"),
                "saltssh_start": False,  # no systemd on this host: the service's units only
                "python": str(self.python),
                "conf": {"timeout": 600},
            },
        }}

    # -- §2.4 -----------------------------------------------------------------
    def apply(self):
        rc, data, raw = salt_call(
            "state.apply", "gfs2clvm.frontend", 'exclude=[{"id": "gfs2clvm-frontend-package-pkg-installed"}]',
            minion_id="frontend", pillar=self.pillar(), example=True, timeout=900,
        )
        assert isinstance(data, dict), raw[-3000:]
        bad = {sid: (ret["comment"], ret["changes"]) for sid, ret in data.items() if ret["result"] is not True}
        assert rc == 0 and not bad, bad
        return {sid.split("_|-")[1]: ret for sid, ret in data.items()}

    # -- commands -------------------------------------------------------------
    def env(self, **extra):
        env = {"PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", "HOME": str(self.home), "USER": USER,
               "LOGNAME": USER, "LANG": "C.UTF-8", "GFS2CLVM_CONF": str(self.driver_conf)}
        env.update(extra)
        return env

    def host_tool(self, *args, as_user=False):
        """gfs2clvm-host through its PATH link (root, or oneadmin)."""
        kwargs = {"user": self.uid, "group": self.gid, "extra_groups": []} if as_user else {}
        env = self.env() if as_user else dict(os.environ, GFS2CLVM_CONF=str(self.driver_conf))
        return subprocess.run([str(self.tool), *map(str, args)], capture_output=True, text=True, env=env,
                              cwd="/", timeout=600, check=False, **kwargs)

    def tm(self, action, *args, kind="tm", stdin=""):
        """remotes/tm/gfs2clvm/ACTION (or remotes/datastore/...) as oneadmin, as oned runs it."""
        exe = self.remotes / kind / "gfs2clvm" / action
        t0 = time.monotonic()
        proc = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=self.env(),
                              input=stdin, cwd="/", timeout=900, check=False, user=self.uid, group=self.gid,
                              extra_groups=[])
        self.lab.timings[f"operator {kind}/{action}"] = round(time.monotonic() - t0, 1)
        assert proc.returncode == 0, f"{kind}/{action} {args}: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def cleanup(self):
        # the driver's ssh master connections (ControlPersist) as oneadmin: close them
        cm_dir = Path(tempfile.gettempdir()) / f"gfs2clvm-cm-{getattr(self, 'uid', 'none')}"
        if cm_dir.is_dir():
            for sock in cm_dir.iterdir():
                subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "gfs2clvm-operator"],
                               capture_output=True, timeout=30, check=False, user=self.uid, group=self.gid,
                               extra_groups=[], env=self.env(), cwd="/")
            shutil.rmtree(cm_dir, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)
        if self.created_user:
            subprocess.run(["userdel", USER], check=False)


@pytest.fixture(scope="module")
def fe(lab):
    front = FrontEnd(lab)
    try:
        front.prepare()
        t0 = time.monotonic()
        front.states = front.apply()
        lab.timings["operator: frontend highstate with enrolment"] = round(time.monotonic() - t0, 1)
        yield front
    finally:
        front.cleanup()


# ------------------------------------------------------------------ §2.4 / §2.5
def test_frontend_formula_installs_the_driver_and_enrols_the_workers(fe, lab):
    for node in lab.nodes:
        ret = fe.states[f"gfs2clvm-frontend-saltssh-enroll-{node}-module-run"]
        assert ret["changes"], ret
    # §2.4's table, relocated
    for action in ("clone", "context", "premigrate", "postmigrate", "mv", "delete"):
        exe = fe.remotes / "tm" / "gfs2clvm" / action
        assert exe.stat().st_uid == fe.uid and os.access(exe, os.X_OK), exe
    assert (fe.remotes / "lib" / "gfs2clvm_driver" / "__init__.py").is_file()
    st = fe.driver_conf.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (0, fe.gid, 0o640)
    conf = yaml.safe_load(fe.driver_conf.read_text())
    assert conf["saltfile"] == f"{fe.salt_dir}/Saltfile" and conf["user"] == USER
    assert conf["salt_ssh"] == str(fe.salt_ssh) and conf["timeout"] == 600
    st = fe.salt_dir.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, fe.gid, 0o1770)
    assert fe.roster.stat().st_uid == fe.uid
    assert fe.tool.is_symlink() and os.readlink(fe.tool) == str(fe.tool_dir / "bin" / "gfs2clvm-host")
    st = (fe.home / ".ssh").stat()
    assert (st.st_uid, st.st_mode & 0o777) == (fe.uid, 0o700)
    # §2.5: the block the docs quote, and gfs2clvm in the TM_MAD / DATASTORE_MAD lists
    text = fe.oned_conf.read_text()
    docs = (REPO / "docs" / "operations.md").read_text().split("### 2.5", 1)[1].split("```", 2)[1]
    assert _attrs(text) == _attrs(docs) and len(_attrs(docs)) == 2, (text, docs)
    assert '-d gfs2clvm,dummy,lvm,shared,fs_lvm,ssh"' in text
    assert '-d gfs2clvm,dummy,fs,lvm -s gfs2clvm,shared,ssh,fs_lvm"' in text


# ------------------------------------------------------------------ §3
def test_roster_entries_and_pinned_host_keys_are_as_documented(fe, lab):
    entries = yaml.safe_load(fe.roster.read_text())
    assert entries == {
        node: {"host": "127.0.0.1", "port": fe.ports[node], "user": USER, "priv": str(fe.priv),
               "set_path": SET_PATH, "thin_dir": THIN_DIR}
        for node in lab.nodes
    }
    # the formula's master config carries what every worker shares (no per-entry minion_opts)
    master = yaml.safe_load((fe.salt_dir / "master").read_text())
    assert master["ssh_minion_opts"]["module_dirs"] == ["/usr/lib/gfs2clvm/_modules"]
    assert master["ssh_minion_opts"]["gfs2clvm"]["vg"] == lab.vg
    assert master["known_hosts_file"] == str(fe.known_hosts) and master["ssh_priv"] == str(fe.priv)
    # host keys pinned by ssh-keyscan, written as [ADDRESS]:PORT; they are the guests' own
    # (the lab recorded them when it booted the guests)
    pinned = fe.known_hosts.read_text().splitlines()
    lab_keys = lab.known_hosts.read_text().splitlines()
    for node in lab.nodes:
        name = f"[127.0.0.1]:{fe.ports[node]}"
        ours = [line for line in pinned if line.split()[0] == name]
        assert ours and all(len(line.split()) == 3 for line in ours), pinned
        ed = [line for line in lab_keys if line.split()[:2] == [name, "ssh-ed25519"]]
        assert ed and ed[0] in ours, (ed, ours)
    assert {line.split()[0] for line in pinned} == {f"[127.0.0.1]:{p}" for p in fe.ports.values()}


def test_gfs2clvm_host_list_shows_the_workers(fe, lab):
    for as_user in (False, True):  # root and oneadmin
        proc = fe.host_tool("list", "--json", as_user=as_user)
        assert proc.returncode == 0, proc.stderr
        rows = {row["host"]: row for row in json.loads(proc.stdout)}
        assert rows == {
            node: {"host": node, "address": "127.0.0.1", "port": fe.ports[node], "user": USER,
                   "thin_dir": THIN_DIR, "host_key": True}
            for node in lab.nodes
        }, (as_user, rows)
    text = fe.host_tool("list").stdout
    for node in lab.nodes:
        assert f"{node}\t{USER}@127.0.0.1:{fe.ports[node]}\tthin {THIN_DIR}\t" in text, text


@pytest.mark.parametrize("node", ["node1", "node2"])
def test_gfs2clvm_host_check_passes(fe, lab, node):
    t0 = time.monotonic()
    proc = fe.host_tool("check", node)
    lab.timings[f"operator: gfs2clvm-host check {node}"] = round(time.monotonic() - t0, 1)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    out = proc.stdout.splitlines()
    for name in ("config", "lvm", "device_mapper", "sudo", "lvmlockd", "vg", "mount", "tools"):
        assert any(line.startswith(f"  ok   {name}: ") for line in out), (name, out)
    assert not any(line.startswith("  FAIL") for line in out), out


def test_image_datastore_of_the_docs_is_monitored(fe, lab):
    """§2.5's images.ds template, as oned hands it to remotes/datastore/gfs2clvm/monitor."""
    section = (REPO / "docs" / "operations.md").read_text().split("### 2.5", 1)[1]
    template = section.split("cat >images.ds <<'EOF'\n", 1)[1].split("\nEOF", 1)[0]
    attrs = {key.strip(): value.strip().strip('"') for key, value in
             (line.split("=", 1) for line in template.splitlines() if "=" in line)}
    assert attrs["BRIDGE_LIST"] == "node1 node2" and attrs["VG_NAME"] == lab.vg, attrs
    xml = ("<DS_DRIVER_ACTION_DATA><DATASTORE><ID>101</ID><TEMPLATE>"
           + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in attrs.items())
           + "</TEMPLATE></DATASTORE></DS_DRIVER_ACTION_DATA>")
    proc = fe.tm("monitor", "101", kind="datastore", stdin=base64.b64encode(xml.encode()).decode())
    got = dict(line.split("=", 1) for line in proc.stdout.split())
    assert set(got) == {"USED_MB", "FREE_MB", "TOTAL_MB"}, proc.stdout
    size = json.loads(lab.out("node1", ["vgs", "--reportformat", "json", "--units", "m", "--nosuffix",
                                        "-o", "vg_size", lab.vg]))["report"][0]["vg"][0]["vg_size"]
    assert abs(int(got["TOTAL_MB"]) - float(size)) <= 1, (got, size)
    assert abs(int(got["USED_MB"]) + int(got["FREE_MB"]) - int(got["TOTAL_MB"])) <= 1, got


# ------------------------------------------------------------------ a VM through the driver
def _active(lab, node, names):
    """{lv: attr[4] ('a' = active)} on ``node``."""
    out = lab.out(node, ["lvs", "--reportformat", "json", "-o", "lv_name,lv_attr", lab.vg])
    return {row["lv_name"]: row["lv_attr"][4] == "a" for row in json.loads(out)["report"][0]["lv"]
            if row["lv_name"] in names}


def test_vm_lifecycle_through_the_installed_driver(fe, lab):
    (vmid,) = vm_ids()
    vmdir = f"{lab.mountpoint}/datastores/{SYSDS}/{vmid}"
    disk0, disk1 = f"lv-one-{vmid}-0", f"lv-one-{vmid}-1"  # disk1: must not exist
    image = make_image(lab, 16, pattern="gfs2clvm-operator")
    ctx = fe.base / "context"
    ctx.mkdir(mode=0o755)
    (ctx / "context.sh").write_text(f"HOSTNAME='vm{vmid}'\n")
    try:
        # deploy on node1: the OS disk cloned from the image volume, and the context ISO
        fe.tm("clone", f"{fe.name}:/dev/{lab.vg}/{image}", f"node1:{vmdir}/disk.0", vmid, 1)
        fe.tm("context", str(ctx / "context.sh"), f"node1:{vmdir}/disk.1", vmid, SYSDS)
        assert disk0 in lvs(lab) and disk1 not in lvs(lab)  # the context ISO is a file on GFS2
        listing = lab.out("node2", f"find {vmdir} -mindepth 1 -printf '%f %y %l\\n' | sort")
        assert [line.rstrip() for line in listing.splitlines()] == [f"disk.0 l /dev/{lab.vg}/{disk0}", "disk.1 f"]
        head = lab.out("node1", f"head -c 17 /dev/{lab.vg}/{disk0}", user=USER)
        assert head == "gfs2clvm-operator"  # the image's bytes, read as oneadmin (udev rule)
        label = lab.out("node1", ["blkid", "-o", "value", "-s", "LABEL", f"{vmdir}/disk.1"])
        assert label == "CONTEXT", label
        assert _active(lab, "node1", {disk0}) == {disk0: True}
        assert _active(lab, "node2", {disk0}) == {disk0: False}
        # live migration node1 -> node2
        fe.tm("premigrate", "node1", "node2", vmdir, vmid, SYSDS)
        assert _active(lab, "node1", {disk0}) == {disk0: True}
        assert _active(lab, "node2", {disk0}) == {disk0: True}
        fe.tm("postmigrate", "node1", "node2", vmdir, vmid, SYSDS)
        assert _active(lab, "node1", {disk0}) == {disk0: False}
        assert _active(lab, "node2", {disk0}) == {disk0: True}
        # the VM is gone: delete on the host that runs it
        fe.tm("delete", f"node2:{vmdir}", vmid, SYSDS)
        # nothing left behind: no LV of the VM (whole VG), no VM directory, no link
        # (only this VM's things: other lab tests may run meanwhile)
        assert not [name for name in lvs(lab) if name.startswith(f"lv-one-{vmid}-")]
        assert lab.ssh("node1", ["test", "-e", vmdir]).returncode == 1
        assert not [line for line in files(lab) if f"/{vmid}" in line]
        assert image in lvs(lab)  # the image volume stays (it belongs to the image, not to the VM)
    finally:
        root_cleanup(lab, [vmid], [image])



def test_gfs2clvm_host_remove_unenrols(fe, lab):
    for node in lab.nodes:
        proc = fe.host_tool("remove", node, as_user=True)  # oneadmin may, in the formula's layout
        assert proc.returncode == 0, proc.stderr
        name = f"[127.0.0.1]:{fe.ports[node]}"
        assert proc.stdout.startswith(f"{node}: removed from {fe.roster}; "), proc.stdout
        assert f"host key line(s) for {name} removed" in proc.stdout, proc.stdout
    assert yaml.safe_load(fe.roster.read_text()) == {}
    assert fe.known_hosts.read_text().strip() == ""
