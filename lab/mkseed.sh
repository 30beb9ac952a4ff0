#!/bin/bash
# mkseed.sh SEED ENVFILE HOSTKEY AUTHKEYS  (runs on the HOST, ~0.1 s)
# Builds one guest's overlay seed: a tree the initramfs copies into the guest's tmpfs
# upper layer, so these files shadow the host's files inside that guest only.
# The guest gets only: identity (hostname, machine-id), network, sshd with key login for
# root and oneadmin, empty root dotfiles and the lab's boot units/masks. Everything a
# storage node needs beyond that is node configuration (the formula's highstate).
set -euo pipefail
LAB=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
S=$1 ENVF=$2 HOSTKEY=$3 AUTHKEYS=$4
. "$ENVF"
umask 022
mkdir -p "$S"
# directories that exist on the host keep the host's mode/owner in the seed
hdir() { local d; for d; do mkdir -p "$S$d"; chmod --reference="$d" "$S$d"; chown --reference="$d" "$S$d"; done; }
hdir /etc /etc/ssh /etc/systemd /etc/systemd/system /root /var /var/lib
mkdir -p "$S/etc/lab" "$S/etc/systemd/journald.conf.d" "$S/etc/systemd/system/systemd-udev-trigger.service.d"

# --- identity
echo "$LAB_NAME" >"$S/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 %s\n' "$LAB_NAME" >"$S/etc/hosts"
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$S/etc/machine-id"; echo >>"$S/etc/machine-id"
chmod 444 "$S/etc/machine-id"
: >"$S/etc/fstab"                       # the host's fstab must not be applied
# newer than /usr: ConditionNeedsUpdate=/etc,/var would otherwise run ldconfig, hwdb
# --update, sysusers and the journal catalog update at every boot
touch "$S/etc/.updated" "$S/var/.updated"
# the host root's dotfiles run 'pyenv init': ~4 s per ssh command under TCG
printf 'export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n' >"$S/root/.profile"
: >"$S/root/.bashrc"

# --- oneadmin 9869:9869, home /var/lib/one, NOT in group disk (device access comes from
# the udev rule of the node configuration). Password field '*': with UsePAM no, sshd
# refuses a locked ('!') account even for key logins.
ONE_UID=9869
for f in passwd group shadow gshadow; do
  grep -v '^oneadmin:' "/etc/$f" >"$S/etc/$f" || true
  chmod --reference="/etc/$f" "$S/etc/$f"; chown --reference="/etc/$f" "$S/etc/$f"
done
echo "oneadmin:x:$ONE_UID:$ONE_UID:OpenNebula:/var/lib/one:/bin/bash" >>"$S/etc/passwd"
echo "oneadmin:x:$ONE_UID:" >>"$S/etc/group"
echo "oneadmin:*:$(( $(date +%s) / 86400 )):0:99999:7:::" >>"$S/etc/shadow"
echo "oneadmin:!::" >>"$S/etc/gshadow"
install -d -m 755 -o "$ONE_UID" -g "$ONE_UID" "$S/var/lib/one"

# --- sshd: per-guest host key, key-only, the lab key for root and oneadmin. The keys live
# in /etc/ssh (not ~/.ssh): /var/lib/one becomes the GFS2 mount and would hide them.
install -m 600 "$HOSTKEY" "$S/etc/ssh/lab_host_ed25519_key"
install -m 644 "$AUTHKEYS" "$S/etc/ssh/lab_authorized_keys"
# a complete sshd_config (no Include of the host's sshd_config.d)
cat >"$S/etc/ssh/sshd_config" <<'C'
# gfs2clvm lab guest sshd (written by lab/mkseed.sh)
HostKey /etc/ssh/lab_host_ed25519_key
AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/lab_authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
# PAM under TCG: pam_systemd starts logind + user@UID at a user's first login (+3.7 s),
# then +0.45 s per login
UsePAM no
UseDNS no
PrintMotd no
MaxSessions 50
MaxStartups 100:30:200
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
C

# --- journald volatile (the host has /var/log/journal: flushing to it is boot work)
printf '[Journal]\nStorage=volatile\n' >"$S/etc/systemd/journald.conf.d/lab.conf"

# --- boot: lab.target + helpers, udev-trigger drop-in, masks
install -m 755 "$LAB/guest/net.sh" "$S/etc/lab/net.sh"
install -m 644 "$LAB"/units/*.service "$LAB"/units/*.target "$S/etc/systemd/system/"
install -m 644 "$LAB/units/udev-trigger-lab.conf" "$S/etc/systemd/system/systemd-udev-trigger.service.d/lab.conf"
for u in ${LAB_MASK:-}; do ln -sfn /dev/null "$S/etc/systemd/system/$u"; done
# generators: each is an exec of 110-250 ms under TCG (~1.9 s for all of them before the
# first unit starts); none is needed (empty fstab, no sysv scripts, no getty, no crypt)
mkdir -p "$S/etc/systemd/system-generators"
for g in /lib/systemd/system-generators/*; do
  [ -e "$g" ] && ln -sfn /dev/null "$S/etc/systemd/system-generators/${g##*/}"
done
exit 0
