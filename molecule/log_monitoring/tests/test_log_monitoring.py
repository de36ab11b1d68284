"""Acceptance tests of the log_monitoring role, with real clients in the admin and attacker containers.

Every control has a test that would fail without it: the attacker is banned only because the
jails work, the admin survives only because of ignoreip (the same filter matches its lines), a
certificate is flagged only because the check reads its real expiry.
"""

import json
import os
import pathlib
import re
import shlex
import sys
import time
import uuid

import pytest
import testinfra

sys.path.insert(0, str(pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "molecule" / "shared"))
import fail2ban_checks as checks  # noqa: E402

SERVER = testinfra.get_host("docker://mol-logmon-server")
ADMIN = testinfra.get_host("docker://mol-logmon-admin")
ATTACKER = testinfra.get_host("docker://mol-logmon-attacker")
MODALITY = testinfra.get_host("docker://mol-logmon-modality")
SERVER_IP = "10.231.15.10"
ADMIN_IP = "10.231.15.20"
ATTACKER_IP = "10.231.15.30"
MODALITY_IP = "10.231.15.40"
MAXRETRY = 5
JAILS = checks.JAILS
RUN = uuid.uuid4().hex[:6]
VIEWER = ("dr-view", "Logmon-Viewer-Passw0rd-37")


@pytest.fixture(scope="module", autouse=True)
def dicom_reachable_for_the_test_clients():
    """ufw opens DICOM to registered modalities only; the admin and attacker containers get a
    test rule so the DICOM jail can see them fail (as a DICOM port open to them would)."""
    for address in (ADMIN_IP, ATTACKER_IP):
        out = SERVER.run(f"ufw insert 1 allow proto tcp from {address} to any port 4242 comment logmon-test")
        assert out.rc == 0, out.stdout + out.stderr
    yield
    for address in (ADMIN_IP, ATTACKER_IP):
        SERVER.run(f"ufw delete allow proto tcp from {address} to any port 4242 comment logmon-test")


def root(cmd):
    """Run a command as root on the server and return the result (testinfra's docker backend is root)."""
    return SERVER.run(cmd)


def banned(jail):
    out = root(f"fail2ban-client get {jail} banip")
    assert out.rc == 0, out.stderr
    return out.stdout.split()


def wait_for(predicate, timeout=20.0, step=0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


@pytest.fixture()
def clean_jails():
    """Fresh jails: no bans, no failure counts carried over from another test."""
    for jail in ("orthanc-https", "orthanc-dicom", "orthanc-openvpn"):
        out = root(f"fail2ban-client restart --unban {jail}")
        assert out.rc == 0, out.stdout + out.stderr
    assert wait_for(lambda: all(root(f"fail2ban-client status {j}").rc == 0 for j in JAILS))
    yield
    root("fail2ban-client unban --all")


def https_login(host, user, password="wrong-password-123"):
    """One login attempt through nginx; returns curl's printed status code and its error text."""
    out = host.run(
        f"curl -sS -k --max-time 5 -u '{user}:{password}' -o /dev/null -w '%{{http_code}}' https://{SERVER_IP}/system"
    )
    return out.stdout.strip(), out.stderr.strip(), out.rc


def echo(host, aet):
    """One C-ECHO from host with calling AET `aet`; returns echoscu's full output."""
    out = host.run(f"echoscu -v -to 5 -ta 5 -td 5 -aet '{aet}' -aec ORTHANC {SERVER_IP} 4242")
    return out.stdout + out.stderr


# --- fail2ban ---------------------------------------------------------------------------------
def test_every_jail_runs():
    out = root("fail2ban-client status")
    listed = re.search(r"Jail list:\s*(.*)", out.stdout).group(1).replace(",", " ").split()
    for jail in JAILS:
        assert jail in listed
        status = root(f"fail2ban-client status {jail}")
        assert status.rc == 0 and "Currently banned" in status.stdout


def test_sshd_jail_reads_the_journal_not_auth_log():
    out = root("fail2ban-client get sshd journalmatch")
    assert out.rc == 0 and "_SYSTEMD_UNIT=sshd.service" in out.stdout
    assert not SERVER.file("/var/log/auth.log").exists


def test_ufw_is_active_and_bans_are_port_scoped():
    assert "Status: active" in root("ufw status").stdout
    for jail in ("orthanc-https", "orthanc-dicom", "orthanc-openvpn"):
        actions = root(f"fail2ban-client get {jail} actions").stdout
        assert "nftables-multiport" in actions and "ufw" not in actions, actions


def test_ignoreip_holds_the_sites_own_peers_only():
    out = root("fail2ban-client get orthanc-dicom ignoreip").stdout
    for source in ("127.0.0.0/8", ADMIN_IP, MODALITY_IP, "10.8.0.10", "192.168.50.0/24"):
        assert source in out, out
    assert ATTACKER_IP not in out


def test_failed_https_logins_ban_the_attacker_on_the_https_port_only(clean_jails):
    user = f"mallory{RUN}"
    # Before: the attacker reaches HTTPS, DICOM (test rule) and the VPN port.
    assert checks.dicom_port_answers(ATTACKER, SERVER_IP)
    codes = checks.brute_force_https(ATTACKER, SERVER_IP, user, MAXRETRY)
    assert codes == ["401"] * MAXRETRY, codes
    assert wait_for(lambda: ATTACKER_IP in banned("orthanc-https")), root("fail2ban-client status orthanc-https").stdout
    code, rc = checks.https_status(ATTACKER, SERVER_IP, user, "wrong-password-123")
    assert code == "000" and rc in (7, 28), (code, rc)  # refused (reject) or timed out
    # Only the HTTPS port: the attacker keeps DICOM and the VPN port it had.
    assert checks.dicom_port_answers(ATTACKER, SERVER_IP)
    assert checks.vpn_port_answers(SERVER, ATTACKER, ATTACKER_IP, SERVER_IP)
    assert checks.banned_anywhere(SERVER) == {"orthanc-https": [ATTACKER_IP]}
    # The ban is per address: the admin still reaches the login page.
    assert https_login(ADMIN, "admin")[0] == "401"
    # fail2ban-regex matches the lines this test produced, with the attacker's address.
    regex = root(
        "fail2ban-regex --print-all-matched /var/log/nginx/orthanc-remote/orthanc-access.log "
        "/etc/fail2ban/filter.d/orthanc-remote-https.conf"
    )
    matched = [line for line in regex.stdout.splitlines() if user in line]
    assert len(matched) >= MAXRETRY and all(ATTACKER_IP in line for line in matched), regex.stdout[-2000:]


def test_requests_without_credentials_are_not_failed_logins(clean_jails):
    # A browser's first request carries no credentials and gets 401: not an attack.
    for _ in range(MAXRETRY + 3):
        out = ATTACKER.run(f"curl -sS -k --max-time 5 -o /dev/null -w '%{{http_code}}' https://{SERVER_IP}/system")
        assert out.stdout.strip() == "401"
    time.sleep(2)
    assert ATTACKER_IP not in banned("orthanc-https")


def test_admin_source_is_never_banned(clean_jails):
    user = f"admin{RUN}"
    for _ in range(MAXRETRY * 2):
        assert https_login(ADMIN, user)[0] == "401"
    time.sleep(2)
    assert ADMIN_IP not in banned("orthanc-https")
    assert https_login(ADMIN, user)[0] == "401"
    # The filter matches the admin's failures too: only ignoreip keeps the admin in.
    regex = root(
        "fail2ban-regex --print-all-matched /var/log/nginx/orthanc-remote/orthanc-access.log "
        "/etc/fail2ban/filter.d/orthanc-remote-https.conf"
    )
    assert len([line for line in regex.stdout.splitlines() if user in line and ADMIN_IP in line]) >= MAXRETRY * 2


def test_unknown_aet_associations_ban_the_attacker_even_after_orthanc_restarts(clean_jails):
    # Orthanc opens a new per-start file on restart and repoints Orthanc.log: the jail must follow.
    before = SERVER.file("/var/log/orthanc/Orthanc.log").linked_to
    assert root("systemctl restart orthanc").rc == 0
    assert wait_for(lambda: SERVER.file("/var/log/orthanc/Orthanc.log").linked_to != before, 30)
    assert wait_for(lambda: root("bash -c 'echo > /dev/tcp/127.0.0.1/4242'").rc == 0, 30)
    aet = f"EVIL{RUN}"
    for attempt in range(MAXRETRY):
        output = echo(ATTACKER, aet)
        assert "Association Rejected" in output and "Calling AE Title Not Recognized" in output, (attempt, output)
    assert wait_for(lambda: ATTACKER_IP in banned("orthanc-dicom")), root("fail2ban-client status orthanc-dicom").stdout
    output = echo(ATTACKER, aet)
    assert "Association Request Failed" in output and re.search(r"Connection refused|Timeout|timed out", output), output
    # The HTTPS port is another jail's business: this ban covers the DICOM port.
    assert https_login(ATTACKER, "nobody")[0] == "401"
    regex = root(
        "fail2ban-regex --print-all-matched /var/log/orthanc/Orthanc.log "
        "/etc/fail2ban/filter.d/orthanc-remote-dicom.conf"
    )
    matched = [line for line in regex.stdout.splitlines() if f"remote AET {aet} on IP {ATTACKER_IP}" in line]
    assert len(matched) >= MAXRETRY, regex.stdout[-2000:]


def test_address_spoofed_in_the_aet_is_not_banned(clean_jails):
    # The caller chooses its AE title; the address is read from the end of the line.
    for _ in range(MAXRETRY):
        assert "Calling AE Title Not Recognized" in echo(ATTACKER, "A on IP 10.0.0.9")
    assert wait_for(lambda: ATTACKER_IP in banned("orthanc-dicom"))
    assert "10.0.0.9" not in banned("orthanc-dicom")


def test_admin_dicom_rejections_are_never_banned(clean_jails):
    for _ in range(MAXRETRY + 2):
        assert "Calling AE Title Not Recognized" in echo(ADMIN, f"ADM{RUN}")
    time.sleep(2)
    assert ADMIN_IP not in banned("orthanc-dicom")
    assert "Association Rejected" in echo(ADMIN, f"ADM{RUN}")


def _rogue_vpn_client(tls_crypt_key, seconds):
    """Start an OpenVPN client with a self-signed certificate on the attacker, for ``seconds``."""
    ATTACKER.run(
        "test -f /tmp/rogue.crt || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
        "-keyout /tmp/rogue.key -out /tmp/rogue.crt -subj /CN=rogue -days 3 2>/dev/null"
    )
    started = ATTACKER.run(
        f"bash -c 'timeout {seconds} openvpn --client --dev tun --proto udp --remote "
        f"{SERVER_IP} 1194 --nobind --ca /tmp/rogue.crt --cert /tmp/rogue.crt --key /tmp/rogue.key "
        f"--tls-crypt {tls_crypt_key} --connect-retry 1 1 --writepid /tmp/rogue-openvpn.pid --verb 1 "
        ">/tmp/rogue-client.log 2>&1 & echo $! >/tmp/rogue-client.pid'"
    )
    assert started.rc == 0


def _stop_rogue_vpn_client():
    """Stop the client started by _rogue_vpn_client (its timeout wrapper and OpenVPN, by pid)."""
    ATTACKER.run("kill $(cat /tmp/rogue-client.pid /tmp/rogue-openvpn.pid 2>/dev/null) 2>/dev/null; true")
    assert wait_for(lambda: ATTACKER.run("kill -0 $(cat /tmp/rogue-openvpn.pid) 2>/dev/null").rc != 0, 10)
    ATTACKER.run("rm -f /tmp/rogue-openvpn.pid")


def test_udp_scan_of_the_vpn_port_bans_nobody(clean_jails):
    # A client without the server's tls-crypt key: OpenVPN logs EVERY packet it cannot unwrap.
    # Counting those lines would let any UDP scan get an address banned within seconds.
    log = "/var/log/openvpn/orthanc-remote.log"
    pattern = f"tls-crypt unwrapping failed from \\[AF_INET\\]{ATTACKER_IP}:"
    before = int(root(f"grep -c '{pattern}' {log}").stdout.strip() or 0)
    ATTACKER.run("test -f /tmp/wrong.key || openvpn --genkey tls-crypt /tmp/wrong.key")
    _rogue_vpn_client("/tmp/wrong.key", 12)
    checks.udp_packets(ATTACKER, SERVER_IP, 1194, 200)
    try:
        assert wait_for(lambda: int(root(f"grep -c '{pattern}' {log}").stdout.strip() or 0) >= before + 4 * MAXRETRY, 20)
        time.sleep(3)
        assert checks.banned_anywhere(SERVER) == {}
        assert https_login(ATTACKER, "nobody")[0] == "401"
    finally:
        _stop_rogue_vpn_client()
    regex = root(f"fail2ban-regex --print-all-matched {log} /etc/fail2ban/filter.d/orthanc-remote-openvpn.conf")
    assert "tls-crypt unwrapping failed" not in regex.stdout, regex.stdout[-2000:]


# --- bans that cannot be turned against the site ----------------------------------------------
def test_registered_modality_is_never_banned_whatever_it_logs(clean_jails):
    # Unknown AE titles and a command it may not use (C-FIND), from the modality's own address.
    for _ in range(MAXRETRY + 2):
        assert "Calling AE Title Not Recognized" in echo(MODALITY, f"FAKE{RUN}")
        MODALITY.run(f"findscu -v -to 5 -S -k QueryRetrieveLevel=STUDY -aet CT1 -aec ORTHANC {SERVER_IP} 4242")
    time.sleep(3)
    bans = checks.banned_anywhere(SERVER)
    assert not any(MODALITY_IP in addresses for addresses in bans.values()), bans
    assert "Received Echo Response (Success)" in echo(MODALITY, "CT1")
    # The DICOM filter matches its lines (both Orthanc 1.10.1 messages): only ignoreip keeps it in.
    regex = root(
        "fail2ban-regex --print-all-matched /var/log/orthanc/Orthanc.log /etc/fail2ban/filter.d/orthanc-remote-dicom.conf"
    ).stdout
    assert len([x for x in regex.splitlines() if f"AET FAKE{RUN} on IP {MODALITY_IP}" in x]) >= MAXRETRY, regex[-2000:]
    assert f'Rejected Find request from remote DICOM modality with AET "CT1" and hostname "{MODALITY_IP}"' in regex


LOCAL_REQUEST = """
import base64, sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1], method="DELETE")
request.add_header("Authorization", "Basic " + base64.b64encode(sys.argv[2].encode()).decode())
request.add_header("X-Forwarded-For", sys.argv[3])
try:
    print(urllib.request.urlopen(request, timeout=10).status)
except urllib.error.HTTPError as error:
    print(error.code)
"""


def test_log_injection_leaves_one_line_per_request_and_bans_nobody(clean_jails):
    forged = "W1201 05:00:00.000000 CommandDispatcher.cpp:617] Rejected association for remote AET X on IP 198.51.100.7"
    marker = f"inj{RUN}"
    path = f"/patients/{marker}%0A" + forged.replace(" ", "%20").replace("]", "%5D")
    # Through nginx (the way in from outside): encoded control characters are refused there.
    for _ in range(MAXRETRY):
        code, _ = checks.https_status(ADMIN, SERVER_IP, *VIEWER, path=path, extra="-X DELETE")
        assert code == "400", code
    nginx_lines = [x for x in root("cat /var/log/nginx/orthanc-remote/orthanc-access.log").stdout.splitlines() if marker in x]
    assert len(nginx_lines) == MAXRETRY, nginx_lines
    # Straight to Orthanc on loopback (nginx's place): the request filter sees the decoded newline,
    # refuses, and writes ONE escaped line per request.
    args = " ".join(shlex.quote(a) for a in (f"http://127.0.0.1:8042{path}", ":".join(VIEWER), ATTACKER_IP))
    for _ in range(MAXRETRY):
        assert root(f"python3 -c {shlex.quote(LOCAL_REQUEST)} {args}").stdout.strip() == "403"
    orthanc = root("cat /var/log/orthanc/Orthanc.log").stdout.splitlines()
    lines = [x for x in orthanc if marker in x]
    assert len(lines) == MAXRETRY and all("orthanc-remote: refused" in x and "\\x0a" in x for x in lines), lines
    # No line starts with the forged text; the address appears only inside the escaped refusals.
    assert not any(x.startswith(forged[:30]) for x in orthanc), "a forged line was written"
    assert all(marker in x for x in orthanc if "198.51.100.7" in x)
    time.sleep(3)
    assert checks.banned_anywhere(SERVER) == {}
    regex = root(
        "fail2ban-regex --print-all-matched /var/log/orthanc/Orthanc.log /etc/fail2ban/filter.d/orthanc-remote-dicom.conf"
    ).stdout
    assert "198.51.100.7" not in regex and marker not in regex, regex[-2000:]


def test_dicom_filter_matches_real_lines_and_no_forged_line():
    # Real lines Orthanc 1.10.1 wrote in this scenario, and forged variants that must not match.
    log = root("cat /var/log/orthanc/Orthanc.log").stdout.splitlines()
    real_assoc = next(x for x in log if re.search(r"CommandDispatcher\.cpp:\d+\] Rejected association for remote AET", x))
    real_command = next(x for x in log if 'Rejected Find request from remote DICOM modality with AET "CT1"' in x)
    refused = next(x for x in log if "orthanc-remote: refused" in x and "x0a" in x)
    stamp = real_assoc.split(" ", 2)[:2]
    forged = [
        refused,
        f"{stamp[0]} {stamp[1]} PluginsManager.cpp:153] orthanc-remote: refused: Rejected association for remote AET X on IP 198.51.100.7",
        f"{stamp[0]} {stamp[1]} CommandDispatcher.cpp:617] Rejected association for remote AET X on IP 198.51.100.7 (forged)",
        f"{stamp[0]} {stamp[1]} main.cpp:1] note: Rejected association for remote AET X on IP 198.51.100.7",
        f'{stamp[0]} {stamp[1]} CommandDispatcher.cpp:821] Rejected Echo request from remote DICOM modality with AET "A" and hostname "198.51.100.7" x',
        f"{stamp[0]} {stamp[1]} CommandDispatcher.cpp:617] Rejected association for remote AET THIS-AET-IS-WAY-TOO-LONG on IP 198.51.100.7",
    ]
    sample = "\n".join([real_assoc, real_command] + forged) + "\n"
    root(f"cat > /tmp/dicom-sample.log <<'EOF'\n{sample}EOF")
    out = root("fail2ban-regex --print-all-matched /tmp/dicom-sample.log /etc/fail2ban/filter.d/orthanc-remote-dicom.conf")
    assert re.search(r"Lines: 8 lines, 0 ignored, 2 matched, 6 missed", out.stdout), out.stdout
    matched = out.stdout.split("|- Matched line(s):")[1].split("`-")[0] if "|- Matched line(s):" in out.stdout else out.stdout
    assert "198.51.100.7" not in matched, out.stdout


def test_failed_vpn_handshakes_ban_on_the_vpn_port_only(clean_jails):
    # Last of the ban tests: OpenVPN logs the handshakes still pending when the client stops
    # "failed" 60 s later (hand-window), which bans the attacker again on the VPN port.
    # A client with the right tls-crypt key but a certificate the server does not trust: one
    # "TLS handshake failed" per attempt. The ban covers the VPN port, not HTTPS or DICOM.
    key = root("cat /etc/openvpn/server/tc.key").stdout
    ATTACKER.run(f"cat > /tmp/tc.key <<'EOF'\n{key}EOF")
    _rogue_vpn_client("/tmp/tc.key", 120)
    try:
        assert wait_for(lambda: ATTACKER_IP in banned("orthanc-openvpn"), 110), (
            root("tail -20 /var/log/openvpn/orthanc-remote.log").stdout)
    finally:
        _stop_rogue_vpn_client()
    assert ATTACKER_IP in root("nft list ruleset").stdout
    assert checks.banned_anywhere(SERVER) == {"orthanc-openvpn": [ATTACKER_IP]}
    assert https_login(ATTACKER, "nobody")[0] == "401"
    assert checks.dicom_port_answers(ATTACKER, SERVER_IP)
    assert not checks.vpn_port_answers(SERVER, ATTACKER, ATTACKER_IP, SERVER_IP)


# --- logs -------------------------------------------------------------------------------------
def test_logrotate_accepts_the_configuration():
    out = root("logrotate -d /etc/logrotate.conf")
    assert out.rc == 0, out.stderr
    assert "error:" not in out.stderr.lower(), out.stderr
    for path in ("/var/log/orthanc/Orthanc.log.", "/var/log/nginx/orthanc-remote/*.log", "/var/log/openvpn/orthanc-remote.log"):
        assert path in out.stderr
    # The site's nginx logs have their own stanza: Debian's /etc/logrotate.d/nginx (a conffile) is as shipped.
    assert "/var/log/nginx/*.log" in out.stderr
    assert root("dpkg --verify nginx-common").stdout == ""


def test_orthanc_per_start_logs_are_archived_and_pruned():
    # Converge and the DICOM test restarted Orthanc: several per-start files exist, one is current.
    current = SERVER.file("/var/log/orthanc/Orthanc.log").linked_to
    runs = [n for n in root("ls /var/log/orthanc").stdout.split() if re.match(r"Orthanc\.log\.\d", n)]
    assert len(runs) >= 2, runs
    out = root("logrotate -f /etc/logrotate.d/orthanc-remote-orthanc")
    assert out.rc == 0, out.stderr
    after = [n for n in root("ls /var/log/orthanc").stdout.split() if re.match(r"Orthanc\.log\.\d", n)]
    # Only the running Orthanc's file stays; every run's lines are in archive/, compressed.
    assert after == [current.rsplit("/", 1)[1]]
    archived = root("ls /var/log/orthanc/archive").stdout.split()
    assert len(archived) >= len(runs) and all(n.endswith(".gz") for n in archived), archived
    # Orthanc still logs into its (truncated) file.
    echo(SERVER, "LOCALPROBE")
    assert wait_for(lambda: "LOCALPROBE" in root(f"cat -v {current}").stdout, 10)


def test_journal_is_persistent_and_bounded():
    assert root("ls /var/log/journal").stdout.strip()
    conf = SERVER.file("/etc/systemd/journald.conf.d/50-orthanc-remote.conf").content_string
    assert "Storage=persistent" in conf and "SystemMaxUse=" in conf
    out = root("journalctl --header")
    assert "/var/log/journal/" in out.stdout


def test_orthanc_http_tracing_is_off():
    unit = root("systemctl cat orthanc.service").stdout
    assert "--trace" not in unit and "--verbose" not in unit
    cmdline = root("cat /proc/$(systemctl show -p MainPID --value orthanc)/cmdline").stdout
    assert "--trace" not in cmdline and "--verbose" not in cmdline


# --- checks -----------------------------------------------------------------------------------
def run_check(name):
    """Start a check's service (as its timer would) and return the status command's JSON."""
    out = root(f"systemctl start orthanc-remote-check-{name}.service")
    assert out.rc == 0, out.stderr
    status = root("orthanc-remote-status --json")
    return json.loads(status.stdout)


def find(results, check, target):
    matches = [r for r in results if r["check"] == check and r["target"] == target]
    assert matches, results
    return matches[0]


def test_timers_are_active():
    for name in ("certs", "disk", "services", "dicom-echo"):
        assert SERVER.service(f"orthanc-remote-check-{name}.timer").is_running
        unit = root(f"systemctl cat orthanc-remote-check-{name}.service").stdout
        assert "SyslogIdentifier=orthanc-remote-check" in unit


def test_certificate_in_the_window_warns_and_healthy_one_is_ok():
    results = run_check("certs")
    expiring = find(results, "cert", "/etc/logmon-test/expiring.crt")
    assert expiring["status"] == "WARNING" and 0 < int(expiring["days_left"]) <= 30
    healthy = find(results, "cert", "/etc/orthanc-remote/tls/https.crt")
    assert healthy["status"] == "OK" and int(healthy["days_left"]) > 300
    crl = find(results, "crl", "/etc/logmon-test/crl.pem")
    assert crl["status"] == "OK" and int(crl["days_left"]) > 80
    # The VPN's server and client certificates and its CRL are watched too.
    assert find(results, "cert", "/etc/openvpn/server/pki/issued/server.crt")["status"] == "OK"
    client = find(results, "cert", "/etc/openvpn/server/pki/issued/dr-soon.crt")
    assert client["status"] == "WARNING" and 0 < int(client["days_left"]) <= 20
    assert find(results, "crl", "/etc/openvpn/server/crl.pem")["status"] == "OK"
    # The same results are in the journal under the one identifier, with warning priority.
    journal = root("journalctl -t orthanc-remote-check -p warning -o cat --no-pager").stdout
    assert "target=/etc/logmon-test/expiring.crt status=WARNING" in journal


def test_disk_services_and_dicom_echo_are_ok():
    for name in ("disk", "services", "dicom-echo"):
        results = run_check(name)
    assert find(results, "disk", "/var/lib/orthanc/db-v6")["status"] == "OK"
    for unit in ("orthanc.service", "nginx.service", "fail2ban.service", "openvpn-server@orthanc-remote.service"):
        assert find(results, "service", unit)["status"] == "OK"
    assert find(results, "dicom_echo", "ORTHANC@127.0.0.1:4242")["status"] == "OK"


def test_checks_raise_real_problems():
    # A stopped service, a full disk (threshold above the real free space) and an echo Orthanc
    # refuses are each reported, not glossed over.
    root("systemctl stop nginx")
    try:
        out = root("orthanc-remote-check services --no-notify")
        assert "target=nginx.service status=CRITICAL active=inactive" in out.stdout
        assert out.rc == 2
    finally:
        root("systemctl start nginx")
    out = root("orthanc-remote-check disk --no-notify --set disk_warn_free_percent=100 --set disk_critical_free_percent=0")
    assert "status=WARNING" in out.stdout and out.rc == 1
    out = root(
        "orthanc-remote-check dicom_echo --no-notify "
        """--set 'dicom_echo={"host": "127.0.0.1", "port": 4242, "calling_aet": "NOTKNOWN", "called_aet": "ORTHANC"}'"""
    )
    assert "status=CRITICAL" in out.stdout and "Calling AE Title Not Recognized" in out.stdout


def test_status_command_prints_latest_of_every_check():
    out = root("orthanc-remote-status")
    assert out.rc == 1  # the expiring certificate is a WARNING
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["LAST", "RUN", "STATUS", "CHECK"]
    for check in ("cert", "crl", "disk", "service", "dicom_echo"):
        assert any(f" {check} " in line for line in lines[1:]), out.stdout
    assert lines[1].split()[2] == "WARNING"  # worst first


def test_webhook_receives_the_warning():
    listener = (
        "import http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_POST(self):\n"
        "        body = self.rfile.read(int(self.headers['Content-Length']))\n"
        "        open('/tmp/webhook.json', 'wb').write(body)\n"
        "        self.send_response(204); self.end_headers()\n"
        "http.server.HTTPServer(('127.0.0.1', 18099), H).serve_forever()\n"
    )
    SERVER.run("rm -f /tmp/webhook.json /var/lib/orthanc-remote-check/state.json")
    root(f"cat > /tmp/listener.py <<'EOF'\n{listener}EOF")
    root("systemd-run --unit=logmon-webhook-listener --collect python3 /tmp/listener.py")
    try:
        assert wait_for(lambda: root("bash -c 'echo > /dev/tcp/127.0.0.1/18099'").rc == 0, 10)
        root("systemctl start orthanc-remote-check-certs.service")
        assert wait_for(lambda: SERVER.file("/tmp/webhook.json").exists, 15)
        payload = json.loads(SERVER.file("/tmp/webhook.json").content_string)
    finally:
        root("systemctl stop logmon-webhook-listener")
    assert payload["status"] == "WARNING"
    assert sorted(r["target"] for r in payload["results"]) == [
        "/etc/logmon-test/expiring.crt", "/etc/openvpn/server/pki/issued/dr-soon.crt",
    ]
