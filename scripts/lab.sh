#!/usr/bin/env bash
# `make lab` / `make lab-down`: provision the lab site in containers, or remove it.
# inventories/<site> is the only description of the lab (hosts, networks, site facts).
set -euo pipefail
action=${1:-up}
site=${2:-lab}
inventory=inventories/$site

# One expression evaluated with the PACS's variables, as the inventory resolves them.
pacs_var() {
  ANSIBLE_LOAD_CALLBACK_PLUGINS=1 ANSIBLE_STDOUT_CALLBACK=json \
    ansible -i "$inventory" pacs -m ansible.builtin.debug -a "msg={{ $1 }}" \
    | python3 -c 'import json,sys; print(next(iter(json.load(sys.stdin)["plays"][0]["tasks"][0]["hosts"].values()))["msg"])'
}

case "$action" in
  up)
    ansible-playbook -i "$inventory" playbooks/lab.yml
    ansible-playbook -i "$inventory" site.yml
    ansible-playbook -i "$inventory" playbooks/verify.yml
    pacs=$(pacs_var 'ansible_host')
    port=$(pacs_var 'site_https_port | default(443)')
    artifacts=$(pacs_var site_artifacts_dir)
    admin=$(pacs_var ansible_user)
    # The lab's internal CA, for the browser on this machine to trust.
    ansible -i "$inventory" pacs -b -m ansible.builtin.fetch \
      -a "src=/etc/orthanc-remote/tls/ca.crt dest=$artifacts/ca.crt flat=true" >/dev/null 2>&1 || true
    cat <<MSG

The lab is up.
  Orthanc Explorer:   https://$pacs:$port/  (from this machine; its certificate is signed by the lab's
                      internal CA, copied to $artifacts/ca.crt: import it, or accept the warning)
  Passwords:          $artifacts/credentials/<user>.txt  (generated on the first run)
  VPN profiles:       $artifacts/vpn/<client>.ovpn
  Modality packages:  $artifacts/modalities/<modality>/  (DICOM TLS client certificate, key, CA)
  The PACS over SSH:  ssh -i $artifacts/ssh/id_ed25519 -o UserKnownHostsFile=$artifacts/ssh/known_hosts $admin@$pacs
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
