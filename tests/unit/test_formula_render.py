# SPDX-License-Identifier: Apache-2.0
"""The gfs2clvm formula rendered by Salt (salt-call --local state.show_sls) for
both OS families, as a creator node, another node and the front-end; the
missing-pillar errors; the formula's house rules (tplroot, IDs)."""

import re
from pathlib import Path

import pytest
from formula_render import REPO, RenderError, args, render_file, show_sls

FORMULA = REPO / "salt" / "gfs2clvm"
FAMILIES = ["Debian", "RedHat"]


@pytest.fixture(scope="module", params=FAMILIES)
def worker(request):
    return request.param, show_sls("gfs2clvm", os_family=request.param, minion_id="node1")


@pytest.fixture(scope="module")
def worker2():
    return show_sls("gfs2clvm", minion_id="node2")


@pytest.fixture(scope="module", params=FAMILIES)
def frontend(request):
    return request.param, show_sls(
        "gfs2clvm", os_family=request.param, minion_id="frontend", pillar={"gfs2clvm": {"frontend": {"enabled": True}}}
    )


def test_every_sls_starts_with_tplroot_and_imports_mapdata():
    for sls in FORMULA.rglob("*.sls"):
        text = sls.read_text()
        if "include:" in text and "mapdata" not in text and "tplroot" not in text:
            continue  # include-only files (worker/init.sls, frontend/init.sls)
        assert "{%- set tplroot = tpldir.split('/')[0] %}" in text, sls
        assert re.search(r'from tplroot ~ "/map.jinja" import mapdata', text), sls


def test_ids_follow_the_convention(worker, frontend):
    for _, high in (worker, frontend):
        for sid, state in high.items():
            sls = state["__sls__"].split(".", 1)[1].replace(".", "-")
            assert sid.startswith(f"gfs2clvm-{sls}-"), (sid, state["__sls__"])
            module = [k for k in state if not k.startswith("__") and k != "order"][0]
            assert f"-{module}-" in sid, sid


def test_worker_node_gets_worker_states_only(worker):
    _, high = worker
    assert {s["__sls__"].split(".")[1] for s in high.values()} == {"worker"}


def test_packages_per_family(worker):
    family, high = worker
    pkgs = args(high["gfs2clvm-worker-package-pkg-installed"])["pkgs"]
    common = {"lvm2", "lvm2-lockd", "corosync", "gfs2-utils", "sudo", "python3-psutil"}
    assert common <= set(pkgs)
    virt = args(high["gfs2clvm-worker-libvirt-pkg-installed"])["pkgs"]
    if family == "Debian":
        assert {"dlm-controld", "qemu-utils", "genisoimage", "python3-psutil"} <= set(pkgs)
        assert virt == ["libvirt-daemon-system", "qemu-system-x86", "polkitd"]
    else:
        assert {"dlm", "qemu-img", "xorriso"} <= set(pkgs)
        assert virt == ["libvirt", "qemu-kvm", "polkit"]


def test_libvirt_can_be_left_alone():
    high = show_sls("gfs2clvm.worker", pillar={"gfs2clvm": {"libvirt": {"manage": False}}})
    assert not [sid for sid in high if "libvirt" in sid]
    assert "libvirt-daemon-system" not in args(high["gfs2clvm-worker-package-pkg-installed"])["pkgs"]


def test_node_found_by_hostname_when_the_roster_id_differs():
    """salt-ssh's minion id is the roster name (node2-root); the hostname is node2."""
    high = show_sls("gfs2clvm", minion_id="node2-root", grains={"nodename": "node2"})
    assert args(high["gfs2clvm-worker-storage-vg-gfs2clvm-vg_shared"])["create"] is False
    assert not [sid for sid in high if "frontend" in sid]


def test_node_name_from_pillar():
    high = show_sls("gfs2clvm", minion_id="node2-root", pillar={"gfs2clvm": {"node_name": "node2"}})
    assert args(high["gfs2clvm-worker-storage-vg-gfs2clvm-vg_shared"])["create"] is False
    high = show_sls("gfs2clvm", minion_id="node1-root", pillar={"gfs2clvm": {"node_name": "node1"}})
    assert args(high["gfs2clvm-worker-storage-vg-gfs2clvm-vg_shared"])["create"] is True


def test_sudoers_per_family(worker):
    family, high = worker
    sudo = args(high["gfs2clvm-worker-access-sudoers-file-managed"])
    # /sbin on both families (EL9 and Debian 12 have /sbin -> usr/sbin; the module's default)
    assert sudo["context"]["lvm_bin"] == "/sbin"
    assert sudo["check_cmd"] == "/usr/sbin/visudo -c -q -f"
    assert sudo["mode"] == "0440"
    # the example pillar's list = what the module runs with sudo (it listed lvconvert and
    # blkdiscard, which the template had no pattern for: issue 13.1)
    assert sudo["context"]["commands"] == ["lvcreate", "lvremove", "lvchange", "lvs", "vgs", "lvextend", "lvconvert"]


def test_selinux_only_on_redhat(worker):
    family, high = worker
    selinux = [sid for sid in high if "selinux" in sid]
    if family == "Debian":
        assert selinux == []
    else:
        fc = args(high["gfs2clvm-worker-libvirt-fcontext-1-selinux-fcontext_policy_present"])
        assert fc == {"fun": "selinux.fcontext_policy_present", "name": "/var/lib/one/datastores(/.*)?",
                      "sel_type": "virt_image_t"}


def test_oneadmin_fixed_ids(worker):
    _, high = worker
    user = args(high["gfs2clvm-worker-user-user-present"])
    assert (user["name"], user["uid"], user["gid"], user["home"]) == ("oneadmin", 9869, 9869, "/var/lib/one")
    assert args(high["gfs2clvm-worker-user-group-present"])["gid"] == 9869


def test_libvirt_qemu_conf(worker):
    _, high = worker
    kv = args(high["gfs2clvm-worker-libvirt-qemu-file-keyvalue"])
    assert kv["key_values"] == {"dynamic_ownership": "0", "user": '"oneadmin"', "group": '"oneadmin"'}
    assert kv["separator"] == " = " and kv["uncomment"] == "#"
    assert "watch" in args(high["gfs2clvm-worker-libvirt-service-running"])


def test_creator_creates_and_others_wait(worker, worker2):
    _, high1 = worker
    for sid in (
        "gfs2clvm-worker-storage-vg-gfs2clvm-vg_shared",
        "gfs2clvm-worker-storage-lv-gfs2clvm-lv_shared",
        "gfs2clvm-worker-storage-fs-gfs2clvm-gfs2_formatted",
    ):
        assert args(high1[sid])["create"] is True
        assert args(worker2[sid])["create"] is False
    vg = args(high1["gfs2clvm-worker-storage-vg-gfs2clvm-vg_shared"])
    assert vg == {
        "fun": "gfs2clvm.vg_shared", "name": "vg_cloudstorage", "devices": ["/dev/mapper/mpatha"],
        "create": True, "lock_type": "dlm", "timeout": 600,
        "require": [{"service": "gfs2clvm-worker-lvm-lvmlockd-service-running"}],
    }
    fs = args(high1["gfs2clvm-worker-storage-fs-gfs2clvm-gfs2_formatted"])
    assert (fs["name"], fs["locktable"], fs["journals"]) == ("/dev/vg_cloudstorage/gfs2", "onecluster:one", 2)


def test_mount_and_owner(worker):
    _, high = worker
    mount = args(high["gfs2clvm-worker-storage-mount-mount-mounted"])
    assert (mount["name"], mount["device"], mount["fstype"], mount["opts"]) == (
        "/var/lib/one", "/dev/vg_cloudstorage/gfs2", "gfs2", "noatime")
    dirs = args(high["gfs2clvm-worker-storage-mountpoint-file-directory"])
    assert (dirs["user"], dirs["group"]) == ("oneadmin", "oneadmin")
    keys = args(high["gfs2clvm-worker-storage-authorized-keys-file-managed"])
    assert keys["name"] == "/var/lib/one/.ssh/authorized_keys" and keys["mode"] == "0600"


def test_udev_reload_only_on_change_and_dashes_doubled():
    high = show_sls("gfs2clvm.worker.access", pillar={"gfs2clvm": {"vg": "vg-san-1"}})
    cmd = args(high["gfs2clvm-worker-access-udev-cmd-run"])
    assert cmd["onchanges"] == [{"file": "gfs2clvm-worker-access-udev-file-managed"}]
    assert cmd["name"].startswith("udevadm control --reload")
    assert "DM_NAME=vg--san--1-lv--one--*" in cmd["name"]
    assert args(high["gfs2clvm-worker-access-udev-file-managed"])["context"]["vg_dm"] == "vg--san--1"


def test_journals_follow_the_node_count():
    nodes = [{"name": f"node{i}", "nodeid": i, "ring0_addr": f"10.0.0.{i}"} for i in range(1, 5)]
    high = show_sls("gfs2clvm.worker.storage", pillar={"gfs2clvm": {"cluster": {"nodes": nodes}}})
    assert args(high["gfs2clvm-worker-storage-fs-gfs2clvm-gfs2_formatted"])["journals"] == 4


def test_corosync_context_two_node(worker):
    _, high = worker
    ctx = args(high["gfs2clvm-worker-cluster-corosync-file-managed"])["context"]
    assert ctx["two_node"] is True and ctx["cluster"]["name"] == "onecluster"
    assert [n["name"] for n in ctx["cluster"]["nodes"]] == ["node1", "node2"]


@pytest.mark.parametrize(
    "pillar, key",
    [
        ({"cluster": {"name": None}}, "gfs2clvm:cluster:name"),
        ({"cluster": {"nodes": []}}, "gfs2clvm:cluster:nodes"),
        ({"lvm": {"creator": None}}, "gfs2clvm:lvm:creator"),
        ({"lvm": {"pvs": []}}, "gfs2clvm:lvm:pvs"),
    ],
)
def test_missing_required_pillar_key_names_it(pillar, key):
    with pytest.raises(RenderError) as err:
        show_sls("gfs2clvm.worker", pillar={"gfs2clvm": pillar})
    assert f"missing required pillar key {key}" in str(err.value)


def test_no_pillar_at_all_fails_naming_the_first_key():
    with pytest.raises(RenderError) as err:
        show_sls("gfs2clvm.worker", example=False)
    assert "missing required pillar key gfs2clvm:cluster:name" in str(err.value)


def test_pvs_not_required_on_other_nodes():
    high = show_sls("gfs2clvm.worker.storage", minion_id="node2", pillar={"gfs2clvm": {"lvm": {"pvs": []}}})
    assert args(high["gfs2clvm-worker-storage-vg-gfs2clvm-vg_shared"])["devices"] == []


def test_frontend_states(frontend):
    family, high = frontend
    assert {s["__sls__"].split(".")[1] for s in high.values()} == {"frontend"}
    recurse = {args(s)["name"]: args(s) for sid, s in high.items() if sid.endswith("file-recurse")}
    assert recurse["/var/lib/one/remotes/tm/gfs2clvm"]["source"] == "salt://tm_commands/tm/gfs2clvm"
    assert recurse["/var/lib/one/remotes/tm/gfs2clvm"]["file_mode"] == "0755"
    assert recurse["/var/lib/one/remotes/datastore/gfs2clvm"]["source"] == "salt://tm_commands/datastore/gfs2clvm"
    assert recurse["/var/lib/one/remotes/lib/gfs2clvm_driver"]["source"] == "salt://tm_commands/lib/gfs2clvm_driver"
    pkgs = args(high["gfs2clvm-frontend-package-pkg-installed"])["pkgs"]
    assert pkgs == (["openssh-client", "python3-yaml"] if family == "Debian" else ["openssh-clients", "python3-pyyaml"])
    conf = args(high["gfs2clvm-frontend-driver-conf-file-serialize"])
    assert conf["name"] == "/etc/one/gfs2clvm.conf"
    assert conf["dataset"]["saltfile"] == "/etc/one/gfs2clvm/Saltfile"
    assert conf["dataset"]["vg"] == "vg_cloudstorage"


def _ds_template(high, kind):
    state = args(high[f"gfs2clvm-frontend-datastores-{kind}-file-managed"])
    text = render_file("frontend/datastore.jinja", **state["context"])
    attrs = dict(re.findall(r'^([A-Z_]+) = "(.*)"$', text, re.M))
    return state["name"], attrs


def test_frontend_system_ds_template_has_disk_type_block(frontend):
    """Issue 19.1: volatile and swap disks take the system datastore's DISK_TYPE
    (OpenNebula 7.4 Datastore.cc:198-200; FILE without one, Datastore.cc:574-577), and
    qemu's file driver refuses the LV symlink: the system DS template says BLOCK."""
    _, high = frontend
    name, attrs = _ds_template(high, "system")
    assert name == "/etc/one/gfs2clvm/datastores/system.ds"
    assert attrs == {"NAME": "gfs2clvm_system", "TYPE": "SYSTEM_DS", "TM_MAD": "gfs2clvm", "DISK_TYPE": "BLOCK",
                     "BRIDGE_LIST": "node1 node2"}
    name, attrs = _ds_template(high, "images")
    assert name == "/etc/one/gfs2clvm/datastores/images.ds"
    assert attrs == {"NAME": "gfs2clvm_images", "DS_MAD": "gfs2clvm", "TM_MAD": "gfs2clvm", "DISK_TYPE": "BLOCK",
                     "BRIDGE_LIST": "node1 node2", "VG_NAME": "vg_cloudstorage",
                     "SAFE_DIRS": "/var/tmp /srv/images", "RESTRICTED_DIRS": "/etc"}


def test_frontend_ds_templates_from_pillar_keep_disk_type_block():
    high = show_sls("gfs2clvm.frontend", minion_id="frontend", pillar={"gfs2clvm": {"frontend": {
        "enabled": True, "ds_templates": {"system": {"NAME": 'sys "x"', "DISK_TYPE": "FILE",
                                                     "BRIDGE_LIST": "node2"}}}}})
    _, attrs = _ds_template(high, "system")
    assert (attrs["NAME"], attrs["DISK_TYPE"], attrs["BRIDGE_LIST"]) == ('sys \\"x\\"', "BLOCK", "node2")


def test_frontend_installs_gfs2clvm_host(frontend):
    """root's own copy of the tool and its library (remotes/ is oneadmin's), linked onto PATH."""
    _, high = frontend
    lib = args(high["gfs2clvm-frontend-driver-tool-lib-file-recurse"])
    assert (lib["name"], lib["source"]) == ("/usr/lib/gfs2clvm/lib/gfs2clvm_driver", "salt://tm_commands/lib/gfs2clvm_driver")
    assert (lib["user"], lib["group"], lib["file_mode"]) == ("root", "root", "0644")
    tool = args(high["gfs2clvm-frontend-driver-tool-bin-file-managed"])
    assert (tool["name"], tool["source"]) == ("/usr/lib/gfs2clvm/bin/gfs2clvm-host", "salt://tm_commands/bin/gfs2clvm-host")
    assert (tool["user"], tool["mode"]) == ("root", "0755")
    link = args(high["gfs2clvm-frontend-driver-tool-link-file-symlink"])
    assert (link["name"], link["target"]) == ("/usr/local/bin/gfs2clvm-host", "/usr/lib/gfs2clvm/bin/gfs2clvm-host")


def test_frontend_roster_belongs_to_gfs2clvm_host(frontend):
    """The formula creates the roster (oneadmin's, never rewritten) and enrols each
    cluster node with gfs2clvm-host add; the shared settings live in the master config."""
    _, high = frontend
    assert not [sid for sid in high if "roster-file-serialize" in sid or "known_hosts" in sid]
    roster = args(high["gfs2clvm-frontend-saltssh-roster-file-managed"])
    assert (roster["name"], roster["contents"], roster["replace"]) == ("/etc/one/gfs2clvm/roster", "{}", False)
    assert (roster["user"], roster["group"], roster["mode"]) == ("oneadmin", "oneadmin", "0644")
    assert args(high["gfs2clvm-frontend-saltssh-dir-file-directory"])["mode"] == "1770"
    master = args(high["gfs2clvm-frontend-saltssh-master-file-serialize"])["dataset"]
    assert master["ssh_minion_opts"] == {
        "module_dirs": ["/usr/lib/gfs2clvm/_modules"],
        "gfs2clvm": {"vg": "vg_cloudstorage", "mountpoint": "/var/lib/one", "owner": "oneadmin",
                     "group": "oneadmin", "lvm_bin": "/sbin"},
    }
    assert master["roster_file"] == "/etc/one/gfs2clvm/roster"
    assert master["known_hosts_file"] == "/var/lib/one/.ssh/known_hosts"
    enrol = {sid: args(s) for sid, s in high.items() if "-enroll-" in sid}
    assert sorted(enrol) == ["gfs2clvm-frontend-saltssh-enroll-node1-module-run",
                             "gfs2clvm-frontend-saltssh-enroll-node2-module-run"]
    run = enrol["gfs2clvm-frontend-saltssh-enroll-node1-module-run"]["cmd.run_all"]
    run = {key: value for item in run for key, value in item.items()}
    assert run == {
        "cmd": ["/usr/bin/python3", "/usr/lib/gfs2clvm/bin/gfs2clvm-host", "add", "node1",
                "--address", "192.0.2.11", "--port", "22", "--user", "oneadmin",
                "--priv", "/var/lib/one/.ssh/id_rsa", "--thin-dir", "/var/tmp/.gfs2clvm_salt", "--no-check"],
        "python_shell": False,
        "env": {"GFS2CLVM_CONF": "/etc/one/gfs2clvm.conf"},
    }
    saltfile = args(high["gfs2clvm-frontend-saltssh-saltfile-file-serialize"])["dataset"]
    assert saltfile == {"salt-ssh": {"config_dir": "/etc/one/gfs2clvm", "log_level": "warning"}}


def test_frontend_enrolment_can_be_left_to_the_admin():
    high = show_sls("gfs2clvm.frontend.saltssh", minion_id="frontend",
                    pillar={"gfs2clvm": {"frontend": {"enabled": True, "enroll": False}}})
    assert not [sid for sid in high if "-enroll-" in sid]
    assert "gfs2clvm-frontend-saltssh-roster-file-managed" in high


def test_frontend_one_3_2_adapters_optional():
    high = show_sls(
        "gfs2clvm.frontend.driver",
        minion_id="frontend",
        pillar={"gfs2clvm": {"frontend": {"install_one_3_2": True}}},
    )
    one32 = args(high["gfs2clvm-frontend-driver-one32-file-recurse"])
    assert (one32["name"], one32["source"]) == ("/usr/lib/one/tm_commands/gfs2clvm", "salt://tm_commands/one-3.2")


@pytest.mark.parametrize("family", FAMILIES)
def test_clean_renders(family):
    high = show_sls("gfs2clvm.clean", os_family=family)
    funs = {args(s)["fun"] for s in high.values()}
    assert "mount.unmounted" in funs and "file.absent" in funs
    # clean never removes data
    text = "".join(str(s) for s in high.values())
    for forbidden in ("vgremove", "lvremove", "wipefs", "mkfs"):
        assert forbidden not in text


def test_example_top_files_exist():
    assert "gfs2clvm.worker" in (REPO / "salt" / "top.sls").read_text()
    assert "gfs2clvm" in (REPO / "pillar" / "top.sls").read_text()


def test_every_state_id_unique_across_sls_files():
    ids = []
    for sls in FORMULA.rglob("*.sls"):
        ids += re.findall(r"^(gfs2clvm-[\w-]+):\s*$", sls.read_text(), re.M)
    assert len(ids) == len(set(ids))
    assert Path(FORMULA / "map.jinja").exists()


def test_frontend_saltssh_service_units(frontend):
    """The driver's salt-ssh service: socket-activated (Accept=no), oneadmin, restarted on
    failure, journal; enabled and started by the formula, restarted when the library changes."""
    from formula_render import render_file  # pylint: disable=import-outside-toplevel

    _, high = frontend
    units = {u: args(high[f"gfs2clvm-frontend-service-{u}-file-managed"]) for u in ("socket", "service")}
    assert units["socket"]["name"] == "/etc/systemd/system/gfs2clvm-saltssh.socket"
    assert units["service"]["name"] == "/etc/systemd/system/gfs2clvm-saltssh.service"
    context = units["service"]["context"]
    assert context == units["socket"]["context"] == {
        "socket": "/run/gfs2clvm-saltssh.sock", "user": "oneadmin", "group": "oneadmin", "python": "/usr/bin/python3",
        "driver_conf": "/etc/one/gfs2clvm.conf", "service": "/usr/lib/gfs2clvm/lib/gfs2clvm_driver/service.py"}
    socket_unit = render_file("frontend/gfs2clvm-saltssh.socket.jinja", **context)
    for line in ("ListenStream=/run/gfs2clvm-saltssh.sock", "SocketUser=oneadmin", "SocketMode=0600", "Accept=no",
                 "WantedBy=sockets.target"):
        assert re.search(f"^{re.escape(line)}$", socket_unit, re.M), line
    service_unit = render_file("frontend/gfs2clvm-saltssh.service.jinja", **context)
    for line in ("User=oneadmin", "Restart=on-failure", "Environment=GFS2CLVM_CONF=/etc/one/gfs2clvm.conf",
                 "ExecStart=/usr/bin/python3 /usr/lib/gfs2clvm/lib/gfs2clvm_driver/service.py",
                 "Requires=gfs2clvm-saltssh.socket", "RuntimeDirectory=gfs2clvm-saltssh"):
        assert re.search(f"^{re.escape(line)}$", service_unit, re.M), line
    assert "StandardOutput" not in service_unit  # stdout/stderr: the journal
    running = args(high["gfs2clvm-frontend-service-socket-service-running"])
    assert (running["name"], running["enable"]) == ("gfs2clvm-saltssh.socket", True)
    restart = args(high["gfs2clvm-frontend-service-restart-cmd-run"])
    assert "try-restart gfs2clvm-saltssh.service" in restart["name"]
    assert {"file": "gfs2clvm-frontend-driver-tool-lib-file-recurse"} in restart["onchanges"]
    conf = args(high["gfs2clvm-frontend-driver-conf-file-serialize"])["dataset"]
    assert conf["saltssh_socket"] == "/run/gfs2clvm-saltssh.sock"
