"""End-to-end checks of the orthanc-remote VPN with real OpenVPN clients.

Containers: mol-vpn-server (PACS, 10.231.14.10, tunnel 10.8.0.1), mol-vpn-radiologist (dr-house,
10.8.0.20), mol-vpn-gateway (site-gw, 10.8.0.10, LAN 10.231.24.2), mol-vpn-modality (LAN only,
10.231.24.10, routes 10.8.0.0/24 via the gateway) and mol-vpn-revoked (holds the profiles of
old-laptop, removed from the inventory, and lost-laptop, listed in site_vpn_revoked).
"""

import os
import re
import time
from pathlib import Path

import pytest
import testinfra

SERVER_TUNNEL = "10.8.0.1"
LOG = "/var/log/openvpn/orthanc-remote.log"
PKI = "/etc/openvpn/server/pki"
PROBE_PORT = 8099
ARTIFACTS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/nonexistent")) / "artifacts" / "vpn"

server = testinfra.get_host("docker://mol-vpn-server")
radiologist = testinfra.get_host("docker://mol-vpn-radiologist")
gateway = testinfra.get_host("docker://mol-vpn-gateway")
modality = testinfra.get_host("docker://mol-vpn-modality")
outsider = testinfra.get_host("docker://mol-vpn-revoked")

testinfra_hosts = ["docker://mol-vpn-server"]


def wait_for(check, timeout=30, step=1):
    """Retry ``check`` until it returns a truthy value or ``timeout`` seconds pass."""
    deadline = time.time() + timeout
    while True:
        result = check()
        if result or time.time() > deadline:
            return result
        time.sleep(step)


def log_lines():
    return int(server.check_output(f"wc -l < {LOG}"))


def log_since(start):
    return server.check_output(f"tail -n +{start + 1} {LOG}")


def try_connect(profile_path, server_says, seconds=20):
    """Start a real OpenVPN client on the outsider container until the server logs ``server_says``.

    Returns (the client's log, the server log lines written meanwhile). The client is stopped
    as soon as the server's verdict is in the log, or after ``seconds``.
    """
    start = log_lines()
    name = Path(profile_path).stem
    outsider.run(f"test -e /root/{name}.pid && kill $(cat /root/{name}.pid); rm -f /root/{name}.log /root/{name}.pid")
    outsider.check_output(
        f"openvpn --config {profile_path} --verb 3 --dev tun9 --daemon {name} "
        f"--log /root/{name}.log --writepid /root/{name}.pid"
    )
    try:
        found = wait_for(lambda: re.search(server_says, log_since(start)), seconds)
        time.sleep(1)  # let the client log what it saw
        return outsider.check_output(f"cat /root/{name}.log"), log_since(start) if found else ""
    finally:
        outsider.run(
            f"pid=$(cat /root/{name}.pid); kill $pid; "
            "for i in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done"
        )


@pytest.fixture(scope="module")
def probe():
    """An HTTP listener on the server's tunnel address; its access log names each peer."""
    server.run("systemctl stop vpn-probe-http 2>/dev/null; systemctl reset-failed vpn-probe-http 2>/dev/null")
    server.check_output(
        f"systemd-run --unit vpn-probe-http --property=WorkingDirectory=/tmp "
        f"python3 -m http.server {PROBE_PORT} --bind {SERVER_TUNNEL}"
    )
    assert wait_for(lambda: server.run(f"ss -ltn | grep -q '{SERVER_TUNNEL}:{PROBE_PORT}'").rc == 0)
    yield lambda: server.check_output("journalctl -u vpn-probe-http --no-pager -o cat")
    server.run("systemctl stop vpn-probe-http")


def test_tunnels_are_up():
    for host, address in ((radiologist, "10.8.0.20"), (gateway, "10.8.0.10")):
        assert wait_for(lambda h=host: "inet " in h.run("ip -4 addr show tun0").stdout, 60), "tun0 never came up"
        assert f"inet {address}/24" in host.check_output("ip -4 addr show tun0")


def test_radiologist_reaches_server_tunnel_address(probe):
    ping = radiologist.check_output(f"ping -c 3 -W 2 {SERVER_TUNNEL}")
    assert "3 received" in ping
    body = radiologist.check_output(f"curl -sS --max-time 10 -o /dev/null -w '%{{http_code}}' http://{SERVER_TUNNEL}:{PROBE_PORT}/")
    assert body == "200"
    assert wait_for(lambda: re.search(r"^10\.8\.0\.20 - - .*GET / ", probe(), re.M))


def test_radiologist_gets_only_the_pacs_route():
    """Split tunnel: the tunnel network (where the PACS answers) is the only route through tun0."""
    tun_routes = radiologist.check_output("ip -4 route show dev tun0").strip().splitlines()
    assert tun_routes == ["10.8.0.0/24 proto kernel scope link src 10.8.0.20"]
    table = radiologist.check_output("ip -4 route show")
    assert "0.0.0.0/1" not in table and "128.0.0.0/1" not in table
    assert "default via 10.231.14.1 dev eth0" in table
    assert "dev tun0" not in radiologist.check_output("ip -4 route get 192.0.2.1")
    pushed = radiologist.check_output("journalctl -u openvpn-client@dr-house --no-pager -o cat | grep PUSH_REPLY | tail -1")
    assert "redirect-gateway" not in pushed and "route " not in pushed.replace("route-gateway", "")


def test_modality_behind_gateway_reaches_pacs_with_its_own_address(probe):
    """No NAT: the server sees the modality's LAN address, routed through site-gw's tunnel."""
    assert "10.231.24.0/24" in server.check_output("ip -4 route show dev tun0")
    code = modality.check_output(
        "python3 -c \"import urllib.request;"
        f"print(urllib.request.urlopen('http://{SERVER_TUNNEL}:{PROBE_PORT}/', timeout=10).status)\""
    )
    assert code.strip() == "200"
    log = wait_for(lambda: probe() if "10.231.24.10" in probe() else "")
    assert re.search(r"^10\.231\.24\.10 - - .*GET / ", log, re.M)
    assert "10.8.0.10 - -" not in log


def test_vpn_runs_under_base_hardening():
    """converge.yml applies base_hardening first (as site.yml does): the site LAN test above ran under it."""
    hardening = server.file("/etc/sysctl.d/70-orthanc-remote-hardening.conf").content_string
    assert "net.ipv4.conf.all.rp_filter = 1" in hardening
    assert not [line for line in hardening.splitlines() if "ip_forward" in line and not line.startswith("#")]
    assert "install tipc /bin/true" in server.file("/etc/modprobe.d/orthanc-remote-hardening.conf").content_string
    assert "umask 027" in server.file("/etc/profile.d/orthanc-remote-login.sh").content_string


def test_server_log_has_no_deprecated_options():
    log = server.check_output(f"cat {LOG}")
    assert "Initialization Sequence Completed" in log
    assert "DEPRECATED" not in log.upper()
    for client in ("dr-house", "site-gw"):
        journal = radiologist if client == "dr-house" else gateway
        assert "DEPRECATED" not in journal.check_output(f"journalctl -u openvpn-client@{client} --no-pager -o cat").upper()


def test_server_configuration_and_process():
    conf = server.file("/etc/openvpn/server/orthanc-remote.conf").content_string
    for line in (
        "data-ciphers AES-256-GCM:CHACHA20-POLY1305",
        "tls-version-min 1.2",
        "tls-crypt /etc/openvpn/server/tls-crypt.key",
        "crl-verify /etc/openvpn/server/crl.pem",
        "ccd-exclusive",
        "dh none",
        "topology subnet",
        "route 10.231.24.0 255.255.255.0",
    ):
        assert re.search(rf"^{re.escape(line)}$", conf, re.M), line
    for absent in ("comp-lzo", "compress", "client-to-client", "cipher AES-256-CBC", "duplicate-cn", "redirect-gateway"):
        assert not re.search(rf"^\s*(push \")?{absent}", conf, re.M), absent
    assert server.service("openvpn-server@orthanc-remote").is_running
    assert server.service("openvpn-server@orthanc-remote").is_enabled
    # Unprivileged after start-up.
    ids = server.check_output("id -u openvpn-orthanc; id -g openvpn-orthanc").split()
    assert server.check_output("ps -o uid=,gid= -C openvpn").split() == ids
    # The status file lists the two connected clients.
    # OpenVPN rewrites the status file every 30 s (server.conf `status ... 30`): wait for a fresh one.
    def both_listed():
        status = server.check_output("cat /run/openvpn-server/status-orthanc-remote.log")
        listed = re.search(r"^CLIENT_LIST,dr-house,", status, re.M) and re.search(r"^CLIENT_LIST,site-gw,", status, re.M)
        return status if listed else ""

    assert wait_for(both_listed, timeout=45)


def test_pki_is_private():
    pki = server.file(PKI)
    assert pki.mode == 0o700 and pki.user == "root"
    assert server.file("/etc/openvpn/server/tls-crypt.key").mode == 0o600
    # The unprivileged user can read neither keys nor the PKI.
    assert server.run(f"runuser -u openvpn-orthanc -- ls {PKI}").rc != 0
    assert server.run("runuser -u openvpn-orthanc -- cat /etc/openvpn/server/tls-crypt.key").rc != 0
    # The CRL is for the server's own group only: `nobody` (shared by other daemons) cannot read it.
    crl = server.file("/etc/openvpn/server/crl.pem")
    assert (crl.user, crl.group, crl.mode) == ("root", "openvpn-orthanc", 0o640)
    assert server.run("runuser -u nobody -- cat /etc/openvpn/server/crl.pem").rc != 0
    passwd = server.check_output("getent passwd openvpn-orthanc").split(":")
    assert int(passwd[2]) < 1000 and passwd[6] == "/usr/sbin/nologin"


def test_client_config_files_hold_static_addresses_and_iroutes():
    assert server.file("/etc/openvpn/server/ccd/dr-house").content_string == "ifconfig-push 10.8.0.20 255.255.255.0\n"
    assert server.file("/etc/openvpn/server/ccd/site-gw").content_string == (
        "ifconfig-push 10.8.0.10 255.255.255.0\niroute 10.231.24.0 255.255.255.0\n"
    )
    # Removed and revoked clients have no client-config file (ccd-exclusive refuses them too).
    assert sorted(server.check_output("ls /etc/openvpn/server/ccd").split()) == ["dr-house", "site-gw"]


@pytest.mark.parametrize("name", ["old-laptop", "lost-laptop"])
def test_revoked_client_is_refused(name):
    """old-laptop left the inventory; lost-laptop is listed in site_vpn_revoked: both are refused."""
    assert not server.file(f"{PKI}/issued/{name}.crt").exists
    output, server_log = try_connect(f"/root/{name}.ovpn", rf"certificate revoked: CN={name}")
    assert re.search(rf"VERIFY ERROR: depth=0, error=certificate revoked: CN={name}", server_log)
    assert "Initialization Sequence Completed" not in output
    assert not re.search(r"^CLIENT_LIST," + name, server.check_output("cat /run/openvpn-server/status-orthanc-remote.log"), re.M)
    # The others are still connected.
    assert re.search(r"^CLIENT_LIST,dr-house,", server.check_output("cat /run/openvpn-server/status-orthanc-remote.log"), re.M)
    assert "3 received" in radiologist.check_output(f"ping -c 3 -W 2 {SERVER_TUNNEL}")


def _profile_with(text, tag, body):
    return re.sub(rf"<{tag}>.*?</{tag}>", lambda _: f"<{tag}>\n{body.strip()}\n</{tag}>", text, flags=re.S)


def test_certificate_outside_the_inventory_is_refused():
    """ccd-exclusive: a certificate the CA signed for a name not in the inventory gets no session."""
    server.check_output(
        f"test -e {PKI}/issued/stranger.crt || EASYRSA_BATCH=1 EASYRSA_PKI={PKI} "
        "sh -c 'cd /etc/openvpn/server && /usr/share/easy-rsa/easyrsa build-client-full stranger nopass' >/dev/null"
    )
    cert = server.check_output(f"openssl x509 -in {PKI}/issued/stranger.crt")
    key = server.check_output(f"cat {PKI}/private/stranger.key")
    profile = _profile_with(_profile_with((ARTIFACTS / "dr-house.ovpn").read_text(), "cert", cert), "key", key)
    outsider.check_output(f"cat > /root/stranger.ovpn <<'EOF'\n{profile}EOF\nchmod 600 /root/stranger.ovpn")
    output, server_log = try_connect("/root/stranger.ovpn", r"authentication failed for common name 'stranger'")
    assert "VERIFY OK: depth=0, CN=stranger" in server_log  # the certificate itself is valid
    assert "client-config-dir authentication failed for common name 'stranger'" in server_log
    assert "Initialization Sequence Completed" not in output


def test_wrong_tls_crypt_key_is_dropped():
    """tls-crypt: packets without the site's key are dropped before any TLS happens."""
    other_key = outsider.check_output("openvpn --genkey tls-crypt /root/other.key && cat /root/other.key")
    profile = _profile_with((ARTIFACTS / "dr-house.ovpn").read_text(), "tls-crypt", other_key)
    outsider.check_output(f"cat > /root/wrong-key.ovpn <<'EOF'\n{profile}EOF\nchmod 600 /root/wrong-key.ovpn")
    output, server_log = try_connect("/root/wrong-key.ovpn", r"tls-crypt unwrapping failed from \[AF_INET\]10\.231\.14\.40")
    assert "tls-crypt unwrapping failed from [AF_INET]10.231.14.40" in server_log
    assert not re.search(r"10\.231\.14\.40:\d+ VERIFY", server_log)  # dropped before any TLS
    assert "Initialization Sequence Completed" not in output
    assert "dr-house" in server.check_output("cat /run/openvpn-server/status-orthanc-remote.log")


def test_crl_is_refreshed_by_timer_and_readable_by_openvpn_user():
    timer = server.check_output("systemctl show -p UnitFileState -p ActiveState orthanc-remote-openvpn-crl.timer")
    assert "UnitFileState=enabled" in timer and "ActiveState=active" in timer
    assert "OnCalendar=weekly" in server.check_output("systemctl cat orthanc-remote-openvpn-crl.timer")
    before = server.check_output("openssl crl -in /etc/openvpn/server/crl.pem -noout -lastupdate")
    time.sleep(1)
    server.check_output("systemctl start orthanc-remote-openvpn-crl.service")
    after = server.check_output("openssl crl -in /etc/openvpn/server/crl.pem -noout -lastupdate")
    assert before != after, "the timer's service did not regenerate the CRL"
    next_update = server.check_output("date -d \"$(openssl crl -in /etc/openvpn/server/crl.pem -noout -nextupdate | cut -d= -f2)\" +%s")
    assert int(next_update) - time.time() > 170 * 86400
    crl = server.check_output("runuser -u openvpn-orthanc -- openssl crl -in /etc/openvpn/server/crl.pem -noout -text")
    assert crl.count("Serial Number:") >= 2  # old-laptop and lost-laptop
    # Still accepted after the refresh.
    assert "3 received" in radiologist.check_output(f"ping -c 3 -W 2 {SERVER_TUNNEL}")


def test_profiles_on_the_controller():
    assert ARTIFACTS.is_dir() and (ARTIFACTS.stat().st_mode & 0o777) == 0o700
    names = sorted(p.name for p in ARTIFACTS.iterdir())
    assert names == ["dr-house.ovpn", "site-gw.ovpn"]  # removed/revoked profiles are deleted
    for path in ARTIFACTS.iterdir():
        assert (path.stat().st_mode & 0o777) == 0o600
        text = path.read_text()
        for needle in ("<ca>", "<cert>", "<key>", "<tls-crypt>", "remote 10.231.14.10 1194", "remote-cert-tls server"):
            assert needle in text
        assert "comp" not in text and "cipher AES-256-CBC" not in text
