"""Tests for filter_plugins/site_model.py: the one validator of the site facts, and the derived lists.

``BAD`` holds realistic bad inventories: each is the example inventory with one mistake an admin
makes, the path of the fact the message must name, and a piece of the fix it must give.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import site_model as sm
from site_inventory import site_context, site_facts

DELETE = object()
EXAMPLE = site_facts("example")
MRI, CT = 0, 1  # site_modalities of the example: mri-1 behind site-a-gw, ct-1 direct
GW, SMITH, JONES, ADMIN = 0, 1, 2, 3  # site_vpn_clients of the example


def changed(changes: dict, base: str = "example") -> dict:
    """The inventory ``base`` with ``changes`` applied: {("site_dicom", "aet"): value, ...}."""
    facts = site_facts(base)
    for path, value in changes.items():
        path = (path,) if isinstance(path, str) else path
        target = facts
        for key in path[:-1]:
            target = target[key]
        if value is DELETE:
            del target[path[-1]]
        elif isinstance(target, list) and path[-1] == len(target):
            target.append(value)
        else:
            target[path[-1]] = value
    return facts


def errors_of(facts: dict, **context) -> list[str]:
    return sm.site_model_errors(facts, {**site_context("example"), **context})


GATEWAY_2 = {"name": "gw-2", "kind": "modality_gateway", "address": "10.8.0.11", "site_subnets": ["192.168.50.128/25"]}

# (id, changes, context, path the message starts with, a piece of the fix)
BAD = [
    # fact names
    ("typo-modalities", {"site_modalites": []}, {}, "site_modalites", "did you mean site_modalities"),
    ("typo-vpn-clients", {"site_vpn_client": []}, {}, "site_vpn_client", "did you mean site_vpn_clients"),
    ("unknown-fact", {"site_zzzzzzzz": 1}, {}, "site_zzzzzzzz", "docs/inventory.md"),
    ("typo-dicom-key", {("site_dicom", "aett"): "X"}, {}, "site_dicom.aett", "did you mean site_dicom.aet"),
    ("typo-modality-key", {("site_modalities", MRI, "vpn_gatway"): "site-a-gw"}, {}, "site_modalities[mri-1].vpn_gatway", "did you mean site_modalities[mri-1].vpn_gateway"),
    ("typo-user-key", {("site_users", 0, "passwrd"): "x"}, {}, "site_users[admin].passwrd", "did you mean site_users[admin].password"),
    ("typo-vpn-key", {("site_vpn", "netwrok"): "10.8.0.0/24"}, {}, "site_vpn.netwrok", "did you mean site_vpn.network"),
    ("typo-certificates-key", {("site_certificates", "renewdays"): 30}, {}, "site_certificates.renewdays", "did you mean site_certificates.renew_days"),
    ("typo-vpn-client-key", {("site_vpn_clients", GW, "subnets"): []}, {}, "site_vpn_clients[site-a-gw].subnets", "did you mean"),
    # AE titles
    ("aet-too-long", {("site_dicom", "aet"): "A" * 17}, {}, "site_dicom.aet", "shorten it"),
    ("aet-backslash", {("site_modalities", MRI, "aet"): "MR\\I"}, {}, "site_modalities[mri-1].aet", "without backslash"),
    ("aet-empty", {("site_modalities", CT, "aet"): ""}, {}, "site_modalities[ct-1].aet", "use 1 to 16"),
    ("aet-blank", {("site_modalities", CT, "aet"): "   "}, {}, "site_modalities[ct-1].aet", "use 1 to 16"),
    ("aet-non-ascii", {("site_modalities", CT, "aet"): "IRM_É"}, {}, "site_modalities[ct-1].aet", "replace it"),
    ("aet-control", {("site_modalities", CT, "aet"): "CT\t1"}, {}, "site_modalities[ct-1].aet", "remove it"),
    ("aet-number", {("site_dicom", "aet"): 1234}, {}, "site_dicom.aet", "in quotes"),
    ("aet-leading-space", {("site_modalities", CT, "aet"): " CT1"}, {}, "site_modalities[ct-1].aet", "remove them"),
    ("aet-duplicate-case", {("site_modalities", CT, "aet"): "mri1"}, {}, "site_modalities[ct-1].aet", "its own AE title"),
    ("aet-is-server", {("site_modalities", CT, "aet"): "centre_a_pacs"}, {}, "site_modalities[ct-1].aet", "its own AE title"),
    ("aet-is-healthcheck", {("site_modalities", CT, "aet"): "HealthCheck"}, {}, "site_modalities[ct-1].aet", "its own AE title"),
    # modalities
    ("modality-duplicate-name", {("site_modalities", CT, "name"): "mri-1"}, {}, "site_modalities[mri-1].name", "its own name"),
    ("modality-name-case", {("site_modalities", CT, "name"): "CT-1"}, {}, "site_modalities[CT-1].name", "lowercase"),
    ("modality-host-network", {("site_modalities", MRI, "host"): "192.168.50.0/24"}, {}, "site_modalities[mri-1].host", "single IP address"),
    ("modality-host-name", {("site_modalities", CT, "host"): "ct.hospital.local"}, {}, "site_modalities[ct-1].host", "single IP address"),
    ("modality-port-zero", {("site_modalities", CT, "port"): 0}, {}, "site_modalities[ct-1].port", "1 to 65535"),
    ("modality-port-text", {("site_modalities", CT, "port"): "104"}, {}, "site_modalities[ct-1].port", "without quotes"),
    ("modality-allow-unknown", {("site_modalities", CT, "allow"): ["echo", "delete"]}, {}, "site_modalities[ct-1].allow", "echo, store, find, move, get"),
    ("modality-allow-text", {("site_modalities", CT, "allow"): "store"}, {}, "site_modalities[ct-1].allow", "[echo, store]"),
    ("modality-tls-text", {("site_modalities", CT, "tls"): "yes"}, {}, "site_modalities[ct-1].tls", "true or false"),
    ("modality-missing-aet", {("site_modalities", CT, "aet"): DELETE}, {}, "site_modalities[ct-1].aet", "add aet"),
    ("modalities-not-list", {"site_modalities": {"name": "mri-1"}}, {}, "site_modalities", "YAML list"),
    ("modality-unknown-gateway", {("site_modalities", MRI, "vpn_gateway"): "gw-x"}, {}, "site_modalities[mri-1].vpn_gateway", "add that gateway"),
    ("gateway-not-a-gateway", {("site_modalities", MRI, "vpn_gateway"): "dr-smith"}, {}, "site_modalities[mri-1].vpn_gateway", "kind modality_gateway"),
    ("modality-outside-gateway-lan", {("site_modalities", MRI, "host"): "192.168.60.10"}, {}, "site_modalities[mri-1].host", "site_subnets"),
    ("direct-modality-in-gateway-lan", {("site_modalities", CT, "host"): "192.168.50.44"}, {}, "site_modalities[ct-1].vpn_gateway", "set vpn_gateway: site-a-gw"),
    ("modality-is-radiologist", {("site_modalities", CT, "host"): "10.8.0.20"}, {}, "site_modalities[ct-1].host", "vpn_gateway"),
    ("modality-unused-tunnel-address", {("site_modalities", CT, "host"): "10.8.0.99"}, {}, "site_modalities[ct-1].host", "vpn_gateway"),
    ("modality-is-gateway-tunnel", {("site_modalities", CT, "host"): "10.8.0.10"}, {}, "site_modalities[ct-1].host", "LAN address"),
    ("modality-is-server", {("site_modalities", CT, "host"): "203.0.113.10"}, {}, "site_modalities[ct-1].host", "associations come from"),
    ("modality-loopback", {("site_modalities", CT, "host"): "127.0.0.1"}, {}, "site_modalities[ct-1].host", "associations come from"),
    ("modality-gateway-vpn-off", {("site_vpn", "enabled"): False}, {}, "site_modalities[mri-1].vpn_gateway", "site_vpn.enabled: true"),
    ("modality-gateway-revoked", {"site_vpn_revoked": ["site-a-gw"]}, {}, "site_modalities[mri-1].vpn_gateway", "un-revoke"),
    ("modality-tls-without-dicom-tls", {("site_dicom", "tls"): False}, {}, "site_modalities[mri-1].tls", "site_dicom.tls: true"),
    # ports
    ("dicom-port-range", {("site_dicom", "port"): 70000}, {}, "site_dicom.port", "1 to 65535"),
    ("dicom-port-privileged", {("site_dicom", "port"): 104}, {}, "site_dicom.port", "4242"),
    ("dicom-port-orthanc-http", {("site_dicom", "port"): 8042}, {}, "site_dicom.port", "its own port"),
    ("dicom-port-https", {("site_dicom", "port"): 443}, {}, "site_dicom.port", "its own port"),
    ("dicom-port-ssh", {("site_dicom", "port"): 2222}, {"ssh_port": 2222}, "site_dicom.port", "its own port"),
    ("https-port-ssh", {"site_https_port": 22}, {}, "site_https_port", "its own port"),
    ("https-port-zero", {"site_https_port": 0}, {}, "site_https_port", "1 to 65535"),
    ("https-port-text", {"site_https_port": "8443"}, {}, "site_https_port", "without quotes"),
    ("https-port-acme-http", {"site_https_port": 80}, {}, "site_https_port", "its own port"),
    ("https-port-dicom", {"site_https_port": 4242}, {}, "site_https_port", "its own port"),
    ("vpn-tcp-on-https", {("site_vpn", "proto"): "tcp", ("site_vpn", "port"): 443}, {}, "site_vpn.port", "its own port"),
    ("vpn-tcp-on-dicom", {("site_vpn", "proto"): "tcp", ("site_vpn", "port"): 4242}, {}, "site_vpn.port", "its own port"),
    ("vpn-port-range", {("site_vpn", "port"): 65536}, {}, "site_vpn.port", "1 to 65535"),
    # VPN
    ("vpn-proto-udp6", {("site_vpn", "proto"): "udp6"}, {}, "site_vpn.proto", "udp (recommended) or tcp"),
    ("vpn-proto-unknown", {("site_vpn", "proto"): "sctp"}, {}, "site_vpn.proto", "udp (recommended) or tcp"),
    ("vpn-network-ipv6", {("site_vpn", "network"): "fd00:8::/64"}, {}, "site_vpn.network", "IPv4"),
    ("vpn-network-host-bits", {("site_vpn", "network"): "10.8.0.1/24"}, {}, "site_vpn.network", "10.8.0.0/24"),
    ("vpn-network-too-small", {("site_vpn", "network"): "10.8.0.0/30"}, {}, "site_vpn.network", "/29 or larger"),
    ("vpn-network-missing", {("site_vpn", "network"): DELETE}, {}, "site_vpn.network", "10.8.0.0/24"),
    ("vpn-network-garbage", {("site_vpn", "network"): "10.8.0.0/33"}, {}, "site_vpn.network", "CIDR"),
    ("vpn-enabled-text", {("site_vpn", "enabled"): "yes"}, {}, "site_vpn.enabled", "true or false"),
    ("vpn-sources-not-list", {("site_vpn", "sources"): "0.0.0.0/0"}, {}, "site_vpn.sources", "YAML list"),
    ("vpn-sources-garbage", {("site_vpn", "sources"): ["nowhere"]}, {}, "site_vpn.sources", "CIDR"),
    ("vpn-overlaps-gateway-lan", {("site_vpn_clients", GW, "site_subnets"): ["10.8.0.128/25"]}, {}, "site_vpn_clients[site-a-gw].site_subnets", "differ from the tunnel"),
    ("gateway-lans-overlap", {("site_vpn_clients", 4): GATEWAY_2}, {}, "site_vpn_clients[gw-2].site_subnets", "one gateway only"),
    ("gateway-lan-holds-server", {("site_vpn_clients", GW, "site_subnets"): ["192.168.50.0/24", "203.0.113.0/24"]}, {}, "site_vpn_clients[site-a-gw].site_subnets", "modality LAN"),
    ("vpn-network-holds-server", {"site_pacs_addresses": ["10.8.0.200"]}, {}, "site_vpn.network", "used nowhere else"),
    ("admin-source-overlaps-vpn", {"site_admin_sources": ["10.8.0.0/16"]}, {}, "site_admin_sources", "remove it"),
    ("https-source-overlaps-vpn", {"site_https_sources": ["10.8.0.16/28"]}, {}, "site_https_sources", "remove it"),
    ("vpn-client-is-server", {("site_vpn_clients", SMITH, "address"): "10.8.0.1"}, {}, "site_vpn_clients[dr-smith].address", "the server takes 10.8.0.1"),
    ("vpn-client-outside", {("site_vpn_clients", SMITH, "address"): "10.9.0.5"}, {}, "site_vpn_clients[dr-smith].address", "inside 10.8.0.0/24"),
    ("vpn-client-broadcast", {("site_vpn_clients", SMITH, "address"): "10.8.0.255"}, {}, "site_vpn_clients[dr-smith].address", "other than its first and last"),
    ("vpn-client-ipv6", {("site_vpn_clients", SMITH, "address"): "fd00::5"}, {}, "site_vpn_clients[dr-smith].address", "IPv4"),
    ("vpn-client-duplicate-address", {("site_vpn_clients", JONES, "address"): "10.8.0.20"}, {}, "site_vpn_clients[dr-jones].address", "its own address"),
    ("vpn-client-duplicate-name", {("site_vpn_clients", JONES, "name"): "dr-smith"}, {}, "site_vpn_clients[dr-smith].name", "its own name"),
    ("vpn-client-kind", {("site_vpn_clients", SMITH, "kind"): "doctor"}, {}, "site_vpn_clients[dr-smith].kind", "modality_gateway, radiologist, admin"),
    ("vpn-client-named-server", {("site_vpn_clients", SMITH, "name"): "server"}, {}, "site_vpn_clients[server].name", "rename the client"),
    ("radiologist-routes-lan", {("site_vpn_clients", SMITH, "site_subnets"): ["192.168.9.0/24"]}, {}, "site_vpn_clients[dr-smith].site_subnets", "kind: modality_gateway"),
    ("gateway-lan-ipv6", {("site_vpn_clients", GW, "site_subnets"): ["fd00:50::/64"]}, {}, "site_vpn_clients[site-a-gw].site_subnets", "IPv4"),
    ("gateway-lan-host-bits", {("site_vpn_clients", GW, "site_subnets"): ["192.168.50.1/24"]}, {}, "site_vpn_clients[site-a-gw].site_subnets", "192.168.50.0/24"),
    ("revoked-not-list", {"site_vpn_revoked": "dr-smith"}, {}, "site_vpn_revoked", "YAML list"),
    ("revoked-bad-name", {"site_vpn_revoked": ["Dr Smith"]}, {}, "site_vpn_revoked", "lowercase"),
    # users and passwords
    ("password-default", {("site_users", 0, "password"): "orthanc"}, {}, "site_users[admin].password", "generated"),
    ("password-known-weak", {("site_users", 0, "password"): "PasswordPassword"}, {}, "site_users[admin].password", "generated"),
    ("password-short", {("site_users", 1, "password"): "Sh0rt!x"}, {}, "site_users[dr-smith].password", "vault_dr_smith_password"),
    ("password-template-literal", {("site_users", 1, "password"): "{{ vault_dr_smith_password }}"}, {}, "site_users[dr-smith].password", "generated"),
    ("password-variable-name", {("site_users", 1, "password"): "vault_dr_smith_password"}, {}, "site_users[dr-smith].password", "generated"),
    ("password-vault-ciphertext", {("site_users", 1, "password"): "$ANSIBLE_VAULT;1.1;AES256\n6162"}, {}, "site_users[dr-smith].password", "generated"),
    ("password-placeholder", {("site_users", 1, "password"): "<the password>"}, {}, "site_users[dr-smith].password", "generated"),
    ("password-has-user-name", {("site_users", 2, "password"): "dr-jones-Secret-2026"}, {}, "site_users[dr-jones].password", "generated"),
    ("password-few-characters", {("site_users", 2, "password"): "abababababababab"}, {}, "site_users[dr-jones].password", "generated"),
    ("user-role", {("site_users", 1, "role"): "superuser"}, {}, "site_users[dr-smith].role", "admin, viewer, uploader"),
    ("user-duplicate", {("site_users", 2, "name"): "dr-smith"}, {}, "site_users[dr-smith].name", "its own name"),
    ("user-name-space", {("site_users", 1, "name"): "dr smith"}, {}, "site_users[dr smith].name", "letters, digits"),
    ("users-empty", {"site_users": []}, {}, "site_users", "at least one user"),
    ("users-missing", {"site_users": DELETE}, {}, "site_users", "at least one user"),
    ("users-no-admin", {("site_users", 0, "role"): "viewer"}, {}, "site_users", "role: admin"),
    ("users-not-list", {"site_users": {"admin": "admin"}}, {}, "site_users", "YAML list"),
    # identity, addresses, sources
    ("site-name", {"site_name": "Centre A"}, {}, "site_name", "lowercase"),
    ("fqdn-underscore", {"site_pacs_fqdn": "pacs_centre.example.org"}, {}, "site_pacs_fqdn", "DNS name"),
    ("fqdn-is-address", {"site_pacs_fqdn": "203.0.113.10"}, {}, "site_pacs_fqdn", "site_pacs_addresses"),
    ("pacs-address-network", {"site_pacs_addresses": ["203.0.113.0/28"]}, {}, "site_pacs_addresses", "single IP address"),
    ("pacs-addresses-not-list", {"site_pacs_addresses": "203.0.113.10"}, {}, "site_pacs_addresses", "YAML list"),
    ("pacs-name-missing", {"site_pacs_fqdn": DELETE, "site_pacs_addresses": DELETE}, {}, "site_pacs_fqdn", "set site_pacs_fqdn"),
    ("admin-source-host-bits", {"site_admin_sources": ["198.51.100.1/28"]}, {}, "site_admin_sources", "198.51.100.0/28"),
    ("admin-source-garbage", {"site_admin_sources": ["office"]}, {}, "site_admin_sources", "CIDR"),
    ("https-sources-not-list", {"site_https_sources": "10.0.0.0/8"}, {}, "site_https_sources", "YAML list"),
    ("dicom-not-mapping", {"site_dicom": "ORTHANC"}, {}, "site_dicom", "{aet: ORTHANC"),
    ("dicom-tls-text", {("site_dicom", "tls"): "true"}, {}, "site_dicom.tls", "without quotes"),
    # certificates, paths, alerts
    ("cert-mode", {("site_certificates", "https", "mode"): "letsencrypt"}, {}, "site_certificates.https.mode", "internal_ca, self_signed, csr, provided, acme"),
    ("cert-key-type", {("site_certificates", "key_type"): "dsa"}, {}, "site_certificates.key_type", "ecdsa"),
    ("cert-renew-days", {("site_certificates", "renew_days"): 0}, {}, "site_certificates.renew_days", ">= 1"),
    ("cert-days-short", {("site_certificates", "dicom", "days"): 20}, {}, "site_certificates.dicom.days", "greater than 30"),
    ("cert-acme-dicom", {("site_certificates", "dicom", "mode"): "acme"}, {}, "site_certificates.dicom.mode", "internal_ca"),
    ("cert-acme-terms", {}, {"acme_terms_agreed": False}, "site_certificates.https.mode", "tls_certs_acme_terms_agreed: true"),
    ("cert-acme-no-fqdn", {"site_pacs_fqdn": DELETE}, {}, "site_certificates.https.mode", "set site_pacs_fqdn"),
    ("cert-provided-missing", {("site_certificates", "https"): {"mode": "provided"}}, {}, "site_certificates.https.certificate", "mode csr"),
    ("cert-extra-san-network", {("site_certificates", "dicom", "extra_sans"): ["10.0.0.0/8"]}, {}, "site_certificates.dicom.extra_sans", "no networks"),
    ("cert-https-not-mapping", {("site_certificates", "https"): "acme"}, {}, "site_certificates.https", "{mode: internal_ca}"),
    ("alerts-email", {("site_alerts", "email"): "not-an-email"}, {}, "site_alerts.email", "pacs-alerts@example.org"),
    ("alerts-webhook", {("site_alerts", "webhook_url"): "ftp://hooks.example.org/x"}, {}, "site_alerts.webhook_url", "https://"),
    ("tls-dir-relative", {"site_tls_dir": "tls"}, {}, "site_tls_dir", "absolute path"),
    ("acme-webroot-etc", {"site_acme_webroot": "/etc"}, {}, "site_acme_webroot", "absolute path"),
]


def test_at_least_sixty_distinct_bad_inventories():
    assert len(BAD) >= 60
    assert len({case[0] for case in BAD}) == len(BAD)


@pytest.mark.parametrize("name, changes, context, path, fix", BAD, ids=[case[0] for case in BAD])
def test_bad_inventory_is_refused_with_path_and_fix(name, changes, context, path, fix):
    errors = errors_of(changed(changes), **context)
    named = [e for e in errors if e.startswith(path + ":")]
    assert named, f"no message names {path}: {errors}"
    assert any(fix in e for e in named), f"no message for {path} gives the fix {fix!r}: {named}"
    for error in errors:
        assert isinstance(error, str) and "\n" not in error and not error.startswith("[")
        head, _, rest = error.partition(": ")
        assert head and "; " in rest, f"not 'path: what; fix': {error}"


@pytest.mark.parametrize("inventory", ["example", "lab"])
def test_shipped_inventories_pass(inventory):
    assert sm.site_model_errors(site_facts(inventory), site_context(inventory)) == []


UNUSUAL_VALID = [
    ("lowercase-aet", {("site_modalities", CT, "aet"): "ct_scanner"}),
    ("inner-space-aet", {("site_modalities", CT, "aet"): "CT SCANNER 1"}),
    ("aet-16-characters", {("site_dicom", "aet"): "ABCDEFGHIJKLMNOP"}),
    ("aet-punctuation", {("site_modalities", CT, "aet"): "CT-1.A/B"}),
    ("single-address-source", {"site_admin_sources": ["198.51.100.7"]}),
    ("single-address-with-32", {"site_admin_sources": ["198.51.100.7/32"], "site_pacs_addresses": ["203.0.113.10/32"]}),
    ("ipv6-admin-source", {"site_admin_sources": ["2001:db8::/48", "198.51.100.0/28"]}),
    ("ipv6-pacs-address", {"site_pacs_addresses": ["203.0.113.10", "2001:db8::10"]}),
    ("vpn-udp-on-443", {("site_vpn", "port"): 443, ("site_vpn", "proto"): "udp"}),
    ("vpn-tcp-own-port", {("site_vpn", "port"): 8443, ("site_vpn", "proto"): "tcp"}),
    ("https-port-8443", {"site_https_port": 8443}),
    ("vpn-sources-any", {("site_vpn", "sources"): ["any"]}),
    ("modality-port-default", {("site_modalities", CT, "port"): DELETE}),
    ("modality-private-lan-direct", {("site_modalities", CT, "host"): "172.16.5.9"}),
    ("vaulted-strong-password", {("site_users", 1, "password"): "q7Rk2vLx9mNw4Ts8"}),
    ("no-https-sources", {"site_https_sources": DELETE}),
    ("gateway-on-two-lans", {("site_vpn_clients", GW, "site_subnets"): ["192.168.50.0/24", "192.168.51.0/24"]}),
    ("revoke-unknown-old-client", {"site_vpn_revoked": ["dr-gone"]}),
    ("alerts-empty", {"site_alerts": {"email": "", "webhook_url": ""}}),
]


@pytest.mark.parametrize("name, changes", UNUSUAL_VALID, ids=[case[0] for case in UNUSUAL_VALID])
def test_unusual_but_valid_input_is_accepted(name, changes):
    assert errors_of(changed(changes)) == []


def test_vpn_off_site_needs_no_vpn_facts():
    facts = changed({"site_vpn": {"enabled": False}, "site_vpn_clients": [], ("site_modalities", MRI, "vpn_gateway"): DELETE,
                     ("site_modalities", MRI, "host"): "198.51.100.200"})
    assert errors_of(facts) == []


def test_all_problems_are_reported_at_once():
    facts = changed({"site_modalites": [], ("site_dicom", "aet"): "A" * 20, ("site_users", 0, "password"): "orthanc",
                     ("site_vpn", "proto"): "udp6", ("site_modalities", CT, "host"): "10.8.0.20"})
    paths = {e.split(":", 1)[0] for e in errors_of(facts)}
    assert {"site_modalites", "site_dicom.aet", "site_users[admin].password", "site_vpn.proto", "site_modalities[ct-1].host"} <= paths


def test_report_is_plain_lines():
    report = sm.site_model_report(["a: b; c", "d: e; f", "a: b; c"])
    assert report.splitlines()[1:] == ["- a: b; c", "- d: e; f"]
    assert "['" not in report


def test_a_role_view_without_the_whole_site_needs_no_identity():
    """Roles check their own view of the facts: no fqdn or users there is not an error."""
    assert sm.site_model_errors({"site_vpn": {"enabled": True, "network": "10.8.0.0/24"}, "site_vpn_clients": []}) == []


def test_port_clash_blames_the_fact_the_admin_typed():
    errors = errors_of(changed({("site_dicom", "port"): 443}))
    assert any(e.startswith("site_dicom.port: port 443/tcp is already used by site_https_port (its default)") for e in errors)


# --- Property tests: the address and network logic --------------------------------------------

ipv4_networks = st.builds(
    lambda address, prefix: ipaddress.ip_network(f"{address}/{prefix}", strict=False),
    st.ip_addresses(v=4), st.integers(8, 30),
)


@given(ipv4_networks)
def test_every_network_in_cidr_form_is_accepted_and_host_bits_are_named(network):
    assert sm.network_error(str(network), "p") is None
    assert sm.parse_network(str(network)) == network
    inside = network.network_address + 1
    message = sm.network_error(f"{inside}/{network.prefixlen}", "site_admin_sources")
    assert message is not None and f"write the network as {network}" in message


@given(st.ip_addresses())
def test_a_single_address_is_an_address_with_or_without_its_full_prefix(address):
    assert sm.parse_address(str(address)) == address
    assert sm.parse_address(f"{address}/{address.max_prefixlen}") == address
    assert sm.network_error(str(address), "p") is None


@given(ipv4_networks)
def test_a_network_is_never_a_single_address(network):
    assume(network.num_addresses > 1)
    assert sm.address_error(str(network), "p").startswith("p: ")
    assert "is a network" in sm.address_error(str(network), "p")


@given(st.ip_addresses(v=6))
def test_ipv6_is_refused_where_only_ipv4_works(address):
    assert "IPv6" in sm.address_error(str(address), "site_vpn_clients[x].address", ipv4_only=True)
    assert "IPv6" in sm.network_error(str(ipaddress.ip_network(f"{address}/64", strict=False)), "site_vpn.network", ipv4_only=True)


@settings(max_examples=200, deadline=None)
@given(ipv4_networks, ipv4_networks)
def test_gateway_lan_overlap_with_the_tunnel_is_refused_exactly_when_they_overlap(tunnel, lan):
    assume(tunnel.prefixlen <= 29)
    facts = {
        "site_vpn": {"enabled": True, "network": str(tunnel)},
        "site_vpn_clients": [{"name": "gw", "kind": "modality_gateway", "address": str(tunnel.network_address + 2), "site_subnets": [str(lan)]}],
    }
    refused = any("overlaps site_vpn.network" in e for e in sm.site_model_errors(facts))
    assert refused == tunnel.overlaps(lan)


@settings(max_examples=200, deadline=None)
@given(ipv4_networks, st.integers(0, 2**32 - 1))
def test_a_vpn_address_is_accepted_exactly_when_it_is_a_client_host_of_the_network(tunnel, raw):
    assume(tunnel.prefixlen <= 29)
    address = ipaddress.IPv4Address(raw)
    facts = {"site_vpn": {"enabled": True, "network": str(tunnel)},
             "site_vpn_clients": [{"name": "dr-x", "kind": "radiologist", "address": str(address)}]}
    server = next(tunnel.hosts())
    expected_ok = address in tunnel and address not in (tunnel.network_address, tunnel.broadcast_address, server)
    assert (sm.site_model_errors(facts) == []) == expected_ok


@settings(max_examples=200, deadline=None)
@given(ipv4_networks, st.integers(0, 2**32 - 1))
def test_a_gateway_modality_is_accepted_exactly_when_its_host_is_in_the_gateway_lan(lan, raw):
    tunnel = ipaddress.ip_network("100.64.0.0/24")
    assume(not lan.overlaps(tunnel))
    host = ipaddress.IPv4Address(raw)
    assume(not (host in tunnel))
    facts = {
        "site_vpn": {"enabled": True, "network": str(tunnel)},
        "site_vpn_clients": [{"name": "gw", "kind": "modality_gateway", "address": "100.64.0.10", "site_subnets": [str(lan)]}],
        "site_modalities": [{"name": "m", "aet": "M", "host": str(host), "vpn_gateway": "gw", "allow": ["echo"]}],
    }
    errors = sm.site_model_errors(facts)
    assert (not any("is not inside the site_subnets" in e for e in errors)) == (host in lan)


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126, blacklist_characters="\\"), min_size=1, max_size=16))
def test_any_printable_aet_up_to_16_without_outer_spaces_is_valid(aet):
    assume(aet.strip() == aet and aet.strip())
    assert sm.aet_error(aet, "v") is None


@given(st.text(min_size=17, max_size=40))
def test_longer_than_16_is_never_valid(aet):
    assert sm.aet_error(aet, "v") is not None


@given(st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2FF), min_size=1, max_size=16))
def test_aet_with_backslash_control_or_non_ascii_is_never_valid(aet):
    bad = any(c == "\\" or ord(c) < 32 or ord(c) > 126 for c in aet)
    assume(bad)
    assert sm.aet_error(aet, "v") is not None


@given(st.lists(st.sampled_from(["MRI1", "mri1", "Mri1", "CT1", "ct1", "US 1"]), min_size=1, max_size=6))
def test_aet_duplicates_are_found_ignoring_case(aets):
    facts = {"site_modalities": [{"name": f"m{i}", "aet": a, "host": f"198.51.100.{i + 1}", "allow": []} for i, a in enumerate(aets)]}
    duplicates = [e for e in sm.site_model_errors(facts) if "ignoring case" in e]
    assert len(duplicates) == len(aets) - len({a.upper() for a in aets})


# --- Derived lists (unchanged behaviour) -----------------------------------------------------

GATEWAY = {"name": "site-a-gw", "kind": "modality_gateway", "address": "10.8.0.10", "site_subnets": ["192.168.50.0/24"]}
RADIOLOGIST = {"name": "dr-smith", "kind": "radiologist", "address": "10.8.0.20"}
ADMIN_CLIENT = {"name": "it-admin", "kind": "admin", "address": "10.8.0.30"}
MRI_ROW = {"name": "mri-1", "aet": "MRI1", "host": "192.168.50.10", "port": 104, "allow": ["echo", "store"], "vpn_gateway": "site-a-gw"}
CT_ROW = {"name": "ct-1", "aet": "CT_1", "host": "203.0.113.50", "port": 104, "allow": ["echo", "store"], "tls": True}


def test_https_sources_are_admins_extras_and_people_on_the_vpn():
    sources = sm.https_allowed_sources(["198.51.100.0/28"], ["192.0.2.7"], [GATEWAY, RADIOLOGIST, ADMIN_CLIENT])
    assert sources == ["10.8.0.20/32", "10.8.0.30/32", "192.0.2.7/32", "198.51.100.0/28"]
    assert "10.8.0.10/32" not in sources  # a modality gateway never reaches HTTPS


def test_dicom_sources_are_modality_hosts_and_gateways_only():
    rows = sm.dicom_allowed_sources([MRI_ROW, CT_ROW], [GATEWAY, RADIOLOGIST, ADMIN_CLIENT])
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


def test_every_declared_fact_is_documented():
    from site_inventory import ROOT

    doc = (ROOT / "docs" / "inventory.md").read_text()
    for fact in sm.FACTS:
        assert f"`{fact}`" in doc, fact


def test_site_access_lists_every_peer_and_what_it_reaches():
    lines = sm.site_access(site_facts("example"))
    assert "admin source 198.51.100.0/28: SSH 22, HTTPS 443" in lines
    assert "modality mri-1 (AE MRI1) from 192.168.50.10 through VPN gateway site-a-gw: DICOM 4242 with DICOM TLS (echo, store)" in lines
    assert "vpn radiologist dr-smith at 10.8.0.20: HTTPS 443" in lines
    assert "VPN 1194/udp from 0.0.0.0/0" in lines
    facts = site_facts("example")
    facts["site_vpn_revoked"] = ["dr-jones"]
    assert "vpn radiologist dr-jones at 10.8.0.21 REVOKED: nothing" in sm.site_access(facts)


def test_ssh_allow_lists_are_checked():
    assert sm.ssh_access_errors({}) == []
    assert sm.ssh_access_errors({"site_ssh_allow_users": ["admin", "ops-*", "it@10.0.0.0/8"], "site_ssh_allow_groups": ["sudo"]}) == []
    errors = sm.ssh_access_errors({"site_ssh_allow_users": "admin", "site_ssh_allow_groups": ["bad group"]})
    assert errors[0].startswith("site_ssh_allow_users: must be a list")
    assert errors[1].startswith("site_ssh_allow_groups: 'bad group'")
    assert any(e.startswith("site_ssh_allow_users:") for e in sm.site_model_errors({"site_ssh_allow_users": ["a b"]}))


# --- Test clients (verify.yml's test_clients group) -------------------------------------------

# Test clients of the example site, as docs/inventory.md ("Test clients") shows them: every kind,
# and one with none of the three variables (an outsider: valid, it stands for someone unknown).
GOOD_TEST_CLIENTS = {
    "mri-console": {"test_modality": "mri-1", "ansible_connection": "ssh"},
    "dr-smith-laptop": {"test_vpn_client": "dr-smith", "test_users": ["dr-smith"]},
    "gateway-site-a": {"test_vpn_client": "site-a-gw", "test_users": ["admin", "mri-upload"]},
    "no-users": {"test_users": []},
    "outsider": {},
}

# (id, one test client's variables, the variable the message names, a piece of the fix)
BAD_TEST_CLIENTS = [
    ("test-users-typo", {"test_users": ["dr-smit"]}, "test_users", "did you mean 'dr-smith'?"),
    ("test-users-one-typo-of-two", {"test_users": ["admin", "mri-uplaod"]}, "test_users", "use one of admin, dr-jones, dr-smith, mri-upload"),
    ("test-users-not-a-list", {"test_users": "dr-smith"}, "test_users", "write a YAML list of site_users names"),
    ("test-users-not-names", {"test_users": [7]}, "test_users", "write a site_users name as text"),
    ("test-modality-typo", {"test_modality": "mri1"}, "test_modality", "did you mean 'mri-1'?"),
    ("test-modality-a-list", {"test_modality": ["mri-1"]}, "test_modality", "write a site_modalities name as text"),
    ("test-vpn-client-typo", {"test_vpn_client": "dr-jone"}, "test_vpn_client", "did you mean 'dr-jones'?"),
    ("test-vpn-client-unknown", {"test_vpn_client": "zzzz"}, "test_vpn_client", "or remove test_vpn_client from the host"),
    ("test-vpn-client-empty", {"test_vpn_client": None}, "test_vpn_client", "write a site_vpn_clients name as text"),
]


def test_test_clients_of_every_kind_and_none_pass():
    assert sm.verify_client_errors(GOOD_TEST_CLIENTS, site_facts("example")) == []


def test_the_lab_test_clients_pass():
    from site_inventory import inventory_test_clients

    clients = inventory_test_clients("lab")
    assert len(clients) >= 7 and {} in [{k: v for k, v in c.items() if k.startswith("test_")} for c in clients.values()]
    assert sm.verify_client_errors(clients, site_facts("lab")) == []


@pytest.mark.parametrize("name, variables, variable, fix", BAD_TEST_CLIENTS, ids=[case[0] for case in BAD_TEST_CLIENTS])
def test_bad_test_client_is_refused_naming_the_host_the_variable_and_the_fix(name, variables, variable, fix):
    errors = sm.verify_client_errors({**GOOD_TEST_CLIENTS, name: variables}, site_facts("example"))
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"test_clients host {name}: {variable} "), errors
    assert fix in errors[0].partition("; ")[2], errors


def test_test_client_message_reads_as_documented():
    errors = sm.verify_client_errors({"orlab-dr-one": {"test_users": ["dr-on"]}}, site_facts("lab"))
    assert errors == ["test_clients host orlab-dr-one: test_users names 'dr-on', which is not in site_users; "
                      "use one of admin, dr-one, dr-two, mri-upload (did you mean 'dr-one'?), or remove it from test_users"]


def test_a_test_client_of_a_site_without_that_fact_is_refused():
    facts = {k: v for k, v in site_facts("example").items() if k not in ("site_vpn_clients", "site_vpn")}
    errors = sm.verify_client_errors({"laptop": {"test_vpn_client": "dr-smith"}}, facts)
    assert errors == ["test_clients host laptop: test_vpn_client names 'dr-smith', but the site has no site_vpn_clients; "
                      "add 'dr-smith' to site_vpn_clients, or remove test_vpn_client from the host"]


def test_a_malformed_site_fact_is_left_to_the_site_model():
    facts = {**site_facts("example"), "site_users": "admin"}
    assert sm.verify_client_errors({"laptop": {"test_users": ["admin"]}}, facts) == []
    assert any(e.startswith("site_users:") for e in sm.site_model_errors(facts))


def test_a_modality_clashing_with_a_role_aet_names_both_fixes():
    facts = changed({("site_modalities", MRI, "aet"): "verify"})
    errors = [e for e in errors_of(facts) if e.startswith("site_modalities[mri-1].aet:")]
    assert errors == ["site_modalities[mri-1].aet: 'verify' is already used by verify.yml's self-test (orthanc_verify_aet) "
                      "(AE titles are compared ignoring case); give every modality its own AE title, "
                      "or set orthanc_verify_aet to another AE title"]
