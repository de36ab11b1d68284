"""Day-2: `make rotate-password USER=NAME` (playbooks/rotate-password.yml) rotates one user's password and applies it.

Runs after the bad inventories (the host must be fresh for those). A small valid site (no VPN,
plain DICOM, the orthanc role's self-signed HTTPS): the first rotation deploys Orthanc with a
generated password; the next one replaces it, and the old password stops working over HTTPS
while the new one works. A vaulted password equal to the deployed one is refused; a new vaulted
value is deployed.
"""

from __future__ import annotations

import pathlib

import pytest
import testinfra
from conftest import run_make, write_inventory

HOST = testinfra.get_host("docker://mol-validation-pacs")
VAULTED_1 = "Vaulted-Viewer-One-2026"
VAULTED_2 = "Vaulted-Viewer-Two-2026"


def site(artifacts: pathlib.Path, viewer_password: str) -> dict:
    return {
        "site_name": "rotate",
        "site_pacs_fqdn": "pacs.rotate.test",
        "site_pacs_addresses": ["10.231.44.10"],
        "site_admin_sources": ["10.231.44.1/32"],
        "site_dicom": {"aet": "ROTATE_PACS", "port": 4242, "tls": False},
        "site_modalities": [{"name": "ct-1", "aet": "CT1", "host": "10.231.44.20", "allow": ["echo"]}],
        "site_users": [{"name": "admin", "role": "admin"},
                       {"name": "dr-view", "role": "viewer", "password": viewer_password}],
        "site_artifacts_dir": str(artifacts),
        "site_certificates": {"https": {"mode": "self_signed"}},
    }


def https_status(user: str, password: str) -> str:
    result = HOST.run(
        "curl -sk -o /dev/null -w '%%{http_code}' -u %s https://127.0.0.1/system",
        f"{user}:{password}",
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    # The image's package lists are empty: refresh them, then python3-apt (Ansible's apt module) and curl.
    setup = HOST.run("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-apt curl")
    assert setup.rc == 0, setup.stderr
    return tmp_path_factory.mktemp("rotate")


def test_a_generated_password_is_replaced_and_the_old_one_stops_working(workdir):
    artifacts = workdir / "artifacts"
    inventory = write_inventory(workdir, site(artifacts, VAULTED_1))
    rc, out = run_make("rotate-password", inventory, USER="admin")
    assert rc == 0, out
    first = (artifacts / "credentials" / "admin.txt").read_text().strip()
    assert https_status("admin", first) == "200"
    rc, out = run_make("rotate-password", inventory, USER="admin")
    assert rc == 0, out
    assert "admin: new password deployed; it is in " in out and "failed=0" in out
    second = (artifacts / "credentials" / "admin.txt").read_text().strip()
    assert second != first and len(second) >= 32
    assert second not in out and first not in out, "a password was printed"
    assert https_status("admin", first) == "401"
    assert https_status("admin", second) == "200"


def test_a_vaulted_password_is_refused_until_it_changes_then_applied(workdir):
    artifacts = workdir / "artifacts"
    inventory = write_inventory(workdir, site(artifacts, VAULTED_1))
    assert https_status("dr-view", VAULTED_1) == "200"
    rc, out = run_make("rotate-password", inventory, USER="dr-view")
    assert rc != 0 and "the vault still holds the password the server already has" in out, out
    inventory = write_inventory(workdir, site(artifacts, VAULTED_2))
    rc, out = run_make("rotate-password", inventory, USER="dr-view")
    assert rc == 0, out
    assert "it is the value now in the vault" in out
    assert VAULTED_2 not in out
    assert https_status("dr-view", VAULTED_1) == "401"
    assert https_status("dr-view", VAULTED_2) == "200"


def test_an_unknown_user_is_refused(workdir):
    inventory = write_inventory(workdir, site(workdir / "artifacts", VAULTED_2))
    rc, out = run_make("rotate-password", inventory, USER="nobody")
    assert rc != 0 and "user: nobody is not in site_users" in out, out
