"""Certificates of a site: what to issue, when to renew, and why a provided certificate is refused.

Pure functions used by the ``tls_certs`` role (see roles/tls_certs/README.md). They turn the site
facts (``site_pacs_fqdn``, ``site_pacs_addresses``, ``site_vpn``, ``site_certificates``,
``site_modalities``) into the list of certificates to manage with their SANs, decide whether an
installed certificate must be reissued, and word the messages that refuse a bad certificate from
a commercial CA. The ``FilterModule`` at the bottom only exposes them to Jinja.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

MODES = ("internal_ca", "self_signed", "csr", "provided", "acme")
KEY_TYPES = ("ecdsa", "rsa")
CERTIFICATES = ("https", "dicom")
DNS_PATTERN = re.compile(
    r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
PEM_PATTERN = re.compile(r"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.DOTALL)
DEFAULT_DAYS = 825
DEFAULT_RENEW_DAYS = 30


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(str(value))
    except ValueError:
        return False
    return True


def certificate_sans(
    fqdn: str | None,
    addresses: Iterable[str] | None = None,
    tunnel_address: str | None = None,
    extra: Iterable[str] | None = None,
    dns_only: bool = False,
) -> list[str]:
    """The SANs of a server certificate, in community.crypto form (``DNS:name``, ``IP:address``).

    The FQDN first (it is also the CN), then the public addresses, the VPN server's tunnel address
    (``site_vpn | site_vpn_server_address``, None when the VPN is off) and any extra names.
    ``dns_only`` keeps DNS names only (ACME CAs validate names, not private IPs).
    Duplicates are dropped, order is kept.
    """
    values: list[str] = []
    if fqdn:
        values.append(str(fqdn))
    values += [str(a) for a in (addresses or [])]
    if tunnel_address:
        values.append(str(tunnel_address))
    values += [str(e) for e in (extra or [])]
    sans: list[str] = []
    for value in values:
        if _is_ip(value):
            if dns_only:
                continue
            san = "IP:" + str(ipaddress.ip_address(value))
        else:
            san = "DNS:" + value.lower().rstrip(".")
        if san not in sans:
            sans.append(san)
    return sans


def _normalise_san(san: str) -> str:
    kind, _, value = str(san).partition(":")
    kind = kind.strip().upper()
    value = value.strip()
    if kind in ("IP", "IP ADDRESS") and _is_ip(value):
        return "IP:" + str(ipaddress.ip_address(value))
    if kind == "DNS":
        return "DNS:" + value.lower().rstrip(".")
    return f"{kind}:{value}"


def san_diff(actual: Iterable[str] | None, wanted: Iterable[str] | None) -> dict:
    """Compare a certificate's SANs with the wanted ones: ``{missing: [...], extra: [...]}``."""
    have = [_normalise_san(s) for s in (actual or [])]
    want = [_normalise_san(s) for s in (wanted or [])]
    return {
        "missing": [s for s in want if s not in have],
        "extra": [s for s in have if s not in want],
    }


def _parse_asn1_time(value: str) -> datetime:
    return datetime.strptime(str(value), "%Y%m%d%H%M%SZ").replace(tzinfo=timezone.utc)


def renewal_due(not_after: str | None, renew_days: int, now: str) -> bool:
    """True when a certificate expiring at ``not_after`` is within ``renew_days`` of ``now``.

    Both times are ASN.1 UTC strings (``20261231235959Z``, as x509_certificate_info returns them).
    A missing ``not_after`` (no certificate yet) is due.
    """
    if not not_after:
        return True
    return _parse_asn1_time(not_after) - _parse_asn1_time(now) <= timedelta(days=int(renew_days))


def reissue_reasons(
    info: dict | None,
    mode: str,
    sans: Iterable[str],
    key_fingerprint: str | None,
    renew_days: int,
    now: str,
    ca_common_name: str,
) -> list[str]:
    """Why an installed certificate must be issued again; empty when it can stay.

    ``info`` is community.crypto.x509_certificate_info's result (empty or without ``not_after``
    when there is no readable certificate), ``key_fingerprint`` the SHA-256 fingerprint of the
    server key's public key (openssl_privatekey returns it; None in check mode on a fresh host).
    Reasons: missing, renewal window, SANs changed, key changed, mode changed (e.g. a self-signed
    certificate left over after switching to the internal CA or ACME). Modes csr/provided are never
    reissued by the role: the CA's answer is installed as given.
    """
    if mode in ("csr", "provided"):
        return []
    if not info or not info.get("not_after"):
        return ["missing"]
    reasons: list[str] = []
    if renewal_due(info["not_after"], renew_days, now):
        reasons.append("renewal window")
    diff = san_diff(info.get("subject_alt_name") or [], sans)
    if diff["missing"] or diff["extra"]:
        reasons.append("SANs changed")
    have = (info.get("public_key_fingerprints") or {}).get("sha256")
    if key_fingerprint and have and have.lower() != key_fingerprint.lower():
        reasons.append("key changed")
    issuer = info.get("issuer") or {}
    self_signed = issuer == (info.get("subject") or {})
    from_ca = issuer.get("commonName") == ca_common_name
    if (
        (mode == "internal_ca" and not from_ca)
        or (mode == "self_signed" and not self_signed)
        or (mode == "acme" and (self_signed or from_ca))
    ):
        reasons.append("mode changed")
    return reasons


def _settings(certificates: Any, name: str) -> dict:
    value = (certificates or {}).get(name) if isinstance(certificates, dict) else None
    return value if isinstance(value, dict) else {}


def certificate_plan(
    certificates: Any,
    fqdn: str | None,
    addresses: Iterable[str] | None,
    tunnel_address: str | None,
    dicom: dict | None,
    modalities: Iterable[dict] | None,
    tls_dir: str,
    ca_dir: str,
    client_days: int = DEFAULT_DAYS,
) -> list[dict]:
    """Every certificate the role manages on one server, with paths, SANs, key ownership and mode.

    ``https`` always; ``dicom`` only when ``site_dicom.tls``; one client certificate per modality
    with ``tls: true`` (always from the internal CA). Call ``config_errors`` first.
    """
    certificates = certificates if isinstance(certificates, dict) else {}
    key_type = certificates.get("key_type", "ecdsa")
    renew_days = certificates.get("renew_days", DEFAULT_RENEW_DAYS)
    common_name = str(fqdn) if fqdn else str(next(iter(addresses or []), ""))
    plan: list[dict] = []
    names = ["https"] + (["dicom"] if (dicom or {}).get("tls", False) else [])
    for name in names:
        raw = _settings(certificates, name)
        mode = raw.get("mode", "internal_ca")
        plan.append(
            {
                "name": name,
                "kind": "server",
                "mode": "provided" if mode == "csr" and raw.get("certificate") else mode,
                "days": raw.get("days", DEFAULT_DAYS),
                "renew_days": renew_days,
                "key_type": key_type,
                "key_path": f"{tls_dir}/{name}.key",
                "key_group": "www-data" if name == "https" else "orthanc",
                "key_mode": "0640",
                "csr_path": f"{tls_dir}/{name}.csr",
                "cert_path": f"{tls_dir}/{name}.crt",
                "common_name": common_name,
                "sans": certificate_sans(fqdn, addresses, tunnel_address, raw.get("extra_sans"), dns_only=mode == "acme"),
                "extended_key_usage": ["serverAuth"] if name == "https" else ["serverAuth", "clientAuth"],
                "notify": f"tls_certs {name} changed",
                "certificate": raw.get("certificate") or "",
                "chain": raw.get("chain") or "",
                "variable": f"site_certificates.{name}",
            }
        )
    for modality in modalities or []:
        if not modality.get("tls", False):
            continue
        name = modality["name"]
        plan.append(
            {
                "name": f"modality-{name}",
                "kind": "client",
                "modality": name,
                "aet": modality.get("aet", ""),
                "mode": "internal_ca",
                "days": client_days,
                "renew_days": renew_days,
                "key_type": key_type,
                "key_path": f"{ca_dir}/clients/{name}.key",
                "key_group": "root",
                "key_mode": "0600",
                "csr_path": f"{ca_dir}/clients/{name}.csr",
                "cert_path": f"{ca_dir}/clients/{name}.crt",
                "common_name": name,
                "sans": [],
                "extended_key_usage": ["clientAuth"],
                "notify": "tls_certs modality changed",
                "certificate": "",
                "chain": "",
                "variable": f"site_modalities[{name}]",
            }
        )
    return plan


def pem_certificates(text: str | None) -> list[str]:
    """The PEM certificate blocks in ``text``, in order, each ending with a newline."""
    return [block.strip() + "\n" for block in PEM_PATTERN.findall(text or "")]


def is_pem(value: Any) -> bool:
    """True when ``value`` is PEM text rather than a path to a file."""
    return isinstance(value, str) and "-----BEGIN" in value


def missing_file_errors(plan: Iterable[dict] | None) -> list[str]:
    """Provided certificates or chains given as controller paths that do not exist (read on the controller).

    One plain line per missing file, naming the ``site_certificates`` key and the fix.
    """
    errors = []
    for item in plan or []:
        for key, what in (("certificate", "the PEM file the CA returned"), ("chain", "the intermediate certificates")):
            value = item.get(key)
            if value and not is_pem(value) and not os.path.isfile(str(value)):
                errors.append(
                    f"{item.get('variable', 'site_certificates')}.{key}: the file {value} does not exist on the "
                    f"controller; give the path of {what} (or paste the PEM text)"
                )
    return errors


def source_label(value: Any, variable: str) -> str:
    """Name what the IT team gave: ``variable (path)`` or ``variable (inline PEM)``."""
    if not value:
        return f"{variable} (not given)"
    return f"{variable} ({'inline PEM' if is_pem(value) else value})"


def provided_errors(
    label: str,
    info: dict,
    key_fingerprint: str,
    key_path: str,
    wanted_sans: Iterable[str],
    verify_rc: int,
    verify_output: str,
    chain_label: str,
    now: str,
    csr_artifact: str = "",
) -> list[str]:
    """Why a certificate from a commercial CA must not be installed; empty when it is fine.

    ``info`` is community.crypto.x509_certificate_info's result for the certificate, ``key_fingerprint``
    the SHA-256 fingerprint of the server key's public key (openssl_privatekey), ``verify_*`` what
    ``openssl verify -untrusted CHAIN CERT`` returned. Each message names the file and the problem.
    """
    errors: list[str] = []
    if not info or "public_key" not in info:
        return [f"{label}: not a readable PEM certificate"]
    have = (info.get("public_key_fingerprints") or {}).get("sha256") or ""
    if have.lower() != (key_fingerprint or "").lower():
        hint = f"; have the CA sign {csr_artifact}" if csr_artifact else ""
        errors.append(
            f"{label}: key mismatch: the certificate does not match the private key {key_path} "
            f"(it was issued for another key){hint}"
        )
    not_after = info.get("not_after")
    not_before = info.get("not_before")
    if info.get("expired") or (not_after and _parse_asn1_time(not_after) <= _parse_asn1_time(now)):
        errors.append(f"{label}: expired: the certificate expired on {not_after}; ask the CA for a new one")
    elif not_before and _parse_asn1_time(not_before) > _parse_asn1_time(now):
        errors.append(f"{label}: not yet valid: the certificate is valid only from {not_before}")
    missing = san_diff(info.get("subject_alt_name") or [], wanted_sans)["missing"]
    if missing:
        errors.append(
            f"{label}: missing SAN: the certificate lacks {', '.join(missing)} "
            "(from site_pacs_fqdn, site_pacs_addresses, site_vpn and extra_sans); resubmit the CSR"
        )
    if int(verify_rc) != 0:
        reason = next(
            (line.strip() for line in (verify_output or "").splitlines() if "error" in line.lower()),
            (verify_output or "").strip().splitlines()[-1] if (verify_output or "").strip() else "failed",
        )
        errors.append(
            f"{label}: incomplete chain: openssl verify against {chain_label} failed ({reason}); "
            "put every intermediate certificate (and the root if it is not publicly trusted) in the chain"
        )
    return errors


class FilterModule:
    """Expose the certificate helpers to Jinja."""

    def filters(self) -> dict:
        return {
            "tls_certs_sans": certificate_sans,
            "tls_certs_san_diff": san_diff,
            "tls_certs_renewal_due": renewal_due,
            "tls_certs_reissue_reasons": reissue_reasons,
            "tls_certs_plan": certificate_plan,
            "tls_certs_pem_certificates": pem_certificates,
            "tls_certs_is_pem": is_pem,
            "tls_certs_source_label": source_label,
            "tls_certs_provided_errors": provided_errors,
            "tls_certs_missing_file_errors": missing_file_errors,
        }
