# H1: capture real LVM JSON/stderr for gfs2clvm unit tests (runs as root in a lab guest)
set -u
wipefs -qa /dev/vda; dd if=/dev/zero of=/dev/vda bs=1M count=8 oflag=direct status=none
VG=vg_cloudstorage
LVF=lv_name,vg_name,lv_path,lv_size,lv_attr,lv_layout,lv_active,lv_active_locally,lv_active_exclusively,lv_device_open,origin,pool_lv,data_percent
VGF=vg_name,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,lv_count,vg_shared,vg_lock_type,vg_attr
sec() { echo "=====BEGIN $1"; shift; "$@" 2>/tmp/err; echo "=====RC $?"; echo "=====STDERR"; cat /tmp/err; echo "=====END"; }
lvm version
pvcreate -q /dev/vda
vgcreate -q $VG /dev/vda
lvcreate -q -y -n gfs2 -L 64M $VG
lvcreate -q -y -n lv-one-7-0 -L 64M $VG
lvcreate -q -y -n lv-one-7-1 -L 32M $VG
lvcreate -q -y -n lv-one-70-0 -L 16M $VG
lvcreate -q -y -n lv-one-9-0 -L 8M $VG
lvcreate -q -y -n lv-oneimg-0123456789abcdef0123456789abcdef -L 40M $VG
lvcreate -q -y -s -n lv-one-7-0-s1 -L 16M $VG/lv-one-7-0
lvcreate -q -y --type thin-pool -L 128M -n pool $VG
lvcreate -q -y -V 256M --thin -n lv-one-8-0 $VG/pool
lvcreate -q -y -s -n lv-one-8-0-s0 $VG/lv-one-8-0
lvchange -q -an $VG/lv-one-9-0
# grow lv-one-70-0 past its neighbours: two segments (segment fields would give two rows)
lvextend -q -y -L 24M $VG/lv-one-70-0
dd if=/dev/urandom of=/dev/$VG/lv-one-8-0 bs=1M count=20 oflag=direct status=none
sleep 600 </dev/$VG/lv-one-7-1 &
HOLD=$!
sleep 0.5
sec lvs_all lvs --reportformat json --units m --nosuffix -o $LVF $VG
sec lvs_vm7 lvs --reportformat json --units m --nosuffix -o $LVF -S 'lv_name=~^lv-one-7-' $VG
sec lvs_one lvs --reportformat json --units m --nosuffix -o $LVF -S 'lv_name=lv-one-7-1' $VG
sec lvs_none lvs --reportformat json --units m --nosuffix -o $LVF -S 'lv_name=lv-one-99-0' $VG
sec lvs_novg lvs --reportformat json --units m --nosuffix -o $LVF vg_missing
sec vgs_one vgs --reportformat json --units m --nosuffix -o $VGF $VG
sec vgs_novg vgs --reportformat json --units m --nosuffix -o $VGF vg_missing
sec lvremove_open lvremove -q -y $VG/lv-one-7-1
sec lvcreate_exists lvcreate -q -y -W y -Z y -n lv-one-7-0 -L 8M $VG
sec lvcreate_nospace lvcreate -q -y -W y -Z y -n lv-one-5-0 -L 100G $VG
sec lvextend_smaller lvextend -q -y -L 8M $VG/lv-one-7-0
sec lvremove_missing lvremove -q -y $VG/lv-one-99-0
sec lvchange_aey lvchange -q -aey $VG/lv-one-9-0
sec lvchange_asy_nolockd lvchange -q -asy $VG/lv-one-9-0
sec lvs_thin_snapshot lvs --reportformat json --units m --nosuffix -o $LVF -S 'lv_name=lv-one-8-0-s0' $VG
kill $HOLD
sec lvs_segments lvs --reportformat json --units m --nosuffix -o lv_name,segtype,seg_size -S 'lv_name=lv-one-70-0' $VG
sec lvs_after lvs --reportformat json --units m --nosuffix -o $LVF $VG
sec blkdiscard_z blkdiscard -z /dev/$VG/lv-one-9-0
vgchange -q -an $VG
vgremove -q -y -f $VG
