"""The firewall rules of a site, computed from the site model, and the diff against ufw's state.

``ufw_rules_desired`` turns the site facts (and the allow-lists derived once in
``site_model.py``, passed in by the role) into the full list of ufw rules the PACS host must
have. ``ufw_rules_parse`` reads ufw's own state (the ``### tuple ###`` lines of
``/etc/ufw/user.rules`` and ``user6.rules``) and ``ufw_rules_plan`` compares the two: which
``ufw`` commands add the missing rules, which delete rules this role once created and no longer
wants, and which rules nobody manages. Every function is pure; the ``FilterModule`` at the
bottom only exposes them to Jinja.

A rule is ``{action, port, proto, from, to, interface, comment}``: ``action`` is ``allow`` or
``limit`` (ufw's rate limit, used for SSH), ``from`` a CIDR, a single address or ``any``,
``interface`` ``None`` or the VPN interface (``in on tun0`` rules).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable

ANY = "any"
DEFAULT_PREFIX = "orthanc-remote"
V4_ANY = "0.0.0.0/0"
V6_ANY = "::/0"


def normalise_source(source: Any) -> str:
    """Return ``source`` the way ufw writes it: ``any``, ``a.b.c.d`` for a /32, else a CIDR.

    ufw drops host bits and the ``/32`` (``/128``) of a single address; comparing in that form
    makes the desired rules and the parsed state agree.
    """
    text = str(source).strip()
    if text.lower() in (ANY, "anywhere"):
        return ANY
    network = ipaddress.ip_network(text, strict=False)
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


POLICIES = ("DROP", "REJECT", "ACCEPT")
LOGGING_LEVELS = ("off", "low", "medium", "high", "full")


def input_errors(settings: dict) -> list[str]:
    """Why the role's own variables (not site facts: site_model_errors checks those) are unusable.

    ``settings`` holds the ``ufw_firewall_*`` values under their names without the prefix.
    Each message is one plain line ``variable: what is wrong; how to fix``.
    """
    errors = []
    if settings.get("unmanaged_rules") not in ("report", "remove"):
        errors.append(f"ufw_firewall_unmanaged_rules: {settings.get('unmanaged_rules')!r} is not a choice; use report or remove")
    for key in ("default_input_policy", "default_output_policy", "default_forward_policy"):
        if settings.get(key) not in POLICIES:
            errors.append(f"ufw_firewall_{key}: {settings.get(key)!r} is not a policy; use {', '.join(POLICIES)}")
    if settings.get("logging") not in LOGGING_LEVELS:
        errors.append(f"ufw_firewall_logging: {settings.get('logging')!r} is not a level; use {', '.join(LOGGING_LEVELS)}")
    ipt_sysctl = settings.get("ipt_sysctl", "")
    if ipt_sysctl and not re.match(r"^/[A-Za-z0-9_./-]+$", str(ipt_sysctl)):
        errors.append(f"ufw_firewall_ipt_sysctl: {ipt_sysctl!r} is not an absolute path; give one, or leave it empty")
    if not re.match(r"^[A-Za-z0-9_.-]{1,15}$", str(settings.get("vpn_interface", ""))):
        errors.append(f"ufw_firewall_vpn_interface: {settings.get('vpn_interface')!r} is not an interface name; use e.g. tun0")
    if not re.match(r"^[a-z0-9][a-z0-9-]*$", str(settings.get("comment_prefix", ""))):
        errors.append(f"ufw_firewall_comment_prefix: {settings.get('comment_prefix')!r} is not usable; use lowercase letters, digits and dashes")
    for key in ("ssh_port", "https_port"):
        value = settings.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            errors.append(f"ufw_firewall_{key}: {value!r} is not a port number; use a whole number from 1 to 65535")
    sysctl = settings.get("sysctl_settings")
    if not isinstance(sysctl, dict):
        errors.append("ufw_firewall_sysctl_settings: is not a mapping; write key: value pairs (e.g. net/ipv4/ip_forward: 1)")
    else:
        for key in sysctl:
            if not re.match(r"^[a-z0-9_]+([./][a-z0-9_-]+)+$", str(key)):
                errors.append(f"ufw_firewall_sysctl_settings: {key!r} is not a sysctl key; write e.g. net.ipv4.ip_forward")
    return errors


def _family(source: str) -> int:
    """4 or 6 for a normalised source other than ``any``."""
    return ipaddress.ip_network(source, strict=False).version


def _covers(rule_source: str, address: str) -> bool:
    """True when ``address`` (a single IP) lies inside ``rule_source`` (CIDR or ``any``)."""
    if rule_source == ANY:
        return True
    network = ipaddress.ip_network(rule_source, strict=False)
    ip = ipaddress.ip_address(address)
    return ip.version == network.version and ip in network


def _rule(action: str, port: int, proto: str, source: str, comment: str, interface: str | None = None) -> dict:
    return {
        "action": action,
        "port": int(port),
        "proto": proto,
        "from": normalise_source(source),
        "to": ANY,
        "interface": interface,
        "comment": comment,
    }


def _vpn_proto(proto: Any) -> str:
    """OpenVPN's ``proto`` (udp, tcp, udp4, tcp-server, ...) as the transport ufw filters."""
    return "tcp" if str(proto or "udp").lower().startswith("tcp") else "udp"


def rule_key(rule: dict) -> tuple:
    """What makes two rules the same rule for ufw: everything but the action and the comment.

    ufw itself matches this way: adding a rule that differs only in action or comment
    updates the existing one in place ("Rule updated").
    """
    return (rule["port"], rule["proto"], rule["from"], rule.get("to", ANY), rule.get("interface"))


def desired_rules(model: dict) -> list[dict]:
    """The full list of rules for a site, sorted and without duplicates.

    ``model`` keys (all optional; an empty model gives no rule at all):

    - ``admin_sources``: CIDRs the IT team works from: SSH (rate-limited with ``limit``).
    - ``https_allowed_sources``: ``site_https_allowed_sources`` (admin + HTTPS sources and the
      radiologist/admin VPN addresses): HTTPS 443; VPN addresses only ``in on`` the VPN interface.
    - ``dicom_allowed_sources``: ``site_dicom_allowed_sources`` (``[{source, comment}]``): the
      DICOM port; a VPN gateway's address and the hosts of the modalities behind it only ``in on``
      the VPN interface, direct modalities on any interface.
    - ``modalities``, ``vpn`` (``{enabled, port, proto, sources}``), ``vpn_clients``: the site facts.
    - ``dicom_port`` (4242), ``https_port`` (443), ``ssh_port`` (22), ``acme`` (False: when True,
      HTTP 80 is open to anyone for http-01 challenges), ``vpn_interface`` (``tun0``),
      ``comment_prefix`` (``orthanc-remote``), ``controller_source`` (the address Ansible
      connects from: an SSH rule is added for it when no other SSH rule covers it arriving on
      ``controller_interface``, None meaning any interface).
    """
    prefix = model.get("comment_prefix") or DEFAULT_PREFIX
    vpn = model.get("vpn") or {}
    vpn_enabled = bool(vpn.get("enabled", False))
    iface = model.get("vpn_interface") or "tun0"
    ssh_port = int(model.get("ssh_port", 22))
    https_port = int(model.get("https_port", 443))
    dicom_port = int(model.get("dicom_port", 4242))
    clients = [c for c in (model.get("vpn_clients") or []) if isinstance(c, dict)]
    modalities = [m for m in (model.get("modalities") or []) if isinstance(m, dict)]

    def client_addresses(*kinds: str) -> set[str]:
        return {normalise_source(c["address"]) for c in clients if c.get("kind") in kinds and c.get("address")}

    gateway_addresses = client_addresses("modality_gateway")
    routed_hosts = {normalise_source(m["host"]) for m in modalities if m.get("vpn_gateway") and m.get("host")}
    people_addresses = client_addresses("radiologist", "admin")

    rules: list[dict] = []
    for source in model.get("admin_sources") or []:
        rules.append(_rule("limit", ssh_port, "tcp", source, f"{prefix}: ssh from admin source"))
    if vpn_enabled:
        for client in clients:
            if client.get("kind") == "admin":
                rules.append(
                    _rule("limit", ssh_port, "tcp", client["address"], f"{prefix}: ssh from vpn admin {client['name']}", iface)
                )
    controller = model.get("controller_source")
    if controller:
        address = normalise_source(controller)
        if not rule_covers(rules, address, ssh_port, "tcp", model.get("controller_interface")):
            rules.append(_rule("limit", ssh_port, "tcp", address, f"{prefix}: ssh from the ansible controller (lockout guard)"))

    for source in model.get("https_allowed_sources") or []:
        source = normalise_source(source)
        if source in people_addresses:
            if vpn_enabled:
                rules.append(_rule("allow", https_port, "tcp", source, f"{prefix}: https from vpn client", iface))
        else:
            rules.append(_rule("allow", https_port, "tcp", source, f"{prefix}: https"))
    if model.get("acme"):
        rules.append(_rule("allow", 80, "tcp", ANY, f"{prefix}: http for acme http-01 challenges"))

    for row in model.get("dicom_allowed_sources") or []:
        source = normalise_source(row["source"])
        comment = f"{prefix}: dicom from {row.get('comment') or source}"
        if source in gateway_addresses or source in routed_hosts:
            if vpn_enabled:
                rules.append(_rule("allow", dicom_port, "tcp", source, comment, iface))
        else:
            rules.append(_rule("allow", dicom_port, "tcp", source, comment))

    if vpn_enabled:
        sources = vpn.get("sources")
        for source in sources if sources else [ANY]:
            rules.append(
                _rule("allow", int(vpn.get("port", 1194)), _vpn_proto(vpn.get("proto")), source, f"{prefix}: openvpn")
            )

    unique: dict[tuple, dict] = {}
    for rule in rules:
        unique.setdefault(rule_key(rule), rule)
    return sorted(unique.values(), key=_sort_key)


def _sort_key(rule: dict) -> tuple:
    source = rule["from"]
    family, network = (0, "") if source == ANY else (_family(source), ipaddress.ip_network(source, strict=False))
    return (rule["port"], rule["proto"], rule.get("interface") or "", family, str(network) if network else "")


def rule_covers(rules: Iterable[dict], source: str, port: int, proto: str = "tcp", interface: str | None = None) -> bool:
    """True when some rule lets ``source`` (one address) reach ``port``/``proto`` arriving on ``interface``.

    A rule without an interface matches on every interface; an ``in on X`` rule only when the
    traffic arrives on X.
    """
    for rule in rules or []:
        if int(rule["port"]) != int(port) or rule["proto"] not in (proto, ANY):
            continue
        if rule.get("interface") not in (None, interface):
            continue
        if rule.get("action") not in ("allow", "limit"):
            continue
        if _covers(rule["from"], source):
            return True
    return False


def controller_connection(ssh_connection: str | None, vpn_network: str | None = None, vpn_interface: str = "tun0") -> dict:
    """Parse ``$SSH_CONNECTION`` (client_ip client_port server_ip server_port) of Ansible's session.

    Returns ``{source, port, interface}``; ``interface`` is the VPN interface when the server
    side address is inside the VPN network (Ansible came through the tunnel), else None. Returns
    ``{}`` when the value is empty or malformed.
    """
    fields = (ssh_connection or "").split()
    if len(fields) != 4:
        return {}
    client, _, server, server_port = fields
    try:
        client_ip = ipaddress.ip_address(client.split("%")[0])
        server_ip = ipaddress.ip_address(server.split("%")[0])
        port = int(server_port)
    except ValueError:
        return {}
    if getattr(client_ip, "ipv4_mapped", None):
        client_ip = client_ip.ipv4_mapped
    interface = None
    if vpn_network:
        network = ipaddress.ip_network(str(vpn_network), strict=False)
        if server_ip.version == network.version and server_ip in network:
            interface = vpn_interface
    return {"source": str(client_ip), "port": port, "interface": interface}


# --- ufw state ------------------------------------------------------------------------------

def rule_tuples(rule: dict, ipv6: bool = True) -> list[dict]:
    """The ufw tuples (one per IP family) a desired rule becomes in user.rules / user6.rules."""
    base = {
        "action": rule["action"],
        "logtype": "",
        "proto": rule["proto"],
        "dport": str(rule["port"]),
        "sport": ANY,
        "dapp": "",
        "sapp": "",
        "direction": "in",
        "iface_in": rule.get("interface") or "",
        "iface_out": "",
        "forward": False,
        "comment": rule.get("comment") or "",
    }
    source = normalise_source(rule["from"])
    families = [4, 6] if source == ANY else [_family(source)]
    tuples = []
    for family in families:
        if family == 6 and not ipv6:
            continue
        any_address = V6_ANY if family == 6 else V4_ANY
        tuples.append({**base, "src": any_address if source == ANY else source, "dst": any_address, "v6": family == 6})
    return tuples


def parse_tuple(line: str, v6: bool | None = None) -> dict | None:
    """Parse one ``### tuple ###`` line of ufw's user rules files; None if it is not one.

    ``v6``: whether the line comes from ``user6.rules``; None to tell from its addresses (an
    IPv6 tuple always carries IPv6 source and destination, at least ``::/0``).
    """
    text = line.strip()
    marker = "### tuple ###"
    if not text.startswith(marker):
        return None
    text = text[len(marker):].strip()
    comment = ""
    if " comment=" in text:
        text, hexed = text.split(" comment=", 1)
        try:
            comment = bytes.fromhex(hexed.strip()).decode("utf-8", "replace")
        except ValueError:
            comment = hexed.strip()
    fields = text.split()
    if len(fields) not in (7, 9):
        return None
    action, forward = fields[0], False
    if action.startswith("route:"):
        forward, action = True, action.split(":", 1)[1]
    logtype = ""
    if "_" in action:
        action, logtype = action.split("_", 1)
    dapp = sapp = ""
    if len(fields) == 9:
        dapp = "" if fields[6] == "-" else fields[6].replace("%20", " ")
        sapp = "" if fields[7] == "-" else fields[7].replace("%20", " ")
    if v6 is None:
        v6 = ":" in fields[3] or ":" in fields[5]
    ifaces = fields[-1]
    direction, iface_in, iface_out = ifaces.split("_", 1)[0].split("!")[0], "", ""
    if "!" in ifaces:
        first, second = ifaces.split("!", 1)
        iface_in, iface_out = first.partition("_")[2], second.partition("_")[2]
    elif ifaces.startswith("in_"):
        iface_in = ifaces.partition("_")[2]
    elif ifaces.startswith("out_"):
        iface_out = ifaces.partition("_")[2]
    return {
        "action": action,
        "logtype": logtype,
        "proto": fields[1],
        "dport": fields[2],
        "dst": fields[3],
        "sport": fields[4],
        "src": fields[5],
        "dapp": dapp,
        "sapp": sapp,
        "direction": direction,
        "iface_in": iface_in,
        "iface_out": iface_out,
        "forward": forward,
        "comment": comment,
        "v6": v6,
    }


def parse_rules(user_rules: str | None, user6_rules: str | None = None) -> list[dict]:
    """All tuples of ufw's ``user.rules`` and ``user6.rules`` contents, in file order.

    With one argument (both files concatenated), each tuple's family comes from its addresses.
    """
    tuples = []
    sources = [(user_rules or "", None)] if user6_rules is None else [(user_rules or "", False), (user6_rules, True)]
    for text, v6 in sources:
        for line in text.splitlines():
            parsed = parse_tuple(line, v6)
            if parsed is not None:
                tuples.append(parsed)
    return tuples


_MATCH_FIELDS = ("proto", "dport", "dst", "sport", "src", "dapp", "sapp", "direction", "iface_in", "iface_out", "forward", "v6")


def _match_key(tupl: dict) -> tuple:
    """ufw's notion of "the same rule": all but action, log type and comment."""
    return tuple(tupl[f] for f in _MATCH_FIELDS)


def _full_key(tupl: dict) -> tuple:
    return _match_key(tupl) + (tupl["action"], tupl["logtype"], tupl["comment"])


def rule_command(rule: dict) -> list[str]:
    """The ``ufw`` argv that adds (or updates in place) a desired rule."""
    argv = ["ufw", rule["action"]]
    if rule.get("interface"):
        argv += ["in", "on", rule["interface"]]
    argv += ["proto", rule["proto"], "from", rule["from"], "to", rule.get("to", ANY), "port", str(rule["port"])]
    if rule.get("comment"):
        argv += ["comment", rule["comment"]]
    return argv


def delete_command(tupl: dict) -> list[str]:
    """The ``ufw`` argv that deletes exactly this tuple (one IP family) from ufw's state."""
    argv = ["ufw"] + (["route"] if tupl["forward"] else []) + ["delete", tupl["action"]]
    if tupl["logtype"]:
        argv.append(tupl["logtype"])
    if tupl["iface_in"]:
        argv += ["in", "on", tupl["iface_in"]]
    if tupl["iface_out"]:
        argv += ["out", "on", tupl["iface_out"]]
    if not tupl["iface_in"] and not tupl["iface_out"] and tupl["direction"] == "out":
        argv.append("out")
    if tupl["proto"] != ANY and not (tupl["dapp"] or tupl["sapp"]):
        argv += ["proto", tupl["proto"]]
    argv += ["from", tupl["src"]]
    if tupl["sapp"]:
        argv += ["app", tupl["sapp"]]
    elif tupl["sport"] != ANY:
        argv += ["port", tupl["sport"]]
    argv += ["to", tupl["dst"]]
    if tupl["dapp"]:
        argv += ["app", tupl["dapp"]]
    elif tupl["dport"] != ANY:
        argv += ["port", tupl["dport"]]
    return argv


def describe_tuple(tupl: dict) -> str:
    """A one-line human description of a ufw tuple, for reports."""
    parts = [("route " if tupl["forward"] else "") + tupl["action"] + (f" {tupl['logtype']}" if tupl["logtype"] else "")]
    parts.append(tupl["direction"] + (f" on {tupl['iface_in'] or tupl['iface_out']}" if tupl["iface_in"] or tupl["iface_out"] else ""))
    parts.append(f"proto {tupl['proto']} from {tupl['src']}" + (f" port {tupl['sport']}" if tupl["sport"] != ANY else ""))
    parts.append(f"to {tupl['dst']}" + (f" port {tupl['dport']}" if tupl["dport"] != ANY else ""))
    if tupl["dapp"] or tupl["sapp"]:
        parts.append(f"app {tupl['dapp'] or tupl['sapp']}")
    if tupl["comment"]:
        parts.append(f"({tupl['comment']})")
    return " ".join(parts) + (" [v6]" if tupl["v6"] else "")


def plan(
    desired: Iterable[dict],
    current: Iterable[dict],
    comment_prefix: str = DEFAULT_PREFIX,
    ipv6: bool = True,
    foreign_prefixes: Iterable[str] = (),
) -> dict:
    """Compare desired rules with ufw's parsed tuples.

    Returns ``{add, delete, unmanaged}``:

    - ``add``: argv lists (``ufw allow ...``) for desired rules missing from ufw, or present with
      another action or comment (ufw updates those in place, so SSH is never briefly absent).
    - ``delete``: argv lists for tuples this role created earlier (comment starts with
      ``comment_prefix:``) that are no longer desired and that no ``add`` replaces.
    - ``unmanaged``: ``[{rule, delete}]`` for every other tuple nobody asked for: the role reports
      them or deletes them (``ufw_firewall_unmanaged_rules``).

    Tuples whose comment starts with one of ``foreign_prefixes`` belong to another tool (fail2ban's
    ufw action comments its bans "by Fail2Ban after ..."): they are left alone, never reported.
    """
    current = list(current)
    have = {_full_key(t) for t in current}
    add: list[list[str]] = []
    wanted_match: set[tuple] = set()
    wanted_full: set[tuple] = set()
    for rule in desired:
        tuples = rule_tuples(rule, ipv6)
        wanted_match |= {_match_key(t) for t in tuples}
        wanted_full |= {_full_key(t) for t in tuples}
        if any(_full_key(t) not in have for t in tuples):
            add.append(rule_command(rule))
    delete: list[list[str]] = []
    unmanaged: list[dict] = []
    marker = f"{comment_prefix}:"
    foreign = tuple(p for p in foreign_prefixes or () if p)
    for tupl in current:
        if _full_key(tupl) in wanted_full or _match_key(tupl) in wanted_match:
            continue
        if foreign and tupl["comment"].startswith(foreign):
            continue
        if tupl["comment"].startswith(marker):
            delete.append(delete_command(tupl))
        else:
            unmanaged.append({"rule": describe_tuple(tupl), "delete": delete_command(tupl)})
    return {"add": add, "delete": delete, "unmanaged": unmanaged}


class FilterModule:
    """Expose the ufw rule computation to Jinja."""

    def filters(self) -> dict:
        return {
            "ufw_rules_desired": desired_rules,
            "ufw_rules_parse": parse_rules,
            "ufw_rules_plan": plan,
            "ufw_rules_covers": rule_covers,
            "ufw_rules_controller": controller_connection,
            "ufw_rules_command": rule_command,
            "ufw_rules_input_errors": input_errors,
        }
