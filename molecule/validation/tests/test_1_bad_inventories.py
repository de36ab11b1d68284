"""Bad inventories through `ansible-playbook site.yml` against a fresh server: refused in the first play.

Each case is the example inventory (inventories/example) with one mistake, written to a temporary
inventory whose only host is this scenario's container. The run must fail in the first play
("Check the site model and every role's inputs"), print the fact's path and the fix as plain
lines, and leave the host exactly as it was: no package installed, no file under
/etc/orthanc-remote, nothing in /etc or dpkg's database newer than a marker written just before.
A valid inventory through playbooks/validate.yml passes (the control).
"""

from __future__ import annotations

import copy
import pathlib

import pytest
import testinfra
import yaml
from conftest import PROJECT, run_playbook, write_inventory

HOST = testinfra.get_host("docker://mol-validation-pacs")
EXAMPLE = yaml.safe_load((PROJECT / "inventories/example/group_vars/all/site.yml").read_text())
PACKAGES = ("orthanc", "nginx", "ufw", "openvpn", "fail2ban", "easy-rsa")

# (id, changes to the example's variables, text the output must contain)
CASES = [
    ("typo-in-a-fact-name", {"site_modalites": []}, "site_modalites: unknown site fact (a typo?); did you mean site_modalities?"),
    ("dicom-port-443", {"site_dicom": {"aet": "CENTRE_A_PACS", "port": 443, "tls": True}},
     "site_dicom.port: port 443/tcp is already used by site_https_port (its default)"),
    ("dicom-port-8042", {"site_dicom": {"aet": "CENTRE_A_PACS", "port": 8042, "tls": True}},
     "site_dicom.port: port 8042/tcp is already used by Orthanc's own HTTP port (orthanc_http_port)"),
    ("weak-password", {"site_users": [{"name": "admin", "role": "admin", "password": "admin_password"}]},
     "site_users[admin].password: refused: it is a well-known default or weak password"),
    ("modality-is-a-radiologist", "ct-host-10.8.0.20", "site_modalities[ct-1].host: 10.8.0.20 is the VPN address of radiologist 'dr-smith'"),
    ("vpn-overlaps-gateway-lan", "gateway-lan-10.8.0.128/25", "site_vpn_clients[site-a-gw].site_subnets: 10.8.0.128/25 overlaps site_vpn.network 10.8.0.0/24"),
    ("ipv6-vpn-network", "vpn-network-ipv6", "site_vpn.network: 'fd00:8::/64' is IPv6"),
    ("duplicate-aet-ignoring-case", "ct-aet-mri1", "site_modalities[ct-1].aet: 'mri1' is already used by modality 'mri-1' (AE titles are compared ignoring case)"),
    ("pacs-address-is-a-network", {"site_pacs_addresses": ["203.0.113.0/28"]}, "site_pacs_addresses: '203.0.113.0/28' is a network, not one address"),
    ("role-variable", {"orthanc_dicom_scp_timeout": 0, "log_monitoring_fail2ban_bantime": "forever"},
     "orthanc_dicom_scp_timeout: 0 is not a whole number >= 1"),
]


def _variables(changes) -> dict:
    variables = copy.deepcopy(EXAMPLE)
    if isinstance(changes, dict):
        variables.update(changes)
    elif changes == "ct-host-10.8.0.20":
        variables["site_modalities"][1]["host"] = "10.8.0.20"
    elif changes == "gateway-lan-10.8.0.128/25":
        variables["site_vpn_clients"][0]["site_subnets"] = ["10.8.0.128/25"]
    elif changes == "vpn-network-ipv6":
        variables["site_vpn"]["network"] = "fd00:8::/64"
    elif changes == "ct-aet-mri1":
        variables["site_modalities"][1]["aet"] = "mri1"
    return variables


def _run(tmp_path: pathlib.Path, variables: dict, playbook: str = "site.yml") -> tuple[int, str]:
    variables = dict(variables, site_artifacts_dir=str(tmp_path / "artifacts"))
    return run_playbook(write_inventory(tmp_path, variables), playbook)


def _assert_host_untouched():
    changed = HOST.run("find /etc /var/lib/dpkg /usr/local -newer /root/validation-marker -print -quit")
    assert changed.stdout.strip() == "", f"something changed on the host: {changed.stdout}"
    assert not HOST.file("/etc/orthanc-remote").exists
    for package in PACKAGES:
        assert not HOST.package(package).is_installed, package


@pytest.mark.parametrize("name, changes, expected", CASES, ids=[case[0] for case in CASES])
def test_bad_inventory_fails_in_the_first_play_and_changes_nothing(tmp_path, name, changes, expected):
    assert HOST.run("touch /root/validation-marker && sleep 1").rc == 0
    rc, out = _run(tmp_path, _variables(changes))
    assert rc != 0, out
    assert expected in out, out
    assert "PLAY [Provision the PACS server]" not in out, "the run went past the first play"
    assert "changed=0" in out and "['" not in out.split("msg:", 1)[-1].split("PLAY RECAP")[0], out
    _assert_host_untouched()


def test_the_valid_example_passes_the_same_checks(tmp_path):
    rc, out = _run(tmp_path, EXAMPLE, "playbooks/validate.yml")
    assert rc == 0, out
    assert "failed=0" in out
