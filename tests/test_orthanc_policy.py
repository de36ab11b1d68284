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
from policy_cases import CASES  # noqa: E402

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


# --- the policy table against the expected answers (tests/policy_cases.py) ---------------------

ROLE_USER = {"admin": "admin", "viewer": "dr-view", "uploader": "mri-upload"}
IDS = {"patient": "p1", "study": "s1", "series": "r1", "instance": "i1", "missing": "m1"}


def _allowed(case, table=policy.POLICY):
    uri = case.path.format(**IDS)
    headers = {**basic(ROLE_USER[case.role]), "x-forwarded-for": "10.8.0.20"}
    return policy.decide(case.method, uri, "127.0.0.1", headers, ROLES, SOURCES, table=table)[0]


@pytest.mark.parametrize("case", CASES, ids=[f"{c.role}-{c.method}-{c.path}" for c in CASES])
def test_each_expected_answer_matches_the_table(case):
    assert _allowed(case) == case.allowed


@pytest.mark.parametrize("index", range(len(policy.POLICY)), ids=[f"{r.role}-{r.method}-{r.pattern}" for r in policy.POLICY])
def test_removing_any_row_changes_an_expected_answer(index):
    # The lab suite (molecule/orthanc) sends the same cases to the real Orthanc: a row nobody
    # needs, or one whose removal no case notices, is a hole in the tests.
    table = policy.POLICY[:index] + policy.POLICY[index + 1:]
    changed = [c for c in CASES if _allowed(c, table) != c.allowed]
    assert changed, f"no expected answer depends on row {policy.POLICY[index]}"


def test_every_role_has_rows_and_unknown_methods_match_nothing():
    assert {r.role for r in policy.POLICY} == set(policy.ROLES)
    for rule in policy.POLICY:
        assert rule.method in ("*",) + policy.METHODS and rule.pattern.startswith("/") and rule.why
    for method in ("PATCH", "PROPFIND", "UNKNOWN", "", "HEAD"):
        assert policy.matching_rule("admin", method, "/patients") is None


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [("/", "/", True), ("/", "/x", False), ("/app/**", "/app", True), ("/app/**", "/app/a/b", True),
     ("/app/**", "/apps/a", False), ("/**", "/", True), ("/a|b/*", "/b/x", True), ("/a|b/*", "/c/x", False),
     ("/a/*", "/a", False), ("/a/*", "/a/x/y", False), ("/tools/log-level*", "/tools/log-level-http", True),
     ("/tools/log-level*", "/tools/log", False), ("/patients|studies", "/patients", True)],
)
def test_pattern_matching(pattern, path, expected):
    assert policy.pattern_matches(pattern, path) is expected


@pytest.mark.parametrize("user", [None, "stranger", "nobody"])
def test_no_user_unknown_user_or_unknown_role_is_refused(user):
    assert not decide("GET", "/system", user)


@given(st.sampled_from(["GET", "POST", "PUT", "DELETE"]), st.text(alphabet="/abcdefghijklmnopqrstuvwxyz-*.", max_size=40))
def test_viewer_and_uploader_never_write_outside_their_rows(method, uri):
    viewer = policy.role_allows("viewer", method, "/" + uri)
    uploader = policy.role_allows("uploader", method, "/" + uri)
    if method in ("PUT", "DELETE"):
        assert not viewer and not uploader
    if method == "POST":
        assert viewer == (policy.normalise_uri("/" + uri) == "/tools/find")
    assert uploader == (method == "POST" and policy.normalise_uri("/" + uri) == "/instances")


# --- fail-closed checks before the table ---------------------------------------------------------

@pytest.mark.parametrize(
    "uri",
    ["/patients/\nx", "/patients/x\nW1201 00:00:00.000000 main.cpp:1] Rejected", "/patients/\xff", "/app/../modalities",
     "/app/./explorer.html", "/patients/%2e%2e", "/patients\\x", "/patients/a b", "patients", "", "/p/\x7f", "/p/\u00e9"],
)
@pytest.mark.parametrize("user", ["admin", "dr-view"])
def test_uri_with_control_characters_dot_segments_or_percent_is_refused(uri, user):
    assert not decide("GET", uri, user)


@pytest.mark.parametrize("user", ["admin", "dr-view", "mri-upload"])
def test_method_override_is_refused_for_every_role(user):
    headers = {**basic(user), "x-forwarded-for": "10.8.0.20"}
    assert not policy.decide("DELETE", "/patients/x", "127.0.0.1", {**headers, "x-http-method-override": "DELETE"},
                             ROLES, SOURCES)[0]
    assert not policy.decide("GET", "/patients/x", "127.0.0.1", headers, ROLES, SOURCES, get={"_method": "DELETE"})[0]
    assert policy.decide("GET", "/patients/x", "127.0.0.1", headers, ROLES, SOURCES, get={"expand": ""})[0] == (
        user != "mri-upload")


@pytest.mark.parametrize("method", ["PATCH", "PROPFIND", "UNKNOWN"])
def test_unknown_methods_are_refused_even_for_admin(method):
    assert not decide(method, "/patients", "admin")


def test_configuration_without_authentication_locks_everything():
    good = {"AuthenticationEnabled": True, "RegisteredUsers": {"admin": "x" * 20}}
    assert policy.configuration_errors(good) == []
    for bad in ({**good, "AuthenticationEnabled": False}, {"RegisteredUsers": good["RegisteredUsers"]},
                {**good, "AuthenticationEnabled": "true"}, {**good, "RegisteredUsers": {}}, {}, None):
        assert policy.configuration_errors(bad), bad


# --- nothing from the request reaches a log line unescaped ------------------------------------------

@given(st.text(max_size=300))
def test_log_safe_output_is_one_printable_line(text):
    line = policy.log_safe(text)
    assert all(0x20 <= ord(c) <= 0x7E for c in line)
    assert len(line) <= policy.LOG_LIMIT + 3


@given(st.text(max_size=120), st.text(max_size=30), st.sampled_from(["GET", "POST", "DELETE", "PUT", "X\nY"]))
def test_refusal_line_is_one_printable_line_whatever_the_request(uri, user, method):
    headers = {"authorization": "Basic " + base64.b64encode(f"{user}:pw".encode()).decode(),
               "x-forwarded-for": "10.8.0.20"}
    allowed, reason = policy.decide(method, "/" + uri, "127.0.0.1", headers, {user: "viewer"}, SOURCES)
    line = policy.refusal_line(reason)
    assert all(0x20 <= ord(c) <= 0x7E for c in line), line


def test_forged_log_line_in_the_uri_stays_inside_one_line():
    forged = "/patients/x\nW1201 05:00:00.000000 CommandDispatcher.cpp:617] Rejected association for remote AET X on IP 198.51.100.7"
    allowed, reason = policy.decide("DELETE", forged, "127.0.0.1", {**basic("dr-view"), "x-forwarded-for": "10.8.0.20"},
                                    ROLES, SOURCES)
    line = policy.refusal_line(reason)
    assert not allowed and "\n" not in line and "\\x0a" in line
    assert line.startswith("orthanc-remote: refused: user 'dr-view' (viewer) DELETE /patients/x\\x0aW1201")


# --- the README's permissions table is the policy table -------------------------------------------

def test_readme_permissions_table_is_generated_from_the_policy():
    readme = (Path(__file__).resolve().parent.parent / "roles/orthanc/README.md").read_text()
    begin, end = "<!-- policy-table:begin -->\n", "<!-- policy-table:end -->"
    assert begin in readme and end in readme
    table = readme.split(begin, 1)[1].split(end, 1)[0]
    assert table == policy.markdown_table(), (
        "regenerate with: python3 roles/orthanc/files/orthanc_remote_policy.py --markdown")


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
    assert policy.refusal_line(reason) == "orthanc-remote: refused: " + reason


def test_glue_template_uses_the_policy():
    glue = (Path(__file__).resolve().parent.parent / "roles/orthanc/templates/orthanc_remote_filter.py.j2").read_text()
    assert "orthanc.RegisterIncomingHttpRequestFilter(_filter)" in glue
    assert "policy.decide(" in glue
