"""site.yml's first play (playbooks/validate.yml) run for real by ansible-playbook, on the controller.

The inventory's only host is a Docker container that does not exist: the first play must decide
everything without contacting it (a refused inventory never reaches a host; a valid one passes).
Role variables are checked there too, A's weakening overrides included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from site_inventory import ROOT, inventory_vars

# The virtualenv's ansible-playbook (the one next to this Python), else the one on PATH.
_BESIDE = Path(sys.executable).parent / "ansible-playbook"
PLAYBOOK = str(_BESIDE) if _BESIDE.is_file() else shutil.which("ansible-playbook")
pytestmark = pytest.mark.skipif(PLAYBOOK is None, reason="needs ansible-playbook (make venv)")


def run(tmp_path, changes: dict, playbook: str = "playbooks/validate.yml") -> tuple[int, str]:
    inventory = tmp_path / "inventory"
    if inventory.exists():
        shutil.rmtree(inventory)
    (inventory / "group_vars" / "all").mkdir(parents=True)
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"pacs": {"hosts": {
        "orthanc-remote-no-such-container": {"ansible_connection": "community.docker.docker"}}}}}}))
    variables = dict(inventory_vars("example"), site_artifacts_dir=str(tmp_path / "artifacts"), **changes)
    (inventory / "group_vars" / "all" / "site.yml").write_text(yaml.safe_dump(variables))
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    result = subprocess.run([PLAYBOOK, "-i", str(inventory), playbook], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=300)
    return result.returncode, result.stdout + result.stderr


def test_the_example_passes_without_contacting_the_host(tmp_path):
    rc, out = run(tmp_path, {})
    assert rc == 0, out
    assert "unreachable=0" in out and "failed=0" in out


def test_site_facts_and_role_variables_are_refused_before_any_host_is_contacted(tmp_path):
    rc, out = run(tmp_path, {"site_modalites": [], "site_https_port": 4242})
    assert rc != 0 and "unreachable=0" in out, out
    assert "- site_modalites: unknown site fact (a typo?); did you mean site_modalities? rename it" in out
    assert "- site_https_port: port 4242/tcp is already used by site_dicom.port" in out


def test_role_variables_are_all_refused_at_once(tmp_path):
    rc, out = run(tmp_path, {"orthanc_config_overrides": {"AuthenticationEnabled": False},
                             "orthanc_dicom_scp_timeout": 0, "log_monitoring_fail2ban_bantime": "forever",
                             "ufw_firewall_comment_prefix": "Bad Prefix",
                             "base_hardening_sysctl_settings": {"net.ipv4.ip_forward": 0}})
    assert rc != 0 and "unreachable=0" in out, out
    for line in ("- orthanc_config_overrides: AuthenticationEnabled is refused because it would weaken a control",
                 "- orthanc_dicom_scp_timeout: 0 is not a whole number >= 1",
                 "- log_monitoring_fail2ban_bantime: 'forever' is not a fail2ban time",
                 "- ufw_firewall_comment_prefix: 'Bad Prefix' is not usable",
                 "- base_hardening_sysctl_settings: must not set net.ipv4.ip_forward"):
        assert line in out, line


def test_handouts_play_writes_every_page_on_the_controller_and_a_second_run_changes_nothing(tmp_path):
    rc, out = run(tmp_path, {}, "playbooks/handouts.yml")
    assert rc == 0 and "unreachable=0" in out, out
    handouts = tmp_path / "artifacts" / "handouts"
    names = {p.name for p in handouts.iterdir()}
    for entry in ("modality-mri-1", "modality-ct-1", "radiologist-dr-smith", "radiologist-dr-jones"):
        assert {f"{entry}.md", f"{entry}.html", f"{entry}.json"} <= names
    assert {"index.md", "state.json"} <= names
    assert oct(handouts.stat().st_mode)[-3:] == "700"
    rc, out = run(tmp_path, {}, "playbooks/handouts.yml")
    assert rc == 0 and "changed=0" in out, out
    rc, out = run(tmp_path, {"site_dicom": {"aet": "CENTRE_A_PACS", "port": 11112, "tls": True}}, "playbooks/handouts.yml")
    assert rc == 0, out
    assert "- port: 4242 -> 11112" in (handouts / "modality-ct-1.md").read_text()
