"""The site model: the one validator of the shared ``site_*`` facts, and the facts derived from them.

Every role reads the same inventory facts (docs/inventory.md). This module is the one place where
a rule about a ``site_*`` fact lives: the first play of site.yml runs ``site_model_errors`` on the
whole inventory, and every role runs the same function on its own view of the facts before it
changes anything, so a role used alone refuses exactly what site.yml refuses.

Every problem is reported at once, one plain line each: ``path.to.fact: what is wrong; how to fix``.
``FACTS`` and ``KEYS`` are the declared rule set (which facts and keys exist, and what they are);
the ``_check_*`` functions hold the per-fact rules and ``_cross_checks`` the rules that tie facts
together (overlapping networks, port clashes, unreachable modalities). They are pure functions;
the ``FilterModule`` at the bottom only exposes them to Jinja.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any, Iterable

NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
USER_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
DNS_PATTERN = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
URL_PATTERN = re.compile(r"^https?://[^\s/]+(/\S*)?$")
MODALITY_COMMANDS = ("echo", "store", "find", "move", "get")
VPN_CLIENT_KINDS = ("modality_gateway", "radiologist", "admin")
VPN_PROTOCOLS = ("udp", "tcp")
USER_ROLES = ("admin", "viewer", "uploader")
CERTIFICATE_MODES = ("internal_ca", "self_signed", "csr", "provided", "acme")
KEY_TYPES = ("ecdsa", "rsa")
AET_MAX = 16
MIN_PASSWORD_LENGTH = 12
# Known weak or default values, compared case-insensitively. Orthanc itself creates
# orthanc:orthanc when RegisteredUsers is empty; the seed article uses admin_password.
WEAK_PASSWORDS = frozenset(
    {
        "orthanc",
        "orthancorthanc",
        "password",
        "admin_password",
        "admin",
        "administrator",
        "changeme",
        "change_me",
        "change-me",
        "secret",
        "letmein",
        "qwerty",
        "123456789012",
        "password1234",
        "password123!",
        "passwordpassword",
    }
)
# Values that are a placeholder or a template that was never rendered, not a password.
PLACEHOLDER_PATTERN = re.compile(
    r"(\{\{|\}\}|\{%|%\}|^\$ANSIBLE_VAULT;|^vault_[A-Za-z0-9_]+$|^<.*>$|^\$\{.*\}$|^(todo|tbd|xxx+|fixme)$)",
    re.IGNORECASE,
)

# What the roles use when a setting is not in the inventory (role defaults; see each role README).
DEFAULTS: dict[str, Any] = {
    "dicom_aet": "ORTHANC",
    "dicom_port": 4242,
    "https_port": 443,
    "http_port": 8042,  # orthanc_http_port: Orthanc's own HTTP port, on loopback behind nginx
    "ssh_port": 22,
    "acme_http_port": 80,
    "vpn_port": 1194,
    "vpn_proto": "udp",
    "modality_port": 104,
    "selfcheck_aet": "HEALTHCHECK",  # orthanc_selfcheck_aet
    "verify_aet": "VERIFY",  # orthanc_verify_aet
    "server_cn": "server",  # openvpn_easyrsa_server_cn
    "certificate_days": 825,
    "renew_days": 30,
}

# The declared rule set: every site fact (docs/inventory.md has the same table, for people).
FACTS: dict[str, str] = {
    "site_name": "short name of the site ([a-z0-9-])",
    "site_pacs_fqdn": "the DNS name clients use to reach the server",
    "site_pacs_addresses": "the server's public IP addresses (list)",
    "site_admin_sources": "CIDRs the IT team works from (list)",
    "site_https_sources": "extra CIDRs allowed to HTTPS without the VPN (list)",
    "site_https_port": "the HTTPS port of Orthanc Explorer and REST (default 443)",
    "site_dicom": "{aet, port, tls}: Orthanc's AE title, DICOM port, DICOM TLS",
    "site_modalities": "the modalities (list of {name, aet, host, port, allow, tls, vpn_gateway})",
    "site_vpn": "{enabled, network, port, proto, sources, full_tunnel}",
    "site_vpn_clients": "the VPN clients (list of {name, kind, address, site_subnets})",
    "site_vpn_revoked": "names of VPN clients to revoke (list)",
    "site_users": "Orthanc users (list of {name, role, password})",
    "site_certificates": "{https, dicom, key_type, renew_days}",
    "site_tls_dir": "where certificates are installed on the server",
    "site_artifacts_dir": "controller directory for generated files and hand-outs",
    "site_alerts": "{email, webhook_url} for monitoring notifications",
    "site_acme_webroot": "where ACME http-01 challenges are written and served",
    "site_ssh_allow_users": "user names (or sshd patterns) that may log in over SSH (list)",
    "site_ssh_allow_groups": "groups whose members may log in over SSH (list)",
}
# The keys each mapping fact (or list item) may have.
KEYS: dict[str, tuple[str, ...]] = {
    "site_dicom": ("aet", "port", "tls"),
    "site_modalities": ("name", "aet", "host", "port", "allow", "tls", "vpn_gateway"),
    "site_vpn": ("enabled", "network", "port", "proto", "sources", "full_tunnel"),
    "site_vpn_clients": ("name", "kind", "address", "site_subnets"),
    "site_users": ("name", "role", "password"),
    "site_certificates": ("https", "dicom", "key_type", "renew_days"),
    "site_certificates.*": ("mode", "days", "extra_sans", "certificate", "chain"),
    "site_alerts": ("email", "webhook_url"),
}
# Settings the roles own that cross-checks need (what the first play passes as ``context``).
# ``complete``: the facts are the whole inventory (the first play), so required facts must be there;
# a role checking its own view of the facts leaves it out.
# ``needs_server_name``: the caller issues certificates or VPN profiles, which need site_pacs_fqdn
# or site_pacs_addresses.
CONTEXT_KEYS = ("complete", "needs_server_name", "http_port", "ssh_port", "selfcheck_aet", "verify_aet", "server_cn", "acme_terms_agreed")


def _msg(path: str, what: str, fix: str) -> str:
    """One problem as the admin reads it: ``path: what is wrong; how to fix``."""
    return f"{path}: {what}; {fix}"


def _show(value: Any) -> str:
    """A value as the admin typed it, quoted when it is text."""
    return repr(value) if isinstance(value, str) else str(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _closest(name: str, known: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def unknown_key_errors(mapping: dict, known: Iterable[str], where: str, separator: str = ".") -> list[str]:
    """One message per key of ``mapping`` not in ``known``, with the closest known name."""
    known = tuple(known)
    errors = []
    for key in mapping:
        if key in known:
            continue
        path = f"{where}{separator}{key}" if where else str(key)
        close = _closest(str(key), known)
        if close:
            errors.append(_msg(path, "unknown key (a typo?)", f"did you mean {where}{separator}{close}? rename it"))
        else:
            errors.append(_msg(path, "unknown key", f"remove it; the known keys are {', '.join(known)}"))
    return errors


# --- Single values ----------------------------------------------------------------------------


def aet_error(value: Any, path: str) -> str | None:
    """Why ``value`` is not a valid DICOM AE title, or None when it is.

    1 to 16 characters of ASCII without backslash or control characters; inner spaces and lower
    case are valid (DICOM keeps case); leading or trailing spaces are not significant in DICOM, so
    they are refused rather than silently dropped.
    """
    fix = "use 1 to 16 ASCII letters, digits, spaces or punctuation without backslash (e.g. MRI1)"
    if not isinstance(value, str):
        return _msg(path, f"{_show(value)} is not text", f"{fix}, written in quotes if it looks like a number")
    if value.strip() == "":
        return _msg(path, "an AE title is required (it is empty)", fix)
    if len(value) > AET_MAX:
        return _msg(path, f"{value!r} has {len(value)} characters, more than {AET_MAX}", f"shorten it; {fix}")
    if "\\" in value:
        return _msg(path, f"{value!r} contains a backslash (the DICOM value separator)", f"remove it; {fix}")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return _msg(path, f"{value!r} contains a control character", f"remove it; {fix}")
    if any(ord(c) > 126 for c in value):
        return _msg(path, f"{value!r} contains a non-ASCII character", f"replace it; {fix}")
    if value != value.strip():
        return _msg(path, f"{value!r} has leading or trailing spaces (not significant in DICOM)", "remove them")
    return None


def port_error(value: Any, path: str) -> str | None:
    """Why ``value`` is not a TCP/UDP port number, or None."""
    if isinstance(value, str) and value.strip().isdigit():
        return _msg(path, f"{value!r} is text, not a number", f"write it without quotes: {value.strip()}")
    if not _is_int(value) or not 1 <= value <= 65535:
        return _msg(path, f"{_show(value)} is not a port number", "use a whole number from 1 to 65535")
    return None


def name_error(value: Any, path: str) -> str | None:
    """Why ``value`` is not a usable short name (file names, certificate CNs), or None."""
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        return _msg(
            path,
            f"{_show(value)} is not a short name",
            "use 1 to 63 lowercase letters, digits and inner dashes (e.g. mri-1)",
        )
    return None


def parse_network(value: Any, ipv4_only: bool = False) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """``value`` as a network (a single address is a /32 or /128), or None when it is not one.

    Host bits set (``10.0.0.1/24``) are refused: the admin meant either the address or the network.
    """
    if isinstance(value, bool) or value is None or isinstance(value, (list, dict)):
        return None
    try:
        network = ipaddress.ip_network(str(value).strip(), strict=True)
    except ValueError:
        return None
    if ipv4_only and network.version != 4:
        return None
    return network


def parse_address(value: Any, ipv4_only: bool = False) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``value`` as one IP address (``a.b.c.d`` or ``a.b.c.d/32``), or None."""
    network = parse_network(value, ipv4_only)
    if network is None or network.num_addresses != 1:
        return None
    return network.network_address


def network_error(value: Any, path: str, ipv4_only: bool = False) -> str | None:
    """Why ``value`` is not an IP network in CIDR form (or a single address), or None."""
    if parse_network(value, ipv4_only) is not None:
        return None
    family = "an IPv4" if ipv4_only else "an IP"
    try:
        loose = ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        loose = None
    if loose is not None and ipv4_only and loose.version == 6:
        return _msg(path, f"{_show(value)} is IPv6, which this part of the site supports only as IPv4", "use an IPv4 network (e.g. 10.8.0.0/24)")
    if loose is not None:
        return _msg(path, f"{_show(value)} has host bits set", f"write the network as {loose} (or the single address without the prefix)")
    return _msg(path, f"{_show(value)} is not {family} address or network", "write a CIDR such as 198.51.100.0/28 or a single address such as 198.51.100.7")


def address_error(value: Any, path: str, ipv4_only: bool = False) -> str | None:
    """Why ``value`` is not a single IP address, or None."""
    if parse_address(value, ipv4_only) is not None:
        return None
    network = parse_network(value) or _loose(value)
    if network is not None and network.num_addresses > 1:
        return _msg(path, f"{_show(value)} is a network, not one address", "give the single IP address (e.g. 192.168.50.10)")
    if network is not None and ipv4_only:
        return _msg(path, f"{_show(value)} is IPv6, which is not supported here", "use an IPv4 address")
    return _msg(path, f"{_show(value)} is not an IP address", "give a single IP address such as 192.168.50.10")


def _loose(value: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(str(value).strip(), strict=False)
    except ValueError:
        return None


def password_weakness(password: Any, user: str = "") -> str | None:
    """Why ``password`` must not be deployed, or None when it is acceptable."""
    if not isinstance(password, str):
        return "it is not text"
    if PLACEHOLDER_PATTERN.search(password.strip()):
        return "it looks like a placeholder or an unrendered template, not a password"
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"it has {len(password)} characters, fewer than {MIN_PASSWORD_LENGTH}"
    if password.lower() in WEAK_PASSWORDS:
        return "it is a well-known default or weak password"
    if len(user) >= 4 and user.lower() in password.lower():
        return "it contains the user name"
    if len(set(password)) < 5:
        return "it uses fewer than 5 different characters"
    if password != password.strip() or any(ord(c) < 32 for c in password):
        return "it has leading/trailing spaces or control characters"
    return None


def _bool_error(value: Any, path: str) -> str | None:
    if not isinstance(value, bool):
        return _msg(path, f"{_show(value)} is not true or false", "write true or false without quotes")
    return None


def _list_of(value: Any, path: str, example: str) -> tuple[list, list[str]]:
    """``value`` as a list (None is an empty list), or an error."""
    if value is None:
        return [], []
    if not isinstance(value, list):
        return [], [_msg(path, f"{_show(value)} is not a list", f"write a YAML list, e.g. {example}")]
    return value, []


def _mapping(value: Any, path: str, example: str) -> tuple[dict, list[str]]:
    if value is None:
        return {}, []
    if not isinstance(value, dict):
        return {}, [_msg(path, f"{_show(value)} is not a mapping", f"write it as {example}")]
    return value, []


def _item_path(fact: str, item: Any, index: int, key: str = "name") -> str:
    name = item.get(key) if isinstance(item, dict) else None
    return f"{fact}[{name if isinstance(name, str) and name else index}]"


# --- One fact at a time -----------------------------------------------------------------------


def _check_sources(facts: dict, fact: str) -> list[str]:
    values, errors = _list_of(facts.get(fact), fact, "[198.51.100.0/28]")
    for value in values:
        check = network_error(value, fact)
        if check:
            errors.append(check)
    return errors


def _check_pacs(facts: dict, context: dict) -> list[str]:
    errors = []
    fqdn = facts.get("site_pacs_fqdn")
    if fqdn not in (None, "") and (not isinstance(fqdn, str) or not DNS_PATTERN.match(fqdn) or parse_address(fqdn)):
        errors.append(_msg("site_pacs_fqdn", f"{_show(fqdn)} is not a DNS name", "write the server's DNS name (e.g. pacs.example.org); addresses go in site_pacs_addresses"))
    addresses, list_errors = _list_of(facts.get("site_pacs_addresses"), "site_pacs_addresses", "[203.0.113.10]")
    errors += list_errors
    for value in addresses:
        check = address_error(value, "site_pacs_addresses")
        if check:
            errors.append(check)
    if (context.get("complete") or context.get("needs_server_name")) and not fqdn and not addresses and not list_errors:
        errors.append(_msg("site_pacs_fqdn", "neither site_pacs_fqdn nor site_pacs_addresses is set", "set site_pacs_fqdn (certificates, VPN profiles and hand-outs need the server's name)"))
    return errors


def _check_dicom(facts: dict) -> list[str]:
    dicom, errors = _mapping(facts.get("site_dicom"), "site_dicom", "{aet: ORTHANC, port: 4242, tls: false}")
    errors += unknown_key_errors(dicom, KEYS["site_dicom"], "site_dicom")
    if "aet" in dicom:
        errors += [e for e in [aet_error(dicom["aet"], "site_dicom.aet")] if e]
    if "port" in dicom:
        check = port_error(dicom["port"], "site_dicom.port")
        if check:
            errors.append(check)
        elif dicom["port"] < 1024:
            errors.append(_msg("site_dicom.port", f"{dicom['port']} is below 1024 and Orthanc runs unprivileged (it could not bind it)", "use 4242 (Orthanc's default) or 11112"))
    if "tls" in dicom:
        errors += [e for e in [_bool_error(dicom["tls"], "site_dicom.tls")] if e]
    return errors


def _check_https_port(facts: dict) -> list[str]:
    if "site_https_port" not in facts:
        return []
    return [e for e in [port_error(facts["site_https_port"], "site_https_port")] if e]


def _check_modalities(facts: dict) -> list[str]:
    modalities, errors = _list_of(facts.get("site_modalities"), "site_modalities", "[{name: mri-1, aet: MRI1, host: 192.168.50.10}]")
    for index, modality in enumerate(modalities):
        where = _item_path("site_modalities", modality, index)
        if not isinstance(modality, dict):
            errors.append(_msg(where, f"{_show(modality)} is not a mapping", "write {name, aet, host, port, allow, tls}"))
            continue
        errors += unknown_key_errors(modality, KEYS["site_modalities"], where)
        for key in ("name", "aet", "host"):
            if key not in modality:
                errors.append(_msg(f"{where}.{key}", "is missing", f"add {key} (docs/inventory.md, Modalities)"))
        checks = []
        if "name" in modality:
            checks.append(name_error(modality["name"], f"{where}.name"))
        if "aet" in modality:
            checks.append(aet_error(modality["aet"], f"{where}.aet"))
        if "host" in modality:
            checks.append(address_error(modality["host"], f"{where}.host"))
        checks.append(port_error(modality.get("port", DEFAULTS["modality_port"]), f"{where}.port"))
        errors += [c for c in checks if c]
        allow = modality.get("allow", [])
        if not isinstance(allow, list) or any(not isinstance(a, str) or a not in MODALITY_COMMANDS for a in allow):
            errors.append(_msg(f"{where}.allow", f"{_show(allow)} is not a list of DICOM commands", f"use a list of {', '.join(MODALITY_COMMANDS)} (e.g. [echo, store])"))
        elif len(set(allow)) != len(allow):
            errors.append(_msg(f"{where}.allow", "lists a command twice", "list each command once"))
        if "tls" in modality:
            errors += [e for e in [_bool_error(modality["tls"], f"{where}.tls")] if e]
        if "vpn_gateway" in modality and not isinstance(modality["vpn_gateway"], str):
            errors.append(_msg(f"{where}.vpn_gateway", f"{_show(modality['vpn_gateway'])} is not a client name", "give the name of a site_vpn_clients entry of kind modality_gateway"))
    errors += _duplicates(modalities, "name", "site_modalities")
    return errors


def _check_vpn(facts: dict) -> list[str]:
    vpn, errors = _mapping(facts.get("site_vpn"), "site_vpn", "{enabled: true, network: 10.8.0.0/24, port: 1194, proto: udp}")
    errors += unknown_key_errors(vpn, KEYS["site_vpn"], "site_vpn")
    for flag in ("enabled", "full_tunnel"):
        if flag in vpn:
            errors += [e for e in [_bool_error(vpn[flag], f"site_vpn.{flag}")] if e]
    if "port" in vpn:
        errors += [e for e in [port_error(vpn["port"], "site_vpn.port")] if e]
    if "proto" in vpn and vpn["proto"] not in VPN_PROTOCOLS:
        errors.append(_msg("site_vpn.proto", f"{_show(vpn['proto'])} is not a VPN protocol this site supports", "use udp (recommended) or tcp"))
    enabled = vpn.get("enabled") is True
    if "network" in vpn or enabled:
        if vpn.get("network") in (None, ""):
            errors.append(_msg("site_vpn.network", "is missing while the VPN is enabled", "set the tunnel network, e.g. 10.8.0.0/24"))
        else:
            check = network_error(vpn["network"], "site_vpn.network", ipv4_only=True)
            if check:
                errors.append(check)
            elif parse_network(vpn["network"]).prefixlen > 29:
                errors.append(_msg("site_vpn.network", f"{vpn['network']} is too small for a server and its clients", "use a /29 or larger (e.g. 10.8.0.0/24)"))
    sources, source_errors = _list_of(vpn.get("sources"), "site_vpn.sources", "[0.0.0.0/0]")
    errors += source_errors
    for source in sources:
        if str(source).strip().lower() != "any":
            errors += [e for e in [network_error(source, "site_vpn.sources")] if e]
    return errors


def _check_vpn_clients(facts: dict, context: dict) -> list[str]:
    clients, errors = _list_of(facts.get("site_vpn_clients"), "site_vpn_clients", "[{name: dr-smith, kind: radiologist, address: 10.8.0.20}]")
    vpn = facts.get("site_vpn") if isinstance(facts.get("site_vpn"), dict) else {}
    network = parse_network(vpn.get("network"), ipv4_only=True)
    server = next(network.hosts(), None) if network is not None else None
    server_cn = context.get("server_cn", DEFAULTS["server_cn"])
    for index, client in enumerate(clients):
        where = _item_path("site_vpn_clients", client, index)
        if not isinstance(client, dict):
            errors.append(_msg(where, f"{_show(client)} is not a mapping", "write {name, kind, address}"))
            continue
        errors += unknown_key_errors(client, KEYS["site_vpn_clients"], where)
        check = name_error(client.get("name"), f"{where}.name")
        if check:
            errors.append(check)
        elif client["name"] == server_cn:
            errors.append(_msg(f"{where}.name", f"{client['name']!r} is the VPN server certificate's name", "rename the client"))
        if client.get("kind") not in VPN_CLIENT_KINDS:
            errors.append(_msg(f"{where}.kind", f"{_show(client.get('kind'))} is not a kind of VPN client", f"use one of {', '.join(VPN_CLIENT_KINDS)}"))
        check = address_error(client.get("address"), f"{where}.address", ipv4_only=True)
        if check:
            errors.append(check)
        elif network is not None:
            address = parse_address(client["address"])
            if address not in network or address in (network.network_address, network.broadcast_address):
                errors.append(_msg(f"{where}.address", f"{address} is not a host address of site_vpn.network {network}", f"pick an address inside {network} other than its first and last"))
            elif address == server:
                errors.append(_msg(f"{where}.address", f"{address} is the VPN server's own tunnel address", f"pick another address in {network} (the server takes {server})"))
        subnets, subnet_errors = _list_of(client.get("site_subnets"), f"{where}.site_subnets", "[192.168.50.0/24]")
        errors += subnet_errors
        if subnets and client.get("kind") != "modality_gateway":
            errors.append(_msg(f"{where}.site_subnets", f"a {client.get('kind')} does not route a site LAN", "remove site_subnets, or make the client kind: modality_gateway"))
        for subnet in subnets:
            check = network_error(subnet, f"{where}.site_subnets", ipv4_only=True)
            if check:
                errors.append(check)
    errors += _duplicates(clients, "name", "site_vpn_clients")
    errors += _duplicates(clients, "address", "site_vpn_clients", normalise=lambda a: parse_address(a) or a)
    revoked, revoked_errors = _list_of(facts.get("site_vpn_revoked"), "site_vpn_revoked", "[dr-jones]")
    errors += revoked_errors
    for name in revoked:
        check = name_error(name, "site_vpn_revoked")
        if check:
            errors.append(check)
    return errors


def _check_users(facts: dict, context: dict) -> list[str]:
    users, errors = _list_of(facts.get("site_users"), "site_users", "[{name: admin, role: admin}]")
    if ("site_users" in facts or context.get("complete")) and not users and not errors:
        errors.append(_msg("site_users", "is empty (Orthanc would then create the default user orthanc:orthanc)", "declare at least one user {name: admin, role: admin}"))
    for index, user in enumerate(users):
        where = _item_path("site_users", user, index)
        if not isinstance(user, dict):
            errors.append(_msg(where, f"{_show(user)} is not a mapping", "write {name, role, password?}"))
            continue
        errors += unknown_key_errors(user, KEYS["site_users"], where)
        name = user.get("name")
        if not isinstance(name, str) or not USER_PATTERN.match(name):
            errors.append(_msg(f"{where}.name", f"{_show(name)} is not a user name", "use 1 to 64 letters, digits, '.', '_' or '-'"))
        if user.get("role") not in USER_ROLES:
            errors.append(_msg(f"{where}.role", f"{_show(user.get('role'))} is not a role", f"use one of {', '.join(USER_ROLES)}"))
        if user.get("password") is not None:
            why = password_weakness(user["password"], name if isinstance(name, str) else "")
            if why:
                errors.append(_msg(
                    f"{where}.password",
                    f"refused: {why}",
                    f"remove password to have a strong one generated, or reference a vaulted random value of {MIN_PASSWORD_LENGTH}+ characters (password: \"{{{{ vault_{str(name or 'user').replace('-', '_')}_password }}}}\")",
                ))
    errors += _duplicates(users, "name", "site_users")
    if users and not errors and not any(isinstance(u, dict) and u.get("role") == "admin" for u in users):
        errors.append(_msg("site_users", "has no user with role admin (nobody could manage Orthanc, and its health check needs one)", "add {name: admin, role: admin}"))
    return errors


def _check_certificates(facts: dict, context: dict) -> list[str]:
    certificates, errors = _mapping(facts.get("site_certificates"), "site_certificates", "{https: {mode: internal_ca}}")
    errors += unknown_key_errors(certificates, KEYS["site_certificates"], "site_certificates")
    if certificates.get("key_type", "ecdsa") not in KEY_TYPES:
        errors.append(_msg("site_certificates.key_type", f"{_show(certificates.get('key_type'))} is not a key type", "use ecdsa (P-256) or rsa (3072)"))
    renew_days = certificates.get("renew_days", DEFAULTS["renew_days"])
    if not _is_int(renew_days) or renew_days < 1:
        errors.append(_msg("site_certificates.renew_days", f"{_show(renew_days)} is not a number of days", "use a whole number of days >= 1 (e.g. 30)"))
        renew_days = DEFAULTS["renew_days"]
    for name in ("https", "dicom"):
        where = f"site_certificates.{name}"
        raw, raw_errors = _mapping(certificates.get(name), where, "{mode: internal_ca}")
        errors += raw_errors
        errors += unknown_key_errors(raw, KEYS["site_certificates.*"], where)
        mode = raw.get("mode", "internal_ca")
        if mode not in CERTIFICATE_MODES:
            errors.append(_msg(f"{where}.mode", f"{_show(mode)} is not a certificate mode", f"use one of {', '.join(CERTIFICATE_MODES)}"))
        days = raw.get("days", DEFAULTS["certificate_days"])
        if not _is_int(days) or days <= renew_days:
            errors.append(_msg(f"{where}.days", f"{_show(days)} is not more than site_certificates.renew_days ({renew_days}), so every run would reissue it", f"use a whole number of days greater than {renew_days} (e.g. 825)"))
        for key in ("certificate", "chain"):
            if raw.get(key) is not None and not isinstance(raw[key], str):
                errors.append(_msg(f"{where}.{key}", "is not text", "give PEM text or the path of a PEM file on the controller"))
        if mode == "provided" and not raw.get("certificate"):
            errors.append(_msg(f"{where}.certificate", "mode provided needs the issued certificate", "give its PEM text or a controller file path, or use mode csr until the CA has answered"))
        if mode == "acme" and not facts.get("site_pacs_fqdn"):
            errors.append(_msg(f"{where}.mode", "acme needs site_pacs_fqdn (ACME CAs validate DNS names)", "set site_pacs_fqdn or use mode internal_ca"))
        if mode == "acme" and name == "dicom":
            errors.append(_msg(f"{where}.mode", "acme is for the HTTPS certificate only (http-01 validation)", "use internal_ca for the DICOM certificate"))
        if mode == "acme" and not context.get("acme_terms_agreed", False):
            errors.append(_msg(f"{where}.mode", "acme needs the ACME CA's terms of service accepted", "read them, then set tls_certs_acme_terms_agreed: true in the inventory"))
        extra, extra_errors = _list_of(raw.get("extra_sans"), f"{where}.extra_sans", "[pacs.internal.example.org]")
        errors += extra_errors
        for value in extra:
            if parse_address(value) is None and not (isinstance(value, str) and DNS_PATTERN.match(value)):
                errors.append(_msg(f"{where}.extra_sans", f"{_show(value)} is neither a DNS name nor a single IP address", "give DNS names or single addresses (no networks)"))
    return errors


def _check_paths(facts: dict) -> list[str]:
    errors = []
    for fact in ("site_tls_dir", "site_acme_webroot"):
        if fact in facts:
            value = facts[fact]
            if not isinstance(value, str) or not value.startswith("/") or value.rstrip("/") in ("", "/etc/orthanc", "/etc", "/var"):
                errors.append(_msg(fact, f"{_show(value)} is not a dedicated absolute directory", "give an absolute path of its own (see docs/inventory.md for the default)"))
    if "site_artifacts_dir" in facts and (not isinstance(facts["site_artifacts_dir"], str) or not facts["site_artifacts_dir"].strip()):
        errors.append(_msg("site_artifacts_dir", "is not a directory path", "give a controller path, or remove it for inventories/<site>/artifacts"))
    return errors


def _check_alerts(facts: dict) -> list[str]:
    alerts, errors = _mapping(facts.get("site_alerts"), "site_alerts", "{email: it@example.org}")
    errors += unknown_key_errors(alerts, KEYS["site_alerts"], "site_alerts")
    email = alerts.get("email") or ""
    if email and (not isinstance(email, str) or not EMAIL_PATTERN.match(email)):
        errors.append(_msg("site_alerts.email", f"{_show(email)} is not an e-mail address", "write one address such as pacs-alerts@example.org"))
    url = alerts.get("webhook_url") or ""
    if url and (not isinstance(url, str) or not URL_PATTERN.match(url)):
        errors.append(_msg("site_alerts.webhook_url", f"{_show(url)} is not an http(s) URL", "write a URL starting with https://"))
    return errors


def ssh_access_errors(facts: dict) -> list[str]:
    """``site_ssh_allow_users`` / ``site_ssh_allow_groups``: lists of sshd AllowUsers/AllowGroups
    patterns (user names may carry ``@host``), read by base_hardening."""
    errors: list[str] = []
    patterns = {
        "site_ssh_allow_users": r"^[A-Za-z0-9_.*?-]+(@[A-Za-z0-9_.*?:/-]+)?$",
        "site_ssh_allow_groups": r"^[A-Za-z0-9_.*?-]+$",
    }
    for fact, pattern in patterns.items():
        values = facts.get(fact)
        if values is None:
            continue
        if not isinstance(values, list):
            errors.append(_msg(fact, "must be a list of names", "write a YAML list, e.g. [admin]"))
            continue
        errors += [
            _msg(fact, f"{_show(value)} is not a user/group name or sshd pattern", "use letters, digits, . _ - * ? (users may add @host)")
            for value in values
            if not isinstance(value, str) or not re.match(pattern, value)
        ]
    return errors


def _duplicates(items: list, key: str, fact: str, normalise: Any = None, fold_case: bool = False) -> list[str]:
    seen: dict = {}
    errors = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or item.get(key) is None or isinstance(item.get(key), (list, dict)):
            continue
        value = item[key]
        token = normalise(value) if normalise else value
        if fold_case and isinstance(token, str):
            token = token.upper()
        if token in seen:
            same = " (ignoring case)" if fold_case and seen[token] != value else ""
            errors.append(_msg(f"{_item_path(fact, item, index)}.{key}", f"{_show(value)} is also used by {seen[token]!r}{same}", f"give each entry of {fact} its own {key}"))
        else:
            seen[token] = value if not isinstance(item.get("name"), str) else item["name"]
    return errors


# --- Facts together ---------------------------------------------------------------------------


def _clients_by_name(facts: dict) -> dict[str, dict]:
    clients = facts.get("site_vpn_clients")
    return {c["name"]: c for c in (clients if isinstance(clients, list) else []) if isinstance(c, dict) and isinstance(c.get("name"), str)}


def _gateway_subnets(client: dict) -> list:
    subnets = client.get("site_subnets")
    return [n for n in (parse_network(s, True) for s in (subnets if isinstance(subnets, list) else [])) if n is not None]


def _networks(values: Any) -> list:
    return [n for n in (parse_network(v) for v in (values if isinstance(values, list) else [])) if n is not None]


def _overlaps(a: Any, b: Any) -> bool:
    return a.version == b.version and a.overlaps(b)


def _cross_network_errors(facts: dict) -> list[str]:
    """Networks that must not overlap: the tunnel, the gateways' LANs, the server's addresses, the sources."""
    errors = []
    vpn = facts.get("site_vpn") if isinstance(facts.get("site_vpn"), dict) else {}
    vpn_on = vpn.get("enabled") is True
    tunnel = parse_network(vpn.get("network"), True)
    servers = [a for a in (parse_address(v) for v in (facts.get("site_pacs_addresses") if isinstance(facts.get("site_pacs_addresses"), list) else [])) if a]
    if tunnel is not None and vpn_on:
        for address in servers:
            if address in tunnel:
                errors.append(_msg("site_vpn.network", f"{tunnel} contains the server's own address {address} (site_pacs_addresses)", "pick a tunnel network used nowhere else (e.g. 10.8.0.0/24)"))
        for fact in ("site_admin_sources", "site_https_sources"):
            for source in _networks(facts.get(fact)):
                if source.prefixlen > 0 and _overlaps(source, tunnel):
                    errors.append(_msg(fact, f"{source} overlaps site_vpn.network {tunnel}, so tunnel clients would get its access", f"remove it from {fact} (VPN admins get their access from their kind), or move site_vpn.network"))
    seen: list[tuple[str, Any]] = []
    for name, client in _clients_by_name(facts).items():
        if client.get("kind") != "modality_gateway":
            continue
        where = f"site_vpn_clients[{name}].site_subnets"
        for subnet in _gateway_subnets(client):
            if tunnel is not None and _overlaps(subnet, tunnel):
                errors.append(_msg(where, f"{subnet} overlaps site_vpn.network {tunnel}", "give the gateway's LAN, which must differ from the tunnel network"))
            for address in servers:
                if address in subnet:
                    errors.append(_msg(where, f"{subnet} contains the server's own address {address}", "give only the modality LAN behind the gateway"))
            for other_name, other in seen:
                if _overlaps(subnet, other):
                    errors.append(_msg(where, f"{subnet} overlaps {other} of gateway {other_name!r}", "each site LAN must be routed by one gateway only; renumber or merge them"))
            seen.append((name, subnet))
    return errors


def _port_clash_errors(facts: dict, context: dict) -> list[str]:
    """The ports the server listens on must all differ (per transport)."""
    dicom = facts.get("site_dicom") if isinstance(facts.get("site_dicom"), dict) else {}
    vpn = facts.get("site_vpn") if isinstance(facts.get("site_vpn"), dict) else {}
    certificates = facts.get("site_certificates") if isinstance(facts.get("site_certificates"), dict) else {}
    https_cert = certificates.get("https") if isinstance(certificates.get("https"), dict) else {}
    # (path, port, transport, typed by the admin?)
    ports: list[tuple[str, Any, str, bool]] = [
        ("site_dicom.port", dicom.get("port", DEFAULTS["dicom_port"]), "tcp", "port" in dicom),
        ("site_https_port", facts.get("site_https_port", DEFAULTS["https_port"]), "tcp", "site_https_port" in facts),
    ]
    if vpn.get("enabled") is True:
        ports.append(("site_vpn.port", vpn.get("port", DEFAULTS["vpn_port"]), vpn.get("proto", DEFAULTS["vpn_proto"]), "port" in vpn))
    fixed: list[tuple[str, Any, str]] = [
        ("SSH (ufw_firewall_ssh_port)", context.get("ssh_port", DEFAULTS["ssh_port"]), "tcp"),
        ("Orthanc's own HTTP port (orthanc_http_port)", context.get("http_port", DEFAULTS["http_port"]), "tcp"),
    ]
    if https_cert.get("mode") == "acme":
        fixed.append(("HTTP for ACME challenges (site_certificates.https.mode: acme)", DEFAULTS["acme_http_port"], "tcp"))
    fix = "give each service its own port (e.g. DICOM 4242, HTTPS 443, VPN 1194)"
    errors = []
    valid = [p for p in ports if _is_int(p[1])]
    for index, (path, value, proto, typed) in enumerate(valid):
        for other, other_value, other_proto in fixed:
            if value == other_value and proto == other_proto:
                errors.append(_msg(path, f"port {value}/{proto} is already used by {other}", fix))
        for other, other_value, other_proto, other_typed in valid[:index]:
            if value == other_value and proto == other_proto:
                # Blame the fact the admin typed (the other one is a default).
                blamed, named = (other, path) if other_typed and not typed else (path, other)
                default = "" if (typed and other_typed) else " (its default)"
                errors.append(_msg(blamed, f"port {value}/{proto} is already used by {named}{default}", fix))
    return errors


def _modality_path_errors(facts: dict, context: dict) -> list[str]:
    """Each modality must be reachable by exactly the path the model describes, and be nobody else."""
    modalities = facts.get("site_modalities")
    if not isinstance(modalities, list):
        return []
    vpn = facts.get("site_vpn") if isinstance(facts.get("site_vpn"), dict) else {}
    vpn_on = vpn.get("enabled") is True
    tunnel = parse_network(vpn.get("network"), True)
    clients = _clients_by_name(facts)
    revoked = facts.get("site_vpn_revoked") if isinstance(facts.get("site_vpn_revoked"), list) else []
    servers = {a for a in (parse_address(v) for v in (facts.get("site_pacs_addresses") if isinstance(facts.get("site_pacs_addresses"), list) else [])) if a}
    # A view without site_dicom.tls (a role that does not read it) does not check the link.
    dicom = facts.get("site_dicom") if isinstance(facts.get("site_dicom"), dict) else {}
    errors = []
    for index, modality in enumerate(modalities):
        if not isinstance(modality, dict):
            continue
        where = _item_path("site_modalities", modality, index)
        host = parse_address(modality.get("host"))
        gateway_name = modality.get("vpn_gateway")
        if modality.get("tls") is True and "tls" in dicom and dicom["tls"] is not True:
            errors.append(_msg(f"{where}.tls", "is true but site_dicom.tls is false (Orthanc's DICOM port is either TLS or plain)", "set site_dicom.tls: true, or tls: false for this modality"))
        if isinstance(gateway_name, str):
            gateway = clients.get(gateway_name)
            if gateway is None:
                errors.append(_msg(f"{where}.vpn_gateway", f"{gateway_name!r} is not in site_vpn_clients", "add that gateway to site_vpn_clients (kind: modality_gateway) or remove vpn_gateway"))
                continue
            if gateway.get("kind") != "modality_gateway":
                errors.append(_msg(f"{where}.vpn_gateway", f"{gateway_name!r} is a {gateway.get('kind')}, not a gateway", "name a site_vpn_clients entry of kind modality_gateway"))
                continue
            if not vpn_on:
                errors.append(_msg(f"{where}.vpn_gateway", "the modality is reached through the VPN but site_vpn.enabled is not true", "set site_vpn.enabled: true, or remove vpn_gateway if the modality connects directly"))
            if gateway_name in revoked:
                errors.append(_msg(f"{where}.vpn_gateway", f"gateway {gateway_name!r} is listed in site_vpn_revoked, so no path reaches this modality", "remove the modality, or un-revoke the gateway"))
            if host is not None and not any(host in subnet for subnet in _gateway_subnets(gateway)):
                errors.append(_msg(f"{where}.host", f"{host} is not inside the site_subnets of gateway {gateway_name!r}", "add its LAN to that gateway's site_subnets, or correct the host"))
            continue
        if host is None:
            continue
        if tunnel is not None and host in tunnel:
            owner = next((c for c in clients.values() if parse_address(c.get("address")) == host), None)
            if owner is not None and owner.get("kind") != "modality_gateway":
                what = f"{host} is the VPN address of {owner.get('kind')} {owner.get('name')!r}, so that person would be allowed to the DICOM port"
            elif owner is not None:
                what = f"{host} is the tunnel address of gateway {owner.get('name')!r}; Orthanc sees the modality's own LAN address, not the gateway's"
            else:
                what = f"{host} is inside site_vpn.network {tunnel} but no VPN client has it, so no path reaches it"
            errors.append(_msg(f"{where}.host", what, "give the modality's LAN address and set vpn_gateway to the gateway whose site_subnets hold it"))
            continue
        behind = [name for name, c in clients.items() if c.get("kind") == "modality_gateway" and any(host in s for s in _gateway_subnets(c))]
        if behind:
            errors.append(_msg(f"{where}.vpn_gateway", f"is missing, but {host} lies in the site_subnets of gateway {behind[0]!r}", f"set vpn_gateway: {behind[0]}"))
            continue
        if host in servers:
            errors.append(_msg(f"{where}.host", f"{host} is the server's own address (site_pacs_addresses)", "give the address the modality's associations come from"))
        elif host.is_loopback or host.is_unspecified or host.is_multicast or host.is_link_local or host.is_reserved:
            errors.append(_msg(f"{where}.host", f"{host} is a loopback, link-local, multicast or reserved address that no modality connects from", "give the address Orthanc sees the modality's associations come from"))
    return errors


def _aet_duplicates(facts: dict, context: dict) -> list[str]:
    """AE titles equal ignoring case are duplicates: peers may compare them without case."""
    modalities = facts.get("site_modalities") if isinstance(facts.get("site_modalities"), list) else []
    dicom = facts.get("site_dicom") if isinstance(facts.get("site_dicom"), dict) else {}
    taken = {}
    # Who holds each AE title, and which role variable to change instead of the modality, if any.
    variables: dict[str, str] = {}
    own = dicom.get("aet", DEFAULTS["dicom_aet"])
    if isinstance(own, str):
        taken[own.strip().upper()] = "site_dicom.aet (the server itself)"
    errors = []
    for key, what in (("selfcheck_aet", "the server's health check"), ("verify_aet", "verify.yml's self-test")):
        own_aet = context.get(key, DEFAULTS[key])
        variable = f"orthanc_{key}"
        error = aet_error(own_aet, variable)
        if error:
            errors.append(error)
        elif own_aet.strip().upper() in taken:
            errors.append(_msg(variable, f"{own_aet!r} is already used by {taken[own_aet.strip().upper()]} (AE titles are compared ignoring case)",
                               f"give {variable} an AE title of its own"))
        else:
            taken[own_aet.strip().upper()] = f"{what} ({variable})"
            variables[own_aet.strip().upper()] = variable
    for index, modality in enumerate(modalities):
        if not isinstance(modality, dict) or not isinstance(modality.get("aet"), str):
            continue
        where = f"{_item_path('site_modalities', modality, index)}.aet"
        token = modality["aet"].strip().upper()
        if token in taken:
            # The clash may come from the role variable (a default, or set by the admin): offer both fixes.
            other = f", or set {variables[token]} to another AE title" if token in variables else ""
            errors.append(_msg(where, f"{modality['aet']!r} is already used by {taken[token]} (AE titles are compared ignoring case)", f"give every modality its own AE title{other}"))
        else:
            taken[token] = f"modality {modality.get('name')!r}"
    return errors


def site_model_errors(facts: dict, context: dict | None = None) -> list[str]:
    """Check every ``site_*`` fact and the rules that tie them together; all problems at once.

    ``facts`` maps fact names to values (missing facts take the roles' defaults). ``context``
    carries the role settings cross-checks need (``CONTEXT_KEYS``: whether ``facts`` is the whole
    inventory, Orthanc's HTTP port, the SSH
    port, the health-check AE title, the VPN server's certificate name, whether the ACME terms are
    accepted); absent keys take ``DEFAULTS``. Returns plain lines ``path: what is wrong; how to fix``.
    """
    if not isinstance(facts, dict):
        return [_msg("site_*", "the site facts are not a mapping", "write them as YAML keys in group_vars/all/site.yml")]
    context = dict(context or {})
    errors: list[str] = []
    for fact in facts:
        if fact not in FACTS and str(fact).startswith("site_"):
            close = _closest(str(fact), FACTS)
            fix = f"did you mean {close}? rename it" if close else "remove it or see docs/inventory.md for the facts that exist"
            errors.append(_msg(str(fact), "unknown site fact (a typo?)" if close else "unknown site fact", fix))
    if "site_name" in facts:
        errors += [e for e in [name_error(facts["site_name"], "site_name")] if e]
    errors += _check_pacs(facts, context)
    errors += _check_sources(facts, "site_admin_sources")
    errors += _check_sources(facts, "site_https_sources")
    errors += _check_https_port(facts)
    errors += _check_dicom(facts)
    errors += _check_modalities(facts)
    errors += _check_vpn(facts)
    errors += _check_vpn_clients(facts, context)
    errors += _check_users(facts, context)
    errors += _check_certificates(facts, context)
    errors += _check_paths(facts)
    errors += _check_alerts(facts)
    errors += ssh_access_errors(facts)
    errors += _cross_network_errors(facts)
    errors += _port_clash_errors(facts, context)
    errors += _modality_path_errors(facts, context)
    errors += _aet_duplicates(facts, context)
    return list(dict.fromkeys(errors))


# --- Test clients (playbooks/verify.yml) ------------------------------------------------------

# Each test client's host variables (docs/inventory.md, "Test clients"): which site fact each one
# names entries of, and whether it holds one name or a list of names.
TEST_CLIENT_VARIABLES: dict[str, tuple[str, bool]] = {
    "test_vpn_client": ("site_vpn_clients", False),
    "test_modality": ("site_modalities", False),
    "test_users": ("site_users", True),
}


def _entry_names(facts: dict, fact: str) -> list[str] | None:
    """The names of ``fact``'s entries, or None when the fact is malformed (site_model_errors says why)."""
    entries = facts.get(fact)
    if entries is None:
        return []
    if not isinstance(entries, list):
        return None
    return [e["name"] for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)]


def verify_client_errors(clients: dict, facts: dict) -> list[str]:
    """Check the test clients' ``test_vpn_client``, ``test_modality`` and ``test_users`` against the site.

    ``clients`` maps each host of the ``test_clients`` group to its host variables (any mapping;
    only the three above are read, and a host with none of them is valid: it may stand for
    someone the site does not know, such as an outsider). ``facts`` are the site facts. Each
    variable must have its type (one name, or for ``test_users`` a list of names) and name an
    entry of its site fact: verify.yml would otherwise skip the path or the user it was meant to
    prove. Returns plain lines ``test_clients host <host>: what is wrong; how to fix``.
    """
    errors: list[str] = []
    for host, variables in clients.items():
        where = f"test_clients host {host}"
        for variable, (fact, many) in TEST_CLIENT_VARIABLES.items():
            if variable not in variables:
                continue
            value = variables[variable]
            known = _entry_names(facts, fact)
            example = known[0] if known else "<name>"
            if many and not isinstance(value, list):
                errors.append(_msg(where, f"{variable} is {_show(value)}, not a list", f"write a YAML list of {fact} names, e.g. {variable}: [{example}]"))
                continue
            for name in value if many else [value]:
                if not isinstance(name, str) or not name:
                    what = f"{variable} holds {_show(name)}, not a name" if many else f"{variable} is {_show(name)}, not one name"
                    shape = f"{variable}: [{example}]" if many else f"{variable}: {example}"
                    errors.append(_msg(where, what, f"write a {fact} name as text, e.g. {shape}"))
                elif known is None:
                    continue  # the fact itself is malformed: site_model_errors reports it
                elif not known:
                    errors.append(_msg(where, f"{variable} names {name!r}, but the site has no {fact}", f"add {name!r} to {fact}, or remove {variable} from the host"))
                elif name not in known:
                    close = _closest(name, known)
                    hint = f" (did you mean {close!r}?)" if close else ""
                    drop = f"remove it from {variable}" if many else f"remove {variable} from the host"
                    errors.append(_msg(where, f"{variable} names {name!r}, which is not in {fact}", f"use one of {', '.join(sorted(known))}{hint}, or {drop}"))
    return errors


def site_model_report(errors: Iterable[str], header: str = "The inventory is inconsistent; fix these site_* facts (docs/inventory.md):") -> str:
    """The messages as plain lines under a header, for an assert's ``fail_msg``."""
    lines = [str(e) for e in dict.fromkeys(errors or [])]
    return "\n".join([header] + [f"- {line}" for line in lines])


# --- Derived facts ----------------------------------------------------------------------------


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


def site_access(facts: dict) -> list[str]:
    """Who may connect from where, one plain line each, as the model grants it (docs/inventory.md).

    The same facts the firewall, nginx, OpenVPN and Orthanc are generated from; for the status
    command (playbooks/status.yml).
    """
    dicom = facts.get("site_dicom") or {}
    vpn = facts.get("site_vpn") or {}
    https_port = facts.get("site_https_port", DEFAULTS["https_port"])
    dicom_port = dicom.get("port", DEFAULTS["dicom_port"])
    revoked = set(facts.get("site_vpn_revoked") or [])
    lines = []
    for source in facts.get("site_admin_sources") or []:
        lines.append(f"admin source {source}: SSH 22, HTTPS {https_port}")
    for source in facts.get("site_https_sources") or []:
        lines.append(f"https source {source}: HTTPS {https_port}")
    for modality in facts.get("site_modalities") or []:
        path = f"through VPN gateway {modality['vpn_gateway']}" if modality.get("vpn_gateway") else "directly"
        tls = " with DICOM TLS" if modality.get("tls") and dicom.get("tls") else ""
        allowed = ", ".join(modality.get("allow") or []) or "nothing"
        lines.append(
            f"modality {modality['name']} (AE {modality['aet']}) from {modality['host']} {path}: "
            f"DICOM {dicom_port}{tls} ({allowed})"
        )
    if vpn.get("enabled"):
        sources = ", ".join(str(s) for s in vpn.get("sources") or ["any"])
        lines.append(f"VPN {vpn.get('port', DEFAULTS['vpn_port'])}/{vpn.get('proto', DEFAULTS['vpn_proto'])} from {sources}")
        reach = {"modality_gateway": f"DICOM {dicom_port}", "radiologist": f"HTTPS {https_port}", "admin": f"SSH 22, HTTPS {https_port}"}
        for client in facts.get("site_vpn_clients") or []:
            state = " REVOKED" if client.get("name") in revoked else ""
            lines.append(
                f"vpn {client.get('kind')} {client.get('name')} at {client.get('address')}{state}: "
                f"{'nothing' if state else reach.get(client.get('kind'), '?')}"
            )
    return lines


class FilterModule:
    """Expose the site model to Jinja."""

    def filters(self) -> dict:
        return {
            "site_model_errors": site_model_errors,
            "site_model_report": site_model_report,
            "site_test_client_errors": verify_client_errors,
            "site_https_allowed_sources": https_allowed_sources,
            "site_dicom_allowed_sources": dicom_allowed_sources,
            "site_vpn_server_address": vpn_server_address,
            "site_access": site_access,
        }
