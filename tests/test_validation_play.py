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


def run(tmp_path, changes: dict, playbook: str = "playbooks/validate.yml", test_clients: dict | None = None,
        limit: str | None = None) -> tuple[int, str]:
    inventory = tmp_path / "inventory"
    if inventory.exists():
        shutil.rmtree(inventory)
    (inventory / "group_vars" / "all").mkdir(parents=True)
    groups: dict = {"pacs": {"hosts": {"orthanc-remote-no-such-container": {"ansible_connection": "community.docker.docker"}}}}
    if test_clients is not None:
        # Containers that do not exist either: contacting one would fail the run as unreachable.
        groups["test_clients"] = {"hosts": {host: dict(variables, ansible_connection="community.docker.docker")
                                            for host, variables in test_clients.items()}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": groups}}))
    variables = dict(inventory_vars("example"), site_artifacts_dir=str(tmp_path / "artifacts"), **changes)
    (inventory / "group_vars" / "all" / "site.yml").write_text(yaml.safe_dump(variables))
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    result = subprocess.run([PLAYBOOK, "-i", str(inventory), playbook] + (["--limit", limit] if limit else []), cwd=ROOT,
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


def test_the_lab_inventory_passes_with_its_test_clients():
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    result = subprocess.run([PLAYBOOK, "-i", "inventories/lab", "playbooks/validate.yml"], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and "unreachable=0" in result.stdout, result.stdout + result.stderr


def test_verify_refuses_a_test_client_naming_nothing_before_any_host_is_contacted(tmp_path):
    clients = {"orthanc-remote-no-such-laptop": {"test_vpn_client": "dr-smith", "test_users": ["dr-smit"]},
               "orthanc-remote-no-such-console": {"test_modality": "mri1"},
               "orthanc-remote-no-such-outsider": {}}
    rc, out = run(tmp_path, {}, "playbooks/verify.yml", clients)
    assert rc != 0 and "unreachable=0" in out and "unreachable=1" not in out, out
    assert ("- test_clients host orthanc-remote-no-such-laptop: test_users names 'dr-smit', which is not in site_users; "
            "use one of admin, dr-jones, dr-smith, mri-upload (did you mean 'dr-smith'?), or remove it from test_users") in out
    assert ("- test_clients host orthanc-remote-no-such-console: test_modality names 'mri1', which is not in site_modalities; "
            "use one of ct-1, mri-1 (did you mean 'mri-1'?), or remove test_modality from the host") in out
    assert "orthanc-remote-no-such-outsider:" not in out.split("PLAY RECAP", 1)[0]
    # A run limited to other hosts does not judge that test client (verify's table skips it too).
    rc, out = run(tmp_path, {}, "playbooks/validate.yml", clients, limit="pacs,orthanc-remote-no-such-outsider")
    assert rc == 0, out


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
