"""orthanc-remote request policy: who may call which REST endpoint of Orthanc.

Plain Python (no ``orthanc`` import), so pytest tests it without Orthanc. The glue script
``orthanc_remote_filter.py`` feeds it what Orthanc's IncomingHttpRequestFilter receives.

The policy is ONE declared table, ``POLICY``: rows of (role, method, route pattern, allow, why).
For a request, the first row of the user's role whose method and pattern match decides; no
matching row means refused. The request filter, the role README's permissions table
(``python3 orthanc_remote_policy.py --markdown``, checked by tests/test_orthanc_policy.py) and the
tests all read this table.

Route patterns are matched segment by segment against the URI Orthanc passes to the filter
(already URL-decoded, without the query string): ``*`` is exactly one segment, ``a|b`` one of
these literal segments, ``name*`` a segment starting with ``name``, and a final ``**`` any number
of segments (also none). Method ``*`` is any of GET, POST, PUT, DELETE.

Before the table, a request is refused (fail closed) when:

- Orthanc's effective configuration does not enforce authentication (``configuration_errors``):
  the user name in the Authorization header would then not have been checked;
- the URI is not plain printable ASCII, holds ``%``, a backslash or a ``.``/``..`` segment;
- it asks for a method override (``X-HTTP-Method-Override`` header, or ``?_method=`` when
  orthanc-python passes the GET arguments; 4.0 does not, so nginx refuses ``?_method=``): Orthanc
  honours both, and Orthanc Explorer uses neither;
- the method is not GET, POST, PUT or DELETE (Orthanc passes WebDAV PROPFIND as GET: nginx
  refuses other methods before they reach Orthanc);
- the real client address is outside the allow-list, or the user has no known role.

Orthanc verifies the Basic credentials BEFORE calling the filter (a wrong password gives 401 and
the filter is never called), so the user name decoded from the Authorization header is already
authenticated, provided authentication is on (checked above).

Nothing from the request reaches a log line unescaped: ``log_safe`` turns control characters
(a ``%0A`` arrives here as a real newline) and non-ASCII into ``\\xNN`` escapes.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import sys
from typing import Iterable, Mapping, NamedTuple

ROLES = ("admin", "viewer", "uploader")
METHODS = ("GET", "POST", "PUT", "DELETE")
DEFAULT_TRUSTED_PROXIES = ("127.0.0.1/32", "::1/128")
LOG_LIMIT = 200


class Rule(NamedTuple):
    """One row of the policy table."""

    role: str
    method: str
    pattern: str
    allow: bool
    why: str


# First matching row of the user's role decides; no row means refused.
POLICY: tuple[Rule, ...] = (
    # --- uploader: a machine credential (gateways, scripts): it only stores. ----------------------
    Rule("uploader", "POST", "/instances", True, "store a DICOM instance (or a ZIP of instances)"),
    # --- viewer: what Orthanc Explorer 1.10.1 (explorer.js) needs to search, view and download. ----
    Rule("viewer", "GET", "/", True, "redirects to Orthanc Explorer"),
    Rule("viewer", "GET", "/app/**", True, "Orthanc Explorer's pages, scripts and images"),
    Rule("viewer", "GET", "/plugins/explorer.js", True, "plugins' Explorer extensions, loaded by every page"),
    Rule("viewer", "GET", "/system", True, "every Explorer page reads the server's Name and security warning"),
    Rule("viewer", "POST", "/tools/find", True, "search (Lookup page)"),
    Rule("viewer", "GET", "/patients|studies", True, "All patients / All studies lists"),
    Rule("viewer", "GET", "/patients|studies|series|instances/*", True, "a patient, study, series or instance"),
    Rule("viewer", "GET", "/patients/*/studies", True, "a patient's studies"),
    Rule("viewer", "GET", "/studies/*/series", True, "a study's series"),
    Rule("viewer", "GET", "/series/*/instances", True, "a series' instances"),
    Rule("viewer", "GET", "/patients/*/protected", True, "shows whether a patient is protected"),
    Rule("viewer", "GET", "/patients|studies|series|instances/*/attachments", True, "lists attachments"),
    Rule("viewer", "GET", "/patients|studies|series|instances/*/attachments/*/data", True, "downloads an attachment"),
    Rule("viewer", "GET", "/instances/*/tags|header|metadata", True, "an instance's tags, header and metadata"),
    Rule("viewer", "GET", "/instances/*/file|pdf", True, "downloads the DICOM file, or its embedded PDF"),
    Rule("viewer", "GET", "/instances/*/frames|preview", True, "an instance's frames and preview image"),
    Rule("viewer", "GET", "/instances/*/frames/*/preview", True, "one frame's preview image"),
    Rule("viewer", "GET", "/patients|studies|series/*/archive|media", True, "downloads a ZIP or DICOMDIR ZIP"),
    # --- admin: everything except writing files on the server, log levels and running code. -------
    Rule("admin", "*", "/tools/execute-script", False, "runs Lua code on the server"),
    Rule("admin", "*", "/instances/*/export", False, "writes a file on the server's file system"),
    Rule("admin", "*", "/tools/log-level*", False, "log levels (trace-level HTTP logs record passwords)"),
    Rule("admin", "*", "/**", True, "everything else"),
)


def _segments(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


def _segment_matches(pattern: str, segment: str) -> bool:
    if pattern == "*":
        return bool(segment)
    if "|" in pattern:
        return segment in pattern.split("|")
    if pattern.endswith("*"):
        return segment.startswith(pattern[:-1])
    return segment == pattern


def pattern_matches(pattern: str, path: str) -> bool:
    """Whether a route ``pattern`` of the table matches ``path`` (see the module docstring)."""
    wanted = _segments(pattern)
    parts = _segments(path)
    if wanted and wanted[-1] == "**":
        wanted = wanted[:-1]
        if len(parts) < len(wanted):
            return False
        parts = parts[: len(wanted)]
    elif len(parts) != len(wanted):
        return False
    return all(_segment_matches(p, s) for p, s in zip(wanted, parts))


def matching_rule(role: str | None, method: str, path: str, table: Iterable[Rule] = POLICY) -> Rule | None:
    """The first row of ``table`` for ``role`` that matches ``method`` and ``path``, or None."""
    method = (method or "").upper()
    if method not in METHODS:
        return None
    for rule in table:
        if rule.role == role and rule.method in ("*", method) and pattern_matches(rule.pattern, path):
            return rule
    return None


def role_allows(role: str | None, method: str, uri: str, table: Iterable[Rule] = POLICY) -> bool:
    """Whether ``role`` may call ``method`` on ``uri`` (the table alone, after the URI check)."""
    if uri_error(uri):
        return False
    rule = matching_rule(role, method, normalise_uri(uri), table)
    return bool(rule and rule.allow)


def normalise_uri(uri: str) -> str:
    """Path without query string, duplicate slashes or a trailing slash ("/" stays "/")."""
    path = (uri or "/").split("?", 1)[0]
    return "/" + "/".join(_segments(path))


def uri_error(uri: str) -> str | None:
    """Why ``uri`` is refused before the table (fail closed), or None.

    Orthanc gives the filter the decoded path: ``%2F`` is already ``/`` (Orthanc routes the same
    decoded path), ``%0A`` a newline. Only printable ASCII without ``%`` and backslash passes, and
    no ``.`` or ``..`` segment.
    """
    if not isinstance(uri, str) or not uri.startswith("/"):
        return "the path does not start with /"
    path = uri.split("?", 1)[0]
    for char in path:
        if not 0x21 <= ord(char) <= 0x7E:
            return "the path holds a control, space or non-ASCII character"
        if char in "%\\":
            return "the path holds '%' or a backslash"
    if any(part in (".", "..") for part in path.split("/")):
        return "the path holds a '.' or '..' segment"
    return None


def override_error(headers: Mapping[str, str] | None, get: Mapping[str, str] | None) -> str | None:
    """Why a request asking for an HTTP method override is refused, or None."""
    for key in (headers or {}):
        if str(key).lower() == "x-http-method-override":
            return "method override (X-HTTP-Method-Override) is refused"
    for key in (get or {}):
        if str(key) == "_method":
            return "method override (?_method=) is refused"
    return None


def configuration_errors(config: Mapping | None) -> list[str]:
    """Why Orthanc's effective configuration makes the role check meaningless (refuse all).

    With authentication off, Orthanc does not check the Authorization header, so any user name
    in it would be believed. ``config`` is ``orthanc.GetConfiguration()`` parsed.
    """
    config = config or {}
    errors = []
    if config.get("AuthenticationEnabled") is not True:
        errors.append("AuthenticationEnabled is not true in Orthanc's configuration")
    if not isinstance(config.get("RegisteredUsers"), dict) or not config.get("RegisteredUsers"):
        errors.append("RegisteredUsers is empty (Orthanc would create orthanc:orthanc)")
    return errors


def log_safe(text: object, limit: int = LOG_LIMIT) -> str:
    """``text`` fit for one log line: printable ASCII kept, anything else as ``\\xNN``/``\\uNNNN``.

    Applying it twice changes nothing more (escapes are printable), so a reason built from
    escaped parts can be escaped again when the line is written.
    """
    result = []
    for char in str(text):
        code = ord(char)
        if 0x20 <= code <= 0x7E:
            result.append(char)
        elif code <= 0xFF:
            result.append(f"\\x{code:02x}")
        else:
            result.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    line = "".join(result)
    return line if len(line) <= limit else line[:limit] + "..."


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


def decide(
    method: str,
    uri: str,
    peer_ip: str,
    headers: Mapping[str, str] | None,
    roles: Mapping[str, str],
    allowed_sources: Iterable[str] | None = None,
    trusted_proxies: Iterable[str] = DEFAULT_TRUSTED_PROXIES,
    get: Mapping[str, str] | None = None,
    table: Iterable[Rule] = POLICY,
) -> tuple[bool, str]:
    """Decide one request; return ``(allowed, reason)``. ``reason`` is already log-safe.

    ``roles`` maps user name to role. ``allowed_sources`` (CIDRs) restricts the real client
    address (after X-Forwarded-For from a trusted proxy); loopback clients (the server itself)
    are always allowed. None disables the address check. ``get`` holds the GET arguments.
    """
    ip = log_safe(client_ip(peer_ip, headers, trusted_proxies), 64)
    method = (method or "").upper()
    if allowed_sources is not None and not _in_networks(ip, ("127.0.0.0/8", "::1/128")):
        if not _in_networks(ip, allowed_sources):
            return False, f"source {ip} is not in the allow-list"
    user = username_from_headers(headers)
    if user is None:
        return False, f"no authenticated user (from {ip})"
    shown = log_safe(user, 64)
    role = roles.get(user)
    if role not in ROLES:
        return False, f"user '{shown}' has no role (from {ip})"
    why = uri_error(uri) or override_error(headers, get)
    if method not in METHODS:
        why = why or f"method {log_safe(method, 16)} is not GET, POST, PUT or DELETE"
    path = log_safe(normalise_uri(uri) if not why else uri)
    if why:
        return False, f"user '{shown}' ({role}) {method} {path}: {why} (from {ip})"
    rule = matching_rule(role, method, normalise_uri(uri), table)
    if rule and rule.allow:
        return True, f"user '{shown}' ({role}) from {ip}"
    return False, f"user '{shown}' ({role}) may not {method} {path} (from {ip})"


def refusal_line(reason: str) -> str:
    """The log line of a refused request (one line whatever the request held)."""
    return "orthanc-remote: refused: " + log_safe(reason, 2 * LOG_LIMIT)


def markdown_table(table: Iterable[Rule] = POLICY) -> str:
    """The policy as the Markdown table of the role README (between its policy markers)."""
    lines = ["| role | method | route | | why |", "|---|---|---|---|---|"]
    for rule in table:
        pattern = rule.pattern.replace("|", "\\|")
        lines.append(
            f"| {rule.role} | {rule.method} | `{pattern}` | {'allow' if rule.allow else 'refuse'} | {rule.why} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--markdown"]:
        sys.stdout.write(markdown_table())
    else:
        sys.stderr.write("usage: orthanc_remote_policy.py --markdown\n")
        sys.exit(2)
