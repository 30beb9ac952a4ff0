# SPDX-License-Identifier: Apache-2.0
"""Bad input, table-driven, through the REAL driver executables and REAL salt-ssh.

Every case runs one executable of ``tm_commands/tm/gfs2clvm/`` or
``tm_commands/datastore/gfs2clvm/`` (base64 XML on stdin) with a driver config
(``GFS2CLVM_CONF``) whose hosts are the local sshd's roster targets
(``saltssh.target('root'|'unpriv')``), or calls a worker module function with
salt-ssh directly.  Each must:

* exit non-zero with exactly ONE oned-format error line on stderr (``ERROR: ...``;
  other stderr lines may only be ``INFO:``), no traceback, no "internal error", no stdout;
* change nothing: the files under both targets' mountpoints (a prepared VM tree with
  ``disk.N`` links, a deployment file, an ISO) are listed before and after, and
  shell-injection canaries (``/tmp/gfs2clvm-h7-pwned-*``) must never appear.

LVM cannot run on this host, so "nothing created" for LVs is checked in the lab
(tests/lab/test_lab_faults.py); here the module's LVM commands fail (no
device-mapper), which only matters for the cases that legitimately reach the worker.
"""

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TM = REPO / "tm_commands" / "tm" / "gfs2clvm"
DS = REPO / "tm_commands" / "datastore" / "gfs2clvm"
VG = "vg_cloudstorage"
IMG = f"/dev/{VG}/lv-oneimg-{'0' * 32}"
FE = "frontend-h7"  # the front-end's name in the driver config (not a roster target)
CANARY = "/tmp/gfs2clvm-h7-pwned"
INJECT = f"touch {CANARY}"

# placeholders, replaced per session: @R root target, @U unpriv target, @MP root
# mountpoint, @D <@MP>/datastores, @SAFE the safe dir of image imports
CASES = []


def tm(case_id, action, *argv, worker=False):
    CASES.append(pytest.param("tm", action, list(argv), None, worker, id=f"tm-{action}-{case_id}"))


def ds(case_id, action, payload, argv=("1",), worker=False, encode=True):
    """``payload``: the XML (or garbage) oned would send; base64-encoded unless ``encode=False``."""
    stdin = (payload, encode)
    CASES.append(pytest.param("ds", action, list(argv), stdin, worker, id=f"ds-{action}-{case_id}"))


GOOD_SRC = f"{FE}:{IMG}"
GOOD_DST = "@R:@D/0/5/disk.0"

# ---- ids: non-integer, negative, out of range, YAML traps, injected
for cid, bad in [("abc", "abc"), ("negative", "-1"), ("hex-yaml-16", "0x10"), ("sexagesimal-yaml", "12:30"),
                 ("too-big", "2147483648"), ("float", "5.0"), ("leading-zero", "05"), ("space", "5 6"),
                 ("inject", f"5;{INJECT}"), ("empty", "")]:
    tm(f"vmid-{cid}", "clone", GOOD_SRC, GOOD_DST, bad, "1")
tm("dsid-word", "clone", GOOD_SRC, GOOD_DST, "5", "zero")
tm("dsid-negative", "delete", "@R:@D/0/5", "5", "-2")
tm("vmid-yaml-bool", "delete", "@R:@D/0/5", "yes", "0")

# ---- paths: ../, outside the VM directory, not normalised, metacharacters, quotes, spaces
for cid, path in [
    ("dotdot", "@D/0/5/../../../../../../tmp/disk.0"),
    ("dotdot-into-other-vm", "@D/0/5/../6/disk.0"),
    ("absolute-outside", "/etc/disk.0"),
    ("dot-segment", "@D/0/./5/disk.0"),
    ("dotdot-folded-slashes", "@D//0/5//..//..//..//tmp/disk.0"),
    ("semicolon", f"@D/0/5/disk.0;{INJECT}"),
    ("command-subst", f"@D/0/5/$({INJECT})/disk.0"),
    ("backtick", f"@D/0/5/`{INJECT}`/disk.0"),
    ("space", "@D/0/5/disk 0"),
    ("single-quote", "@D/0/5/disk.0'"),
    ("double-quote", '@D/0/5/"disk.0'),
    ("newline", "@D/0/5/disk.0\ntouch"),
    ("pipe", f"@D/0/5/disk.0|{INJECT}"),
    ("other-vm", "@D/0/6/disk.0"),
    ("not-a-disk", "@D/0/5/deployment.0"),
    ("vm-dir-not-disk", "@D/0/5"),
]:
    tm(f"dst-{cid}", "clone", GOOD_SRC, f"@R:{path}", "5", "1")

# ---- sources: other URL schemes, traversal, metacharacters, non-image volumes
for cid, src in [
    ("file-url", "file:///etc/shadow"),
    ("ftp-url", "ftp://example.org/img.raw"),
    ("gopher-url", "gopher://example.org/1"),
    ("http-space", "http://example.org/a b"),
    ("http-quote", "http://example.org/a'$(touch /tmp/gfs2clvm-h7-pwned)'"),
    ("dev-traversal", f"{FE}:/dev/{VG}/../../etc/shadow"),
    ("dev-inject", f"{FE}:/dev/{VG}/lv-oneimg-x;{INJECT}"),
    ("iso-outside", f"{FE}:/etc/passwd.iso"),
    ("overlong-lv", f"{FE}:/dev/{VG}/{'a' * 65}"),
    ("fe-host-inject", f"fe;{INJECT}:{IMG}"),
]:
    tm(f"src-{cid}", "clone", src, GOOD_DST, "5", "1")
tm("src-vm-disk", "ln", f"{FE}:/dev/{VG}/lv-one-9-0", GOOD_DST, "5", "1")
tm("src-gfs2-lv", "ln", f"{FE}:/dev/{VG}/gfs2", GOOD_DST, "5", "1")
tm("dst-gfs2-lv", "mvds", "@R:@D/0/5/disk.0", f"{FE}:/dev/{VG}/gfs2", "5", "1")
tm("dst-overlong-lv", "cpds", "@R:@D/0/5/disk.0", f"{FE}:/dev/{VG}/lv-oneimg-{'0' * 33}", "-1", "5", "1")

# ---- hosts: unknown (reaches salt-ssh), option injection, metacharacters
tm("host-unknown", "clone", GOOD_SRC, "nohost-h7:@D/0/5/disk.0", "5", "1", worker=True)
tm("host-option-injection", "clone", GOOD_SRC, f"-oProxyCommand={INJECT}:@D/0/5/disk.0", "5", "1")
tm("host-semicolon", "delete", f"@R;{INJECT}:@D/0/5", "5", "0")
tm("host-unknown-migrate", "premigrate", "@R", "nohost-h7", "@D/0/5", "5", "0", worker=True)
tm("host-inject-migrate", "premigrate", f"@R;{INJECT}", "@R", "@D/0/5", "5", "0")

# ---- sizes: 0, negative, not a number, absurd
tm("size-zero", "mkimage", "0", "raw", GOOD_DST, "5", "1")
tm("size-negative", "mkimage", "-10", "raw", GOOD_DST, "5", "1")
tm("size-exponent", "mkimage", "1e3", "raw", GOOD_DST, "5", "1")
tm("size-word", "mkswap", "big", GOOD_DST, "5", "1")
tm("size-zero", "mkswap", "0", GOOD_DST, "5", "1")
tm("size-negative", "resize", GOOD_DST, "-5", "5", "1")
tm("fs-inject", "mkimage", "16", f"ext4;{INJECT}", GOOD_DST, "5", "1")
tm("snapid-word", "snap_create", GOOD_DST, "x", "5", "1")
tm("snapid-negative", "snap_revert", GOOD_DST, "-1", "5", "1")
tm("snapid-word", "cpds", "@R:@D/0/5/disk.0", GOOD_SRC, "abc", "5", "1")

# ---- deletes that would reach other VMs, the datastore or the mountpoint
tm("other-vm-dir", "delete", "@R:@D/0/6", "5", "0")
tm("whole-system-ds", "delete", "@R:@D/0", "0", "0")
tm("datastores-dir", "delete", "@R:@D", "0", "0")
tm("mountpoint", "delete", "@R:@MP", "5", "0")
tm("root", "delete", "@R:/", "5", "0")
tm("mv-outside", "mv", "@R:@D/0/5", "@U:/tmp/5", "5", "0")
tm("mv-other-vm", "mv", "@R:@D/0/5/disk.0", "@U:@D/0/6/disk.0", "5", "1")

# ---- context files
tm("file-name-inject", "context", f"@SAFE/ctx.sh:'a;{INJECT}'", GOOD_DST, "5", "0")
tm("file-name-dotdot", "context", "@SAFE/ctx.sh:'..'", GOOD_DST, "5", "0")
tm("file-missing", "context", "@SAFE/no-such-file", GOOD_DST, "5", "0")
tm("file-url", "context", "http://example.org/ctx.sh", GOOD_DST, "5", "0")

# ---- argument counts
tm("too-few", "clone", GOOD_SRC, GOOD_DST, "5")
tm("too-many", "delete", "@R:@D/0/5", "5", "0", "extra")
tm("none", "mkswap")


# ---- datastore actions: base64 XML on stdin
def xml(image=None, datastore=None, root="DS_DRIVER_ACTION_DATA"):
    def block(tag, values):
        inner = "".join(
            f"<{k}>{block_inner(v)}</{k}>" if isinstance(v, dict) else f"<{k}>{v}</{k}>"
            for k, v in (values or {}).items()
        )
        return f"<{tag}>{inner}</{tag}>"

    def block_inner(values):
        return "".join(f"<{k}>{v}</{k}>" for k, v in values.items())

    ds_values = {"ID": "1", "TEMPLATE": {"BRIDGE_LIST": "@R", "SAFE_DIRS": "@SAFE", "RESTRICTED_DIRS": "/etc"}}
    for key, val in (datastore or {}).items():
        if key in ("BRIDGE_LIST", "SAFE_DIRS", "RESTRICTED_DIRS", "VG_NAME"):
            ds_values["TEMPLATE"][key] = val
        else:
            ds_values[key] = val
    img_values = {"ID": "3", "SIZE": "16"}
    img_values.update(image or {})
    return f"<{root}>{block('IMAGE', img_values)}{block('DATASTORE', ds_values)}</{root}>"


ds("stdin-garbage", "cp", "!!! this is not base64 !!!", encode=False)
ds("stdin-empty", "cp", "", encode=False)
ds("stdin-not-xml", "cp", "SOURCE=/etc/shadow")
ds("stdin-wrong-root", "cp", xml(root="VM"))
ds("stdin-truncated-xml", "mkfs", xml()[:-12])
ds("no-path", "cp", xml(image={"PATH": ""}))
ds("no-size", "mkfs", xml(image={"SIZE": ""}))
ds("no-source", "rm", xml(image={"SOURCE": ""}))
for cid, path in [
    ("file-url", "file:///etc/shadow"),
    ("ftp-url", "ftp://example.org/x.img"),
    ("gopher-url", "gopher://example.org/1"),
    ("restricted", "/etc/shadow"),
    ("dotdot", "@SAFE/../../etc/shadow"),
    ("symlink-escape", "@SAFE/escape.img"),
    ("outside-safe", "/root/.ssh/id_rsa"),
    ("inject", f"@SAFE/x.img;{INJECT}"),
    ("lvm-url-word", "lvm://abc/0"),
    ("lvm-url-inject", f"lvm://5/0;{INJECT}"),
    ("lvm-url-negative", "lvm://-5/0"),
    ("vol-url-traversal", "vol://../../etc"),
]:
    ds(f"path-{cid}", "cp", xml(image={"PATH": path}))
ds("path-inject", "stat", xml(image={"PATH": f"@SAFE/x;{INJECT}"}))
ds("path-ftp", "stat", xml(image={"PATH": "ftp://example.org/x"}))
for cid, size in [("zero", "0"), ("negative", "-16"), ("word", "huge"), ("too-big", "99999999999")]:
    ds(f"size-{cid}", "mkfs", xml(image={"SIZE": size}))
ds("fs-inject", "mkfs", xml(image={"FS": f"ext4;{INJECT}"}))
ds("vg-inject", "mkfs", xml(datastore={"VG_NAME": f"vg;{INJECT}"}))
ds("vg-unknown", "mkfs", xml(datastore={"VG_NAME": "vg_h7_no_such_vg"}), worker=True)
ds("vg-overlong", "mkfs", xml(datastore={"VG_NAME": "v" * 65}))
ds("source-gfs2-lv", "rm", xml(image={"SOURCE": f"/dev/{VG}/gfs2"}))
ds("source-vm-disk", "rm", xml(image={"SOURCE": f"/dev/{VG}/lv-one-5-0"}))
ds("source-overlong", "rm", xml(image={"SOURCE": f"/dev/{VG}/lv-oneimg-{'a' * 40}"}))
ds("path-gfs2-lv", "clone", xml(image={"PATH": f"/dev/{VG}/gfs2"}))
ds("id-word", "cp", xml(), argv=("x",))
ds("xml-id-inject", "cp", xml(datastore={"ID": "1;2"}))
ds("bridge-option-injection", "mkfs", xml(datastore={"BRIDGE_LIST": f"-oProxyCommand={INJECT}"}))
ds("bridge-unknown-host", "mkfs", xml(datastore={"BRIDGE_LIST": "nohost-h7"}), worker=True)
ds("no-bridge-list", "mkfs", xml(datastore={"BRIDGE_LIST": ""}))
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
    + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
    + "]><DS_DRIVER_ACTION_DATA><IMAGE><PATH>&i;</PATH></IMAGE></DS_DRIVER_ACTION_DATA>"
)
ds("billion-laughs", "cp", LAUGHS)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/shadow">]>'
    "<DS_DRIVER_ACTION_DATA><IMAGE><PATH>&x;</PATH></IMAGE><DATASTORE><ID>1</ID></DATASTORE>"
    "</DS_DRIVER_ACTION_DATA>"
)
ds("external-entity", "cp", XXE)
ds("monitor-garbage", "monitor", "%%%", encode=False)


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def world(saltssh, tmp_path_factory):
    """Driver config + a VM tree on the root target's mountpoint + a safe import dir."""
    base = tmp_path_factory.mktemp("reliability-badinput")
    base.chmod(0o755)
    safe = base / "safe"
    safe.mkdir()
    (safe / "ctx.sh").write_text("HOSTNAME=vm5\n")
    (safe / "escape.img").symlink_to("/etc/shadow")
    mp = saltssh.mountpoints["root"]
    d = mp / "datastores"
    for vm in (5, 6, 0):
        (d / "0" / str(vm)).mkdir(parents=True, exist_ok=True)
    (d / "0" / "5" / "disk.0").symlink_to(f"/dev/{VG}/lv-one-5-0")
    (d / "0" / "6" / "disk.0").symlink_to(f"/dev/{VG}/lv-one-6-0")
    (d / "0" / "6" / "deployment.0").write_text("<domain/>\n")
    (d / "0" / "5" / "deployment.0").write_text("<domain/>\n")
    (d / "1").mkdir()
    (d / "1" / "ttylinux.iso").write_bytes(b"\0" * 4096)
    conf = saltssh.driver_conf(
        base / "gfs2clvm.conf",
        mountpoint=str(mp),
        mount_check="none",
        frontend_hosts=[FE],
        bridge_list=[],
        safe_dirs=[str(safe)],
        restricted_dirs=["/etc"],
        timeout=120,
    )
    subst = {
        "@SAFE": str(safe),
        "@MP": str(mp),
        "@D": str(d),
        "@R": saltssh.target("root"),
        "@U": saltssh.target("unpriv"),
    }
    yield {"conf": conf, "subst": subst, "base": base}
    shutil.rmtree(d, ignore_errors=True)


def fill(text, subst):
    # @D before @MP is irrelevant (distinct tokens); longest first anyway
    for key in sorted(subst, key=len, reverse=True):
        text = text.replace(key, subst[key])
    return text


def tree(saltssh):
    """Everything under both mountpoints: path -> (kind, size or link target, mode)."""
    state = {}
    for root in saltssh.mountpoints.values():
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if os.path.islink(path):
                    state[path] = ("link", os.readlink(path), st.st_mode)
                elif os.path.isdir(path):
                    state[path] = ("dir", None, st.st_mode)
                else:
                    state[path] = ("file", st.st_size, st.st_mode, st.st_mtime_ns)
    return state


def canaries():
    return sorted(str(p) for p in Path("/tmp").glob("gfs2clvm-h7-pwned*"))


def run_driver(kind, action, argv, stdin, conf, timeout=180):
    exe = (TM if kind == "tm" else DS) / action
    assert exe.is_file() and os.access(exe, os.X_OK), f"missing driver executable {exe}"
    env = dict(os.environ)
    env["GFS2CLVM_CONF"] = str(conf)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}"
    return subprocess.run(
        [str(exe), *argv],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def assert_one_oned_error(proc):
    out = f"rc={proc.returncode}\nstdout={proc.stdout!r}\nstderr={proc.stderr!r}"
    assert proc.returncode != 0, out
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR: ")]
    assert len(errors) == 1, out
    # every other line is logged (INFO:), except the one plain reason line oned shows (= the ERROR's text)
    plain = [line for line in lines if not line.startswith(("ERROR: ", "INFO: "))]
    assert plain == [errors[0][len("ERROR: "):]], out
    assert "Traceback" not in proc.stderr + proc.stdout, out
    assert "internal error" not in errors[0], out
    assert proc.stdout.strip() == "", out
    return errors[0]


# ------------------------------------------------------------------ the table
def test_the_table_is_big_enough():
    assert len(CASES) >= 40, len(CASES)


@pytest.mark.parametrize("kind,action,argv,stdin,worker", CASES)
def test_bad_input_is_refused_cleanly(saltssh, world, kind, action, argv, stdin, worker):
    argv = [fill(a, world["subst"]) for a in argv]
    if stdin is not None:
        payload, encode = stdin
        payload = fill(payload, world["subst"])
        stdin = base64.b64encode(payload.encode()).decode() if encode else payload
    before, pwned = tree(saltssh), canaries()
    proc = run_driver(kind, action, argv, stdin, world["conf"])
    line = assert_one_oned_error(proc)
    assert tree(saltssh) == before, f"{line}: the mountpoints changed"
    assert canaries() == pwned == [], f"{line}: injected command ran"
    if not worker:
        # refused on the front-end: no salt-ssh call, so nothing could reach a worker
        assert " on local-" not in line and "salt-ssh exit" not in line, line


# ------------------------------------------------------------------ worker side
# The worker modules must refuse on their own (defence in depth): called directly
# with salt-ssh, as the unprivileged user, on a prepared tree.
MODULE_CASES = [
    pytest.param("gfs2clvm_tm.clone", ["file:///etc/shadow", "@D/0/5/disk.0", 5, 0], {}, id="clone-file-url"),
    pytest.param("gfs2clvm_tm.clone", [IMG, "@D/0/5/../6/disk.0", 5, 0], {}, id="clone-dotdot"),
    pytest.param("gfs2clvm_tm.clone", [IMG, "/etc/disk.0", 5, 0], {}, id="clone-outside"),
    pytest.param("gfs2clvm_tm.clone", [IMG, "@D/0/5/disk.0", "0x5", 0], {}, id="clone-vmid-hex"),
    pytest.param("gfs2clvm_tm.mkimage", ["@D/0/5/disk.0", 5, 0, 0], {}, id="mkimage-size-0"),
    pytest.param("gfs2clvm_tm.mkimage", ["@D/0/5/disk.0", 5, 0, -4], {}, id="mkimage-size-negative"),
    pytest.param("gfs2clvm_tm.context", ["@D/0/5/disk.1", 5], {"files": {"../../x": "QQ=="}}, id="context-name-dotdot"),
    pytest.param("gfs2clvm_tm.delete", ["@D/0/6", 5], {}, id="delete-other-vm"),
    pytest.param("gfs2clvm_tm.delete", ["@MP", 5], {}, id="delete-mountpoint"),
    pytest.param("gfs2clvm_tm.ds_rm", ["gfs2"], {}, id="ds_rm-gfs2-lv"),
    pytest.param("gfs2clvm_tm.ds_cp", ["file:///etc/shadow", f"lv-oneimg-{'1' * 32}"], {}, id="ds_cp-file-url"),
    pytest.param("gfs2clvm.copy", ["@MP/../../etc/shadow", "@D/0/5/x.img"], {}, id="copy-dotdot"),
    pytest.param("gfs2clvm.link", ["/etc/shadow", "@D/0/5/disk.3"], {}, id="link-to-etc"),
]


@pytest.fixture(scope="module")
def unpriv_tree(saltssh):
    mp = saltssh.mountpoints["unpriv"]
    d = mp / "datastores"
    made = []
    for vm in (5, 6):
        (d / "0" / str(vm)).mkdir(parents=True, exist_ok=True)
        (d / "0" / str(vm) / "deployment.0").write_text("<domain/>\n")
        made.append(d / "0" / str(vm))
    for path in [d, d / "0", *made, *(m / "deployment.0" for m in made)]:
        os.lchown(path, saltssh.user.pw_uid, saltssh.user.pw_gid)
    yield {"@MP": str(mp), "@D": str(d)}
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("fun,args,kwargs", MODULE_CASES)
def test_worker_module_refuses_on_its_own(saltssh, unpriv_tree, fun, args, kwargs):
    # JSON-encoded like the driver does (salt parses arguments as YAML: 0x5 would be 5)
    args = [json.dumps(fill(a, unpriv_tree) if isinstance(a, str) else a) for a in args]
    before = tree(saltssh)
    rc, data, err = saltssh.call(fun, *args, user="unpriv", timeout=600, **kwargs)
    text = f"rc={rc} data={data!r} stderr={err[-2000:]}"
    assert rc != 0, text
    assert tree(saltssh) == before, f"{fun} changed the mountpoint: {text}"
