"""The expected answers of the REST policy, written independently of the policy table.

Each case is (role, method, path, allowed). Paths may hold placeholders the lab suite fills with
real Orthanc IDs: {patient}, {study}, {series}, {instance} (stored test data) and {missing} (an ID
that does not exist, so an allowed destructive request changes nothing). The unit tests check
every case against ``orthanc_remote_policy.POLICY`` and that every row of the table is the only
one allowing at least one case (so removing any row makes a case fail); the orthanc molecule
scenario sends every case with real curl through nginx and compares Orthanc's answer.

Cases come from Orthanc Explorer 1.10.1 (explorer.js: what a viewer needs to search, view and
download) and from issue 10 (what an uploader or a viewer must not reach, what even an admin must
not do), plus neighbours of each allowed route.
"""

from __future__ import annotations

from typing import NamedTuple


class Case(NamedTuple):
    role: str
    method: str
    path: str
    allowed: bool


_EXPLORER_READS = (
    "/",
    "/app/explorer.html",
    "/app/libs/jquery.min.js",
    "/plugins/explorer.js",
    "/system",
    "/patients",
    "/studies",
    "/patients/{patient}",
    "/studies/{study}",
    "/series/{series}",
    "/instances/{instance}",
    "/patients/{patient}/studies",
    "/studies/{study}/series",
    "/series/{series}/instances",
    "/patients/{patient}/protected",
    "/studies/{study}/attachments",
    "/instances/{instance}/attachments/dicom/data",
    "/instances/{instance}/tags",
    "/instances/{instance}/header",
    "/instances/{instance}/metadata",
    "/instances/{instance}/file",
    "/instances/{instance}/pdf",
    "/instances/{instance}/frames",
    "/instances/{instance}/preview",
    "/instances/{instance}/frames/0/preview",
    "/studies/{study}/archive",
    "/series/{series}/media",
)

# Reads that reveal or concern the server's configuration, or that Explorer does not use.
_CONFIG_READS = (
    "/modalities",
    "/modalities/{missing}",
    "/peers",
    "/jobs",
    "/queries",
    "/changes",
    "/exports",
    "/tools/log-level",
    "/tools/log-level-http",
    "/tools/metrics",
    "/tools/metrics-prometheus",
    "/statistics",
    "/plugins",
    "/plugins/python",
    "/tools/now",
    "/instances",
    "/series",
    "/patients/{patient}/statistics",
    "/instances/{instance}/simplified-tags",
    "/instances/{instance}/content/0010-0010",
    "/studies/{study}/instances",
    "/system/x",
)

_WRITES = (
    ("POST", "/instances"),
    ("DELETE", "/patients/{missing}"),
    ("DELETE", "/instances/{missing}"),
    ("PUT", "/patients/{missing}/protected"),
    ("POST", "/patients/{missing}/anonymize"),
    ("POST", "/studies/{missing}/modify"),
    ("POST", "/modalities/{missing}/store"),
    ("PUT", "/modalities/{missing}"),
    ("POST", "/jobs/{missing}/cancel"),
    ("POST", "/tools/lookup"),
    ("POST", "/tools/create-archive"),
    ("POST", "/tools/findx"),
    ("PUT", "/tools/metrics"),
    ("DELETE", "/changes"),
)

# What no role may do: run code, write files on the server, change log levels.
_FORBIDDEN = (
    ("POST", "/tools/execute-script"),
    ("POST", "/instances/{instance}/export"),
    ("PUT", "/tools/log-level"),
    ("PUT", "/tools/log-level-http"),
    ("PUT", "/tools/log-level-plugins"),
    ("GET", "/tools/log-level-http"),
)

# Admin routes that must still work (each also a neighbour of a refused one).
_ADMIN = (
    ("GET", "/modalities"),
    ("GET", "/jobs"),
    ("GET", "/tools/metrics"),
    ("GET", "/statistics"),
    ("GET", "/instances/{instance}"),
    ("GET", "/instances/{instance}/file"),
    ("POST", "/tools/find"),
    ("POST", "/tools/lookup"),
    ("POST", "/instances"),
    ("DELETE", "/patients/{missing}"),
    ("PUT", "/patients/{missing}/protected"),
    ("POST", "/instances/{missing}/modify"),
    ("POST", "/tools/execute-scripts"),
    ("GET", "/tools/log"),
)


def _cases() -> list[Case]:
    cases: list[Case] = []
    for path in _EXPLORER_READS:
        cases.append(Case("viewer", "GET", path, True))
        cases.append(Case("uploader", "GET", path, False))
        cases.append(Case("admin", "GET", path, True))
    cases.append(Case("viewer", "POST", "/tools/find", True))
    cases.append(Case("uploader", "POST", "/tools/find", False))
    cases.append(Case("uploader", "POST", "/instances", True))
    for path in _CONFIG_READS:
        cases.append(Case("viewer", "GET", path, False))
        cases.append(Case("uploader", "GET", path, False))
    for method, path in _WRITES:
        cases.append(Case("viewer", method, path, False))
        if (method, path) != ("POST", "/instances"):
            cases.append(Case("uploader", method, path, False))
    for method, path in _FORBIDDEN:
        for role in ("admin", "viewer", "uploader"):
            cases.append(Case(role, method, path, False))
    for method, path in _ADMIN:
        cases.append(Case("admin", method, path, True))
    # A viewer may not write through an Explorer read route.
    for path in ("/patients/{missing}", "/studies/{missing}/archive", "/instances/{missing}/file"):
        for method in ("POST", "PUT", "DELETE"):
            cases.append(Case("viewer", method, path, False))
    return cases


CASES: tuple[Case, ...] = tuple(_cases())
