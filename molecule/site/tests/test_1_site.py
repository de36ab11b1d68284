"""The site as converged: reached over SSH by a non-root admin with sudo, ufw and fail2ban both
active, the generic verify playbook green (it also brings the lab's VPN clients up)."""

import re
import subprocess
import time

from conftest import (ADMIN, ARTIFACTS, DICOM, HTTPS_PORT, PACS_IP, PACS_NAME, PACS_VARS, VPN_SERVER, host,
                      play, recap, rest_json, site, table_rows)


def _ssh(user: str, command: str, *options: str) -> subprocess.CompletedProcess:
    """One SSH session from this machine (an admin source). ufw rate-limits SSH (6 new connections
    in 30 s are refused), so a refused connection is retried once after the window."""
    for _ in range(2):
        result = _ssh_once(user, command, *options)
        if "Connection refused" not in result.stderr:
            break
        time.sleep(31)
    return result


def _ssh_once(user: str, command: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ssh", "-i", str(ARTIFACTS / "ssh" / "id_ed25519"), "-o", f"UserKnownHostsFile={ARTIFACTS}/ssh/known_hosts",
         "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
         "-o", "ConnectTimeout=10", *options, f"{user}@{PACS_IP}", command],
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_the_lab_model_is_the_one_inventory():
    assert PACS_VARS["ansible_connection"] == "ssh" and ADMIN != "root"
    assert VPN_SERVER == str(__import__("ipaddress").ip_network(site()["site_vpn"]["network"]).network_address + 1)
    # Nothing passes by accident of defaults.
    assert DICOM["aet"] != "ORTHANC" and DICOM["port"] != 4242 and HTTPS_PORT != 443 and DICOM["tls"] is True
    assert any(m["aet"] == m["aet"].lower() for m in site()["site_modalities"])


def test_the_admin_logs_in_with_the_key_and_uses_sudo():
    result = _ssh(ADMIN, "id -un; sudo -n id -un")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [ADMIN, "root"]


def test_root_and_passwords_are_refused_over_ssh():
    assert _ssh("root", "true").returncode != 0
    result = _ssh(ADMIN, "true", "-o", "PreferredAuthentications=password")
    assert result.returncode != 0 and "Permission denied" in result.stderr


def test_ufw_and_fail2ban_are_both_active():
    pacs = host(PACS_NAME)
    assert "Status: active" in pacs.check_output("ufw status")
    jails = pacs.check_output("fail2ban-client status")
    for jail in ("sshd", "orthanc-https", "orthanc-dicom", "orthanc-openvpn"):
        assert jail in jails
    assert f"port = {HTTPS_PORT}" in pacs.check_output("cat /etc/fail2ban/jail.d/*.local")


def test_nginx_listens_on_the_site_https_port_only():
    listening = host(PACS_NAME).check_output("ss -Hltn")
    assert f":{HTTPS_PORT} " in listening and ":443 " not in listening


def test_the_monitoring_self_echo_speaks_tls():
    pacs = host(PACS_NAME)
    out = pacs.run("orthanc-remote-check dicom_echo --no-notify")
    assert out.rc == 0 and "status=OK" in out.stdout, out.stdout
    # Without TLS the same check fails: the port is TLS-only.
    plain = pacs.run("""orthanc-remote-check dicom_echo --no-notify --set 'dicom_echo={"host": "127.0.0.1", """
                     f""""port": {DICOM['port']}, "calling_aet": "HEALTHCHECK", "called_aet": "{DICOM['aet']}", """
                     """"extra_args": []}'""")
    assert "status=CRITICAL" in plain.stdout, plain.stdout


def test_verify_playbook_passes_and_brings_the_vpn_clients_up():
    before = sorted(rest_json("/instances"))
    result = play("playbooks/verify.yml")
    assert result.returncode == 0
    assert recap(result, PACS_NAME)["failed"] == 0
    table = result.stdout
    assert re.search(r"^\s*0 FAIL, \d+ WARN, \d+ PASS", table, re.M), table[-4000:]
    rows = [r"server C-STORE of a test instance", r"server arrival checked through REST", r"server test instance deleted",
            r"server bind tcp/8042 on 0\.0\.0\.0, loopback only by the nftables guard", r"server firewall ufw", r"vpn client imaging-gw tunnel",
            r"modality mri-1 C-STORE via VPN gateway imaging-gw", r"modality us-1 C-ECHO refused \(not allowed\)",
            r"modality ct-1 C-STORE via direct", r"user dr-one \(viewer\) HTTPS login via VPN client dr-one",
            r"user dr-one \(viewer\) cannot delete a study", r"user mri-upload \(uploader\) can upload an instance",
            r"user admin \(admin\) cannot run Lua code"]
    for expected in rows:
        assert re.search(rf"^\s*PASS\s+{expected}", table, re.M), (expected, table[-4000:])
    # Every test instance (the server's and each modality's) was deleted again.
    assert sorted(rest_json("/instances")) == before


def test_diagnose_finds_nothing_wrong_on_the_healthy_site_and_changes_nothing():
    # In check mode, as an engineer would run it on a live site (read-only either way). Faults
    # planted in the lab are test_9's.
    result = play("playbooks/diagnose.yml", options=("--check",))
    assert result.returncode == 0 and table_rows(result.stdout, "FAIL") == [], result.stdout[-5000:]
    assert re.search(r"^\s*0 FAIL, \d+ WARN, \d+ PASS", result.stdout, re.M), result.stdout[-4000:]
    for expected in (rf"vpn\s+imaging-gw", rf"port\s+tcp/{DICOM['port']}", r"service\s+orthanc"):
        assert any(re.match(rf"PASS\s+{expected}", row) for row in table_rows(result.stdout, "PASS")), expected
    assert recap(result, PACS_NAME)["changed"] == 0
