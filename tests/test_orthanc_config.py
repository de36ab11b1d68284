"""Unit tests for filter_plugins/orthanc_config.py (inventory -> Orthanc configuration)."""

import json
import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import settings as settings_hyp
from hypothesis import strategies as st

import orthanc_config as oc
import site_model as sm


def settings(**changes):
    base = {
        "name": "site-a",
        "aet": "ORTHANC",
        "dicom_port": 4242,
        "http_port": 8042,
        "dicom_scp_timeout": 30,
        "dicom_scu_timeout": 10,
        "dicom_threads_count": 4,
        "limit_find_results": 100,
        "limit_find_instances": 100,
        "modalities": [
            {"name": "mri-1", "aet": "MRI1", "host": "192.168.50.10", "port": 104, "allow": ["echo", "store"], "tls": False}
        ],
        "storage_directory": "/var/lib/orthanc/db-v6",
        "index_directory": "/var/lib/orthanc/db-v6",
        "plugins": ["/usr/share/orthanc/plugins/"],
        "selfcheck_aet": "HEALTHCHECK",
        "verify_aet": "VERIFY",
        "overrides": {},
        "dicom_tls": {"enabled": False},
    }
    base.update(changes)
    return base


# --- settings_errors -------------------------------------------------------------------------

def test_valid_settings_have_no_errors():
    assert oc.settings_errors(settings()) == []


# The site facts the role turns into orthanc.json are checked by the one validator (site_model):
# the role runs it on its own view first (roles/orthanc/vars/main.yml).

@pytest.mark.parametrize("aet", ["", "A" * 17, " ORTHANC", "ORTH\\ANC", "ORTH\nANC", None, 42])
def test_bad_aet_is_refused_with_the_fact_name(aet):
    errors = sm.site_model_errors({"site_dicom": {"aet": aet}})
    assert any(e.startswith("site_dicom.aet:") for e in errors), errors


@pytest.mark.parametrize("aet", ["A", "orthanc", "Orthanc-Main_1", "A" * 16, "PACS.SITE A"])
def test_good_aet_is_accepted_and_case_kept(aet):
    assert sm.site_model_errors({"site_dicom": {"aet": aet}}) == []
    assert oc.main_config(settings(aet=aet))["DicomAet"] == aet


@pytest.mark.parametrize(
    ("key", "value", "variable"),
    [
        ("http_port", "8042", "orthanc_http_port"),
        ("http_port", True, "orthanc_http_port"),
        ("http_port", 0, "orthanc_http_port"),
        ("dicom_scp_timeout", 0, "orthanc_dicom_scp_timeout"),
        ("dicom_scu_timeout", -1, "orthanc_dicom_scu_timeout"),
        ("limit_find_results", 0, "orthanc_limit_find_results"),
        ("storage_directory", "relative/dir", "orthanc_storage_directory"),
        ("storage_directory", "/etc/orthanc", "orthanc_storage_directory"),
    ],
)
def test_bad_scalar_settings_name_their_variable(key, value, variable):
    errors = oc.settings_errors(settings(**{key: value}))
    assert any(e.startswith(variable) for e in errors), errors


def test_same_dicom_and_http_port_is_refused():
    errors = sm.site_model_errors({"site_dicom": {"port": 8042}}, {"http_port": 8042})
    assert any(e.startswith("site_dicom.port:") and "orthanc_http_port" in e for e in errors)


@pytest.mark.parametrize(
    ("modality", "fragment"),
    [
        ({"name": "m", "aet": "M", "host": "mri.example", "port": 104, "allow": []}, ".host"),
        ({"name": "m", "aet": "M", "host": "10.0.0.0/24", "port": 104, "allow": []}, ".host"),
        ({"name": "m", "aet": "M" * 17, "host": "10.0.0.1", "port": 104, "allow": []}, ".aet"),
        ({"name": "m", "aet": "M", "host": "10.0.0.1", "port": 0, "allow": []}, ".port"),
        ({"name": "m", "aet": "M", "host": "10.0.0.1", "port": 104, "allow": ["delete"]}, ".allow"),
        ({"name": "m", "aet": "M", "host": "10.0.0.1", "port": 104, "allow": [], "tls": "yes"}, ".tls"),
        ({"name": "bad name", "aet": "M", "host": "10.0.0.1", "port": 104, "allow": []}, ".name"),
    ],
)
def test_bad_modality_is_refused(modality, fragment):
    errors = sm.site_model_errors({"site_modalities": [modality]})
    assert any(fragment in e and e.startswith("site_modalities[") for e in errors), errors


def test_duplicate_modality_names_and_aets_are_refused():
    m = {"name": "a", "aet": "A", "host": "10.0.0.1", "port": 104, "allow": []}
    errors = sm.site_model_errors({"site_modalities": [m, dict(m, aet="B"), dict(m, name="c")]})
    assert any("also used by" in e and ".name" in e for e in errors)
    assert any("already used by" in e and ".aet" in e for e in errors)


def test_selfcheck_aet_must_not_be_a_modality_aet():
    m = {"name": "a", "aet": "MRI1", "host": "10.0.0.1", "port": 104, "allow": []}
    errors = sm.site_model_errors({"site_modalities": [m]}, {"selfcheck_aet": "MRI1"})
    assert any("orthanc_selfcheck_aet" in e for e in errors)
    assert any(e.startswith("orthanc_selfcheck_aet:") for e in sm.site_model_errors({}, {"selfcheck_aet": ""}))


def test_verify_aet_must_be_its_own():
    m = {"name": "a", "aet": "MRI1", "host": "10.0.0.1", "port": 104, "allow": []}
    errors = sm.site_model_errors({"site_modalities": [m]}, {"verify_aet": "mri1"})
    assert any("orthanc_verify_aet" in e and ".aet" in e for e in errors), errors
    errors = sm.site_model_errors({}, {"verify_aet": "HEALTHCHECK"})
    assert any(e.startswith("orthanc_verify_aet:") and "health check" in e for e in errors), errors
    assert any(e.startswith("orthanc_verify_aet:") for e in sm.site_model_errors({}, {"verify_aet": ""}))
    assert sm.site_model_errors({"site_modalities": [m]}, {"verify_aet": "VERIFY"}) == []


def test_tls_modality_without_dicom_tls_is_refused():
    m = {"name": "a", "aet": "A", "host": "10.0.0.1", "port": 104, "allow": ["echo"], "tls": True}
    errors = sm.site_model_errors({"site_modalities": [m], "site_dicom": {"tls": False}})
    assert any("either TLS or plain" in e for e in errors)


def test_dicom_tls_needs_absolute_paths():
    errors = oc.settings_errors(settings(dicom_tls={"enabled": True, "certificate": "dicom.crt"}))
    assert {e.split(":")[0] for e in errors} == {
        "orthanc_dicom_tls_certificate",
        "orthanc_dicom_tls_private_key",
        "orthanc_dicom_tls_trusted_certificates",
    }


@pytest.mark.parametrize("key", list(oc.RESERVED_KEYS))
def test_overrides_cannot_redefine_keys_of_other_files(key):
    errors = oc.settings_errors(settings(overrides={key: {}}))
    assert any(key in e and "own file" in e for e in errors)


@pytest.mark.parametrize("key", list(oc.INVENTED_KEYS))
def test_overrides_refuse_the_articles_invented_keys(key):
    errors = oc.settings_errors(settings(overrides={key: 1}))
    assert any(key in e and "not an Orthanc 1.10.1 key" in e for e in errors)


# --- main_config -----------------------------------------------------------------------------

def test_main_config_secure_defaults():
    config = oc.main_config(settings())
    for key in (
        "DicomAlwaysAllowEcho", "DicomAlwaysAllowStore", "DicomAlwaysAllowFind",
        "DicomAlwaysAllowFindWorklist", "DicomAlwaysAllowGet", "DicomAlwaysAllowMove",
        "WebDavEnabled", "ExecuteLuaEnabled", "RestApiWriteToFileSystemEnabled",
        "RemoteAccessAllowed", "SslEnabled", "DicomTlsEnabled", "UnknownSopClassAccepted",
    ):
        assert config[key] is False, key
    for key in (
        "DicomCheckCalledAet", "DicomCheckModalityHost", "StrictAetComparison",
        "AuthenticationEnabled", "HttpServerEnabled",
    ):
        assert config[key] is True, key
    assert config["LimitFindResults"] == 100
    assert config["DicomScpTimeout"] == 30 and config["DicomScuTimeout"] == 10
    assert config["DicomPort"] == 4242 and config["HttpPort"] == 8042
    for key in oc.RESERVED_KEYS:
        assert key not in config
    assert oc.invented_keys(config) == []
    json.dumps(config)


def test_modalities_use_the_object_form_and_only_allowed_commands():
    config = oc.main_config(settings())
    mri = config["DicomModalities"]["mri-1"]
    assert mri["AET"] == "MRI1" and mri["Host"] == "192.168.50.10" and mri["Port"] == 104
    assert mri["AllowEcho"] is True and mri["AllowStore"] is True
    assert mri["AllowFind"] is False and mri["AllowMove"] is False and mri["AllowGet"] is False
    assert mri["AllowFindWorklist"] is False and mri["AllowStorageCommitment"] is False
    assert mri["UseDicomTls"] is False


def test_selfcheck_modality_is_echo_only_from_loopback():
    check = oc.main_config(settings())["DicomModalities"]["orthanc-remote-selfcheck"]
    assert check["AET"] == "HEALTHCHECK" and check["Host"] == "127.0.0.1"
    assert check["AllowEcho"] is True
    assert not any(check[k] for k in ("AllowStore", "AllowFind", "AllowMove", "AllowGet"))


def test_verify_modality_is_echo_and_store_only_from_loopback():
    for tls in (False, True):
        config = oc.main_config(dict(settings(), dicom_tls={"enabled": tls, "certificate": "c", "private_key": "k",
                                                            "trusted_certificates": "t"}))
        verify = config["DicomModalities"]["orthanc-remote-verify"]
        assert verify["AET"] == "VERIFY" and verify["Host"] == "127.0.0.1"
        assert verify["AllowEcho"] is True and verify["AllowStore"] is True
        assert not any(verify[k] for k in ("AllowFind", "AllowMove", "AllowGet", "AllowFindWorklist", "AllowStorageCommitment"))
        assert verify["UseDicomTls"] is tls


def test_dicom_tls_config():
    tls = {
        "enabled": True,
        "certificate": "/tls/dicom.crt",
        "private_key": "/tls/dicom.key",
        "trusted_certificates": "/tls/dicom-trusted.crt",
    }
    m = {"name": "ct", "aet": "CT", "host": "10.0.0.1", "port": 104, "allow": ["echo"], "tls": True}
    plain = dict(m, name="us", aet="US", tls=False)
    config = oc.main_config(settings(dicom_tls=tls, modalities=[m, plain]))
    assert config["DicomTlsEnabled"] is True
    assert config["DicomTlsCertificate"] == "/tls/dicom.crt"
    assert config["DicomTlsPrivateKey"] == "/tls/dicom.key"
    assert config["DicomTlsTrustedCertificates"] == "/tls/dicom-trusted.crt"
    assert config["DicomTlsRemoteCertificateRequired"] is True
    assert config["DicomModalities"]["ct"]["UseDicomTls"] is True
    assert config["DicomModalities"]["us"]["UseDicomTls"] is False
    assert oc.settings_errors(settings(dicom_tls=tls, modalities=[m, plain])) == []


def test_overrides_are_merged_last():
    config = oc.main_config(settings(overrides={"StableAge": 30, "LimitFindResults": 50}))
    assert config["StableAge"] == 30 and config["LimitFindResults"] == 50


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "name": st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
                "aet": st.from_regex(r"[A-Z][A-Z0-9]{0,15}", fullmatch=True),
                "host": st.ip_addresses(v=4).map(str),
                "port": st.integers(1, 65535),
                "allow": st.lists(st.sampled_from(oc.COMMANDS), unique=True),
            }
        ),
        max_size=6,
        unique_by=(lambda m: m["name"], lambda m: m["aet"]),
    )
)
def test_any_valid_modality_list_renders_exactly_its_allowed_commands(modalities):
    modalities = [m for m in modalities if m["aet"] != "HEALTHCHECK"]
    assert oc.settings_errors(settings(modalities=modalities)) == []
    rendered = oc.main_config(settings(modalities=modalities))["DicomModalities"]
    assert set(rendered) == {m["name"] for m in modalities} | {"orthanc-remote-selfcheck", "orthanc-remote-verify"}
    for m in modalities:
        for command, key in oc.COMMAND_KEYS.items():
            assert rendered[m["name"]][key] is (command in m["allow"])


# --- users and passwords -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "password",
    ["orthanc", "password", "admin_password", "ADMIN_PASSWORD", "short", "elevenchars", "aaaaaaaaaaaaaaaa",
     "123456789012", "Password1234", "passwordpassword", " padded-password-123 ", "", 123456789012345],
)
def test_weak_passwords_are_refused_naming_the_user_and_the_fix(password):
    errors = sm.site_model_errors({"site_users": [{"name": "alice", "role": "admin", "password": password}]})
    assert len(errors) == 1, errors
    assert errors[0].startswith("site_users[alice].password: refused")
    assert "generated" in errors[0]
    if isinstance(password, str) and password.lower() not in ("orthanc", "password", ""):
        assert password not in errors[0], "never print the password"


def test_password_containing_the_user_name_is_refused():
    assert sm.site_model_errors({"site_users": [{"name": "radiology", "role": "admin", "password": "my-Radiology-2026!"}]})


def test_missing_password_is_fine_and_strong_ones_pass():
    users = [
        {"name": "admin", "role": "admin"},
        {"name": "dr-smith", "role": "viewer", "password": "Correct-Horse-Battery-9"},
        {"name": "upload", "role": "uploader", "password": None},
    ]
    assert sm.site_model_errors({"site_users": users}) == []


@pytest.mark.parametrize(
    ("users", "fragment"),
    [
        ({"name": "a"}, "is not a list"),
        ([{"name": "a b", "role": "admin"}], ".name"),
        ([{"name": "a", "role": "root"}], ".role"),
        ([{"name": "a", "role": "admin"}, {"name": "a", "role": "viewer"}], "also used by"),
        (["alice"], "is not a mapping"),
    ],
)
def test_bad_user_shapes(users, fragment):
    assert any(fragment in e for e in sm.site_model_errors({"site_users": users}))


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=12, max_size=64))
def test_strength_rule_is_consistent(password):
    why = sm.password_weakness(password, "bob")
    if password.lower() in sm.WEAK_PASSWORDS or len(set(password)) < 5:
        assert why is not None
    elif "bob" not in password.lower() and not sm.PLACEHOLDER_PATTERN.search(password):
        assert why is None


def test_registered_users_and_roles():
    users = [
        {"name": "admin", "role": "admin", "password": "A-very-long-secret-1"},
        {"name": "viewer", "role": "viewer", "password": "B-very-long-secret-2"},
    ]
    assert oc.registered_users(users) == {"admin": "A-very-long-secret-1", "viewer": "B-very-long-secret-2"}
    assert oc.user_roles(users) == {"admin": "admin", "viewer": "viewer"}


@pytest.mark.parametrize(
    "users",
    [[], [{"name": "a", "role": "admin"}], [{"name": "a", "role": "admin", "password": ""}]],
)
def test_registered_users_never_renders_empty_or_missing(users):
    with pytest.raises(ValueError):
        oc.registered_users(users)


def test_with_passwords_fills_only_missing_ones():
    users = [{"name": "a", "role": "admin"}, {"name": "b", "role": "viewer", "password": "Given-password-42"}]
    merged = oc.with_passwords(users, {"a": "Generated-password-1", "b": "ignored"})
    assert merged[0]["password"] == "Generated-password-1"
    assert merged[1]["password"] == "Given-password-42"
    assert "password" not in users[0], "inputs untouched"


def test_invented_keys_found_anywhere():
    config = {"DicomScp": {}, "Nested": {"UserRole": {}}, "List": [{"RestApi": 1}], "DicomScpTimeout": 3}
    assert oc.invented_keys(config) == ["DicomScp", "Nested.UserRole", "List[0].RestApi"]


def test_filter_module_exposes_the_filters():
    names = oc.FilterModule().filters()
    assert {"orthanc_main_config", "orthanc_settings_errors", "orthanc_config_override_errors"} <= set(names)
    assert "orthanc_stale_credential_files" in names


def test_stale_credential_files_are_those_of_removed_users():
    users = [{"name": "admin", "role": "admin"}, {"name": "dr-one", "role": "viewer"}]
    paths = ["/a/credentials/admin.txt", "/a/credentials/dr-two.txt", "/a/credentials/dr-one.txt",
             "/a/credentials/notes.md"]
    assert oc.stale_credential_files(paths, users) == ["/a/credentials/dr-two.txt"]
    assert oc.stale_credential_files([], users) == []
    assert oc.stale_credential_files(["/c/x.txt"], []) == ["/c/x.txt"]


# --- overrides that would weaken a control (issue 10) ------------------------------------------

@pytest.mark.parametrize("key", sorted(oc.WEAKENING_KEYS))
def test_each_weakening_override_is_refused_naming_the_key(key):
    errors = oc.config_override_errors({key: False})
    assert len(errors) == 1 and f"orthanc_config_overrides: {key} is refused" in errors[0], errors
    assert any(key in e for e in oc.settings_errors(settings(overrides={key: True})))


@pytest.mark.parametrize("key", oc.RECYCLING_KEYS)
def test_recycling_limits_are_refused_unless_zero(key):
    assert oc.config_override_errors({key: 0}) == []
    errors = oc.config_override_errors({key: 100})
    assert len(errors) == 1 and key in errors[0] and "delete the oldest" in errors[0]


def test_harmless_overrides_pass_and_errors_name_every_bad_key():
    assert oc.config_override_errors({"StableAge": 30, "ConcurrentJobs": 4}) == []
    errors = oc.config_override_errors({"AuthenticationEnabled": False, "ExecuteLuaEnabled": True, "StableAge": 5})
    assert len(errors) == 2 and "AuthenticationEnabled" in errors[0] and "ExecuteLuaEnabled" in errors[1]
    assert oc.config_override_errors("nope") == ["orthanc_config_overrides: must be a mapping of Orthanc configuration keys"]


# --- Debian version comparison (the Orthanc package floor) -------------------------------------

MINIMUM = "1.10.1+dfsg-2+deb12u1"


@pytest.mark.parametrize(
    ("found", "ok"),
    [("1.10.1+dfsg-2+deb12u1", True), ("1.10.1+dfsg-2+deb12u2", True), ("1.10.1+dfsg-2", False),
     ("1.10.1+dfsg-1", False), ("1.10.1+dfsg-2+deb12u1~bpo1", False), ("1.10.1+dfsg-3", True),
     ("1.12.7+dfsg-1", True), ("1:1.0-1", True), ("1.9.7+dfsg-6", False), ("1.10.1+dfsg-2+deb12u10", True)],
)
def test_orthanc_version_floor(found, ok):
    error = oc.package_version_error("orthanc", found, MINIMUM)
    assert (error is None) is ok
    if not ok:
        assert found in error and MINIMUM in error and "orthanc" in error


def test_missing_package_is_an_error():
    assert "not installed" in oc.package_version_error("orthanc", "", MINIMUM)


VERSION = st.from_regex(r"([0-9]:)?[0-9][0-9a-z.+~]{0,8}(-[0-9a-z.+~]{1,8})?", fullmatch=True)


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="needs dpkg (Debian)")
@settings_hyp(max_examples=150, deadline=None)
@given(VERSION, VERSION)
def test_comparison_agrees_with_dpkg(left, right):
    def dpkg(op):
        return subprocess.run(["dpkg", "--compare-versions", left, op, right], check=False).returncode == 0

    expected = -1 if dpkg("lt") else (1 if dpkg("gt") else 0)
    assert oc.debian_version_compare(left, right) == expected
