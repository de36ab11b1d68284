#!/usr/bin/env bash
# Benchmark of the openvpn_easyrsa role at scale (issue 6, point 7). NOT part of `make test`.
#
# For each client count (default "1 200"; BENCH_COUNTS="1 50 200" to choose) it starts a fresh
# systemd container (mol-vpn-bench), runs molecule/openvpn_easyrsa/bench.yml once in check mode
# (a fresh host must not fail), then for real (first run), then twice more (no-op re-runs, which
# must report changed=0), and prints the times side by side. Packages are installed before the
# clock starts so the figures measure the role, not the Debian mirror.
# Needs: the project venv and base image (make setup), and the openvpn_easyrsa scenario NOT up
# (the bench uses its network name and subnet). Run from anywhere; takes 10-20 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_HOME="$PWD/.ansible" ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
IMAGE=${ORTHANC_REMOTE_IMAGE_RESOLVED:-$(scripts/image-tag.sh)}
NAME=mol-vpn-bench
NET=mol-vpn-net
COUNTS=${BENCH_COUNTS:-"1 200"}
# BENCH_PROFILE=1: time every task and print the slowest ones of each no-op re-run.
if [ "${BENCH_PROFILE:-0}" = 1 ]; then export ANSIBLE_CALLBACKS_ENABLED=ansible.posix.profile_tasks; fi
work=$(mktemp -d)
created_net=false

cleanup() {
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  if $created_net; then docker network rm "$NET" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The bench borrows the scenario's network name and subnet: refuse to share them with a running scenario.
if docker network inspect "$NET" >/dev/null 2>&1; then
  echo "$NET exists: run 'molecule destroy -s openvpn_easyrsa' (or wait for it) first" >&2
  exit 1
fi
docker network create --subnet 10.231.14.0/24 --label owner=bench "$NET" >/dev/null
created_net=true
printf '[bench]\n%s ansible_connection=community.docker.docker\n' "$NAME" >"$work/inventory"

run() { # run <label> <count> [ansible-playbook args...]: time one run, keep its log
  local label=$1 count=$2; shift 2
  local start end
  start=$(date +%s.%N)
  if ! BENCH_ARTIFACTS="$work/artifacts-$count" \
      ansible-playbook -i "$work/inventory" -e "@$work/clients-$count.yml" molecule/openvpn_easyrsa/bench.yml "$@" \
      >"$work/$label-$count.log" 2>&1; then
    echo "ansible-playbook failed ($label, $count clients):" >&2
    tail -n 40 "$work/$label-$count.log" >&2
    exit 1
  fi
  end=$(date +%s.%N)
  changed=$(grep -oE 'changed=[0-9]+' "$work/$label-$count.log" | tail -1)
  printf '%.1f %s' "$(echo "$end - $start" | bc)" "$changed"
}

declare -A results
for count in $COUNTS; do
  echo "==> $count client(s): fresh container" >&2
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  docker run -d --name "$NAME" --hostname "$NAME" --network "$NET" --ip 10.231.14.50 \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add NET_RAW --security-opt seccomp=unconfined \
    --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock --tmpfs /tmp:exec \
    --device /dev/net/tun -e container=docker --stop-signal SIGRTMIN+3 --label owner=bench \
    "$IMAGE" /lib/systemd/systemd >/dev/null
  for _ in $(seq 60); do
    state=$(docker exec "$NAME" systemctl is-system-running 2>/dev/null || true)
    case $state in running|degraded) break ;; esac
    sleep 1
  done
  docker exec "$NAME" sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-apt openvpn easy-rsa >/dev/null'
  { echo "site_vpn_clients:"
    for i in $(seq 0 $((count - 1))); do
      if [ "$i" -eq 0 ]; then
        printf '  - {name: bench-%03d, kind: modality_gateway, address: 10.8.0.%d, site_subnets: [192.168.50.0/24]}\n' "$i" $((i + 10))
      else
        printf '  - {name: bench-%03d, kind: radiologist, address: 10.8.0.%d}\n' "$i" $((i + 10))
      fi
    done
  } >"$work/clients-$count.yml"
  echo "    check mode on the fresh host" >&2
  check=$(run check "$count" --check)
  echo "    first run" >&2
  first=$(run first "$count")
  echo "    no-op re-runs" >&2
  noop1=$(run noop1 "$count")
  noop2=$(run noop2 "$count")
  profiles=$(find "$work/artifacts-$count/vpn" -name '*.ovpn' | wc -l)
  results[$count]="$check|$first|$noop1|$noop2|$profiles"
  if [ "${BENCH_PROFILE:-0}" = 1 ]; then
    echo "    slowest tasks of no-op re-run 1 ($count clients):" >&2
    grep -E ' -+ [0-9.]+s$' "$work/noop1-$count.log" | head -8 | sed 's/^/      /' >&2
  fi
done

printf '\n%-8s | %-16s | %-18s | %-18s | %-18s | %s\n' clients "check (fresh)" "first run" "no-op re-run 1" "no-op re-run 2" profiles
for count in $COUNTS; do
  IFS='|' read -r check first noop1 noop2 profiles <<<"${results[$count]}"
  printf '%-8s | %-16s | %-18s | %-18s | %-18s | %s\n' "$count" "${check% *}s" "${first% *}s ${first#* }" \
    "${noop1% *}s ${noop1#* }" "${noop2% *}s ${noop2#* }" "$profiles"
done
