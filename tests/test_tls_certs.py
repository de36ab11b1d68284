"""Unit tests for filter_plugins/tls_certs.py (pure functions, no Ansible needed)."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

import site_model as sm
import tls_certs as tc

NOW = "20261129120000Z"


def asn1(delta_days: float) -> str:
    moment = datetime(2026, 11, 29, 12, tzinfo=timezone.utc) + timedelta(days=delta_days)
    return moment.strftime("%Y%m%d%H%M%SZ")


# --- SANs ------------------------------------------------------------------------------------------


def test_sans_fqdn_addresses_and_vpn_tunnel_address():
    sans = tc.certificate_sans("PACS.Example.org.", ["203.0.113.10", "2001:db8::0:1"], "10.8.0.1")
    assert sans == ["DNS:pacs.example.org", "IP:203.0.113.10", "IP:2001:db8::1", "IP:10.8.0.1"]


def test_sans_vpn_disabled_and_extra_names_deduplicated():
    sans = tc.certificate_sans(
        "pacs.example.org", ["203.0.113.10"], None,
        ["alt.example.org", "203.0.113.10", "PACS.example.org"],
    )
    assert sans == ["DNS:pacs.example.org", "IP:203.0.113.10", "DNS:alt.example.org"]


def test_sans_dns_only_for_acme():
    sans = tc.certificate_sans("pacs.example.org", ["203.0.113.10"], "10.8.0.1", dns_only=True)
    assert sans == ["DNS:pacs.example.org"]


def test_san_diff_normalises_ip_and_case():
    diff = tc.san_diff(["DNS:PACS.example.org", "IP:2001:db8:0::1"], ["DNS:pacs.example.org", "IP:2001:db8::1"])
    assert diff == {"missing": [], "extra": []}
    diff = tc.san_diff(["DNS:pacs.example.org"], ["DNS:pacs.example.org", "IP:10.8.0.1"])
    assert diff == {"missing": ["IP:10.8.0.1"], "extra": []}
    assert tc.san_diff(["DNS:old.example.org"], [])["extra"] == ["DNS:old.example.org"]


@given(st.lists(st.ip_addresses(), max_size=5), st.booleans())
def test_sans_hypothesis_every_address_once(addresses, vpn_on):
    sans = tc.certificate_sans("pacs.example.org", [str(a) for a in addresses], "10.8.0.1" if vpn_on else None)
    assert len(sans) == len(set(sans))
    assert sans[0] == "DNS:pacs.example.org"
    for address in addresses:
        assert "IP:" + str(ipaddress.ip_address(address)) in sans
    assert ("IP:10.8.0.1" in sans) == (vpn_on or ipaddress.ip_address("10.8.0.1") in addresses)
    assert tc.san_diff(sans, list(reversed(sans))) == {"missing": [], "extra": []}


# --- Renewal window ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "days_left, due",
    [(-1, True), (0, True), (29, True), (30, True), (30.01, False), (31, False), (800, False)],
)
def test_renewal_due_window_of_30_days(days_left, due):
    assert tc.renewal_due(asn1(days_left), 30, NOW) is due


def test_renewal_due_without_certificate():
    assert tc.renewal_due(None, 30, NOW) is True


@given(st.integers(min_value=-1000, max_value=3000), st.integers(min_value=1, max_value=365))
def test_renewal_due_hypothesis(days_left, renew_days):
    assert tc.renewal_due(asn1(days_left), renew_days, NOW) is (days_left <= renew_days)


def info(days_left=400, sans=("DNS:pacs.example.org",), fingerprint="aa:bb", issuer=None, subject=None):
    subject = subject or {"commonName": "pacs.example.org"}
    return {
        "not_after": asn1(days_left),
        "not_before": asn1(-1),
        "expired": days_left < 0,
        "subject_alt_name": list(sans),
        "public_key": "PUB",
        "public_key_fingerprints": {"sha256": fingerprint},
        "issuer": issuer if issuer is not None else {"commonName": "site orthanc-remote CA"},
        "subject": subject,
    }


CA = "site orthanc-remote CA"
SANS = ["DNS:pacs.example.org"]


def test_reissue_nothing_when_far_from_expiry():
    assert tc.reissue_reasons(info(), "internal_ca", SANS, "AA:BB", 30, NOW, CA) == []


def test_reissue_reasons_each_trigger():
    assert tc.reissue_reasons({}, "internal_ca", SANS, None, 30, NOW, CA) == ["missing"]
    assert tc.reissue_reasons(info(days_left=5), "internal_ca", SANS, "aa:bb", 30, NOW, CA) == ["renewal window"]
    assert tc.reissue_reasons(info(), "internal_ca", SANS + ["IP:10.8.0.1"], "aa:bb", 30, NOW, CA) == ["SANs changed"]
    assert tc.reissue_reasons(info(), "internal_ca", SANS, "cc:dd", 30, NOW, CA) == ["key changed"]
    self_signed = info(issuer={"commonName": "pacs.example.org"})
    assert tc.reissue_reasons(self_signed, "internal_ca", SANS, "aa:bb", 30, NOW, CA) == ["mode changed"]
    assert tc.reissue_reasons(self_signed, "self_signed", SANS, "aa:bb", 30, NOW, CA) == []
    assert tc.reissue_reasons(self_signed, "acme", SANS, "aa:bb", 30, NOW, CA) == ["mode changed"]
    assert tc.reissue_reasons(info(), "acme", SANS, "aa:bb", 30, NOW, CA) == ["mode changed"]
    acme = info(issuer={"commonName": "Pebble Intermediate CA 1"})
    assert tc.reissue_reasons(acme, "acme", SANS, "aa:bb", 30, NOW, CA) == []
    assert tc.reissue_reasons(acme, "self_signed", SANS, "aa:bb", 30, NOW, CA) == ["mode changed"]


def test_reissue_never_for_provided_certificates():
    assert tc.reissue_reasons({}, "provided", SANS, None, 30, NOW, CA) == []
    assert tc.reissue_reasons(info(days_left=1), "csr", SANS, None, 30, NOW, CA) == []


def test_reissue_check_mode_without_key_fingerprint():
    assert tc.reissue_reasons(info(), "internal_ca", SANS, None, 30, NOW, CA) == []


# --- Configuration ----------------------------------------------------------------------------------


# The rules about site_certificates and the names in it are the site model's (the one validator).


def _errors(certificates, fqdn, addresses, terms=False):
    facts = {"site_certificates": certificates, "site_pacs_fqdn": fqdn, "site_pacs_addresses": addresses,
             "site_dicom": {"tls": True}}
    return sm.site_model_errors(facts, {"acme_terms_agreed": terms, "needs_server_name": True})


def test_config_defaults_are_valid():
    assert _errors({}, "pacs.example.org", ["203.0.113.10"]) == []
    assert _errors(None, "pacs.example.org", []) == []


@pytest.mark.parametrize(
    "certificates, fqdn, addresses, terms, fragment",
    [
        ({"https": {"mode": "letsencrypt"}}, "p.example.org", [], False, "site_certificates.https.mode"),
        ({"key_type": "dsa"}, "p.example.org", [], False, "site_certificates.key_type"),
        ({"renew_days": 0}, "p.example.org", [], False, "site_certificates.renew_days"),
        ({"dicom": {"days": 20}}, "p.example.org", [], False, "site_certificates.dicom.days"),
        ({"https": {"mode": "provided"}}, "p.example.org", [], False, "site_certificates.https.certificate"),
        ({"https": {"mode": "acme"}}, "", ["203.0.113.10"], True, "needs site_pacs_fqdn"),
        ({"https": {"mode": "acme"}}, "p.example.org", [], False, "tls_certs_acme_terms_agreed"),
        ({"https": {"extra_sans": ["bad name!"]}}, "p.example.org", [], False, "extra_sans"),
        ({"https": {"certificate": 42}}, "p.example.org", [], False, "https.certificate"),
        ({"web": {}}, "p.example.org", [], False, "unknown key"),
        ({}, "", [], False, "site_pacs_fqdn: neither"),
        ({}, "not a name", [], False, "site_pacs_fqdn"),
        ("acme", "p.example.org", [], False, "site_certificates: 'acme' is not a mapping"),
        ({"https": "acme"}, "p.example.org", [], False, "site_certificates.https: 'acme' is not a mapping"),
    ],
)
def test_config_errors_name_variable(certificates, fqdn, addresses, terms, fragment):
    errors = _errors(certificates, fqdn, addresses, terms)
    assert any(fragment in e for e in errors), errors


def test_config_acme_accepted_with_terms():
    assert _errors({"https": {"mode": "acme"}}, "p.example.org", [], True) == []


# --- Plan -------------------------------------------------------------------------------------------


def plan(certificates, dicom_tls=True, modalities=()):
    return tc.certificate_plan(
        certificates, "pacs.example.org", ["203.0.113.10"], "10.8.0.1",
        {"tls": dicom_tls}, list(modalities), "/etc/orthanc-remote/tls", "/etc/orthanc-remote/ca",
    )


def test_plan_defaults_internal_ca_with_key_groups():
    entries = {e["name"]: e for e in plan({})}
    assert set(entries) == {"https", "dicom"}
    assert entries["https"]["mode"] == "internal_ca"
    assert entries["https"]["key_group"] == "www-data" and entries["https"]["key_mode"] == "0640"
    assert entries["dicom"]["key_group"] == "orthanc"
    assert entries["dicom"]["cert_path"] == "/etc/orthanc-remote/tls/dicom.crt"
    assert entries["https"]["sans"] == ["DNS:pacs.example.org", "IP:203.0.113.10", "IP:10.8.0.1"]
    assert entries["https"]["key_type"] == "ecdsa" and entries["https"]["renew_days"] == 30


def test_plan_no_dicom_without_dicom_tls_and_client_per_tls_modality():
    modalities = [
        {"name": "mri-1", "aet": "MRI1", "tls": True},
        {"name": "us-1", "aet": "US1", "tls": False},
        {"name": "ct-1", "aet": "CT1"},
    ]
    entries = plan({"key_type": "rsa"}, dicom_tls=False, modalities=modalities)
    assert [e["name"] for e in entries] == ["https", "modality-mri-1"]
    client = entries[1]
    assert client["key_path"] == "/etc/orthanc-remote/ca/clients/mri-1.key"
    assert client["key_mode"] == "0600" and client["key_group"] == "root"
    assert client["extended_key_usage"] == ["clientAuth"] and client["key_type"] == "rsa"


def test_plan_acme_drops_ip_sans_and_csr_with_certificate_becomes_provided():
    entries = {e["name"]: e for e in plan({"https": {"mode": "acme"}, "dicom": {"mode": "csr", "certificate": "x"}})}
    assert entries["https"]["sans"] == ["DNS:pacs.example.org"]
    assert entries["dicom"]["mode"] == "provided"
    assert plan({"dicom": {"mode": "csr"}})[1]["mode"] == "csr"


# --- Provided certificates --------------------------------------------------------------------------

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


def test_pem_helpers():
    text = f"junk\n{PEM}\ntext between\n{PEM}\n"
    assert tc.pem_certificates(text) == [PEM + "\n", PEM + "\n"]
    assert tc.pem_certificates(None) == []
    assert tc.is_pem(PEM) and not tc.is_pem("/srv/https.crt")
    assert tc.source_label("/srv/https.crt", "site_certificates.https.certificate") == (
        "site_certificates.https.certificate (/srv/https.crt)"
    )
    assert tc.source_label(PEM, "v").endswith("(inline PEM)")
    assert tc.source_label("", "v") == "v (not given)"


def provided(**kw):
    args = dict(
        label="site_certificates.https.certificate (/srv/https.crt)",
        info=info(),
        key_fingerprint="AA:BB",
        key_path="/etc/orthanc-remote/tls/https.key",
        wanted_sans=SANS,
        verify_rc=0,
        verify_output="/etc/orthanc-remote/pending/https.crt: OK",
        chain_label="site_certificates.https.chain (/srv/chain.pem)",
        now=NOW,
        csr_artifact="artifacts/csr/https.csr",
    )
    args.update(kw)
    return tc.provided_errors(**args)


def test_provided_good_certificate():
    assert provided() == []


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"key_fingerprint": "cc:dd"}, "key mismatch"),
        ({"info": info(days_left=-2)}, "expired"),
        ({"wanted_sans": SANS + ["IP:10.8.0.1"]}, "missing SAN: the certificate lacks IP:10.8.0.1"),
        (
            {"verify_rc": 2, "verify_output": "CN = x\nerror 20 at 0 depth lookup: unable to get local issuer certificate"},
            "incomplete chain",
        ),
        ({"info": {}}, "not a readable PEM certificate"),
    ],
)
def test_provided_errors_name_file_and_problem(change, fragment):
    errors = provided(**change)
    assert len(errors) == 1, errors
    assert errors[0].startswith("site_certificates.https.certificate (/srv/https.crt): ")
    assert fragment in errors[0]


def test_provided_not_yet_valid_and_chain_reason_quoted():
    future = info()
    future["not_before"] = asn1(3)
    assert "not yet valid" in provided(info=future)[0]
    error = provided(verify_rc=2, verify_output="error 20 at 0 depth lookup: unable to get local issuer certificate")[0]
    assert "unable to get local issuer certificate" in error and "site_certificates.https.chain" in error


def test_filter_module_exposes_every_filter():
    filters = tc.FilterModule().filters()
    for name in ("tls_certs_sans", "tls_certs_plan", "tls_certs_reissue_reasons", "tls_certs_provided_errors",
                 "tls_certs_renewal_due", "tls_certs_san_diff"):
        assert callable(filters[name])
