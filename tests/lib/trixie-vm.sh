#!/usr/bin/env bash
# A real Debian 13 host in a VM: the tests/lib/trixie.sh userspace (systemd, LXC 6, iptables,
# nftables) with Debian 13's own kernel and modules, as an ext4 disk image, booted under qemu
# (TCG here: see ../shared/notes/cgroup-v2-vm.md) with systemd as PID 1 on the unified cgroup v2
# hierarchy.
#
# Source this file (it sources trixie.sh), then:
#   trixie_vm_ensure            build the cached image when missing or when its inputs changed
#                               (trixie's package list, the kernel package, this file); prints the
#                               cache directory. Fails loudly naming the step.
#   trixie_vm_disk FILE         a fresh copy-on-write disk (qcow2 over the cached image) for one test
#   trixie_vm_boot DISK SHARE LOG [CACHE_MODE]
#                               boot DISK once with SHARE (a host directory) shared over 9p; the
#                               guest runs SHARE/step (any executable) as root once systemd has
#                               reached basic.target (systemd-sysctl has run), writes its output
#                               to SHARE/step.out and its exit code to SHARE/step.rc, then shuts
#                               down through systemd (SHARE/action: poweroff, the default, or
#                               reboot: both end qemu, which runs with -no-reboot; the next
#                               trixie_vm_boot is the next boot of the same disk). The serial log
#                               goes to LOG. Returns 0 when the step ran, 1 (with the tail of LOG)
#                               when the VM did not boot or did not finish.
#                               CACHE_MODE is qemu's disk cache mode (default writeback; power-cut
#                               tests use none or directsync, so only what the guest flushed is on
#                               the disk when qemu is killed).
#   TRIXIE_VM_PID               set by trixie_vm_boot_bg (same arguments): qemu runs in the
#                               background, for a test that kills it (the power cord).
#
# The guest: no network, no udev, no getty; root on /dev/vda mounted by a small initramfs (busybox
# and the virtio/ext4 modules); SHARE at /hg. Boot with `apparmor=0`: LXC refuses its profile
# without apparmor_parser, which the image does not hold.
#
# Options (environment): TRIXIE_VM_DIR (cache; default /var/cache/hostguard-tests/trixie-vm),
# TRIXIE_VM_TIMEOUT (seconds per boot, default 400), TRIXIE_VM_MEM (MiB, default 1024).

# shellcheck source=trixie.sh
source "$(dirname "${BASH_SOURCE[0]}")/trixie.sh"

TRIXIE_VM_DIR=${TRIXIE_VM_DIR:-${HOSTGUARD_TEST_CACHE:-/var/cache/hostguard-tests}/trixie-vm}
TRIXIE_VM_TIMEOUT=${TRIXIE_VM_TIMEOUT:-400}
TRIXIE_VM_MEM=${TRIXIE_VM_MEM:-1024}
_TRIXIE_VM_SELF=$(readlink -f "${BASH_SOURCE[0]}")

_trixie_vm_die() { echo "trixie-vm: $*" >&2; return 1; }

# The modules the initramfs loads, in order, to mount the root disk and the 9p share.
_TRIXIE_VM_MODULES="virtio_blk ext4 9pnet_virtio 9p"

trixie_vm_ensure() {
  local tree want
  tree=$(trixie_ensure) || _trixie_vm_die "step trixie_ensure (the Debian 13 userspace) failed" || return 1
  want="$(cat "$tree/.hostguard-packages")
$(sha256sum "$_TRIXIE_VM_SELF" | cut -d' ' -f1)"
  mkdir -p "$TRIXIE_VM_DIR" || _trixie_vm_die "cannot create $TRIXIE_VM_DIR" || return 1
  (
    flock -w 1800 9 || _trixie_vm_die "another build of $TRIXIE_VM_DIR held the lock for 30 minutes" || exit 1
    if [ -f "$TRIXIE_VM_DIR/stamp" ] && [ "$(cat "$TRIXIE_VM_DIR/stamp")" = "$want" ] \
       && [ -s "$TRIXIE_VM_DIR/disk.img" ] && [ -s "$TRIXIE_VM_DIR/vmlinux" ] && [ -s "$TRIXIE_VM_DIR/initrd.gz" ]; then
      exit 0
    fi
    _trixie_vm_build "$tree" || exit 1
    printf '%s\n' "$want" >"$TRIXIE_VM_DIR/stamp"
  ) 9>"$TRIXIE_VM_DIR.lock" || return 1
  echo "$TRIXIE_VM_DIR"
}

_trixie_vm_build() {
  local tree=$1 work pkg ver kdir extras start
  start=$(date +%s)
  command -v qemu-system-x86_64 >/dev/null || _trixie_vm_die "qemu-system-x86_64 is not installed (tests/lib/setup.sh installs it)" || return 1
  for t in zstd mkfs.ext4 cpio qemu-img depmod modprobe; do
    command -v $t >/dev/null || _trixie_vm_die "$t is not installed (tests/lib/setup.sh installs it)" || return 1
  done
  rm -rf "$TRIXIE_VM_DIR/stamp" "$TRIXIE_VM_DIR"/build.*   # a killed build's leftovers too (we hold the lock)
  work=$(mktemp -d "$TRIXIE_VM_DIR/build.XXXXXX") || return 1

  # 1. Debian 13's kernel package, downloaded inside the userspace (its apt lists are trixie's).
  echo "trixie-vm: downloading Debian 13's kernel" >&2
  pkg=$(trixie_exec apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [ -n "$pkg" ] || _trixie_vm_die "step kernel: no versioned package behind linux-image-amd64 in the userspace's apt lists" || return 1
  TRIXIE_BIND="$work" trixie_exec sh -c "cd '$work' && apt-get download -qq '$pkg'" >"$work/download.log" 2>&1 \
    || { tail -n 5 "$work/download.log" >&2; _trixie_vm_die "step kernel: apt-get download $pkg failed"; return 1; }
  dpkg-deb -x "$work"/"$pkg"_*.deb "$work/kernel" || _trixie_vm_die "step kernel: dpkg-deb -x of $pkg failed" || return 1
  ver=$(ls "$work/kernel/lib/modules" 2>/dev/null || ls "$work/kernel/usr/lib/modules")
  kdir=$work/kernel
  [ -d "$kdir/lib/modules/$ver" ] || { mkdir -p "$kdir/lib"; ln -s ../usr/lib/modules "$kdir/lib/modules"; }

  # 2. The uncompressed vmlinux (qemu boots the ELF with PVH much faster than the bzImage under
  #    TCG). Debian 13's bzImage holds a zstd payload.
  python3 - "$kdir/boot/vmlinuz-$ver" "$work/payload.zst" <<'PY' || _trixie_vm_die "step vmlinux: no zstd payload in the bzImage" || return 1
import sys
data = open(sys.argv[1], "rb").read()
at = data.find(b"\x28\xb5\x2f\xfd")
if at < 0:
    sys.exit("no zstd magic")
open(sys.argv[2], "wb").write(data[at:])
PY
  # The payload is followed by the rest of the setup code: zstd reports it and has written the frame.
  zstd -dc "$work/payload.zst" >"$work/vmlinux" 2>/dev/null || true
  [ "$(head -c 4 "$work/vmlinux" | od -An -c | tr -d ' ')" = '177ELF' ] \
    || _trixie_vm_die "step vmlinux: the zstd payload of vmlinuz-$ver is not an ELF" || return 1

  # 3. The initramfs: busybox, the modules to reach the root disk and the share, /init.
  depmod -b "$kdir" "$ver" || _trixie_vm_die "step initramfs: depmod -b failed" || return 1
  local ird=$work/initrd
  mkdir -p "$ird"/{bin,proc,sys,dev,newroot,lib/modules}
  cp "$tree/usr/bin/busybox" "$ird/bin/busybox" || _trixie_vm_die "step initramfs: no busybox in the userspace" || return 1
  for a in sh mount umount insmod mkdir switch_root echo cat sleep; do ln -s busybox "$ird/bin/$a"; done
  local n=0 mod
  # shellcheck disable=SC2086
  for mod in $(modprobe -d "$kdir" -S "$ver" --show-depends -a $_TRIXIE_VM_MODULES | awk '$1 == "insmod" {print $2}' | awk '!seen[$0]++'); do
    n=$((n+1))
    case "$mod" in
      *.xz) xz -dc "$mod" ;;
      *.zst) zstd -dc "$mod" ;;
      *) cat "$mod" ;;
    esac >"$ird/lib/modules/$(printf %02d $n)-$(basename "${mod%.*}")" \
      || _trixie_vm_die "step initramfs: cannot unpack $mod" || return 1
  done
  cat >"$ird/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in /lib/modules/*; do insmod "$m" 2>/dev/null; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
mount -t ext4 -o rw /dev/vda /newroot || { echo "@@INITRAMFS cannot mount /dev/vda"; sleep 2; echo o > /proc/sysrq-trigger; }
umount /proc /sys; mount --move /dev /newroot/dev
exec switch_root /newroot /usr/lib/systemd/systemd
EOF
  chmod 755 "$ird/init"
  (cd "$ird" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$work/initrd.gz" || _trixie_vm_die "step initramfs: cpio failed" || return 1

  # 4. What the image adds to the userspace: modules, the step service, quiet boot.
  extras=$work/extras
  mkdir -p "$extras/usr/lib/modules" "$extras/etc/systemd/system/hostguard-vm.target.wants" "$extras/usr/local/sbin" "$extras/hg"
  cp -a "$kdir/lib/modules/$ver" "$extras/usr/lib/modules/$ver"
  echo "hostguard-vm" >"$extras/etc/hostname"
  printf '# root is mounted by the initramfs\n' >"$extras/etc/fstab"
  # A fixed machine-id: no first-boot setup (which cost a minute of TCG last time).
  echo "4c7f2a6e0e1d4b8a9f3c5d2e1b0a9c8d" >"$extras/etc/machine-id"
  cat >"$extras/etc/systemd/system/hostguard-vm.target" <<'EOF'
[Unit]
Description=hostguard test boot: basic.target, then the step
Requires=basic.target
After=basic.target
AllowIsolate=yes
EOF
  cat >"$extras/etc/systemd/system/hostguard-vm.service" <<'EOF'
[Unit]
Description=hostguard test step from the 9p share
After=basic.target
[Service]
Type=oneshot
ExecStart=/usr/local/sbin/hostguard-vm-step
StandardOutput=journal+console
StandardError=journal+console
EOF
  ln -s ../hostguard-vm.service "$extras/etc/systemd/system/hostguard-vm.target.wants/hostguard-vm.service"
  cat >"$extras/usr/local/sbin/hostguard-vm-step" <<'EOF'
#!/bin/sh
# Runs /hg/step once per boot, then shuts the machine down through systemd.
echo "@@BOOTED $(uname -r) uptime $(cut -d' ' -f1 /proc/uptime) cgroup $(stat -fc %T /sys/fs/cgroup) pid1 $(cat /proc/1/comm)"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 hg /hg || { echo "@@NOSHARE"; systemctl start poweroff.target --job-mode=replace-irreversibly --no-block; exit 1; }
rc=0
if [ -x /hg/step ]; then
  PATH=/hg/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /hg/step >/hg/step.out 2>&1 || rc=$?
fi
echo "$rc" >/hg/step.rc
echo "@@STEP-DONE $rc uptime $(cut -d' ' -f1 /proc/uptime)"
action=$(cat /hg/action 2>/dev/null || echo poweroff)
sync
umount /hg
# Not `systemctl reboot`: that asks logind over D-Bus, which the image does not run.
systemctl start "$action.target" --job-mode=replace-irreversibly --no-block
EOF
  chmod 755 "$extras/usr/local/sbin/hostguard-vm-step"

  # 5. The disk: the userspace with the extras over it, copied into ext4 by mkfs.ext4 -d.
  echo "trixie-vm: writing the disk image" >&2
  # shellcheck disable=SC2016
  unshare --mount --propagation private -- bash -c '
    set -e
    tree=$1 extras=$2 work=$3 ver=$4
    mkdir "$work/merged" "$work/ow"
    mount -t overlay overlay -o "lowerdir=$tree,upperdir=$extras,workdir=$work/ow" "$work/merged"
    m=$work/merged
    rm -f "$m/usr/sbin/policy-rc.d" "$m/etc/resolv.conf"
    depmod -b "$m" "$ver"
    # What a VM without network, udev or a login has no use for, and what would slow its boot.
    for u in getty@tty1 serial-getty@ttyS0 console-getty systemd-timesyncd systemd-networkd systemd-resolved \
             docker containerd lxc lxc-net lxc-monitord apt-daily.timer apt-daily-upgrade.timer man-db.timer \
             e2scrub_all.timer e2scrub_reap fstrim.timer dpkg-db-backup.timer systemd-logind \
             systemd-udevd systemd-udev-trigger systemd-hwdb-update systemd-firstboot systemd-networkd-wait-online; do
      case $u in *.*) f=$u ;; *) f=$u.service ;; esac
      ln -sf /dev/null "$m/etc/systemd/system/$f"
    done
    ln -sf hostguard-vm.target "$m/etc/systemd/system/default.target"
    mkfs.ext4 -q -F -L hgroot -E lazy_itable_init=1,lazy_journal_init=1 -d "$m" "$work/disk.img" 4G
  ' _ "$tree" "$extras" "$work" "$ver" >"$work/mkfs.log" 2>&1 \
    || { tail -n 10 "$work/mkfs.log" >&2; _trixie_vm_die "step disk image: mkfs.ext4 -d failed"; return 1; }

  mv -f "$work/vmlinux" "$TRIXIE_VM_DIR/vmlinux"
  mv -f "$work/initrd.gz" "$TRIXIE_VM_DIR/initrd.gz"
  mv -f "$work/disk.img" "$TRIXIE_VM_DIR/disk.img"
  echo "$pkg $ver" >"$TRIXIE_VM_DIR/kernel"
  rm -rf "$work"
  echo "trixie-vm: image built in $(( $(date +%s) - start ))s (kernel $ver)" >&2
}

trixie_vm_disk() {
  [ -s "$TRIXIE_VM_DIR/disk.img" ] || _trixie_vm_die "no image in $TRIXIE_VM_DIR: call trixie_vm_ensure first" || return 1
  qemu-img create -q -f qcow2 -b "$TRIXIE_VM_DIR/disk.img" -F raw "$1" >/dev/null \
    || _trixie_vm_die "qemu-img create $1 failed" || return 1
}

_trixie_vm_qemu() { # DISK SHARE LOG CACHE
  local accel=tcg
  # /dev/kvm from kvm_pvm cannot run a stock kernel: KVM only with vmx/svm and no kvm_pvm.
  if [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo && ! grep -q '^kvm_pvm' /proc/modules 2>/dev/null; then
    accel=kvm
  fi
  exec qemu-system-x86_64 -accel "$accel" -m "$TRIXIE_VM_MEM" -smp 1 -display none -monitor none \
    -serial "file:$3" -no-reboot \
    -kernel "$TRIXIE_VM_DIR/vmlinux" -initrd "$TRIXIE_VM_DIR/initrd.gz" \
    -append "console=ttyS0 panic=-1 apparmor=0 systemd.unified_cgroup_hierarchy=1 systemd.show_status=0 loglevel=4 rdinit=/init" \
    -drive "file=$1,if=virtio,format=qcow2,cache=$4" \
    -virtfs "local,path=$2,mount_tag=hg,security_model=none" </dev/null
}

trixie_vm_boot_bg() {
  local disk=$1 share=$2 log=$3 cache=${4:-writeback}
  rm -f "$share/step.rc" "$share/step.out"
  : >"$log"
  _trixie_vm_qemu "$disk" "$share" "$log" "$cache" >>"$log.qemu" 2>&1 &
  TRIXIE_VM_PID=$!
}

trixie_vm_boot() {
  local log=$3 start pid rc
  start=$(date +%s.%N)
  trixie_vm_boot_bg "$@"
  pid=$TRIXIE_VM_PID
  local waited=0
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1; waited=$((waited+1))
    if [ $waited -ge "$TRIXIE_VM_TIMEOUT" ]; then kill -9 "$pid" 2>/dev/null; break; fi
  done
  wait "$pid" 2>/dev/null; rc=$?
  TRIXIE_VM_SECONDS=$(python3 -c "import time,sys; print(f'{time.time()-float(sys.argv[1]):.1f}')" "$start")
  if ! tr -d '\r' <"$log" | grep -q '@@BOOTED'; then
    echo "trixie-vm: the VM did not boot to its step within ${TRIXIE_VM_TIMEOUT}s (qemu exit $rc); serial log tail:" >&2
    tail -n 40 "$log" >&2; cat "$log.qemu" >&2 2>/dev/null
    return 1
  fi
  if [ ! -f "$2/step.rc" ]; then
    echo "trixie-vm: the VM booted but did not finish its step within ${TRIXIE_VM_TIMEOUT}s; serial log tail:" >&2
    tail -n 40 "$log" >&2
    return 1
  fi
  return 0
}
