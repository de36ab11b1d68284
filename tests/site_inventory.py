"""Load an inventory's site facts the way the first play of site.yml sees them (plain YAML here)."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def inventory_vars(name: str) -> dict:
    """Every variable of ``inventories/<name>/group_vars/all/*.yml``, merged in file order."""
    merged: dict = {}
    for path in sorted((ROOT / "inventories" / name / "group_vars" / "all").glob("*.yml")):
        merged.update(yaml.safe_load(path.read_text()) or {})
    return merged


def site_facts(name: str) -> dict:
    """The ``site_*`` facts of an inventory (a deep copy: tests may change it)."""
    return copy.deepcopy({k: v for k, v in inventory_vars(name).items() if k.startswith("site_")})


def site_context(name: str) -> dict:
    """What the first play passes as the validator's context for this inventory."""
    variables = inventory_vars(name)
    return {"complete": True, "acme_terms_agreed": bool(variables.get("tls_certs_acme_terms_agreed", False))}


def inventory_test_clients(name: str) -> dict[str, dict]:
    """``{host: its variables}`` of every host under ``test_clients`` in ``inventories/<name>/hosts.yml``."""
    hosts = yaml.safe_load((ROOT / "inventories" / name / "hosts.yml").read_text())
    clients: dict[str, dict] = {}

    def walk(group: dict) -> None:
        for host, variables in (group.get("hosts") or {}).items():
            clients[host] = dict(variables or {})
        for child in (group.get("children") or {}).values():
            walk(child or {})

    walk((hosts["all"].get("children") or {}).get("test_clients") or {})
    return clients
