"""Reusable checks of fail2ban bans with real clients (log_monitoring scenario; the whole-site
scenario can import them too: ``sys.path.insert(0, <repo>/molecule/shared)``).

Every function takes testinfra hosts and plain addresses, runs real clients (curl, dcmtk's
echoscu, an OpenVPN client or bash's /dev/udp) and reads what they print or what the server
logged. Nothing here is a mock: each answer comes from the deployed services.
"""

from __future__ import annotations

import shlex
import time

JAILS = ("sshd", "orthanc-https", "orthanc-dicom", "orthanc-openvpn")


def wait_for(predicate, timeout: float = 20.0, step: float = 0.5) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds passed; return its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def banned(server, jail: str) -> list[str]:
    """Addresses ``jail`` currently bans on ``server``."""
    out = server.run(f"fail2ban-client get {jail} banip")
    assert out.rc == 0, out.stdout + out.stderr
    return out.stdout.split()


def banned_anywhere(server, jails=JAILS) -> dict[str, list[str]]:
    """Every jail's banned addresses (only jails that have some)."""
    result = {}
    for jail in jails:
        if server.run(f"fail2ban-client status {jail}").rc == 0:
            addresses = banned(server, jail)
            if addresses:
                result[jail] = addresses
    return result


def https_status(host, server_ip: str, user: str = "", password: str = "", path: str = "/system",
                 port: int = 443, extra: str = "") -> tuple[str, int]:
    """curl status code ('000' when nothing answers) and curl's exit code."""
    auth = f"-u {shlex.quote(user + ':' + password)}" if user else ""
    out = host.run(
        f"curl -sk --max-time 5 {auth} {extra} -o /dev/null -w '%{{http_code}}' https://{server_ip}:{port}{path}"
    )
    return out.stdout.strip(), out.rc


def brute_force_https(host, server_ip: str, user: str, attempts: int, port: int = 443) -> list[str]:
    """``attempts`` logins with a wrong password; the status codes nginx answered."""
    return [https_status(host, server_ip, user, "wrong-password-123", port=port)[0] for _ in range(attempts)]


def echo(host, server_ip: str, aet: str, called: str = "ORTHANC", port: int = 4242) -> str:
    """One C-ECHO with calling AE title ``aet``; echoscu's whole output."""
    out = host.run(f"echoscu -v -to 5 -ta 5 -td 5 -aet {shlex.quote(aet)} -aec {shlex.quote(called)} {server_ip} {port}")
    return out.stdout + out.stderr


def dicom_port_answers(host, server_ip: str, aet: str = "PROBE", called: str = "ORTHANC", port: int = 4242) -> bool:
    """Whether Orthanc's DICOM port answered the association (accepted or rejected, not silent)."""
    output = echo(host, server_ip, aet, called, port)
    return "Association Rejected" in output or "Received Echo Response" in output or "Association Accepted" in output


def udp_packets(host, server_ip: str, port: int, count: int = 20) -> None:
    """Send ``count`` garbage UDP datagrams (bash's /dev/udp) to ``server_ip:port``."""
    # 100 bytes starting with 0x38 ("8"): opcode P_CONTROL_HARD_RESET_CLIENT_V2, which OpenVPN
    # tries to unwrap with tls-crypt and logs with the sender's address.
    host.run(
        f"bash -c 'for i in $(seq {count}); do printf \"8%.0s\" $(seq 100) > /dev/udp/{server_ip}/{port}; done'"
    )


def vpn_port_answers(server, host, host_ip: str, server_ip: str, port: int = 1194,
                     log: str = "/var/log/openvpn/orthanc-remote.log") -> bool:
    """Whether UDP datagrams from ``host`` still reach OpenVPN (it logs them with the sender's address)."""
    pattern = f"\\[AF_INET\\]{host_ip}:"

    def count() -> int:
        out = server.run(f"grep -c {shlex.quote(pattern)} {log}").stdout.strip()
        return int(out or 0)

    before = count()
    udp_packets(host, server_ip, port, 5)
    return wait_for(lambda: count() > before, 8)
