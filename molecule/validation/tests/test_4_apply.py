"""Day-2 through the README's own commands: check, apply, add and revoke, hand-outs, status.

Runs last, on the server test_2 and test_3 provisioned. Each command is the README's `make`
target (only `INVENTORY=` differs: the inventory lives in a temporary directory), and each test
asserts the "expected output" column of the README's Day-2 table:

- `make check` on a valid inventory changes nothing; on a bad one it prints the report header and
  one `path: what; fix` line per problem;
- `make apply` provisions the whole site (every role, VPN included); then adding a modality
  behind a new gateway, adding a radiologist and revoking another in the inventory and running
  `make apply` again writes the new hand-outs ("First hand-out for this entry"), the new VPN
  profile, removes the revoked one's profile and pages, lists them as removed, and revokes the
  certificate in the CRL the server uses;
- `make handouts` with nothing changed reports changed=0;
- `make status` shows who may connect from where (the revoked radiologist as REVOKED) and passes
  once log_monitoring's checks exist.
"""

from __future__ import annotations

import copy
import json
import pathlib
import re

import pytest
import testinfra
from conftest import run_make, write_inventory

HOST = testinfra.get_host("docker://mol-validation-pacs")
GATEWAY = {"name": "gw-b", "kind": "modality_gateway", "address": "10.231.45.10", "site_subnets": ["192.168.77.0/24"]}
NEW_MODALITY = {"name": "mri-2", "aet": "MRI2", "host": "192.168.77.10", "allow": ["echo", "store"], "vpn_gateway": "gw-b"}


def first_site(artifacts: pathlib.Path) -> dict:
    """A whole site: direct CT, two radiologists on the VPN, generated passwords, internal CA."""
    return {
        "site_name": "dayzwo",
        "site_pacs_fqdn": "pacs.dayzwo.test",
        "site_pacs_addresses": ["10.231.44.10"],
        "site_admin_sources": ["10.231.44.1/32"],
        "site_dicom": {"aet": "DAYZWO_PACS", "port": 4242, "tls": False},
        "site_modalities": [{"name": "ct-1", "aet": "CT1", "host": "10.231.44.20", "allow": ["echo", "store"]}],
        "site_vpn": {"enabled": True, "network": "10.231.45.0/24", "port": 1194, "proto": "udp",
                     "sources": ["10.231.44.0/24"]},
        "site_vpn_clients": [{"name": "dr-one", "kind": "radiologist", "address": "10.231.45.20"},
                             {"name": "dr-two", "kind": "radiologist", "address": "10.231.45.21"}],
        "site_vpn_revoked": [],
        "site_users": [{"name": "admin", "role": "admin"}, {"name": "dr-one", "role": "viewer"},
                       {"name": "dr-two", "role": "viewer"}],
        "site_artifacts_dir": str(artifacts),
        "site_certificates": {"https": {"mode": "internal_ca"}},
    }


def second_site(artifacts: pathlib.Path) -> dict:
    """The README's three edits at once: a modality behind a new gateway, dr-three added, dr-two revoked."""
    facts = copy.deepcopy(first_site(artifacts))
    facts["site_modalities"].append(NEW_MODALITY)
    facts["site_vpn_clients"] += [GATEWAY, {"name": "dr-three", "kind": "radiologist", "address": "10.231.45.22"}]
    facts["site_users"].append({"name": "dr-three", "role": "viewer"})
    facts["site_vpn_revoked"] = ["dr-two"]
    return facts


def recap_failed_zero(out: str) -> bool:
    return re.search(r"mol-validation-pacs\s*: ok=\d+\s+changed=\d+\s+unreachable=0\s+failed=0", out) is not None


def changed_count(out: str) -> int:
    return int(re.search(r"mol-validation-pacs\s*: ok=\d+\s+changed=(\d+)", out).group(1))


def certificate_serial(path: str) -> str:
    return HOST.check_output(f"openssl x509 -noout -serial -in {path}").split("=", 1)[1].strip()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("apply")
    artifacts = workdir / "artifacts"
    return workdir, artifacts


def test_make_check_passes_a_valid_inventory_and_reports_a_bad_one(site):
    workdir, artifacts = site
    rc, out = run_make("check", write_inventory(workdir, first_site(artifacts)))
    assert rc == 0 and recap_failed_zero(out) and changed_count(out) == 0, out
    bad = first_site(artifacts)
    bad["site_dicom"] = {"aet": "DAYZWO_PACS", "port": 70000, "tls": False}
    bad["site_modalites"] = []
    rc, out = run_make("check", write_inventory(workdir, bad))
    assert rc != 0
    assert "The inventory is inconsistent; fix these (docs/inventory.md, roles/<role>/README.md):" in out, out
    assert re.search(r"- site_dicom\.port: .*; ", out), out
    assert re.search(r"- site_modalites: .*site_modalities", out), out


def test_make_apply_provisions_the_whole_site(site):
    workdir, artifacts = site
    rc, out = run_make("apply", write_inventory(workdir, first_site(artifacts)))
    assert rc == 0 and recap_failed_zero(out), out[-6000:]
    for name in ("dr-one", "dr-two"):
        assert (artifacts / "vpn" / f"{name}.ovpn").is_file()
        assert (artifacts / "handouts" / f"radiologist-{name}.md").is_file()
    assert (artifacts / "handouts" / "modality-ct-1.md").is_file()
    assert HOST.service("openvpn-server@orthanc-remote").is_running


def test_make_apply_adds_a_modality_and_a_radiologist_and_revokes_one(site):
    workdir, artifacts = site
    handouts = artifacts / "handouts"
    revoked_serial = certificate_serial("/etc/openvpn/server/pki/issued/dr-two.crt")
    rc, out = run_make("apply", write_inventory(workdir, second_site(artifacts)))
    assert rc == 0 and recap_failed_zero(out), out[-6000:]

    # Add a modality: its hand-out is new, in three formats, and says so.
    for suffix in (".md", ".html", ".json"):
        assert (handouts / f"modality-mri-2{suffix}").is_file(), suffix
    page = (handouts / "modality-mri-2.md").read_text()
    assert "First hand-out for this entry" in page
    fields = json.loads((handouts / "modality-mri-2.json").read_text())
    assert "MRI2" in json.dumps(fields) and "DAYZWO_PACS" in json.dumps(fields)
    assert (artifacts / "vpn" / "gw-b.ovpn").is_file(), "the new gateway's profile"

    # Add a radiologist: a profile and a hand-out.
    assert (artifacts / "vpn" / "dr-three.ovpn").is_file()
    assert "First hand-out for this entry" in (handouts / "radiologist-dr-three.md").read_text()

    # Revoke a radiologist: profile and pages gone, listed as removed, certificate in the server's CRL.
    assert not (artifacts / "vpn" / "dr-two.ovpn").exists()
    for suffix in (".md", ".html", ".json"):
        assert not (handouts / f"radiologist-dr-two{suffix}").exists(), suffix
    index = (handouts / "index.md").read_text()
    removed = index.split("Removed from the inventory", 1)
    assert len(removed) == 2 and "radiologist-dr-two" in removed[1], index
    crl = HOST.check_output("openssl crl -noout -text -in /etc/openvpn/server/crl.pem")
    assert f"Serial Number: {revoked_serial}" in crl, crl


def test_make_handouts_changes_nothing_when_the_inventory_did_not_change(site):
    workdir, artifacts = site
    rc, out = run_make("handouts", write_inventory(workdir, second_site(artifacts)))
    assert rc == 0 and recap_failed_zero(out) and changed_count(out) == 0, out[-4000:]


def test_make_status_shows_the_site_after_the_changes(site):
    workdir, artifacts = site
    rc, out = run_make("status", write_inventory(workdir, second_site(artifacts)))
    assert "modality mri-2 (AE MRI2) from 192.168.77.10 through VPN gateway gw-b: DICOM 4242 (echo, store)" in out, out
    assert "vpn radiologist dr-three at 10.231.45.22: HTTPS 443" in out
    assert "vpn radiologist dr-two at 10.231.45.21 REVOKED: nothing" in out
    assert "Status: active" in out, "the host's ufw status"
    assert "/etc/orthanc-remote/tls/https.crt: " in out
    # log_monitoring is applied now: the checks part runs and passes (it fails only when a check is CRITICAL).
    assert rc == 0 and recap_failed_zero(out), out[-4000:]
