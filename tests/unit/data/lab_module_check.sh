# gfs2clvm module against real LVM/lvmlockd/GFS2 in a guest of the qemu lab, once by hand:
#   lab.sh run --mem 1536 --env GFS2CLVM_REPO=$PWD tests/unit/data/lab_module_check.sh
# ($LAB_DIR/guest/lockd-setup.sh starts sanlock + lvmlockd as in the reference lab)
set -u
wipefs -qa /dev/vda; dd if=/dev/zero of=/dev/vda bs=1M count=16 oflag=direct status=none
useradd -M -r -s /usr/sbin/nologin oneadmin
cat >/etc/udev/rules.d/99-one-lv.rules <<'R'
ENV{DM_NAME}=="vg_*-lv--one--*", OWNER="oneadmin", GROUP="disk", MODE="0660"
R
udevadm control --reload
$LAB_DIR/guest/lockd-setup.sh 1 5 || exit 1
vgcreate -q --shared --lock-type sanlock vg_cloudstorage /dev/vda || exit 1
lvcreate -q -y -n gfs2 -L 256M vg_cloudstorage
lvcreate -q -y --type thin-pool -L 512M -n pool vg_cloudstorage
modprobe gfs2
mkfs.gfs2 -q -O -p lock_nolock -j 1 /dev/vg_cloudstorage/gfs2
mkdir -p /mnt/one && mount -t gfs2 /dev/vg_cloudstorage/gfs2 /mnt/one && chown oneadmin: /mnt/one
grep gfs2 /proc/self/mountinfo
cd /tmp && "$GFS2CLVM_REPO/.venv/bin/python" "$GFS2CLVM_REPO/tests/unit/data/lab_module_check.py"
rc=$?
umount /mnt/one
vgchange -q -an vg_cloudstorage
vgremove -q -y -f vg_cloudstorage
exit $rc
