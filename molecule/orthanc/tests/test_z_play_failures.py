"""The role refuses bad input: a weak password before anything changes, and a configuration
Orthanc rejects with Orthanc's own error (then the converged configuration is put back).

These run ansible-playbook against the scenario's inventory (molecule's environment carries the
ANSIBLE_CONFIG with the roles and filter plugins), limited to mol-orthanc-server.
"""

import json
import os
import pathlib
import subprocess

import testinfra

SERVER = testinfra.get_host("docker://mol-orthanc-server")
SCENARIO = pathlib.Path(__file__).resolve().parent.parent
INVENTORY = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "inventory"
TAGS = "orthanc_validate,orthanc_users,orthanc_config,orthanc_health"


def _play(extra_vars=None, tags=TAGS):
    cmd = [
        "ansible-playbook", "-i", str(INVENTORY), str(SCENARIO / "role_only.yml"),
        "--limit", "mol-orthanc-server", "--tags", tags,
    ]
    if extra_vars is not None:
        cmd += ["-e", json.dumps(extra_vars)]
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    return result.returncode, result.stdout + result.stderr


def _fingerprint():
    return SERVER.run("sha256sum /etc/orthanc/*.json /etc/orthanc/python/*; systemctl show -p ActiveEnterTimestamp orthanc").stdout


def test_weak_passwords_fail_the_play_before_anything_changes():
    before = _fingerprint()
    users = [
        {"name": "admin", "role": "admin", "password": "admin_password"},
        {"name": "dr-view", "role": "viewer", "password": "orthanc"},
        {"name": "mod-upload", "role": "uploader", "password": "short-1"},
    ]
    rc, out = _play({"site_users": users}, tags="orthanc_validate,orthanc_users,orthanc_config")
    assert rc != 0, out
    for name in ("admin", "dr-view", "mod-upload"):
        assert f"site_users[{name}].password: refused" in out, out
    assert "remove password to have a strong one generated" in out
    assert "admin_password" not in out.replace("vault_admin_password", ""), "the password must not be printed"
    assert "changed=0" in out, out
    assert _fingerprint() == before


def test_a_configuration_orthanc_refuses_fails_the_play_with_orthancs_error():
    assert SERVER.run("cp -p /etc/orthanc/orthanc.json /root/orthanc.json.good").rc == 0
    rc, out = _play({"orthanc_config_overrides": {"DicomScpTimeout": "thirty"}})
    assert rc != 0, out
    assert "Orthanc failed its health check" in out, out
    # Orthanc's own error line, from its log, is in the play's failure message.
    assert 'The configuration option "DicomScpTimeout" must be an integer' in out, out
    # Put the converged configuration back (cheaper than a full run) and check Orthanc is back.
    restore = SERVER.run(
        "cp -p /root/orthanc.json.good /etc/orthanc/orthanc.json && systemctl reset-failed orthanc"
        " && systemctl restart orthanc && for i in $(seq 60); do ss -Hltn 'sport = :4242' | grep -q . && break;"
        " sleep 0.5; done"
    )
    assert restore.rc == 0, restore.stderr
    echo = SERVER.run("echoscu -v -aet HEALTHCHECK -aec ORTHANC-MOL 127.0.0.1 4242")
    assert "Received Echo Response (Success)" in echo.stdout + echo.stderr


def test_overrides_that_weaken_a_control_fail_the_play_naming_each_key():
    before = _fingerprint()
    overrides = {"AuthenticationEnabled": False, "ExecuteLuaEnabled": True, "DicomAlwaysAllowStore": True,
                 "MaximumPatientCount": 10, "StableAge": 30}
    rc, out = _play({"orthanc_config_overrides": overrides}, tags="orthanc_validate")
    assert rc != 0, out
    for key in ("AuthenticationEnabled", "ExecuteLuaEnabled", "DicomAlwaysAllowStore", "MaximumPatientCount"):
        assert f"orthanc_config_overrides: {key} is refused" in out, out
    assert "StableAge is refused" not in out
    assert "changed=0" in out, out
    assert _fingerprint() == before


def test_an_orthanc_older_than_the_security_release_fails_the_play():
    # The installed package is 1.10.1+dfsg-2+deb12u1; a floor above it must be refused, naming both.
    installed = SERVER.run("dpkg-query -W -f='${Version}' orthanc").stdout.strip()
    rc, out = _play({"orthanc_minimum_version": "1.10.1+dfsg-2+deb12u99"}, tags="orthanc_install")
    assert rc != 0, out
    assert f"orthanc {installed} is installed but 1.10.1+dfsg-2+deb12u99 or later is needed" in out, out
    rc, out = _play({"orthanc_minimum_version": "1.10.1+dfsg-2+deb12u1"}, tags="orthanc_install")
    assert rc == 0, out
