"""Acceptance tests for the orthanc role, run from the client containers with real clients.

mol-orthanc-modality (10.231.11.20) is the allowed modality and admin workstation;
mol-orthanc-other (10.231.11.30) is in no allow-list. mol-orthanc-server (10.231.11.10) runs plain
DICOM with the role's self-signed HTTPS certificate; mol-orthanc-tls (10.231.11.11) runs DICOM TLS
with certificates from prepare.yml. Every check reads the client's printed output.
"""

import json
import os
import pathlib
import re
import shlex

import pytest
import testinfra

MODALITY = testinfra.get_host("docker://mol-orthanc-modality")
OTHER = testinfra.get_host("docker://mol-orthanc-other")
SERVER = testinfra.get_host("docker://mol-orthanc-server")
TLS_SERVER = testinfra.get_host("docker://mol-orthanc-tls")

SERVER_IP = "10.231.11.10"
TLS_IP = "10.231.11.11"
AET = "ORTHANC-MOL"
TLS_AET = "ORTHANC-TLS"
ECHO_OK = "Received Echo Response (Success)"
STORE_OK = "Received Store Response (Success)"
CREDENTIALS = pathlib.Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "artifacts" / "credentials"
VIEWER = ("dr-view", "Molecule-Viewer-2026-kq7")
INVENTED = (
    "DicomScp",
    "UserRole",
    "AllowedSources",
    "SslPrivateKey",
    "SslCertificateChain",
    "SslMinimumVersion",
    "SslCiphersuites",
    "DicomAssociationTimeout",
    "RestApi",
)
WEAK = ("orthanc", "password", "admin_password")


def _password(user):
    return (CREDENTIALS / f"{user}.txt").read_text().strip()


ADMIN = ("admin", None)
UPLOADER = ("mod-upload", None)


def _creds(user):
    name, password = user
    return name, password or _password(name)


def _dicom(host, command):
    """Run a dcmtk command; return its whole printed output (stdout + stderr)."""
    result = host.run(command)
    return result.rc, result.stdout + result.stderr


def _https(host, path, user=None, method="GET", data=None, target=SERVER_IP, extra=""):
    """curl through nginx; return (status, body)."""
    auth = ""
    if user:
        name, password = _creds(user)
        auth = f"-u {shlex.quote(name + ':' + password)}"
    body = ""
    if data is not None:
        body = f"--data-binary {shlex.quote(data)}"
    cmd = (
        f"curl -sk -m 20 -o /tmp/body -w '%{{http_code}}' -X {method} {auth} {body} {extra} "
        f"https://{target}{path}; echo; cat /tmp/body"
    )
    result = host.run(cmd)
    status, _, rest = result.stdout.partition("\n")
    return status.strip(), rest


LOCAL_HTTP = """
import base64, sys, urllib.error, urllib.request
url, auth, forwarded = sys.argv[1:4]
request = urllib.request.Request(url)
request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
if forwarded:
    request.add_header("X-Forwarded-For", forwarded)
try:
    print(urllib.request.urlopen(request, timeout=10).status)
except urllib.error.HTTPError as error:
    print(error.code)
"""


def _server_http(url, user, forwarded=""):
    """HTTP status of a request made on mol-orthanc-server itself (python3, no curl there)."""
    name, password = _creds(user)
    args = " ".join(shlex.quote(a) for a in (url, f"{name}:{password}", forwarded))
    return SERVER.run(f"python3 -c {shlex.quote(LOCAL_HTTP)} {args}").stdout.strip()


def _find(user, patient_id, host=MODALITY):
    query = json.dumps({"Level": "Instance", "Query": {"PatientID": patient_id}})
    status, body = _https(host, "/tools/find", user, "POST", query)
    return status, json.loads(body) if status == "200" else body


# --- DICOM (plain) --------------------------------------------------------------------------

def test_echo_from_the_allowed_modality_succeeds():
    rc, out = _dicom(MODALITY, f"echoscu -v -aet CT1 -aec {AET} {SERVER_IP} 4242")
    assert ECHO_OK in out and "Echo Failed" not in out, out
    assert rc == 0


def test_store_from_the_allowed_modality_is_found_through_rest():
    rc, out = _dicom(MODALITY, f"storescu -v -aet CT1 -aec {AET} {SERVER_IP} 4242 /root/dicom/ct1.dcm")
    assert STORE_OK in out, out
    status, found = _find(ADMIN, "MOL-ct1")
    assert status == "200" and len(found) == 1, found


def test_unknown_calling_aet_is_rejected():
    _, out = _dicom(MODALITY, f"echoscu -v -aet INTRUDER -aec {AET} {SERVER_IP} 4242")
    assert "Calling AE Title Not Recognized" in out, out
    assert ECHO_OK not in out


def test_wrong_called_aet_is_rejected():
    _, out = _dicom(MODALITY, f"echoscu -v -aet CT1 -aec WRONGAET {SERVER_IP} 4242")
    assert "Called AE Title Not Recognized" in out, out
    assert ECHO_OK not in out


def test_known_aet_from_another_host_is_rejected():
    _, out = _dicom(OTHER, f"echoscu -v -aet CT1 -aec {AET} {SERVER_IP} 4242")
    assert "Association Rejected" in out or "Calling AE Title Not Recognized" in out, out
    assert ECHO_OK not in out
    _, out = _dicom(OTHER, f"storescu -v -aet CT1 -aec {AET} {SERVER_IP} 4242 /root/dicom/ct1.dcm")
    assert STORE_OK not in out, out


def test_command_the_modality_is_not_allowed_is_refused():
    # US1 may store only: echo and find are refused, store works.
    _, out = _dicom(MODALITY, f"echoscu -v -aet US1 -aec {AET} {SERVER_IP} 4242")
    assert ECHO_OK not in out, out
    assert re.search(r"Echo Failed|Association Aborted|Association Rejected|Peer aborted", out), out
    _, out = _dicom(MODALITY, f"findscu -v -S -k QueryRetrieveLevel=STUDY -k PatientID -aet US1 -aec {AET} {SERVER_IP} 4242")
    assert "Received Final Find Response (Success)" not in out, out
    _, out = _dicom(MODALITY, f"storescu -v -aet US1 -aec {AET} {SERVER_IP} 4242 /root/dicom/us1.dcm")
    assert STORE_OK in out, out


def test_find_allowed_for_ct1():
    _, out = _dicom(MODALITY, f"findscu -v -S -k QueryRetrieveLevel=STUDY -k PatientID=MOL-ct1 -aet CT1 -aec {AET} {SERVER_IP} 4242")
    assert "Received Final Find Response (Success)" in out, out
    assert "MOL-ct1" in out, out


# --- HTTPS ----------------------------------------------------------------------------------

def test_no_credentials_gives_401_and_is_logged_with_the_client_ip():
    status, _ = _https(MODALITY, "/system")
    assert status == "401"
    status, _ = _https(MODALITY, "/patients", ("admin", "not-the-password-at-all"))
    assert status == "401"
    log = SERVER.file("/var/log/nginx/orthanc-remote/orthanc-access.log").content_string
    assert re.search(r'^10\.231\.11\.20 - admin \[.*"GET /patients HTTP/[0-9.]+" 401 ', log, re.M), log[-2000:]


def test_admin_can_do_everything():
    status, body = _https(MODALITY, "/system", ADMIN)
    assert status == "200" and json.loads(body)["DicomAet"] == AET
    status, body = _https(MODALITY, "/instances", ADMIN, "POST", "@/root/dicom/rest.dcm")
    assert status == "200" and json.loads(body)["Status"] in ("Success", "AlreadyStored"), body
    instance = json.loads(body)["ID"]
    status, _ = _https(MODALITY, f"/instances/{instance}", ADMIN, "DELETE")
    assert status == "200"
    status, _ = _https(MODALITY, "/tools/execute-script", ADMIN, "POST", "print(1)")
    assert status == "403", "Lua execution must be off even for admin"


def test_viewer_reads_and_searches_but_cannot_write():
    status, body = _https(MODALITY, "/patients", VIEWER)
    assert status == "200" and len(json.loads(body)) >= 1
    status, found = _find(VIEWER, "MOL-ct1")
    assert status == "200" and len(found) == 1, found
    status, body = _https(MODALITY, "/app/explorer.html", VIEWER)
    assert status == "200" and "Orthanc Explorer" in body
    status, _ = _https(MODALITY, "/app/explorer.js", VIEWER)
    assert status == "200"
    patient = json.loads(_https(MODALITY, "/patients", VIEWER)[1])[0]
    assert _https(MODALITY, "/instances", VIEWER, "POST", "@/root/dicom/viewer.dcm")[0] == "403"
    assert _https(MODALITY, f"/patients/{patient}", VIEWER, "DELETE")[0] == "403"
    assert _https(MODALITY, f"/patients/{patient}/protected", VIEWER, "PUT", "1")[0] == "403"
    assert _https(MODALITY, f"/patients/{patient}/anonymize", VIEWER, "POST", "{}")[0] == "403"
    assert _find(ADMIN, "MOL-viewer")[1] == [], "the viewer's upload must not be stored"
    # The refusal is Orthanc's (request filter), logged with the real client address.
    log = SERVER.run("cat /var/log/orthanc/Orthanc.log").stdout
    assert "user 'dr-view' (viewer) may not DELETE" in log and "from 10.231.11.20" in log


def test_uploader_stores_but_cannot_delete_or_modify():
    status, body = _https(MODALITY, "/instances", UPLOADER, "POST", "@/root/dicom/rest.dcm")
    assert status == "200" and json.loads(body)["Status"] == "Success", body
    instance = json.loads(body)["ID"]
    assert _https(MODALITY, f"/instances/{instance}", UPLOADER, "DELETE")[0] == "403"
    assert _https(MODALITY, f"/instances/{instance}/modify", UPLOADER, "POST", '{"Replace":{}}')[0] == "403"
    assert _https(MODALITY, f"/instances/{instance}", ADMIN)[0] == "200", "still stored"


def test_tls_1_1_is_refused_and_1_2_1_3_accepted():
    # SECLEVEL=0 lets Debian's client offer TLS 1.1, so the refusal is the server's.
    out = MODALITY.run(
        f"echo | openssl s_client -connect {SERVER_IP}:443 -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' 2>&1"
    ).stdout
    assert "alert protocol version" in out and "Cipher is (NONE)" in out, out
    for flag, name in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
        out = MODALITY.run(f"echo | openssl s_client -connect {SERVER_IP}:443 {flag} 2>&1").stdout
        assert f"Protocol  : {name}" in out or f"New, {name}" in out, out


def test_hsts_and_http_redirect():
    out = MODALITY.run(f"curl -skI -u admin:{shlex.quote(_password('admin'))} https://{SERVER_IP}/system").stdout
    assert re.search(r"(?im)^strict-transport-security: max-age=63072000", out), out
    assert not re.search(r"(?im)^server: nginx/", out), "server_tokens off"
    out = MODALITY.run(f"curl -sI http://{SERVER_IP}/system").stdout
    assert re.search(r"(?m)^HTTP/1.1 301", out) and f"https://{SERVER_IP}/system" in out, out


def test_source_outside_the_allow_list_is_refused():
    status, body = _https(OTHER, "/system", ADMIN)
    assert status == "403" and "nginx" in body, body
    status, _ = _https(MODALITY, "/system", ADMIN)
    assert status == "200"


def test_port_8042_cannot_be_reached_from_the_client():
    result = MODALITY.run(f"curl -s -m 4 -o /dev/null -w '%{{http_code}}' http://{SERVER_IP}:8042/system")
    assert result.stdout.strip() == "000" and result.rc in (7, 28), (result.rc, result.stdout)
    # Second layer: a non-loopback peer that gets past the guard still gets no access
    # (RemoteAccessAllowed false), even with admin credentials.
    assert _server_http(f"http://{SERVER_IP}:8042/system", ADMIN) in ("401", "403")
    assert _server_http("http://127.0.0.1:8042/system", ADMIN) == "200"


def test_forwarded_for_is_only_trusted_from_loopback_and_checked():
    # From loopback (nginx's place) X-Forwarded-For names the client: outside the allow-list -> 403.
    assert _server_http("http://127.0.0.1:8042/system", ADMIN, "203.0.113.9") == "403"
    assert _server_http("http://127.0.0.1:8042/system", ADMIN, "10.231.11.20") == "200"


# --- Files and configuration ----------------------------------------------------------------

@pytest.mark.parametrize("host", [SERVER, TLS_SERVER], ids=["plain", "tls"])
def test_rendered_config_has_no_invented_key_and_no_weak_password(host):
    text = host.run("cat /etc/orthanc/*.json").stdout
    assert "RegisteredUsers" in text and "DicomModalities" in text
    for key in INVENTED:
        assert not re.search(rf'"{key}"\s*:', text), key
    pattern = "|".join(f'"{key}"' for key in INVENTED)
    assert host.run(f"grep -rlE '{pattern}' /etc/orthanc").stdout == ""
    creds = host.run("sed '/^ *\\/\\//d' /etc/orthanc/credentials.json").stdout
    users = json.loads(creds)["RegisteredUsers"]
    assert set(users) == {"admin", "dr-view", "mod-upload"}
    for name, password in users.items():
        assert len(password) >= 12 and password.lower() not in WEAK, name
    assert not re.search(r'"orthanc"\s*:\s*"orthanc"', text)
    # Orthanc never created its default orthanc:orthanc user, not even at installation.
    assert host.run("grep -l 'Creating a default user' /var/log/orthanc/Orthanc.log*").stdout == ""


def test_controller_credentials_are_private_and_strong():
    assert oct(CREDENTIALS.stat().st_mode & 0o777) == "0o700"
    for path in CREDENTIALS.iterdir():
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
        value = path.read_text().strip()
        assert len(value) >= 12 and value.lower() not in WEAK and "orthanc:orthanc" not in value


@pytest.mark.parametrize("host", [SERVER, TLS_SERVER], ids=["plain", "tls"])
def test_nothing_under_etc_orthanc_is_writable_by_the_service(host):
    assert host.run("find /etc/orthanc -user orthanc -o -perm /022 -print").stdout == ""
    assert not host.file("/etc/orthanc/sample.py").exists
    assert host.run("runuser -u orthanc -- test -w /etc/orthanc/python/orthanc_remote_filter.py").rc != 0
    assert host.run("runuser -u orthanc -- test -r /etc/orthanc/credentials.json").rc == 0
    for path in ("orthanc.json", "credentials.json", "python.json"):
        f = host.file(f"/etc/orthanc/{path}")
        assert (f.user, f.group, f.mode) == ("root", "orthanc", 0o640), path
    assert host.run("test -r /etc/orthanc/credentials.json && runuser -u nobody -- cat /etc/orthanc/credentials.json").rc != 0


@pytest.mark.parametrize("host", [SERVER, TLS_SERVER], ids=["plain", "tls"])
def test_orthanc_runs_with_tcp_nodelay_and_secure_defaults(host):
    assert host.service("orthanc").is_running and host.service("orthanc").is_enabled
    env = host.run("tr '\\0' '\\n' < /proc/$(pidof Orthanc)/environ").stdout
    assert "TCP_NODELAY=1" in env
    config = json.loads(host.run("sed '/^ *\\/\\//d' /etc/orthanc/orthanc.json").stdout)
    for key in ("DicomAlwaysAllowEcho", "DicomAlwaysAllowStore", "DicomAlwaysAllowFind", "DicomAlwaysAllowGet",
                "DicomAlwaysAllowMove", "WebDavEnabled", "ExecuteLuaEnabled", "RestApiWriteToFileSystemEnabled",
                "RemoteAccessAllowed"):
        assert config[key] is False, key
    for key in ("DicomCheckCalledAet", "DicomCheckModalityHost", "AuthenticationEnabled"):
        assert config[key] is True, key
    assert config["LimitFindResults"] == 100
    assert isinstance(config["DicomModalities"]["ct-1"], dict)


# --- DICOM TLS --------------------------------------------------------------------------------

TLS_BASE = f"-aet CT1 -aec {TLS_AET} {TLS_IP} 4242"


def test_dicom_tls_with_a_ca_signed_client_certificate_succeeds():
    tls = "+tls /root/pki/ct-1.key /root/pki/ct-1.crt +cf /root/pki/ca.crt"
    _, out = _dicom(MODALITY, f"echoscu -v {tls} {TLS_BASE}")
    assert ECHO_OK in out, out
    _, out = _dicom(MODALITY, f"storescu -v {tls} {TLS_BASE} /root/dicom/tls.dcm")
    assert STORE_OK in out, out
    out = MODALITY.run(
        f"curl -s --cacert /root/pki/ca.crt --resolve pacs.molecule.test:443:{TLS_IP} "
        f"-u admin:{shlex.quote(_password('admin'))} https://pacs.molecule.test/tools/find "
        "-d '{\"Level\":\"Instance\",\"Query\":{\"PatientID\":\"MOL-tls\"}}'"
    ).stdout
    assert len(json.loads(out)) == 1, out


@pytest.mark.parametrize(
    ("options", "dataset"),
    [
        ("+tla +cf /root/pki/ca.crt", "plaintls"),
        ("+tls /root/pki/rogue.key /root/pki/rogue.crt +cf /root/pki/ca.crt", "rogue"),
        ("", "notls"),
    ],
    ids=["no-client-certificate", "rogue-self-signed", "plain-dicom"],
)
def test_dicom_tls_refuses_without_a_trusted_client_certificate(options, dataset):
    _, out = _dicom(MODALITY, f"echoscu -v -to 10 -ta 10 {options} {TLS_BASE}")
    assert ECHO_OK not in out, out
    _, out = _dicom(MODALITY, f"storescu -v -to 10 -ta 10 {options} {TLS_BASE} /root/dicom/{dataset}.dcm")
    assert STORE_OK not in out, out
    status, body = _https(MODALITY, "/tools/find", ADMIN, "POST",
                          json.dumps({"Level": "Instance", "Query": {"PatientID": f"MOL-{dataset}"}}), target=TLS_IP)
    assert status == "200" and json.loads(body) == [], body
