"""Each modality through its real path, with dcmtk: the MRI and the ultrasound on the imaging LAN
through the VPN gateway, the CT directly over DICOM TLS with its issued certificate."""

import re

import pytest

from conftest import (DICOM, PACS_IP, PACS_NAME, echo, echo_ok, generate_series, host, modality, modality_host, play,
                      series_in_pacs, site, store)

KINDS = {"mri-1": "MR", "ct-1": "CT", "us-1": "US"}
MODALITIES = [m["name"] for m in site()["site_modalities"]]


def test_every_lab_modality_is_tested():
    assert sorted(MODALITIES) == sorted(KINDS)


def test_the_lan_modalities_have_no_route_but_the_gateway():
    for name in MODALITIES:
        if not modality(name).get("vpn_gateway"):
            continue
        box = host(modality_host(name))
        assert "default" not in box.check_output("ip route")
        assert box.run(f"ip route get {PACS_IP}").rc != 0  # the PACS's public address: unreachable
        assert "10.231.51.2" in box.check_output("ip route get 10.8.0.1")


@pytest.mark.parametrize("name", MODALITIES)
def test_echo_succeeds_exactly_where_allowed(name):
    out = echo(name)
    assert echo_ok(out) == ("echo" in modality(name)["allow"]), out


@pytest.mark.parametrize("name", MODALITIES)
def test_a_generated_series_arrives_whole(name):
    series = generate_series(name, KINDS[name])
    out = store(name)
    assert out.count("Received Store Response (Success)") == len(series["instances"]), out
    stored = series_in_pacs(series["series"])
    assert stored == {i["sop"]: i["sha256"] for i in series["instances"]}


@pytest.mark.parametrize("name", MODALITIES)
def test_the_wrong_case_calling_ae_title_is_refused(name):
    generate_series(name, KINDS[name], count=1)
    aet = modality(name)["aet"]
    out = store(name, aet=aet.swapcase())
    assert "Association Rejected" in out and "Received Store Response" not in out, out


def test_the_wrong_case_called_ae_title_is_refused():
    generate_series("ct-1", "CT", count=1)
    out = store("ct-1", called=DICOM["aet"].lower())
    assert "Association Rejected" in out and "Received Store Response" not in out, out


def test_plain_dicom_is_refused_on_the_tls_port():
    out = host(modality_host("ct-1")).run(
        f"echoscu -v -to 5 -ta 5 -td 5 -aet {modality('ct-1')['aet']} -aec {DICOM['aet']} "
        f"{site()['site_pacs_fqdn']} {DICOM['port']} 2>&1").stdout
    assert not echo_ok(out), out


def test_an_outside_host_cannot_use_the_servers_verify_ae_title():
    """verify.yml's self-test AE title may echo and store, but only from the server itself."""
    ct = modality("ct-1")
    assert echo_ok(echo("ct-1")), "the CT's own AE title must work for this test to mean anything"
    out = echo("ct-1", aet="VERIFY")
    assert "Association Rejected" in out and not echo_ok(out), out
    assert ct["aet"] != "VERIFY"


def test_verify_fails_naming_the_path_when_a_modalitys_path_is_broken():
    """Cut the MRI's only route to the PACS (the gateway): verify's table names the MRI's path."""
    box = host(modality_host("mri-1"))
    route = next(line for line in box.check_output("ip route").splitlines() if line.startswith("10.8.0.0/24"))
    box.check_output(f"ip route del {route}")
    try:
        result = play("playbooks/verify.yml", limit=f"{PACS_NAME},{modality_host('mri-1')}")
    finally:
        box.check_output(f"ip route add {route}")
    assert result.returncode != 0
    table = result.stdout
    assert re.search(r"^\s*FAIL\s+modality mri-1 C-ECHO via VPN gateway imaging-gw\s+C-ECHO as MRI_LAB1 failed", table, re.M), table[-4000:]
    assert re.search(r"^\s*FAIL\s+modality mri-1 C-STORE via VPN gateway imaging-gw", table, re.M), table[-4000:]
    assert re.search(r"^\s*PASS\s+server C-STORE of a test instance", table, re.M), table[-4000:]
    # The run's error (on stderr) names the failed path too.
    assert re.search(r"\d+ FAIL: .*modality mri-1", result.stderr + result.stdout), result.stderr[-2000:]
    # The route is back: the path works again.
    assert echo_ok(echo("mri-1"))
