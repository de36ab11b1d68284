"""orthanc-remote request policy: who may call which REST endpoint of Orthanc.

Plain Python (no ``orthanc`` import), so pytest tests it without Orthanc. The glue script
``orthanc_remote_filter.py`` feeds it what Orthanc's IncomingHttpRequestFilter receives.

Orthanc verifies the Basic credentials BEFORE calling the filter (a wrong password gives 401 and
the filter is never called), so the user name decoded from the Authorization header here is
already authenticated. Roles:

- ``admin``: everything.
- ``viewer``: read only: GET, plus the POST endpoints Orthanc Explorer needs to search.
- ``uploader``: what a viewer may do, plus storing new instances (POST /instances); never
  DELETE, PUT or any other POST (modify, anonymize, send, jobs, tools).

Anything else (no user, a user without a role, an unknown role, a method or path not listed) is
refused: the policy fails closed.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Iterable, Mapping

ROLES = ("admin", "viewer", "uploader")
READ_METHODS = frozenset({"GET"})
# POST endpoints that only read. Orthanc Explorer 1.10.1 searches with POST /tools/find
# (explorer.js); /tools/lookup maps an identifier to resources and changes nothing.
SEARCH_POSTS = frozenset({"/tools/find", "/tools/lookup"})
UPLOAD_POSTS = frozenset({"/instances"})
DEFAULT_TRUSTED_PROXIES = ("127.0.0.1/32", "::1/128")


def normalise_uri(uri: str) -> str:
    """Path without query string, duplicate slashes or a trailing slash ("/" stays "/")."""
    path = (uri or "/").split("?", 1)[0]
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts)


def username_from_headers(headers: Mapping[str, str] | None) -> str | None:
    """The user name of an HTTP Basic ``Authorization`` header, or None.

    Orthanc passes header names in lowercase; a missing, non-Basic or undecodable header
    gives None.
    """
    if not headers:
        return None
    value = None
    for key, val in headers.items():
        if key.lower() == "authorization":
            value = val
            break
    if not value or not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, sep, _ = decoded.partition(":")
    if not sep or not user:
        return None
    return user


def _in_networks(address: str, networks: Iterable[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for network in networks:
        try:
            if ip in ipaddress.ip_network(network, strict=False):
                return True
        except ValueError:
            continue
    return False


def client_ip(
    peer_ip: str,
    headers: Mapping[str, str] | None,
    trusted_proxies: Iterable[str] = DEFAULT_TRUSTED_PROXIES,
) -> str:
    """The real client address.

    ``X-Forwarded-For`` is believed only when the peer is a trusted proxy (nginx on loopback);
    nginx overwrites the header with ``$remote_addr``, so its last entry is the client. From any
    other peer the header is ignored (a client cannot choose its own address).
    """
    if not _in_networks(peer_ip, trusted_proxies):
        return peer_ip
    forwarded = None
    for key, val in (headers or {}).items():
        if key.lower() == "x-forwarded-for":
            forwarded = val
            break
    if not forwarded:
        return peer_ip
    last = forwarded.split(",")[-1].strip()
    try:
        ipaddress.ip_address(last)
    except ValueError:
        return peer_ip
    return last


def role_allows(role: str | None, method: str, uri: str) -> bool:
    """Whether ``role`` may call ``method`` on ``uri`` (pure role table, no address check)."""
    method = (method or "").upper()
    path = normalise_uri(uri)
    if role == "admin":
        return True
    if role not in ("viewer", "uploader"):
        return False
    if method in READ_METHODS:
        return True
    if method == "POST" and path in SEARCH_POSTS:
        return True
    if role == "uploader" and method == "POST" and path in UPLOAD_POSTS:
        return True
    return False


def decide(
    method: str,
    uri: str,
    peer_ip: str,
    headers: Mapping[str, str] | None,
    roles: Mapping[str, str],
    allowed_sources: Iterable[str] | None = None,
    trusted_proxies: Iterable[str] = DEFAULT_TRUSTED_PROXIES,
) -> tuple[bool, str]:
    """Decide one request; return ``(allowed, reason)``.

    ``roles`` maps user name to role. ``allowed_sources`` (CIDRs) restricts the real client
    address (after X-Forwarded-For from a trusted proxy); loopback clients (the server itself)
    are always allowed. None disables the address check.
    """
    ip = client_ip(peer_ip, headers, trusted_proxies)
    if allowed_sources is not None and not _in_networks(ip, ("127.0.0.0/8", "::1/128")):
        if not _in_networks(ip, allowed_sources):
            return False, f"source {ip} is not in the allow-list"
    user = username_from_headers(headers)
    if user is None:
        return False, f"no authenticated user (from {ip})"
    role = roles.get(user)
    if role not in ROLES:
        return False, f"user {user!r} has no role (from {ip})"
    if role_allows(role, method, uri):
        return True, f"user {user!r} ({role}) from {ip}"
    return False, f"user {user!r} ({role}) may not {method.upper()} {normalise_uri(uri)} (from {ip})"
