# -*- coding: utf-8 -*-
# vim: ft=yaml
# Example pillar for the gfs2clvm formula: every key, with its default when it
# has one.  REQUIRED keys have no default; rendering fails naming the key.
#
# Layout: one `gfs2clvm:` subtree.  Its top-level scalar keys (vg, mountpoint,
# owner, group, lvm_bin, mount_check, ...) are also the configuration of the
# execution module _modules/gfs2clvm.py (docs/architecture.md "Configuration"):
# the formula copies them into the front-end's salt-ssh roster (minion_opts),
# the module reads them with config.get('gfs2clvm').  The nested keys below are
# formula-only; the module ignores them.
gfs2clvm:
  # ---- module configuration (same meaning on every worker) -------------------
  vg: vg_cloudstorage            # the shared VG
  mountpoint: /var/lib/one       # GFS2 mount point on the workers
  owner: oneadmin
  group: oneadmin
  lvm_bin: /sbin                 # where lvcreate & co live; the sudoers rule uses it
  # mount_check: gfs2            # module-only keys (see docs/architecture.md) may be
  # default_size_mb: 1024        # set here too; they reach the workers through the driver's salt-ssh master (ssh_minion_opts)
  # thin_pool: ''

  # ---- per-family lookups, normally left alone (osfamilymap.yaml) ------------
  # pkgs:
  #   worker: [lvm2, lvm2-lockd, dlm-controld, corosync, gfs2-utils, qemu-utils, genisoimage, sudo, python3-psutil]
  #   libvirt: [libvirt-daemon-system, qemu-system-x86, polkitd]   # only with libvirt:manage
  #   frontend: [openssh-client, python3-yaml]
  # services: {corosync: corosync, dlm: dlm, lvmlockd: lvmlockd, lvmlocks: lvmlocks, libvirt: libvirtd}

  oneadmin:
    uid: 9869                    # OpenNebula's packaged ids; identical on all nodes (GFS2 stores numbers)
    gid: 9869
    home: /var/lib/one
    shell: /bin/bash
    authorized_keys:             # the front-end oneadmin's public key(s), written to the shared home
      - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleExampleExampleExampleExampleExample oneadmin@frontend

  # node_name: node1            # this node's name in cluster:nodes when neither the minion id
  #                              # nor the hostname is (set it per node)
  cluster:
    name: onecluster             # REQUIRED: corosync cluster_name (<= 32 chars) = GFS2 lock table prefix
    transport: knet
    token: 3000                  # ms
    crypto_cipher: aes256        # knet encryption + authentication; none/none = anyone on the network may join
    crypto_hash: sha256
    # /etc/corosync/authkey, base64 (REQUIRED with crypto). EXAMPLE ONLY -- it decodes to a
    # public text; make your own on one machine and paste it here (or use authkey_source):
    #   corosync-keygen -k /tmp/authkey && base64 -w0 /tmp/authkey && shred -u /tmp/authkey
    authkey: RVhBTVBMRS1PTkxZLWdlbmVyYXRlLXlvdXItb3duLXdpdGgtY29yb3N5bmMta2V5Z2VuL0VYQU1QTEUtT05MWS1nZW5lcmF0ZS15b3VyLW93bi13aXRoLWNvcm9zeW5jLWtleWdlbi9FWEFNUExFLU9OTFktZ2VuZXJhdGUteW91ci1vd24td2l0aC1jb3Jvc3luYy1rZXlnZW4vRVhBTVBMRS1PTkxZLWdlbmVyYXRlLXlvdXItb3duLXdpdGgtY29yb3N5bmMta2V5Z2VuL0VYQU1QTEUtT05MWS1nZW5lcmF0ZS15b3VyLW93bi13aXRoLWNvcm9zeW5jLWtleQ==
    # authkey_source: salt://secrets/corosync-authkey   # instead: the key file, off the pillar
    two_node: null               # null = automatic (exactly two nodes -> two_node: 1)
    nodes:                       # REQUIRED: name = salt minion id / roster id of the worker
      - name: node1
        nodeid: 1
        ring0_addr: 192.0.2.11   # corosync address
        # ssh_host: node1.example.org   # how the front-end reaches it (default ring0_addr)
        # ssh_port: 22
      - name: node2
        nodeid: 2
        ring0_addr: 192.0.2.12

  dlm:
    enable_fencing: 1            # keep 1 in production; 0 only in a lab
    enable_startup_fencing: 1
    extra: {}                    # more /etc/dlm/dlm.conf lines, e.g. {post_join_delay: 10}

  lvm:
    use_lvmlockd: 1
    global_filter: []            # e.g. ['a|^/dev/mapper/mpath.*|', 'r|.*|']
    creator: node1               # REQUIRED: the one node that runs vgcreate, lvcreate and mkfs.gfs2
    pvs: [/dev/mapper/mpatha]    # REQUIRED on the creator: devices of the shared VG
    lock_type: dlm
    wait_timeout: 600            # s the other nodes wait for the VG, the LV and the filesystem

  gfs2:
    lv: gfs2
    size: 10G
    fsname: one                  # lock table = <cluster:name>:<fsname>
    journals: null               # null = max(2, number of nodes); one per node that mounts it
    journal_size_mb: 128
    opts: [noatime]

  udev:
    rules_file: /etc/udev/rules.d/99-gfs2clvm-lv.rules
    dev_group: disk
    mode: '0660'

  sudoers:                       # (the module key `sudo` is auto/true/false)
    file: /etc/sudoers.d/gfs2clvm
    # exactly what _modules/gfs2clvm.py runs with `sudo -n` (each with an argument pattern
    # in files/worker/sudoers.jinja; a name without one fails rendering); also known:
    # lvconvert (--merge of a driver snapshot), blkdiscard (a driver volume)
    commands: [lvcreate, lvremove, lvchange, lvs, vgs, lvextend, lvconvert]
    visudo: /usr/sbin/visudo

  libvirt:
    manage: true                 # qemu.conf (dynamic_ownership = 0, user/group oneadmin), polkit, libvirtd
    qemu_conf: /etc/libvirt/qemu.conf
    polkit_rule: /etc/polkit-1/rules.d/50-gfs2clvm-libvirt.rules

  modules_dir: /usr/lib/gfs2clvm/_modules   # where workers get _modules/*.py (roster module_dirs)

  selinux: {}                    # RedHat family only (manage: true there by default), e.g.:
    # manage: true
    # booleans: {virt_use_sanlock: false}
    # fcontexts: {'/var/lib/one/datastores(/.*)?': virt_image_t}

  frontend:
    enabled: false               # true on the OpenNebula front-end minion
    remotes: /var/lib/one/remotes
    oned_conf: /etc/one/oned.conf
    driver_conf: /etc/one/gfs2clvm.conf
    salt_dir: /etc/one/gfs2clvm  # master config, roster, Saltfile of the driver's salt-ssh
    salt_ssh: /usr/bin/salt-ssh
    ssh_priv: /var/lib/one/.ssh/id_rsa
    thin_dir: /var/tmp/.gfs2clvm_salt
    ssh_port: 22
    known_hosts: /var/lib/one/.ssh/known_hosts
    tm_mad_conf:
      LN_TARGET: SYSTEM
      CLONE_TARGET: SYSTEM
      SHARED: 'YES'
      DRIVER: raw
      DISK_TYPE: BLOCK
      DS_MIGRATE: 'YES'
    ds_mad_conf:
      REQUIRED_ATTRS: ''
      PERSISTENT_ONLY: 'NO'
      MARKETPLACE_ACTIONS: ''
    # the roster's entries belong to `gfs2clvm-host`; enroll: true runs `gfs2clvm-host add`
    # once for every cluster:nodes item not in the roster yet (never rewrites or drops one)
    enroll: true
    tool_dir: /usr/lib/gfs2clvm                # root's copy of gfs2clvm-host and its library
    tool_link: /usr/local/bin/gfs2clvm-host    # on PATH
    python: /usr/bin/python3                   # runs gfs2clvm-host in the enrolment states
    conf: {}                                # more /etc/one/gfs2clvm.conf keys (timeout, mount_check, bridge_list, ...)
    datastores: {}               # per-datastore overrides in gfs2clvm.conf, e.g. {100: {vg: vg_other}}
    install_one_3_2: false       # also the seed's 3.2 adapters in /usr/lib/one/tm_commands/gfs2clvm
    # templates for `onedatastore create` in <salt_dir>/datastores (system.ds, images.ds);
    # BRIDGE_LIST defaults to the cluster:nodes names, TYPE/DS_MAD/TM_MAD and
    # DISK_TYPE = BLOCK are fixed (docs/oned.conf.md "Datastores")
    ds_templates:
      system: {NAME: gfs2clvm_system}
      images: {NAME: gfs2clvm_images, VG_NAME: vg_cloudstorage, SAFE_DIRS: /var/tmp /srv/images, RESTRICTED_DIRS: /etc}
