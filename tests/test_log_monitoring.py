"""Tests for filter_plugins/log_monitoring.py (pure functions behind the log_monitoring role)."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

import log_monitoring as lm

GOOD_CONFIG = {
    "log_retention_days": 90,
    "cert_warn_days": 30,
    "cert_critical_days": 7,
    "disk_warn_free_percent": 15,
    "disk_critical_free_percent": 5,
    "admin_sources": ["198.51.100.0/28", "203.0.113.7"],
    "fail2ban_ignoreip_extra": [],
    "fail2ban_banaction": "auto",
    "fail2ban_bantime": "1h",
    "fail2ban_findtime": "10m",
    "fail2ban_maxretry": 5,
    "fail2ban_jail_overrides": {"orthanc-dicom": {"maxretry": 3, "bantime": "1d"}},
    "check_schedule": {"certs": "*-*-* 06:00:00", "disk": "*:0/15", "services": "*:0/5", "dicom_echo": "hourly"},
    "alert_email": "it@example.org",
    "alert_webhook_url": "https://hooks.example.org/T0/abc",
    "certificates_extra": [{"name": "x", "path": "/etc/x.crt"}],
    "crl_files": ["/etc/crl.pem"],
}


def test_ignoreip_loopback_first_then_admin_sources_normalised():
    assert lm.ignoreip(["203.0.113.7", "198.51.100.0/28"]) == [
        "127.0.0.0/8", "::1/128", "203.0.113.7/32", "198.51.100.0/28",
    ]


def test_ignoreip_deduplicates_and_accepts_extra():
    assert lm.ignoreip(["10.0.0.1/32"], ["10.0.0.1", "2001:db8::/64"]) == [
        "127.0.0.0/8", "::1/128", "10.0.0.1/32", "2001:db8::/64",
    ]


def test_ignoreip_empty_keeps_loopback():
    assert lm.ignoreip(None) == ["127.0.0.0/8", "::1/128"]


def test_ignoreip_refuses_garbage():
    with pytest.raises(ValueError):
        lm.ignoreip(["not-an-ip"])


@given(st.lists(st.ip_addresses(v=4), max_size=8))
def test_ignoreip_every_admin_address_covered(addresses):
    result = lm.ignoreip([str(a) for a in addresses])
    networks = [ipaddress.ip_network(n) for n in result]
    for address in addresses:
        assert any(address in n for n in networks)
    assert len(result) == len(set(result))


@pytest.mark.parametrize(
    "choice,whole_host,expected",
    [
        ("auto", False, "nftables-multiport"),
        ("auto", True, "nftables-allports"),
        ("iptables-multiport", False, "iptables-multiport"),
    ],
)
def test_choose_banaction_is_port_scoped_unless_whole_host(choice, whole_host, expected):
    assert lm.choose_banaction(choice, whole_host) == expected


def test_ufw_banaction_is_refused_because_it_ignores_the_port():
    errors = lm.config_errors({**GOOD_CONFIG, "fail2ban_banaction": "ufw"})
    assert len(errors) == 1 and "ignores the jail's port" in errors[0]


def test_ignoreip_holds_the_sites_own_peers():
    modalities = [{"name": "ct-1", "host": "203.0.113.40"}, {"name": "mri-1", "host": "192.168.50.10"}]
    clients = [
        {"name": "site-a-gw", "kind": "modality_gateway", "address": "10.8.0.10", "site_subnets": ["192.168.50.0/24"]},
        {"name": "dr-smith", "kind": "radiologist", "address": "10.8.0.20"},
    ]
    result = lm.ignoreip(["198.51.100.0/28"], [], modalities, clients)
    assert result == ["127.0.0.0/8", "::1/128", "198.51.100.0/28", "203.0.113.40/32", "192.168.50.10/32",
                      "10.8.0.10/32", "192.168.50.0/24"]
    # A radiologist is an ordinary HTTPS user: its failed logins count.
    assert "10.8.0.20/32" not in result


def test_jails_merge_defaults_and_overrides_and_keep_disabled():
    result = lm.jails(
        [
            {"name": "sshd", "enabled": False, "backend": "systemd"},
            {"name": "orthanc-dicom", "enabled": True, "backend": "polling", "port": 4242},
        ],
        {"maxretry": 5, "bantime": "1h"},
        {"orthanc-dicom": {"maxretry": 3}},
    )
    assert [j["name"] for j in result] == ["orthanc-dicom", "sshd"]
    assert result[0] == {"name": "orthanc-dicom", "enabled": True, "backend": "polling", "port": 4242, "maxretry": 3, "bantime": "1h"}
    assert result[1]["enabled"] is False


def test_certificate_watch_minimal():
    watch = lm.certificate_watch("/etc/orthanc-remote/tls/")
    paths = {c["name"]: c for c in watch["certificates"]}
    assert paths["https"] == {"name": "https", "path": "/etc/orthanc-remote/tls/https.crt", "required": True}
    assert paths["dicom"]["required"] is False
    assert watch["crls"] == []


def test_certificate_watch_with_dicom_tls_vpn_and_extras():
    watch = lm.certificate_watch(
        "/tls", dicom_tls=True, vpn_enabled=True, openvpn_dir="/etc/openvpn/server",
        extra=[{"name": "old", "path": "/x/old.crt", "required": False}], crl_files=["/x/crl.pem"],
    )
    names = {c["name"]: c for c in watch["certificates"]}
    assert names["dicom"]["required"] is True
    assert names["openvpn-issued"]["path"] == "/etc/openvpn/server/pki/issued/*.crt"
    assert names["old"] == {"name": "old", "path": "/x/old.crt", "required": False}
    assert [c["path"] for c in watch["crls"]] == ["/etc/openvpn/server/crl.pem", "/x/crl.pem"]


def test_check_units_follow_schedule_and_toggles():
    units = lm.check_units({"certs": "daily", "disk": "*:0/15", "dicom_echo": "hourly"}, {"disk": False})
    assert units == [
        {"name": "certs", "unit": "orthanc-remote-check-certs", "on_calendar": "daily"},
        {"name": "dicom_echo", "unit": "orthanc-remote-check-dicom-echo", "on_calendar": "hourly"},
    ]


@pytest.mark.parametrize(
    "text,found",
    [
        ("ExecStart=/usr/sbin/Orthanc --logdir=/var/log/orthanc /etc/orthanc/", []),
        ("ExecStart=/usr/sbin/Orthanc --trace-http /etc/orthanc/", ["--trace-http"]),
        ("ExecStart=/usr/sbin/Orthanc --verbose /etc/orthanc/", ["--verbose"]),
        ('ExecStart=/usr/sbin/Orthanc "--trace" /etc/orthanc/', ["--trace"]),
        ("# ExecStart=/usr/sbin/Orthanc --trace-http", []),
        ("ExecStart=/usr/sbin/Orthanc --logdir=/var/log/orthanc-trace /etc/orthanc", []),
        ("ExecStart=\nExecStart=/usr/sbin/Orthanc --verbose-http --trace-dicom x", ["--verbose-http", "--trace-dicom"]),
    ],
)
def test_forbidden_orthanc_flags(text, found):
    assert lm.forbidden_orthanc_flags(text) == found


def test_config_errors_accepts_good_config():
    assert lm.config_errors(GOOD_CONFIG) == []


@pytest.mark.parametrize(
    "change,needle",
    [
        ({"cert_warn_days": 5, "cert_critical_days": 7}, "log_monitoring_cert_critical_days (7) must be smaller"),
        ({"cert_warn_days": "30"}, "log_monitoring_cert_warn_days"),
        ({"log_retention_days": 0}, "log_monitoring_log_retention_days"),
        ({"disk_warn_free_percent": 120}, "log_monitoring_disk_warn_free_percent"),
        ({"disk_warn_free_percent": 5, "disk_critical_free_percent": 10}, "log_monitoring_disk_critical_free_percent (10)"),
        ({"admin_sources": ["office"]}, "'office' is not an IP address"),
        ({"fail2ban_banaction": "shorewall"}, "log_monitoring_fail2ban_banaction"),
        ({"fail2ban_bantime": "forever"}, "log_monitoring_fail2ban_bantime"),
        ({"fail2ban_maxretry": 0}, "log_monitoring_fail2ban_maxretry"),
        ({"fail2ban_jail_overrides": {"sshd": {"maxretry": "3"}}}, "sshd.maxretry"),
        ({"fail2ban_jail_overrides": {"sshd": {"findtime": "soon"}}}, "sshd.findtime"),
        ({"check_schedule": {"backup": "daily"}}, "unknown check 'backup'"),
        ({"check_schedule": {"disk": "every 5 minutes!"}}, "log_monitoring_check_schedule.disk"),
        ({"alert_webhook_url": "ftp://x"}, "log_monitoring_alert_webhook_url"),
        ({"alert_email": "nobody"}, "log_monitoring_alert_email"),
        ({"certificates_extra": [{"name": "x", "path": "relative.crt"}]}, "log_monitoring_certificates_extra[0]"),
        ({"crl_files": ["crl.pem"]}, "log_monitoring_crl_files"),
    ],
)
def test_config_errors_name_the_variable(change, needle):
    errors = lm.config_errors({**GOOD_CONFIG, **change})
    assert any(needle in e for e in errors), errors


def test_filter_module_exposes_every_filter():
    filters = lm.FilterModule().filters()
    assert set(filters) == {
        "log_monitoring_ignoreip", "log_monitoring_banaction", "log_monitoring_jails",
        "log_monitoring_certificate_watch", "log_monitoring_check_units",
        "log_monitoring_forbidden_orthanc_flags", "log_monitoring_config_errors",
    }


def _render(template, **variables):
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLE / "templates")), undefined=jinja2.StrictUndefined)
    env.filters["comment"] = lambda text: "# " + str(text)
    env.filters["bool"] = bool
    return env.get_template(template).render(ansible_managed="managed", **variables)


ROLE = __import__("pathlib").Path(__file__).resolve().parent.parent / "roles" / "log_monitoring"


@pytest.mark.parametrize("whole_host", [False, True])
def test_openvpn_filter_counts_per_packet_lines_only_with_whole_host_bans(whole_host):
    text = _render("fail2ban-filter-openvpn.conf.j2", log_monitoring_fail2ban_whole_host_bans=whole_host)
    failregex = text.split("failregex =", 1)[1].split("ignoreregex", 1)[0]
    assert "TLS handshake failed" in failregex
    assert ("tls-crypt unwrapping failed" in failregex) is whole_host
