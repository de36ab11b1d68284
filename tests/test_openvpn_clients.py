"""Tests for filter_plugins/openvpn_clients.py (the openvpn_easyrsa role's client model)."""

import hashlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import openvpn_clients as oc
import site_model

NETWORK = "10.8.0.0/24"
CLIENTS = [
    {"name": "site-a-gw", "kind": "modality_gateway", "address": "10.8.0.10", "site_subnets": ["192.168.50.0/24"]},
    {"name": "dr-smith", "kind": "radiologist", "address": "10.8.0.20"},
    {"name": "it-admin", "kind": "admin", "address": "10.8.0.30"},
]
EXPORT = {
    "ca": "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n",
    "tls_crypt": "-----BEGIN OpenVPN Static key V1-----\nTC\n-----END OpenVPN Static key V1-----\n",
    "clients": {
        name: {
            "cert": f"Certificate:\n    Data: text dump\n-----BEGIN CERTIFICATE-----\n{name}\n-----END CERTIFICATE-----\n",
            "key": f"-----BEGIN PRIVATE KEY-----\n{name}-key\n-----END PRIVATE KEY-----\n",
        }
        for name in ("site-a-gw", "dr-smith", "it-admin")
    },
}


def test_server_address_and_network():
    assert oc.openvpn_server_address(NETWORK) == "10.8.0.1"
    assert oc.openvpn_server_network("10.9.8.0/22") == "10.9.8.0 255.255.252.0"


def test_ccd_static_address_and_iroutes():
    ccd = oc.openvpn_ccd(CLIENTS, NETWORK)
    assert ccd == {
        "site-a-gw": "ifconfig-push 10.8.0.10 255.255.255.0\niroute 192.168.50.0 255.255.255.0\n",
        "dr-smith": "ifconfig-push 10.8.0.20 255.255.255.0\n",
        "it-admin": "ifconfig-push 10.8.0.30 255.255.255.0\n",
    }


def test_ccd_leaves_out_revoked_clients():
    assert set(oc.openvpn_ccd(CLIENTS, NETWORK, ["dr-smith"])) == {"site-a-gw", "it-admin"}


def test_only_gateways_get_iroutes_and_server_routes():
    clients = CLIENTS + [{"name": "b-gw", "kind": "modality_gateway", "address": "10.8.0.11",
                          "site_subnets": ["10.20.0.0/16", "192.168.50.0/24"]}]
    assert oc.openvpn_server_routes(clients) == ["10.20.0.0 255.255.0.0", "192.168.50.0 255.255.255.0"]
    assert oc.openvpn_server_routes(clients, ["site-a-gw", "b-gw"]) == []
    assert "iroute" not in oc.openvpn_ccd(clients, NETWORK)["dr-smith"]


def test_push_split_and_full_tunnel():
    assert oc.openvpn_push_options(False) == []
    assert oc.openvpn_push_options(True) == ["redirect-gateway def1"]
    assert oc.openvpn_push_options(False, ["172.16.5.4/32"]) == ["route 172.16.5.4 255.255.255.255"]


def test_issue_and_revoke():
    issued = oc.openvpn_issued_names(
        ["/etc/openvpn/server/pki/issued/server.crt", "/x/issued/dr-smith.crt", "/x/issued/old-laptop.crt", "/x/issued/notes.txt"],
        "server",
    )
    assert issued == ["dr-smith", "old-laptop"]
    assert oc.openvpn_clients_to_issue(CLIENTS, issued) == ["site-a-gw", "it-admin"]
    assert oc.openvpn_clients_to_revoke(CLIENTS, issued) == ["old-laptop"]
    # Listed for revocation while still in the inventory: revoked, and never re-issued.
    assert oc.openvpn_clients_to_revoke(CLIENTS, issued, ["dr-smith"]) == ["dr-smith", "old-laptop"]
    assert oc.openvpn_clients_to_issue(CLIENTS, [], ["dr-smith"]) == ["site-a-gw", "it-admin"]
    # Revoked and gone from issued/: nothing more to do.
    assert oc.openvpn_clients_to_revoke(CLIENTS, ["site-a-gw", "it-admin"], ["dr-smith"]) == []


def _profiles(remote="pacs.example.org"):
    inputs = oc.openvpn_profile_inputs(CLIENTS, ["it-admin"], remote, 1194, "udp", "server")
    return oc.openvpn_profiles(inputs, EXPORT)


def test_profile_contents():
    profiles = _profiles()
    assert set(profiles) == {"site-a-gw", "dr-smith"}
    text = profiles["dr-smith"]
    assert "remote pacs.example.org 1194\n" in text
    assert "verify-x509-name server name\n" in text and "remote-cert-tls server\n" in text
    assert "data-ciphers AES-256-GCM:CHACHA20-POLY1305\n" in text and "tls-version-min 1.2\n" in text
    assert "<cert>\n-----BEGIN CERTIFICATE-----\ndr-smith\n-----END CERTIFICATE-----\n</cert>" in text
    assert "text dump" not in text  # only the PEM block of easy-rsa's certificate file
    assert "<tls-crypt>\n-----BEGIN OpenVPN Static key V1-----" in text
    for unsafe in ("comp", "cipher AES-256-CBC", "auth-user-pass", "redirect-gateway"):
        assert unsafe not in text
    assert "explicit-exit-notify" not in oc.openvpn_profile(
        dict(oc.openvpn_profile_inputs(CLIENTS, [], "h", 443, "tcp")["dr-smith"]),
        {"ca": "c", "cert": "c", "key": "k", "tls_crypt": "t"},
    )


def test_profiles_without_material_are_left_out():
    inputs = oc.openvpn_profile_inputs(CLIENTS, [], "h")
    export = dict(EXPORT, clients={"dr-smith": EXPORT["clients"]["dr-smith"]})
    assert set(oc.openvpn_profiles(inputs, export)) == {"dr-smith"}


def _found(name, text, mode="0600"):
    return {"path": f"/a/vpn/{name}.ovpn", "mode": mode, "checksum": hashlib.sha1(text.encode()).hexdigest()}


def test_profiles_to_write_only_when_inputs_change():
    profiles = _profiles()
    existing = [_found(n, t) for n, t in profiles.items()]
    assert oc.openvpn_profiles_to_write(profiles, existing) == []
    assert oc.openvpn_profiles_to_write(profiles, []) == ["dr-smith", "site-a-gw"]
    # A new remote changes every profile.
    assert oc.openvpn_profiles_to_write(_profiles("vpn.example.org"), existing) == ["dr-smith", "site-a-gw"]
    # A loosened mode is repaired.
    existing[0]["mode"] = "0644"
    assert oc.openvpn_profiles_to_write(profiles, existing) == [existing[0]["path"].split("/")[-1][:-5]]


def test_profiles_to_remove():
    profiles = _profiles()
    existing = [_found(n, t) for n, t in profiles.items()] + [_found("it-admin", "x"), {"path": "/a/vpn/README"}]
    assert oc.openvpn_profiles_to_remove(profiles, existing) == ["/a/vpn/it-admin.ovpn"]


def test_errors():
    assert oc.openvpn_errors("pacs.example.org") == []
    assert oc.openvpn_errors("")[0].startswith("site_pacs_fqdn: ")


def test_vpn_rules_are_the_site_models():
    """The role refuses what the site model refuses (IPv4 only, udp/tcp, client names, subnets)."""
    facts = {
        "site_vpn": {"enabled": True, "network": "fd00::/64", "proto": "sctp"},
        "site_vpn_clients": CLIENTS + [{"name": "server", "kind": "admin", "address": "10.8.0.40"},
                                       {"name": "g", "kind": "modality_gateway", "address": "10.8.0.41", "site_subnets": ["192.168.50.1/24"]}],
        "site_vpn_revoked": ["Bad Name"],
    }
    text = " | ".join(site_model.site_model_errors(facts))
    for needle in ("site_vpn.network", "site_vpn.proto", "site_vpn_revoked", "site_vpn_clients[server].name",
                   "site_vpn_clients[g].site_subnets"):
        assert needle in text


def test_filter_module_exposes_everything():
    filters = oc.FilterModule().filters()
    assert all(name.startswith("openvpn_") and callable(f) for name, f in filters.items())
    assert "openvpn_ccd" in filters and "openvpn_clients_to_revoke" in filters


# --- properties -------------------------------------------------------------------------------

@st.composite
def client_lists(draw, min_size=0, max_size=30):
    """Valid, unique clients inside 10.8.0.0/24 (never the server's .1)."""
    hosts = draw(st.lists(st.integers(2, 254), min_size=min_size, max_size=max_size, unique=True))
    clients = []
    for index, host in enumerate(hosts):
        kind = draw(st.sampled_from(["modality_gateway", "radiologist", "admin"]))
        client = {"name": f"c{index}-{host}", "kind": kind, "address": f"10.8.0.{host}"}
        if kind == "modality_gateway":
            client["site_subnets"] = [f"192.168.{host}.0/24"]
        clients.append(client)
    return clients


@settings(max_examples=200, deadline=None)
@given(client_lists(min_size=1), st.data())
def test_adding_or_removing_clients_never_changes_another(clients, data):
    """Addresses are typed, not allocated: each client's CCD is the same whatever the others."""
    full = oc.openvpn_ccd(clients, NETWORK)
    subset = data.draw(st.lists(st.sampled_from(clients), unique_by=lambda c: c["name"]))
    partial = oc.openvpn_ccd(subset, NETWORK)
    for name, text in partial.items():
        assert full[name] == text
    # Reordering the inventory changes nothing either.
    assert oc.openvpn_ccd(list(reversed(clients)), NETWORK) == full


@settings(max_examples=200, deadline=None)
@given(client_lists(), st.lists(st.text("abcdefgh-", min_size=1, max_size=6), max_size=10), st.data())
def test_issue_and_revoke_partition(clients, extra_issued, data):
    """After issuing and revoking, exactly the active clients hold certificates."""
    revoked = [c["name"] for c in data.draw(st.lists(st.sampled_from(clients), unique_by=lambda c: c["name"]))] if clients else []
    already = [c["name"] for c in clients[: len(clients) // 2]] + extra_issued
    to_issue = oc.openvpn_clients_to_issue(clients, already, revoked)
    to_revoke = oc.openvpn_clients_to_revoke(clients, already, revoked)
    after = (set(already) | set(to_issue)) - set(to_revoke)
    assert after == {c["name"] for c in oc.openvpn_active_clients(clients, revoked)}
    assert not set(to_issue) & set(revoked)
    # A second run has nothing left to do.
    assert oc.openvpn_clients_to_issue(clients, sorted(after), revoked) == []
    assert oc.openvpn_clients_to_revoke(clients, sorted(after), revoked) == []


@settings(max_examples=100, deadline=None)
@given(client_lists())
def test_ccd_addresses_match_the_inventory_and_validate(clients):
    """Every CCD pushes the inventory address; the site model accepts these clients."""
    assert site_model.site_model_errors({"site_vpn": {"enabled": True, "network": NETWORK}, "site_vpn_clients": clients}) == []
    ccd = oc.openvpn_ccd(clients, NETWORK)
    for client in clients:
        first = ccd[client["name"]].splitlines()[0]
        assert first == f"ifconfig-push {client['address']} 255.255.255.0"


@settings(max_examples=100, deadline=None)
@given(client_lists(), st.data())
def test_one_source_of_truth_for_modality_hosts(clients, data):
    """Every modality host the firewall admits through a gateway is routed to that gateway by the VPN."""
    gateways = [c for c in clients if c["kind"] == "modality_gateway"]
    modalities = []
    for index, gateway in enumerate(gateways):
        host_octet = data.draw(st.integers(1, 254))
        subnet = ipaddress.ip_network(gateway["site_subnets"][0])
        modalities.append({"name": f"m{index}", "aet": f"M{index}", "host": str(subnet.network_address + host_octet),
                           "port": 104, "allow": ["store"], "vpn_gateway": gateway["name"]})
    facts = {"site_vpn": {"enabled": True, "network": NETWORK}, "site_vpn_clients": clients, "site_modalities": modalities}
    assert site_model.site_model_errors(facts) == []
    routes = [ipaddress.ip_network(r.replace(" ", "/")) for r in oc.openvpn_server_routes(clients)]
    iroutes = {name: text for name, text in oc.openvpn_ccd(clients, NETWORK).items()}
    allowed = {row["source"] for row in site_model.dicom_allowed_sources(modalities, clients)}
    for modality in modalities:
        host = ipaddress.ip_address(modality["host"])
        assert f"{host}/32" in allowed
        assert any(host in route for route in routes)
        gateway_ccd = iroutes[modality["vpn_gateway"]]
        assert any(host in ipaddress.ip_network(line.split(" ", 1)[1].replace(" ", "/"))
                   for line in gateway_ccd.splitlines() if line.startswith("iroute "))


@pytest.mark.parametrize("count", [1, 200])
def test_scale_inputs(count):
    clients = [{"name": f"c{i}", "kind": "radiologist", "address": str(ipaddress.ip_address("10.8.0.0") + 2 + i)}
               for i in range(count)]
    assert len(oc.openvpn_ccd(clients, "10.8.0.0/23")) == count
