#!/usr/bin/python3
"""The server's DICOM self-test for `playbooks/verify.yml` (the orthanc role's tasks/selftest.yml).

From 127.0.0.1, with the calling AE title ``orthanc_verify_aet`` (echo and store only), over the
port's real protocol (TLS with the server's DICOM certificate when the port is TLS-only):
C-ECHO, then C-STORE of one generated test instance; its arrival is checked through Orthanc's REST
API on loopback (SOP Instance UID and pixel data), then the instance is deleted again.

Argument: a JSON object {aet, port, verify_aet, tls, key, cert, ca, http_port, admin_user,
credentials, timeout}. Prints one JSON object {echo, store, arrived, removed}, each
{ok: bool, detail: str}. verify.yml also uses it for the modalities' real paths: `--write PATH`
on a test client writes a test instance to send, `--collect` on the server checks the arrival of
those instances and deletes them (see main()). Python 3 standard library only; calls dcmtk's echoscu and storescu.
Runs as root: it reads the admin's password from Orthanc's credentials file on the server, so no
secret travels on the command line.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
TEST_PATIENT_NAME = "VERIFY^ORTHANC-REMOTE"
TEST_STUDY_DESCRIPTION = "orthanc-remote verify.yml self-test (deleted after the check)"


def new_uid() -> str:
    """A DICOM UID under the UUID-derived root 2.25 (no registered root needed)."""
    return f"2.25.{uuid.uuid4().int}"


def element(group: int, elem: int, vr: str, value: bytes) -> bytes:
    """One data element in explicit VR little endian, padded to an even length."""
    if len(value) % 2:
        value += b"\0" if vr in ("UI", "OB", "OW") else b" "
    if vr in ("OB", "OW", "OF", "SQ", "UT", "UN"):
        return struct.pack("<HH2sHI", group, elem, vr.encode(), 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr.encode(), len(value)) + value


def test_instance(patient_id: str, uids: dict[str, str], pixels: bytes, size: int) -> bytes:
    """A DICOM Part 10 file: one Secondary Capture image, ``size`` x ``size``, 8-bit grey."""
    text = lambda value: value.encode("ascii")  # noqa: E731 (one-line helper)
    dataset = b"".join([
        element(0x0008, 0x0016, "UI", text(SECONDARY_CAPTURE)),
        element(0x0008, 0x0018, "UI", text(uids["sop"])),
        element(0x0008, 0x0060, "CS", b"OT"),
        element(0x0008, 0x0064, "CS", b"WSD"),
        element(0x0008, 0x1030, "LO", text(TEST_STUDY_DESCRIPTION)),
        element(0x0010, 0x0010, "PN", text(TEST_PATIENT_NAME)),
        element(0x0010, 0x0020, "LO", text(patient_id)),
        element(0x0020, 0x000D, "UI", text(uids["study"])),
        element(0x0020, 0x000E, "UI", text(uids["series"])),
        element(0x0020, 0x0013, "IS", b"1"),
        element(0x0028, 0x0002, "US", struct.pack("<H", 1)),
        element(0x0028, 0x0004, "CS", b"MONOCHROME2"),
        element(0x0028, 0x0010, "US", struct.pack("<H", size)),
        element(0x0028, 0x0011, "US", struct.pack("<H", size)),
        element(0x0028, 0x0100, "US", struct.pack("<H", 8)),
        element(0x0028, 0x0101, "US", struct.pack("<H", 8)),
        element(0x0028, 0x0102, "US", struct.pack("<H", 7)),
        element(0x0028, 0x0103, "US", struct.pack("<H", 0)),
        element(0x7FE0, 0x0010, "OB", pixels),
    ])
    meta_body = b"".join([
        element(0x0002, 0x0001, "OB", b"\0\1"),
        element(0x0002, 0x0002, "UI", text(SECONDARY_CAPTURE)),
        element(0x0002, 0x0003, "UI", text(uids["sop"])),
        element(0x0002, 0x0010, "UI", text(EXPLICIT_LITTLE)),
        element(0x0002, 0x0012, "UI", text("2.25.1")),
    ])
    meta = element(0x0002, 0x0000, "UL", struct.pack("<I", len(meta_body))) + meta_body
    return b"\0" * 128 + b"DICM" + meta + dataset


def dcmtk_argv(tool: str, args: dict) -> list[str]:
    """echoscu or storescu from 127.0.0.1 as the verify AE title, TLS like the port."""
    timeout = str(int(args.get("timeout", 15)))
    argv = [tool, "-v", "-to", timeout, "-ta", timeout, "-td", timeout]
    if args.get("tls"):
        argv += ["+tls", args["key"], args["cert"]]
        argv += ["+cf", args["ca"]] if args.get("ca") else ["-ic"]
    return argv + ["-aet", args["verify_aet"], "-aec", args["aet"], "127.0.0.1", str(int(args["port"]))]


def dcmtk_result(code: int, output: str, success: str) -> dict:
    """dcmtk can exit 0 after a failure: judge by its words, keep its error lines as the detail."""
    ok = code == 0 and success in output
    errors = [line.strip() for line in output.splitlines() if line.startswith(("E:", "F:"))]
    return {"ok": ok, "detail": "" if ok else ("; ".join(errors) or output.strip()[-300:] or f"exit {code}")[:400]}


def run(argv: list[str], timeout: int) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        return 127, f"E: {argv[0]} is not installed (Debian package dcmtk)"
    except subprocess.TimeoutExpired:
        return 124, f"E: {argv[0]} did not finish within {timeout} s"
    return done.returncode, done.stdout + done.stderr


def admin_password(path: str, user: str) -> str:
    """The admin's password from Orthanc's credentials file (JSON after `//` comment lines)."""
    with open(path, encoding="utf-8") as handle:
        text = "".join(line for line in handle if not line.lstrip().startswith("//"))
    return json.loads(text)["RegisteredUsers"][user]


class Rest:
    """Orthanc's REST API on loopback, as the site's admin."""

    def __init__(self, port: int, user: str, password: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def call(self, method: str, path: str, body: bytes | None = None) -> bytes:
        request = urllib.request.Request(self.base + path, data=body, method=method,
                                         headers={"Authorization": self.auth})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.read()


def test_pixels(size: int = 16) -> bytes:
    """A small grey ramp: enough to tell the stored pixel data from another instance's."""
    return bytes((x * 7 + y * 13) % 256 for y in range(size) for x in range(size))


def write_instance(path: str) -> dict:
    """Write a new test instance to ``path``; its SOP Instance UID and pixel data hash."""
    uids = {"study": new_uid(), "series": new_uid(), "sop": new_uid()}
    pixels = test_pixels()
    with open(path, "wb") as out:
        out.write(test_instance(f"VERIFY-{uuid.uuid4().hex[:12]}", uids, pixels, 16))
    return {"sop": uids["sop"], "pixels_sha256": hashlib.sha256(pixels).hexdigest()}


def arrival(rest: Rest, sop: str, pixels_sha256: str) -> dict:
    """Whether the instance is in Orthanc with the same pixel data; then delete it again."""
    found = json.loads(rest.call("POST", "/tools/lookup", sop.encode()))
    ids = [item["ID"] for item in found if item.get("Type") == "Instance"]
    if not ids:
        return {"arrived": {"ok": False, "detail": f"SOP Instance UID {sop} is not in Orthanc's index"},
                "removed": {"ok": True, "detail": "nothing was stored"}}
    stored = rest.call("GET", f"/instances/{ids[0]}/frames/0/raw")
    same = hashlib.sha256(stored).hexdigest() == pixels_sha256
    report = {"arrived": {"ok": same, "detail": "" if same else "the stored pixel data differ from what was sent"}}
    for instance in ids:
        rest.call("DELETE", f"/instances/{instance}")
    left = json.loads(rest.call("POST", "/tools/lookup", sop.encode()))
    report["removed"] = {"ok": not left, "detail": "" if not left else f"instance {ids[0]} is still stored"}
    return report


def collect(args: dict, instances: list[dict]) -> dict:
    """:func:`arrival` of each instance, by SOP Instance UID (a REST failure is each one's detail)."""
    try:
        rest = Rest(int(args["http_port"]), args["admin_user"], admin_password(args["credentials"], args["admin_user"]))
        return {item["sop"]: arrival(rest, item["sop"], item["pixels_sha256"]) for item in instances}
    except (OSError, KeyError, ValueError, urllib.error.URLError) as exc:
        detail = {"ok": False, "detail": f"REST on 127.0.0.1:{args.get('http_port')} as {args.get('admin_user')}: {exc}"[:400]}
        return {item["sop"]: {"arrived": detail, "removed": detail} for item in instances}


def selftest(args: dict) -> dict:
    """C-ECHO, C-STORE of a generated instance, its arrival through REST, its deletion."""
    timeout = int(args.get("timeout", 15)) * 3 + 10
    report = {"echo": dcmtk_result(*run(dcmtk_argv("echoscu", args), timeout), "Received Echo Response (Success)")}
    handle, path = tempfile.mkstemp(prefix="orthanc-remote-verify-", suffix=".dcm")
    os.close(handle)
    try:
        sent = write_instance(path)
        report["store"] = dcmtk_result(*run(dcmtk_argv("storescu", args) + [path], timeout),
                                       "Received Store Response (Success)")
    finally:
        os.unlink(path)
    report.update(collect(args, [sent])[sent["sop"]])
    return report


def main(argv: list[str]) -> int:
    """``ARGS_JSON``: the self-test. ``--write PATH``: a test instance for a modality's client.
    ``--collect ARGS_JSON INSTANCES_JSON``: the arrival (then deletion) of the clients' instances."""
    if argv[:1] == ["--write"]:
        result = write_instance(argv[1])
    elif argv[:1] == ["--collect"]:
        result = collect(json.loads(argv[1]), json.loads(argv[2]))
    else:
        result = selftest(json.loads(argv[0]))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
