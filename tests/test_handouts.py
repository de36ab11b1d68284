"""Tests for filter_plugins/handouts.py: hand-outs carry the inventory's values, no secret, and their changes."""

from __future__ import annotations

import json

import pytest

import handouts as ho
from site_inventory import site_facts

SECRET = "Vaulted-Secret-Value-93k"


@pytest.mark.parametrize("inventory", ["example", "lab"])
def test_every_modality_handout_carries_the_inventory_values(inventory):
    facts = site_facts(inventory)
    files = ho.site_handouts(facts)["files"]
    dicom = facts["site_dicom"]
    for modality in facts["site_modalities"]:
        fields = json.loads(files[f"modality-{modality['name']}.json"])
        assert fields["calling_aet"] == modality["aet"]
        assert fields["called_aet"] == dicom["aet"]
        assert fields["port"] == dicom["port"]
        assert fields["source_address"] == modality["host"]
        assert fields["tls"] is bool(dicom.get("tls") and modality.get("tls"))
        for suffix in (".md", ".html"):
            page = files[f"modality-{modality['name']}{suffix}"]
            for value in (modality["aet"], dicom["aet"], str(dicom["port"]), modality["host"], fields["host"]):
                assert value in page, (suffix, value)


@pytest.mark.parametrize("inventory", ["example", "lab"])
def test_every_radiologist_handout_carries_the_url_profile_and_login(inventory):
    facts = site_facts(inventory)
    files = ho.site_handouts(facts)["files"]
    radiologists = [c for c in facts["site_vpn_clients"] if c["kind"] == "radiologist"]
    assert radiologists
    for client in radiologists:
        fields = json.loads(files[f"radiologist-{client['name']}.json"])
        assert fields["explorer_url"].startswith("https://10.8.0.1")
        for suffix in (".md", ".html"):
            page = files[f"radiologist-{client['name']}{suffix}"]
            for value in (fields["explorer_url"], f"vpn/{client['name']}.ovpn", client["address"], facts["site_pacs_fqdn"]):
                assert value in page, (suffix, value)


def test_direct_and_gateway_modalities_get_their_own_path():
    files = ho.site_handouts(site_facts("example"))["files"]
    mri = json.loads(files["modality-mri-1.json"])
    ct = json.loads(files["modality-ct-1.json"])
    assert mri["path"] == "vpn_gateway" and mri["host"] == "10.8.0.1"
    assert mri["gateway"] == {"name": "site-a-gw", "profile": "vpn/site-a-gw.ovpn", "tunnel_address": "10.8.0.10",
                              "site_subnets": ["192.168.50.0/24"], "route_to": "10.8.0.0/24"}
    assert ct["path"] == "direct" and ct["host"] == "pacs.centre-a.example.org" and ct["gateway"] is None
    assert ct["tls_files"]["certificate"] == "modalities/ct-1/client.crt"
    assert "route 10.8.0.0/24 via" in files["modality-mri-1.md"]


@pytest.mark.parametrize("inventory", ["example", "lab"])
def test_modality_companion_is_enough_to_configure_a_client(inventory):
    """The JSON companion alone gives a DICOM client everything: AE titles, where, TLS files."""
    facts = site_facts(inventory)
    files = ho.site_handouts(facts)["files"]
    tunnel = "10.8.0.1" if facts.get("site_vpn", {}).get("enabled") else None
    for modality in facts["site_modalities"]:
        fields = json.loads(files[f"modality-{modality['name']}.json"])
        assert (fields["calling_aet"], fields["called_aet"], fields["port"]) == (
            modality["aet"], facts["site_dicom"]["aet"], facts["site_dicom"]["port"])
        if modality.get("vpn_gateway"):
            assert fields["host"] == tunnel and fields["gateway"]["name"] == modality["vpn_gateway"]
        else:
            assert fields["host"] == facts["site_pacs_fqdn"]
            assert fields["host_addresses"] == facts["site_pacs_addresses"]
        if fields["tls"]:
            assert set(fields["tls_files"]) == {"certificate", "private_key", "ca"}


def test_no_handout_holds_a_password_or_key_material():
    facts = site_facts("example")
    facts["site_users"][1]["password"] = SECRET
    files = ho.site_handouts(facts)["files"]
    for name, text in files.items():
        assert SECRET not in text, name
        assert "BEGIN" not in text and "PRIVATE KEY" not in text
    page = files["radiologist-dr-smith.md"]
    assert "over another channel" in page and "credentials/" not in page  # vaulted: nothing to point to
    assert "credentials/dr-jones.txt" in files["radiologist-dr-jones.md"]  # generated: IT knows where


def test_a_second_run_writes_the_same_files():
    facts = site_facts("example")
    first = ho.site_handouts(facts)
    second = ho.site_handouts(facts, json.loads(first["files"]["state.json"]))
    assert second["files"] == first["files"]
    assert "First hand-out" in first["files"]["modality-ct-1.md"]


def test_changes_since_the_last_run_are_listed_and_kept_until_the_next_change():
    facts = site_facts("example")
    state = json.loads(ho.site_handouts(facts)["files"]["state.json"])
    facts["site_dicom"]["port"] = 11112
    facts["site_modalities"][1]["aet"] = "CT_MAIN"
    changed = ho.site_handouts(facts, state)
    page = changed["files"]["modality-ct-1.md"]
    assert "- port: 4242 -> 11112" in page and "- calling_aet: CT1 -> CT_MAIN" in page
    assert "<li>port: 4242 -&gt; 11112</li>" in changed["files"]["modality-mri-1.html"]
    again = ho.site_handouts(facts, json.loads(changed["files"]["state.json"]))
    assert again["files"] == changed["files"]


def test_removed_and_revoked_entries_lose_their_pages():
    facts = site_facts("example")
    state = json.loads(ho.site_handouts(facts)["files"]["state.json"])
    facts["site_modalities"] = facts["site_modalities"][:1]
    facts["site_vpn_revoked"] = ["dr-jones"]
    result = ho.site_handouts(facts, state)
    assert "modality-ct-1.md" in result["remove"] and "radiologist-dr-jones.json" in result["remove"]
    assert "modality-ct-1.md" not in result["files"]
    assert "- modality-ct-1" in result["files"]["index.md"]
    again = ho.site_handouts(facts, json.loads(result["files"]["state.json"]))
    assert again["files"] == result["files"]


def test_html_is_escaped():
    facts = site_facts("example")
    facts["site_modalities"][1]["aet"] = "CT<1>&"
    page = ho.site_handouts(facts)["files"]["modality-ct-1.html"]
    assert "CT&lt;1&gt;&amp;" in page and "CT<1>" not in page


def test_radiologist_without_account_is_told_to_ask_it():
    facts = site_facts("example")
    facts["site_users"] = [u for u in facts["site_users"] if u["name"] != "dr-jones"]
    page = ho.site_handouts(facts)["files"]["radiologist-dr-jones.md"]
    assert "ask IT to add one" in page


def test_https_port_other_than_443_is_in_the_url():
    facts = site_facts("example")
    facts["site_https_port"] = 8443
    fields = json.loads(ho.site_handouts(facts)["files"]["radiologist-dr-smith.json"])
    assert fields["explorer_url"] == "https://10.8.0.1:8443/app/explorer.html"
