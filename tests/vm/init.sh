#!/bin/busybox sh
# PID 1 of the test VM: mount the host's / read-only over virtio-9p, the work dir read-write,
# chroot into the host root and run the guest tests, then power off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p; do
  [ -f /mods/$m.ko ] && insmod /mods/$m.ko
done
O=trans=virtio,version=9p2000.L,msize=1048576,cache=loose
mount -t 9p -o $O,ro hostroot /host || { echo "VMTEST 9p root mount failed"; poweroff -f; }
mount -t proc proc /host/proc; mount -t sysfs sys /host/sys; mount -t devtmpfs dev /host/dev
mkdir -p /host/dev/pts /host/dev/shm; mount -t devpts devpts /host/dev/pts; mount -t tmpfs shm /host/dev/shm
mount -t tmpfs run /host/run
# Only the work dir is writable: /tmp stays the host's (read-only) view, so a checkout under /tmp is still visible.
mount -t 9p -o $O work /host/tmp/vcam-vm || echo "VMTEST 9p work mount failed"
chroot /host /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb \
   /bin/bash /tmp/vcam-vm/guest.sh
echo "GUEST_EXIT_CODE=$?"
sync
poweroff -f
