"""roles/orthanc/files/orthanc_remote_selftest.py: the test instance is well-formed DICOM Part 10
(walked element by element here; dcmtk reads it in the whole-site scenario) and dcmtk is called
with the port's protocol."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "roles" / "orthanc" / "files"))
import orthanc_remote_selftest as selftest  # noqa: E402

LONG_VRS = {b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"}


def walk(data: bytes, start: int) -> dict[tuple[int, int], bytes]:
    """Explicit VR little endian elements from ``start`` to the end: {(group, element): value}."""
    found, at = {}, start
    while at < len(data):
        group, elem, vr = struct.unpack_from("<HH2s", data, at)
        if vr in LONG_VRS:
            (length,) = struct.unpack_from("<I", data, at + 8)
            at += 12
        else:
            (length,) = struct.unpack_from("<H", data, at + 6)
            at += 8
        assert length % 2 == 0, (hex(group), hex(elem))
        found[(group, elem)] = data[at:at + length]
        at += length
    assert at == len(data)
    return found


def test_the_test_instance_is_part_10_with_its_uids_and_pixels(tmp_path):
    path = tmp_path / "verify.dcm"
    sent = selftest.write_instance(str(path))
    data = path.read_bytes()
    assert data[:128] == b"\0" * 128 and data[128:132] == b"DICM"
    elements = walk(data, 132)
    (meta_length,) = struct.unpack("<I", elements[(0x0002, 0x0000)])
    assert sum(8 + len(v) + (4 if (g, e) == (0x0002, 0x0001) else 0) for (g, e), v in elements.items()
               if g == 2 and e != 0) == meta_length
    sop = elements[(0x0008, 0x0018)].rstrip(b"\0").decode()
    assert sop == sent["sop"] == elements[(0x0002, 0x0003)].rstrip(b"\0").decode() and sop.startswith("2.25.")
    assert len(sop) <= 64
    assert elements[(0x0010, 0x0010)].strip() == selftest.TEST_PATIENT_NAME.encode()
    assert len(elements[(0x7FE0, 0x0010)]) == 16 * 16
    import hashlib
    assert hashlib.sha256(elements[(0x7FE0, 0x0010)]).hexdigest() == sent["pixels_sha256"]


def test_every_run_writes_new_uids(tmp_path):
    first = selftest.write_instance(str(tmp_path / "a.dcm"))
    second = selftest.write_instance(str(tmp_path / "b.dcm"))
    assert first["sop"] != second["sop"]


def test_dcmtk_speaks_tls_when_the_port_does():
    plain = {"aet": "PACS", "port": 4242, "verify_aet": "VERIFY", "tls": False}
    assert selftest.dcmtk_argv("storescu", plain)[-6:] == ["-aet", "VERIFY", "-aec", "PACS", "127.0.0.1", "4242"]
    assert "+tls" not in selftest.dcmtk_argv("storescu", plain)
    tls = dict(plain, tls=True, key="/k", cert="/c", ca="/ca")
    argv = selftest.dcmtk_argv("echoscu", tls)
    assert argv[argv.index("+tls"):argv.index("+tls") + 5] == ["+tls", "/k", "/c", "+cf", "/ca"]
    assert "-ic" in selftest.dcmtk_argv("echoscu", dict(tls, ca=""))


def test_dcmtk_is_judged_by_its_words():
    assert selftest.dcmtk_result(0, "I: Received Store Response (Success)", "Received Store Response (Success)")["ok"]
    failed = selftest.dcmtk_result(0, "E: Store Failed, file: x\nE: 0006:0317 Peer aborted", "Received Store Response (Success)")
    assert not failed["ok"] and "Peer aborted" in failed["detail"]


def test_the_admin_password_is_read_from_orthancs_credentials_file(tmp_path):
    path = tmp_path / "credentials.json"
    path.write_text('// Ansible managed\n{"RegisteredUsers": {"admin": "s3cret-Pass-word"}}\n')
    assert selftest.admin_password(str(path), "admin") == "s3cret-Pass-word"
