#!/bin/sh
# Usage: mk-initramfs.sh OUT KVER
# A small initramfs for booting plain disk images with a host kernel: static busybox + virtio/ext4
# modules of KVER (in load order) + an /init that mounts root=/dev/vda and switch_roots into vm_init=
# (default /sbin/init). Same recipe as shared/platform/mk-initramfs.sh.
set -eu
OUT=$1; V=$2
D=$(mktemp -d); trap 'rm -rf "$D"' EXIT
mkdir -p "$D/bin" "$D/dev" "$D/proc" "$D/sys" "$D/newroot" "$D/lib/modules"
cp /bin/busybox "$D/bin/busybox"; : > "$D/modules.list"
for m in virtio_pci virtio_mmio virtio_blk virtio_net ext4 virtio_console virtio_rng; do
  modprobe -S "$V" --show-depends "$m" | awk '$1=="insmod"{print $2}'; done |
  awk '!seen[$0]++' | while read -r f; do b=$(basename "$f"); cp "$f" "$D/lib/modules/$b"; echo "$b" >> "$D/modules.list"; done
cat > "$D/init" <<'RD'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.list); do insmod /lib/modules/$m 2>/dev/null; done
ROOT=/dev/vda; VMINIT=/sbin/init
for x in $(cat /proc/cmdline); do case "$x" in root=/dev/*) ROOT=${x#root=};; vm_init=*) VMINIT=${x#*=};; esac; done
i=0; while [ ! -b "$ROOT" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
mount -o rw "$ROOT" /newroot || { echo "initramfs: cannot mount $ROOT"; exec sh; }
umount /proc /sys; mount --move /dev /newroot/dev 2>/dev/null || umount /dev
exec switch_root /newroot "$VMINIT"
RD
chmod +x "$D/init"
(cd "$D" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
