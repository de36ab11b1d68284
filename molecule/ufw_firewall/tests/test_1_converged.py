"""The firewall after converge (and the idempotence run): each client reaches exactly what the
site model gives it, checked with real scans from the client containers."""

import re

import pytest

from conftest import CLIENTS, SERVER, host, open_ports, ssh_banner, tcp_scan, udp_scan

# What each client may reach over TCP from the LAN (no VPN): the admin SSH and HTTPS, the direct
# modality DICOM, the stranger nothing. HTTP 80 is closed: the site does not use ACME.
EXPECTED_TCP = {"admin": {22, 443}, "modality": {4242}, "stranger": set()}


def test_policies(server):
    out = server.check_output("ufw status verbose")
    assert "Status: active" in out
    assert "Default: deny (incoming), allow (outgoing), deny (routed)" in out


def test_services_are_listening_so_filtered_means_the_firewall(server):
    for port in (22, 80, 443, 4242, 8042):
        assert server.socket(f"tcp://0.0.0.0:{port}").is_listening
    assert server.check_output("socat -T 2 - TCP:127.0.0.1:8042 </dev/null") == "svc-tcp-8042"


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_tcp_scan_shows_exactly_the_allowed_ports(client):
    states = tcp_scan(client)
    assert open_ports(states) == EXPECTED_TCP[client], states
    # Everything else is silently dropped (a "closed" port would mean a reject or no listener).
    assert {s for p, s in states.items() if p not in EXPECTED_TCP[client]} == {"filtered"}, states


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_udp_only_the_vpn_port_is_public(client):
    states = udp_scan(client)
    # The listener on 1194 answers, so nmap sees it open; 1195 has a listener too but is dropped.
    assert states == {1194: "open", 1195: "open|filtered"}, states
    c = host(client)
    # The listener forks a shell per datagram: allow a slow, loaded machine a few tries.
    answer = c.check_output("for i in 1 2 3; do r=$(echo ping | nc -u -w 3 %s 1194); [ -n \"$r\" ] && break; done; echo \"$r\"", SERVER)
    assert answer == "svc-udp-1194"
    assert c.run("echo ping | nc -u -w 2 %s 1195", SERVER).stdout == ""


def test_services_answer_the_allowed_clients():
    assert "ssh-ed25519" in ssh_banner("admin")
    assert host("admin").check_output("echo | nc -w 3 %s 443", SERVER) == "svc-tcp-443"
    assert host("modality").check_output("echo | nc -w 3 %s 4242", SERVER) == "svc-tcp-4242"


@pytest.mark.parametrize("client", ["modality", "stranger"])
def test_ssh_is_closed_to_everyone_else(client):
    assert ssh_banner(client) == ""
    assert host(client).run("nc -z -w 2 %s 22", SERVER).rc != 0


def test_stranger_gets_no_dicom_despite_the_stale_rule_seeded_in_prepare(server):
    # prepare seeded "allow 4242 from 10.231.13.40" with this role's comment prefix: a rule from an
    # older inventory. The role must have deleted it.
    assert "10.231.13.40" not in server.check_output("ufw status")
    assert host("stranger").run("echo | nc -w 2 %s 4242", SERVER).stdout == ""


def test_rule_set_is_exactly_the_site_model(server):
    rules = set(server.check_output("ufw show added").splitlines()[1:])
    # fail2ban's ban (seeded by prepare) belongs to fail2ban: left in place.
    bans = {r for r in rules if "by Fail2Ban" in r}
    assert len(bans) == 1 and "192.0.2.66" in bans.pop()
    rules = {r for r in rules if "by Fail2Ban" not in r}
    assert rules == {
        "ufw limit from 10.231.13.20 to any port 22 proto tcp comment 'orthanc-remote: ssh from admin source'",
        "ufw limit in on tun0 from 10.8.0.30 to any port 22 proto tcp comment 'orthanc-remote: ssh from vpn admin it-admin'",
        "ufw allow from 10.231.13.20 to any port 443 proto tcp comment 'orthanc-remote: https'",
        "ufw allow in on tun0 from 10.8.0.20 to any port 443 proto tcp comment 'orthanc-remote: https from vpn client'",
        "ufw allow in on tun0 from 10.8.0.30 to any port 443 proto tcp comment 'orthanc-remote: https from vpn client'",
        "ufw allow from 10.231.13.30 to any port 4242 proto tcp comment 'orthanc-remote: dicom from modality ct-direct'",
        "ufw allow in on tun0 from 10.8.0.10 to any port 4242 proto tcp comment 'orthanc-remote: dicom from vpn gateway site-a-gw'",
        "ufw allow in on tun0 from 192.168.50.10 to any port 4242 proto tcp comment 'orthanc-remote: dicom from modality mri-1'",
        "ufw allow 1194/udp comment 'orthanc-remote: openvpn'",
        # Unmanaged, seeded by prepare: reported, kept (ufw_firewall_unmanaged_rules=report).
        "ufw allow from 192.0.2.1 to any port 8042 proto tcp comment 'hand-made'",
    }


def test_vpn_interface_rules_per_client_kind(server):
    rules = server.check_output("iptables -S ufw-user-input")
    tun = sorted(line for line in rules.splitlines() if "-i tun0" in line)
    # gateway (and the modality behind it) -> DICOM only; radiologist -> HTTPS only; admin -> SSH + HTTPS.
    by_source = {}
    for line in tun:
        source = re.search(r"-s (\S+)", line).group(1)
        port = int(re.search(r"--dport (\d+)", line).group(1))
        by_source.setdefault(source, set()).add(port)
    assert by_source == {
        "10.8.0.10/32": {4242},
        "192.168.50.10/32": {4242},
        "10.8.0.20/32": {443},
        "10.8.0.30/32": {22, 443},
    }
    # The gateway's modality reaches DICOM only through the tunnel, never from another interface.
    assert not [line for line in rules.splitlines() if "192.168.50.10" in line and "-i tun0" not in line]


def test_ssh_rule_is_rate_limited_and_was_updated_in_place(server):
    # prepare seeded a plain "allow 22 from 10.231.13.20": it must now be LIMIT, with the role's comment.
    out = server.check_output("ufw status verbose")
    assert re.search(r"^22/tcp\s+LIMIT IN\s+10\.231\.13\.20\s+# orthanc-remote: ssh from admin source\s*$", out, re.M), out
    assert not re.search(r"^22/tcp\s+ALLOW", out, re.M), out
    assert "--hitcount 6" in server.check_output("iptables -S ufw-user-input")


def test_full_tunnel_nat_exactly_once_even_after_reloads(server):
    server.check_output("ufw reload")
    server.check_output("ufw reload")
    nat = server.check_output("iptables -t nat -S")
    assert nat.count("-A POSTROUTING -j ufw-orthanc-remote-nat") == 1, nat
    assert nat.count("-A ufw-orthanc-remote-nat -s 10.8.0.0/24 ! -d 10.8.0.0/24 -j MASQUERADE") == 1, nat
    # Gateway site subnets are routed with their own addresses: never NATed.
    assert "192.168.50" not in nat
    forward = server.check_output("iptables -S FORWARD")
    rule = "-A FORWARD -s 10.8.0.0/24 -i tun0 ! -o tun0 -m comment --comment ufw-orthanc-remote-nat -j ACCEPT"
    assert forward.count(rule) == 1, forward
    # ... and it comes before ufw's chains, whose forward policy stays DROP.
    assert forward.splitlines().index(rule) < forward.splitlines().index("-A FORWARD -j ufw-before-logging-forward")


def test_kernel_settings_in_sysctl_d_not_in_ufw_files(server):
    assert server.file("/etc/default/ufw").contains("^IPT_SYSCTL=$")
    conf = server.file("/etc/sysctl.d/60-orthanc-remote-ufw.conf").content_string
    assert re.search(r"^net\.ipv4\.ip_forward = 1$", conf, re.M)
    assert re.search(r"^net\.ipv4\.conf\.all\.accept_redirects = 0$", conf, re.M)
    # Debian's sysctl file is untouched.
    assert server.file("/etc/ufw/sysctl.conf").contains("^#net/ipv4/ip_forward=1$")


def test_no_package_conffile_edited(server):
    # dpkg's record of every conffile of ufw matches the file on disk (diversions followed).
    assert server.check_output("dpkg --verify ufw") == ""
    assert "/etc/default/ufw.dpkg-orthanc-remote" in server.check_output("dpkg-divert --list /etc/default/ufw")
    # The ucf-managed rule files are exactly Debian's templates (the seeded old block is gone).
    for name in ("before.rules", "before6.rules", "after.rules", "after6.rules"):
        assert server.run(f"cmp /usr/share/ufw/iptables/{name} /etc/ufw/{name}").rc == 0, name


def test_reinstall_and_upgrade_prompt_nothing_and_keep_the_firewall(server):
    before = server.check_output("ufw status verbose")
    cmd = server.run(
        "DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Options::=--force-confdef "
        "-o Dpkg::Options::=--force-confold install --reinstall ufw </dev/null"
    )
    assert cmd.rc == 0, cmd.stderr
    assert "Configuration file" not in cmd.stdout
    assert server.check_output("dpkg --verify ufw") == ""
    assert server.file("/etc/default/ufw").contains("orthanc-remote")
    server.check_output("ufw reload")
    assert server.check_output("ufw status verbose") == before
