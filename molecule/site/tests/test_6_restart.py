"""After every container restarts, the services come back by themselves and the checks pass
again; re-running site.yml then changes nothing and keeps every stored instance."""

import subprocess
import time

import pytest

from conftest import (PACS_NAME, all_instances, echo, echo_ok, host, hosts_of, inventory, play, recap, site,
                      tunnel_address, wait_for)


def _containers() -> list[str]:
    names = []
    def walk(node):
        names.extend((node.get("hosts") or {}).keys())
        for child in (node.get("children") or {}).values():
            walk(child or {})
    walk(inventory()["all"])
    return names


def _booted(name: str) -> str:
    """systemd's state once it has booted (right after a restart its bus may not answer yet)."""
    state = ""
    for _ in range(30):
        state = host(name).run("systemctl is-system-running --wait").stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(2)
    return state


@pytest.fixture(scope="module")
def before():
    instances = all_instances()
    assert len(instances) >= 9
    subprocess.run(["docker", "restart", "-t", "20", *_containers()], check=True, capture_output=True, timeout=300)
    for name in _containers():
        assert _booted(name) in ("running", "degraded"), name
    return instances


def test_pacs_services_come_back(before):
    pacs = host(PACS_NAME)
    for unit in ("orthanc", "nginx", "fail2ban", "ssh", "openvpn-server@orthanc-remote"):
        assert wait_for(lambda: pacs.service(unit).is_running, timeout=60), unit
    assert "Status: active" in pacs.check_output("ufw status")


def test_every_tunnel_comes_back(before):
    for box, address in [(h, next(c["address"] for c in site()["site_vpn_clients"] if c["name"] == v["test_vpn_client"]))
                         for h, v in {**hosts_of("lab_vpn_gateways"), **hosts_of("lab_radiologists")}.items()]:
        assert wait_for(lambda: f" {address}/" in tunnel_address(box), timeout=90), box


def test_modalities_reach_the_pacs_again(before):
    for m in site()["site_modalities"]:
        if "echo" in m["allow"]:
            assert wait_for(lambda: echo_ok(echo(m["name"])), timeout=60), m["name"]


def test_radiologists_log_in_again(before):
    from test_3_radiologists import _curl
    for name, box in {v["test_vpn_client"]: h for h, v in hosts_of("lab_radiologists").items()}.items():
        assert wait_for(lambda: _curl(box, name, "/studies")[0] == "200", timeout=60), name


def test_stored_instances_survive_the_restart(before):
    assert all_instances() == before


def test_rerunning_site_yml_changes_nothing_and_keeps_the_data(before):
    result = play("site.yml")
    assert result.returncode == 0
    assert recap(result, PACS_NAME)["changed"] == 0
    assert all_instances() == before


def test_verify_playbook_passes_after_the_restart(before):
    result = play("playbooks/verify.yml")
    assert result.returncode == 0 and recap(result, PACS_NAME)["failed"] == 0
