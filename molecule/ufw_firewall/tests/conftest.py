"""Helpers for the ufw_firewall scenario: real clients in their own containers, and re-runs of
converge.yml with the molecule inventory (a second and third ansible-playbook run in verify)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import testinfra
import yaml

SERVER = "10.231.13.10"
CLIENTS = {"admin": "10.231.13.20", "modality": "10.231.13.30", "stranger": "10.231.13.40"}
# The ports the scans look at: every service the server runs for the tests (22 sshd; 80, 443,
# 4242, 8042 socat), plus other ports a PACS host is often found on.
TCP_PORTS = [21, 22, 25, 80, 104, 443, 3389, 4242, 5432, 8042, 8080, 8443, 11112]
UDP_PORTS = [1194, 1195]
SCENARIO = Path(__file__).resolve().parent.parent


def host(name: str):
    """A testinfra host for a container of this scenario (server, admin, modality, stranger)."""
    return testinfra.get_host(f"docker://mol-ufw-{name}")


def tcp_scan(client: str) -> dict[int, str]:
    """nmap connect scan from a client: {port: state} for every port of TCP_PORTS."""
    out = host(client).check_output(
        "nmap -Pn -sT -T4 --max-retries 1 -p %s %s", ",".join(map(str, TCP_PORTS)), SERVER
    )
    return _states(out, "tcp")


def udp_scan(client: str) -> dict[int, str]:
    """nmap UDP scan from a client: {port: state} for UDP_PORTS."""
    out = host(client).check_output("nmap -Pn -sU -T4 --max-retries 0 -p %s %s", ",".join(map(str, UDP_PORTS)), SERVER)
    return _states(out, "udp")


def _states(out: str, proto: str) -> dict[int, str]:
    states = {int(p): s for p, s in re.findall(rf"^(\d+)/{proto}\s+(\S+)", out, re.M)}
    hidden = re.search(rf"Not shown: \d+ (\S+) {proto} ports", out)
    assert "Nmap done: 1 IP address (1 host up)" in out, out
    ports = TCP_PORTS if proto == "tcp" else UDP_PORTS
    for port in ports:
        if port not in states:
            assert hidden, out
            states[port] = hidden.group(1)
    return states


def open_ports(states: dict[int, str]) -> set[int]:
    return {p for p, s in states.items() if s == "open"}


def ssh_banner(client: str) -> str:
    """ssh-keyscan from a client (a real SSH handshake up to the host key); '' when it cannot connect."""
    return host(client).run("ssh-keyscan -T 3 -t ed25519 %s", SERVER).stdout


def site_facts() -> dict:
    return yaml.safe_load((SCENARIO / "vars" / "site.yml").read_text())


def converge(extra_vars: dict) -> subprocess.CompletedProcess:
    """Run converge.yml again, as molecule does, with extra vars on top of the scenario's."""
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(ephemeral / "ansible.cfg"))
    env["ANSIBLE_NOCOLOR"] = "1"
    extra = ephemeral / "ufw-verify-extra-vars.json"
    extra.write_text(json.dumps(extra_vars))
    playbook = Path(sys.executable).parent / "ansible-playbook"
    result = subprocess.run(
        [str(playbook), "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(SCENARIO / "converge.yml"), "-e", f"@{extra}"],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    print(result.stdout[-6000:])
    return result


def recap(result: subprocess.CompletedProcess) -> dict[str, int]:
    match = re.search(r"mol-ufw-server\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


@pytest.fixture(scope="module")
def server():
    return host("server")
