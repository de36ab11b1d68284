"""The lab (inventories/lab), where verify.yml and the whole-site scenario run, has the example
inventory's shape (inventories/example, what a new site copies): DICOM TLS only, a modality
behind a VPN gateway and one sending TLS directly, radiologists on the VPN, a user of every role.
If the example gains a kind of path the lab lacks, this fails: the lab must grow with it."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def facts(site: str) -> dict:
    return yaml.safe_load((ROOT / "inventories" / site / "group_vars" / "all" / "site.yml").read_text())


def shape(site: dict) -> set[str]:
    """The kinds of path and account a site has (not its names or numbers)."""
    kinds = {f"dicom tls={bool(site['site_dicom'].get('tls'))}"}
    for m in site["site_modalities"]:
        kinds.add(f"modality {'behind a gateway' if m.get('vpn_gateway') else 'direct'} tls={bool(m.get('tls'))}")
        kinds.update(f"modality allows {command}" for command in m.get("allow", []))
    kinds.update(f"vpn client {c['kind']}" for c in site["site_vpn_clients"] if c["kind"] != "admin")
    kinds.update(f"user role {u['role']}" for u in site["site_users"])
    kinds.add(f"dicom certificate {site['site_certificates']['dicom']['mode']}")
    return kinds


def test_the_lab_has_every_kind_of_path_of_the_example():
    assert shape(facts("example")) - shape(facts("lab")) == set()
    assert "dicom tls=True" in shape(facts("example"))


def test_the_lab_runs_verify_from_a_test_client_of_every_kind():
    hosts = yaml.safe_load((ROOT / "inventories" / "lab" / "hosts.yml").read_text())
    clients = {}

    def walk(node: dict) -> None:
        for name, child in (node.get("children") or {}).items():
            clients.update((child or {}).get("hosts") or {})
            walk(child or {})
    walk(hosts["all"]["children"]["test_clients"])
    lab = facts("lab")
    assert {v["test_modality"] for v in clients.values() if "test_modality" in v} == {m["name"] for m in lab["site_modalities"]}
    assert {v["test_vpn_client"] for v in clients.values() if "test_vpn_client" in v} == {c["name"] for c in lab["site_vpn_clients"]}
    tested_roles = {u["role"] for u in lab["site_users"] for v in clients.values() if u["name"] in v.get("test_users", [])}
    assert tested_roles == {"admin", "viewer", "uploader"}
