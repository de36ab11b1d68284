"""verify.yml's rules (filter_plugins/diagnose.py, verify_*): the server's rows, each test client's
rows, the role probes against the declared policy, and the one table.

The healthy state is test_diagnose's; each test breaks one thing and checks that the table names
the path (or the user) with a FAIL and its reason.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

from diagnose import client_rows, role_probes, server_rows, user_probes, verify_table
from test_diagnose import AUDIT, FACTS, HEALTHY

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "roles" / "orthanc" / "files"))
from orthanc_remote_policy import role_allows  # noqa: E402

SELFTEST_OK = {step: {"ok": True, "detail": ""} for step in ("echo", "store", "arrived", "removed")}
LISTENING = HEALTHY["listening"] + [{"proto": "tcp", "address": "0.0.0.0", "port": 8042}]
GUARD = """table inet orthanc_remote_http_guard {
	chain input {
		type filter hook input priority filter - 5; policy accept;
		iifname != "lo" tcp dport 8042 counter packets 0 bytes 0 drop
	}
}"""
MRI = FACTS["site_modalities"][0]
ECHO_OK = {"stdout": "I: Received Echo Response (Success)", "stderr": ""}
STORE_OK = {"stdout": "I: Received Store Response (Success)", "stderr": ""}
REJECTED = {"stdout": "", "stderr": "F: Association Rejected:"}


def state(**changes) -> dict:
    found = copy.deepcopy(HEALTHY)
    found["listening"] = copy.deepcopy(LISTENING)
    found["http_guard"] = GUARD
    found.update(changes)
    return found


def fails(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r["result"] == "FAIL"]


def healthy_client(**changes) -> dict:
    client = {"host": "orlab-mri", "modality": "mri-1", "via": "VPN gateway gw-1", "echo": ECHO_OK, "intruder": REJECTED,
              "store": STORE_OK, "sent": {"sop": "2.25.1", "pixels_sha256": "x"}, "users": [], "answers": []}
    client.update(changes)
    return client


ARRIVED = {"2.25.1": {"arrived": {"ok": True, "detail": ""}, "removed": {"ok": True, "detail": ""}}}


def test_the_healthy_server_has_only_pass_rows():
    rows = server_rows(state(), FACTS, AUDIT, SELFTEST_OK, 8042)
    assert fails(rows) == [] and all(r["result"] == "PASS" for r in rows), rows
    paths = " | ".join(r["path"] for r in rows)
    for expected in ("server bind tcp/8042 on 0.0.0.0, loopback only by the nftables guard", "server bind tcp/11112", "server firewall",
                     "server C-STORE of a test instance", "server arrival checked through REST", "server test instance deleted"):
        assert expected in paths


def test_orthanc_http_on_a_public_address_without_the_guard_fails_the_bind_check():
    rows = fails(server_rows(state(http_guard=""), FACTS, AUDIT, SELFTEST_OK, 8042))
    assert [r["path"] for r in rows] == ["server bind tcp/8042"] and "without nginx" in rows[0]["reason"]
    # A guard for another port does not count.
    other = GUARD.replace("dport 8042", "dport 8043")
    assert fails(server_rows(state(http_guard=other), FACTS, AUDIT, SELFTEST_OK, 8042))
    # Bound to loopback only, no guard is needed.
    local = [dict(s, address="127.0.0.1") if s["port"] == 8042 else s for s in LISTENING]
    assert not fails(server_rows(state(listening=local, http_guard=""), FACTS, AUDIT, SELFTEST_OK, 8042))


def test_a_port_bound_to_loopback_only_is_unreachable():
    local = [dict(s, address="127.0.0.1") if s["port"] == 11112 else s for s in LISTENING]
    rows = fails(server_rows(state(listening=local), FACTS, AUDIT, SELFTEST_OK, 8042))
    assert [r["path"] for r in rows] == ["server bind tcp/11112"], rows
    # Bound to the server's own public address is reachable.
    own = [dict(s, address="10.231.50.10") if s["port"] == 11112 else s for s in LISTENING]
    assert fails(server_rows(state(listening=own), dict(FACTS, site_pacs_addresses=["10.231.50.10"]), AUDIT, SELFTEST_OK)) == []


def test_firewall_differing_from_the_model_fails():
    rows = fails(server_rows(state(), FACTS, {"missing": ["allow from 10.231.50.40 to any port 11112 proto tcp"], "extra": []},
                             SELFTEST_OK))
    assert rows and rows[0]["path"].startswith("server firewall allow from 10.231.50.40")


@pytest.mark.parametrize("step", ["echo", "store", "arrived", "removed"])
def test_each_failed_self_test_step_is_a_fail_with_its_detail(step):
    broken = dict(SELFTEST_OK, **{step: {"ok": False, "detail": "E: Association Request Failed"}})
    rows = fails(server_rows(state(), FACTS, AUDIT, broken))
    assert len(rows) == 1 and "E: Association Request Failed" in rows[0]["reason"] and "fix:" in rows[0]["reason"]


def test_a_missing_self_test_fails_and_check_mode_warns():
    assert fails(server_rows(state(), FACTS, AUDIT, None))
    rows = server_rows(state(), FACTS, AUDIT, {"skipped": {"ok": True, "detail": "check mode: nothing stored"}})
    assert not fails(rows) and [r for r in rows if r["result"] == "WARN"]


def test_a_healthy_modality_path_passes_echo_rejection_and_store():
    rows = client_rows([healthy_client()], FACTS["site_modalities"], FACTS["site_users"], ARRIVED, ["orlab-mri"])
    assert [r["result"] for r in rows] == ["PASS", "PASS", "PASS"], rows
    assert rows[0]["path"] == "modality mri-1 C-ECHO via VPN gateway gw-1"


def test_a_broken_modality_path_is_named():
    timeout = {"stdout": "", "stderr": "E: Association Request Failed: 0006:031b Failed to establish association"}
    rows = fails(client_rows([healthy_client(echo=timeout, store=timeout, intruder=timeout)], FACTS["site_modalities"],
                             FACTS["site_users"], {}, ["orlab-mri"]))
    assert {r["path"] for r in rows} == {"modality mri-1 C-ECHO via VPN gateway gw-1", "modality mri-1 C-STORE via VPN gateway gw-1",
                                          "modality mri-1 unknown AE title rejected"}
    assert all("Failed to establish association" in r["reason"] for r in rows)
    assert all("diagnose MODALITY=mri-1" in r["reason"] for r in rows)


def test_an_unknown_ae_title_that_is_accepted_fails():
    accepted = {"stdout": "I: Association Accepted (Max Send PDV: 16372)\nI: Received Echo Response (Success)", "stderr": ""}
    rows = fails(client_rows([healthy_client(intruder=accepted)], FACTS["site_modalities"], FACTS["site_users"], ARRIVED, ["orlab-mri"]))
    assert [r["path"] for r in rows] == ["modality mri-1 unknown AE title rejected"] and "was accepted" in rows[0]["reason"]


def test_a_stored_instance_that_did_not_arrive_fails():
    lost = {"2.25.1": {"arrived": {"ok": False, "detail": "SOP Instance UID 2.25.1 is not in Orthanc's index"}}}
    rows = fails(client_rows([healthy_client()], FACTS["site_modalities"], FACTS["site_users"], lost, ["orlab-mri"]))
    assert len(rows) == 1 and "not in Orthanc's index" in rows[0]["reason"]


def test_echo_must_be_refused_when_not_allowed():
    store_only = [dict(MRI, allow=["store"])]
    rows = client_rows([healthy_client()], store_only, FACTS["site_users"], ARRIVED, ["orlab-mri"])
    assert fails(rows) and "succeeded although" in fails(rows)[0]["reason"]
    refused = client_rows([healthy_client(echo=REJECTED)], store_only, FACTS["site_users"], ARRIVED, ["orlab-mri"])
    assert not fails(refused)


def test_a_silent_test_client_fails():
    rows = fails(client_rows([], FACTS["site_modalities"], FACTS["site_users"], {}, ["orlab-mri"]))
    assert [r["path"] for r in rows] == ["test client orlab-mri"]


def test_a_tunnel_without_its_address_fails():
    up = {"host": "orlab-dr-one", "vpn_client": "dr-one", "address": "10.8.0.20",
          "tunnel": "5: tun0    inet 10.8.0.20/24 scope global tun0"}
    assert not fails(client_rows([up], [], [], {}, ["orlab-dr-one"]))
    rows = fails(client_rows([dict(up, tunnel="")], [], [], {}, ["orlab-dr-one"]))
    assert rows and rows[0]["path"] == "vpn client dr-one tunnel (10.8.0.20)"


@pytest.mark.parametrize("role", ["viewer", "uploader", "admin"])
def test_every_probe_agrees_with_the_declared_policy(role):
    probes = role_probes(role)
    assert any(p["allowed"] for p in probes) and any(not p["allowed"] for p in probes)
    for probe in probes:
        assert role_allows(role, probe["method"], probe["path"]) is probe["allowed"], probe


def user_client(name: str, answers: list[str]) -> dict:
    return {"host": "orlab-dr-one", "users": [name], "https_via": "VPN client dr-one", "answers": answers}


def test_a_viewer_with_its_rights_passes_and_a_viewer_that_can_delete_fails():
    good = client_rows([user_client("dr-one", ["200", "403", "403"])], [], FACTS["site_users"], {}, ["orlab-dr-one"])
    assert not fails(good) and len(good) == 4
    bad = fails(client_rows([user_client("dr-one", ["200", "404", "403"])], [], FACTS["site_users"], {}, ["orlab-dr-one"]))
    assert [r["path"] for r in bad] == ["user dr-one (viewer) cannot delete a study"]
    assert "DELETE" in bad[0]["reason"] and "404" in bad[0]["reason"]


@pytest.mark.parametrize("code", ["401", "000"])
def test_a_refused_or_unanswered_login_fails_once(code):
    rows = client_rows([user_client("dr-one", [code, code, code])], [], FACTS["site_users"], {}, ["orlab-dr-one"])
    assert [r["result"] for r in rows] == ["FAIL"] and code in rows[0]["reason"]


def test_answers_are_split_between_users_in_probe_order():
    users = [{"name": "admin", "role": "admin"}, {"name": "dr-one", "role": "viewer"}]
    pairs = user_probes(users)
    assert [u["name"] for u, _ in pairs] == ["admin"] * 3 + ["dr-one"] * 3
    client = {"host": "gw", "users": ["admin", "dr-one"], "https_via": "direct",
              "answers": ["200", "404", "403", "200", "403", "403"]}
    assert not fails(client_rows([client], [], users, {}, ["gw"]))


def test_an_upload_passes_only_when_the_instance_arrived():
    users = [{"name": "up", "role": "uploader"}]
    client = {"host": "gw", "users": ["up"], "https_via": "direct", "answers": ["200", "403", "403"],
              "uploaded": {"sop": "2.25.9", "pixels_sha256": "x"}}
    assert not fails(client_rows([client], [], users, {"2.25.9": {"arrived": {"ok": True, "detail": ""}}}, ["gw"]))
    lost = fails(client_rows([client], [], users, {"2.25.9": {"arrived": {"ok": False, "detail": "not in Orthanc's index"}}}, ["gw"]))
    assert [r["path"] for r in lost] == ["user up (uploader) can upload an instance"] and "not in Orthanc's index" in lost[0]["reason"]
    refused = fails(client_rows([dict(client, answers=["403", "403", "403"])], [], users, {}, ["gw"]))
    assert [r["path"] for r in refused] == ["user up (uploader) can upload an instance"]


def test_the_table_has_one_row_per_check_and_the_counts():
    rows = server_rows(state(), FACTS, AUDIT, dict(SELFTEST_OK, store={"ok": False, "detail": "refused"}))
    lines = verify_table(rows)
    assert lines[0].split()[:2] == ["RESULT", "PATH"] and len(lines) == len(rows) + 2
    assert any(line.startswith("FAIL") and "C-STORE" in line and "refused" in line for line in lines)
    assert lines[-1].startswith("1 FAIL, 0 WARN")
