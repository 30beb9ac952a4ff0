#!/bin/bash
# lab/bootstrap.sh NODE... : the lab's node configuration over plain ssh as root, doing what
# the formula (salt/gfs2clvm/worker) does on real workers:
#   lvmlocal.conf (use_lvmlockd = 1, devices filter = the SAN disk /dev/vda), corosync (knet
#   over the lab link, no crypto, token 10 s), dlm_controld with fencing OFF (lab only),
#   lvmlockd with dlm as lock manager, the shared VG vg_cloudstorage (vgcreate --shared
#   --lock-type dlm, on the first node), lock start on every node, the LV gfs2 with
#   GFS2 lock_dlm (-t <cluster>:one -j <N>) mounted at /var/lib/one on every node (oneadmin's),
#   the udev rule for lv-one-* / lv-oneimg-* (oneadmin:disk 0660) and the sudoers rule.
# Idempotent: a second run on a provisioned lab changes nothing.
# Run by `lab/lab.sh provision` (LAB_PROVISION=bootstrap) with LAB_DIR/LAB_PORT_BASE set.
# The same file is the guest-side script: `bootstrap.sh guest PHASE ...` (piped over ssh).
set -euo pipefail

VG=vg_cloudstorage
LV=gfs2
PV=/dev/vda
MNT=/var/lib/one
CLUSTER=gfs2lab
FSNAME=one
GFS2_SIZE=2G
JOURNAL_MB=32

# ------------------------------------------------------------------ guest side
g_log() { echo "$(hostname): $*"; }
g_time() { # LABEL CMD... : run, print the time it took
  local label=$1 t0 rc=0; shift; t0=$(date +%s.%N)
  "$@" || rc=$?
  g_log "$label $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s (rc=$rc)"
  return $rc
}
g_write() { # FILE MODE : stdin -> FILE if different; rc 0 = changed, 1 = unchanged
  local f=$1 mode=$2 tmp; tmp=$(mktemp)
  cat >"$tmp"
  if [ -f "$f" ] && cmp -s "$tmp" "$f"; then rm -f "$tmp"; return 1; fi
  install -D -m "$mode" "$tmp" "$f"; rm -f "$tmp"; return 0
}

g_config() { # N NODE=IP... : files, udev, sudo, corosync started
  local n=$1 i=0 spec; shift
  g_write /etc/lvm/lvmlocal.conf 644 <<EOF || true
# gfs2clvm lab (lab/bootstrap.sh); read after lvm.conf, takes precedence
global {
	use_lvmlockd = 1
}
devices {
	global_filter = [ "a|^$PV\$|", "r|.*|" ]
}
EOF
  g_write /etc/dlm/dlm.conf 644 <<'EOF' || true
# gfs2clvm LAB ONLY: no fencing. Never in production: a hung node can corrupt GFS2.
enable_fencing=0
enable_startup_fencing=0
EOF
  {
    cat <<EOF
# gfs2clvm lab (lab/bootstrap.sh)
totem {
  version: 2
  cluster_name: $CLUSTER
  transport: knet
  crypto_cipher: none
  crypto_hash: none
  # TCG guests are slow
  token: 10000
}
nodelist {
EOF
    for spec; do
      i=$((i + 1))
      printf '  node {\n    name: %s\n    nodeid: %s\n    ring0_addr: %s\n  }\n' "${spec%%=*}" "$i" "${spec#*=}"
    done
    printf '}\nquorum {\n  provider: corosync_votequorum\n'
    [ "$n" = 2 ] && printf '  two_node: 1\n'
    printf '}\nlogging {\n  to_syslog: yes\n  to_stderr: no\n}\n'
  } | { if g_write /etc/corosync/corosync.conf 644; then echo changed >/run/lab-corosync-changed; fi; }
  if g_write /etc/udev/rules.d/99-gfs2clvm-lv.rules 644 <<EOF; then
# gfs2clvm lab: the driver's LVs belong to oneadmin; device-mapper doubles dashes in names
ENV{DM_NAME}=="${VG//-/--}-lv--one--*", OWNER="oneadmin", GROUP="disk", MODE="0660"
ENV{DM_NAME}=="${VG//-/--}-lv--oneimg--*", OWNER="oneadmin", GROUP="disk", MODE="0660"
EOF
    udevadm control --reload
    udevadm trigger --action=change --subsystem-match=block \
      --property-match="DM_NAME=${VG//-/--}-lv--one--*" --property-match="DM_NAME=${VG//-/--}-lv--oneimg--*" || true
  fi
  local tmp; tmp=$(mktemp)
  cat >"$tmp" <<'EOF'
# gfs2clvm lab: exactly the LVM commands _modules/gfs2clvm.py runs with sudo -n
Cmnd_Alias GFS2CLVM_LVM = /sbin/lvcreate, /sbin/lvremove, /sbin/lvchange, /sbin/lvs, /sbin/vgs, /sbin/lvextend, /sbin/lvconvert, /sbin/blkdiscard
Defaults:oneadmin !requiretty
oneadmin ALL=(root) NOPASSWD: GFS2CLVM_LVM
EOF
  visudo -c -q -f "$tmp" || { rm -f "$tmp"; g_log "sudoers rule does not parse"; return 1; }
  g_write /etc/sudoers.d/gfs2clvm 440 <"$tmp" || true
  rm -f "$tmp"
  if [ -e /run/lab-corosync-changed ] || ! systemctl -q is-active corosync; then
    rm -f /run/lab-corosync-changed
    # (findmnt -n -t gfs2 exits 0 even when nothing matches: read /proc/mounts)
    if grep -q ' gfs2 ' /proc/mounts; then g_time "corosync reload" corosync-cfgtool -R
    else g_time "corosync (re)start" systemctl restart corosync; fi
  fi
}

g_cluster() { # N : quorate with N votes, dlm_controld + lvmlockd running
  local n=$1 i
  g_time "corosync quorate ($n votes)" bash -c "for i in \$(seq 120); do
      corosync-quorumtool -s 2>/dev/null | grep -qE '^Total votes:[[:space:]]+$n\$' && exit 0; sleep 0.5; done; exit 1"
  systemctl -q is-active dlm || g_time "dlm start" systemctl start dlm
  g_time "dlm quorate" bash -c 'for i in $(seq 120); do dlm_tool status 2>/dev/null | grep -q "^cluster .* quorate 1" && exit 0; sleep 0.5; done; exit 1'
  systemctl -q is-active lvmlockd || g_time "lvmlockd start" systemctl start lvmlockd
}

g_create() { # N : (first node) shared VG, GFS2 LV, mkfs when blank
  local n=$1
  if ! vgs --noheadings -o vg_name "$VG" >/dev/null 2>&1; then
    blkid -p "$PV" >/dev/null 2>&1 && { g_log "$PV is not blank and holds no $VG: refusing"; blkid -p "$PV"; return 1; }
    g_time "vgcreate --shared --lock-type dlm $VG" vgcreate -q --shared --lock-type dlm "$VG" "$PV"
  else
    g_time "lock start $VG" vgchange -q --lock-start "$VG"
  fi
  if ! lvs --noheadings -o lv_name "$VG/$LV" >/dev/null 2>&1; then
    g_time "lvcreate $LV" lvcreate -q -an -Zn -L "$GFS2_SIZE" -n "$LV" "$VG"
  fi
  g_time "lvchange -asy $LV" lvchange -q -asy "$VG/$LV"
  if ! blkid -p "/dev/$VG/$LV" >/dev/null 2>&1; then
    g_time "mkfs.gfs2 -t $CLUSTER:$FSNAME -j $n" mkfs.gfs2 -O -q -p lock_dlm -t "$CLUSTER:$FSNAME" -j "$n" -J "$JOURNAL_MB" "/dev/$VG/$LV"
  fi
}

g_join() { # : lock start (every other node)
  pvscan --cache -q >/dev/null 2>&1 || true
  g_time "lock start $VG" vgchange -q --lock-start "$VG"
  g_time "lvchange -asy $LV" lvchange -q -asy "$VG/$LV"
}

g_mount() { # FIRST(0|1) : GFS2 at $MNT, oneadmin's
  if ! grep -q " $MNT gfs2 " /proc/mounts; then
    mkdir -p "$MNT"
    g_time "mount gfs2 $MNT" timeout 180 mount -t gfs2 -o noatime "/dev/$VG/$LV" "$MNT"
  fi
  if [ "$1" = 1 ] && [ "$(stat -c %U:%G "$MNT")" != oneadmin:oneadmin ]; then
    chown oneadmin:oneadmin "$MNT"; chmod 755 "$MNT"
  fi
}

if [ "${1:-}" = guest ]; then
  shift; phase=$1; shift
  case "$phase" in
    config) g_config "$@" ;; cluster) g_cluster "$@" ;; create) g_create "$@" ;;
    join) g_join "$@" ;; mount) g_mount "$@" ;; *) echo "bootstrap: unknown phase $phase" >&2; exit 2 ;;
  esac
  exit 0
fi

# ------------------------------------------------------------------ host side
[ $# -ge 1 ] || { echo "usage: bootstrap.sh NODE... (run by lab/lab.sh provision)" >&2; exit 2; }
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
SELF=$HERE/bootstrap.sh
NODES=("$@")
N=${#NODES[@]}
SPECS=()
for node in "${NODES[@]}"; do SPECS+=("$node=169.254.77.${node#node}"); done
on() { # NODE PHASE ARGS... : this script's guest side over plain ssh as root
  local node=$1; shift
  "$HERE/lab.sh" ssh "$node" bash -s -- guest "$@" <"$SELF"
}
on_all() { # PHASE ARGS... : on every node in parallel
  local node pids=() rc=0 p
  for node in "${NODES[@]}"; do on "$node" "$@" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return $rc
}
T0=$(date +%s.%N)
on_all config "$N" "${SPECS[@]}"
on_all cluster "$N"
on "${NODES[0]}" create "$N"
on "${NODES[0]}" mount 1
for node in "${NODES[@]:1}"; do on "$node" join; on "$node" mount 0; done
echo "bootstrap: ${NODES[*]} configured in $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s"
