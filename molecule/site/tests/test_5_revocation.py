"""Removing a radiologist from the inventory and re-running site.yml revokes them: their old
profile cannot connect, Orthanc Explorer in their browser cannot load, their password and profile
are gone from the controller, the other radiologist still connects. Then the inventory is restored
(they get a new profile, and their browser shows the study again)."""

import base64
import ssl
import urllib.error
import urllib.request

from conftest import (ARTIFACTS, HTTPS_PORT, PACS_IP, PACS_NAME, VPN_SERVER, browse, browser_host, ca_file,
                      explorer_study, host, hosts_of, play, recap, rest, site, wait_for)

RADIOLOGISTS = {v["test_vpn_client"]: h for h, v in hosts_of("lab_radiologists").items()}
# The radiologist with the browser leaves: Chromium on their laptop is tried too.
GONE = hosts_of("lab_radiologists")[browser_host()]["test_vpn_client"]
KEPT = next(name for name in sorted(RADIOLOGISTS) if name != GONE)
ATTEMPT = "lab-revoked-profile"  # the one connection attempt with the old profile (a transient unit)


def _https_through_tunnel(name: str) -> str:
    password = (ARTIFACTS / "credentials" / f"{name}.txt").read_text().split()[0]
    return host(RADIOLOGISTS[name]).run(
        f"curl -sk --interface tun0 --max-time 10 -u '{name}:{password}' -o /dev/null -w '%{{http_code}}' "
        f"https://{VPN_SERVER}:{HTTPS_PORT}/system").stdout


def test_removing_a_radiologist_revokes_them_and_restoring_brings_them_back():
    facts = site()
    old_password = (ARTIFACTS / "credentials" / f"{GONE}.txt").read_text().split()[0]
    assert _https_through_tunnel(KEPT) == "200" and _https_through_tunnel(GONE) == "200"
    _, fragment, shown = explorer_study()
    # The departing radiologist's laptop still has its profile; its client is stopped so the one
    # attempt below is the only one (a client retrying for minutes would get itself banned).
    gone_box = host(RADIOLOGISTS[GONE])
    gone_box.check_output("systemctl stop openvpn-client@%s", GONE)

    # Limited to the PACS: the departing laptop's test client still names GONE (its host variables
    # cannot be dropped through extra vars), and the first play refuses a test client naming an
    # entry that is gone, except one the run's --limit leaves out (docs/inventory.md, "Test clients").
    dropped = play("site.yml", {
        "site_vpn_clients": [c for c in facts["site_vpn_clients"] if c["name"] != GONE],
        "site_users": [u for u in facts["site_users"] if u["name"] != GONE],
    }, limit=PACS_NAME)
    assert dropped.returncode == 0 and recap(dropped, PACS_NAME)["failed"] == 0

    # Nothing kept for them on the controller.
    assert not (ARTIFACTS / "vpn" / f"{GONE}.ovpn").exists()
    assert not (ARTIFACTS / "credentials" / f"{GONE}.txt").exists()
    # Their old password no longer opens Orthanc (from an admin source, so only the user is refused).
    request = urllib.request.Request(f"https://{PACS_IP}:{HTTPS_PORT}/system")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{GONE}:{old_password}".encode()).decode())
    try:
        urllib.request.urlopen(request, context=ssl.create_default_context(cafile=ca_file()), timeout=15)
        status = 200
    except urllib.error.HTTPError as error:
        status = error.code
    assert status == 401

    # Their old profile cannot connect: the server refuses the revoked certificate. Chromium opens
    # Orthanc Explorer with their old password while that attempt runs (or once it has failed), so
    # a tunnel it brought up would carry the page; without one the laptop has no way to the VPN
    # subnet (lab_unreachable_routes) and Chromium fails before any HTTP.
    gone_box.check_output(
        f"systemd-run --unit={ATTEMPT} --collect -p StandardOutput=truncate:/root/{ATTEMPT}.log "
        f"timeout 40 openvpn --config /etc/openvpn/client/{GONE}.conf --hand-window 15 --connect-retry-max 1 "
        "--dev tun9")

    def attempt_log() -> str:
        return gone_box.run(f"cat /root/{ATTEMPT}.log").stdout

    def attempt_over() -> bool:
        return gone_box.run(f"systemctl is-active --quiet {ATTEMPT}").rc != 0

    wait_for(lambda: "Initialization Sequence Completed" in attempt_log() or attempt_over(), timeout=45)
    page = browse(RADIOLOGISTS[GONE], GONE, old_password, shown, fragment, settle=2)
    assert wait_for(attempt_over, timeout=45), "the old profile's attempt did not end"
    out = attempt_log()
    assert "Initialization Sequence Completed" not in out, out
    assert page.error == "ERR_ADDRESS_UNREACHABLE" and not page.found and page.logins == 0, page
    log = host(PACS_NAME).check_output("tail -n 200 /var/log/openvpn/orthanc-remote.log")
    assert "certificate revoked" in log, log[-3000:]

    # The other radiologist reconnects after the server's restart and still gets in.
    assert wait_for(lambda: _https_through_tunnel(KEPT) == "200", timeout=90), "the kept radiologist lost access"

    # Restore the inventory: a new certificate, profile and password; verify.yml installs them.
    restored = play("site.yml")
    assert restored.returncode == 0 and recap(restored, PACS_NAME)["failed"] == 0
    assert (ARTIFACTS / "vpn" / f"{GONE}.ovpn").exists()
    verified = play("playbooks/verify.yml")
    assert verified.returncode == 0
    assert wait_for(lambda: _https_through_tunnel(GONE) == "200", timeout=60)
    assert rest("/system")[0] == 200
    new_password = (ARTIFACTS / "credentials" / f"{GONE}.txt").read_text().split()[0]
    page = browse(RADIOLOGISTS[GONE], GONE, new_password, shown, fragment)
    assert " dev tun0 " in page.route and page.error == "" and page.found, page
