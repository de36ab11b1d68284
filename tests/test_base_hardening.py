"""Tests for filter_plugins/base_hardening.py: dpkg's version order, the minimum-version check,
login.defs rendering and the SSH lockout guard."""

import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import base_hardening as bh

POLICY = """nginx:
  Installed: (none)
  Candidate: 1.22.1-9+deb12u11
  Version table:
     1.22.1-9+deb12u11 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
openssh-server:
  Installed: 1:9.2p1-2+deb12u10
  Candidate: 1:9.2p1-2+deb12u10
  Version table:
libssl3:
  Installed: 3.0.17-1~deb12u2
  Candidate: 3.0.22-1~deb12u2
"""


@pytest.mark.parametrize(
    "a, b, expected",
    [
        ("1.0", "1.0", 0),
        ("1.0", "1.1", -1),
        ("1:1.0", "2.0", 1),
        ("1.0~rc1", "1.0", -1),
        ("1.0", "1.0+b1", -1),
        ("1.10.1+dfsg-2", "1.10.1+dfsg-2+deb12u1", -1),
        ("1.22.1-9+deb12u9", "1.22.1-9+deb12u11", -1),
        ("3.0.22-1~deb12u2", "3.0.22-1", -1),
        ("1:9.2p1-2+deb12u10", "1:9.2p1-2+deb12u5", 1),
        ("2.6.14-0+deb12u2", "2.6.3-1+deb12u4", 1),
        ("1.0-1", "1.0-01", 0),
        ("a", "b", -1),
        ("1.0a", "1.0+", -1),
    ],
)
def test_version_compare_known_pairs(a, b, expected):
    assert bh.debian_version_compare(a, b) == expected
    assert bh.debian_version_compare(b, a) == -expected


VERSION_PART = st.text(alphabet="0123456789.+~abz", min_size=1, max_size=8).map(lambda s: "1" + s)


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg (Debian controller)")
@settings(max_examples=150, deadline=None)
@given(
    st.tuples(st.integers(0, 2), VERSION_PART, st.one_of(st.just(""), VERSION_PART)),
    st.tuples(st.integers(0, 2), VERSION_PART, st.one_of(st.just(""), VERSION_PART)),
)
def test_version_compare_agrees_with_dpkg(a, b):
    def build(parts):
        epoch, upstream, revision = parts
        return (f"{epoch}:" if epoch else "") + upstream + (f"-{revision}" if revision else "")

    va, vb = build(a), build(b)
    expected = 0
    for op, value in (("lt", -1), ("gt", 1)):
        if subprocess.run(["dpkg", "--compare-versions", va, op, vb], check=False).returncode == 0:
            expected = value
    assert bh.debian_version_compare(va, vb) == expected, (va, vb)


def test_parse_apt_policy():
    policy = bh.parse_apt_policy(POLICY)
    assert policy["nginx"] == {"installed": None, "candidate": "1.22.1-9+deb12u11"}
    assert policy["openssh-server"]["installed"] == "1:9.2p1-2+deb12u10"
    assert policy["libssl3"] == {"installed": "3.0.17-1~deb12u2", "candidate": "3.0.22-1~deb12u2"}


def test_version_errors_name_found_and_needed():
    policy = bh.parse_apt_policy(POLICY)
    minimums = {"nginx": "1.22.1-9+deb12u11", "openssh-server": "1:9.2p1-2+deb12u11", "libssl3": "3.0.17-1~deb12u2", "absent": "1"}
    errors = bh.version_errors(policy, minimums)
    assert errors == ["openssh-server: version 1:9.2p1-2+deb12u10 (installed) found, 1:9.2p1-2+deb12u11 or newer needed"]


def test_version_errors_use_the_candidate_when_not_installed():
    policy = bh.parse_apt_policy(POLICY)
    errors = bh.version_errors(policy, {"nginx": "1.22.1-9+deb12u12"})
    assert errors == ["nginx: version 1.22.1-9+deb12u11 (candidate) found, 1.22.1-9+deb12u12 or newer needed"]
    # The installed version counts even when a newer candidate exists (the host is behind)...
    assert bh.version_errors(policy, {"libssl3": "3.0.22-1~deb12u2"})[0].startswith("libssl3: version 3.0.17-1~deb12u2 (installed)")
    # ... unless the run installs the pending updates first (check mode predicts that).
    assert bh.version_errors(policy, {"libssl3": "3.0.22-1~deb12u2"}, upgrading=True) == []


LOGIN_DEFS = """# comment
#
# Password aging controls:
#\tPASS_MAX_DAYS\tMaximum number of days a password may be used.
PASS_MAX_DAYS\t99999
UMASK\t\t022
#SHA_CRYPT_MIN_ROUNDS 5000
ENCRYPT_METHOD SHA512
"""


def test_login_defs_replaces_in_place_and_appends():
    out = bh.render_login_defs(LOGIN_DEFS, {"UMASK": "027", "PASS_MAX_DAYS": 365, "SHA_CRYPT_MIN_ROUNDS": 65536, "NEW_KEY": "x"})
    lines = out.splitlines()
    assert "UMASK\t027" in lines and "UMASK\t\t022" not in lines
    assert "PASS_MAX_DAYS\t365" in lines
    # The explanatory comment that mentions the key stays a comment.
    assert "#\tPASS_MAX_DAYS\tMaximum number of days a password may be used." in lines
    assert "SHA_CRYPT_MIN_ROUNDS\t65536" in lines and "#SHA_CRYPT_MIN_ROUNDS 5000" not in lines
    assert lines[-1] == "NEW_KEY\tx"
    # Idempotent: rendering again changes nothing.
    assert bh.render_login_defs(out, {"UMASK": "027", "PASS_MAX_DAYS": 365, "SHA_CRYPT_MIN_ROUNDS": 65536, "NEW_KEY": "x"}) == out


def test_login_defs_errors():
    assert bh.login_defs_errors({"UMASK": "027"}) == []
    assert len(bh.login_defs_errors({"umask": "0 27"})) == 2
    assert bh.login_defs_errors([]) == ["base_hardening_login_defs must be a mapping KEY: value"]


def test_ssh_lockout_guard():
    ok = bh.ssh_lockout_errors("admin", ["admin", "sudo"], ["admin"], ["sudo"], "no", 1)
    assert ok == []
    errors = bh.ssh_lockout_errors("root", ["root"], ["admin"], [], "no", 0)
    assert len(errors) == 3
    assert "site_ssh_allow_users" in errors[1] and "authorized_keys" in errors[2]
    assert bh.ssh_lockout_errors("root", ["root"], [], [], "prohibit-password", 1) == []
    assert "site_ssh_allow_groups" in bh.ssh_lockout_errors("bob", ["bob"], [], ["sudo"], "no", 1)[0]
    assert bh.ssh_lockout_errors("ops-1", ["ops"], ["ops-*@10.0.0.0/8"], [], "no", 2) == []


def test_ssh_names_errors():
    assert bh.ssh_names_errors(["admin", "ops-*", "it@10.0.0.0/8"], "site_ssh_allow_users") == []
    assert bh.ssh_names_errors(None, "site_ssh_allow_users") == []
    assert bh.ssh_names_errors("admin", "site_ssh_allow_users") == ["site_ssh_allow_users must be a list of names"]
    assert len(bh.ssh_names_errors(["bad name", "a@b"], "site_ssh_allow_groups")) == 2


GOOD_INPUTS = {
    "unattended_origins": "security",
    "reboot_time": "02:00",
    "security_mirror": "http://deb.debian.org/debian-security",
    "minimum_versions": {"nginx": "1.22.1-9+deb12u11"},
    "ssh_permit_root_login": "no",
    "ssh_allow_tcp_forwarding": "no",
    "ssh_client_alive_interval": 300,
    "ssh_client_alive_count_max": 2,
    "ssh_max_auth_tries": 3,
    "ssh_max_sessions": 4,
    "ssh_ciphers": ["aes256-gcm@openssh.com"],
    "ssh_kex_algorithms": ["curve25519-sha256"],
    "ssh_macs": ["hmac-sha2-256-etm@openssh.com"],
    "umask": "027",
    "sysctl_settings": {"kernel.sysrq": 0},
    "disabled_modules": ["sctp"],
    "ssh_allow_users": ["admin"],
    "ssh_allow_groups": [],
    "login_defs": {"UMASK": "027"},
}


def test_input_errors_accept_the_defaults_shape():
    assert bh.input_errors(GOOD_INPUTS) == []


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("unattended_origins", "everything", "base_hardening_unattended_origins"),
        ("reboot_time", "2am", "base_hardening_reboot_time"),
        ("ssh_permit_root_login", "yes", "base_hardening_ssh_permit_root_login"),
        ("ssh_max_auth_tries", 0, "base_hardening_ssh_max_auth_tries"),
        ("ssh_ciphers", [], "base_hardening_ssh_ciphers"),
        ("umask", "22", "base_hardening_umask"),
        ("sysctl_settings", {"net.ipv4.ip_forward": 0}, "OpenVPN forwards"),
        ("sysctl_settings", {"Bad Key": 1}, "is not a sysctl key"),
        ("disabled_modules", ["USB"], "base_hardening_disabled_modules"),
        ("ssh_allow_users", ["bad user"], "site_ssh_allow_users"),
        ("login_defs", {"umask": "027"}, "base_hardening_login_defs"),
    ],
)
def test_input_errors_name_the_variable(key, value, fragment):
    errors = bh.input_errors(dict(GOOD_INPUTS, **{key: value}))
    assert errors and any(fragment in e for e in errors), errors
