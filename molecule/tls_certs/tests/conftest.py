"""Shared helpers for the tls_certs scenario: hosts, file facts, and real runs of the role."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import testinfra

TLS = "/etc/orthanc-remote/tls"
CA = "/etc/orthanc-remote/ca"
EPHEMERAL = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp"))
SCENARIO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def server():
    return testinfra.get_host("docker://mol-tls-server")


@pytest.fixture(scope="session")
def alt():
    return testinfra.get_host("docker://mol-tls-alt")


def ok(host, command: str) -> str:
    """Run ``command`` on ``host``; fail the test with its output unless it exits 0."""
    result = host.run(command)
    assert result.rc == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def run_role(limit: str, extra_vars: dict | None = None) -> subprocess.CompletedProcess:
    """A real ansible-playbook run of converge.yml (the role) on one host with extra vars."""
    env = dict(os.environ)
    env.setdefault("ANSIBLE_CONFIG", str(EPHEMERAL / "ansible.cfg"))
    env.update({"ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"})
    command = [
        "ansible-playbook",
        "-i",
        os.environ.get("MOLECULE_INVENTORY_FILE", str(EPHEMERAL / "inventory")),
        str(SCENARIO / "converge.yml"),
        "--limit",
        limit,
        # Only the certificate concerns: packages, CA and modality packages are covered by converge.
        "--tags",
        "tls_certs_validate,tls_certs_server",
    ]
    if extra_vars:
        command += ["-e", json.dumps(extra_vars)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
