"""SSH after the run: the admin's key works from the admin workstation; passwords, root, users
outside AllowUsers/AllowGroups and weak algorithms are refused."""

from conftest import SERVER, host, pace_ssh, ssh

PASSWORD = "Mol-Hard-Passw0rd-71"


def test_admin_logs_in_with_the_key_and_sees_the_banner():
    login = ssh("admin", "id -un")
    assert login.rc == 0, login.stderr
    assert login.stdout.strip() == "admin"
    assert "Authorized access only" in login.stderr


def test_password_login_is_refused_even_with_the_right_password():
    for user in ("admin", "root"):
        pace_ssh()
        out = host("admin").run(
            f"sshpass -p {PASSWORD} ssh -o StrictHostKeyChecking=no -o ConnectTimeout=5 -o PubkeyAuthentication=no "
            f"-o PreferredAuthentications=password,keyboard-interactive {user}@{SERVER} true"
        )
        assert out.rc != 0
        assert "Permission denied (publickey)" in out.stderr, out.stderr


def test_root_is_refused_even_with_an_authorized_key():
    out = ssh("root")
    assert out.rc != 0 and "Permission denied" in out.stderr, out.stderr


def test_users_outside_allowusers_or_allowgroups_are_refused():
    # ops is in AllowUsers but in no allowed group; intruder is not in AllowUsers. Both hold the key.
    for user in ("ops", "intruder"):
        out = ssh(user)
        assert out.rc != 0 and "Permission denied" in out.stderr, (user, out.stderr)
    log = host("server").check_output("journalctl -u ssh --no-pager -o cat")
    assert "User ops from" in log and "not allowed because none of user's groups are listed in AllowGroups" in log
    assert "User intruder from" in log and "not allowed because not listed in AllowUsers" in log


def test_weak_algorithms_are_refused():
    # A MAC is only negotiated with a non-AEAD cipher: pair hmac-sha1 with aes128-ctr (allowed).
    for options in (["Ciphers=aes128-cbc"], ["KexAlgorithms=diffie-hellman-group14-sha1"], ["Ciphers=aes128-ctr", "MACs=hmac-sha1"]):
        out = ssh("admin", "true", *[f"-o {o}" for o in options])
        assert out.rc != 0 and "no matching" in out.stderr, (options, out.stderr)
    # The same client with the server's algorithms gets in.
    assert ssh("admin", "true", "-o Ciphers=aes128-ctr", "-o MACs=hmac-sha2-256-etm@openssh.com").rc == 0


def test_effective_sshd_settings(server):
    effective = server.check_output("sshd -T")
    for line in (
        "permitrootlogin no",
        "passwordauthentication no",
        "kbdinteractiveauthentication no",
        "authenticationmethods publickey",
        "clientaliveinterval 300",
        "clientalivecountmax 2",
        "x11forwarding no",
        "allowtcpforwarding no",
        "allowusers admin",
        "allowusers ops",
        "allowgroups ssh-admins",
        "ciphers chacha20-poly1305@openssh.com,aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr",
        "macs hmac-sha2-512-etm@openssh.com,hmac-sha2-256-etm@openssh.com,umac-128-etm@openssh.com",
        "banner /etc/issue.net",
    ):
        assert line in effective.splitlines(), line
    # A drop-in, not an edit of Debian's sshd_config.
    assert server.check_output("dpkg --verify openssh-server") == ""
