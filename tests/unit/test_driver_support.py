# SPDX-License-Identifier: Apache-2.0
"""Shared fakes for the driver tests (imported by the other test_driver_* files).

``FakeSaltSSH`` writes an executable that stands in for salt-ssh: it records its
argv (one JSON line per call) and answers what the test queued (default: every
target answers ``{"ok": true}``).  ``FakeSSH`` stands in for ssh on the data path:
it records its argv and writes its stdin where the remote ``dd of=`` points.
"""

import base64
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
TM = REPO / "tm_commands"
LIB = TM / "lib"
if str(LIB) not in sys.path:
    sys.path.insert(0, str(LIB))

IMG = "lv-oneimg-0123456789abcdef0123456789abcdef"
VG = "vg_cloudstorage"
MP = "/var/lib/one"
DS = f"{MP}/datastores"

FAKE_SALT_SSH = r'''#!{python}
import json, os, sys, time
state = os.environ["FAKE_STATE"]
with open(os.path.join(state, "calls.jsonl"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
args = sys.argv[1:]
pos = args.index("--key-deploy") + 1
targets = args[pos + 1].split(",") if args[pos] == "-L" else [args[pos]]
queue = os.path.join(state, "replies.json")
replies = json.load(open(queue)) if os.path.exists(queue) else []
reply = replies.pop(0) if replies else {{}}
json.dump(replies, open(queue, "w"))
time.sleep(reply.get("sleep", 0))
out = reply.get("out")
if out is None:
    out = {{t: reply.get("value", {{"ok": True}}) for t in targets}}
sys.stdout.write(out if isinstance(out, str) else json.dumps(out))
sys.stderr.write(reply.get("stderr", ""))
sys.exit(reply.get("rc", 0))
'''

FAKE_SSH = r'''#!{python}
import json, os, shlex, sys
state = os.environ["FAKE_STATE"]
with open(os.path.join(state, "ssh.jsonl"), "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
remote = sys.argv[-1]
words = shlex.split(remote.rsplit("&&", 1)[1])
target = [w for w in words if w.startswith("of=")][0][3:]
data = sys.stdin.buffer.read()
with open(os.path.join(state, "streamed.bin"), "wb") as out:
    out.write(data)
with open(os.path.join(state, "ssh-remote.txt"), "w") as out:
    out.write(remote)
sys.exit(int(os.environ.get("FAKE_SSH_RC", "0")))
'''


FAKE_ONEVM = r'''#!{python}
import os, sys
state = os.environ["FAKE_STATE"]
with open(os.path.join(state, "onevm.log"), "a") as log:
    log.write(" ".join(sys.argv[1:]) + "\n")
path = os.path.join(state, "vm-" + sys.argv[-1] + ".xml")
if os.path.exists(path + ".missing"):
    sys.stderr.write("[one.vm.info] Error getting virtual machine [" + sys.argv[-1] + "].\n")
    sys.exit(255)
sys.stdout.write(open(path).read() if os.path.exists(path)
                 else "<VM><ID>" + sys.argv[-1] + "</ID><TEMPLATE/></VM>")
'''


class Fakes:
    """A driver config pointing at a fake salt-ssh and a fake ssh, in ``tmp``."""

    def __init__(self, tmp, **conf):
        self.tmp = Path(tmp)
        self.state = self.tmp / "state"
        self.state.mkdir()
        self.salt_ssh = self._script("salt-ssh", FAKE_SALT_SSH)
        self.ssh = self._script("ssh", FAKE_SSH)
        self.onevm = self._script("onevm", FAKE_ONEVM)
        self.conf_path = self.tmp / "gfs2clvm.conf"
        self.conf = {
            "salt_ssh": str(self.salt_ssh),
            "saltfile": str(self.tmp / "Saltfile"),
            "ssh": str(self.ssh),
            "onevm": str(self.onevm),
            "frontend_hosts": ["fe"],
            "timeout": 30,
        }
        self.conf.update(conf)
        self.write_conf()
        # call slots of their own: a driver test never queues behind another process's calls
        self.env = dict(os.environ, GFS2CLVM_CONF=str(self.conf_path), FAKE_STATE=str(self.state),
                        GFS2CLVM_SLOT_DIR=str(self.tmp / "slots"))

    def _script(self, name, text):
        path = self.tmp / name
        path.write_text(text.format(python=sys.executable))
        path.chmod(0o755)
        return path

    def write_conf(self, **more):
        self.conf.update(more)
        self.conf_path.write_text(yaml.safe_dump(self.conf))

    def reply(self, **reply):
        """Queue the answer of the next salt-ssh call (out/value/rc/stderr/sleep)."""
        path = self.state / "replies.json"
        queue = json.loads(path.read_text()) if path.exists() else []
        queue.append(reply)
        path.write_text(json.dumps(queue))

    def vm(self, vmid, disks):
        """What the fake ``onevm show -x <vmid>`` prints: ``disks`` = {disk id: {attr: value}}."""
        body = "".join("<DISK><DISK_ID>%s</DISK_ID>%s</DISK>" % (i, "".join(
            f"<{k}>{v}</{k}>" for k, v in attrs.items())) for i, attrs in disks.items())
        (self.state / f"vm-{vmid}.xml").write_text(f"<VM><ID>{vmid}</ID><TEMPLATE>{body}</TEMPLATE></VM>")

    def calls(self):
        path = self.state / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def ssh_calls(self):
        path = self.state / "ssh.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def run(self, kind, action, *args, stdin=None):
        """Run a real executable: ``kind`` is tm, datastore or one-3.2."""
        exe = TM / kind / "gfs2clvm" / action if kind in ("tm", "datastore") else TM / kind / action
        proc = subprocess.run(
            [str(exe), *[str(a) for a in args]], input=(stdin or "").encode(),
            capture_output=True, env=self.env, timeout=60, check=False,
        )
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()

    def only_call(self):
        """The single salt-ssh call made so far, decoded: (targets, fun, args, kwargs)."""
        calls = self.calls()
        assert len(calls) == 1, calls
        return decode(calls[0], self.conf)


def decode(argv, conf):
    """Split a recorded salt-ssh argv, checking the fixed part."""
    assert argv[:8] == ["--saltfile", conf["saltfile"], "--out", "json", "--static", "-l", "warning", "--key-deploy"]
    for forbidden in ("-i", "--ignore-host-keys", "-W", "-w", "--rand-thin-dir", "--wipe", "--tty"):
        assert forbidden not in argv
    rest = argv[8:]
    if rest[0] == "-L":
        targets, rest = rest[1].split(","), rest[2:]
    else:
        targets, rest = [rest[0]], rest[1:]
    fun, rest = rest[0], rest[1:]
    args, kwargs = [], {}
    for word in rest:
        if word.startswith(("\"", "[", "{")) or word[:1].isdigit() or word in ("null", "true", "false"):
            args.append(json.loads(word))
        else:
            key, _, value = word.partition("=")
            kwargs[key] = json.loads(value)
    return targets, fun, args, kwargs


def ds_xml(image=None, ds=None, ds_id=100):
    """Base64 DS_DRIVER_ACTION_DATA like oned's."""
    ds = {"BRIDGE_LIST": "node1 node2", **(ds or {})}
    tmpl = "".join(f"<{k}>{v}</{k}>" for k, v in ds.items())
    img = "".join(f"<{k}>{v}</{k}>" for k, v in (image or {}).items())
    xml = (f"<DS_DRIVER_ACTION_DATA><DATASTORE><ID>{ds_id}</ID><TEMPLATE>{tmpl}</TEMPLATE></DATASTORE>"
           f"<IMAGE>{img}</IMAGE></DS_DRIVER_ACTION_DATA>")
    return base64.b64encode(xml.encode()).decode()


def test_fake_salt_ssh_records_and_answers(tmp_path):
    fakes = Fakes(tmp_path)
    fakes.reply(value={"x": 1})
    proc = subprocess.run([str(fakes.salt_ssh), "--saltfile", "S", "--out", "json", "--static", "-l",
                           "warning", "--key-deploy", "-L", "a,b", "f.g", '"x"'], capture_output=True, text=True,
                          env=fakes.env, check=False)
    assert json.loads(proc.stdout) == {"a": {"x": 1}, "b": {"x": 1}}
    assert fakes.calls()[0][-2:] == ["f.g", '"x"']


def test_fake_ssh_writes_stdin(tmp_path):
    fakes = Fakes(tmp_path)
    remote = "true && dd of=" + shlex.quote("/x/y") + " bs=4M"
    subprocess.run([str(fakes.ssh), "h", "--", remote], input=b"abc", env=fakes.env, check=True)
    assert (fakes.state / "streamed.bin").read_bytes() == b"abc"


def failed(message):
    """stderr of a failed action (``core.error``): the ``ERROR:`` line oned logs, then the
    plain line oned makes the failure reason (DriverExecHelper.rb:175-205 in 7.4.0)."""
    return f"ERROR: {message}\n{message}\n"


def reason(stderr):
    """The failure reason oned 7.x shows for ``stderr`` (``core.oned_reason``)."""
    from gfs2clvm_driver import core

    return core.oned_reason(stderr)
