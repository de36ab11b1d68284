"""`make diagnose` on the lab: every fault of the seed article's troubleshooting list planted for
real, where it happens on a live site, and named by diagnose with its cause and fix.

On the wire: the CT calls from its own container with a wrong-case and a wrong AE title, and
cannot reach the port its firewall rule opened once that rule is gone. On the PACS: Orthanc
stopped, the HTTPS certificate replaced by an expired one, the storage directory on a full
volume (a small tmpfs mounted over it: a volume or quota full to the last block), the CT's
address banned by fail2ban, wrong passwords, and the imaging gateway's VPN certificate revoked
by hand in the server's PKI (the gateway then cannot reconnect). The healthy site's diagnose is
in test_1. Diagnose runs as an engineer runs it: over SSH as the lab's admin with sudo, ufw and
fail2ban active. Every fault is removed again; the revoked gateway by the fix diagnose prints
(make apply issues a new certificate, the gateway gets its new profile), proven by verify.
"""

from __future__ import annotations

import base64
import re
import ssl
import urllib.error
import urllib.request

import pytest
from conftest import (DICOM, HTTPS_PORT, PACS_IP, PACS_NAME, ca_file, echo, echo_ok, host, hosts_of, modality, play,
                      recap, table_rows, wait_for)

CT = modality("ct-1")
MRI = modality("mri-1")
GATEWAY = MRI["vpn_gateway"]
GATEWAY_HOST = next(h for h, v in hosts_of("lab_vpn_gateways").items() if v["test_vpn_client"] == GATEWAY)
STORAGE = "/var/lib/orthanc/db-v6"  # the orthanc role's orthanc_storage_directory (the index is in it too)
HTTPS_CERT = "/etc/orthanc-remote/tls/https.crt"
PACS = host(PACS_NAME)


def diagnose(narrow_to: str = "") -> tuple[int, str]:
    result = play("playbooks/diagnose.yml", {"modality": narrow_to} if narrow_to else None)
    return result.returncode, result.stdout + result.stderr


def failed_with(out: str, pattern: str) -> list[str]:
    return [row for row in table_rows(out, "FAIL") if re.search(pattern, row)]


def wrong_login(user: str) -> int:
    """An HTTPS login with a wrong password from this machine (an admin source: never banned)."""
    request = urllib.request.Request(f"https://{PACS_IP}:{HTTPS_PORT}/system")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:not-the-password".encode()).decode())
    try:
        urllib.request.urlopen(request, context=ssl.create_default_context(cafile=ca_file()), timeout=15)
        return 200
    except urllib.error.HTTPError as error:
        return error.code


def wait_for_dicom_port() -> None:
    # systemctl returns before Orthanc listens.
    PACS.run_expect([0], f"for i in $(seq 90); do ss -Hlnt | grep -q ':{DICOM['port']} ' && exit 0; sleep 1; done; exit 1")


def test_a_stopped_service():
    PACS.run_expect([0], "systemctl stop orthanc")
    try:
        assert not echo_ok(echo("ct-1"))
        rc, out = diagnose("ct-1")
    finally:
        PACS.run_expect([0], "systemctl start orthanc")
        wait_for_dicom_port()
    assert rc != 0
    assert failed_with(out, r"^FAIL\s+service\s+orthanc(\.service)?:.*systemctl restart orthanc"), out[-5000:]
    assert failed_with(out, rf"^FAIL\s+port\s+tcp/{DICOM['port']}: nothing listens"), out[-5000:]
    assert echo_ok(echo("ct-1"))


EXPIRED_CERTIFICATE = f"""set -e; d=$(mktemp -d); cd $d; touch index.txt; echo 01 > serial
printf '[ca]\\ndefault_ca=c\\n[c]\\ndatabase=index.txt\\nnew_certs_dir=.\\nserial=serial\\npolicy=p\\ndefault_md=sha256\\n[p]\\ncommonName=supplied\\n' > ca.cnf
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout k.pem -out r.pem -subj /CN=pacs.lab.test
openssl ca -batch -config ca.cnf -selfsign -keyfile k.pem -in r.pem -out expired.crt -startdate 20200101000000Z -enddate 20200102000000Z
cp -p {HTTPS_CERT} /root/https.crt.bak && cat expired.crt > {HTTPS_CERT}; rm -rf $d"""


def _firewall_rule_numbers(address: str, port: int) -> list[int]:
    status = PACS.check_output("ufw status numbered")
    return [int(n) for n, rule in re.findall(r"^\[\s*(\d+)\]\s+(.*)$", status, re.M)
            if re.match(rf"{port}/tcp\s+ALLOW IN\s+{re.escape(address)}(\s|$)", rule)]


@pytest.fixture(scope="module")
def planted():
    """The independent faults at once, one diagnose run for all of them (and one narrowed to the
    CT, the engineer's question); every fault removed afterwards, the gateway by diagnose's fix."""
    # The CT's engineer types its AE title in capitals, then someone else's: both rejected.
    assert not echo_ok(echo("ct-1", aet=CT["aet"].upper())) and CT["aet"].upper() != CT["aet"]
    assert not echo_ok(echo("ct-1", aet="WRONG_LAB"))
    PACS.run_expect([0], "cp -p /etc/ufw/user.rules /root/user.rules.bak && cp -p /etc/ufw/user6.rules /root/user6.rules.bak")
    try:
        # A closed port: the CT's firewall rule deleted (ufw renumbers after each delete).
        numbers = _firewall_rule_numbers(CT["host"], DICOM["port"])
        assert numbers, PACS.check_output("ufw status numbered")
        for number in sorted(numbers, reverse=True):
            PACS.run_expect([0], f"ufw --force delete {number}")
        assert not echo_ok(echo("ct-1"))
        PACS.run_expect([0], f"fail2ban-client set orthanc-dicom banip {CT['host']}")
        # nginx is not reloaded: the file on disk is what diagnose (and the next reload) reads.
        PACS.run_expect([0], EXPIRED_CERTIFICATE)
        assert {wrong_login("dr-one") for _ in range(3)} == {401}
        # A full volume under Orthanc's storage; Orthanc keeps its open index, and nothing is
        # stored while it is mounted.
        PACS.run_expect([0], f"mount -t tmpfs -o size=2m,mode=0750 orthanc-remote-full {STORAGE} && "
                             f"(dd if=/dev/zero of={STORAGE}/fill bs=64k 2>/dev/null; true) && df {STORAGE}")
        # The gateway's certificate revoked by hand (the PKI helper the role installs), its tunnel
        # restarted: the server refuses the reconnection and the MRI has no path. The client is
        # stopped once refused, so that its retries do not feed the OpenVPN jail.
        PACS.run_expect([0], f"/usr/local/sbin/orthanc-remote-vpn revoke {GATEWAY}")
        gateway = host(GATEWAY_HOST)
        gateway.run_expect([0], f"systemctl restart openvpn-client@{GATEWAY}")
        try:
            assert wait_for(lambda: "certificate revoked" in PACS.check_output(
                "tail -n 100 /var/log/openvpn/orthanc-remote.log"), timeout=60)
        finally:
            gateway.run(f"systemctl stop openvpn-client@{GATEWAY}")
        assert not echo_ok(echo("mri-1"))
        everything = diagnose()
        narrowed = diagnose("ct-1")
    finally:
        PACS.run(f"umount {STORAGE} || umount -l {STORAGE}")
        PACS.run(f"test -f /root/https.crt.bak && cat /root/https.crt.bak > {HTTPS_CERT}")
        PACS.run(f"fail2ban-client set orthanc-dicom unbanip {CT['host']}")
        PACS.run("cp -p /root/user.rules.bak /etc/ufw/user.rules && cp -p /root/user6.rules.bak /etc/ufw/user6.rules "
                 "&& ufw reload")
    return everything, narrowed


def test_the_faults_fail_the_run(planted):
    (rc, out), (narrowed_rc, _) = planted
    assert rc != 0 and narrowed_rc != 0, out[-5000:]
    assert re.search(r"^\s*[1-9]\d* FAIL, \d+ WARN, \d+ PASS", out, re.M), out[-5000:]


@pytest.mark.parametrize("pattern", [
    # A wrong-case AE title: the same address, the registered title in other letters.
    rf"^FAIL\s+ae-title\s+ct-1: modality ct-1 called with AE title '{CT['aet'].upper()}' from {CT['host']}; "
    rf"it is registered as '{CT['aet']}' \(AE titles are case-sensitive\).*fix:",
    # A wrong AE title from a known modality's address.
    rf"^FAIL\s+ae-title\s+ct-1: the host of modality ct-1 \({CT['host']}\) called with AE title 'WRONG_LAB'; "
    rf"it is registered as '{CT['aet']}'.*fix:",
    # A closed port: the firewall no longer has the model's rule for the CT.
    rf"^FAIL\s+firewall\b.*{re.escape(CT['host'])}.*make apply",
    # A banned modality address.
    rf"modality ct-1's address {re.escape(CT['host'])} is banned by fail2ban jail orthanc-dicom.*unbanip {re.escape(CT['host'])}",
    # An expired certificate: its days left, and the fix.
    rf"^FAIL\s+certificate\s+{HTTPS_CERT}.*days_left=-\d+.*make renew-certificates",
    # A full volume under the storage directory.
    rf"^FAIL\s+disk\s+{STORAGE}: disk {STORAGE}: CRITICAL.*free space under {STORAGE}",
    # A revoked gateway, read from the server's own CRL (the inventory still lists it).
    rf"^FAIL\s+vpn\s+{GATEWAY}: gateway {GATEWAY} is revoked .*mri-1.*make apply",
])
def test_each_fault_is_named_with_its_cause_and_fix(planted, pattern):
    (_, out), _ = planted
    assert failed_with(out, pattern), (pattern, "\n".join(table_rows(out, "FAIL")), out[-3000:])


def test_a_wrong_password_is_named_with_the_user_and_the_fix(planted):
    (_, out), _ = planted
    warned = table_rows(out, "WARN")
    assert any(re.match(r"WARN\s+login\s+dr-one: \d+ refused HTTPS logins as dr-one from [\d.]+: the password is wrong", row)
               and "make rotate-password USER=dr-one" in row for row in warned), out[-5000:]


def test_narrowed_to_the_ct_only_its_path_is_shown(planted):
    _, (_, out) = planted
    failed = table_rows(out, "FAIL")
    assert failed_with(out, r"^FAIL\s+ae-title\s+ct-1:") and failed_with(out, r"^FAIL\s+disk\s"), out[-5000:]
    # The gateway and the HTTPS certificate are not on the CT's path.
    assert not [row for row in failed if GATEWAY in row or HTTPS_CERT in row], failed


def test_the_fix_diagnose_gives_for_the_gateway_brings_it_back():
    """After the other faults are removed: make apply issues the gateway a new certificate, its
    new profile is installed (verify.yml does it for a test client, as IT staff would by hand),
    every path works again and diagnose only remembers the wrong AE titles in Orthanc's log."""
    applied = play("site.yml")
    assert applied.returncode == 0 and recap(applied, PACS_NAME)["failed"] == 0
    verified = play("playbooks/verify.yml")
    assert verified.returncode == 0, verified.stdout[-4000:]
    assert echo_ok(echo("mri-1")) and echo_ok(echo("ct-1"))
    rc, out = diagnose()
    assert [row for row in table_rows(out, "FAIL") if not re.match(r"FAIL\s+ae-title\s", row)] == [], out[-5000:]
    assert any(re.match(rf"PASS\s+vpn\s+{GATEWAY}", row) for row in table_rows(out, "PASS")), out[-5000:]
