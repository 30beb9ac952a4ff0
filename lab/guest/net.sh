#!/bin/bash
# lab-net.service (in the guest): user-net NIC (MAC 52:54:00:00:00:xx) -> 10.0.2.15/24
# (qemu slirp, restrict=on); link NICs (MAC 52:54:00:01:kk:xx) -> $LAB_IP. node1 of a lab
# with more than two nodes has one link NIC per other node: they are bridged (br0).
# Bash builtins only, except the 'ip' calls (every exec costs ~50-100 ms under TCG).
. /result/env
nics() { local d m; for d in /sys/class/net/*; do read -r m <"$d/address" 2>/dev/null; [[ $m == "$1"* ]] && echo "${d##*/}"; done; }
wait_nics() { # MACPREFIX COUNT -> IFS_FOUND
  local i
  for ((i = 0; i < 300; i++)); do
    mapfile -t IFS_FOUND < <(nics "$1")
    [ "${#IFS_FOUND[@]}" -ge "$2" ] && return 0
    read -rt 0.1 <> <(:) || true
  done
  echo "only ${#IFS_FOUND[@]} of $2 NICs with MAC $1"; return 1
}
rc=0
if wait_nics 52:54:00:00:00: 1; then
  ip addr replace 10.0.2.15/24 dev "${IFS_FOUND[0]}" && ip link set "${IFS_FOUND[0]}" up || rc=1
else rc=1; fi
if [ "${LAB_LINKS:-0}" -gt 0 ]; then
  if wait_nics 52:54:00:01: "$LAB_LINKS"; then
    if [ "$LAB_LINKS" = 1 ]; then
      dev=${IFS_FOUND[0]}
    else
      dev=br0
      ip link add br0 type bridge && ip link set br0 up || rc=1
      for i in "${IFS_FOUND[@]}"; do ip link set "$i" master br0 && ip link set "$i" up || rc=1; done
    fi
    ip addr replace "$LAB_IP" dev "$dev" && ip link set "$dev" up && echo "$dev $LAB_IP" || rc=1
  else rc=1; fi
fi
exit $rc
