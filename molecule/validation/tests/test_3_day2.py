"""Day-2: renew the certificates now, and show the site's state, on the server test_2 provisioned.

`playbooks/renew-certificates.yml` reissues the HTTPS certificate on every run (a second run
without it would change nothing), and prints its dates. `playbooks/status.yml` prints who may
connect from where and each certificate's expiry; its last play (the monitoring checks) fails
here because log_monitoring (which installs orthanc-remote-status) was never applied.
"""

from __future__ import annotations

import pytest
import testinfra
from conftest import run_make, write_inventory
from test_2_rotate_password import VAULTED_2, site

HOST = testinfra.get_host("docker://mol-validation-pacs")


def serial() -> str:
    return HOST.check_output("openssl x509 -noout -serial -in /etc/orthanc-remote/tls/https.crt")


@pytest.fixture(scope="module")
def inventory(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("day2")
    variables = site(workdir / "artifacts", VAULTED_2)
    variables["site_certificates"] = {"https": {"mode": "internal_ca"}}
    return write_inventory(workdir, variables)


def test_renew_certificates_reissues_the_https_certificate_each_time(inventory):
    rc, out = run_make("renew-certificates", inventory)
    assert rc == 0, out
    first = serial()
    rc, out = run_make("renew-certificates", inventory)
    assert rc == 0, out
    assert "notAfter=" in out and "subject=" in out and "failed=0" in out
    assert serial() != first, "the certificate was not reissued"
    assert "orthanc-remote CA" in HOST.check_output("openssl x509 -noout -issuer -in /etc/orthanc-remote/tls/https.crt")


def test_status_shows_who_may_connect_and_the_expiries(inventory):
    rc, out = run_make("status", inventory)
    assert "admin source 10.231.44.1/32: SSH 22, HTTPS 443" in out, out
    assert "modality ct-1 (AE CT1) from 10.231.44.20 directly: DICOM 4242 (echo)" in out
    assert "/etc/orthanc-remote/tls/https.crt: " in out
    # No log_monitoring on this server: the checks part (orthanc-remote-status) is missing and fails.
    assert rc != 0 and "orthanc-remote-status" in out, out
