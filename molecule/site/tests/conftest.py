"""Helpers for the whole-site scenario: the lab's containers, its site facts (read from
inventories/lab, the only description of the lab), real clients (dcmtk, OpenVPN, curl, nmap) and
re-runs of site.yml / verify.yml with the molecule inventory (which links inventories/lab)."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import testinfra
import yaml

ROOT = Path(__file__).resolve().parents[3]
LAB = ROOT / "inventories" / "lab"
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
ARTIFACTS = Path(os.environ.get("ORTHANC_REMOTE_LAB_ARTIFACTS") or EPHEMERAL / "artifacts")
CERTS = "/etc/orthanc-remote-test"


@functools.lru_cache(maxsize=None)
def inventory() -> dict:
    return yaml.safe_load((LAB / "hosts.yml").read_text())


@functools.lru_cache(maxsize=None)
def site() -> dict:
    return yaml.safe_load((LAB / "group_vars" / "all" / "site.yml").read_text())


def hosts_of(group: str) -> dict[str, dict]:
    """{host name: host vars} of a group of the lab inventory (searched at any depth)."""
    def walk(node: dict) -> dict:
        for name, child in (node.get("children") or {}).items():
            if name == group:
                return child.get("hosts") or {}
            found = walk(child or {})
            if found:
                return found
        return {}
    return walk(inventory()["all"])


PACS_NAME, PACS_VARS = next(iter(hosts_of("pacs").items()))
PACS_IP = site()["site_pacs_addresses"][0]
LAB_VARS = yaml.safe_load((LAB / "group_vars" / "all" / "lab.yml").read_text())
ADMIN = LAB_VARS["lab_admin_user"]
HTTPS_PORT = site()["site_https_port"]
DICOM = site()["site_dicom"]
VPN_SERVER = "10.8.0.1"  # first host address of site_vpn.network (asserted in test_1)


def host(name: str):
    """A testinfra host for a lab container (inspection and client actions through Docker)."""
    return testinfra.get_host(f"docker://{name}")


def modality(name: str) -> dict:
    return next(m for m in site()["site_modalities"] if m["name"] == name)


def modality_host(name: str) -> str:
    return next(h for h, v in hosts_of("lab_modalities").items() if v["test_modality"] == name)


def password(user: str) -> str:
    return (ARTIFACTS / "credentials" / f"{user}.txt").read_text().split()[0]


@functools.lru_cache(maxsize=None)
def ca_file() -> str:
    path = EPHEMERAL / "lab-ca.crt"
    path.write_text(host(PACS_NAME).check_output("cat /etc/orthanc-remote/tls/ca.crt") + "\n")
    return str(path)


def rest(path: str, user: str = "admin", method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    """A REST call from this machine (an admin source) to the PACS over HTTPS, certificate checked."""
    request = urllib.request.Request(f"https://{PACS_IP}:{HTTPS_PORT}{path}", data=body, method=method)
    token = base64.b64encode(f"{user}:{password(user)}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context(cafile=ca_file())
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def rest_json(path: str, user: str = "admin", method: str | None = None, body: dict | None = None):
    method = method or ("POST" if body is not None else "GET")
    status, data = rest(path, user, method, json.dumps(body).encode() if body is not None else None)
    assert status == 200, (path, status, data[:300])
    return json.loads(data)


def dicom_target(name: str) -> str:
    """Where a modality sends: the PACS's tunnel address behind a gateway, else its public name."""
    return VPN_SERVER if modality(name).get("vpn_gateway") else site()["site_pacs_fqdn"]


def tls_args() -> str:
    return f"+tls {CERTS}/client.key {CERTS}/client.crt +cf {CERTS}/ca.crt" if DICOM["tls"] else ""


def echo(name: str, aet: str | None = None, called: str | None = None) -> str:
    """C-ECHO from a modality's container: echoscu's whole output (its exit code proves nothing)."""
    m = modality(name)
    return host(modality_host(name)).run(
        f"echoscu -v -to 10 -ta 10 -td 10 {tls_args()} -aet '{aet or m['aet']}' -aec '{called or DICOM['aet']}' "
        f"{dicom_target(name)} {DICOM['port']} 2>&1"
    ).stdout


def echo_ok(output: str) -> bool:
    return "Received Echo Response (Success)" in output


def recap(result: subprocess.CompletedProcess, name: str) -> dict[str, int]:
    match = re.search(rf"^{re.escape(name)}\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                      result.stdout, re.M)
    assert match, result.stdout[-4000:] + result.stderr[-2000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def play(playbook: str, extra_vars: dict | None = None, limit: str | None = None,
         options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """ansible-playbook with the molecule inventory (inventories/lab, linked), as molecule runs it;
    ``options`` are added to its command line (e.g. ``("--check",)``)."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    env.setdefault("ANSIBLE_CONFIG", str(EPHEMERAL / "ansible.cfg"))
    env.setdefault("ORTHANC_REMOTE_LAB_ARTIFACTS", str(ARTIFACTS))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(EPHEMERAL / "inventory"),
           str(ROOT / playbook)]
    if extra_vars is not None:
        extra = EPHEMERAL / "site-extra-vars.json"
        extra.write_text(json.dumps(extra_vars))
        cmd += ["-e", f"@{extra}"]
    if limit:
        cmd += ["--limit", limit]
    cmd += list(options)
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500, check=False)
    print(result.stdout[-5000:], result.stderr[-2000:])
    return result


def table_rows(output: str, result: str) -> list[str]:
    """The rows of one result (PASS, WARN or FAIL) of verify's or diagnose's table, as printed by
    the YAML callback (one indented line per check)."""
    return [line.strip() for line in output.splitlines() if re.match(rf"\s+{result} ", line)]


def wait_for(predicate, timeout: float = 60, step: float = 2):
    """Poll until predicate() is truthy; return its last value."""
    deadline = time.time() + timeout
    value = predicate()
    while not value and time.time() < deadline:
        time.sleep(step)
        value = predicate()
    return value


def tunnel_address(name: str) -> str:
    return host(name).run("ip -4 -o addr show dev tun0 2>/dev/null").stdout


GENERATOR = r'''
import hashlib, json, os, sys
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
sop_class, modality, outdir, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
os.makedirs(outdir, exist_ok=True)
study, series, result = generate_uid(), generate_uid(), []
for index in range(count):
    uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = f"{outdir}/{index:03d}.dcm"
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientID, ds.PatientName = f"LAB-{modality}", f"Lab^{modality}"
    ds.Modality, ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = modality, "1", 1, index + 1
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    pixels = os.urandom(32 * 32 * 2)
    ds.PixelData = pixels
    ds.save_as(path, write_like_original=False)
    result.append({"sop": uid, "sha256": hashlib.sha256(pixels).hexdigest()})
print(json.dumps({"study": study, "series": series, "instances": result}))
'''
SOP_CLASSES = {"MR": "1.2.840.10008.5.1.4.1.1.4", "CT": "1.2.840.10008.5.1.4.1.1.2", "US": "1.2.840.10008.5.1.4.1.1.6.1"}


def generate_series(name: str, kind: str, count: int = 3) -> dict:
    """A fresh series (random pixels, new UIDs) written by pydicom in the modality's container."""
    box = host(modality_host(name))
    box.check_output("mkdir -p /root/lab && rm -rf /root/lab/series")
    script = base64.b64encode(GENERATOR.encode()).decode()
    box.check_output(f"echo {script} | base64 -d > /root/lab/generate.py")
    out = box.check_output(f"python3 /root/lab/generate.py {SOP_CLASSES[kind]} {kind} /root/lab/series {count}")
    return json.loads(out)


def store(name: str, aet: str | None = None, called: str | None = None) -> str:
    """C-STORE the generated series from the modality's container; storescu's whole output."""
    m = modality(name)
    return host(modality_host(name)).run(
        f"storescu -v -to 10 -ta 10 -td 10 {tls_args()} -aet '{aet or m['aet']}' -aec '{called or DICOM['aet']}' "
        f"{dicom_target(name)} {DICOM['port']} /root/lab/series/*.dcm 2>&1"
    ).stdout


def series_in_pacs(series_uid: str) -> dict[str, str]:
    """{SOP Instance UID: sha256 of the pixel data} of a series, read back through REST."""
    found = rest_json("/tools/find", body={"Level": "Series", "Query": {"SeriesInstanceUID": series_uid}})
    if not found:
        return {}
    result = {}
    for instance in rest_json(f"/series/{found[0]}/instances"):
        status, pixels = rest(f"/instances/{instance['ID']}/frames/0/raw")
        assert status == 200, status
        result[instance["MainDicomTags"]["SOPInstanceUID"]] = hashlib.sha256(pixels).hexdigest()
    return result


def all_instances() -> dict[str, str]:
    """Every stored instance: {Orthanc ID: sha256 of the DICOM file Orthanc serves back}."""
    result = {}
    for instance in rest_json("/instances"):
        status, data = rest(f"/instances/{instance}/file")
        assert status == 200, status
        result[instance] = hashlib.sha256(data).hexdigest()
    return result


# Orthanc Explorer in a real browser: Debian's Chromium, headless, in the radiologist container
# that playbooks/lab.yml gave one (lab_browser), run by that laptop's desktop account, driven by
# explorer_browser.py (copied in) through the DevTools protocol.
BROWSER_USER = LAB_VARS["lab_browser_user"]
BROWSER_FLAGS = [
    "--headless", "--disable-gpu", "--no-first-run", "--window-size=1280,1024",
    # Nothing but the page: no update, sync or component checks, which this closed network
    # refuses and which would compete with the page's requests; no QUIC (the PACS speaks TCP).
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-quic",
]


def browser_host() -> str:
    """The one radiologist container with a browser (lab_browser: true in inventories/lab)."""
    found = [name for name, hostvars in hosts_of("lab_radiologists").items() if hostvars.get("lab_browser")]
    assert len(found) == 1, found
    return found[0]


class Page:
    """What the browser showed: the route the container had to the VPN server, Chromium's network
    error for the page ("" when it loaded), the visible text, whether every expected text was
    shown, how many logins it answered and refused, and the screenshot (PNG bytes)."""

    def __init__(self, route: str, shown: dict):
        self.route, self.error, self.text = route, shown["error"], shown["text"]
        self.found, self.logins, self.refused = shown["found"], shown["logins"], shown["refused"]
        self.screenshot = base64.b64decode(shown["screenshot"])

    def __repr__(self) -> str:
        return (f"Page(route={self.route!r}, error={self.error!r}, found={self.found}, logins={self.logins}, "
                f"refused={self.refused}, text={self.text[:300]!r})")


def browse(box: str, user: str, secret: str, expect: list[str], fragment: str = "",
           trust_lab_ca: bool = True, settle: float = 8) -> Page:
    """Orthanc Explorer at https://<VPN server>:<HTTPS port>/app/explorer.html<fragment> in Chromium
    in ``box``, run by its desktop account, which answers the login dialog as ``user``. The lab's CA
    is imported into that account's NSS database (emptied first) unless ``trust_lab_ca`` is false.
    The page is read once every ``expect`` text is visible, or ``settle`` s after it loaded.
    Chromium runs only where the VPN server is reached through a tunnel or not at all: never
    through the container's default route, which leaves the lab."""
    route = host(box).run(f"ip -o route get {VPN_SERVER}")
    if route.rc == 0:
        assert re.search(r" dev tun\d+ ", route.stdout), f"{VPN_SERVER} is routed outside a tunnel: {route.stdout}"
    desk = testinfra.get_host(f"docker://{BROWSER_USER}@{box}")
    home = desk.check_output("getent passwd %s | cut -d: -f6", BROWSER_USER)
    nss = f"sql:{home}/.pki/nssdb"
    desk.check_output(f"rm -rf {home}/.pki/nssdb && mkdir -p {home}/.pki/nssdb && certutil -N -d {nss} --empty-password")
    if trust_lab_ca:
        ca = base64.b64encode(Path(ca_file()).read_bytes()).decode()
        desk.check_output(f"echo {ca} | base64 -d > {home}/lab-ca.crt && "
                          f"certutil -A -d {nss} -n 'orthanc-remote lab CA' -t C,, -i {home}/lab-ca.crt")
    script = base64.b64encode((Path(__file__).parent / "explorer_browser.py").read_bytes()).decode()
    desk.check_output(f"echo {script} | base64 -d > {home}/explorer_browser.py")
    run = desk.check_output(f"mktemp -d {home}/browse.XXXXXX")
    job = {"url": f"https://{VPN_SERVER}:{HTTPS_PORT}/app/explorer.html{fragment}", "user": user,
           "password": secret, "expect": expect, "flags": BROWSER_FLAGS, "profile": f"{run}/profile",
           "settle": settle, "timeout": 60}
    try:
        # The password goes in on stdin: in no command line.
        shown = subprocess.run(
            ["docker", "exec", "-i", "-u", BROWSER_USER, "-w", run, "-e", f"HOME={home}", box,
             "python3", f"{home}/explorer_browser.py"],
            input=json.dumps(job).encode() + b"\n", capture_output=True, timeout=120, check=False)
    finally:
        desk.run(f"rm -rf {run}")
    assert shown.returncode == 0, shown.stderr.decode()[-3000:]
    return Page(route.stdout.strip() or route.stderr.strip(), json.loads(shown.stdout))


def explorer_study() -> tuple[str, str, list[str]]:
    """A stored study: its ID, its Explorer page (URL fragment) and what that page must show, each
    from one of the page's XHRs: the patient's name, the Study and a Series Instance UID."""
    studies = rest_json("/studies")
    assert studies, "test_2 stored studies first"
    study = rest_json(f"/studies/{studies[0]}")
    series = rest_json(f"/series/{study['Series'][0]}")
    return study["ID"], f"#study?uuid={study['ID']}", [
        study["PatientMainDicomTags"]["PatientName"], study["MainDicomTags"]["StudyInstanceUID"],
        series["MainDicomTags"]["SeriesInstanceUID"]]


NGINX_ACCESS_LOG = "/var/log/nginx/orthanc-remote/orthanc-access.log"


def access_log_length() -> int:
    return int(host(PACS_NAME).check_output(f"wc -l < {NGINX_ACCESS_LOG}"))


def access_log_since(length: int) -> list[str]:
    return host(PACS_NAME).check_output(f"tail -n +{length + 1} {NGINX_ACCESS_LOG}").splitlines()
