"""Upgrades prompt nothing and change nothing of ours: no installed package has a modified
conffile (dpkg --verify), a dist-upgrade and reinstalls of every package whose files the roles
took over (forcing dpkg's conffile handling) complete, and the services keep their configuration.
Runs last: it upgrades the server."""

from conftest import converge, ssh

REINSTALL = ["ufw", "base-files", "login", "openssh-server", "unattended-upgrades", "needrestart", "procps"]


def _modified_conffiles(server) -> list[str]:
    # dpkg --verify: "??5?????? c /etc/file" for a conffile whose content differs from the package's.
    out = server.check_output("dpkg --verify")
    return [line for line in out.splitlines() if line.split()[1:2] == ["c"]]


def test_no_package_conffile_is_modified(server):
    assert _modified_conffiles(server) == []
    # ucf-managed ufw rule files are Debian's templates.
    assert server.run("cmp /usr/share/ufw/iptables/before.rules /etc/ufw/before.rules").rc == 0


def test_dist_upgrade_and_reinstalls_prompt_nothing_and_keep_our_configuration(server):
    before = {
        "sshd": server.check_output("sshd -T"),
        "ufw": server.check_output("ufw status verbose"),
        "login.defs": server.file("/etc/login.defs").content_string,
        "issue": server.file("/etc/issue.net").content_string,
        "default-ufw": server.file("/etc/default/ufw").content_string,
    }
    opts = "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
    for command in (f"apt-get -y {opts} dist-upgrade", f"apt-get -y {opts} install --reinstall {' '.join(REINSTALL)}"):
        # stdin closed: a conffile prompt could only end the run with an error.
        out = server.run(f"DEBIAN_FRONTEND=noninteractive {command} </dev/null")
        assert out.rc == 0, out.stdout[-3000:] + out.stderr
        assert "Configuration file '" not in out.stdout, out.stdout
    assert _modified_conffiles(server) == []
    server.check_output("systemctl restart ssh && ufw reload")
    after = {
        "sshd": server.check_output("sshd -T"),
        "ufw": server.check_output("ufw status verbose"),
        "login.defs": server.file("/etc/login.defs").content_string,
        "issue": server.file("/etc/issue.net").content_string,
        "default-ufw": server.file("/etc/default/ufw").content_string,
    }
    assert after == before
    assert ssh("admin").rc == 0
    assert ssh("root").rc != 0


def test_a_run_after_the_upgrade_changes_nothing():
    run = converge({})
    assert run.returncode == 0, run.stderr
    assert "mol-hard-server" in run.stdout
    import re

    recap = re.search(r"mol-hard-server\s*:\s*ok=\d+\s+changed=(\d+)", run.stdout)
    assert recap and recap.group(1) == "0", run.stdout[-3000:]
