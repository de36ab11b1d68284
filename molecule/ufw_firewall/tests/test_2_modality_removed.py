"""A second ansible-playbook run with the direct modality removed from the inventory, ACME
switched on and the full tunnel off: the DICOM port closes to the modality, HTTP 80 opens to
anyone, the NAT disappears, and SSH from the admin source still works."""

import pytest

from conftest import CLIENTS, SERVER, converge, host, open_ports, recap, site_facts, ssh_banner, tcp_scan

EXPECTED_TCP = {"admin": {22, 80, 443}, "modality": {80}, "stranger": {80}}


@pytest.fixture(scope="module")
def run():
    facts = site_facts()
    result = converge({
        "site_modalities": [m for m in facts["site_modalities"] if m["name"] != "ct-direct"],
        "site_certificates": {"https": {"mode": "acme"}},
        "site_vpn": dict(facts["site_vpn"], full_tunnel=False),
    })
    return result


def test_run_succeeded_and_changed_the_rules(run):
    counts = recap(run)
    assert counts["failed"] == 0 and counts["unreachable"] == 0, run.stdout
    assert counts["changed"] > 0
    assert "ufw delete allow proto tcp from 10.231.13.30 to 0.0.0.0/0 port 4242" in run.stdout
    # The hand-made rule is still only reported.
    assert "WARNING: 1 ufw rule(s) are not part of the site model" in run.stdout
    assert "192.0.2.1" in run.stdout
    assert "192.0.2.66" not in run.stdout  # fail2ban's ban is not "unmanaged"


def test_dicom_closed_to_the_removed_modality(run):
    assert host("modality").run("echo | nc -w 3 %s 4242", SERVER).stdout == ""
    assert "10.231.13.30" not in host("server").check_output("ufw status")


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_scan_after_the_change(run, client):
    states = tcp_scan(client)
    assert open_ports(states) == EXPECTED_TCP[client], states


def test_acme_port_80_open_to_anyone(run):
    assert host("stranger").check_output("echo | nc -w 3 %s 80", SERVER) == "svc-tcp-80"


def test_ssh_from_admin_still_works(run):
    assert "ssh-ed25519" in ssh_banner("admin")


def test_nat_removed_with_the_full_tunnel(run):
    server = host("server")
    assert "orthanc-remote" not in server.check_output("iptables -t nat -S")
    assert "tun0" not in server.check_output("iptables -S ufw-before-forward")
    assert "tun0" not in server.check_output("iptables -S FORWARD")
    assert "orthanc-remote ufw_firewall" not in server.file("/etc/ufw/before.rules").content_string
