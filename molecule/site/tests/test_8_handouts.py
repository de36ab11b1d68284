"""The hand-outs are enough: each modality simulator is configured from nothing but the fields of
its hand-out (artifacts/handouts/modality-<name>.json, with the certificate files it names), as
the modality's engineer would type them on the console, and then talks to the PACS."""

import base64
import json

import pytest

from conftest import ARTIFACTS, echo_ok, generate_series, host, modality_host, site

MODALITIES = [m["name"] for m in site()["site_modalities"]]
KINDS = {"mri-1": "MR", "ct-1": "CT", "us-1": "US"}
CONSOLE = "/root/from-handout"


def handout(name: str) -> dict:
    return json.loads((ARTIFACTS / "handouts" / f"modality-{name}.json").read_text())


def console_args(name: str, fields: dict) -> str:
    """dcmtk options built only from the hand-out; its certificate files copied into the simulator."""
    box = host(modality_host(name))
    box.check_output(f"rm -rf {CONSOLE} && mkdir -m 700 {CONSOLE}")
    tls = ""
    if fields["tls"]:
        for key, relative in fields["tls_files"].items():
            data = base64.b64encode((ARTIFACTS / relative).read_bytes()).decode()
            box.check_output(f"echo {data} | base64 -d > {CONSOLE}/{key} && chmod 600 {CONSOLE}/{key}")
        tls = f"+tls {CONSOLE}/private_key {CONSOLE}/certificate +cf {CONSOLE}/ca "
    return (f"-v -to 10 -ta 10 -td 10 {tls}-aet '{fields['calling_aet']}' -aec '{fields['called_aet']}' "
            f"{fields['host']} {fields['port']}")


@pytest.mark.parametrize("name", MODALITIES)
def test_the_handout_names_the_inventory_values(name):
    fields = handout(name)
    m = next(m for m in site()["site_modalities"] if m["name"] == name)
    assert (fields["calling_aet"], fields["called_aet"], fields["port"]) == (
        m["aet"], site()["site_dicom"]["aet"], site()["site_dicom"]["port"])
    assert fields["path"] == ("vpn_gateway" if m.get("vpn_gateway") else "direct")


@pytest.mark.parametrize("name", MODALITIES)
def test_a_simulator_configured_from_its_handout_alone_connects(name):
    fields = handout(name)
    args = console_args(name, fields)
    box = host(modality_host(name))
    if "echo" in fields["allowed"]:
        out = box.run(f"echoscu {args} 2>&1").stdout
        assert echo_ok(out), out
    else:  # store-only (the ultrasound): a C-STORE is the only way it can prove the path
        generate_series(name, KINDS[name], count=1)
        out = box.run(f"storescu {args} /root/lab/series/000.dcm 2>&1").stdout
        assert "Received Store Response (Success)" in out, out
