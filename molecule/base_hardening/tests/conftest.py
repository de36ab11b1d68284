"""Helpers for the base_hardening scenario: the hardened server, its plain twin (same image,
nothing applied) and an admin workstation, plus re-runs of converge.yml with extra vars."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra

SERVER = "10.231.34.10"
SCENARIO = Path(__file__).resolve().parent.parent


def host(name: str):
    """A testinfra host for a container of this scenario (server, plain, admin)."""
    return testinfra.get_host(f"docker://mol-hard-{name}")


def converge(extra_vars: dict, tags: str = "", *options: str) -> subprocess.CompletedProcess:
    """Run converge.yml again, as molecule does, with extra vars on top of the scenario's."""
    ephemeral = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(ephemeral / "ansible.cfg"))
    env["ANSIBLE_NOCOLOR"] = "1"
    extra = ephemeral / "hard-verify-extra-vars.json"
    extra.write_text(json.dumps(extra_vars))
    playbook = Path(sys.executable).parent / "ansible-playbook"
    argv = [str(playbook), "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(SCENARIO / "converge.yml"), "-e", f"@{extra}"]
    if tags:
        argv += ["--tags", tags]
    argv += list(options)
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    print(result.stdout[-6000:])
    return result


_LAST_SSH = [0.0]


def pace_ssh() -> None:
    """ufw_firewall rate-limits SSH (6 new connections in 30 s from one address): space them out."""
    wait = _LAST_SSH[0] + 6.5 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    _LAST_SSH[0] = time.monotonic()


def ssh(user: str, command: str = "id -un", *options: str):
    """An SSH login from the admin workstation with the admin key (BatchMode: never a prompt)."""
    pace_ssh()
    opts = " ".join(["-o BatchMode=yes", "-o StrictHostKeyChecking=no", "-o ConnectTimeout=5", *options])
    return host("admin").run(f"ssh {opts} {user}@{SERVER} {command}")


@pytest.fixture(scope="module")
def server():
    return host("server")


def sysctl_file_keys(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([a-z0-9_.]+) = (\S+)$", text, re.M))
