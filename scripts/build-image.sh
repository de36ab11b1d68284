#!/usr/bin/env bash
# Build the Debian base image the lab and molecule containers run, without any
# registry: debootstrap from Debian's mirror, then `docker import`. systemd is
# PID 1 in these containers, so services run as they do on a real server.
#
# The tag carries a hash of this script: editing the package list rebuilds,
# an unchanged script reuses the cached image. A user with a registry can skip
# all this by exporting ORTHANC_REMOTE_IMAGE=<their image> (it must have
# systemd, python3 and python3-apt).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
suite=${ORTHANC_REMOTE_SUITE:-bookworm}
image=$("$here/image-tag.sh")

if [ -n "${ORTHANC_REMOTE_IMAGE:-}" ]; then
  echo "==> Using ORTHANC_REMOTE_IMAGE=$image (not building)"
  exit 0
fi
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "==> Base image $image is cached"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "==> Installing debootstrap"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq debootstrap >/dev/null
fi

# The host's own Debian mirror: the only package source reachable here and in
# most hospital networks that allow one.
mirror=${ORTHANC_REMOTE_MIRROR:-$(grep -hoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' \
  /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
  | grep -oE 'https?://[^ ]+' | head -n 1 || true)}
mirror=${mirror:-http://deb.debian.org/debian}

rootfs=$(mktemp -d /var/tmp/orthanc-remote-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "==> debootstrap $suite from $mirror (about a minute)"
debootstrap --variant=minbase \
  --include=python3,python3-apt,systemd,systemd-sysv,sudo,iproute2,ca-certificates,procps \
  "$suite" "$rootfs" "$mirror" >/var/tmp/orthanc-remote-debootstrap.log 2>&1 || {
    tail -n 30 /var/tmp/orthanc-remote-debootstrap.log >&2; exit 1; }

# Units that make no sense in a container and slow boot or fail noisily.
for unit in systemd-remount-fs.service getty.target console-getty.service \
            systemd-logind.service sys-kernel-config.mount; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
# Containers get a fresh machine-id at each boot, like a cloned VM would.
: > "$rootfs/etc/machine-id"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
# The package lists are gone: date their directory in the past so that apt's
# cache_valid_time (which reads this mtime) always refreshes them on first use.
touch -d '2000-01-01' "$rootfs/var/lib/apt/lists"

echo "==> docker import as $image"
tar -C "$rootfs" -c . | docker import \
  --change 'CMD ["/lib/systemd/systemd"]' \
  --change 'ENV container=docker' \
  - "$image" >/dev/null
echo "==> Built $image"
