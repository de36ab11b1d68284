"""Every bad inventory of test_site_model.BAD, and bad role variables, run through `site.yml` itself.

One ansible-playbook run: each bad inventory is one host of the `pacs` group (its facts as host
variables), a Docker container that does not exist. Each must fail in site.yml's first play with
the message naming the fact and the fix, and the host must never be contacted (unreachable=0):
a refused inventory changes nothing. The unusual but valid inventories pass the same play.

A second run holds the bad test clients of test_site_model.BAD_TEST_CLIENTS (the `test_clients`
group is the whole inventory's, so they cannot share the first run's hosts): one PACS, the
example's facts, and every bad and good test client at once, none of them ever contacted.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import yaml

from site_inventory import ROOT, inventory_vars
from test_site_model import BAD, BAD_TEST_CLIENTS, GOOD_TEST_CLIENTS, UNUSUAL_VALID, changed
from test_validation_play import PLAYBOOK

# The validator's context comes from these role variables in a real inventory.
CONTEXT_VARIABLES = {"ssh_port": "ufw_firewall_ssh_port", "acme_terms_agreed": "tls_certs_acme_terms_agreed"}

# (id, role variables, the variable the message names, a piece of the fix)
BAD_ROLE_VARIABLES = [
    ("role-type-int", {"orthanc_http_port": "eight"}, "orthanc_http_port", "write a whole number"),
    ("role-type-bool", {"tls_certs_acme_terms_agreed": "maybe"}, "tls_certs_acme_terms_agreed", "true or false"),
    ("role-type-list", {"orthanc_extra_plugins": {"name": "orthanc-dicomweb"}}, "orthanc_extra_plugins", "a list of str"),
    ("role-typo", {"orthanc_htp_port": 8043}, "orthanc_htp_port", "did you mean orthanc_http_port"),
    ("role-unknown", {"log_monitoring_qqqqqqqqqqqqqqqq": 1}, "log_monitoring_qqqqqqqqqqqqqqqq", "roles/log_monitoring/README.md"),
    ("role-rule", {"orthanc_dicom_scp_timeout": 0}, "orthanc_dicom_scp_timeout", "whole number >= 1"),
    ("role-weakening", {"orthanc_config_overrides": {"AuthenticationEnabled": False}}, "orthanc_config_overrides", "weaken"),
    # verify.yml's self-test AE title, checked through the orthanc role's __orthanc_site_context.
    ("role-verify-aet-is-a-modality", {"orthanc_verify_aet": "mri1"}, "site_modalities[mri-1].aet",
     "or set orthanc_verify_aet to another AE title"),
    ("role-verify-aet-is-the-server", {"orthanc_verify_aet": "CENTRE_A_PACS"}, "orthanc_verify_aet",
     "give orthanc_verify_aet an AE title of its own"),
]


def host_variables(name: str, changes: dict, context: dict, role_variables: dict, artifacts) -> dict:
    """One host's variables: the example inventory with one mistake."""
    variables = {k: v for k, v in inventory_vars("example").items() if not k.startswith("site_")}
    variables.update(changed(changes))
    variables.update({CONTEXT_VARIABLES[k]: v for k, v in context.items()})
    variables.update(role_variables)
    variables.update(site_artifacts_dir=str(artifacts / name), ansible_connection="community.docker.docker")
    return variables


def run_site(tmp_path, hosts: dict, test_clients: dict | None = None) -> str:
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    groups: dict = {"pacs": {"hosts": hosts}}
    if test_clients is not None:
        groups["test_clients"] = {"hosts": {host: dict(variables, ansible_connection="community.docker.docker")
                                            for host, variables in test_clients.items()}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": groups}}))
    env = {k: v for k, v in os.environ.items() if k != "ANSIBLE_CONFIG"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", ANSIBLE_FORKS="8")
    result = subprocess.run([PLAYBOOK, "-i", str(inventory), "site.yml"], cwd=ROOT,
                            capture_output=True, text=True, env=env, timeout=1200)
    return result.stdout + result.stderr


def failure_messages(out: str) -> dict[str, str]:
    """``{host: the msg of its fatal result}`` from the default callback's output."""
    messages: dict[str, str] = {}
    for block in out.split("\nfatal: [")[1:]:
        host = block.split(" ", 1)[0].rstrip("]")
        body = block.split("    msg: |-\n", 1)[1] if "    msg: |-\n" in block else ""
        lines = []
        for line in body.splitlines():
            if not line.startswith("        "):
                break
            lines.append(line.strip())
        messages[host] = "\n".join(lines)
    return messages


def recap(out: str) -> dict[str, str]:
    return dict(re.findall(r"^(\S+)\s+:\s+(ok=.*)$", out.split("PLAY RECAP", 1)[1], re.M))


@pytest.fixture(scope="module")
def site_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("bad-through-site")
    hosts = {f"bad-{name}": host_variables(name, changes, context, {}, tmp_path)
             for name, changes, context, _path, _fix in BAD}
    hosts.update({f"bad-{name}": host_variables(name, {}, {}, variables, tmp_path)
                  for name, variables, _path, _fix in BAD_ROLE_VARIABLES})
    hosts.update({f"ok-{name}": host_variables(name, changes, {}, {}, tmp_path) for name, changes in UNUSUAL_VALID})
    out = run_site(tmp_path, hosts)
    return out, failure_messages(out), recap(out)


CASES = [(name, path, fix) for name, _c, _x, path, fix in BAD] + [(n, p, f) for n, _v, p, f in BAD_ROLE_VARIABLES]


# A password written as a template of a variable that is not defined (a vault entry never added):
# Ansible itself refuses to resolve the fact, in the first play, naming the variable and the line.
UNRESOLVABLE = {"password-template-literal": "'vault_dr_smith_password' is undefined"}


@pytest.mark.parametrize("name, path, fix", CASES, ids=[case[0] for case in CASES])
def test_site_yml_refuses_it_in_the_first_play_naming_the_fact_and_the_fix(site_run, name, path, fix):
    out, messages, recaps = site_run
    host = f"bad-{name}"
    assert "unreachable=0" in recaps[host] and "failed=1" in recaps[host], recaps.get(host)
    message = messages[host]
    if name in UNRESOLVABLE:
        block = " ".join(out.split(f"fatal: [{host} ", 1)[1][:600].split()).replace("''", "'")
        assert UNRESOLVABLE[name] in block, block
        return
    assert "The inventory is inconsistent; fix these" in message, message
    lines = [line.strip()[2:] for line in message.splitlines() if line.strip().startswith("- ")]
    named = [line for line in lines if line.startswith(path + ":")]
    assert any(fix in line for line in named), message
    for line in lines:
        assert not line.startswith("[") and "; " in line.partition(": ")[2], line


@pytest.mark.parametrize("name", [case[0] for case in UNUSUAL_VALID])
def test_unusual_but_valid_inventories_pass_the_first_play(site_run, name):
    out, messages, recaps = site_run
    # Valid: past the first play, so the next play tries to reach the host, which does not exist.
    host = f"ok-{name}"
    assert "The inventory is inconsistent" not in messages.get(host, ""), messages[host]
    assert f"No such container: {host}" in out, recaps[host]


PACS_OF_TEST_CLIENTS = "bad-test-clients"


@pytest.fixture(scope="module")
def clients_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("bad-test-clients-through-site")
    pacs = {PACS_OF_TEST_CLIENTS: host_variables("test-clients", {}, {}, {}, tmp_path)}
    clients = {**GOOD_TEST_CLIENTS, **{f"bad-{name}": variables for name, variables, _v, _f in BAD_TEST_CLIENTS}}
    out = run_site(tmp_path, pacs, clients)
    return out, failure_messages(out), recap(out)


@pytest.mark.parametrize("name, variable, fix", [(n, v, f) for n, _x, v, f in BAD_TEST_CLIENTS],
                         ids=[case[0] for case in BAD_TEST_CLIENTS])
def test_site_yml_refuses_a_test_client_naming_nothing_in_the_first_play(clients_run, name, variable, fix):
    out, messages, recaps = clients_run
    # Refused on the controller: the PACS is not contacted, and no test client either.
    assert "unreachable=0" in recaps[PACS_OF_TEST_CLIENTS] and "failed=1" in recaps[PACS_OF_TEST_CLIENTS], recaps
    assert set(recaps) == {PACS_OF_TEST_CLIENTS}, recaps
    message = messages[PACS_OF_TEST_CLIENTS]
    assert "The inventory is inconsistent; fix these" in message, message
    lines = [line.strip()[2:] for line in message.splitlines() if line.strip().startswith("- ")]
    named = [line for line in lines if line.startswith(f"test_clients host bad-{name}: {variable} ")]
    assert len(named) == 1 and fix in named[0].partition("; ")[2], message


def test_site_yml_names_only_the_bad_test_clients(clients_run):
    _out, messages, _recaps = clients_run
    lines = [line.strip()[2:] for line in messages[PACS_OF_TEST_CLIENTS].splitlines() if line.strip().startswith("- ")]
    assert len(lines) == len(BAD_TEST_CLIENTS) and all(line.startswith("test_clients host bad-") for line in lines), lines
