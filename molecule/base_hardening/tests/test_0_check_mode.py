"""Check mode is safe: on the plain twin (a fresh host) it runs through and changes nothing; on the
converged server it reports nothing to change."""

import re

from conftest import converge, host


def _recap(stdout: str, name: str) -> dict:
    match = re.search(rf"{name}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", stdout)
    assert match, stdout[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def test_check_mode_on_a_fresh_host_changes_nothing():
    plain = host("plain")
    before = plain.check_output("md5sum /etc/issue /etc/login.defs /etc/apt/sources.list; ls /etc/apt/sources.list.d /etc/ssh 2>&1; dpkg-divert --list")
    run = converge({"converge_hosts": "plain"}, "", "--check")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert _recap(run.stdout, "mol-hard-plain")["failed"] == 0
    after = plain.check_output("md5sum /etc/issue /etc/login.defs /etc/apt/sources.list; ls /etc/apt/sources.list.d /etc/ssh 2>&1; dpkg-divert --list")
    assert after == before


def test_check_mode_on_the_converged_server_has_nothing_to_change():
    run = converge({}, "", "--check")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr
    assert _recap(run.stdout, "mol-hard-server")["changed"] == 0, run.stdout[-3000:]
