"""System settings: kernel settings (written; applied only where /proc/sys is writable), no core
dumps, stricter umask and login.defs, unused modules disabled, the legal banner."""

from conftest import host, sysctl_file_keys


def test_kernel_settings_written_without_touching_forwarding(server):
    keys = sysctl_file_keys(server.file("/etc/sysctl.d/70-orthanc-remote-hardening.conf").content_string)
    assert keys["net.ipv4.conf.all.log_martians"] == "1"
    assert keys["kernel.kptr_restrict"] == "2"
    assert keys["fs.suid_dumpable"] == "0"
    assert "net.ipv4.ip_forward" not in keys
    # Later than ufw_firewall's file, so these win at boot.
    names = sorted(server.check_output("ls /etc/sysctl.d").split())
    assert names.index("60-orthanc-remote-ufw.conf") < names.index("70-orthanc-remote-hardening.conf")


def test_read_only_proc_sys_is_skipped_with_a_notice(server):
    # In this container /proc/sys is read-only: the run said so instead of failing.
    assert server.run("touch /proc/sys/kernel/sysrq").rc != 0


def test_no_core_dumps(server):
    assert server.check_output("su - admin -c 'ulimit -c'") == "0"
    assert server.check_output("su - root -c 'ulimit -Hc'") == "0"
    assert server.check_output("systemctl show -p DefaultLimitCORE") == "DefaultLimitCORE=0"


def test_umask_idle_timeout_and_login_defs(server):
    assert server.check_output("su - admin -c umask") == "0027"
    assert server.check_output("su - admin -c 'echo $TMOUT'") == "900"
    # Read-only: a user cannot switch the idle timeout off.
    assert server.run("su - admin -c 'TMOUT=0'").rc != 0
    defs = server.file("/etc/login.defs").content_string
    for line in ("UMASK\t027", "HOME_MODE\t0750", "PASS_MAX_DAYS\t365", "ENCRYPT_METHOD\tYESCRYPT", "SHA_CRYPT_MIN_ROUNDS\t65536"):
        assert line in defs.splitlines(), line
    # Debian's copy is diverted (upgrades update it), ours is not a modified conffile.
    assert "/etc/login.defs.dpkg-orthanc-remote" in server.check_output("dpkg-divert --list /etc/login.defs")
    assert server.check_output("dpkg --verify login") == ""


def test_unused_modules_are_disabled(server):
    for module in ("sctp", "dccp", "usb-storage", "cramfs"):
        assert f"install {module} /bin/true" in server.file("/etc/modprobe.d/orthanc-remote-hardening.conf").content_string


def test_legal_banner(server):
    for path in ("/etc/issue", "/etc/issue.net"):
        assert "Authorized access only" in server.file(path).content_string
    assert server.check_output("dpkg --verify base-files") == ""


def test_plain_twin_has_none_of_it():
    plain = host("plain")
    assert not plain.file("/etc/sysctl.d/70-orthanc-remote-hardening.conf").exists
    assert "Authorized access only" not in plain.file("/etc/issue").content_string


def test_security_tools(server):
    # debsums agrees with dpkg --verify: no changed conffile.
    assert server.run("debsums -ce").stdout == ""
    assert "pam_pwquality.so" in server.file("/etc/pam.d/common-password").content_string
    assert server.check_output("su - admin -c 'echo $TMPDIR'") == "/tmp/user/%s" % server.check_output("id -u admin")
