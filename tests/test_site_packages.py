"""site.yml installs every role's packages in one apt call per recommends policy (issue 16, point 2).

Static checks of the play and the roles' package lists: the security suite is in the sources before
anything is installed, Orthanc and nginx stay with the orthanc role (which holds their service
starts), and every package a role's apt tasks name is in that role's list.
"""

from __future__ import annotations

import re

import yaml

from site_inventory import ROOT

ROLES = ["base_hardening", "tls_certs", "ufw_firewall", "openvpn_easyrsa", "orthanc", "log_monitoring"]


def _provision_play():
    plays = yaml.safe_load((ROOT / "site.yml").read_text())
    return next(p for p in plays if p.get("name") == "Provision the PACS server")


def _role_vars(role):
    return yaml.safe_load((ROOT / "roles" / role / "vars" / "main.yml").read_text())


def test_the_security_suite_is_added_before_the_one_install():
    pre = _provision_play()["pre_tasks"]
    assert "dpkg-query" in pre[0]["ansible.builtin.command"]["argv"]
    assert pre[1]["ansible.builtin.include_role"] == {"name": "base_hardening", "tasks_from": "sources"}
    assert "ansible.builtin.apt" in pre[2]
    assert (ROOT / "roles" / "base_hardening" / "tasks" / "sources.yml").is_file()
    # The role alone does the same: sources first, then its first install.
    patching = yaml.safe_load((ROOT / "roles" / "base_hardening" / "tasks" / "patching.yml").read_text())
    assert patching[0].get("ansible.builtin.import_tasks") == "sources.yml"


def test_the_one_install_takes_every_roles_list():
    play = _provision_play()
    install = play["pre_tasks"][2]
    text = yaml.safe_dump(play["vars"])
    for role in ROLES:
        assert f"__{role}_apt_packages" in text, role
        assert f"__{role}_apt_packages" in _role_vars(role), role
    # No package-list refresh of its own beyond an old cache.
    assert install["ansible.builtin.apt"].get("cache_valid_time") == 3600
    assert "update_cache" not in install["ansible.builtin.apt"]


def test_orthanc_and_nginx_stay_out_of_the_one_install():
    orthanc = _role_vars("orthanc")
    assert "orthanc_packages" not in orthanc["__orthanc_apt_packages"]
    assert "'nginx'" not in orthanc["__orthanc_apt_packages"]
    assert "orthanc_packages" in orthanc["__orthanc_held_packages"]
    assert "'nginx'" in orthanc["__orthanc_held_packages"]
    assert "'nginx'" not in _role_vars("tls_certs")["__tls_certs_apt_packages"]


def _apt_tasks(node):
    if isinstance(node, list):
        for item in node:
            yield from _apt_tasks(item)
    elif isinstance(node, dict):
        if "ansible.builtin.apt" in node:
            yield node
        for key in ("block", "rescue", "always"):
            if key in node:
                yield from _apt_tasks(node[key])


def test_every_package_a_role_installs_is_in_its_list():
    for role in ROLES:
        listed = yaml.safe_dump(_role_vars(role)) + (ROOT / "roles" / role / "defaults" / "main.yml").read_text()
        for path in sorted((ROOT / "roles" / role / "tasks").glob("*.yml")):
            for task in _apt_tasks(yaml.safe_load(path.read_text()) or []):
                names = task["ansible.builtin.apt"].get("name")
                if names is None:
                    continue
                if isinstance(names, list):
                    literal = names
                else:
                    literal = re.findall(r"'([a-z0-9][a-z0-9.+-]+)'", names)
                    literal += re.findall(r"\{\{ *([a-z_]+) *\}\}", names)
                for name in literal:
                    if role == "tls_certs" and name == "nginx":
                        continue  # the ACME bootstrap's, only before the orthanc role's site exists
                    assert name in listed, f"{path.name}: {name}"
