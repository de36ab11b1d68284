"""Troubleshooting and verifying a site: what `playbooks/diagnose.yml` and `playbooks/verify.yml`
conclude from what the server and the test clients show.

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

`playbooks/verify.yml` keeps the state checks of the same list (services, certificates, disk, the
self C-ECHO, listening sockets and their bind addresses, the firewall against the model) and adds
what only a real transfer shows: the server's self C-STORE (:func:`selftest_rows`) and each test
client's path (:func:`modality_rows`, :func:`user_rows`). It ends with one table
(:func:`verify_table`): path or user, result, and the reason when it fails.
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
            if aet == collected.get("verify_probe_aet"):
                continue  # verify.yml's own check that an unknown AE title is rejected
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


# --- verify.yml ----------------------------------------------------------------------------------

# State checks only: what the logs of the last hour say (AE titles refused, logins, transfer errors,
# bans) is troubleshooting (diagnose.yml), not whether the site works now.
VERIFY_CHECKS = ("service", "certificate", "crl", "disk", "dicom_echo", "port", "bind", "firewall")
LOOPBACK = ("127.0.0.1", "::1", "[::1]")
WILDCARD = ("0.0.0.0", "*", "[::]", "::")


def bind_findings(collected: dict, facts: dict, http_port: int = 8042) -> list[dict]:
    """Listening sockets and their bind addresses: Orthanc's own HTTP port on loopback only (nginx
    is the one way in); every port the model opens reachable on the server's addresses."""
    sockets = collected.get("listening") or []
    out = []
    exposed = sorted({s.get("address") for s in sockets
                      if s.get("proto") == "tcp" and int(s.get("port", -1)) == int(http_port) and s.get("address") not in LOOPBACK})
    guarded = re.search(rf'iifname != "lo" tcp dport {int(http_port)}\b.*\bdrop', collected.get("http_guard") or "")
    if exposed and guarded:
        # Orthanc 1.10 cannot bind loopback only: the orthanc role's nftables guard drops the rest.
        out.append(finding("PASS", "bind", f"tcp/{http_port} on {', '.join(exposed)}, loopback only by the nftables guard"))
    elif exposed:
        out.append(finding("FAIL", "bind", f"tcp/{http_port}",
                           f"Orthanc's HTTP port {http_port} listens on {', '.join(exposed)} and no nftables guard keeps it to "
                           "loopback: a peer that ufw lets in reaches Orthanc without nginx's HTTPS",
                           "sudo systemctl restart orthanc-remote-http-guard, or make apply (the orthanc role's loopback guard)"))
    elif any(s.get("proto") == "tcp" and int(s.get("port", -1)) == int(http_port) for s in sockets):
        out.append(finding("PASS", "bind", f"tcp/{http_port} on loopback only"))
    addresses = [str(a).split("/")[0] for a in facts.get("site_pacs_addresses") or []]
    vpn = facts.get("site_vpn") or {}
    wanted = [("tcp", _dicom_port(facts), _all_modalities(facts)), ("tcp", _https_port(facts), [])]
    if vpn.get("enabled"):
        wanted.append((str(vpn.get("proto", "udp")).replace("4", "").replace("6", ""), int(vpn.get("port", 1194)),
                       [m["name"] for m in _modalities(facts) if m.get("vpn_gateway")]))
    for proto, port, about in wanted:
        bound = sorted({str(s.get("address")) for s in sockets if s.get("proto") == proto and int(s.get("port", -1)) == port})
        if not bound:
            continue  # port_findings names the closed port
        reachable = any(b in WILDCARD or b.strip("[]") in addresses for b in bound)
        if reachable:
            out.append(finding("PASS", "bind", f"{proto}/{port} on {', '.join(bound)}", about=about))
        else:
            out.append(finding("FAIL", "bind", f"{proto}/{port}",
                               f"{proto}/{port} listens only on {', '.join(bound)}, not on the server's addresses ({', '.join(addresses) or 'any'})",
                               "remove the listen-address override of that service, then make apply", about))
    return out


def selftest_rows(selftest: dict | None) -> list[dict]:
    """The server's self C-ECHO and C-STORE (roles/orthanc/tasks/selftest.yml) as table rows."""
    if not selftest:
        return [row("server DICOM self-test", "FAIL", "the self-test did not run", "run verify.yml without --check")]
    if "skipped" in selftest:
        return [row("server DICOM self-test", "WARN", selftest["skipped"]["detail"])]
    steps = (("echo", "C-ECHO"), ("store", "C-STORE of a test instance"), ("arrived", "arrival checked through REST"),
             ("removed", "test instance deleted"))
    fixes = {"echo": "make diagnose: it names the DICOM port, TLS and AE title problems",
             "store": "read /var/log/orthanc/Orthanc.log at this time (disk full, storage permissions, TLS)",
             "arrived": "read /var/log/orthanc/Orthanc.log at this time; Orthanc accepted but did not index the instance",
             "removed": "delete the patient VERIFY^ORTHANC-REMOTE in Orthanc Explorer as an admin"}
    out = []
    for key, what in steps:
        step = selftest.get(key) or {"ok": False, "detail": "no result"}
        out.append(row(f"server {what}", "PASS" if step.get("ok") else "FAIL", step.get("detail", ""), fixes[key]))
    return out


def row(path: str, result: str, reason: str = "", fix: str = "") -> dict:
    """One line of verify's table: path or user, result, and the reason (with the fix) when not PASS."""
    assert result in RESULTS, result
    text = "" if result == "PASS" else (f"{reason}; fix: {fix}" if reason and fix else reason or fix)
    return {"path": path, "result": result, "reason": text}


def server_rows(collected: dict, facts: dict, audit: dict | None, selftest: dict | None, http_port: int = 8042) -> list[dict]:
    """Every server-side check of verify.yml, as table rows."""
    found = [f for f in (check_results(collected, facts) + port_findings(collected, facts)
                         + bind_findings(collected, facts, http_port) + firewall_findings(collected, audit, facts)
                         + certificate_findings(collected, facts))
             if f["check"] in VERIFY_CHECKS]
    rows = [row(f"server {f['check']} {f['target']}", f["result"], f["cause"], f["fix"]) for f in found]
    return rows + selftest_rows(selftest)


def _words(result: dict | None) -> str:
    result = result or {}
    return f"{result.get('stdout', '')}\n{result.get('stderr', '')}"


def _dcmtk_reason(result: dict | None) -> str:
    lines = [line.strip() for line in _words(result).splitlines() if line.startswith(("E:", "F:"))]
    return "; ".join(lines)[-300:] or (result or {}).get("msg", "") or "no answer"


def modality_rows(modality: dict, via: str, echo: dict | None, intruder: dict | None,
                  store: dict | None, arrival: dict | None) -> list[dict]:
    """A modality's real path from its test client: C-ECHO allowed or refused as declared, an
    unknown AE title rejected, and (when it may store) a C-STORE whose instance arrived."""
    name = modality["name"]
    allow = modality.get("allow") or []
    fix = f"make diagnose MODALITY={name}"
    out = []
    echoed = "Received Echo Response (Success)" in _words(echo)
    if "echo" in allow:
        out.append(row(f"modality {name} C-ECHO via {via}", "PASS" if echoed else "FAIL",
                       f"C-ECHO as {modality['aet']} failed: {_dcmtk_reason(echo)}", fix))
    else:
        out.append(row(f"modality {name} C-ECHO refused (not allowed)", "FAIL" if echoed else "PASS",
                       f"C-ECHO as {modality['aet']} succeeded although `allow` has no echo", "make apply (Orthanc's modality entry is stale)"))
    rejected = "Association Rejected" in _words(intruder)
    accepted = "Received Echo Response" in _words(intruder) or "Association Accepted" in _words(intruder)
    out.append(row(f"modality {name} unknown AE title rejected", "PASS" if rejected else "FAIL",
                   f"an unknown calling AE title from {name}'s host was accepted" if accepted
                   else f"no answer to check it: {_dcmtk_reason(intruder)}",
                   "check that no site_modalities entry accepts any AE title (make apply)" if accepted else fix))
    if "store" in allow:
        stored = "Received Store Response (Success)" in _words(store)
        arrived = (arrival or {}).get("arrived") or {}
        if not stored:
            out.append(row(f"modality {name} C-STORE via {via}", "FAIL", f"C-STORE as {modality['aet']} failed: {_dcmtk_reason(store)}", fix))
        else:
            out.append(row(f"modality {name} C-STORE via {via}", "PASS" if arrived.get("ok") else "FAIL",
                           f"the instance was accepted but did not arrive: {arrived.get('detail', 'no arrival check')}", fix))
    return out


def role_probes(role: str) -> list[dict]:
    """Harmless requests that show what a role can and cannot do through HTTPS.

    Each is ``{method, path, allowed, why, body}``; "allowed" means the request filter let it
    through (any answer but 401/403). The IDs do not exist, so nothing is read or changed even where
    the request is allowed; the one real write, an uploader's upload (body "instance"), sends
    verify's test instance, whose arrival is checked and which is deleted again.
    tests/test_verify.py checks every probe against the policy table.
    """
    missing = "00000000-ffffffff-ffffffff-ffffffff-ffffffff"
    probes = {
        "viewer": [("GET", "/studies", True, "list studies", ""), ("DELETE", f"/studies/{missing}", False, "delete a study", ""),
                   ("POST", "/instances", False, "upload an instance", "")],
        "uploader": [("POST", "/instances", True, "upload an instance", "instance"), ("GET", "/studies", False, "list studies", ""),
                     ("DELETE", f"/studies/{missing}", False, "delete a study", "")],
        "admin": [("GET", "/system", True, "read the system", ""), ("DELETE", f"/studies/{missing}", True, "delete a study", ""),
                  ("POST", "/tools/execute-script", False, "run Lua code", "")],
    }
    return [{"method": m, "path": p, "allowed": a, "why": w, "body": b} for m, p, a, w, b in probes.get(role, [])]


def user_rows(user: dict, via: str, answers: list, upload: dict | None = None) -> list[dict]:
    """A user's HTTPS login from a test client, then each probe of its role (:func:`role_probes`,
    in order; ``answers``: their HTTP status codes, "000" when nothing answered). ``upload``: the
    arrival of the test instance an uploader sent."""
    name, role = user["name"], user.get("role", "?")
    probes = role_probes(role)
    codes = [str(a).strip() or "000" for a in answers]
    login_failed = [c for c in codes if c in ("401", "000")]
    out = [row(f"user {name} ({role}) HTTPS login via {via}", "FAIL" if login_failed or not codes else "PASS",
               f"HTTPS answered {login_failed[0] if login_failed else 'nothing'}",
               f"401: the password differs (make rotate-password USER={name}); 000: no answer, the path is down or the "
               "source is not allowed (make diagnose)")]
    if login_failed:
        return out
    for probe, code in zip(probes, codes):
        allowed = code not in ("401", "403")
        can = "can" if probe["allowed"] else "cannot"
        ok = allowed == probe["allowed"]
        reason = f"{probe['method']} {probe['path']} answered {code}"
        if ok and probe["allowed"] and probe["body"] == "instance":
            arrived = (upload or {}).get("arrived") or {"ok": False, "detail": "no arrival check"}
            ok = code == "200" and arrived.get("ok", False)
            reason = f"{reason}; the uploaded test instance: {arrived.get('detail') or 'arrived'}"
        out.append(row(f"user {name} ({role}) {can} {probe['why']}", "PASS" if ok else "FAIL", reason,
                       "the request filter does not apply the declared policy: make apply (roles/orthanc/README.md has the table)"))
    return out


def user_probes(users: list[dict]) -> list[list]:
    """[user, probe] pairs, user by user in order, each user's probes in :func:`role_probes` order
    (verify.yml loops over them and sends the answers back to :func:`client_rows` in this order)."""
    return [[user, probe] for user in users for probe in role_probes(user.get("role", ""))]


def client_rows(clients: list[dict], modalities: list[dict], users: list[dict], arrivals: dict,
                expected_hosts: list[str]) -> list[dict]:
    """The test clients' rows: each VPN client's tunnel, each modality's path, each user's HTTPS
    checks; a test client that reported nothing (unreachable, or its play failed) is a FAIL too."""
    by_modality = {m.get("name"): m for m in modalities if isinstance(m, dict)}
    by_user = {u.get("name"): u for u in users if isinstance(u, dict)}
    out = []
    reported = {c.get("host") for c in clients}
    for host in expected_hosts:
        if host not in reported:
            out.append(row(f"test client {host}", "FAIL", "it reported nothing: unreachable, or a step before the checks failed",
                           "read the run's output above for this host"))
    for client in clients:
        if client.get("vpn_client"):
            name, address = client["vpn_client"], client.get("address", "")
            up = bool(address) and f" {address}/" in f" {client.get('tunnel', '')}"
            out.append(row(f"vpn client {name} tunnel ({address})", "PASS" if up else "FAIL",
                           f"tun0 on {client['host']} has no address {address}",
                           f"journalctl -u openvpn-client@{name} on {client['host']}; make diagnose"))
        if client.get("modality") in by_modality:
            sent = client.get("sent") or {}
            out += modality_rows(by_modality[client["modality"]], client.get("via", "?"), client.get("echo"),
                                 client.get("intruder"), client.get("store"), arrivals.get(sent.get("sop", "")))
        answers = list(client.get("answers") or [])
        for name in client.get("users") or []:
            user = by_user.get(name, {"name": name, "role": "?"})
            count = len(role_probes(user.get("role", "")))
            uploaded = client.get("uploaded") or {}
            out += user_rows(user, client.get("https_via", "?"), answers[:count], arrivals.get(uploaded.get("sop", "")))
            answers = answers[count:]
    return out


def verify_table(rows: list[dict]) -> list[str]:
    """The one table verify.yml ends with: result, path or user, reason; then the counts."""
    width = max([len(r["path"]) for r in rows] + [12])
    lines = [f"{'RESULT':<6} {'PATH OR USER':<{width}} REASON"]
    lines += [f"{r['result']:<6} {r['path']:<{width}} {r['reason']}".rstrip() for r in rows]
    counts = {res: sum(1 for r in rows if r["result"] == res) for res in RESULTS}
    lines.append(f"{counts['FAIL']} FAIL, {counts['WARN']} WARN, {counts['PASS']} PASS")
    return lines


class FilterModule:
    """Expose the diagnosis to Jinja."""

    def filters(self) -> dict[str, Any]:
        return {
            "diagnose_findings": findings,
            "diagnose_table": table,
            "diagnose_unknown_modality": unknown_modality_error,
            "verify_server_rows": server_rows,
            "verify_user_probes": user_probes,
            "verify_client_rows": client_rows,
            "verify_table": verify_table,
        }
