"""The site model: validation of the shared ``site_*`` facts and the facts derived from them.

Every role reads the same inventory facts (see docs/inventory.md). The functions here are the
one place where a fact is turned into what several roles need (the HTTPS allow-list, the DICOM
sources), so the firewall, nginx and Orthanc can never disagree. They are pure functions; the
``FilterModule`` at the bottom only exposes them to Jinja.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable

NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# DICOM AE titles: 1-16 characters of the default character repertoire without backslash
# or control characters; leading/trailing spaces are not significant, so we refuse them.
AET_PATTERN = re.compile(r"^[A-Za-z0-9 _.\-+/:=@#$%&*()!?<>,;'\"\[\]{}|~^`]{1,16}$")
MODALITY_COMMANDS = ("echo", "store", "find", "move", "get")
VPN_CLIENT_KINDS = ("modality_gateway", "radiologist", "admin")
USER_ROLES = ("admin", "viewer", "uploader")


def aet_error(value: Any, variable: str) -> str | None:
    """Return why ``value`` is not a valid DICOM AE title, or None when it is valid."""
    if not isinstance(value, str) or not value:
        return f"{variable}: an AE title is required (1 to 16 characters, e.g. ORTHANC)"
    if value != value.strip():
        return f"{variable}: AE title {value!r} has leading or trailing spaces; remove them"
    if not AET_PATTERN.match(value):
        return (
            f"{variable}: AE title {value!r} must be 1 to 16 printable ASCII characters "
            "without backslash (e.g. MRI1)"
        )
    return None


def port_error(value: Any, variable: str) -> str | None:
    """Return why ``value`` is not a TCP/UDP port number, or None."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        return f"{variable}: {value!r} is not a port number (1-65535)"
    return None


def name_error(value: Any, variable: str) -> str | None:
    """Return why ``value`` is not a usable short name (file names, certificate CNs), or None."""
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        return f"{variable}: {value!r} must be lowercase letters, digits and dashes (e.g. mri-1)"
    return None


def network_error(value: Any, variable: str) -> str | None:
    """Return why ``value`` is not an IPv4/IPv6 address or CIDR, or None."""
    try:
        ipaddress.ip_network(str(value), strict=True)
    except ValueError:
        return f"{variable}: {value!r} is not an IP address or network in CIDR form (e.g. 198.51.100.0/28)"
    return None


def address_error(value: Any, variable: str) -> str | None:
    """Return why ``value`` is not a single IP address, or None."""
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return f"{variable}: {value!r} is not a single IP address (e.g. 192.168.50.10)"
    return None


def _unique_errors(items: Iterable[dict], key: str, variable: str) -> list[str]:
    seen: set = set()
    errors = []
    for item in items:
        value = item.get(key) if isinstance(item, dict) else None
        if value is None:
            continue
        if value in seen:
            errors.append(f"{variable}: {key} {value!r} appears twice; each must be unique")
        seen.add(value)
    return errors


def modality_errors(modalities: Any, vpn_clients: Any = ()) -> list[str]:
    """Validate ``site_modalities`` (and their link to ``site_vpn_clients`` gateways)."""
    if not isinstance(modalities, list):
        return ["site_modalities: must be a list of {name, aet, host, port, allow, tls}"]
    gateways = {
        c.get("name"): c
        for c in (vpn_clients or [])
        if isinstance(c, dict) and c.get("kind") == "modality_gateway"
    }
    errors: list[str] = []
    for index, modality in enumerate(modalities):
        where = f"site_modalities[{index}]"
        if not isinstance(modality, dict):
            errors.append(f"{where}: must be a mapping with name, aet, host, port, allow")
            continue
        where = f"site_modalities[{modality.get('name', index)}]"
        for check in (
            name_error(modality.get("name"), f"{where}.name"),
            aet_error(modality.get("aet"), f"{where}.aet"),
            address_error(modality.get("host"), f"{where}.host"),
            port_error(modality.get("port", 104), f"{where}.port"),
        ):
            if check:
                errors.append(check)
        allow = modality.get("allow", [])
        if not isinstance(allow, list) or any(a not in MODALITY_COMMANDS for a in allow):
            errors.append(
                f"{where}.allow: {allow!r} must be a list of {', '.join(MODALITY_COMMANDS)}"
            )
        if not isinstance(modality.get("tls", False), bool):
            errors.append(f"{where}.tls: must be true or false")
        gateway_name = modality.get("vpn_gateway")
        if gateway_name is not None:
            gateway = gateways.get(gateway_name)
            if gateway is None:
                errors.append(
                    f"{where}.vpn_gateway: {gateway_name!r} is not a site_vpn_clients entry "
                    "of kind modality_gateway; add it there or remove vpn_gateway"
                )
            elif not address_error(modality.get("host"), "host"):
                host = ipaddress.ip_address(str(modality["host"]))
                subnets = [
                    ipaddress.ip_network(str(s), strict=False)
                    for s in gateway.get("site_subnets", [])
                    if not network_error(s, "s") or not address_error(s, "s")
                ]
                if not any(host in subnet for subnet in subnets):
                    errors.append(
                        f"{where}.host: {host} is not inside the site_subnets of gateway "
                        f"{gateway_name!r}; add its LAN to that gateway's site_subnets"
                    )
    errors += _unique_errors(modalities, "name", "site_modalities")
    errors += _unique_errors(modalities, "aet", "site_modalities")
    return errors


def vpn_client_errors(clients: Any, vpn: Any) -> list[str]:
    """Validate ``site_vpn_clients`` against ``site_vpn.network``."""
    if not isinstance(clients, list):
        return ["site_vpn_clients: must be a list of {name, kind, address}"]
    vpn = vpn or {}
    errors: list[str] = []
    network = None
    if vpn.get("network") is not None:
        if network_error(vpn["network"], "site_vpn.network"):
            errors.append(network_error(vpn["network"], "site_vpn.network"))
        else:
            network = ipaddress.ip_network(str(vpn["network"]))
    server_address = next(network.hosts()) if network else None
    for index, client in enumerate(clients):
        if not isinstance(client, dict):
            errors.append(f"site_vpn_clients[{index}]: must be a mapping with name, kind, address")
            continue
        where = f"site_vpn_clients[{client.get('name', index)}]"
        check = name_error(client.get("name"), f"{where}.name")
        if check:
            errors.append(check)
        if client.get("kind") not in VPN_CLIENT_KINDS:
            errors.append(f"{where}.kind: {client.get('kind')!r} must be one of {', '.join(VPN_CLIENT_KINDS)}")
        check = address_error(client.get("address"), f"{where}.address")
        if check:
            errors.append(check)
        elif network is not None:
            address = ipaddress.ip_address(str(client["address"]))
            if address not in network or address in (network.network_address, network.broadcast_address):
                errors.append(f"{where}.address: {address} is not a host address of site_vpn.network {network}")
            elif address == server_address:
                errors.append(f"{where}.address: {address} is the VPN server's own address; pick another")
        subnets = client.get("site_subnets", [])
        if subnets and client.get("kind") != "modality_gateway":
            errors.append(f"{where}.site_subnets: only a modality_gateway routes a site LAN; remove it")
        for subnet in subnets if isinstance(subnets, list) else [subnets]:
            check = network_error(subnet, f"{where}.site_subnets")
            if check:
                errors.append(check)
    errors += _unique_errors(clients, "name", "site_vpn_clients")
    errors += _unique_errors(clients, "address", "site_vpn_clients")
    return errors


def vpn_errors(vpn: Any) -> list[str]:
    """Validate ``site_vpn`` itself: port, protocol and who may reach the VPN port."""
    if vpn in (None, {}):
        return []
    if not isinstance(vpn, dict):
        return ["site_vpn: must be a mapping {enabled, network, port, proto, sources, full_tunnel}"]
    errors = [e for e in [port_error(vpn.get("port", 1194), "site_vpn.port")] if e]
    if vpn.get("proto", "udp") not in ("udp", "tcp"):
        errors.append(f"site_vpn.proto: {vpn.get('proto')!r} must be udp or tcp")
    sources = vpn.get("sources", [])
    if not isinstance(sources, list):
        errors.append("site_vpn.sources: must be a list of CIDRs (e.g. [0.0.0.0/0])")
    else:
        errors += [e for e in (network_error(s, "site_vpn.sources") for s in sources) if e]
    for flag in ("enabled", "full_tunnel"):
        if not isinstance(vpn.get(flag, False), bool):
            errors.append(f"site_vpn.{flag}: must be true or false")
    return errors


def user_errors(users: Any) -> list[str]:
    """Validate the shape of ``site_users`` (password strength is checked by the orthanc role)."""
    if not isinstance(users, list):
        return ["site_users: must be a list of {name, role, password?}"]
    errors: list[str] = []
    for index, user in enumerate(users):
        if not isinstance(user, dict):
            errors.append(f"site_users[{index}]: must be a mapping with name and role")
            continue
        where = f"site_users[{user.get('name', index)}]"
        name = user.get("name")
        if not isinstance(name, str) or not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name):
            errors.append(f"{where}.name: {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
        if user.get("role") not in USER_ROLES:
            errors.append(f"{where}.role: {user.get('role')!r} must be one of {', '.join(USER_ROLES)}")
    errors += _unique_errors(users, "name", "site_users")
    return errors


def site_model_errors(facts: dict) -> list[str]:
    """Check every shared ``site_*`` fact; return a list of messages naming variable and fix."""
    errors: list[str] = []
    if "site_name" in facts:
        check = name_error(facts["site_name"], "site_name")
        if check:
            errors.append(check)
    for variable in ("site_admin_sources", "site_https_sources", "site_pacs_addresses"):
        values = facts.get(variable) or []
        if not isinstance(values, list):
            errors.append(f"{variable}: must be a list")
            continue
        errors += [e for e in (network_error(v, variable) for v in values) if e]
    dicom = facts.get("site_dicom") or {}
    if "aet" in dicom:
        errors += [e for e in [aet_error(dicom["aet"], "site_dicom.aet")] if e]
    if "port" in dicom:
        errors += [e for e in [port_error(dicom["port"], "site_dicom.port")] if e]
    vpn_clients = facts.get("site_vpn_clients") or []
    errors += modality_errors(facts.get("site_modalities") or [], vpn_clients)
    errors += vpn_errors(facts.get("site_vpn"))
    errors += vpn_client_errors(vpn_clients, facts.get("site_vpn") or {})
    errors += user_errors(facts.get("site_users") or [])
    errors += ssh_access_errors(facts)
    return errors


def ssh_access_errors(facts: dict) -> list[str]:
    """``site_ssh_allow_users`` / ``site_ssh_allow_groups``: lists of sshd AllowUsers/AllowGroups
    patterns (user names may carry ``@host``), read by base_hardening."""
    errors: list[str] = []
    patterns = {
        "site_ssh_allow_users": r"^[A-Za-z0-9_.*?-]+(@[A-Za-z0-9_.*?:/-]+)?$",
        "site_ssh_allow_groups": r"^[A-Za-z0-9_.*?-]+$",
    }
    for variable, pattern in patterns.items():
        values = facts.get(variable)
        if values is None:
            continue
        if not isinstance(values, list):
            errors.append(f"{variable}: must be a list of names, e.g. [admin]")
            continue
        errors += [
            f"{variable}: {value!r} is not a user/group name or sshd pattern (letters, digits, . _ - * ?)"
            for value in values
            if not isinstance(value, str) or not re.match(pattern, value)
        ]
    return errors


def _normalise(source: str) -> str:
    """A CIDR in canonical form; a single address becomes /32 or /128."""
    return str(ipaddress.ip_network(str(source), strict=False))


def https_allowed_sources(
    admin_sources: Iterable[str] | None,
    https_sources: Iterable[str] | None = None,
    vpn_clients: Iterable[dict] | None = None,
) -> list[str]:
    """Who may reach HTTPS: admin sources, extra HTTPS sources, radiologist and admin VPN clients.

    Sorted and de-duplicated, so the firewall and nginx render the same list in the same order.
    """
    sources = {_normalise(s) for s in (admin_sources or [])}
    sources |= {_normalise(s) for s in (https_sources or [])}
    sources |= {
        _normalise(c["address"])
        for c in (vpn_clients or [])
        if c.get("kind") in ("radiologist", "admin")
    }
    return sorted(sources, key=lambda s: (ipaddress.ip_network(s).version, ipaddress.ip_network(s)))


def vpn_server_address(vpn: dict | None) -> str | None:
    """The VPN server's tunnel address (first host of ``site_vpn.network``), or None when the VPN is off.

    Radiologists reach HTTPS at this address through the tunnel, so it is also an HTTPS SAN.
    """
    if not vpn or not vpn.get("enabled", False) or not vpn.get("network"):
        return None
    network = ipaddress.ip_network(str(vpn["network"]), strict=False)
    return str(next(network.hosts(), network.network_address))


def dicom_allowed_sources(
    modalities: Iterable[dict] | None, vpn_clients: Iterable[dict] | None = None
) -> list[dict]:
    """Who may reach the DICOM port: each modality's host, and each gateway's own tunnel address.

    Returns ``[{"source": cidr, "comment": why}]``, sorted by source. A gateway's tunnel address is
    included so its engineer can C-ECHO from the gateway itself; Orthanc still only accepts the
    AE titles and hosts it knows.
    """
    rows: dict[str, str] = {}
    for modality in modalities or []:
        rows.setdefault(_normalise(modality["host"]), f"modality {modality['name']}")
    for client in vpn_clients or []:
        if client.get("kind") == "modality_gateway":
            rows.setdefault(_normalise(client["address"]), f"vpn gateway {client['name']}")
    return [
        {"source": source, "comment": rows[source]}
        for source in sorted(rows, key=lambda s: (ipaddress.ip_network(s).version, ipaddress.ip_network(s)))
    ]


class FilterModule:
    """Expose the site model to Jinja."""

    def filters(self) -> dict:
        return {
            "site_model_errors": site_model_errors,
            "site_https_allowed_sources": https_allowed_sources,
            "site_dicom_allowed_sources": dicom_allowed_sources,
            "site_vpn_server_address": vpn_server_address,
        }
