#!/bin/bash
# gfs2clvm lab: a two-worker (or N-worker) SAN cluster on this machine.
# Debian's own kernel under qemu TCG (never KVM); the guest's root is the host's / read-only
# over 9p + a tmpfs overlay + a per-guest seed; systemd is PID 1 (lab.target); one sparse raw
# SAN image shared by all guests; a guest<->guest socket link on 127.0.0.1 (169.254.77.0/24);
# sshd on a 127.0.0.1 hostfwd port per guest. See docs/lab.md.
#
#   lab.sh build              initramfs + vmlinux (from /boot/vmlinuz-*) + lab ssh key
#   lab.sh up [N]             boot N guests node1..nodeN (default 2), wait for ssh, pin host keys,
#                             write the salt-ssh roster/Saltfile/master config (front-end side)
#   lab.sh provision          node configuration: the formula's salt/gfs2clvm/worker by salt-ssh as
#                             root (state.apply gfs2clvm.worker), then the driver set-up's thin deployed
#   lab.sh status             one line per guest; exit 0 only if every guest answers ssh
#   lab.sh ssh [-u USER] NODE [cmd...]    plain ssh (root by default, or oneadmin)
#   lab.sh salt [salt-ssh args...]        the host's salt-ssh with the lab's Saltfile
#   lab.sh down               stop every guest of this lab (poweroff, then its own process group)
#   lab.sh env                print the lab's paths and ports (shell syntax)
#
# Environment:
#   LAB_DIR        all state (default <repo>/.lab; must be on ext4/xfs: cache=none needs O_DIRECT)
#   LAB_PORT_BASE  ssh port of node1 (default 2201; nodeI = base+I-1); link ports 24001+(base-2201)+k
#   LAB_TIMEOUT    hard lifetime of each qemu in s (default 10800), enforced by timeout(1)
#   LAB_MEM        MiB per guest (default 1024)     LAB_DISK_SIZE  SAN image size (default 8G)
#   LAB_KEEP_DISK=1  'up' keeps an existing SAN image (default: a fresh blank one per 'up')
#   LAB_BOOT_TIMEOUT s to wait for all guests' sshd (default 360)
#   SALT_SSH       salt-ssh binary (default <repo>/.venv/bin/salt-ssh)
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
LABSRC=$REPO/lab
LAB_DIR=${LAB_DIR:-$REPO/.lab}
PORT_BASE=${LAB_PORT_BASE:-2201}
LINK_BASE=$((24001 + PORT_BASE - 2201))
TMO=${LAB_TIMEOUT:-10800}
MEM=${LAB_MEM:-1024}
DISK_SIZE=${LAB_DISK_SIZE:-8G}
BOOT_TIMEOUT=${LAB_BOOT_TIMEOUT:-360}
SALT_SSH=${SALT_SSH:-$REPO/.venv/bin/salt-ssh}
QEMU=${QEMU:-qemu-system-x86_64}
KVER=${LAB_KVER:-$(for k in /boot/vmlinuz-*; do [ -e "$k" ] && echo "${k#/boot/vmlinuz-}"; done | sort -V | tail -1)}
BZIMAGE=/boot/vmlinuz-$KVER
VMLINUX=$LAB_DIR/kernel/vmlinux-$KVER
INITRD=$LAB_DIR/kernel/initramfs-$KVER.cpio.gz
SSHDIR=$LAB_DIR/ssh
CMDIR=$SSHDIR/cm
KEY=$SSHDIR/id_ed25519
KNOWN=$SSHDIR/known_hosts
SAN=$LAB_DIR/san.img
VMS=$LAB_DIR/vms
SALTDIR=$LAB_DIR/salt
SALTFILE=$LAB_DIR/Saltfile
PILLAR=$LAB_DIR/pillar
CLUSTER=gfs2lab
SET_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
DRIVER_MODULES=/usr/lib/gfs2clvm/_modules   # the formula's modules_dir (salt/gfs2clvm/defaults.yaml)
INITRD_MODS="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay"
# what a storage node does not need; each costs 0.3-1.8 s of TCG time at boot (docs/lab.md)
MASK="apparmor.service systemd-timesyncd.service systemd-pstore.service
 apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer fstrim.timer man-db.timer
 systemd-update-utmp.service systemd-journal-flush.service systemd-random-seed.service blk-availability.service
 dev-hugepages.mount dev-mqueue.mount sys-kernel-debug.mount sys-kernel-tracing.mount sys-fs-fuse-connections.mount
 modprobe@drm.service modprobe@fuse.service modprobe@loop.service systemd-binfmt.service
 proc-sys-fs-binfmt_misc.automount kmod-static-nodes.service wdmd.service"

die() { echo "lab: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
node_port() { echo $((PORT_BASE + ${1#node} - 1)); }
node_ip() { echo "169.254.77.${1#node}"; }
nodes() { local f; for f in "$VMS"/node*.pid; do [ -e "$f" ] && basename "$f" .pid; done | sort -V; }
alive() { local p; p=$(cat "$VMS/$1.pid" 2>/dev/null) && kill -0 "$p" 2>/dev/null; }

ssh_argv() { # USER NODE -> SSHA
  local port; port=$(cat "$VMS/$2.port" 2>/dev/null) || die "no guest $2 in $LAB_DIR (lab.sh up)"
  # one multiplexed connection per user and guest (shared with the tests and salt-ssh):
  # a new ssh handshake costs ~0.5 s of the guest's emulated CPU, a new session far less
  SSHA=(ssh -F /dev/null -p "$port" -i "$KEY" -o IdentitiesOnly=yes -o BatchMode=yes
    -o UserKnownHostsFile="$KNOWN" -o StrictHostKeyChecking=yes -o ConnectTimeout=15
    -o ServerAliveInterval=15 -o ServerAliveCountMax=8 -o LogLevel=ERROR
    -o ControlMaster=auto -o "ControlPath=$CMDIR/%C" -o ControlPersist=300 "$1@127.0.0.1")
}

cmd_build() {
  [ -n "$KVER" ] && [ -f "$BZIMAGE" ] || die "no /boot/vmlinuz-*: apt-get install linux-image-amd64"
  [ -d "/lib/modules/$KVER" ] || die "no /lib/modules/$KVER"
  # busybox must be the static one (the initramfs has no libc): ldd says "not a dynamic executable"
  [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || die "need a static /bin/busybox: apt-get install busybox-static"
  command -v "$QEMU" >/dev/null || die "no $QEMU: apt-get install qemu-system-x86"
  local tool pkg
  # host tools of the lab (ip also runs in the guests, from the host's / over 9p)
  for tool in ss:iproute2 ip:iproute2 ssh-keyscan:openssh-client ssh-keygen:openssh-client \
      cpio:cpio modinfo:kmod python3:python3 setsid:util-linux /usr/sbin/sshd:openssh-server; do
    pkg=${tool#*:}; tool=${tool%%:*}
    command -v "$tool" >/dev/null || die "no $tool on this host: apt-get install $pkg"
  done
  mkdir -p "$LAB_DIR/kernel" "$SSHDIR" "$CMDIR" "$VMS"; chmod 700 "$SSHDIR" "$CMDIR"
  local t m f; t=$(mktemp -d "$LAB_DIR/initrd.XXXXXX")
  mkdir -p "$t"/{bin,dev,proc,sys,lower,rw,newroot,mods}
  cp /bin/busybox "$t/bin/busybox"
  mknod -m 600 "$t/dev/console" c 5 1
  mknod -m 666 "$t/dev/null" c 1 3
  for m in $INITRD_MODS; do
    f=$(modinfo -k "$KVER" -n "$m") || die "module $m not found for $KVER"
    case "$f" in
      *.ko.xz) xz -dc "$f" >"$t/mods/$m.ko" ;; *.ko.zst) zstd -qdc "$f" >"$t/mods/$m.ko" ;;
      *.ko.gz) gzip -dc "$f" >"$t/mods/$m.ko" ;; *) cp "$f" "$t/mods/$m.ko" ;;
    esac
  done
  echo "$INITRD_MODS" >"$t/mods/order"
  install -m 755 "$LABSRC/initramfs-init" "$t/init"
  (cd "$t" && find . | cpio -o -H newc --quiet | gzip -1) >"$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"; rm -rf "$t"
  # the ELF inside the bzImage boots directly (PVH note), ~2.5 s faster than SeaBIOS + bzImage
  if [ ! -f "$VMLINUX" ]; then
    python3 - "$BZIMAGE" "$VMLINUX.tmp" <<'PY' && mv "$VMLINUX.tmp" "$VMLINUX" || { rm -f "$VMLINUX.tmp"; echo "lab: no vmlinux extracted, booting the bzImage"; }
import lzma, re, sys
d = open(sys.argv[1], 'rb').read()
off = d.find(b'\xfd7zXZ\x00'); assert off > 0
out = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(d[off:])
assert out[:4] == b'\x7fELF'
assert re.search(rb'\x04\x00\x00\x00.\x00\x00\x00\x12\x00\x00\x00Xen\x00', out, re.S)
open(sys.argv[2], 'wb').write(out)
PY
  fi
  [ -f "$KEY" ] || ssh-keygen -q -t ed25519 -N '' -C gfs2clvm-lab -f "$KEY"
  echo "lab: built $INITRD for kernel $KVER (state in $LAB_DIR)"
}

port_busy() { # tcp port listening on 127.0.0.1?
  ss -Htln "sport = :$1" 2>/dev/null | grep -q .
}

qemu_args() { # NODE N RUN -> QARGS
  local node=$1 n=$2 run=$3 i=${1#node} k kernel=$BZIMAGE
  [ -f "$VMLINUX" ] && kernel=$VMLINUX
  QARGS=(-machine pc,accel=tcg -cpu max -smp 1 -m "$MEM"
    -nodefaults -no-user-config -display none -no-reboot
    -serial "file:$run/console.log"
    -monitor "unix:$VMS/$node.mon,server=on,wait=off"
    -kernel "$kernel" -initrd "$INITRD"
    -append "console=ttyS0 loglevel=4 panic=-1 mitigations=off no_timer_check net.ifnames=0 systemd.unit=lab.target systemd.show_status=0"
    -fsdev "local,id=fs0,path=/,security_model=none,readonly=on,multidevs=remap"
    -device virtio-9p-pci,fsdev=fs0,mount_tag=hostroot
    -fsdev "local,id=fs1,path=$run,security_model=none,multidevs=remap"
    -device virtio-9p-pci,fsdev=fs1,mount_tag=result
    -netdev "user,id=u0,restrict=on,hostfwd=tcp:127.0.0.1:$(node_port "$node")-:22"
    -device "virtio-net-pci,netdev=u0,mac=52:54:00:00:00:$(printf %02x "$i")"
    -drive "file=$SAN,format=raw,if=none,id=san0,cache=none,aio=threads,file.locking=off"
    -device virtio-blk-pci,drive=san0,serial=san0,share-rw=on)
  # star: node1 listens once per other node (and bridges its link NICs), nodeI connects
  if [ "$i" = 1 ]; then
    for ((k = 1; k < n; k++)); do
      QARGS+=(-netdev "socket,id=l$k,listen=127.0.0.1:$((LINK_BASE + k - 1))"
        -device "virtio-net-pci,netdev=l$k,mac=52:54:00:01:$(printf %02x "$k"):01")
    done
  else
    QARGS+=(-netdev "socket,id=l1,connect=127.0.0.1:$((LINK_BASE + i - 2))"
      -device "virtio-net-pci,netdev=l1,mac=52:54:00:01:01:$(printf %02x "$i")")
  fi
}

start_guest() { # NODE N
  local node=$1 n=$2 run links=1
  run=$LAB_DIR/runs/$node-$(date +%Y%m%d-%H%M%S)-$$
  mkdir -p "$run"
  [ "$node" = node1 ] && links=$((n - 1))
  printf 'LAB_NAME=%q\nLAB_IP=%q\nLAB_LINKS=%q\nLAB_MASK=%q\n' \
    "$node" "$(node_ip "$node")/24" "$links" "$MASK" >"$run/env"
  ssh-keygen -q -t ed25519 -N '' -C "gfs2clvm-lab-$node" -f "$run/host_key"
  "$LABSRC/mkseed.sh" "$run/seed" "$run/env" "$run/host_key" "$KEY.pub" || die "mkseed failed for $node"
  rm -f "$VMS/$node.mon"
  qemu_args "$node" "$n" "$run"
  echo "$(node_port "$node")" >"$VMS/$node.port"
  echo "$run" >"$VMS/$node.run"
  # its own session/process group (setsid), bounded lifetime (timeout), stopped by its PGID
  setsid timeout --kill-after=10 "$TMO" "$QEMU" "${QARGS[@]}" </dev/null >"$run/qemu.log" 2>&1 &
  echo $! >"$VMS/$node.pid"
}

cmd_up() {
  local n=${1:-2} node i t0 p
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 9 ] || die "up: N must be 1..9"
  [ -f "$INITRD" ] && [ -f "$KEY" ] || cmd_build
  mkdir -p "$VMS" "$LAB_DIR/runs"
  if [ -n "$(nodes)" ]; then
    if cmd_status >/dev/null 2>&1 && [ "$(nodes | wc -l)" = "$n" ]; then
      echo "lab: already up ($n guests)"; return 0
    fi
    die "a lab is (partly) running in $LAB_DIR: lab.sh down first"
  fi
  for ((i = 1; i <= n; i++)); do
    p=$(node_port "node$i"); port_busy "$p" && die "ssh port $p is in use (set LAB_PORT_BASE)"
  done
  for ((i = 1; i < n; i++)); do
    p=$((LINK_BASE + i - 1)); port_busy "$p" && die "link port $p is in use (set LAB_PORT_BASE)"
  done
  case $(stat -f -c %T "$LAB_DIR") in tmpfs|ramfs) die "LAB_DIR must not be on tmpfs (cache=none needs O_DIRECT)" ;; esac
  if [ "${LAB_KEEP_DISK:-0}" != 1 ] || [ ! -f "$SAN" ]; then
    rm -f "$SAN"; truncate -s "$DISK_SIZE" "$SAN"
  fi
  : >"$KNOWN"
  mkdir -p "$CMDIR"; chmod 700 "$CMDIR"
  t0=$(now)
  start_guest node1 "$n"
  if [ "$n" -gt 1 ]; then   # the others connect to node1's listening link sockets
    for ((i = 0; i < 100; i++)); do port_busy "$LINK_BASE" && break; sleep 0.1; done
    port_busy "$LINK_BASE" || { cmd_down; die "node1 does not listen on link port $LINK_BASE"; }
    for ((i = 2; i <= n; i++)); do start_guest "node$i" "$n"; done
  fi
  # each guest writes RUN/ready once ssh.service is up (9p: no inotify for us, poll)
  local pending deadline=$((SECONDS + BOOT_TIMEOUT)) run
  while :; do
    pending=
    for node in $(nodes); do
      run=$(cat "$VMS/$node.run")
      [ -e "$run/ready" ] && continue
      if ! alive "$node"; then
        tail -20 "$run/console.log" >&2 || true; cat "$run/qemu.log" >&2 || true
        cmd_down >&2 || true; die "guest $node died while booting (see $run/console.log)"
      fi
      pending+=" $node"
    done
    [ -z "$pending" ] && break
    if [ $SECONDS -ge $deadline ]; then
      cmd_down >&2 || true; die "guests$pending not ready after ${BOOT_TIMEOUT}s (see $LAB_DIR/runs/*/console.log)"
    fi
    sleep 0.2
  done
  local tr; tr=$(since "$t0")
  for node in $(nodes); do
    p=$(cat "$VMS/$node.port")
    ssh-keyscan -T 20 -p "$p" -t ed25519 127.0.0.1 2>/dev/null >>"$KNOWN"
    grep -q "^\[127.0.0.1\]:$p " "$KNOWN" || { cmd_down >&2 || true; die "ssh-keyscan of $node (port $p) failed"; }
  done
  for node in $(nodes); do
    ssh_argv root "$node"; "${SSHA[@]}" true || { cmd_down >&2 || true; die "root ssh into $node failed"; }
    ssh_argv oneadmin "$node"; "${SSHA[@]}" true || { cmd_down >&2 || true; die "oneadmin ssh into $node failed"; }
  done
  write_salt_config
  printf 'lab: %s guests up in %ss (all sshd ready after %ss); ssh: %s\n' "$n" "$(since "$t0")" "$tr" \
    "$(for node in $(nodes); do printf '%s=127.0.0.1:%s ' "$node" "$(cat "$VMS/$node.port")"; done)"
  echo "lab: salt-ssh --saltfile $SALTFILE node1 test.ping   (roster $SALTDIR/roster)"
}

roster_entry() { # ID PORT USER THIN_DIR: one salt-ssh roster entry for a guest
  cat <<R
$1:
  host: 127.0.0.1
  port: $2
  user: $3
  priv: $KEY
  set_path: $SET_PATH
  thin_dir: $4
  timeout: 60
  ssh_options: [ControlMaster=auto, "ControlPath=$CMDIR/%C", ControlPersist=300]
R
}

write_salt_config() {
  local node port
  mkdir -p "$SALTDIR"/{cache,pki,run,log} "$PILLAR"
  cat >"$SALTDIR/master" <<M
# salt-ssh configuration of the lab's front-end (written by lab/lab.sh up)
root_dir: $SALTDIR
config_dir: $SALTDIR
cachedir: $SALTDIR/cache
pki_dir: $SALTDIR/pki
sock_dir: $SALTDIR/run
pidfile: $SALTDIR/run/salt-master.pid
log_file: $SALTDIR/log/master
ssh_log_file: $SALTDIR/log/ssh
roster_file: $SALTDIR/roster
known_hosts_file: $KNOWN
ssh_priv: $KEY
ssh_timeout: 60
file_roots:
  base:
    - $REPO
    - $REPO/salt
# the repo root is a file root (for _modules/_states): keep the fileserver out of these
file_ignore_regex:
  - '/\.(venv|lab|git|cache|pytest_cache)(/|\$)'
  - '/(build|dist)(/|\$)'
  - '\.egg-info(/|\$)'
pillar_roots:
  base:
    - $PILLAR
M
  : >"$SALTDIR/roster.tmp"
  for node in $(nodes); do
    port=$(cat "$VMS/$node.port")
    # <node>: the driver's view (oneadmin); <node>-root: provisioning. The thin_dir names do
    # not exist on the host: the host's / is the guests' lower layer, a host copy would be
    # seen as an already deployed thin.
    { roster_entry "$node" "$port" oneadmin /var/tmp/.gfs2clvm_lab_thin_oneadmin
      roster_entry "$node-root" "$port" root /var/tmp/.gfs2clvm_lab_thin_root; } >>"$SALTDIR/roster.tmp"
  done
  mv "$SALTDIR/roster.tmp" "$SALTDIR/roster"
  printf 'salt-ssh:\n  config_dir: %s\n  log_level: warning\n' "$SALTDIR" >"$SALTFILE"
  write_driver_salt_config
  write_pillar
}

# The driver's own salt-ssh set-up (what the front-end formula / gfs2clvm-host write): no
# _modules in its file_roots, so a call ships nothing (salt 3008.4 would scp the ext_mods
# tarball on every call, and concurrent calls race unpacking it in one thin dir); the
# modules are found in module_dirs, where the worker formula installed them; its own thin dir.
write_driver_salt_config() {
  local node port d=$LAB_DIR/driver
  mkdir -p "$d"/{cache,pki,run,log,empty}
  sed -e "s|^root_dir: .*|root_dir: $d|" -e "s|^config_dir: .*|config_dir: $d|" \
      -e "s|^cachedir: .*|cachedir: $d/cache|" -e "s|^pki_dir: .*|pki_dir: $d/pki|" \
      -e "s|^sock_dir: .*|sock_dir: $d/run|" -e "s|^pidfile: .*|pidfile: $d/run/salt-master.pid|" \
      -e "s|^log_file: .*|log_file: $d/log/master|" -e "s|^ssh_log_file: .*|ssh_log_file: $d/log/ssh|" \
      -e "s|^roster_file: .*|roster_file: $d/roster|" \
      -e "s|^    - $REPO/salt\$|    - $d/empty|" -e "\|^    - $REPO\$|d" "$SALTDIR/master" >"$d/master"
  : >"$d/roster.tmp"
  for node in $(nodes); do
    port=$(cat "$VMS/$node.port")
    { roster_entry "$node" "$port" oneadmin /var/tmp/.gfs2clvm_lab_thin_driver
      printf '  minion_opts:\n    module_dirs: [%s]\n' "$DRIVER_MODULES"; } >>"$d/roster.tmp"
  done
  mv "$d/roster.tmp" "$d/roster"
  printf 'salt-ssh:\n  config_dir: %s\n  log_level: warning\n' "$d" >"$LAB_DIR/Saltfile.driver"
}

write_pillar() { # the lab's pillar for the formula
  local node n
  n=$(nodes | wc -l)
  # the cluster's corosync authkey (crypto on, as in production): 256 random bytes, made
  # once per lab directory, what `corosync-keygen` makes
  [ -s "$LAB_DIR/corosync-authkey.b64" ] ||
    (umask 077; head -c 256 /dev/urandom | base64 -w0 >"$LAB_DIR/corosync-authkey.b64")
  printf "base:\n  '*':\n    - lab\n" >"$PILLAR/top.sls"
  {
    echo "# the lab's pillar for salt/gfs2clvm (written by lab/lab.sh up)"
    echo "gfs2clvm:"
    echo "  cluster:"
    echo "    name: $CLUSTER"
    # 30 s: with 20 parallel driver calls the front-end's Pythons and the guests' salt-calls
    # starve the 1-vCPU TCG guests; at 10 s corosync once lost node1 (dlm blocked for good)
    echo "    token: 30000"
    echo "    authkey: $(cat "$LAB_DIR/corosync-authkey.b64")"
    echo "    nodes:"
    for node in $(nodes); do
      printf '      - {name: %s, ring0_addr: %s, nodeid: %s}\n' "$node" "$(node_ip "$node")" "${node#node}"
    done
    echo "  dlm: {enable_fencing: 0, enable_startup_fencing: 0}"
    echo "  lvm:"
    echo "    global_filter: ['a|^/dev/vda\$|', 'r|.*|']"
    echo "    pvs: [/dev/vda]"
    echo "    creator: node1"
    echo "  gfs2: {size: 2G, journals: $n, journal_size_mb: 32}"
    echo "  oneadmin:"
    echo "    authorized_keys: ['$(cat "$KEY.pub")']"
    echo "  libvirt: {manage: false}"
  } >"$PILLAR/lab.sls"
}

cmd_provision() {
  local t0 targets=() node; t0=$(now)
  [ -n "$(nodes)" ] || die "no lab is up"
  for node in $(nodes); do targets+=("$node-root"); done
  "$SALT_SSH" --saltfile "$SALTFILE" -L "$(IFS=,; echo "${targets[*]}")" state.apply gfs2clvm.worker --out json \
    >"$LAB_DIR/highstate.json" || { cat "$LAB_DIR/highstate.json" >&2; die "highstate failed (see $LAB_DIR/highstate.json)"; }
  # enrolment: deploy the driver set-up's thin once, in parallel
  "$SALT_SSH" --saltfile "$LAB_DIR/Saltfile.driver" -L "$(nodes | paste -sd, -)" test.ping --out json \
    >"$LAB_DIR/driver-thin.json" || { cat "$LAB_DIR/driver-thin.json" >&2; die "driver thin deploy failed"; }
  echo "lab: provisioned (highstate) in $(since "$t0")s"
}

cmd_status() {
  local node rc=0 port
  [ -n "$(nodes)" ] || { echo "lab: no guests in $LAB_DIR"; return 1; }
  for node in $(nodes); do
    port=$(cat "$VMS/$node.port")
    if ! alive "$node"; then echo "$node dead (port $port)"; rc=1; continue; fi
    ssh_argv root "$node"
    if "${SSHA[@]}" -o ConnectTimeout=5 true </dev/null 2>/dev/null; then
      echo "$node up pid=$(cat "$VMS/$node.pid") ssh=127.0.0.1:$port ip=$(node_ip "$node")"
    else
      echo "$node running but ssh fails (pid=$(cat "$VMS/$node.pid") port $port)"; rc=1
    fi
  done
  return $rc
}

cmd_ssh() {
  local user=root
  [ "${1:-}" = -u ] && { user=$2; shift 2; }
  [ $# -ge 1 ] || die "usage: lab.sh ssh [-u USER] NODE [cmd...]"
  local node=$1; shift
  ssh_argv "$user" "$node"
  exec "${SSHA[@]}" "$@"
}

cmd_salt() { [ -f "$SALTFILE" ] || die "no $SALTFILE (lab.sh up)"; exec "$SALT_SSH" --saltfile "$SALTFILE" "$@"; }

cmd_down() {
  local node pid run pids=() i t0; t0=$(now)
  for node in $(nodes); do
    alive "$node" && touch "$(cat "$VMS/$node.run")/stop"
  done
  # systemd poweroff takes 4-6 s under TCG; after ${LAB_STOP_WAIT:-15}s the process group dies
  for ((i = 0; i < ${LAB_STOP_WAIT:-15} * 5; i++)); do
    pids=(); for node in $(nodes); do alive "$node" && pids+=("$node"); done
    [ ${#pids[@]} = 0 ] && break
    sleep 0.2
  done
  for node in $(nodes); do
    pid=$(cat "$VMS/$node.pid")
    if kill -0 "$pid" 2>/dev/null; then
      # setsid made timeout(1) a session and process-group leader: PGID == its PID
      if [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ]; then kill -TERM -- "-$pid" 2>/dev/null || true
      else kill -TERM "$pid" 2>/dev/null || true; fi
      for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
      echo "lab: $node killed (no clean poweroff)"
    fi
    rm -f "$VMS/$node".{pid,port,run,mon}
  done
  for pid in "$CMDIR"/*; do   # multiplexing masters of the guests that are gone
    [ -S "$pid" ] && ssh -F /dev/null -o "ControlPath=$pid" -O exit x 2>/dev/null || true
    rm -f "$pid"
  done
  echo "lab: down in $(since "$t0")s"
}

cmd_env() {
  printf 'LAB_DIR=%q\nLAB_PORT_BASE=%q\nLAB_LINK_BASE=%q\nLAB_KEY=%q\nLAB_KNOWN_HOSTS=%q\nLAB_SALTFILE=%q\nLAB_ROSTER=%q\nLAB_SAN=%q\nLAB_CLUSTER=%q\nLAB_NODES=%q\n' \
    "$LAB_DIR" "$PORT_BASE" "$LINK_BASE" "$KEY" "$KNOWN" "$SALTFILE" "$SALTDIR/roster" "$SAN" "$CLUSTER" "$(nodes | tr '\n' ' ' | sed 's/ $//')"
}

case "${1:-}" in
  build) shift; cmd_build "$@" ;;
  up) shift; cmd_up "$@" ;;
  provision) shift; cmd_provision "$@" ;;
  status) shift; cmd_status ;;
  ssh) shift; cmd_ssh "$@" ;;
  salt) shift; cmd_salt "$@" ;;
  down) shift; cmd_down ;;
  env) shift; cmd_env ;;
  *) sed -n '2,/^set /{/^#/p}' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
