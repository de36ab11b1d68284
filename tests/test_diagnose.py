"""filter_plugins/diagnose.py: each fault of the troubleshooting list is named with its cause and fix.

The healthy state below is what diagnose_collect.py reads on a healthy lab-shaped server; each
test plants one fault in it and checks the one FAIL (or WARN) that names it, and that narrowing
to a modality keeps exactly what lies on that modality's path.
"""

from __future__ import annotations

import copy

import pytest

from diagnose import findings, table, unknown_modality_error

FACTS = {
    "site_pacs_fqdn": "pacs.lab.test",
    "site_admin_sources": ["10.231.50.1/32"],
    "site_dicom": {"aet": "LAB_PACS", "port": 11112, "tls": True},
    "site_https_port": 8443,
    "site_modalities": [
        {"name": "mri-1", "aet": "MRI1", "host": "10.231.51.10", "allow": ["echo", "store"], "vpn_gateway": "gw-1"},
        {"name": "ct-1", "aet": "ct_lab1", "host": "10.231.50.40", "allow": ["echo", "store"], "tls": True},
    ],
    "site_vpn": {"enabled": True, "network": "10.8.0.0/24", "port": 51194, "proto": "udp"},
    "site_vpn_clients": [
        {"name": "gw-1", "kind": "modality_gateway", "address": "10.8.0.10", "site_subnets": ["10.231.51.0/24"]},
        {"name": "dr-one", "kind": "radiologist", "address": "10.8.0.20"},
    ],
    "site_vpn_revoked": [],
    "site_users": [{"name": "admin", "role": "admin"}, {"name": "dr-one", "role": "viewer"}],
}

HEALTHY = {
    "checks": [
        {"check": "service", "target": "orthanc", "status": "OK", "active": "active"},
        {"check": "service", "target": "nginx", "status": "OK", "active": "active"},
        {"check": "cert", "target": "/etc/orthanc-remote/tls/https.crt", "status": "OK", "days_left": "300"},
        {"check": "disk", "target": "/var/lib/orthanc", "status": "OK", "free_percent": "80.0"},
        {"check": "dicom_echo", "target": "127.0.0.1:11112", "status": "OK"},
    ],
    "listening": [{"proto": "tcp", "address": "0.0.0.0", "port": 11112},
                  {"proto": "tcp", "address": "0.0.0.0", "port": 8443},
                  {"proto": "udp", "address": "0.0.0.0", "port": 51194}],
    "ufw_active": True,
    "orthanc_log": ["W1201 10:00:00.000000 main.cpp:1] Orthanc has started"],
    "https_401": [],
    "vpn_connected": ["gw-1", "dr-one"],
    "vpn_revoked": ["dr-two"],
    "bans": {"orthanc-https": []},
    "certificates": [{"path": "/etc/orthanc-remote/tls/https.crt", "role": "https", "ca": "/etc/orthanc-remote/tls/ca.crt",
                      "san": ["pacs.lab.test", "10.231.50.10"], "chain": True}],
    "resources": {"load1": 0.5, "cores": 2, "mem_total_kb": 4000000, "mem_available_kb": 2000000},
}
AUDIT = {"missing": [], "extra": []}


def planted(**changes) -> dict:
    state = copy.deepcopy(HEALTHY)
    state.update(changes)
    return state


def failures(state: dict, facts: dict = FACTS, audit: dict = AUDIT, modality: str | None = None) -> list[dict]:
    return [f for f in findings(state, facts, audit, modality) if f["result"] == "FAIL"]


def test_the_healthy_site_has_no_fail_and_no_warn():
    found = findings(HEALTHY, FACTS, AUDIT)
    assert [f for f in found if f["result"] != "PASS"] == []
    assert table(found)[-1].startswith("0 FAIL, 0 WARN")


def test_a_stopped_service_is_named_with_the_restart_fix():
    state = planted(checks=[dict(c, status="CRITICAL", active="inactive") if c["target"] == "nginx" else c
                            for c in HEALTHY["checks"]],
                    listening=[s for s in HEALTHY["listening"] if s["port"] != 8443])
    found = failures(state)
    service = [f for f in found if f["check"] == "service"]
    assert service and service[0]["target"] == "nginx" and "systemctl restart nginx" in service[0]["fix"]
    assert any(f["check"] == "port" and f["target"] == "tcp/8443" for f in found)


def test_a_closed_port_names_the_missing_rule_and_the_modality():
    rule = "ufw allow proto tcp from 10.231.50.40 to any port 11112 comment orthanc-remote: dicom from ct-1"
    found = failures(HEALTHY, audit={"missing": [rule], "extra": []})
    assert len(found) == 1 and found[0]["check"] == "firewall" and "make apply" in found[0]["fix"]
    assert failures(HEALTHY, audit={"missing": [rule], "extra": []}, modality="ct-1") == found
    assert failures(HEALTHY, audit={"missing": [rule], "extra": []}, modality="mri-1") == []


def test_an_inactive_firewall_fails():
    assert [f["cause"] for f in failures(planted(ufw_active=False))] == ["ufw is not active"]


@pytest.mark.parametrize("aet, ip, expected", [
    ("CT_LAB1", "10.231.50.40", "it is registered as 'ct_lab1' (AE titles are case-sensitive)"),
    ("WRONG", "10.231.50.40", "the host of modality ct-1 (10.231.50.40) called with AE title 'WRONG'"),
    ("MRI1", "10.231.50.99", "modality mri-1 (AE MRI1) called from 10.231.50.99"),
])
def test_ae_title_mismatches_are_named_with_the_registered_title(aet, ip, expected):
    line = f"W1201 10:00:01.000000 CommandDispatcher.cpp:617] Rejected association for remote AET {aet} on IP {ip}"
    found = failures(planted(orthanc_log=[line, line]))
    assert len(found) == 1 and found[0]["check"] == "ae-title", found
    assert expected in found[0]["cause"] and found[0]["fix"]


def test_an_unknown_calling_aet_from_an_unknown_host_is_a_warning():
    line = "W1201 10:00:01.000000 CommandDispatcher.cpp:617] Rejected association for remote AET SCANNER on IP 10.9.9.9"
    found = [f for f in findings(planted(orthanc_log=[line]), FACTS, AUDIT) if f["result"] == "WARN"]
    assert found and "unknown calling AE title 'SCANNER'" in found[0]["cause"]


def test_a_wrong_called_aet_names_the_pacs_title():
    line = "E1201 10:00:01.000000 CommandDispatcher.cpp:500] Called AE Title Not Recognized: lab_pacs"
    found = failures(planted(orthanc_log=[line]))
    assert found and "LAB_PACS exactly" in found[0]["fix"]


def test_transfer_errors_are_shown_from_orthancs_log():
    line = "E1201 10:00:02.000000 FilesystemStorage.cpp:120] Cannot write to file: no space left"
    found = [f for f in findings(planted(orthanc_log=[line]), FACTS, AUDIT) if f["check"] == "transfer"]
    assert found[0]["result"] == "WARN" and "no space left" in found[0]["cause"]


def test_a_wrong_password_is_named_per_user():
    found = [f for f in findings(planted(https_401=[{"user": "dr-one", "source": "10.8.0.20", "count": 4}]), FACTS, AUDIT)
             if f["check"] == "login"]
    assert found[0]["result"] == "WARN" and "the password is wrong" in found[0]["cause"]
    assert "make rotate-password USER=dr-one" in found[0]["fix"]


@pytest.mark.parametrize("state, facts, cause", [
    (planted(vpn_connected=["dr-one"]), FACTS, "gateway gw-1 is not connected: mri-1 cannot reach the PACS"),
    (planted(vpn_connected=["dr-one"], vpn_revoked=["gw-1"]), FACTS,
     "gateway gw-1 is revoked (site_vpn_revoked or the server's CRL): mri-1 has no path"),
    (HEALTHY, dict(FACTS, site_vpn_revoked=["gw-1"]), "gateway gw-1 is revoked (site_vpn_revoked or the server's CRL): mri-1 has no path"),
])
def test_the_vpn_path_of_a_gateway_modality(state, facts, cause):
    found = failures(state, facts, modality="mri-1")
    assert [f["cause"] for f in found] == [cause]
    assert failures(state, facts, modality="ct-1") == []


@pytest.mark.parametrize("address, what", [("10.231.50.40", "modality ct-1"), ("10.8.0.10", "vpn modality_gateway gw-1"),
                                           ("10.231.50.1", "admin source")])
def test_a_banned_known_peer_is_named_with_the_unban_command(address, what):
    found = failures(planted(bans={"orthanc-dicom": [address]}))
    assert len(found) == 1 and found[0]["cause"].startswith(f"{what}'s address {address} is banned")
    assert f"fail2ban-client set orthanc-dicom unbanip {address}" in found[0]["fix"]


def test_a_banned_stranger_is_not_a_fault():
    assert failures(planted(bans={"orthanc-https": ["198.51.100.7"]})) == []


@pytest.mark.parametrize("status, result", [("WARNING", "WARN"), ("CRITICAL", "FAIL")])
def test_an_expiring_or_expired_certificate(status, result):
    checks = HEALTHY["checks"] + [{"check": "cert", "target": "/etc/orthanc-remote/tls/dicom.crt", "status": status, "days_left": "-3"}]
    found = [f for f in findings(planted(checks=checks), FACTS, AUDIT) if f["result"] == result]
    assert found and found[0]["check"] == "certificate" and "make renew-certificates" in found[0]["fix"]
    assert "days_left=-3" in found[0]["cause"]


def test_a_certificate_without_the_sites_name_or_chain():
    certificates = [dict(HEALTHY["certificates"][0], san=["other.test"], chain=False, chain_error="unable to get local issuer")]
    causes = [f["cause"] for f in failures(planted(certificates=certificates))]
    assert any("is not valid for pacs.lab.test" in c for c in causes)
    assert any("does not chain to" in c and "local issuer" in c for c in causes)


def test_a_full_disk_fails_on_every_modalitys_path():
    checks = [dict(c, status="CRITICAL", free_percent="2.0") if c["check"] == "disk" else c for c in HEALTHY["checks"]]
    for modality in ("mri-1", "ct-1", None):
        found = failures(planted(checks=checks), modality=modality)
        assert [f["check"] for f in found] == ["disk"]


def test_load_and_memory_pressure_are_warnings():
    state = planted(resources={"load1": 9.0, "cores": 2, "mem_total_kb": 4000000, "mem_available_kb": 100000})
    warned = [f["target"] for f in findings(state, FACTS, AUDIT) if f["result"] == "WARN"]
    assert warned == ["load", "memory"]


def test_missing_checks_are_a_warning_not_a_crash():
    state = planted(checks_error="orthanc-remote-check is not installed (log_monitoring not applied)")
    found = [f for f in findings(state, FACTS, AUDIT) if f["check"] == "checks"]
    assert found[0]["result"] == "WARN" and "make apply" in found[0]["fix"]


def test_an_unknown_modality_is_refused_with_the_known_names():
    assert unknown_modality_error(FACTS, "mri-9") == "modality: 'mri-9' is not in site_modalities; use one of mri-1, ct-1"
    assert unknown_modality_error(FACTS, "ct-1") == "" and unknown_modality_error(FACTS, "") == ""


def test_the_table_puts_failures_first_and_counts():
    state = planted(vpn_connected=[])
    lines = table(findings(state, FACTS, AUDIT))
    assert lines[0].startswith("FAIL vpn") and "fix:" in lines[0]
    assert lines[-1].startswith("1 FAIL, 0 WARN")


@pytest.mark.parametrize("target, check, on_path", [
    ("orthanc.service", "service", {"mri-1", "ct-1"}),
    ("nginx.service", "service", set()),
    ("openvpn-server@orthanc-remote.service", "service", {"mri-1"}),
    ("/etc/orthanc-remote/tls/dicom.crt", "cert", {"ct-1"}),
    ("/etc/orthanc-remote/tls/https.crt", "cert", set()),
    ("/etc/openvpn/server/pki/issued/gw-1.crt", "cert", {"mri-1"}),
    ("/etc/openvpn/server/pki/issued/dr-one.crt", "cert", set()),
    ("/etc/openvpn/server/crl.pem", "crl", {"mri-1"}),
])
def test_a_failed_check_is_on_the_path_of_the_modalities_it_serves(target, check, on_path):
    state = planted(checks=[{"check": check, "target": target, "status": "CRITICAL"}])
    for modality in ("mri-1", "ct-1"):
        found = [f for f in failures(state, modality=modality) if f["target"] == target]
        assert bool(found) == (modality in on_path), (modality, target)


def test_verifys_own_unknown_ae_title_probe_is_not_a_misconfigured_modality():
    line = "W1201 10:00:01.000000 CommandDispatcher.cpp:1] Rejected association for remote AET VERIFY-NOBODY on IP 10.231.50.40"
    assert [f for f in failures(planted(orthanc_log=[line])) if f["check"] == "ae-title"]
    assert not [f for f in failures(planted(orthanc_log=[line], verify_probe_aet="VERIFY-NOBODY")) if f["check"] == "ae-title"]
