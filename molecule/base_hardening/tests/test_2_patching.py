"""Patching: the security suite in the APT sources, unattended-upgrades limited to it (no automatic
reboot), pending updates and reboots reported in the journal and by orthanc-remote-status, and the
minimum package versions refused with the version found and the version needed."""

import re
import time
from pathlib import Path

import pytest

from conftest import converge, host

CHECK_SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "log_monitoring" / "files"


def test_security_suite_is_in_the_apt_sources(server):
    sources = server.file("/etc/apt/sources.list.d/orthanc-remote-security.list").content_string
    assert " http://deb.debian.org/debian-security bookworm-security main" in sources
    assert "bookworm-security/main" in server.check_output("apt-cache policy")
    # Debian's own sources file is as the image had it.
    assert "security" not in server.file("/etc/apt/sources.list").content_string


def test_unattended_upgrades_takes_security_only_and_never_reboots(server):
    config = server.check_output("apt-config dump")
    origins = re.findall(r'^Unattended-Upgrade::Origins-Pattern:: "(.*)";$', config, re.M)
    assert origins and all("Debian-Security" in o for o in origins), origins
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in config
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    for timer in ("apt-daily.timer", "apt-daily-upgrade.timer"):
        assert server.service(timer).is_enabled
    # Debian's 50unattended-upgrades (a conffile) is as shipped: the policy is a later drop-in.
    assert server.check_output("dpkg --verify unattended-upgrades") == ""


def test_converge_installed_the_security_updates(server):
    pending = server.check_output("apt-get -s -o Debug::NoLocking=1 dist-upgrade")
    assert "Debian-Security" not in pending, pending


@pytest.fixture(scope="module")
def check(server):
    """orthanc-remote-check (log_monitoring's script) on the server, run as the timer runs it."""
    server.run("mkdir -p /usr/local/sbin /etc/orthanc-remote")
    for name, dest in (("orthanc_remote_check.py", "orthanc-remote-check"), ("orthanc_remote_status.py", "orthanc-remote-status")):
        content = (CHECK_SCRIPT / name).read_text()
        server.run(f"cat > /usr/local/sbin/{dest} <<'EOF_SCRIPT'\n{content}\nEOF_SCRIPT\nchmod 0755 /usr/local/sbin/{dest}")
    server.run("echo '{}' > /etc/orthanc-remote/monitoring.json")

    def run():
        # Into the journal under the identifier the timer's unit uses (SyslogIdentifier).
        server.check_output("/usr/local/sbin/orthanc-remote-check --no-notify updates | systemd-cat -t orthanc-remote-check")
        time.sleep(1)
        return server.run("orthanc-remote-status --since '10 min ago' --json").stdout

    return run


def _updates_row(status_json: str) -> dict:
    import json

    rows = [r for r in json.loads(status_json) if r["check"] == "updates"]
    assert len(rows) == 1, status_json
    return rows[0]


def test_pending_security_update_and_reboot_are_reported(server, check):
    row = _updates_row(check())
    assert row["status"] == "OK" and row["security"] == "0" and row["reboot"] == "no", row
    # Put tzdata back to the release's version: its security update is now pending.
    madison = server.check_output("apt-cache madison tzdata")
    older = [line.split("|")[1].strip() for line in madison.splitlines() if "-security" not in line]
    assert older, madison
    server.check_output(f"DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades tzdata={older[0]}")
    row = _updates_row(check())
    assert row["status"] == "WARNING" and row["security"] == "1" and row["security_packages"] == "tzdata", row
    # The converge run says so too when it does not install updates itself.
    run = converge({"base_hardening_apply_updates_now": False}, tags="base_hardening_patching")
    assert run.returncode == 0, run.stderr
    assert "NOTICE: 1 security update(s) pending (tzdata)" in " ".join(run.stdout.split())
    # A reboot asked for by a package.
    server.check_output("touch /run/reboot-required && echo libc6 > /run/reboot-required.pkgs")
    row = _updates_row(check())
    assert row["status"] == "WARNING" and row["reboot"] == "yes: libc6", row
    server.check_output("rm -f /run/reboot-required /run/reboot-required.pkgs")
    # unattended-upgrades installs the security update (its own policy, as the daily timer runs it).
    server.check_output("unattended-upgrade -v")
    assert "Debian-Security" not in server.check_output("apt-get -s -o Debug::NoLocking=1 dist-upgrade")
    row = _updates_row(check())
    assert row["status"] == "OK", row


@pytest.mark.parametrize(
    "package, version, how",
    [("openssh-server", "1:99.0-1", "installed"), ("nginx", "99.0-1", "candidate")],
)
def test_a_package_below_the_minimum_is_refused_with_found_and_needed(server, package, version, how):
    found = server.check_output(f"apt-cache policy {package}")
    found = re.search(r"Installed: (\S+)" if how == "installed" else r"Candidate: (\S+)", found).group(1)
    run = converge({"base_hardening_minimum_versions": {package: version}}, tags="base_hardening_versions")
    assert run.returncode != 0
    output = " ".join((run.stdout + run.stderr).split())
    assert f"{package}: version {found} ({how}) found, {version} or newer needed" in output
    # The real minimums pass.
    assert converge({}, tags="base_hardening_versions").returncode == 0
