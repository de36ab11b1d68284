"""Tests for filter_plugins/ufw_rules.py: the rule set a site model asks for, the parsing of
ufw's state and the add/delete/unmanaged plan."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import site_model as sm
import ufw_rules as ur

GATEWAY = {"name": "site-a-gw", "kind": "modality_gateway", "address": "10.8.0.10", "site_subnets": ["192.168.50.0/24"]}
RADIOLOGIST = {"name": "dr-smith", "kind": "radiologist", "address": "10.8.0.20"}
ADMIN = {"name": "it-admin", "kind": "admin", "address": "10.8.0.30"}
MRI = {"name": "mri-1", "aet": "MRI1", "host": "192.168.50.10", "port": 104, "vpn_gateway": "site-a-gw"}
CT = {"name": "ct-1", "aet": "CT_1", "host": "203.0.113.50", "port": 104, "tls": True}
VPN = {"enabled": True, "network": "10.8.0.0/24", "port": 1194, "proto": "udp", "sources": ["0.0.0.0/0"], "full_tunnel": False}


def model(**overrides) -> dict:
    """A model built the way the role builds it: allow-lists from site_model.py."""
    facts = {
        "admin_sources": ["198.51.100.0/28"],
        "https_sources": ["192.0.2.0/24"],
        "modalities": [MRI, CT],
        "vpn": VPN,
        "vpn_clients": [GATEWAY, RADIOLOGIST, ADMIN],
        "dicom_port": 4242,
    }
    facts.update(overrides)
    facts["https_allowed_sources"] = sm.https_allowed_sources(
        facts["admin_sources"], facts.pop("https_sources"), facts["vpn_clients"]
    )
    facts["dicom_allowed_sources"] = sm.dicom_allowed_sources(facts["modalities"], facts["vpn_clients"])
    return facts


def summary(rules: list[dict]) -> set[tuple]:
    return {(r["action"], r["port"], r["proto"], r["from"], r["interface"]) for r in rules}


def test_full_site_rule_set():
    assert summary(ur.desired_rules(model())) == {
        ("limit", 22, "tcp", "198.51.100.0/28", None),
        ("limit", 22, "tcp", "10.8.0.30", "tun0"),
        ("allow", 443, "tcp", "198.51.100.0/28", None),
        ("allow", 443, "tcp", "192.0.2.0/24", None),
        ("allow", 443, "tcp", "10.8.0.20", "tun0"),
        ("allow", 443, "tcp", "10.8.0.30", "tun0"),
        ("allow", 4242, "tcp", "203.0.113.50", None),
        ("allow", 4242, "tcp", "10.8.0.10", "tun0"),
        ("allow", 4242, "tcp", "192.168.50.10", "tun0"),
        ("allow", 1194, "udp", "0.0.0.0/0", None),
    }


def test_per_kind_vpn_access():
    rules = ur.desired_rules(model())
    tunnel = {}
    for rule in rules:
        if rule["interface"] == "tun0":
            tunnel.setdefault(rule["from"], set()).add(rule["port"])
    assert tunnel == {"10.8.0.10": {4242}, "192.168.50.10": {4242}, "10.8.0.20": {443}, "10.8.0.30": {22, 443}}


def test_every_rule_carries_the_prefix_comment():
    assert all(r["comment"].startswith("orthanc-remote: ") for r in ur.desired_rules(model()))
    assert all(r["comment"].startswith("x-y: ") for r in ur.desired_rules(model(comment_prefix="x-y")))


def test_vpn_disabled_drops_every_tunnel_and_vpn_port_rule():
    rules = ur.desired_rules(model(vpn={"enabled": False}))
    assert all(r["interface"] is None for r in rules)
    assert not [r for r in rules if r["port"] == 1194]
    assert ("allow", 4242, "tcp", "203.0.113.50", None) in summary(rules)


def test_acme_opens_80_to_anyone_only_when_asked():
    assert not [r for r in ur.desired_rules(model()) if r["port"] == 80]
    acme = [r for r in ur.desired_rules(model(acme=True)) if r["port"] == 80]
    assert [(r["from"], r["proto"], r["action"]) for r in acme] == [("any", "tcp", "allow")]


def test_vpn_port_proto_and_sources():
    rules = ur.desired_rules(model(vpn=dict(VPN, port=443, proto="tcp-server", sources=["198.51.100.7", "2001:db8::/32"])))
    vpn = {(r["port"], r["proto"], r["from"]) for r in rules if r["comment"].endswith("openvpn")}
    assert vpn == {(443, "tcp", "198.51.100.7"), (443, "tcp", "2001:db8::/32")}
    missing = [r for r in ur.desired_rules(model(vpn=dict(VPN, sources=None))) if r["comment"].endswith("openvpn")]
    assert [r["from"] for r in missing] == ["any"]


def test_no_admin_sources_means_no_lan_ssh():
    rules = ur.desired_rules(model(admin_sources=[]))
    assert [(r["from"], r["interface"]) for r in rules if r["port"] == 22] == [("10.8.0.30", "tun0")]


def test_controller_guard_added_only_when_not_covered():
    covered = ur.desired_rules(model(controller_source="198.51.100.5"))
    assert not [r for r in covered if "lockout guard" in r["comment"]]
    guarded = ur.desired_rules(model(controller_source="203.0.113.9"))
    guard = [r for r in guarded if "lockout guard" in r["comment"]]
    assert [(r["action"], r["port"], r["from"], r["interface"]) for r in guard] == [("limit", 22, "203.0.113.9", None)]
    assert ur.rule_covers(guarded, "203.0.113.9", 22)
    # Through the tunnel, the VPN admin's own rule covers it.
    via_vpn = ur.desired_rules(model(controller_source="10.8.0.30", controller_interface="tun0"))
    assert not [r for r in via_vpn if "lockout guard" in r["comment"]]


def test_rule_covers():
    rules = ur.desired_rules(model())
    assert ur.rule_covers(rules, "198.51.100.1", 22)
    assert not ur.rule_covers(rules, "198.51.100.16", 22)
    assert not ur.rule_covers(rules, "198.51.100.1", 2222)
    assert not ur.rule_covers(rules, "10.8.0.30", 22)  # only in on tun0
    assert ur.rule_covers(rules, "10.8.0.30", 22, "tcp", "tun0")
    assert not ur.rule_covers(rules, "10.8.0.20", 22, "tcp", "tun0")  # a radiologist never gets SSH
    assert not ur.rule_covers(rules, "2001:db8::1", 22)


def test_controller_connection():
    assert ur.controller_connection("198.51.100.5 50000 203.0.113.1 22") == {"source": "198.51.100.5", "port": 22, "interface": None}
    assert ur.controller_connection("10.8.0.30 50000 10.8.0.1 2222", "10.8.0.0/24") == {
        "source": "10.8.0.30", "port": 2222, "interface": "tun0"}
    assert ur.controller_connection("::ffff:198.51.100.5 1 ::ffff:203.0.113.1 22")["source"] == "198.51.100.5"
    assert ur.controller_connection("") == {}
    assert ur.controller_connection(None) == {}
    assert ur.controller_connection("not an address 1 2") == {}


GOOD_INPUTS = {
    "unmanaged_rules": "report", "default_input_policy": "DROP", "default_output_policy": "ACCEPT",
    "default_forward_policy": "DROP", "logging": "low", "ipt_sysctl": "/etc/ufw/sysctl.conf",
    "vpn_interface": "tun0", "comment_prefix": "orthanc-remote", "ssh_port": 22, "https_port": 443,
    "sysctl_settings": {},
}


def test_input_errors_accept_the_defaults():
    assert ur.input_errors(GOOD_INPUTS) == []
    assert ur.input_errors({**GOOD_INPUTS, "ipt_sysctl": "", "sysctl_settings": {"net/ipv4/ip_forward": 1}}) == []


@pytest.mark.parametrize(
    "key, value",
    [("unmanaged_rules", "delete"), ("default_input_policy", "drop"), ("logging", "verbose"),
     ("ipt_sysctl", "sysctl.conf"), ("vpn_interface", "tun 0"), ("comment_prefix", "Orthanc"),
     ("ssh_port", 0), ("https_port", "443"), ("sysctl_settings", []), ("sysctl_settings", {"Not A Key": 1})],
)
def test_input_errors_name_the_variable_and_fix(key, value):
    errors = ur.input_errors({**GOOD_INPUTS, key: value})
    assert len(errors) == 1 and errors[0].startswith(f"ufw_firewall_{key}: ") and "; " in errors[0]


def test_normalise_source_matches_ufw():
    assert ur.normalise_source("10.0.0.5/32") == "10.0.0.5"
    assert ur.normalise_source("10.8.0.5/24") == "10.8.0.0/24"
    assert ur.normalise_source("2001:db8::1/128") == "2001:db8::1"
    assert ur.normalise_source("Anywhere") == "any"


# --- ufw state (lines as ufw 0.36.2 writes them, observed in the containers) ------------------

USER_RULES = """*filter
:ufw-user-input - [0:0]
### RULES ###

### tuple ### limit tcp 22 0.0.0.0/0 any 10.231.13.20 in comment=6f727468616e632d72656d6f74653a2061646d696e20736f75726365
-A ufw-user-input -p tcp --dport 22 -s 10.231.13.20 -j ufw-user-limit-accept

### tuple ### allow tcp 4242 0.0.0.0/0 any 10.8.0.10 in_tun0 comment=6f727468616e632d72656d6f74653a206777
### tuple ### allow udp 1194 0.0.0.0/0 any 0.0.0.0/0 in comment=6f727468616e632d72656d6f74653a2076706e
### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in
### tuple ### route:allow any any 0.0.0.0/0 any 10.8.0.0/24 in_tun0!out_eth0
### tuple ### allow udp 53 1.1.1.1 any 0.0.0.0/0 out
### tuple ### allow_log tcp 25 0.0.0.0/0 any 5.5.5.5 in
### tuple ### allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 OpenSSH - in
### tuple ### deny any any 0.0.0.0/0 any 1.2.3.4 in
COMMIT
"""
USER6_RULES = """### tuple ### allow tcp 80 ::/0 any ::/0 in
### tuple ### allow tcp 22 ::/0 any ::/0 OpenSSH - in
"""


def test_parse_rules():
    tuples = ur.parse_rules(USER_RULES, USER6_RULES)
    assert len(tuples) == 11
    limit = tuples[0]
    assert (limit["action"], limit["proto"], limit["dport"], limit["src"], limit["comment"]) == (
        "limit", "tcp", "22", "10.231.13.20", "orthanc-remote: admin source")
    assert tuples[1]["iface_in"] == "tun0"
    route = tuples[4]
    assert route["forward"] and (route["iface_in"], route["iface_out"]) == ("tun0", "eth0")
    assert tuples[5]["direction"] == "out"
    assert (tuples[6]["action"], tuples[6]["logtype"]) == ("allow", "log")
    assert tuples[7]["dapp"] == "OpenSSH"
    assert [t["v6"] for t in tuples] == [False] * 9 + [True] * 2
    # Concatenated files: the family comes from the addresses.
    assert [t["v6"] for t in ur.parse_rules(USER_RULES + USER6_RULES)] == [t["v6"] for t in tuples]


def test_delete_commands_rebuild_each_rule():
    commands = [" ".join(ur.delete_command(t)) for t in ur.parse_rules(USER_RULES, USER6_RULES)]
    assert commands == [
        "ufw delete limit proto tcp from 10.231.13.20 to 0.0.0.0/0 port 22",
        "ufw delete allow in on tun0 proto tcp from 10.8.0.10 to 0.0.0.0/0 port 4242",
        "ufw delete allow proto udp from 0.0.0.0/0 to 0.0.0.0/0 port 1194",
        "ufw delete allow proto tcp from 0.0.0.0/0 to 0.0.0.0/0 port 80",
        "ufw route delete allow in on tun0 out on eth0 from 10.8.0.0/24 to 0.0.0.0/0",
        "ufw delete allow out proto udp from 0.0.0.0/0 to 1.1.1.1 port 53",
        "ufw delete allow log proto tcp from 5.5.5.5 to 0.0.0.0/0 port 25",
        "ufw delete allow from 0.0.0.0/0 to 0.0.0.0/0 app OpenSSH",
        "ufw delete deny from 1.2.3.4 to 0.0.0.0/0",
        "ufw delete allow proto tcp from ::/0 to ::/0 port 80",
        "ufw delete allow from ::/0 to ::/0 app OpenSSH",
    ]


def _state_for(rules: list[dict], ipv6: bool = True) -> list[dict]:
    return [t for r in rules for t in ur.rule_tuples(r, ipv6)]


def test_plan_is_empty_when_ufw_has_exactly_the_rules():
    rules = ur.desired_rules(model(acme=True))
    assert ur.plan(rules, _state_for(rules)) == {"add": [], "delete": [], "unmanaged": []}


def test_plan_on_a_fresh_host_adds_everything():
    rules = ur.desired_rules(model())
    result = ur.plan(rules, [])
    assert result["add"] == [ur.rule_command(r) for r in rules]
    assert result["delete"] == [] and result["unmanaged"] == []


def test_removed_modality_is_deleted_and_unmanaged_rules_are_reported():
    before = ur.desired_rules(model())
    after = ur.desired_rules(model(modalities=[MRI]))
    hand_made = ur.parse_rules("### tuple ### allow tcp 8042 0.0.0.0/0 any 192.0.2.1 in comment=68616e64\n")
    result = ur.plan(after, _state_for(before) + hand_made)
    assert result["add"] == []
    assert result["delete"] == [["ufw", "delete", "allow", "proto", "tcp", "from", "203.0.113.50", "to", "0.0.0.0/0", "port", "4242"]]
    assert [u["rule"] for u in result["unmanaged"]] == ["allow in proto tcp from 192.0.2.1 to 0.0.0.0/0 port 8042 (hand)"]
    assert result["unmanaged"][0]["delete"] == ["ufw", "delete", "allow", "proto", "tcp", "from", "192.0.2.1", "to", "0.0.0.0/0", "port", "8042"]


def test_fail2ban_bans_are_left_alone():
    rules = ur.desired_rules(model())
    ban = ur.parse_rules(
        "### tuple ### reject any any 0.0.0.0/0 any 203.0.113.66 in comment="
        + "by Fail2Ban after 5 attempts against nginx-orthanc".encode().hex() + "\n"
    )
    assert ban[0]["comment"].startswith("by Fail2Ban")
    assert ur.plan(rules, _state_for(rules) + ban, foreign_prefixes=["by Fail2Ban"]) == {"add": [], "delete": [], "unmanaged": []}
    # Without the prefix it would be an unmanaged rule (and removed in remove mode).
    assert len(ur.plan(rules, _state_for(rules) + ban)["unmanaged"]) == 1


def test_changed_action_or_comment_is_an_in_place_update_not_a_delete():
    rules = ur.desired_rules(model())
    plain_ssh = ur.parse_rules("### tuple ### allow tcp 22 0.0.0.0/0 any 198.51.100.0/28 in\n")
    state = [t for t in _state_for(rules) if not (t["dport"] == "22" and t["src"] == "198.51.100.0/28")] + plain_ssh
    result = ur.plan(rules, state)
    assert result["add"] == [["ufw", "limit", "proto", "tcp", "from", "198.51.100.0/28", "to", "any", "port", "22",
                              "comment", "orthanc-remote: ssh from admin source"]]
    assert result["delete"] == [] and result["unmanaged"] == []


def test_any_rule_missing_its_v6_twin_is_re_added():
    rules = ur.desired_rules(model(acme=True))
    state = [t for t in _state_for(rules) if not (t["v6"] and t["dport"] == "80")]
    assert ur.plan(rules, state)["add"] == [ur.rule_command(r) for r in rules if r["port"] == 80]
    # With IPv6 off in ufw, no v6 twin is expected.
    v4_only = _state_for(rules, ipv6=False)
    assert ur.plan(rules, v4_only, ipv6=False)["add"] == []


# --- properties ------------------------------------------------------------------------------

octet = st.integers(min_value=1, max_value=254)
v4_hosts = st.builds(lambda a, b, c: f"198.{a}.{b}.{c}", octet, octet, octet)


@st.composite
def sites(draw):
    hosts = draw(st.lists(v4_hosts, min_size=0, max_size=6, unique=True))
    modalities = [{"name": f"m{i}", "aet": f"M{i}", "host": h} for i, h in enumerate(hosts)]
    admin = draw(st.lists(st.builds(lambda a, p: str(ipaddress.ip_network(f"203.0.{a}.0/{p}", strict=False)), octet,
                                    st.integers(24, 32)), max_size=3, unique=True))
    n_clients = draw(st.integers(0, 5))
    kinds = draw(st.lists(st.sampled_from(sm.VPN_CLIENT_KINDS), min_size=n_clients, max_size=n_clients))
    clients = [{"name": f"c{i}", "kind": k, "address": f"10.8.0.{10 + i}"} for i, k in enumerate(kinds)]
    vpn = dict(VPN, enabled=draw(st.booleans()))
    return model(modalities=modalities, admin_sources=admin, https_sources=[], vpn_clients=clients, vpn=vpn,
                 acme=draw(st.booleans()))


@settings(max_examples=150, deadline=None)
@given(sites())
def test_properties_of_any_site(site):
    rules = ur.desired_rules(site)
    # Only the five services, only allow/limit, SSH always rate-limited.
    assert {r["port"] for r in rules} <= {22, 80, 443, 4242, 1194}
    assert all(r["action"] == ("limit" if r["port"] == 22 else "allow") for r in rules)
    # DICOM exactly from the site model's DICOM sources (when the VPN is on), nothing else.
    dicom = {r["from"] for r in rules if r["port"] == 4242}
    expected = {ur.normalise_source(row["source"]) for row in site["dicom_allowed_sources"]}
    if site["vpn"]["enabled"]:
        assert dicom == expected
    else:
        assert dicom <= expected
    # Nothing but the VPN port and ACME's 80 is open to anyone.
    assert {r["port"] for r in rules if r["from"] in ("any", "0.0.0.0/0")} <= {80, 1194}
    # No duplicate rules, and the plan against its own state is empty (idempotence).
    assert len({ur.rule_key(r) for r in rules}) == len(rules)
    assert ur.plan(rules, _state_for(rules)) == {"add": [], "delete": [], "unmanaged": []}
    # Removing everything deletes every managed rule and reports nothing as unmanaged.
    emptied = ur.plan([], _state_for(rules))
    assert len(emptied["delete"]) == len(_state_for(rules)) and emptied["unmanaged"] == []


@settings(max_examples=150, deadline=None)
@given(sites(), st.data())
def test_the_plan_converges(site, data):
    """Applying a plan to any managed state gives exactly the desired state."""
    rules = ur.desired_rules(site)
    old_rules = ur.desired_rules(data.draw(sites()))
    state = {ur._match_key(t): t for t in _state_for(old_rules)}
    result = ur.plan(rules, list(state.values()))
    for argv in result["add"]:
        rule = next(r for r in rules if ur.rule_command(r) == argv)
        for t in ur.rule_tuples(rule):
            state[ur._match_key(t)] = t  # ufw adds or updates in place
    for argv in result["delete"]:
        doomed = [k for k, t in state.items() if ur.delete_command(t) == argv]
        assert len(doomed) == 1
        del state[doomed[0]]
    assert sorted(map(ur._full_key, state.values())) == sorted(map(ur._full_key, _state_for(rules)))
