"""A third run with the original inventory and ufw_firewall_unmanaged_rules=remove: the modality
gets DICOM back, 80 and the hand-made rule are gone, the NAT is back, SSH from the admin works."""

import pytest

from conftest import CLIENTS, SERVER, converge, host, open_ports, recap, ssh_banner, tcp_scan

EXPECTED_TCP = {"admin": {22, 443}, "modality": {4242}, "stranger": set()}


@pytest.fixture(scope="module")
def run():
    return converge({"ufw_firewall_unmanaged_rules": "remove"})


def test_run_succeeded(run):
    counts = recap(run)
    assert counts["failed"] == 0 and counts["unreachable"] == 0, run.stdout
    assert counts["changed"] > 0
    assert "WARNING" not in run.stdout


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_scan_after_restore(run, client):
    assert open_ports(tcp_scan(client)) == EXPECTED_TCP[client]


def test_modality_reaches_dicom_again(run):
    assert host("modality").check_output("echo | nc -w 3 %s 4242", SERVER) == "svc-tcp-4242"


def test_unmanaged_rule_removed_but_not_fail2ban_bans(run):
    status = host("server").check_output("ufw status")
    assert "192.0.2.1 " not in status
    assert "192.0.2.66" in status and "by Fail2Ban" in status


def test_nat_back(run):
    nat = host("server").check_output("iptables -t nat -S")
    assert nat.count("-A ufw-orthanc-remote-nat -s 10.8.0.0/24 ! -d 10.8.0.0/24 -j MASQUERADE") == 1


def test_ssh_from_admin_still_works(run):
    assert "ssh-ed25519" in ssh_banner("admin")
