#!/usr/bin/env bash
# Make sure a Docker engine answers. Installs Debian's docker.io when no engine
# exists, and starts dockerd directly when it is not running (CI machines and
# many containers have no systemd as PID 1, so `systemctl start` is not enough).
set -euo pipefail

log=/var/log/orthanc-remote-dockerd.log

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  echo "==> Installing Debian's docker.io (no Docker engine found)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq docker.io >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  if [ -d /run/systemd/system ] && systemctl start docker 2>/dev/null; then
    :
  else
    echo "==> Starting dockerd in the background (log: $log)"
    nohup dockerd >"$log" 2>&1 &
  fi
fi

for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "ERROR: the Docker engine did not answer within 60 s; see $log" >&2
exit 1
