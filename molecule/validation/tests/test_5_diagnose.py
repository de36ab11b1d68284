"""`make diagnose` on the whole site test_4 applied: real faults planted on the server, named with cause and fix.

The server test_4 provisioned has a direct modality ct-1 (10.231.44.20, AE CT1) and mri-2 behind
the gateway gw-b, which never connects here (there is no gateway container): diagnose must say
so, and nothing else may FAIL. ct-1's address is put on the server's loopback so that dcmtk on
the server itself speaks to Orthanc *from ct-1's address*: Orthanc then sees the modality's real
source address, the way it would on the wire. Each fault is planted, diagnosed through
`make diagnose MODALITY=ct-1` (the engineer-on-the-phone question) and removed again.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import testinfra
from conftest import PROJECT, run_make, run_playbook, write_inventory
from test_4_apply import second_site

HOST = testinfra.get_host("docker://mol-validation-pacs")
CT = "10.231.44.20"
PACS_AET = "DAYZWO_PACS"


def lines(out: str, result: str) -> list[str]:
    """The table lines of one result (PASS, WARN or FAIL) from the debug output (a YAML block)."""
    return [line.strip() for line in out.splitlines() if re.match(rf"\s+{result} ", line)]


def echo(calling: str, called: str = PACS_AET) -> str:
    return HOST.run(f"echoscu -aet {calling} -aec {called} {CT} 4242").stdout


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("diagnose")
    # test_4's artifacts (credentials, hand-outs), so the inventory is the one it applied.
    artifacts = sorted(tmp_path_factory.getbasetemp().glob("apply*"))[-1] / "artifacts"
    HOST.run_expect([0, 2], f"ip addr add {CT}/32 dev lo")
    HOST.run_expect([0], "command -v echoscu || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk")
    yield write_inventory(workdir, second_site(artifacts))
    HOST.run(f"ip addr del {CT}/32 dev lo")


def diagnose(inventory, modality: str = "") -> tuple[int, str]:
    return run_make("diagnose", inventory, **({"MODALITY": modality} if modality else {}))


def test_the_site_fails_only_on_the_gateway_that_never_connected(inventory):
    rc, out = diagnose(inventory)
    assert rc != 0, out
    failed = lines(out, "FAIL")
    assert len(failed) == 1 and re.match(r"FAIL\s+vpn\s+gw-b: gateway gw-b is not connected", failed[0]), out[-5000:]
    assert "on udp/1194" in failed[0] and "fix:" in failed[0]
    assert re.search(r"\d+ FAIL, \d+ WARN, \d+ PASS", out)


def test_the_direct_modalitys_path_is_clean_in_check_mode(inventory):
    assert "Success" in HOST.run(f"echoscu -v -aet CT1 -aec {PACS_AET} {CT} 4242").stderr
    rc, out = run_playbook(inventory, "playbooks/diagnose.yml", "--check", "-e", "modality=ct-1")
    assert rc == 0 and lines(out, "FAIL") == [], out[-5000:]
    assert any(re.match(r"PASS\s+port\s+tcp/4242$", line) for line in lines(out, "PASS")), out[-5000:]
    assert re.search(r"mol-validation-pacs\s*: ok=\d+\s+changed=0\s", out), out[-3000:]


def test_an_unknown_modality_is_refused(inventory):
    rc, out = diagnose(inventory, "ct-9")
    assert rc != 0 and "modality: 'ct-9' is not in site_modalities; use one of ct-1, mri-2" in out, out[-3000:]


def test_a_stopped_service(inventory):
    HOST.run_expect([0], "systemctl stop orthanc")
    try:
        rc, out = diagnose(inventory, "ct-1")
    finally:
        HOST.run_expect([0], "systemctl start orthanc")
        # systemctl returns before Orthanc listens: the next tests need its DICOM port.
        HOST.run_expect([0], "for i in $(seq 90); do ss -Hlnt | grep -q ':4242 ' && exit 0; sleep 1; done; exit 1")
    failed = lines(out, "FAIL")
    assert rc != 0 and any(re.match(r"FAIL\s+service\s+orthanc(\.service)?:", f) and "systemctl restart orthanc" in f for f in failed), out[-5000:]
    assert any(re.match(r"FAIL\s+port\s+tcp/4242: nothing listens", f) for f in failed)


EXPIRED_CERTIFICATE = """set -e; d=$(mktemp -d); cd $d; touch index.txt; echo 01 > serial
printf '[ca]\\ndefault_ca=c\\n[c]\\ndatabase=index.txt\\nnew_certs_dir=.\\nserial=serial\\npolicy=p\\ndefault_md=sha256\\n[p]\\ncommonName=supplied\\n' > ca.cnf
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout k.pem -out r.pem -subj /CN=pacs.dayzwo.test
openssl ca -batch -config ca.cnf -selfsign -keyfile k.pem -in r.pem -out /root/expired.crt -startdate 20200101000000Z -enddate 20200102000000Z
cp /etc/orthanc-remote/tls/https.crt /root/https.crt.bak && cp /root/expired.crt /etc/orthanc-remote/tls/https.crt"""


@pytest.fixture(scope="module")
def planted(inventory):
    """Independent faults at once, one diagnose run for all of them; every fault removed afterwards."""
    # From ct-1's own address (on the server's loopback), before the ban below refuses it: wrong
    # case, then a wrong title.
    for calling in ("ct1", "WRONG"):
        assert "Association Rejected" in HOST.run(f"echoscu -v -aet {calling} -aec {PACS_AET} {CT} 4242").stderr
    HOST.run_expect([0], "cp /etc/ufw/user.rules /root/user.rules.bak && cp /etc/ufw/user6.rules /root/user6.rules.bak")
    try:
        HOST.run_expect([0], f"ufw delete allow proto tcp from {CT} to any port 4242")
        HOST.run_expect([0], f"fail2ban-client set orthanc-dicom banip {CT}")
        # openssl ca can date a certificate in the past; swapped in for the HTTPS one (nginx is not reloaded).
        HOST.run_expect([0], EXPIRED_CERTIFICATE)
        for _ in range(3):
            HOST.run("curl -sk -o /dev/null -u dr-one:not-the-password https://127.0.0.1/system")
        rc, out = diagnose(inventory)
    finally:
        HOST.run("test -f /root/https.crt.bak && cp /root/https.crt.bak /etc/orthanc-remote/tls/https.crt")
        HOST.run(f"fail2ban-client set orthanc-dicom unbanip {CT}")
        HOST.run("cp /root/user.rules.bak /etc/ufw/user.rules && cp /root/user6.rules.bak /etc/ufw/user6.rules && ufw reload")
    assert rc != 0, out[-5000:]
    return out


def test_a_closed_port(planted):
    assert any(re.match(r"FAIL\s+firewall", f) and CT in f and "make apply" in f for f in lines(planted, "FAIL")), planted[-5000:]


def test_a_banned_modality_address(planted):
    assert any(f"modality ct-1's address {CT} is banned by fail2ban jail orthanc-dicom" in f
               and f"unbanip {CT}" in f for f in lines(planted, "FAIL")), planted[-5000:]


def test_an_expired_certificate(planted):
    failed = [f for f in lines(planted, "FAIL") if re.match(r"FAIL\s+certificate\s+/etc/orthanc-remote/tls/https.crt", f)]
    assert any("days_left=-" in f and "make renew-certificates" in f for f in failed), planted[-5000:]
    assert any("does not chain to /etc/orthanc-remote/tls/ca.crt" in f for f in failed)


def test_a_wrong_password(planted):
    warned = lines(planted, "WARN")
    assert any(re.match(r"WARN\s+login\s+dr-one: \d+ refused HTTPS logins as dr-one from 127\.0\.0\.1: the password is wrong", w)
               for w in warned), planted[-5000:]
    assert any("make rotate-password USER=dr-one" in w for w in warned)


@pytest.mark.parametrize("expected", [
    f"modality ct-1 called with AE title 'ct1' from {CT}; it is registered as 'CT1' (AE titles are case-sensitive)",
    f"the host of modality ct-1 ({CT}) called with AE title 'WRONG'; it is registered as 'CT1'",
])
def test_a_wrong_or_wrong_case_calling_ae_title(planted, expected):
    assert any(expected in f and "fix:" in f for f in lines(planted, "FAIL")), planted[-5000:]


def test_narrowed_to_the_modality_only_its_path_is_shown(inventory):
    # The wrong AE titles are still in Orthanc's last hour: on ct-1's path; the expired HTTPS
    # certificate (restored) and the gateway are not.
    rc, out = diagnose(inventory, "ct-1")
    failed = lines(out, "FAIL")
    assert rc != 0 and failed and all(re.match(r"FAIL\s+ae-title\s+ct-1:", f) for f in failed), out[-5000:]


def test_the_collector_reads_revocations_from_the_servers_crl(inventory):
    # dr-two was revoked by test_4 through the inventory; the collector finds it in the CRL itself,
    # which is how a gateway revoked by hand (or by a stale profile) shows up in diagnose.
    subprocess.run(["docker", "cp", str(PROJECT / "playbooks/files/diagnose_collect.py"),
                    "mol-validation-pacs:/root/diagnose_collect.py"], check=True, timeout=60)
    paths = json.dumps({"vpn_pki": "/etc/openvpn/server/pki", "vpn_crl": "/etc/openvpn/server/crl.pem"})
    collected = json.loads(HOST.check_output(f"python3 /root/diagnose_collect.py '{paths}'"))
    assert collected["vpn_revoked"] == ["dr-two"], collected["vpn_revoked"]
    assert collected["ufw_active"] is True and collected["resources"]["cores"] >= 1
