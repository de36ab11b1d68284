"""Bans in the whole site as production runs it (ufw and fail2ban both active): a brute force
against HTTPS from the imaging centre's NAT address bans that address on the HTTPS port only, so
the centre's VPN gateway (same address) and the modalities behind it keep working; the site's own
modalities are never banned, whatever they log. The checks are the log_monitoring scenario's
(molecule/shared/fail2ban_checks.py), run here against the real lab."""

import sys
import time

import pytest

from conftest import (HTTPS_PORT, PACS_IP, PACS_NAME, ROOT, VPN_SERVER, echo, echo_ok, host, hosts_of,
                      modality, site, tunnel_address, wait_for)

sys.path.insert(0, str(ROOT / "molecule" / "shared"))
import fail2ban_checks as checks  # noqa: E402

PACS = host(PACS_NAME)
GATEWAY, GATEWAY_VARS = next(iter(hosts_of("lab_vpn_gateways").items()))
GATEWAY_WAN = next(i["ipv4_address"] for i in GATEWAY_VARS["lab_interfaces"] if i["name"] == "orlab-internet")
RADIOLOGIST = next(iter(hosts_of("lab_radiologists")))
RUN = str(int(time.time()))
JAILS = ("orthanc-https", "orthanc-dicom", "orthanc-openvpn")


def maxretry(jail: str) -> int:
    return int(PACS.check_output(f"fail2ban-client get {jail} maxretry"))


@pytest.fixture
def clean_jails():
    """Fresh jails (no bans or failure counts left by earlier tests); every ban lifted afterwards."""
    for jail in JAILS:
        out = PACS.run(f"fail2ban-client restart --unban {jail}")
        assert out.rc == 0, out.stdout + out.stderr
    assert wait_for(lambda: all(PACS.run(f"fail2ban-client status {j}").rc == 0 for j in JAILS), 30, 1)
    yield
    PACS.run("fail2ban-client unban --all")


def test_ufw_and_fail2ban_are_active_together_and_bans_are_port_scoped():
    assert "Status: active" in PACS.check_output("ufw status")
    for jail in JAILS:
        actions = PACS.check_output(f"fail2ban-client get {jail} actions")
        assert "nftables-multiport" in actions and "ufw" not in actions, actions


def test_https_brute_force_bans_the_address_on_the_https_port_only(clean_jails):
    gateway = host(GATEWAY)
    user = f"mallory{RUN}"
    tries = maxretry("orthanc-https")
    codes = checks.brute_force_https(gateway, PACS_IP, user, tries, port=HTTPS_PORT)
    assert codes == ["401"] * tries, codes
    assert wait_for(lambda: GATEWAY_WAN in checks.banned(PACS, "orthanc-https"), 30, 1), \
        PACS.check_output("fail2ban-client status orthanc-https")
    assert checks.https_status(gateway, PACS_IP, port=HTTPS_PORT)[0] == "000"
    assert checks.banned_anywhere(PACS) == {"orthanc-https": [GATEWAY_WAN]}
    # The same address keeps the VPN port: the gateway's tunnel reconnects from it ...
    gateway.check_output("systemctl restart openvpn-client@%s", GATEWAY_VARS["test_vpn_client"])
    address = next(c for c in site()["site_vpn_clients"] if c["name"] == GATEWAY_VARS["test_vpn_client"])["address"]
    assert wait_for(lambda: f" {address}/" in tunnel_address(GATEWAY), 60, 2), tunnel_address(GATEWAY)
    # ... and the MRI behind it still reaches DICOM through the tunnel.
    assert wait_for(lambda: echo_ok(echo("mri-1")), 60, 3), echo("mri-1")
    # The ban is per address: a radiologist still reaches HTTPS through its own tunnel.
    code, _ = checks.https_status(host(RADIOLOGIST), VPN_SERVER, port=HTTPS_PORT, extra="--interface tun0")
    assert code == "401", code


@pytest.mark.parametrize("name", ["ct-1", "mri-1"])
def test_a_modality_is_never_banned_whatever_it_logs(clean_jails, name):
    tries = maxretry("orthanc-dicom") + 2
    fake = f"FAKE{RUN}"[:16]
    for _ in range(tries):
        out = echo(name, aet=fake)
        assert "Association Rejected" in out and not echo_ok(out), out
    time.sleep(3)
    source = modality(name)["host"]
    bans = checks.banned_anywhere(PACS)
    assert not any(source in addresses for addresses in bans.values()), bans
    assert echo_ok(echo(name)), echo(name)
    # The DICOM jail's filter matches every one of these lines with the modality's address:
    # only ignoreip keeps the modality in.
    regex = PACS.check_output(
        "fail2ban-regex --print-all-matched /var/log/orthanc/Orthanc.log /etc/fail2ban/filter.d/orthanc-remote-dicom.conf")
    matched = [line for line in regex.splitlines() if f"AET {fake} on IP {source}" in line]
    assert len(matched) >= tries, regex[-2000:]
