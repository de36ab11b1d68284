"""An outsider on the internet network: its DICOM, HTTPS and VPN attempts fail, and full TCP and
UDP scans of the PACS show nothing open to it (the model opens only the VPN port to everyone,
and OpenVPN with tls-crypt stays silent to anyone without the key)."""

import re

import pytest

from conftest import ARTIFACTS, DICOM, HTTPS_PORT, PACS_IP, PACS_NAME, echo_ok, host, hosts_of, modality, site

OUTSIDER = next(iter(hosts_of("lab_outsiders")))
OUTSIDER_IP = hosts_of("lab_outsiders")[OUTSIDER]["lab_interfaces"][0]["ipv4_address"]


@pytest.fixture(scope="module")
def outsider():
    return host(OUTSIDER)


def test_the_model_opens_nothing_but_the_vpn_port_to_the_outsider():
    facts = site()
    sources = facts["site_admin_sources"] + facts["site_https_sources"]
    assert not any(OUTSIDER_IP.startswith(s.split("/")[0]) for s in sources)
    assert OUTSIDER_IP not in [m["host"] for m in facts["site_modalities"]]


def test_dicom_with_a_stolen_ct_certificate_fails_from_elsewhere(outsider):
    for name in ("client.crt", "client.key", "ca.crt"):
        outsider.check_output("mkdir -p /root/stolen && echo %s | base64 -d > /root/stolen/%s",
                              __import__("base64").b64encode((ARTIFACTS / "modalities" / "ct-1" / name).read_bytes()).decode(),
                              name)
    out = outsider.run(
        f"echoscu -v -to 5 -ta 5 -td 5 +tls /root/stolen/client.key /root/stolen/client.crt +cf /root/stolen/ca.crt "
        f"-aet {modality('ct-1')['aet']} -aec {DICOM['aet']} {PACS_IP} {DICOM['port']} 2>&1").stdout
    assert not echo_ok(out) and "Failed" in out, out


def test_https_fails(outsider):
    out = outsider.run(f"curl -sk --max-time 8 -o /dev/null -w '%{{http_code}}' https://{PACS_IP}:{HTTPS_PORT}/").stdout
    assert out == "000"


def test_vpn_with_a_forged_certificate_fails(outsider):
    """Even with the profile's tls-crypt key (a leaked profile without its key), a certificate the
    site's CA did not issue is refused by the server."""
    profile = (ARTIFACTS / "vpn" / "dr-one.ovpn").read_text()
    outsider.check_output(
        "cd /root && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
        "-subj /CN=dr-one -keyout forged.key -out forged.crt 2>/dev/null")
    forged = re.sub(r"<cert>.*?</cert>\n?|<key>.*?</key>\n?", "", profile, flags=re.S)
    forged += "cert /root/forged.crt\nkey /root/forged.key\nhand-window 10\nconnect-retry-max 1\n"
    outsider.check_output("echo %s | base64 -d > /root/forged.ovpn", __import__("base64").b64encode(forged.encode()).decode())
    out = outsider.run("timeout 30 openvpn --config /root/forged.ovpn --dev tun9 2>&1").stdout
    assert "Initialization Sequence Completed" not in out, out
    log = host(PACS_NAME).check_output("grep -a '%s' /var/log/openvpn/orthanc-remote.log | tail -n 20", OUTSIDER_IP)
    assert "VERIFY ERROR" in log or "TLS handshake failed" in log, log


def _listed(out: str, proto: str) -> dict[int, str]:
    """{port: state} of the ports nmap lists one by one (those not in the "Not shown" bulk)."""
    assert "1 host up" in out, out
    return {int(p): s for p, s in re.findall(rf"^(\d+)/{proto}\s+(\S+)", out, re.M)}


def test_full_tcp_scan_shows_nothing_open(outsider):
    out = outsider.check_output(f"nmap -Pn -n -sS -p- -T4 --max-retries 1 --min-rate 3000 {PACS_IP}")
    # Every port silently dropped: none open, none closed (a closed port answers with a reset).
    assert _listed(out, "tcp") == {} and "Not shown: 65535 filtered tcp ports" in out, out


def test_full_udp_scan_shows_nothing_answering(outsider):
    out = outsider.check_output(f"nmap -Pn -n -sU -p- -T4 --max-retries 0 --min-rate 3000 {PACS_IP}")
    # Nothing answers: no port open, none closed (a closed port would answer ICMP unreachable); the
    # VPN port, open to everyone, is as silent as the dropped ones (tls-crypt).
    listed = _listed(out, "udp")
    assert not any(s in ("open", "closed") for s in listed.values()), out
    assert "Not shown: 65535 open|filtered udp ports" in out or set(listed.values()) == {"open|filtered"}, out
