"""Unit tests for the orthanc role's request policy (roles/orthanc/files/orthanc_remote_policy.py),
run without Orthanc: the policy is plain Python, the glue script only feeds it Orthanc's request."""

import base64
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "roles" / "orthanc" / "files"))

import orthanc_remote_policy as policy  # noqa: E402

ROLES = {"admin": "admin", "dr-view": "viewer", "mri-upload": "uploader", "nobody": "root"}
SOURCES = ["10.8.0.20/32", "198.51.100.0/28"]


def basic(user, password="whatever-it-is"):
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def decide(method, uri, user, peer="127.0.0.1", forwarded="10.8.0.20", sources=SOURCES):
    headers = basic(user) if user else {}
    if forwarded:
        headers["x-forwarded-for"] = forwarded
    return policy.decide(method, uri, peer, headers, ROLES, sources)[0]


# --- user name from the Authorization header -------------------------------------------------

def test_username_from_basic_header():
    assert policy.username_from_headers(basic("dr-view")) == "dr-view"
    assert policy.username_from_headers({"Authorization": "basic " + base64.b64encode(b"a:b:c").decode()}) == "a"


@pytest.mark.parametrize(
    "headers",
    [None, {}, {"authorization": "Bearer abc"}, {"authorization": "Basic !!!"},
     {"authorization": "Basic " + base64.b64encode(b"nocolon").decode()},
     {"authorization": "Basic " + base64.b64encode(b":pw").decode()},
     {"authorization": "Basic " + base64.b64encode(b"\xff\xfe:pw").decode()},
     {"authorization": "Basic"}],
)
def test_username_missing_or_malformed(headers):
    assert policy.username_from_headers(headers) is None


@given(st.from_regex(r"[A-Za-z0-9_.-]{1,64}", fullmatch=True), st.text(max_size=40))
def test_username_round_trip(user, password):
    assert policy.username_from_headers(basic(user, password)) == user


# --- roles ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
@pytest.mark.parametrize("uri", ["/instances", "/patients/x", "/tools/reset", "/modalities/a/store"])
def test_admin_may_do_everything(method, uri):
    assert decide(method, uri, "admin")


@pytest.mark.parametrize("uri", ["/", "/app/explorer.html", "/app/explorer.js", "/patients", "/studies/x/archive",
                                 "/instances/x/file", "/system", "/plugins/explorer.js"])
@pytest.mark.parametrize("user", ["dr-view", "mri-upload"])
def test_viewer_and_uploader_may_read(uri, user):
    assert decide("GET", uri, user)


@pytest.mark.parametrize("uri", ["/tools/find", "/tools/find/", "/tools/find?expand", "//tools//find", "/tools/lookup"])
def test_viewer_may_search_like_orthanc_explorer(uri):
    assert decide("POST", uri, "dr-view")


@pytest.mark.parametrize(
    ("method", "uri"),
    [("POST", "/instances"), ("POST", "/instances/"), ("DELETE", "/patients/x"), ("DELETE", "/instances/x"),
     ("PUT", "/patients/x/protected"), ("POST", "/patients/x/anonymize"), ("POST", "/studies/x/modify"),
     ("POST", "/modalities/pacs/store"), ("POST", "/jobs/x/cancel"), ("POST", "/tools/execute-script"),
     ("POST", "/tools/reset"), ("PUT", "/modalities/evil"), ("POST", "/tools/findx"), ("PATCH", "/patients"),
     ("UNKNOWN", "/patients")],
)
def test_viewer_may_not_write(method, uri):
    assert not decide(method, uri, "dr-view")


def test_uploader_may_store_but_not_delete_or_modify():
    assert decide("POST", "/instances", "mri-upload")
    assert decide("POST", "/tools/find", "mri-upload")
    for method, uri in [("DELETE", "/instances/x"), ("POST", "/instances/x/modify"), ("PUT", "/patients/x/protected"),
                        ("POST", "/studies/x/anonymize"), ("POST", "/instances/x/export")]:
        assert not decide(method, uri, "mri-upload"), (method, uri)


@pytest.mark.parametrize("user", [None, "stranger", "nobody"])
def test_no_user_unknown_user_or_unknown_role_is_refused(user):
    assert not decide("GET", "/system", user)


@given(st.sampled_from(["GET", "POST", "PUT", "DELETE"]), st.text(alphabet="/abcdefghijklmnopqrstuvwxyz-?=", max_size=40))
def test_viewer_never_writes_outside_search(method, uri):
    allowed = policy.role_allows("viewer", method, uri)
    if method in ("PUT", "DELETE"):
        assert not allowed
    if method == "POST":
        assert allowed == (policy.normalise_uri(uri) in policy.SEARCH_POSTS)


# --- client address and X-Forwarded-For ------------------------------------------------------------

def test_forwarded_for_trusted_only_from_loopback():
    assert policy.client_ip("127.0.0.1", {"x-forwarded-for": "10.8.0.20"}) == "10.8.0.20"
    assert policy.client_ip("::1", {"x-forwarded-for": "10.8.0.20"}) == "10.8.0.20"
    assert policy.client_ip("203.0.113.5", {"x-forwarded-for": "10.8.0.20"}) == "203.0.113.5"
    assert policy.client_ip("127.0.0.1", {"x-forwarded-for": "1.2.3.4, 10.8.0.20"}) == "10.8.0.20"
    assert policy.client_ip("127.0.0.1", {"x-forwarded-for": "garbage"}) == "127.0.0.1"
    assert policy.client_ip("127.0.0.1", {}) == "127.0.0.1"


def test_allow_list_applies_to_the_real_client():
    assert decide("GET", "/system", "admin", forwarded="10.8.0.20")
    assert decide("GET", "/system", "admin", forwarded="198.51.100.7")
    assert not decide("GET", "/system", "admin", forwarded="203.0.113.9")
    # A direct peer outside the list cannot claim an allowed address.
    assert not decide("GET", "/system", "admin", peer="203.0.113.9", forwarded="10.8.0.20")
    # The server itself (loopback, no proxy header) is always allowed; an empty list allows only it.
    assert decide("GET", "/system", "admin", forwarded=None, sources=[])
    assert not decide("GET", "/system", "admin", forwarded="10.8.0.20", sources=[])
    # None disables the address check.
    assert decide("GET", "/system", "admin", peer="203.0.113.9", forwarded=None, sources=None)


def test_ipv4_mapped_and_ipv6_sources():
    assert policy.decide("GET", "/", "::ffff:10.8.0.20", basic("admin"), ROLES, SOURCES, [])[0]
    assert policy.decide("GET", "/", "2001:db8::5", basic("admin"), ROLES, ["2001:db8::/64"], [])[0]


def test_reason_names_user_role_method_and_client():
    allowed, reason = policy.decide("DELETE", "/patients/x", "127.0.0.1",
                                    {**basic("dr-view"), "x-forwarded-for": "10.8.0.20"}, ROLES, SOURCES)
    assert not allowed
    assert reason == "user 'dr-view' (viewer) may not DELETE /patients/x (from 10.8.0.20)"


def test_glue_template_uses_the_policy():
    glue = (Path(__file__).resolve().parent.parent / "roles/orthanc/templates/orthanc_remote_filter.py.j2").read_text()
    assert "orthanc.RegisterIncomingHttpRequestFilter(_filter)" in glue
    assert "policy.decide(" in glue
