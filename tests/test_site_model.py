"""Tests for filter_plugins/site_model.py: validation of the site facts and derived allow-lists."""

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

import site_model as sm

GATEWAY = {"name": "site-a-gw", "kind": "modality_gateway", "address": "10.8.0.10", "site_subnets": ["192.168.50.0/24"]}
RADIOLOGIST = {"name": "dr-smith", "kind": "radiologist", "address": "10.8.0.20"}
ADMIN = {"name": "it-admin", "kind": "admin", "address": "10.8.0.30"}
MRI = {"name": "mri-1", "aet": "MRI1", "host": "192.168.50.10", "port": 104, "allow": ["echo", "store"], "vpn_gateway": "site-a-gw"}
CT = {"name": "ct-1", "aet": "CT_1", "host": "203.0.113.50", "port": 104, "allow": ["echo", "store"], "tls": True}


def valid_site() -> dict:
    return {
        "site_name": "centre-a",
        "site_admin_sources": ["198.51.100.0/28"],
        "site_https_sources": [],
        "site_dicom": {"aet": "ORTHANC", "port": 4242, "tls": False},
        "site_modalities": [MRI, CT],
        "site_vpn": {"enabled": True, "network": "10.8.0.0/24"},
        "site_vpn_clients": [GATEWAY, RADIOLOGIST, ADMIN],
        "site_users": [{"name": "admin", "role": "admin"}, {"name": "dr-smith", "role": "viewer"}],
    }


def test_valid_site_has_no_errors():
    assert sm.site_model_errors(valid_site()) == []


def test_aet_rules():
    assert sm.aet_error("ORTHANC", "v") is None
    assert sm.aet_error("mri_1", "v") is None  # case is kept, not forced
    assert "1 to 16" in sm.aet_error("A" * 17, "site_dicom.aet")
    assert "backslash" in sm.aet_error("A\\B", "v")
    assert "spaces" in sm.aet_error(" MRI", "v")
    assert "required" in sm.aet_error("", "v")


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="\\"), min_size=1, max_size=16))
def test_any_printable_aet_up_to_16_is_valid(aet):
    assert sm.aet_error(aet, "v") is None


@given(st.text(min_size=17, max_size=40))
def test_longer_than_16_is_never_valid(aet):
    assert sm.aet_error(aet, "v") is not None


def test_modality_outside_gateway_subnet_is_refused():
    site = valid_site()
    site["site_modalities"] = [dict(MRI, host="192.168.60.10")]
    errors = sm.site_model_errors(site)
    assert any("site_modalities[mri-1].host" in e and "site_subnets" in e for e in errors)


def test_unknown_gateway_and_bad_command_are_named():
    site = valid_site()
    site["site_modalities"] = [dict(MRI, vpn_gateway="nope", allow=["echo", "delete"])]
    errors = sm.site_model_errors(site)
    assert any("vpn_gateway" in e and "'nope'" in e for e in errors)
    assert any(".allow" in e for e in errors)


def test_duplicates_are_refused():
    site = valid_site()
    site["site_modalities"] = [MRI, dict(MRI, name="mri-2")]
    assert any("aet 'MRI1' appears twice" in e for e in sm.site_model_errors(site))
    site = valid_site()
    site["site_vpn_clients"] = [GATEWAY, dict(RADIOLOGIST, address="10.8.0.10")]
    assert any("address '10.8.0.10' appears twice" in e for e in sm.site_model_errors(site))


def test_vpn_addresses_must_be_client_hosts_of_the_network():
    site = valid_site()
    site["site_vpn_clients"] = [dict(RADIOLOGIST, address="10.9.0.5"), dict(ADMIN, address="10.8.0.1")]
    errors = sm.site_model_errors(site)
    assert any("not a host address of site_vpn.network" in e for e in errors)
    assert any("VPN server's own address" in e for e in errors)


def test_only_gateways_route_subnets_and_kinds_are_checked():
    site = valid_site()
    site["site_vpn_clients"] = [dict(RADIOLOGIST, site_subnets=["192.168.9.0/24"]), dict(ADMIN, kind="boss")]
    errors = sm.site_model_errors(site)
    assert any("only a modality_gateway" in e for e in errors)
    assert any("kind: 'boss'" in e for e in errors)


def test_bad_sources_and_roles_are_named():
    site = valid_site()
    site["site_admin_sources"] = ["198.51.100.1/24"]  # host bits set: a typo worth catching
    site["site_users"] = [{"name": "x", "role": "superuser"}]
    errors = sm.site_model_errors(site)
    assert any(e.startswith("site_admin_sources") for e in errors)
    assert any("site_users[x].role" in e for e in errors)


def test_https_sources_are_admins_extras_and_people_on_the_vpn():
    sources = sm.https_allowed_sources(["198.51.100.0/28"], ["192.0.2.7"], [GATEWAY, RADIOLOGIST, ADMIN])
    assert sources == ["10.8.0.20/32", "10.8.0.30/32", "192.0.2.7/32", "198.51.100.0/28"]
    assert "10.8.0.10/32" not in sources  # a modality gateway never reaches HTTPS


def test_dicom_sources_are_modality_hosts_and_gateways_only():
    rows = sm.dicom_allowed_sources([MRI, CT], [GATEWAY, RADIOLOGIST, ADMIN])
    assert [r["source"] for r in rows] == ["10.8.0.10/32", "192.168.50.10/32", "203.0.113.50/32"]
    assert rows[1]["comment"] == "modality mri-1"


@given(st.lists(st.ip_addresses(v=4).map(str), max_size=20))
def test_derived_lists_are_sorted_unique_and_cover_every_input(addresses):
    sources = sm.https_allowed_sources(addresses)
    assert sources == sorted(set(sources), key=lambda s: ipaddress.ip_network(s))
    assert {str(ipaddress.ip_network(a)) for a in addresses} == set(sources)


def test_vpn_server_address_is_the_first_host_or_none():
    assert sm.vpn_server_address({"enabled": True, "network": "10.8.0.0/24"}) == "10.8.0.1"
    assert sm.vpn_server_address({"enabled": False, "network": "10.8.0.0/24"}) is None
    assert sm.vpn_server_address(None) is None


def test_vpn_settings_are_checked():
    site = valid_site()
    site["site_vpn"] = {"enabled": "yes", "network": "10.8.0.0/24", "port": 70000, "proto": "sctp", "sources": ["nowhere"]}
    errors = sm.site_model_errors(site)
    for variable in ("site_vpn.port", "site_vpn.proto", "site_vpn.sources", "site_vpn.enabled"):
        assert any(e.startswith(variable) for e in errors), variable


def test_ssh_allow_lists_are_checked():
    assert sm.ssh_access_errors({}) == []
    assert sm.ssh_access_errors({"site_ssh_allow_users": ["admin", "ops-*", "it@10.0.0.0/8"], "site_ssh_allow_groups": ["sudo"]}) == []
    errors = sm.ssh_access_errors({"site_ssh_allow_users": "admin", "site_ssh_allow_groups": ["bad group"]})
    assert errors[0].startswith("site_ssh_allow_users: must be a list")
    assert errors[1].startswith("site_ssh_allow_groups: 'bad group'")
    # Through the whole-model check too.
    assert any("site_ssh_allow_users" in e for e in sm.site_model_errors({"site_ssh_allow_users": ["a b"]}))
