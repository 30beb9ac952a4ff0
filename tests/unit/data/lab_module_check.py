"""Run the gfs2clvm primitives against real LVM (shared VG, lvmlockd+sanlock), a thin pool and GFS2 in a lab guest (see lab_module_check.sh)."""
import json, os, subprocess, sys, time, hashlib
import salt.config, salt.loader
from salt.exceptions import CommandExecutionError, SaltInvocationError

VG = "vg_cloudstorage"
MP = "/mnt/one"
opts = salt.config.minion_config(None)
REPO = os.environ["GFS2CLVM_REPO"]
opts.update(cachedir="/tmp/salt-cache", root_dir="/tmp/salt-root", pki_dir="/tmp/salt-pki", file_client="local",
            module_dirs=[f"{REPO}/_modules"],
            gfs2clvm={"vg": VG, "mountpoint": MP, "mount_check": "gfs2", "owner": "oneadmin", "group": "oneadmin",
                      "thin_pool": "pool", "dd_bs": "4M"})
t0 = time.time()
mods = salt.loader.minion_mods(opts)
print(f"loader {time.time()-t0:.1f}s", flush=True)
F = lambda name: mods[f"gfs2clvm.{name}"]
PASS = FAIL = 0

def ok(desc, cond, extra=""):
    global PASS, FAIL
    if cond:
        PASS += 1; print("ok   -", desc, flush=True)
    else:
        FAIL += 1; print("FAIL -", desc, extra, flush=True)

def call(name, *a, **k):
    t = time.time()
    try:
        r = F(name)(*a, **k)
        print(f"  {name}{a}{k} -> {json.dumps(r)[:400]} ({time.time()-t:.2f}s)", flush=True)
        return r
    except (CommandExecutionError, SaltInvocationError) as e:
        print(f"  {name}{a}{k} RAISED {type(e).__name__}: {e} ({time.time()-t:.2f}s)", flush=True)
        return e

def sh(*argv):
    return subprocess.run(argv, capture_output=True, text=True)

r = call("check")
ok("check ok on a full node", r["ok"] is True, json.dumps(r))
r = call("lv_create", "lv-one-1-0", "64M", thin=False)
ok("thick lv created + zeroed", isinstance(r, dict) and r["zeroed"] and os.path.exists(f"/dev/{VG}/lv-one-1-0"))
ok("udev: lv-one-1-0 owned by oneadmin", sh("stat", "-L", "-c", "%U", f"/dev/{VG}/lv-one-1-0").stdout.strip() == "oneadmin")
r = call("lv_create", "lv-one-1-0", 8, thin=False)
ok("existing name refused", isinstance(r, CommandExecutionError) and "already exists" in str(r))
r = call("lv_info", "lv-one-1-0")
ok("lv_info size 64 active", r["size_mb"] == 64 and r["active"] and not r["open"])
call("lv_create", "lv-one-10-0", 8, thin=False, zero=False)
r = call("lv_list", vmid=1)
ok("lv_list vmid=1 whole names", [l["name"] for l in r["lvs"]] == ["lv-one-1-0"])
# copy sparse file on gfs2 -> LV, then LV -> file
src = f"{MP}/datastores/1/img.raw"
os.makedirs(os.path.dirname(src), exist_ok=True)
with open(src, "wb") as h:
    h.truncate(48 << 20); h.write(os.urandom(1 << 20)); h.seek(30 << 20); h.write(os.urandom(3 << 20))
r = call("copy", src, f"/dev/{VG}/lv-one-1-0", sha256=True)
dev = open(f"/dev/{VG}/lv-one-1-0", "rb").read(48 << 20)
ok("copy file->LV identical (holes zero)", dev == open(src, "rb").read() and r["written"] == 4 << 20)
r = call("copy", f"/dev/{VG}/lv-one-1-0", f"{MP}/datastores/0/1/back.raw")
ok("copy LV->gfs2 file identical for the image part", open(f"{MP}/datastores/0/1/back.raw", "rb").read(48 << 20) == open(src, "rb").read())
ok("file on gfs2 owned by oneadmin", sh("stat", "-c", "%U", f"{MP}/datastores/0/1/back.raw").stdout.strip() == "oneadmin")
# qcow2 -> LV
sh("qemu-img", "convert", "-f", "raw", "-O", "qcow2", src, f"{MP}/datastores/1/img.qcow2")
r = call("copy", f"{MP}/datastores/1/img.qcow2", f"/dev/{VG}/lv-one-1-0", fmt="auto")
ok("qcow2 -> LV via qemu-img", isinstance(r, dict) and r["fmt"] == "qcow2" and open(f"/dev/{VG}/lv-one-1-0", "rb").read(48 << 20) == open(src, "rb").read())
# links, context, mkswap
r = call("link", f"/dev/{VG}/lv-one-1-0", f"{MP}/datastores/0/1/disk.0")
ok("disk.0 link", os.readlink(f"{MP}/datastores/0/1/disk.0") == f"/dev/{VG}/lv-one-1-0")
import base64
r = call("context_iso", f"{MP}/datastores/0/1/disk.1", {"context.sh": base64.b64encode(b"A=1\n").decode()})
ok("context iso on gfs2", isinstance(r, dict) and r["size"] > 0)
call("lv_create", "lv-one-1-2", 16, thin=False)
r = call("mkswap", f"/dev/{VG}/lv-one-1-2")
ok("mkswap on LV", sh("blkid", "-o", "value", "-s", "TYPE", f"/dev/{VG}/lv-one-1-2").stdout.strip() == "swap")
# snapshot, resize
r = call("lv_snapshot", "lv-one-1-0", "lv-one-1-0-s0")
ok("thick snapshot 13 MiB", isinstance(r, dict) and r["size_mb"] == 13 and call("lv_info", "lv-one-1-0-s0")["snapshot"])
r = call("lv_resize", "lv-one-1-2", "32M")
ok("resize grow", isinstance(r, dict) and call("lv_info", "lv-one-1-2")["size_mb"] == 32)
r = call("lv_resize", "lv-one-1-2", "8M")
ok("resize shrink refused", isinstance(r, CommandExecutionError))
# activation
r = call("lv_deactivate", "lv-one-1-2")
ok("deactivate", not call("lv_info", "lv-one-1-2")["active"])
r = call("lv_activate", "lv-one-1-2", mode="shared")
ok("activate shared", isinstance(r, dict) and call("lv_info", "lv-one-1-2")["active"])
call("lv_deactivate", "lv-one-1-2")
r = call("lv_activate", "lv-one-1-2")
ok("activate exclusive", isinstance(r, dict))
# thin
r = call("lv_create", "lv-one-2-0", "256M")
ok("thin LV in pool", isinstance(r, dict) and r["thin"] and not r["zeroed"])
r = call("copy", src, f"/dev/{VG}/lv-one-2-0", dst_zeroed=True)
info = call("lv_info", "lv-one-2-0")
ok("sparse copy into thin keeps it thin", info["data_percent"] is not None and info["data_percent"] < 5, info)
r = call("lv_snapshot", "lv-one-2-0", "lv-one-2-0-s1")
ok("thin snapshot", isinstance(r, dict) and r["thin"])
r = call("lv_activate", "lv-one-2-0-s1")
ok("thin snapshot activates (-K)", isinstance(r, dict) and call("lv_info", "lv-one-2-0-s1")["active"])
call("lv_deactivate", "lv-one-2-0")
r = call("lv_activate", "lv-one-2-0", mode="shared")
ok("thin shared activation refused before lvchange", isinstance(r, CommandExecutionError) and "thin LVs only exclusively" in str(r))
call("lv_activate", "lv-one-2-0")
# open LV guards
holder = subprocess.Popen(["sleep", "300"], stdin=open(f"/dev/{VG}/lv-one-1-0", "rb"))
time.sleep(0.5)
ok("lv_info sees open", call("lv_info", "lv-one-1-0")["open"])
r = call("lv_snapshot", "lv-one-1-0", "lv-one-1-0-s9")
ok("snapshot of open LV refused", isinstance(r, CommandExecutionError) and "is open" in str(r))
r = call("vm_delete", 1, path=f"{MP}/datastores/0/1")
ok("vm_delete refused while open", isinstance(r, CommandExecutionError) and os.path.exists(f"{MP}/datastores/0/1"))
holder.kill(); holder.wait(); time.sleep(0.5)
r = call("vm_disks", 1)
ok("vm_disks", isinstance(r, dict) and [d["name"] for d in r["disks"]] == ["lv-one-1-0", "lv-one-1-0-s0", "lv-one-1-2"], r)
r = call("orphans")
ok("orphans: VM 2 and 10 LVs", isinstance(r, dict) and sorted(l["name"] for l in r["lvs"]) == ["lv-one-10-0", "lv-one-2-0", "lv-one-2-0-s1"], r)
r = call("lv_remove", "lv-one-10-0", wipe=True)
ok("lv_remove wipe", isinstance(r, dict) and r["wiped"] and not os.path.exists(f"/dev/{VG}/lv-one-10-0"))
r = call("vm_delete", 1, path=f"{MP}/datastores/0/1", wipe=True)
ok("vm_delete removes VM 1 LVs + dir", isinstance(r, dict) and r["removed"] == ["lv-one-1-0-s0", "lv-one-1-0", "lv-one-1-2"] and not os.path.exists(f"{MP}/datastores/0/1"), r)
r = call("orphans_remove", vmids=[], dry_run=False, min_age=0)  # its LVs were made seconds ago
ok("orphans_remove", isinstance(r, dict) and call("lv_list", prefix="lv-one-")["lvs"] == [])
r = call("vg_usage")
ok("vg_usage shared sanlock", r["shared"] and r["lock_type"] == "sanlock" and r["thin_pool"]["name"] == "pool", r)
print(f"{PASS} passed, {FAIL} failed")
sys.exit(1 if FAIL else 0)
