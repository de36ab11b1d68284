"""Real runs of the role on mol-tls-alt: certificates from a commercial CA (good and bad), renewal.

A test "commercial CA" (root + intermediate) signs the CSR the role handed to the controller.
Each bad certificate must fail the play with a message naming the file and the problem, and leave
the installed certificate byte-for-byte untouched. Then a short-validity certificate is renewed on
the next run while the far-from-expiry one is not touched, and a further run changes nothing.
"""

from __future__ import annotations

import datetime
import re
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import EPHEMERAL, TLS, ok, run_role

ALT_CSR = EPHEMERAL / "artifacts-mol-tls-alt" / "csr" / "https.csr"
WORK = EPHEMERAL / "commercial-ca"
NOW = datetime.datetime.now(datetime.timezone.utc)
RECAP = re.compile(r"mol-tls-alt\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject, public_key, issuer, issuer_key, *, ca=False, sans=None, before=-1, after=365):
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + datetime.timedelta(days=before))
        .not_valid_after(NOW + datetime.timedelta(days=after))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(*certs) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


@pytest.fixture(scope="module")
def pki():
    """Root, intermediate, and the files the IT team would put in the inventory."""
    WORK.mkdir(mode=0o700, exist_ok=True)
    csr = x509.load_pem_x509_csr(ALT_CSR.read_bytes())
    wanted = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    root_key, inter_key, other_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert("Test Commercial Root", root_key.public_key(), "Test Commercial Root", root_key, ca=True, after=3650)
    inter = _cert("Test Commercial Issuing CA", inter_key.public_key(), "Test Commercial Root", root_key, ca=True)
    subject = "alt.tls.test"
    issued = lambda key=csr.public_key(), sans=list(wanted), **kw: _cert(  # noqa: E731
        subject, key, "Test Commercial Issuing CA", inter_key, sans=sans, **kw)
    files = {
        "good.crt": _pem(issued()),
        "chain.pem": _pem(inter, root),
        "root.pem": _pem(root),
        "mismatched-key.crt": _pem(issued(key=other_key.public_key())),
        "expired.crt": _pem(issued(before=-60, after=-1)),
        "missing-san.crt": _pem(issued(sans=[s for s in wanted if not isinstance(s, x509.IPAddress)
                                             or str(s.value) != "10.8.0.1"])),
    }
    for name, content in files.items():
        (WORK / name).write_text(content)
    return WORK


def provided(certificate: Path, chain: Path | None, renew_days: int = 30, **dicom) -> dict:
    """site_certificates for mol-tls-alt: https from the commercial CA, dicom self-signed."""
    https = {"mode": "provided", "certificate": str(certificate)}
    if chain is not None:
        https["chain"] = str(chain)
    return {"site_certificates": {"https": https, "dicom": {"mode": "self_signed", **dicom},
                                  "key_type": "rsa", "renew_days": renew_days}}


def installed(alt) -> str:
    return ok(alt, f"sha256sum {TLS}/https.crt")


@pytest.mark.parametrize(
    "certificate, chain, problem",
    [
        ("mismatched-key.crt", "chain.pem", "key mismatch: the certificate does not match the private key"),
        ("expired.crt", "chain.pem", "expired: the certificate expired on"),
        ("missing-san.crt", "chain.pem", "missing SAN: the certificate lacks IP:10.8.0.1"),
        ("good.crt", "root.pem", "incomplete chain: openssl verify against site_certificates.https.chain"),
    ],
)
def test_bad_provided_certificate_is_refused_and_nothing_installed(alt, pki, certificate, chain, problem):
    before = installed(alt)
    result = run_role("mol-tls-alt", provided(pki / certificate, pki / chain if chain else None))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert f"site_certificates.https.certificate ({pki / certificate}): {problem}" in output, output[-3000:]
    assert "Refused, nothing installed" in output
    assert installed(alt) == before


def test_good_provided_certificate_is_installed_with_its_chain(alt, pki):
    # Also: dicom gets a new SAN (a SAN change reissues it) and only 5 days of validity, so that
    # the next test sees a short-validity certificate that the role must renew.
    global SHORT_SAN  # noqa: PLW0603
    SHORT_SAN = f"r{int(time.time())}.alt.tls.test"
    result = run_role("mol-tls-alt", provided(pki / "good.crt", pki / "chain.pem",
                                              extra_sans=[SHORT_SAN], days=5, renew_days=3))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    ok(alt, f"printf '%s' '{(pki / 'root.pem').read_text()}' > /tmp/commercial-root.pem")
    out = ok(alt, f"openssl verify -CAfile /tmp/commercial-root.pem -untrusted {TLS}/https.crt {TLS}/https.crt")
    assert out.strip() == f"{TLS}/https.crt: OK"
    assert ok(alt, f"openssl x509 -in {TLS}/https.crt -noout -issuer").strip() == "issuer=CN = Test Commercial Issuing CA"
    assert ok(alt, f"stat -c '%a %U %G' {TLS}/https.crt {TLS}/https.key").split("\n")[:2] == [
        "644 root root", "640 root www-data"]
    dicom = ok(alt, f"openssl x509 -in {TLS}/dicom.crt -noout -ext subjectAltName -enddate")
    assert f"DNS:{SHORT_SAN}" in dicom
    assert ok(alt, f"openssl x509 -in {TLS}/dicom.crt -noout -checkend {6 * 86400} || echo short").strip().endswith("short")


def test_short_validity_certificate_renewed_far_one_untouched(alt, pki):
    https_before = installed(alt)
    dicom_serial = ok(alt, f"openssl x509 -in {TLS}/dicom.crt -noout -serial")
    result = run_role("mol-tls-alt", provided(pki / "good.crt", pki / "chain.pem", extra_sans=[SHORT_SAN]))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert ok(alt, f"openssl x509 -in {TLS}/dicom.crt -noout -serial") != dicom_serial
    # Renewed with the default validity (825 days), the SANs kept.
    ok(alt, f"openssl x509 -in {TLS}/dicom.crt -noout -checkend {800 * 86400}")
    assert f"DNS:{SHORT_SAN}" in ok(alt, f"openssl x509 -in {TLS}/dicom.crt -noout -ext subjectAltName")
    assert installed(alt) == https_before
    changed = [line for line in result.stdout.splitlines() if line.startswith("changed:")]
    assert changed and all("mol-tls-alt" in line for line in changed)
    assert any("Self-sign: dicom" in block for block in result.stdout.split("TASK [")
               if "changed: [mol-tls-alt]" in block)
    assert not any(": https" in block.split("]", 1)[0] for block in result.stdout.split("TASK [")
                   if "changed: [mol-tls-alt]" in block)


def test_next_run_changes_nothing(alt, pki):
    result = run_role("mol-tls-alt", provided(pki / "good.crt", pki / "chain.pem", extra_sans=[SHORT_SAN]))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    match = RECAP.search(result.stdout)
    assert match and match.group(1) == "0" and match.group(2) == "0", result.stdout[-2000:]
