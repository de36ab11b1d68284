"""Each radiologist: tunnel up with its static address, HTTPS login through the tunnel, viewer
rights (reads a study, cannot delete it). The radiologist with a browser: Orthanc Explorer in
Chromium through the tunnel shows a stored study; not without the lab's CA, not with a wrong
password."""

import json

import pytest

from conftest import (ARTIFACTS, HTTPS_PORT, VPN_SERVER, access_log_length, access_log_since, browse, browser_host,
                      ca_file, explorer_study, host, hosts_of, password, rest_json, site, tunnel_address)

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


BROWSER = browser_host()
BROWSER_NAME = hosts_of("lab_radiologists")[BROWSER]["test_vpn_client"]


def test_orthanc_explorer_in_chromium_through_the_tunnel_shows_a_stored_study():
    study, fragment, shown = explorer_study()
    before = access_log_length()
    page = browse(BROWSER, BROWSER_NAME, password(BROWSER_NAME), shown, fragment)
    screenshots = ARTIFACTS / "browser"
    screenshots.mkdir(exist_ok=True)
    (screenshots / f"{BROWSER_NAME}.png").write_bytes(page.screenshot)
    assert " dev tun0 " in page.route, page
    assert page.error == "" and page.found, page
    assert (page.logins, page.refused) == (1, 0), page
    assert page.screenshot.startswith(b"\x89PNG"), page
    # The PACS served the study to Chromium at the radiologist's tunnel address, as that user.
    address = next(c["address"] for c in site()["site_vpn_clients"] if c["name"] == BROWSER_NAME)
    served = [line for line in access_log_since(before)
              if line.startswith(f"{address} - {BROWSER_NAME} ") and f'"GET /studies/{study}?full' in line]
    assert served and all('" 200 ' in line and "HeadlessChrome" in line for line in served), served


def test_chromium_refuses_the_site_without_the_lab_ca():
    _, fragment, shown = explorer_study()
    page = browse(BROWSER, BROWSER_NAME, password(BROWSER_NAME), shown, fragment, trust_lab_ca=False, settle=2)
    assert page.error == "ERR_CERT_AUTHORITY_INVALID" and not page.found, page
    assert page.logins == 0, page


def test_chromium_with_a_wrong_password_shows_no_study():
    _, fragment, shown = explorer_study()
    page = browse(BROWSER, BROWSER_NAME, "not-the-password", shown, fragment, settle=2)
    assert (page.logins, page.refused) == (1, 1), page
    assert not page.found and "HTTP ERROR 401" in page.text, page
