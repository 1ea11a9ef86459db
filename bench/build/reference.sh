#!/usr/bin/env bash
# The same build as `kiln build examples/server.yaml --no-verify`, as a careful operator would
# write it by hand with the same tools and the same steps (docs/architecture.md#the-build-pipeline): mmdebstrap with
# the shared apt archive cache, packages in a chroot, the motd, the script, the seal, then one
# overlay per kernel flavor with Kiln's initramfs hook, the initramfs built once, squashfs zstd-3
# and the package manifest. It is the baseline bench/build/run.sh compares Kiln against.
#
# usage: reference.sh WORKDIR APT_ARCHIVES   (root; WORKDIR must not exist)
set -euo pipefail
work=$1 cache=$2
repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$work/out" "$cache"
root=$work/root
mounts=()
cleanup() { for ((i=${#mounts[@]}-1; i>=0; i--)); do umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}"; done; }
trap cleanup EXIT
mnt() { mkdir -p "${@: -1}"; mount "$@"; mounts+=("${@: -1}"); }

chroot_up() { # the root is $root_
  mnt -t proc proc "$root_/proc"; mnt -t sysfs -o ro sysfs "$root_/sys"; mnt -t tmpfs -o size=16m tmpfs "$root_/dev"
  for n in "null 1 3" "zero 1 5" "full 1 7" "random 1 8" "urandom 1 9" "tty 5 0"; do set -- $n; mknod -m 0666 "${root_}/dev/$1" c "$2" "$3"; done
  ln -s /proc/self/fd "$root_/dev/fd"; ln -s pts/ptmx "$root_/dev/ptmx"
  mnt -t devpts -o newinstance,ptmxmode=0666 devpts "$root_/dev/pts"
  mnt -t tmpfs tmpfs "$root_/run"; mnt -t tmpfs tmpfs "$root_/tmp"
  mnt --bind "$cache" "$root_/var/cache/apt/archives"
  cp /etc/resolv.conf "$root_/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' > "$root_/usr/sbin/policy-rc.d"; chmod 755 "$root_/usr/sbin/policy-rc.d"
}
chroot_down() {
  : > "$root_/etc/resolv.conf"; rm -f "$root_/usr/sbin/policy-rc.d"
  find "$root_/var/lib/apt/lists" -mindepth 1 -maxdepth 1 ! -name partial ! -name lock -exec rm -rf {} +
  cleanup; mounts=()
}
apt_in() { DEBIAN_FRONTEND=noninteractive chroot "$root_" apt-get -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold -o Dpkg::Options::=--force-unsafe-io -o APT::Install-Recommends=false "$@"; }

# 1. bootstrap, with the host's Debian sources (as Kiln's default mirror)
mapfile -t lines < <(node --input-type=module -e "
  import { readHostSources, debianLinesFor } from '$repo/dist/src/host/apt-sources.js';
  for (const l of debianLinesFor('bookworm', ['main'], await readHostSources())) console.log(l);")
mmdebstrap --mode=root --variant=minbase '--aptopt=Acquire::Retries "3";' --skip=essential/unlink \
  '--setup-hook=mkdir -p "$1"/var/cache/apt/archives/' "--setup-hook=sync-in $cache /var/cache/apt/archives/" \
  "--customize-hook=sync-out /var/cache/apt/archives $cache" bookworm "$root" "${lines[@]}"
echo localhost > "$root/etc/hostname"; : > "$root/etc/resolv.conf"

# 2. packages, motd, script, seal — in the root directly (no layers)
root_=$root; chroot_up
apt_in update
apt_in install systemd systemd-sysv udev dbus openssh-server cloud-init sudo iproute2 ifupdown isc-dhcp-client netbase ca-certificates less procps kmod
printf 'This machine runs an image built by Kiln (bookworm-server).\n' > "$root/etc/motd"; chmod 644 "$root/etc/motd"
chroot "$root" /bin/sh -e -c 'systemctl enable ssh'
chroot_down
: > "$root/etc/machine-id"; rm -f "$root"/etc/ssh/ssh_host_*; rm -f "$root"/var/cache/apt/*.bin

# 3. one overlay per flavor
for spec in generic:linux-image-amd64 cloud:linux-image-cloud-amd64 rt:linux-image-rt-amd64; do
  flavor=${spec%%:*} pkg=${spec#*:}
  up=$work/layers/$flavor; mkdir -p "$up/upper" "$up/work"
  root_=$work/mnt/$flavor
  mnt -t overlay overlay -o "lowerdir=$root,upperdir=$up/upper,workdir=$up/work" "$root_"
  chroot_up
  apt_in update
  apt_in install initramfs-tools busybox zstd
  cp -a "$repo/assets/initramfs/." "$root_/etc/initramfs-tools/"
  INITRD=No apt_in install "$pkg"
  ver=$(basename "$(ls "$root_"/boot/vmlinuz-* | head -1)"); ver=${ver#vmlinuz-}
  chroot "$root_" update-initramfs -c -k "$ver"
  mkdir -p "$work/out/$flavor"
  cp "$root_/boot/vmlinuz-$ver" "$work/out/$flavor/boot-kernel"; cp "$root_/boot/initrd.img-$ver" "$work/out/$flavor/boot-initrd"
  chroot_down
done

# 4. artifacts
mksquashfs "$root" "$work/out/squashfs" -comp zstd -Xcompression-level 3 -noappend -xattrs -processors "$(nproc)" -quiet
dpkg-query --admindir="$root/var/lib/dpkg" --show > "$work/out/squashfs.manifest"
sha256sum "$work"/out/squashfs "$work"/out/*/boot-* > "$work/out/SHA256SUMS"
