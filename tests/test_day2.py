"""The README's day-2 commands exist: each `make` target is in the Makefile and runs a playbook that exists."""

from __future__ import annotations

import re

import yaml

from site_inventory import ROOT

README = (ROOT / "README.md").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def test_every_day2_command_is_a_make_target_running_an_existing_playbook():
    section = README.split("## Day-2 operations", 1)[1].split("\n## ", 1)[0]
    targets = set(re.findall(r"`make ([a-z-]+) SITE=", section))
    assert {"check", "apply", "rotate-password", "renew-certificates", "status", "handouts"} <= targets
    for target in targets:
        recipe = re.search(rf"^{target}:.*\n\t(.+)$", MAKEFILE, re.M)
        assert recipe, target
        playbook = re.search(r"(\S+\.yml)", recipe.group(1)).group(1)
        assert (ROOT / playbook).is_file(), playbook


def test_day2_playbooks_start_with_the_inventory_checks():
    for name in ("rotate-password.yml", "renew-certificates.yml"):
        plays = yaml.safe_load((ROOT / "playbooks" / name).read_text())
        assert plays[0]["ansible.builtin.import_playbook"] == "validate.yml", name
    site = yaml.safe_load((ROOT / "site.yml").read_text())
    assert site[0]["ansible.builtin.import_playbook"] == "playbooks/validate.yml"
    assert site[-1]["ansible.builtin.import_playbook"] == "playbooks/handouts.yml"


def test_the_validation_play_runs_every_roles_input_checks():
    play = yaml.safe_load((ROOT / "playbooks" / "validate.yml").read_text())[0]
    roles = play["tasks"][1]["loop"]
    assert sorted(roles) == sorted(p.name for p in (ROOT / "roles").iterdir() if (p / "tasks" / "inputs.yml").is_file())
    hook = play["tasks"][2]["vars"]["__site_all_errors"]
    for role in roles:
        assert f"__{role}_input_errors" in hook, role
