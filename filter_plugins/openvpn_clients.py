"""OpenVPN client model: what the openvpn_easyrsa role derives from ``site_vpn_clients``.

Pure functions (no I/O): the role gathers the host's state once (the list of issued
certificates, the controller's existing profiles) and these functions decide what to write,
issue or revoke, so a re-run with 200 clients costs no per-client task. Addresses are typed in
the inventory, never allocated, so adding or removing a client never moves another one.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Any, Iterable

NAME_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
PROFILE_SUFFIX = ".ovpn"
DEFAULT_DATA_CIPHERS = "AES-256-GCM:CHACHA20-POLY1305"
PROFILE_HEADER = "# Managed by Ansible (orthanc-remote, role openvpn_easyrsa): re-run the playbook to regenerate."


def _network(network: Any) -> ipaddress.IPv4Network:
    """``site_vpn.network`` as an IPv4 network (OpenVPN's ``server`` directive is IPv4 only)."""
    return ipaddress.IPv4Network(str(network), strict=True)


def _route(cidr: Any) -> str:
    """A CIDR as OpenVPN writes it: ``address netmask``."""
    net = ipaddress.IPv4Network(str(cidr), strict=False)
    return f"{net.network_address} {net.netmask}"


def _names(items: Iterable[Any] | None) -> set[str]:
    return {str(item) for item in (items or [])}


def openvpn_server_address(network: Any) -> str:
    """The server's tunnel address: the first host address of ``site_vpn.network``."""
    return str(next(_network(network).hosts()))


def openvpn_server_network(network: Any) -> str:
    """``site_vpn.network`` in the ``network netmask`` form of the ``server`` directive."""
    return _route(_network(network))


def openvpn_active_clients(clients: Iterable[dict] | None, revoked: Iterable[str] | None = None) -> list[dict]:
    """The clients that may connect: listed in the inventory and not listed for revocation."""
    revoked_names = _names(revoked)
    return [c for c in (clients or []) if c.get("name") not in revoked_names]


def openvpn_ccd(clients: Iterable[dict] | None, network: Any, revoked: Iterable[str] | None = None) -> dict[str, str]:
    """Client-config-dir contents per active client: its static address and, for gateways, iroutes.

    ``ifconfig-push`` gives each client the address typed in the inventory (topology subnet:
    address and netmask of the tunnel network); ``iroute`` tells OpenVPN which site subnets live
    behind a modality gateway, so their traffic is routed with its source address kept.
    """
    netmask = _network(network).netmask
    result: dict[str, str] = {}
    for client in openvpn_active_clients(clients, revoked):
        lines = [f"ifconfig-push {client['address']} {netmask}"]
        if client.get("kind") == "modality_gateway":
            lines += [f"iroute {_route(s)}" for s in _sorted_subnets(client.get("site_subnets") or [])]
        result[client["name"]] = "\n".join(lines) + "\n"
    return result


def _sorted_subnets(subnets: Iterable[Any]) -> list[ipaddress.IPv4Network]:
    return sorted({ipaddress.IPv4Network(str(s), strict=False) for s in subnets})


def openvpn_server_routes(clients: Iterable[dict] | None, revoked: Iterable[str] | None = None) -> list[str]:
    """Server ``route`` entries (``address netmask``): every active gateway's site subnets, sorted."""
    subnets: list[Any] = []
    for client in openvpn_active_clients(clients, revoked):
        if client.get("kind") == "modality_gateway":
            subnets += list(client.get("site_subnets") or [])
    return [_route(s) for s in _sorted_subnets(subnets)]


def openvpn_push_options(full_tunnel: bool = False, extra_routes: Iterable[str] | None = None) -> list[str]:
    """What the server pushes (without the ``push`` keyword and quotes).

    Split tunnel (default): nothing but optional extra routes. The PACS is the server's own tunnel
    address, which every client reaches through the tunnel network route that topology subnet
    installs, so no other route is needed. Full tunnel: the default route through the VPN.
    """
    options = [f"route {_route(r)}" for r in (extra_routes or [])]
    if full_tunnel:
        options.append("redirect-gateway def1")
    return options


def openvpn_issued_names(paths: Iterable[Any] | None, server_cn: str) -> list[str]:
    """Client names from the paths (or file names) of ``pki/issued/*.crt``; the server's is left out."""
    names = set()
    for path in paths or []:
        base = str(path).rsplit("/", 1)[-1]
        if base.endswith(".crt") and base[: -len(".crt")] != server_cn:
            names.add(base[: -len(".crt")])
    return sorted(names)


def openvpn_clients_to_issue(
    clients: Iterable[dict] | None, issued: Iterable[str] | None, revoked: Iterable[str] | None = None
) -> list[str]:
    """Active clients that have no certificate yet (in inventory order)."""
    have = _names(issued)
    return [c["name"] for c in openvpn_active_clients(clients, revoked) if c["name"] not in have]


def openvpn_clients_to_revoke(
    clients: Iterable[dict] | None, issued: Iterable[str] | None, revoked: Iterable[str] | None = None
) -> list[str]:
    """Issued certificates to revoke: their client left the inventory, or is listed for revocation."""
    active = {c["name"] for c in openvpn_active_clients(clients, revoked)}
    return sorted(_names(issued) - active)


def openvpn_profile_inputs(
    clients: Iterable[dict] | None,
    revoked: Iterable[str] | None,
    remote: str,
    port: int = 1194,
    proto: str = "udp",
    server_cn: str = "server",
    data_ciphers: str = DEFAULT_DATA_CIPHERS,
) -> dict[str, dict]:
    """What each active client's profile is made of, apart from its key material."""
    return {
        c["name"]: {
            "name": c["name"],
            "kind": c.get("kind"),
            "address": str(c.get("address")),
            "remote": str(remote),
            "port": int(port),
            "proto": str(proto),
            "server_cn": server_cn,
            "data_ciphers": data_ciphers,
        }
        for c in openvpn_active_clients(clients, revoked)
    }


def _pem(text: str) -> str:
    """Keep only the PEM block(s) of ``text`` (easy-rsa prepends a text dump to certificates)."""
    blocks = re.findall(r"-----BEGIN [A-Z0-9 ]+-----.*?-----END [A-Z0-9 ]+-----", text or "", re.S)
    return "\n".join(blocks) + "\n" if blocks else (text or "").strip() + "\n"


def openvpn_profile(inputs: dict, material: dict, header: str = PROFILE_HEADER) -> str:
    """An inline ``.ovpn`` profile from ``inputs`` (openvpn_profile_inputs) and key ``material``.

    ``material`` holds ``ca``, ``tls_crypt``, ``cert`` and ``key`` (PEM text). The client checks the
    server's certificate purpose and name, offers the same AEAD ciphers as the server and never
    compresses.
    """
    proto = inputs["proto"]
    lines = [line for line in header.splitlines()]
    lines += [
        f"# OpenVPN profile for {inputs['name']} ({inputs['kind']}), tunnel address {inputs['address']}",
        "client",
        "dev tun",
        f"proto {proto}",
        f"remote {inputs['remote']} {inputs['port']}",
        "resolv-retry infinite",
        "nobind",
        "persist-key",
        "persist-tun",
        "remote-cert-tls server",
        f"verify-x509-name {inputs['server_cn']} name",
        f"data-ciphers {inputs['data_ciphers']}",
        "tls-version-min 1.2",
        "verb 3",
    ]
    if proto.startswith("udp"):
        lines.append("explicit-exit-notify 1")
    for tag, key in (("ca", "ca"), ("cert", "cert"), ("key", "key"), ("tls-crypt", "tls_crypt")):
        body = material[key] if key == "tls_crypt" else _pem(material[key])
        lines += [f"<{tag}>", body.strip(), f"</{tag}>"]
    return "\n".join(lines) + "\n"


def openvpn_profiles(inputs: dict[str, dict], export: dict, header: str = PROFILE_HEADER) -> dict[str, str]:
    """Every active client's profile text, keyed by name; clients without exported material are left out.

    ``export`` is what the role's helper prints: ``{ca, tls_crypt, clients: {name: {cert, key}}}``.
    """
    result = {}
    for name, item in inputs.items():
        pair = (export.get("clients") or {}).get(name)
        if not pair:
            continue
        material = {"ca": export["ca"], "tls_crypt": export["tls_crypt"], "cert": pair["cert"], "key": pair["key"]}
        result[name] = openvpn_profile(item, material, header)
    return result


def _profile_name(path: Any) -> str | None:
    base = str(path).rsplit("/", 1)[-1]
    return base[: -len(PROFILE_SUFFIX)] if base.endswith(PROFILE_SUFFIX) else None


def openvpn_profiles_to_write(profiles: dict[str, str], existing: Iterable[dict] | None, mode: str = "0600") -> list[str]:
    """Names whose controller profile is missing, differs (sha1) or has the wrong mode.

    ``existing`` is ``ansible.builtin.find``'s ``files`` (with ``get_checksum: true``).
    """
    have = {_profile_name(f.get("path")): f for f in (existing or [])}
    stale = []
    for name, text in sorted(profiles.items()):
        found = have.get(name)
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()
        if not found or found.get("checksum") != digest or str(found.get("mode", mode)) != mode:
            stale.append(name)
    return stale


def openvpn_profiles_to_remove(profiles: dict[str, str], existing: Iterable[dict] | None) -> list[str]:
    """Paths of controller profiles whose client is no longer active (removed or revoked)."""
    return sorted(
        str(f["path"])
        for f in (existing or [])
        if _profile_name(f.get("path")) is not None and _profile_name(f.get("path")) not in profiles
    )


def openvpn_errors(remote: Any = None) -> list[str]:
    """The check the role needs beyond ``site_model_errors`` (which holds every rule about the
    ``site_vpn*`` facts): clients need an address to connect to."""
    if not remote:
        return [
            "site_pacs_fqdn: VPN clients need an address to connect to and neither site_pacs_fqdn nor "
            "site_pacs_addresses is set; set site_pacs_fqdn (or openvpn_easyrsa_remote)"
        ]
    return []


class FilterModule:
    """Expose the OpenVPN client model to Jinja."""

    def filters(self) -> dict:
        return {
            "openvpn_server_address": openvpn_server_address,
            "openvpn_server_network": openvpn_server_network,
            "openvpn_active_clients": openvpn_active_clients,
            "openvpn_ccd": openvpn_ccd,
            "openvpn_server_routes": openvpn_server_routes,
            "openvpn_push_options": openvpn_push_options,
            "openvpn_issued_names": openvpn_issued_names,
            "openvpn_clients_to_issue": openvpn_clients_to_issue,
            "openvpn_clients_to_revoke": openvpn_clients_to_revoke,
            "openvpn_profile_inputs": openvpn_profile_inputs,
            "openvpn_profiles": openvpn_profiles,
            "openvpn_profiles_to_write": openvpn_profiles_to_write,
            "openvpn_profiles_to_remove": openvpn_profiles_to_remove,
            "openvpn_errors": openvpn_errors,
        }
