"""Troubleshooting a site: what `playbooks/diagnose.yml` concludes from what the server shows.

`playbooks/files/diagnose_collect.py` reads the server's state (read-only) into one JSON
document: the results of `orthanc-remote-check` (services, certificates, CRL, disk, the server's
own C-ECHO), the listening sockets, Orthanc's recent errors and rejected associations, HTTPS
logins refused by nginx, the VPN clients connected now, fail2ban's bans, load and memory. The
ufw_firewall role's audit adds the difference between ufw's rules and the site model.

:func:`findings` turns that into one finding per check, each ``{result, check, target, cause,
fix, about}`` with ``result`` PASS, WARN or FAIL, following the troubleshooting list of the seed
article (timeouts and closed ports, firewall, authentication, AE titles, transfer errors, network
path and VPN, certificates, disk, service health, bans of a known peer). ``about`` names the
modalities a finding concerns (empty: the whole site), so ``-e modality=<name>`` keeps only what
lies on that modality's path.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable

RESULTS = ("PASS", "WARN", "FAIL")
REJECTED_AET = re.compile(r"Rejected association for remote AET (?P<aet>.{0,16}?) on IP (?P<ip>[0-9a-fA-F.:]+)\s*$")
FORBIDDEN_HOST = re.compile(r"Forbidding access from AET \"?(?P<aet>[^\"]{0,16}?)\"? given its hostname \((?P<ip>[^)]+)\)")
# Orthanc logs a wrong called AE title without the peer's address.
CALLED_AET = re.compile(r"called AE.*(not recogni|reject|invalid|mismatch|does not match)|(not recogni|reject|invalid).*called AE", re.I)
MIN_FAILED_LOGINS = 3


def finding(result: str, check: str, target: str, cause: str = "", fix: str = "", about: Iterable[str] = ()) -> dict:
    """One line of the diagnosis."""
    assert result in RESULTS, result
    return {"result": result, "check": check, "target": target, "cause": cause, "fix": fix, "about": sorted(about)}


def _modalities(facts: dict) -> list[dict]:
    return [m for m in facts.get("site_modalities") or [] if isinstance(m, dict)]


def _vpn_clients(facts: dict) -> list[dict]:
    return [c for c in facts.get("site_vpn_clients") or [] if isinstance(c, dict)]


def _dicom(facts: dict) -> dict:
    return facts.get("site_dicom") or {}


def _dicom_port(facts: dict) -> int:
    return int(_dicom(facts).get("port", 4242))


def _https_port(facts: dict) -> int:
    return int(facts.get("site_https_port", 443))


def _all_modalities(facts: dict) -> list[str]:
    return [m["name"] for m in _modalities(facts)]


def _check_about(check: str, target: str, facts: dict) -> list[str]:
    """The modalities whose path an orthanc-remote-check result lies on."""
    every = _all_modalities(facts)
    tls = [m["name"] for m in _modalities(facts) if m.get("tls") and _dicom(facts).get("tls")]
    gateways = {c.get("name") for c in _vpn_clients(facts) if c.get("kind") == "modality_gateway"}
    behind = [m["name"] for m in _modalities(facts) if m.get("vpn_gateway")]
    if check in ("dicom_echo", "disk") or (check == "service" and target.startswith("orthanc.")):
        return every
    if check == "service" and target.startswith("openvpn") or check == "crl":
        return behind
    if check == "cert" and "/openvpn/" in target:
        name = target.rsplit("/", 1)[-1].removesuffix(".crt")
        if name in gateways:
            return [m["name"] for m in _modalities(facts) if m.get("vpn_gateway") == name]
        return behind if name in ("ca", "server") else []
    if check == "cert" and "dicom" in target.rsplit("/", 1)[-1] or check == "cert" and target.endswith("/ca.crt"):
        return tls
    return []


def check_results(collected: dict, facts: dict) -> list[dict]:
    """orthanc-remote-check's own results (services, certificates, CRL, disk, self C-ECHO, updates)."""
    out = []
    if collected.get("checks_error"):
        return [finding("WARN", "checks", "orthanc-remote-check", collected["checks_error"],
                        "apply the site (make apply) so log_monitoring installs its checks")]
    fixes = {
        "service": "sudo systemctl restart {target}; `journalctl -u {target} -n 50` shows why it stopped",
        "cert": "make renew-certificates (or install the provided certificate), then hand out the new CA if it changed",
        "crl": "make apply (the CRL is refreshed by openvpn_easyrsa and its timer)",
        "disk": "free space under {target} or grow the volume; Orthanc refuses new studies when it is full",
        "dicom_echo": "read /var/log/orthanc/Orthanc.log around now; check the DICOM port, TLS files and the HEALTHCHECK modality",
        "updates": "sudo apt-get update && sudo apt-get upgrade (unattended-upgrades does security updates)",
    }
    for res in collected.get("checks") or []:
        check, target, status = res.get("check", "?"), res.get("target", "?"), res.get("status", "CRITICAL")
        if check == "notify":
            continue
        result = {"OK": "PASS", "WARNING": "WARN"}.get(status, "FAIL")
        detail = ", ".join(f"{k}={v}" for k, v in res.items() if k not in ("check", "target", "status"))
        cause = "" if result == "PASS" else (f"{check} {target}: {status}" + (f" ({detail})" if detail else ""))
        fix = "" if result == "PASS" else fixes.get(check, "see orthanc-remote-status").format(target=target)
        about = _check_about(check, target, facts)
        out.append(finding(result, {"cert": "certificate"}.get(check, check), target, cause, fix, about))
    return out


def _listening(collected: dict, proto: str, port: int) -> bool:
    return any(s.get("proto") == proto and int(s.get("port", -1)) == port for s in collected.get("listening") or [])


def port_findings(collected: dict, facts: dict) -> list[dict]:
    """Timeouts and closed ports: each port the model opens has a listening socket."""
    vpn = facts.get("site_vpn") or {}
    wanted = [("tcp", _dicom_port(facts), "DICOM (orthanc)", _all_modalities(facts)),
              ("tcp", _https_port(facts), "HTTPS (nginx)", [])]
    if vpn.get("enabled"):
        wanted.append((str(vpn.get("proto", "udp")).replace("4", "").replace("6", ""), int(vpn.get("port", 1194)),
                       "VPN (openvpn)", [m["name"] for m in _modalities(facts) if m.get("vpn_gateway")]))
    out = []
    for proto, port, what, about in wanted:
        if _listening(collected, proto, port):
            out.append(finding("PASS", "port", f"{proto}/{port}", about=about))
        else:
            out.append(finding("FAIL", "port", f"{proto}/{port}",
                               f"nothing listens on {proto}/{port} ({what}): clients time out or are refused",
                               f"start the service behind {what}; `sudo ss -lntup` shows what listens", about))
    return out


def firewall_findings(collected: dict, audit: dict | None, facts: dict) -> list[dict]:
    """Firewall: ufw active and its rules equal to the site model (the ufw_firewall role's audit)."""
    if not collected.get("ufw_active"):
        return [finding("FAIL", "firewall", "ufw", "ufw is not active", "make apply (ufw_firewall enables it)")]
    if audit is None:
        return [finding("WARN", "firewall", "ufw", "the firewall audit did not run", "run diagnose.yml with its ufw_firewall audit")]
    out = []
    names = _all_modalities(facts)
    for rule in audit.get("missing") or []:
        about = [n for n in names if re.search(rf"\b{re.escape(n)}\b", rule)] or ([] if "dicom" not in rule else names)
        out.append(finding("FAIL", "firewall", rule, f"ufw lacks the model's rule `{rule}`: that peer's packets are dropped (a timeout)",
                           "make apply (ufw_firewall adds it back)", about))
    for rule in audit.get("extra") or []:
        out.append(finding("WARN", "firewall", rule, f"ufw has a rule the model does not: `{rule}`",
                           "remove it (`sudo ufw status numbered`, `sudo ufw delete N`) or add the peer to the inventory"))
    if not out:
        out.append(finding("PASS", "firewall", "ufw", about=names))
    return out


def _closest_modality(aet: str, ip: str, facts: dict) -> tuple[dict | None, str]:
    """The modality an unknown calling AET most likely belongs to, and why."""
    for modality in _modalities(facts):
        if str(modality.get("aet", "")).casefold() == aet.casefold() and modality.get("aet") != aet:
            return modality, "case"
    for modality in _modalities(facts):
        if modality.get("aet") == aet:
            return modality, "host"
    for modality in _modalities(facts):
        if str(modality.get("host", "")).split("/")[0] == ip:
            return modality, "aet"
    return None, "unknown"


def aet_findings(collected: dict, facts: dict) -> list[dict]:
    """AE title mismatches (case included) from Orthanc's rejected associations."""
    out, seen = [], set()
    pacs_aet = _dicom(facts).get("aet", "ORTHANC")
    for line in collected.get("orthanc_log") or []:
        match = REJECTED_AET.search(line) or FORBIDDEN_HOST.search(line)
        if match:
            aet, ip = match.group("aet").strip().strip('"'), match.group("ip")
            if (aet, ip) in seen:
                continue
            seen.add((aet, ip))
            modality, why = _closest_modality(aet, ip, facts)
            if modality is None:
                out.append(finding("WARN", "ae-title", f"{aet} from {ip}", f"an unknown calling AE title {aet!r} from {ip} was refused",
                                   "if this is one of your modalities, add it to site_modalities (aet, host) and make apply"))
                continue
            name, registered = modality["name"], modality.get("aet")
            cause = {
                "case": f"modality {name} called with AE title {aet!r} from {ip}; it is registered as {registered!r} (AE titles are case-sensitive)",
                "host": f"modality {name} (AE {registered}) called from {ip}, not from its registered host {modality.get('host')}",
                "aet": f"the host of modality {name} ({ip}) called with AE title {aet!r}; it is registered as {registered!r}",
            }[why]
            fix = (f"on the modality's console set the calling AE title to {registered} exactly, or change its `aet` in site_modalities"
                   if why != "host" else
                   f"set site_modalities[{name}].host to the address the PACS sees ({ip}) if it moved, then make apply")
            out.append(finding("FAIL", "ae-title", name, cause, fix, [name]))
        elif CALLED_AET.search(line):
            key = ("called", line[-60:])
            if key not in seen:
                seen.add(key)
                out.append(finding("FAIL", "ae-title", "called AE title",
                                   f"a modality called the PACS with a wrong called AE title (Orthanc: {line.strip()[-120:]})",
                                   f"enter the called AE title {pacs_aet} exactly (case-sensitive) on the modality",
                                   _all_modalities(facts)))
    if not out:
        out.append(finding("PASS", "ae-title", "rejected associations", about=_all_modalities(facts)))
    return out


def transfer_findings(collected: dict, facts: dict) -> list[dict]:
    """Transfer errors: Orthanc's recent error lines that are not refused associations."""
    errors = [line for line in collected.get("orthanc_log") or []
              if line.startswith("E") and not (REJECTED_AET.search(line) or FORBIDDEN_HOST.search(line))]
    if not errors:
        return [finding("PASS", "transfer", "Orthanc log", about=_all_modalities(facts))]
    last = " | ".join(e.strip()[:160] for e in errors[-3:])
    window = collected.get("window_minutes", 60)
    return [finding("WARN", "transfer", "Orthanc log", f"{len(errors)} error line(s) in Orthanc's log in the last {window} minutes, last: {last}",
                    "read /var/log/orthanc/Orthanc.log around these lines (disk full, malformed DICOM, TLS)", _all_modalities(facts))]


def login_findings(collected: dict, facts: dict) -> list[dict]:
    """Authentication: HTTPS logins refused by nginx/Orthanc (401) per user name."""
    users = {u.get("name") for u in facts.get("site_users") or [] if isinstance(u, dict)}
    out = []
    for row in collected.get("https_401") or []:
        user, count, source = row.get("user") or "-", int(row.get("count", 0)), row.get("source", "?")
        if count < MIN_FAILED_LOGINS or user == "-":
            continue
        if user in users:
            out.append(finding("WARN", "login", user, f"{count} refused HTTPS logins as {user} from {source}: the password is wrong",
                               f"give {user} the current password (credentials/{user}.txt or the vault), or `make rotate-password USER={user}`"))
        else:
            out.append(finding("WARN", "login", user, f"{count} refused HTTPS logins as {user!r} from {source}: no such user in site_users",
                               "check the user name, or add the user to site_users and make apply"))
    if not out:
        out.append(finding("PASS", "login", "HTTPS logins"))
    return out


def vpn_findings(collected: dict, facts: dict) -> list[dict]:
    """Network path and VPN state: each modality gateway is connected and not revoked."""
    vpn = facts.get("site_vpn") or {}
    if not vpn.get("enabled"):
        return []
    # Revoked in the inventory, or in the CRL the server uses (a certificate revoked by hand).
    revoked = set(facts.get("site_vpn_revoked") or []) | set(collected.get("vpn_revoked") or [])
    connected = set(collected.get("vpn_connected") or [])
    out = []
    for client in _vpn_clients(facts):
        if client.get("kind") != "modality_gateway":
            continue
        name = client.get("name")
        behind = [m["name"] for m in _modalities(facts) if m.get("vpn_gateway") == name]
        if name in revoked:
            out.append(finding("FAIL", "vpn", name, f"gateway {name} is revoked (site_vpn_revoked or the server's CRL): {', '.join(behind) or 'no modality'} has no path",
                               f"remove {name} from site_vpn_revoked if it is there, make apply (a new certificate is issued), "
                               "then install its new profile on the gateway", behind))
        elif name in connected:
            out.append(finding("PASS", "vpn", name, about=behind))
        else:
            out.append(finding("FAIL", "vpn", name, f"gateway {name} is not connected: {', '.join(behind) or 'no modality'} cannot reach the PACS",
                               f"on the gateway: `systemctl status openvpn-client@{name}`; it must reach "
                               f"{facts.get('site_pacs_fqdn', 'the PACS')} on {vpn.get('proto', 'udp')}/{vpn.get('port', 1194)}", behind))
    return out


def _peers(facts: dict) -> list[tuple[str, str, list[str]]]:
    """Every known peer: (what, address or network, modalities it concerns)."""
    peers = []
    for modality in _modalities(facts):
        if not modality.get("vpn_gateway"):
            peers.append((f"modality {modality['name']}", str(modality.get("host", "")), [modality["name"]]))
    for client in _vpn_clients(facts):
        behind = [m["name"] for m in _modalities(facts) if m.get("vpn_gateway") == client.get("name")]
        peers.append((f"vpn {client.get('kind')} {client.get('name')}", str(client.get("address", "")), behind))
    for source in facts.get("site_admin_sources") or []:
        peers.append(("admin source", str(source), []))
    return peers


def _inside(address: str, network: str) -> bool:
    try:
        return ipaddress.ip_address(address) in ipaddress.ip_network(network, strict=False)
    except ValueError:
        return False


def ban_findings(collected: dict, facts: dict) -> list[dict]:
    """fail2ban bans of a known peer (a modality, a VPN client, an admin source)."""
    out = []
    for jail, addresses in sorted((collected.get("bans") or {}).items()):
        for address in addresses:
            for what, network, about in _peers(facts):
                if network and _inside(address, network):
                    out.append(finding("FAIL", "ban", f"{address} ({jail})",
                                       f"{what}'s address {address} is banned by fail2ban jail {jail}",
                                       f"sudo fail2ban-client set {jail} unbanip {address}; known peers belong in "
                                       "log_monitoring's ignore list (they are there unless an override removed them)", about))
    if not out:
        out.append(finding("PASS", "ban", "known peers", about=_all_modalities(facts)))
    return out


def certificate_findings(collected: dict, facts: dict) -> list[dict]:
    """Certificates beyond expiry: the HTTPS name in the SAN, the chain to the site's CA."""
    out = []
    fqdn = facts.get("site_pacs_fqdn")
    for cert in collected.get("certificates") or []:
        path, role = cert.get("path"), cert.get("role")
        about = _all_modalities(facts) if role == "dicom" else []
        if cert.get("error"):
            out.append(finding("FAIL", "certificate", path, f"{path}: {cert['error']}", "make renew-certificates", about))
            continue
        if role == "https" and fqdn and fqdn not in (cert.get("san") or []):
            out.append(finding("FAIL", "certificate", path, f"{path} is not valid for {fqdn} (SAN: {', '.join(cert.get('san') or []) or 'none'})",
                               "make renew-certificates (the SANs come from site_pacs_fqdn and site_pacs_addresses)", about))
        if cert.get("chain") is False:
            out.append(finding("FAIL", "certificate", path, f"{path} does not chain to {cert.get('ca')}: {cert.get('chain_error', '')}".strip(),
                               "make renew-certificates, then hand out the CA again", about))
    return out


def resource_findings(collected: dict) -> list[dict]:
    """Service health and resources: load per core and available memory."""
    res = collected.get("resources") or {}
    out = []
    cores = max(int(res.get("cores", 1)), 1)
    load = float(res.get("load1", 0.0))
    if load / cores > 2:
        out.append(finding("WARN", "resources", "load", f"load {load:.1f} on {cores} core(s): ingest and the viewer slow down",
                           "find the busy process (`top`); large transfers, a backup or a scan"))
    total, available = int(res.get("mem_total_kb", 0)), int(res.get("mem_available_kb", 0))
    if total and available / total < 0.1:
        out.append(finding("WARN", "resources", "memory", f"only {available // 1024} MiB of {total // 1024} MiB available",
                           "add memory or lower Orthanc's caches"))
    if not out:
        out.append(finding("PASS", "resources", "load and memory"))
    return out


def findings(collected: dict, facts: dict, audit: dict | None = None, modality: str | None = None) -> list[dict]:
    """Every finding; with ``modality``, only those on that modality's path (and site-wide FAILs of DICOM)."""
    everything = (check_results(collected, facts) + port_findings(collected, facts)
                  + firewall_findings(collected, audit, facts) + aet_findings(collected, facts)
                  + transfer_findings(collected, facts) + login_findings(collected, facts)
                  + vpn_findings(collected, facts) + ban_findings(collected, facts)
                  + certificate_findings(collected, facts) + resource_findings(collected))
    if not modality:
        return everything
    return [f for f in everything if modality in f["about"]]


def unknown_modality_error(facts: dict, modality: str | None) -> str:
    """`-e modality=` must name a modality of the inventory."""
    names = _all_modalities(facts)
    if modality and modality not in names:
        return f"modality: {modality!r} is not in site_modalities; use one of {', '.join(names) or '(none)'}"
    return ""


def table(found: list[dict]) -> list[str]:
    """One line per finding: ``RESULT check target: cause; fix``, FAILs first."""
    order = {"FAIL": 0, "WARN": 1, "PASS": 2}
    lines = []
    for f in sorted(found, key=lambda f: order[f["result"]]):
        line = f"{f['result']:<4} {f['check']:<11} {f['target']}"
        if f["cause"]:
            line += f": {f['cause']}; fix: {f['fix']}"
        lines.append(line)
    counts = {r: sum(1 for f in found if f["result"] == r) for r in RESULTS}
    lines.append(f"{counts['FAIL']} FAIL, {counts['WARN']} WARN, {counts['PASS']} PASS")
    return lines


class FilterModule:
    """Expose the diagnosis to Jinja."""

    def filters(self) -> dict[str, Any]:
        return {
            "diagnose_findings": findings,
            "diagnose_table": table,
            "diagnose_unknown_modality": unknown_modality_error,
        }
