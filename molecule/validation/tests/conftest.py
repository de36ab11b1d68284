"""Run the project's playbooks against this scenario's container from a throwaway inventory."""

from __future__ import annotations

import os
import pathlib
import subprocess

import yaml

PROJECT = pathlib.Path(__file__).resolve().parents[3]
HOST_NAME = "mol-validation-pacs"


def write_inventory(directory: pathlib.Path, variables: dict) -> pathlib.Path:
    """An inventory whose only PACS host is this scenario's container, with ``variables``."""
    inventory = directory / "inventory"
    (inventory / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"pacs": {"hosts": {
        HOST_NAME: {"ansible_connection": "community.docker.docker"}}}}}}))
    (inventory / "group_vars" / "all" / "site.yml").write_text(yaml.safe_dump(variables))
    return inventory


def _project_env() -> dict[str, str]:
    """The environment of an admin's shell: the project's own ansible.cfg, not molecule's."""
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    return env


def run_playbook(inventory: pathlib.Path, playbook: str, *args: str) -> tuple[int, str]:
    """``ansible-playbook`` with the project's own ansible.cfg (roles, filter plugins)."""
    result = subprocess.run(["ansible-playbook", "-i", str(inventory), playbook, *args], cwd=PROJECT,
                            capture_output=True, text=True, env=_project_env(), timeout=1200)
    return result.returncode, result.stdout + result.stderr


def run_make(target: str, inventory: pathlib.Path, **variables: str) -> tuple[int, str]:
    """A day-2 command exactly as the README gives it (``make <target> SITE=...``), on ``inventory``."""
    command = ["make", "--no-print-directory", "-C", str(PROJECT), target, f"INVENTORY={inventory}",
               *(f"{name}={value}" for name, value in variables.items())]
    result = subprocess.run(command, capture_output=True, text=True, env=_project_env(), timeout=1800)
    return result.returncode, result.stdout + result.stderr
