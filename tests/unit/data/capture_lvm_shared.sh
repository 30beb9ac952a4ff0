# H1: capture LVM JSON on a lvmlockd (sanlock) shared VG, single node
set -u
wipefs -qa /dev/vda; dd if=/dev/zero of=/dev/vda bs=1M count=16 oflag=direct status=none
$LAB_DIR/guest/lockd-setup.sh 1 5 || exit 1
VG=vg_cloudstorage
LVF=lv_name,vg_name,lv_path,lv_size,lv_attr,lv_layout,lv_active,lv_active_locally,lv_active_exclusively,lv_device_open,origin,pool_lv,data_percent
VGF=vg_name,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,lv_count,vg_shared,vg_lock_type,vg_attr
sec() { echo "=====BEGIN $1"; shift; "$@" 2>/tmp/err; echo "=====RC $?"; echo "=====STDERR"; cat /tmp/err; echo "=====END"; }
vgcreate -q --shared --lock-type sanlock $VG /dev/vda || exit 1
lvcreate -q -y -W y -Z y -n lv-one-3-0 -L 32M $VG
lvcreate -q -y -W y -Z y -n lv-one-3-1 -L 16M $VG
lvchange -q -an $VG/lv-one-3-1
sec lvchange_asy lvchange -q -asy $VG/lv-one-3-1
sec lvcreate_thinpool lvcreate -q -y --type thin-pool -L 64M -n pool $VG
sec lvcreate_thin lvcreate -q -y -V 128M --thin -n lv-one-4-0 $VG/pool
sec lvchange_an_thin lvchange -q -an $VG/lv-one-4-0
sec lvchange_asy_thin lvchange -q -asy $VG/lv-one-4-0
sec lvchange_aey_thin lvchange -q -aey $VG/lv-one-4-0
sec lvs_shared lvs --reportformat json --units m --nosuffix -o $LVF $VG
sec vgs_shared vgs --reportformat json --units m --nosuffix -o $VGF $VG
sec snapshot_thick_shared lvcreate -q -y -s -n lv-one-3-0-s0 -L 8M $VG/lv-one-3-0
sec snapshot_thin_shared lvcreate -q -y -s -n lv-one-4-0-s0 $VG/lv-one-4-0
sec lvs_shared2 lvs --reportformat json --units m --nosuffix -o $LVF $VG
vgchange -q -an $VG
vgremove -q -y -f $VG
