"""Each radiologist: tunnel up with its static address, HTTPS login through the tunnel, viewer
rights (reads a study, cannot delete it)."""

import json

import pytest

from conftest import HTTPS_PORT, VPN_SERVER, ca_file, host, hosts_of, password, rest_json, site, tunnel_address

RADIOLOGISTS = {v["test_vpn_client"]: h for h, v in hosts_of("lab_radiologists").items()}


def _curl(box: str, user: str, path: str, method: str = "GET") -> tuple[str, str]:
    b = host(box)
    b.check_output("test -f /root/lab-ca.crt || echo %s | base64 -d > /root/lab-ca.crt",
                   __import__("base64").b64encode(open(ca_file(), "rb").read()).decode())
    out = b.run(
        f"curl --silent --show-error --interface tun0 --max-time 15 --cacert /root/lab-ca.crt "
        f"-u '{user}:{password(user)}' -X {method} -w '\\n%{{http_code}}' https://{VPN_SERVER}:{HTTPS_PORT}{path}"
    ).stdout
    body, _, code = out.rpartition("\n")
    return code, body


def test_two_radiologists():
    kinds = {c["name"]: c["kind"] for c in site()["site_vpn_clients"]}
    assert len(RADIOLOGISTS) == 2 and all(kinds[name] == "radiologist" for name in RADIOLOGISTS)


@pytest.mark.parametrize("name", sorted(RADIOLOGISTS))
def test_tunnel_up_with_the_static_address(name):
    address = next(c["address"] for c in site()["site_vpn_clients"] if c["name"] == name)
    assert f" {address}/" in tunnel_address(RADIOLOGISTS[name])


@pytest.mark.parametrize("name", sorted(RADIOLOGISTS))
def test_viewer_reads_a_study_and_cannot_delete_it(name):
    studies = rest_json("/studies")
    assert studies, "test_2 stored studies first"
    code, body = _curl(RADIOLOGISTS[name], name, f"/studies/{studies[0]}")
    assert code == "200" and json.loads(body)["ID"] == studies[0]
    code, _ = _curl(RADIOLOGISTS[name], name, f"/studies/{studies[0]}", "DELETE")
    assert code == "403"
    assert studies[0] in rest_json("/studies")


@pytest.mark.parametrize("name", sorted(RADIOLOGISTS))
def test_a_wrong_password_is_refused(name):
    box = host(RADIOLOGISTS[name])
    out = box.run(f"curl -s --interface tun0 --max-time 15 -k -u '{name}:not-the-password' -o /dev/null "
                  f"-w '%{{http_code}}' https://{VPN_SERVER}:{HTTPS_PORT}/studies").stdout
    assert out == "401"
