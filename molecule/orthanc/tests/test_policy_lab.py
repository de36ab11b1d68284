"""The REST policy, request by request, with real curl over HTTPS through nginx.

Every expected answer of tests/policy_cases.py (written independently of the policy table) is
sent as its role from the modality/admin workstation container; a case the table allows must get
Orthanc's own answer (never 401/403), a case it refuses must get the request filter's 403. The
unit tests prove each row of the table is the only one allowing some case, so removing any row
makes one of these requests fail. Then the variants of issue 10 for each role: method override,
encoded paths, PROPFIND/PATCH, Bearer, %FF; port 80; the upload and archive limits; and the guard
that refuses everything when Orthanc's authentication is off.
"""

import json
import os
import pathlib
import re
import shlex
import sys
import time

import pytest
import testinfra

sys.path.insert(0, str(pathlib.Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", ".")) / "tests"))
from policy_cases import CASES  # noqa: E402

MODALITY = testinfra.get_host("docker://mol-orthanc-modality")
OTHER = testinfra.get_host("docker://mol-orthanc-other")
SERVER = testinfra.get_host("docker://mol-orthanc-server")
SERVER_IP = "10.231.11.10"
BASE = f"https://{SERVER_IP}"
CREDENTIALS = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "artifacts" / "credentials"
USERS = {"viewer": ("dr-view", "Molecule-Viewer-2026-kq7"), "admin": ("admin", None), "uploader": ("mod-upload", None)}
MISSING = "00000000-00000000-00000000-00000000-00000000"


def creds(role):
    name, password = USERS[role]
    return name, password or (CREDENTIALS / f"{name}.txt").read_text().strip()


def curl(role, method, path, extra="", host=MODALITY, body=None):
    """One real curl through nginx; returns the status code as a string."""
    auth = "-u " + shlex.quote(":".join(creds(role))) if role else ""
    data = ""
    if body is not None:
        data = f"--data-binary {shlex.quote(body)}"
    out = host.run(f"curl -sk -m 30 -o /dev/null -w '%{{http_code}}' -X {method} {auth} {data} {extra} "
                   f"{shlex.quote(BASE + path)}")
    return out.stdout.strip()


@pytest.fixture(scope="module")
def ids():
    """A stored instance and its parents (admin upload of a fresh file), and a missing ID."""
    MODALITY.run(
        "cd /root/dicom && test -f policy.dcm || (sed -e 's/@N@/90/g' -e 's/@NAME@/policy/g' template.dump > policy.dump"
        " && dump2dcm policy.dump policy.dcm)"
    )
    name, password = creds("admin")
    out = MODALITY.run(f"curl -sk -u {shlex.quote(name + ':' + password)} --data-binary @/root/dicom/policy.dcm "
                       f"{BASE}/instances")
    stored = json.loads(out.stdout)
    return {"instance": stored["ID"], "series": stored["ParentSeries"], "study": stored["ParentStudy"],
            "patient": stored["ParentPatient"], "missing": MISSING}


@pytest.fixture(scope="module")
def answers(ids):
    """Send every case in one batch on the client (fast); map case index -> status code."""
    lines = []
    for index, case in enumerate(CASES):
        path = case.path.format(**ids)
        body = ""
        if case.method in ("POST", "PUT"):
            body = "--data-binary @/root/dicom/policy.dcm" if path == "/instances" else "--data-binary '{}'"
        auth = "-u " + shlex.quote(":".join(creds(case.role)))
        lines.append(f"printf '{index} '; curl -sk -m 30 -o /dev/null -w '%{{http_code}}\\n' -X {case.method} "
                     f"{auth} {body} {shlex.quote(BASE + path)}")
    script = "\n".join(lines) + "\n"
    MODALITY.run(f"cat > /root/policy-cases.sh <<'EOF'\n{script}EOF")
    out = MODALITY.run("bash /root/policy-cases.sh")
    result = {}
    for line in out.stdout.splitlines():
        index, _, status = line.partition(" ")
        result[int(index)] = status.strip()
    return result


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c.role}-{c.method}-{c.path}" for c in CASES])
def test_each_request_gets_the_answer_of_the_policy_table(answers, index):
    case = CASES[index]
    status = answers[index]
    if case.allowed:
        assert status not in ("401", "403", "405", "429", "000"), (case, status)
    else:
        assert status == "403", (case, status)


def test_viewer_really_searches_views_and_downloads(ids):
    assert curl("viewer", "GET", f"/instances/{ids['instance']}/file") == "200"
    assert curl("viewer", "GET", f"/studies/{ids['study']}/archive") == "200"
    assert curl("viewer", "POST", "/tools/find", body='{"Level":"Study","Query":{},"Expand":true}') == "200"
    assert curl("viewer", "GET", "/app/explorer.html") == "200"


def _still_there(ids):
    return curl("admin", "GET", f"/patients/{ids['patient']}") == "200"


@pytest.mark.parametrize("role", ["admin", "viewer", "uploader"])
def test_method_override_is_refused(ids, role):
    patient = ids["patient"]
    assert curl(role, "GET", f"/patients/{patient}?_method=DELETE") == "400"
    assert curl(role, "GET", f"/patients/{patient}?expand&_method=delete") == "400"
    assert curl(role, "GET", f"/patients/{patient}", extra="-H 'X-HTTP-Method-Override: DELETE'") == "403"
    assert curl(role, "POST", f"/patients/{patient}", extra="-H 'X-HTTP-Method-Override: DELETE'", body="{}") == "403"
    assert _still_there(ids)


@pytest.mark.parametrize("role", ["admin", "viewer", "uploader"])
def test_encoded_paths_get_the_answer_of_the_decoded_path(ids, role):
    # Orthanc routes the decoded path and the filter judges the same decoded path.
    expected_read = "403" if role == "uploader" else "200"
    assert curl(role, "GET", f"/patients%2F{ids['patient']}") == expected_read
    assert curl(role, "POST", f"/instances%2F{ids['instance']}%2Fexport", body="{}") == "403"
    assert curl(role, "DELETE", f"/patients%2F{MISSING}") == ("404" if role == "admin" else "403")
    # Dot segments (sent as-is) end on the normalised route, with that route's answer.
    config = "200" if role == "admin" else "403"
    assert curl(role, "GET", "/app/../modalities", extra="--path-as-is") == config
    assert curl(role, "GET", "/app/%2e%2e/modalities", extra="--path-as-is") == config
    assert curl(role, "PUT", "/app/../tools/log-level-http", extra="--path-as-is", body="trace") == "403"
    # Percent-encoded bytes >= 0x80 and control characters: refused by nginx.
    assert curl(role, "GET", "/patients/%FF") == "400"
    assert curl(role, "GET", "/patients/x%0Ay") == "400"
    assert _still_there(ids)


@pytest.mark.parametrize("role", ["admin", "viewer", "uploader"])
def test_propfind_patch_and_bearer_are_refused(ids, role):
    assert curl(role, "PROPFIND", "/patients", extra="-H 'Depth: 1'") == "405"
    assert curl(role, "PATCH", f"/patients/{ids['patient']}", body="{}") == "405"
    password = creds(role)[1]
    assert curl(None, "GET", "/patients", extra=f"-H {shlex.quote('Authorization: Bearer ' + password)}") == "401"
    assert curl(None, "DELETE", f"/patients/{ids['patient']}",
                extra=f"-H {shlex.quote('Authorization: Bearer ' + password)}") == "401"
    assert _still_there(ids)


# --- port 80 ----------------------------------------------------------------------------------

def test_port_80_applies_the_allow_list_and_serves_acme_to_anyone():
    SERVER.run("mkdir -p /var/www/acme/.well-known/acme-challenge && "
               "echo token-ok > /var/www/acme/.well-known/acme-challenge/probe")
    out = OTHER.run(f"curl -s -o /dev/null -w '%{{http_code}}' http://{SERVER_IP}/system").stdout.strip()
    assert out == "403", "a host outside the allow-list must not get the redirect"
    out = MODALITY.run(f"curl -s -o /dev/null -w '%{{http_code}} %{{redirect_url}}' http://{SERVER_IP}/system")
    assert out.stdout.strip() == f"301 https://{SERVER_IP}/system", out.stdout
    for host in (OTHER, MODALITY):
        out = host.run(f"curl -s http://{SERVER_IP}/.well-known/acme-challenge/probe").stdout.strip()
        assert out == "token-ok"


# --- limits -----------------------------------------------------------------------------------

def test_body_limits_small_everywhere_but_uploads():
    MODALITY.run("head -c 11000000 /dev/zero > /root/eleven-mb.bin")
    assert curl("admin", "POST", "/tools/find", body="@/root/eleven-mb.bin") == "413"
    # An 11 MB instance passes the upload route (512 MB there).
    MODALITY.run(
        "cd /root/dicom && test -f mid.dcm || (head -c 11000000 /dev/urandom > mid.raw && "
        "sed -e 's/@N@/91/g' -e 's/@NAME@/mid/g' template.dump > mid.dump && printf '%s\\n' "
        "'(0028,0002) US 1' '(0028,0004) CS [MONOCHROME2]' '(0028,0010) US 2750' '(0028,0011) US 2000' "
        "'(0028,0100) US 16' '(0028,0101) US 16' '(0028,0102) US 15' '(0028,0103) US 0' "
        "'(7fe0,0010) OW =mid.raw' >> mid.dump && dump2dcm +E mid.dump mid.dcm 2>/dev/null)"
    )
    assert curl("uploader", "POST", "/instances", body="@/root/dicom/mid.dcm") == "200"
    config = SERVER.run("nginx -T 2>/dev/null").stdout
    assert re.search(r"location = /instances \{\s*client_max_body_size 512m;", config), config[-3000:]


def test_uploads_at_once_per_user_are_limited():
    # Two slow uploads in flight hold the uploader's two slots; a third gets 429 at once.
    name, password = creds("uploader")
    auth = shlex.quote(name + ":" + password)
    MODALITY.run("rm -f /root/slow-uploads.pid")
    for _ in range(2):
        MODALITY.run(f"bash -c 'curl -sk -m 60 --limit-rate 200k -u {auth} --data-binary @/root/dicom/mid.dcm "
                     f"{BASE}/instances >/dev/null 2>&1 & echo $! >> /root/slow-uploads.pid'")
    time.sleep(2)
    try:
        assert curl("uploader", "POST", "/instances", body="@/root/dicom/policy.dcm") == "429"
        # Another user is not affected.
        assert curl("admin", "POST", "/instances", body="@/root/dicom/policy.dcm") == "200"
    finally:
        MODALITY.run("kill $(cat /root/slow-uploads.pid) 2>/dev/null || true")
    time.sleep(1)
    assert curl("uploader", "POST", "/instances", body="@/root/dicom/policy.dcm") == "200"


def test_archive_requests_per_user_are_rate_limited(ids):
    codes = [curl("viewer", "GET", f"/series/{ids['series']}/archive") for _ in range(16)]
    assert "429" in codes and codes[0] == "200", codes
    # Ordinary reads are not throttled.
    assert curl("viewer", "GET", f"/series/{ids['series']}") == "200"


def test_an_upload_needs_about_three_times_its_size_in_memory():
    # The README's sizing claim (Orthanc 1.10.1 holds the body in memory): measured here.
    pid = SERVER.run("pidof Orthanc").stdout.strip()
    SERVER.run(f"echo 5 > /proc/{pid}/clear_refs")
    before = int(SERVER.run(f"awk '/VmHWM/ {{print $2}}' /proc/{pid}/status").stdout)
    size = int(MODALITY.run("stat -c %s /root/dicom/mid.dcm").stdout)
    MODALITY.run("cd /root/dicom && sed -i 's/^(0020,0013) IS .*/(0020,0013) IS [7]/' mid.dump && "
                 "sed -i 's/91.1.1\\]/91.1.7]/' mid.dump && dump2dcm +E mid.dump mid7.dcm 2>/dev/null")
    assert curl("admin", "POST", "/instances", body="@/root/dicom/mid7.dcm") == "200"
    peak = int(SERVER.run(f"awk '/VmHWM/ {{print $2}}' /proc/{pid}/status").stdout)
    growth = (peak - before) * 1024 / size
    assert 1.5 <= growth <= 4.5, growth


# --- authentication off: everything refused ------------------------------------------------------

def test_the_filter_refuses_everything_when_authentication_is_off():
    assert SERVER.run("cp -p /etc/orthanc/orthanc.json /root/orthanc.json.auth").rc == 0
    try:
        # Bypasses the role's validation on purpose.
        SERVER.run("sed -i 's/\"AuthenticationEnabled\": true/\"AuthenticationEnabled\": false/' /etc/orthanc/orthanc.json")
        assert '"AuthenticationEnabled": false' in SERVER.file("/etc/orthanc/orthanc.json").content_string
        SERVER.run("systemctl restart orthanc && for i in $(seq 60); do ss -Hltn 'sport = :8042' | grep -q . && break;"
                   " sleep 0.5; done")
        for role in ("admin", "viewer", "uploader", None):
            assert curl(role, "GET", "/system") == "403", role
            assert curl(role, "GET", "/patients") == "403", role
        # A made-up user name is not believed either.
        assert curl(None, "GET", "/patients", extra="-u nobody:whatever-password") == "403"
        assert "orthanc-remote: refused: every request, because AuthenticationEnabled is not true" in SERVER.run(
            "cat /var/log/orthanc/Orthanc.log").stdout
    finally:
        SERVER.run("cp -p /root/orthanc.json.auth /etc/orthanc/orthanc.json && systemctl restart orthanc && "
                   "for i in $(seq 60); do ss -Hltn 'sport = :8042' | grep -q . && break; sleep 0.5; done")
    assert curl("admin", "GET", "/system") == "200"
