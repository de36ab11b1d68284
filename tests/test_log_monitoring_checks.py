"""Tests for the check and status commands the log_monitoring role installs on the server.

They are plain Python 3 scripts (stdlib only) in roles/log_monitoring/files; programs they call
(openssl, systemctl, echoscu) are replaced by a fake runner.
"""

import datetime as dt
import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "roles" / "log_monitoring" / "files"))

import orthanc_remote_check as check  # noqa: E402
import orthanc_remote_status as status  # noqa: E402

NOW = dt.datetime(2026, 11, 29, 6, 0, tzinfo=dt.timezone.utc)
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


# --- line format ------------------------------------------------------------------------------
def test_format_line_order_and_quoting():
    line = check.format_line(check.result("cert", "/x/a b.crt", "WARNING", days_left=5, subject="CN=a b"))
    assert line == "check=cert target='/x/a b.crt' status=WARNING days_left=5 subject='CN=a b'"


@given(
    st.dictionaries(
        st.from_regex(r"[a-z_]{1,10}", fullmatch=True).filter(lambda k: k not in ("check", "target", "status")),
        st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30),
        max_size=5,
    ),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30),
)
def test_format_then_parse_round_trips(fields, target):
    res = check.result("disk", target, "OK", **fields)
    parsed = check.parse_line(check.format_line(res))
    assert parsed == {k: str(v) for k, v in res.items()}
    assert status.parse_line(check.format_line(res)) == parsed


def test_parse_line_ignores_garbage():
    assert check.parse_line("unbalanced 'quote") == {}
    assert status.parse_line("no fields here") == {}


@pytest.mark.parametrize(
    "days,expected",
    [(-1, "CRITICAL"), (0, "CRITICAL"), (7, "CRITICAL"), (8, "WARNING"), (30, "WARNING"), (31, "OK"), (400, "OK")],
)
def test_classify_days(days, expected):
    assert check.classify_days(days, 30, 7) == expected


@pytest.mark.parametrize("free,expected", [(4.9, "CRITICAL"), (5.0, "WARNING"), (14.9, "WARNING"), (15.0, "OK")])
def test_classify_free(free, expected):
    assert check.classify_free(free, 15, 5) == expected


def test_worst():
    assert check.worst(["OK", "CRITICAL", "WARNING"]) == "CRITICAL"
    assert check.worst([]) == "OK"


# --- certificates -----------------------------------------------------------------------------
def test_split_pem_finds_every_block_of_a_chain():
    text = f"junk\n{PEM}\n{PEM}\n-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"
    assert len(check.split_pem(text)) == 2


def test_parse_openssl_time_handles_padded_days():
    assert check.parse_openssl_time("Dec  1 06:00:00 2026 GMT") == dt.datetime(2026, 12, 1, 6, tzinfo=dt.timezone.utc)


def test_days_between_floors():
    assert check.days_between(NOW + dt.timedelta(days=12, hours=23), NOW) == 12
    assert check.days_between(NOW - dt.timedelta(hours=1), NOW) == -1


def fake_openssl(not_afters, next_update="Feb 27 06:00:00 2027 GMT"):
    """A runner answering `openssl x509` with successive notAfter dates and `openssl crl`."""
    dates = iter(not_afters)

    def run(argv, stdin=""):
        if argv[:2] == ["openssl", "x509"]:
            return 0, f"notAfter={next(dates)}\nsubject=CN=test\n"
        if argv[:2] == ["openssl", "crl"]:
            return 0, f"nextUpdate={next_update}\n"
        raise AssertionError(argv)

    return run


def cert_config(tmp_path, **extra):
    return {"cert_warn_days": 30, "cert_critical_days": 7, "certificates": [], "crls": [], **extra}


def test_chain_file_reports_its_earliest_certificate(tmp_path):
    chain = tmp_path / "https.crt"
    chain.write_text(f"{PEM}\n{PEM}\n")
    config = cert_config(tmp_path, certificates=[{"name": "https", "path": str(chain), "required": True}])
    results = check.check_certificates(
        config, NOW, fake_openssl(["Nov 29 06:00:00 2027 GMT", "Dec 11 06:00:00 2026 GMT"])
    )
    assert results == [
        {
            "check": "cert", "target": str(chain), "status": "WARNING", "name": "https", "days_left": 12,
            "not_after": "2026-12-11T06:00:00Z", "subject": "CN=test",
        }
    ]


def test_missing_required_certificate_is_critical_optional_is_skipped(tmp_path):
    config = cert_config(
        tmp_path,
        certificates=[
            {"name": "https", "path": str(tmp_path / "https.crt"), "required": True},
            {"name": "dicom", "path": str(tmp_path / "dicom.crt"), "required": False},
        ],
    )
    results = check.check_certificates(config, NOW, fake_openssl([]))
    assert [(r["target"], r["status"], r["error"]) for r in results] == [(str(tmp_path / "https.crt"), "CRITICAL", "missing")]


def test_glob_checks_every_issued_client_certificate(tmp_path):
    (tmp_path / "issued").mkdir()
    for name in ("server", "dr-smith"):
        (tmp_path / "issued" / f"{name}.crt").write_text(PEM)
    config = cert_config(tmp_path, certificates=[{"name": "vpn", "path": str(tmp_path / "issued/*.crt")}])
    results = check.check_certificates(config, NOW, fake_openssl(["Jan  1 00:00:00 2030 GMT", "Dec  1 00:00:00 2026 GMT"]))
    assert [(Path(r["target"]).name, r["status"]) for r in results] == [("dr-smith.crt", "OK"), ("server.crt", "CRITICAL")]


def test_unreadable_pem_is_critical(tmp_path):
    bad = tmp_path / "bad.crt"
    bad.write_text("not a certificate")
    config = cert_config(tmp_path, certificates=[{"name": "bad", "path": str(bad)}])
    assert check.check_certificates(config, NOW, fake_openssl([]))[0]["status"] == "CRITICAL"


def test_crl_next_update(tmp_path):
    crl = tmp_path / "crl.pem"
    crl.write_text("x")
    config = cert_config(tmp_path, crls=[{"name": "openvpn-crl", "path": str(crl)}])
    (res,) = check.check_certificates(config, NOW, fake_openssl([], "Dec  4 06:00:00 2026 GMT"))
    assert (res["check"], res["status"], res["days_left"]) == ("crl", "CRITICAL", 5)


# --- disk, services, echo ---------------------------------------------------------------------
def test_disk_free_percent(tmp_path):
    stat = os.statvfs_result((4096, 4096, 1000, 100, 100, 0, 0, 0, 0, 255))
    config = {"storage_dir": str(tmp_path), "disk_warn_free_percent": 15, "disk_critical_free_percent": 5}
    (res,) = check.check_disk(config, statvfs=lambda path: stat)
    assert (res["status"], res["free_percent"]) == ("WARNING", "10.0")


def test_disk_missing_directory_is_critical(tmp_path):
    config = {"storage_dir": str(tmp_path / "nope"), "disk_warn_free_percent": 15, "disk_critical_free_percent": 5}
    assert check.check_disk(config)[0]["status"] == "CRITICAL"


def test_services_required_and_optional():
    answers = {
        ("is-active", "orthanc.service"): "active\n",
        ("is-active", "nginx.service"): "inactive\n",
        ("is-enabled", "openvpn-server@orthanc-remote.service"): "disabled\n",
        ("is-enabled", "extra.service"): "enabled\n",
        ("is-active", "extra.service"): "failed\n",
    }
    run = lambda argv, stdin="": (0, answers[(argv[1], argv[2])])  # noqa: E731
    config = {
        "services": ["orthanc.service", "nginx.service"],
        "optional_services": ["openvpn-server@orthanc-remote.service", "extra.service"],
    }
    results = check.check_services(config, run)
    assert [(r["target"], r["status"], r["active"]) for r in results] == [
        ("orthanc.service", "OK", "active"),
        ("nginx.service", "CRITICAL", "inactive"),
        ("extra.service", "CRITICAL", "failed"),
    ]


ECHO = {"dicom_echo": {"host": "127.0.0.1", "port": 4242, "calling_aet": "HEALTHCHECK", "called_aet": "ORTHANC"}}


def test_echo_success_needs_the_success_line():
    ok = "I: Requesting Association\nI: Received Echo Response (Success)\nI: Releasing Association\n"
    (res,) = check.check_dicom_echo(ECHO, lambda argv, stdin="": (0, ok))
    assert res["status"] == "OK" and res["target"] == "ORTHANC@127.0.0.1:4242"


def test_echo_exit_zero_with_error_is_critical():
    out = "I: Requesting Association\nE: Echo Failed: 0006:0207 DIMSE No valid Presentation Context ID\n"
    (res,) = check.check_dicom_echo(ECHO, lambda argv, stdin="": (0, out))
    assert res["status"] == "CRITICAL" and "Echo Failed" in res["error"]


def test_echo_rejection_reason_is_reported():
    out = "F: Association Rejected:\nF: Result: Rejected Permanent, Source: Service User\nF: Reason: Calling AE Title Not Recognized\n"
    (res,) = check.check_dicom_echo(ECHO, lambda argv, stdin="": (1, out))
    assert res["status"] == "CRITICAL" and "Calling AE Title Not Recognized" in res["error"]


def test_echo_arguments():
    seen = []
    check.check_dicom_echo(
        {"dicom_echo": {**ECHO["dicom_echo"], "extra_args": ["+tls", "k", "c"]}},
        lambda argv, stdin="": seen.append(argv) or (0, ""),
    )
    argv = seen[0]
    assert argv[0] == "echoscu" and argv[-2:] == ["127.0.0.1", "4242"]
    assert argv[argv.index("-aet") + 1] == "HEALTHCHECK" and argv[argv.index("-aec") + 1] == "ORTHANC"
    assert argv.index("+tls") < argv.index("-aet")


def test_echo_without_dcmtk():
    (res,) = check.check_dicom_echo(ECHO, lambda argv, stdin="": (127, "echoscu: not found"))
    assert "dcmtk" in res["error"]


# --- notifications ----------------------------------------------------------------------------
def res(status_, target="/a.crt"):
    return check.result("cert", target, status_)


def test_first_ok_is_not_news_first_warning_is():
    sent, state = check.decide_notifications({}, [res("OK"), res("WARNING", "/b.crt")], 1000.0, 24)
    assert [r["target"] for r in sent] == ["/b.crt"]
    assert state["cert|/b.crt"] == {"status": "WARNING", "notified_at": 1000.0}


def test_unchanged_problem_is_repeated_only_after_the_interval():
    state = {"cert|/a.crt": {"status": "WARNING", "notified_at": 1000.0}}
    assert check.decide_notifications(state, [res("WARNING")], 1000.0 + 3600, 24)[0] == []
    assert len(check.decide_notifications(state, [res("WARNING")], 1000.0 + 24 * 3600, 24)[0]) == 1
    assert check.decide_notifications(state, [res("WARNING")], 1e9, 0)[0] == []


def test_recovery_is_sent():
    state = {"cert|/a.crt": {"status": "CRITICAL", "notified_at": 1000.0}}
    sent, new_state = check.decide_notifications(state, [res("OK")], 2000.0, 24)
    assert sent == [res("OK")] and new_state["cert|/a.crt"]["status"] == "OK"


def test_webhook_payload():
    body = json.loads(check.webhook_payload("pacs", [res("WARNING"), res("CRITICAL", "/b.crt")]))
    assert body["status"] == "CRITICAL" and body["host"] == "pacs" and len(body["results"]) == 2
    assert "pacs: check=cert target=/a.crt status=WARNING" in body["text"]


def test_apply_overrides():
    config = check.apply_overrides({"a": 1}, ["a=2", "b=text", 'c={"x": 1}'])
    assert config == {"a": 2, "b": "text", "c": {"x": 1}}


def test_main_prints_lines_and_exits_with_the_worst(tmp_path, capsys, monkeypatch):
    config = tmp_path / "monitoring.json"
    config.write_text(json.dumps({"storage_dir": str(tmp_path), "disk_warn_free_percent": 100, "disk_critical_free_percent": 0}))
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    assert check.main(["disk", "--config", str(config), "--no-notify"]) == 1
    assert capsys.readouterr().out.startswith(f"check=disk target={tmp_path} status=WARNING ")
    monkeypatch.setenv("JOURNAL_STREAM", "8:1")
    check.main(["disk", "--config", str(config), "--no-notify"])
    assert capsys.readouterr().out.startswith("<4>check=disk")


def test_notify_posts_to_the_webhook_and_keeps_state(tmp_path, monkeypatch):
    posted = []

    class Response:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return b""

    monkeypatch.setattr(check.urllib.request, "urlopen", lambda request, timeout: posted.append(request) or Response())
    config = {"alerts": {"webhook_url": "http://127.0.0.1:1/hook"}, "state_file": str(tmp_path / "s/state.json"), "host": "pacs"}
    outcome = check.notify(config, [res("WARNING")])
    assert [(r["check"], r["status"]) for r in outcome] == [("notify", "OK")]
    assert json.loads(posted[0].data)["results"][0]["status"] == "WARNING"
    assert check.notify(config, [res("WARNING")]) == []  # nothing new: nothing sent
    assert len(posted) == 1


def test_failed_webhook_is_reported_and_retried(tmp_path, monkeypatch):
    def refuse(request, timeout):
        raise OSError("connection refused")

    monkeypatch.setattr(check.urllib.request, "urlopen", refuse)
    config = {"alerts": {"webhook_url": "http://127.0.0.1:1/hook"}, "state_file": str(tmp_path / "state.json")}
    assert check.notify(config, [res("WARNING")])[0]["status"] == "WARNING"
    assert not (tmp_path / "state.json").exists()  # so the next run tries again


# --- status command ---------------------------------------------------------------------------
def entry(message, stamp):
    return {"MESSAGE": message, "__REALTIME_TIMESTAMP": str(stamp)}


def test_latest_result_per_check_and_target_worst_first():
    entries = [
        entry("check=cert target=/a.crt status=OK days_left=40", 1),
        entry("check=cert target=/a.crt status=WARNING days_left=29", 2),
        entry("check=service target=nginx.service status=CRITICAL active=failed", 3),
        entry("check=service target=nginx.service status=OK active=active", 4),
        entry("check=disk target=/var status=OK", 5),
        entry("an unrelated line", 6),
        entry(list(b"check=crl target=/c.pem status=CRITICAL"), 7),
    ]
    latest = status.latest_results(entries)
    assert [(r["check"], r["target"], r["status"]) for r in latest] == [
        ("crl", "/c.pem", "CRITICAL"),
        ("cert", "/a.crt", "WARNING"),
        ("disk", "/var", "OK"),
        ("service", "nginx.service", "OK"),
    ]
    assert status.exit_code(latest) == 2
    assert status.exit_code([]) == 3


def test_render_table():
    latest = status.latest_results([entry("check=cert target=/a.crt status=WARNING days_left=29", 1764396000000000)])
    text = status.render(latest)
    lines = text.splitlines()
    assert lines[0].split() == ["LAST", "RUN", "STATUS", "CHECK", "TARGET", "DETAILS"]
    assert lines[1].split() == ["2025-11-29", "06:00:00Z", "WARNING", "cert", "/a.crt", "days_left=29"]
    assert "no orthanc-remote-check results" in status.render([])


# --- updates ----------------------------------------------------------------------------------
APT_SIM = """Reading package lists...
Inst libssl3 [3.0.17-1~deb12u2] (3.0.22-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
Inst tzdata [2025b-0+deb12u1] (2025b-0+deb12u2 Debian:12.13/oldstable [all])
Conf libssl3 (3.0.22-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
"""


def test_parse_apt_simulation_splits_security_from_other():
    assert check.parse_apt_simulation(APT_SIM) == {"security": ["libssl3"], "other": ["tzdata"]}
    assert check.parse_apt_simulation("") == {"security": [], "other": []}


@pytest.mark.parametrize(
    "security, reboot, expected",
    [([], None, "OK"), (["libssl3"], None, "WARNING"), ([], [], "WARNING"), ([], ["libc6"], "WARNING")],
)
def test_classify_updates(security, reboot, expected):
    assert check.classify_updates({"security": security, "other": ["tzdata"]}, reboot) == expected


def test_check_updates_reports_security_and_reboot():
    res = check.check_updates({}, run=lambda argv, stdin: (0, APT_SIM), reboot=lambda: ["libc6"])
    assert res == [
        check.result("updates", "apt", "WARNING", security=1, other=1, reboot="yes: libc6", security_packages="libssl3")
    ]
    ok = check.check_updates({}, run=lambda argv, stdin: (0, "Reading package lists...\n"), reboot=lambda: None)
    assert ok[0]["status"] == "OK" and ok[0]["reboot"] == "no"
    failed = check.check_updates({}, run=lambda argv, stdin: (100, "E: Could not open lock file"), reboot=lambda: None)
    assert failed[0]["status"] == "WARNING" and "lock" in failed[0]["error"]


def test_read_reboot_required(tmp_path):
    flag, pkgs = tmp_path / "reboot-required", tmp_path / "reboot-required.pkgs"
    assert check.read_reboot_required(str(flag), str(pkgs)) is None
    flag.write_text("*** System restart required ***\n")
    assert check.read_reboot_required(str(flag), str(pkgs)) == []
    pkgs.write_text("libc6\nlinux-image-amd64\nlibc6\n")
    assert check.read_reboot_required(str(flag), str(pkgs)) == ["libc6", "linux-image-amd64"]
