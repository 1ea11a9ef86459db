#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for Kiln: the host tools it drives (from Debian's archive)
# and its npm dependencies (which also compiles it). Safe to run again. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  mmdebstrap            # bootstrap stage
  squashfs-tools        # squashfs artifact, squashfs import
  qemu-utils            # qcow2 import
  qemu-system-x86       # boot verification (TCG; KVM when usable)
  e2fsprogs fdisk       # raw disk import
  tar zstd xz-utils     # tarball artifact and import
  busybox-static        # tests build tiny fixtures with it
  openssh-client        # customize sessions are tested with the real ssh, scp and sftp
  grub-pc-bin grub2-common grub-efi-amd64-signed shim-signed  # qcow2 and ISO: GRUB for BIOS, signed shim + GRUB for UEFI
  xorriso mtools dosfstools ovmf  # ISO mastering, FAT ESPs built without mounting, UEFI boot checks
  grub-common           # grub-mkimage: the ISO's and the disk's GRUB images
  ansible ansible-core  # recipe ansible: playbooks against the image (chroot connection); ansible-playbook
  gnupg gpg gpgv gpgconf dpkg-dev  # streams: signing (gpg, gpgv, gpgconf); tests build a signed apt repository
  cpio                  # tests list what an initramfs holds
  python3-minimal       # tests write hostile tar archives with Python's tarfile
  ca-certificates
  openssl procps        # tests make a site CA (openssl) and look for leftover processes (pgrep)
  iproute2              # fault tests put the service's parts on machines of their own (network namespaces)
  diffoscope-minimal    # the reproducible-builds test reports what differs between two builds (0.7 MB; no optional comparators)
  prometheus            # tests check GET /metrics with promtool check metrics
  chromium              # the web console's browser tests (playwright-core drives the system browser; no browser download)
)
# test/integration/host-packages.test.ts checks that every host command the code and tests run comes
# from a package listed here or from Debian's base system (Essential or Priority: required).

if [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (it installs Debian packages)" >&2
  exit 3
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# npm ci runs `prepare`, which compiles Kiln into dist/.
npm ci --no-audit --no-fund
