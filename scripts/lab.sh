#!/usr/bin/env bash
# `make lab` / `make lab-down`: provision the lab site in containers, or remove it.
set -euo pipefail
action=${1:-up}
site=${2:-lab}
inventory=inventories/$site

case "$action" in
  up)
    ansible-playbook -i "$inventory" playbooks/lab.yml
    ansible-playbook -i "$inventory" site.yml
    if [ -f playbooks/verify.yml ]; then
      ansible-playbook -i "$inventory" playbooks/verify.yml
    fi
    pacs=$(ansible-inventory -i "$inventory" --host "$(ansible-inventory -i "$inventory" --list | python3 -c 'import json,sys; print(json.load(sys.stdin)["pacs"]["hosts"][0])')" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin).get("lab_address", ""))')
    # The lab's internal CA, for the browser on this machine to trust.
    pacs_host=$(ansible-inventory -i "$inventory" --list | python3 -c 'import json,sys; print(json.load(sys.stdin)["pacs"]["hosts"][0])')
    docker cp "$pacs_host:/etc/orthanc-remote/tls/ca.crt" "$inventory/artifacts/ca.crt" >/dev/null 2>&1 || true
    cat <<MSG

The lab is up.
  Orthanc Explorer:   https://$pacs/  (from this machine; its certificate is signed by the lab's
                      internal CA, copied to $inventory/artifacts/ca.crt: import it, or accept the warning)
  Passwords:          $inventory/artifacts/credentials/<user>.txt  (generated on the first run)
  VPN profiles:       $inventory/artifacts/vpn/<client>.ovpn
  Check status:       ansible-playbook -i $inventory playbooks/monitoring-status.yml
  Re-run:             make lab  (safe: changes only what differs)
  Tear down:          make lab-down
MSG
    ;;
  down)
    ansible-playbook -i "$inventory" playbooks/lab.yml -e lab_state=absent
    ;;
  *)
    echo "usage: $0 up|down [site]" >&2; exit 2 ;;
esac
