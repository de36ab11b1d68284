"""Inventory -> Orthanc configuration for the orthanc role.

Pure functions that turn the role's structured variables (AE title, ports, timeouts, modalities,
users) into the JSON documents Orthanc 1.10.1 reads, with only keys Orthanc really knows. The ``FilterModule`` at the bottom only exposes them to Jinja.

Orthanc silently ignores keys it does not know; the keys in ``INVENTED_KEYS`` come from a widely
copied article and do nothing (see shared/facts/orthanc.md), so ``orthanc_invented_keys`` lets the
role (and its tests) prove none of them is ever rendered.
"""

from __future__ import annotations

from typing import Any

# The rules about site facts (AE titles, ports, modalities, users, passwords) live in
# site_model.py, the one validator; the role runs it on its own view of the facts first
# (roles/orthanc/vars/main.yml: __orthanc_input_errors). This file checks only the settings
# that are the role's own (timeouts, directories, TLS paths, overrides).
COMMANDS = ("echo", "store", "find", "move", "get")
ROLES = ("admin", "viewer", "uploader")
# Keys from the seed article that Orthanc 1.10.1 does not know (silently ignored).
INVENTED_KEYS = (
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
# Keys that live in another file of /etc/orthanc: a key defined in two files is fatal.
RESERVED_KEYS = ("RegisteredUsers", "PythonScript", "PythonVerbose", "ServeFolders", "Worklists", "OrthancRemoteFilter")
# Keys the role sets to enforce a control: an override would switch it off or route around it.
WEAKENING_KEYS = {
    "AuthenticationEnabled": "with authentication off Orthanc believes any user name in the Authorization header",
    "RemoteAccessAllowed": "Orthanc's HTTP port must stay local (nginx terminates HTTPS in front)",
    "HttpPort": "the loopback guard and nginx use orthanc_http_port: set that variable instead",
    "SslEnabled": "Orthanc's own HTTPS crashes on Debian 12: nginx terminates HTTPS",
    "ExecuteLuaEnabled": "it lets /tools/execute-script run code on the server",
    "LuaScripts": "Lua scripts run code inside Orthanc and can replace the request filter's decisions",
    "Plugins": "plugins run code inside Orthanc: use orthanc_extra_plugins (Debian packages)",
    "WebDavEnabled": "WebDAV exposes the stored studies outside the REST policy",
    "WebDavDeleteAllowed": "WebDAV exposes the stored studies outside the REST policy",
    "WebDavUploadAllowed": "WebDAV exposes the stored studies outside the REST policy",
    "RestApiWriteToFileSystemEnabled": "it lets POST /instances/{id}/export write files on the server",
    "OverwriteInstances": "it lets any sender replace studies already stored",
    "DicomAlwaysAllowEcho": "only the listed modalities may associate (site_modalities.allow)",
    "DicomAlwaysAllowStore": "only the listed modalities may store (site_modalities.allow)",
    "DicomAlwaysAllowFind": "only the listed modalities may query (site_modalities.allow)",
    "DicomAlwaysAllowFindWorklist": "only the listed modalities may query (site_modalities.allow)",
    "DicomAlwaysAllowGet": "only the listed modalities may retrieve (site_modalities.allow)",
    "DicomAlwaysAllowMove": "only the listed modalities may retrieve (site_modalities.allow)",
    "DicomCheckModalityHost": "a modality's AE title must come from its own address",
    "DicomCheckCalledAet": "modalities must call Orthanc's own AE title",
    "StrictAetComparison": "AE titles are compared with their case",
    "UnknownSopClassAccepted": "only known SOP classes are stored",
    "DicomModalities": "modalities come from orthanc_modalities (site_modalities) only",
    "DicomModalitiesInDatabase": "modalities come from orthanc_modalities (site_modalities) only",
    "OrthancPeers": "Orthanc peers would receive studies outside the site model",
    "OrthancPeersInDatabase": "Orthanc peers would receive studies outside the site model",
    "DicomTlsEnabled": "DICOM TLS follows site_dicom.tls",
    "DicomTlsRemoteCertificateRequired": "DICOM TLS clients must present a trusted certificate",
    "HttpsVerifyPeers": "outgoing HTTPS must verify certificates",
    "LimitFindResults": "set orthanc_limit_find_results instead",
    "LimitFindInstances": "set orthanc_limit_find_instances instead",
}
# Keys refused unless 0 (their default): any other value recycles, i.e. deletes, old patients.
RECYCLING_KEYS = ("MaximumStorageSize", "MaximumPatientCount")
COMMAND_KEYS = {
    "echo": "AllowEcho",
    "store": "AllowStore",
    "find": "AllowFind",
    "move": "AllowMove",
    "get": "AllowGet",
}


def _positive_int_error(value: Any, variable: str, minimum: int = 1) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return f"{variable}: {value!r} is not a whole number >= {minimum}; write one without quotes"
    return None


def settings_errors(settings: dict) -> list[str]:
    """Check the role's own Orthanc settings (see ``main_config`` for the keys).

    The AE titles, the DICOM port, the modalities and their clashes with ``http_port`` and
    ``selfcheck_aet`` are site facts: ``site_model_errors`` checks them.
    """
    errors: list[str] = []
    http_port = settings.get("http_port")
    if isinstance(http_port, bool) or not isinstance(http_port, int) or not 1 <= http_port <= 65535:
        errors.append(f"orthanc_http_port: {http_port!r} is not a port number; use a whole number from 1 to 65535")
    for key, minimum in (
        ("dicom_scp_timeout", 1),
        ("dicom_scu_timeout", 1),
        ("limit_find_results", 1),
        ("limit_find_instances", 1),
        ("dicom_threads_count", 1),
    ):
        check = _positive_int_error(settings.get(key), f"orthanc_{key}", minimum)
        if check:
            errors.append(check)
    for key in ("storage_directory", "index_directory"):
        value = settings.get(key)
        if not isinstance(value, str) or not value.startswith("/") or value.rstrip("/") in ("", "/etc/orthanc"):
            errors.append(f"orthanc_{key}: {value!r} must be an absolute directory outside /etc/orthanc")
    tls = settings.get("dicom_tls") or {}
    if tls.get("enabled"):
        for key in ("certificate", "private_key", "trusted_certificates"):
            if not isinstance(tls.get(key), str) or not tls[key].startswith("/"):
                errors.append(f"orthanc_dicom_tls_{key}: an absolute path is required when DICOM TLS is on; "
                                  "give an absolute path, or an absolute site_tls_dir")
    errors += config_override_errors(settings.get("overrides") or {})
    return errors


def config_override_errors(overrides: Any, variable: str = "orthanc_config_overrides") -> list[str]:
    """Why ``orthanc_config_overrides`` cannot be used, one message naming each refused key.

    Refused: keys rendered in another file of /etc/orthanc (fatal to Orthanc), the seed
    article's invented keys (silently ignored by Orthanc), keys that would weaken a control the
    role enforces (``WEAKENING_KEYS``) and non-zero recycling limits (``RECYCLING_KEYS``).
    """
    if overrides in (None, {}):
        return []
    if not isinstance(overrides, dict):
        return [f"{variable}: must be a mapping of Orthanc configuration keys"]
    errors: list[str] = []
    for key, value in overrides.items():
        if key in RESERVED_KEYS and key not in WEAKENING_KEYS:
            errors.append(
                f"{variable}: {key} is rendered in its own file by the role "
                "(a key in two files is fatal to Orthanc); remove it"
            )
        elif key in WEAKENING_KEYS:
            errors.append(f"{variable}: {key} is refused because it would weaken a control: {WEAKENING_KEYS[key]}; remove it")
        elif key in RECYCLING_KEYS and value not in (0, "0"):
            errors.append(
                f"{variable}: {key} is refused: a non-zero value makes Orthanc delete the oldest "
                "patients to make room; remove it (or set 0) and watch the disk check instead"
            )
    for path in invented_keys(overrides):
        errors.append(
            f"{variable}: {path} is not an Orthanc 1.10.1 key (silently ignored); see the role README for the real key"
        )
    return errors


def _debian_order(char: str) -> int:
    """dpkg's weight of one character: end and digits 0, '~' first, letters, then the rest."""
    if not char or char.isdigit():
        return 0
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(left: str, right: str) -> int:
    """dpkg's comparison of an upstream version or revision (verrevcmp in dpkg's lib/dpkg/version.c)."""
    i = j = 0

    def at(text: str, k: int) -> str:
        return text[k] if k < len(text) else ""

    while i < len(left) or j < len(right):
        first_diff = 0
        while (at(left, i) and not at(left, i).isdigit()) or (at(right, j) and not at(right, j).isdigit()):
            lc, rc = _debian_order(at(left, i)), _debian_order(at(right, j))
            if lc != rc:
                return -1 if lc < rc else 1
            i, j = i + 1, j + 1
        while at(left, i) == "0":
            i += 1
        while at(right, j) == "0":
            j += 1
        while at(left, i).isdigit() and at(right, j).isdigit():
            if not first_diff:
                first_diff = ord(left[i]) - ord(right[j])
            i, j = i + 1, j + 1
        if at(left, i).isdigit():
            return 1
        if at(right, j).isdigit():
            return -1
        if first_diff:
            return -1 if first_diff < 0 else 1
    return 0


def _split_version(version: str) -> tuple[int, str, str]:
    version = version.strip()
    epoch = 0
    if ":" in version:
        head, version = version.split(":", 1)
        epoch = int(head)
    upstream, _, revision = version.rpartition("-") if "-" in version else (version, "", "")
    return epoch, upstream, revision


def debian_version_compare(left: str, right: str) -> int:
    """-1, 0 or 1 as Debian orders two package versions (``dpkg --compare-versions``)."""
    le, lu, lr = _split_version(left)
    re_, ru, rr = _split_version(right)
    if le != re_:
        return -1 if le < re_ else 1
    return _compare_part(lu, ru) or _compare_part(lr, rr)


def package_version_error(package: str, found: Any, minimum: str) -> str | None:
    """Why the installed ``package`` version is not acceptable, or None."""
    if not found or not isinstance(found, str):
        return f"{package} is not installed (needed: {minimum} or later)"
    try:
        if debian_version_compare(found, minimum) < 0:
            return (
                f"{package} {found} is installed but {minimum} or later is needed: upgrade it "
                "(apt-get install --only-upgrade " + package + ") from Debian's security archive"
            )
    except ValueError:
        return f"{package}: cannot read the installed version {found!r} (needed: {minimum} or later)"
    return None


def modalities_config(modalities: list[dict], dicom_tls: bool = False) -> dict:
    """Orthanc's ``DicomModalities`` in object form: anything not in ``allow`` is off.

    The array form ``["AET", "host", port]`` turns every Allow* on, so it is never used.
    """
    result: dict = {}
    for modality in modalities or []:
        allow = set(modality.get("allow", []))
        entry = {
            "AET": modality["aet"],
            "Host": str(modality["host"]),
            "Port": int(modality.get("port", 104)),
            "Manufacturer": "Generic",
        }
        for command, key in COMMAND_KEYS.items():
            entry[key] = command in allow
        entry["AllowFindWorklist"] = False
        entry["AllowStorageCommitment"] = False
        entry["AllowTranscoding"] = True
        entry["UseDicomTls"] = bool(dicom_tls and modality.get("tls", False))
        result[modality["name"]] = entry
    return result


def loopback_modalities(settings: dict, tls_on: bool) -> dict:
    """The server's own calling AE titles, from 127.0.0.1 only.

    ``orthanc-remote-selfcheck`` (``selfcheck_aet``): the health check's and log_monitoring's
    C-ECHO, echo only. ``orthanc-remote-verify`` (``verify_aet``): playbooks/verify.yml's
    C-ECHO and C-STORE of a generated test instance, echo and store only. Both speak the port's
    protocol (TLS when the port is TLS-only).
    """
    def entry(aet: str, store: bool) -> dict:
        return {
            "AET": aet,
            "Host": "127.0.0.1",
            "Port": int(settings["dicom_port"]),
            "Manufacturer": "Generic",
            "AllowEcho": True,
            "AllowStore": store,
            "AllowFind": False,
            "AllowMove": False,
            "AllowGet": False,
            "AllowFindWorklist": False,
            "AllowStorageCommitment": False,
            "AllowTranscoding": False,
            "UseDicomTls": tls_on,
        }
    return {"orthanc-remote-selfcheck": entry(settings["selfcheck_aet"], False),
            "orthanc-remote-verify": entry(settings["verify_aet"], True)}


def main_config(settings: dict) -> dict:
    """The whole orthanc.json (without RegisteredUsers and PythonScript: own files).

    ``settings`` keys: name, aet, dicom_port, http_port, dicom_scp_timeout, dicom_scu_timeout,
    modalities, storage_directory, index_directory, limit_find_results, limit_find_instances,
    dicom_threads_count, plugins, selfcheck_aet, verify_aet, dicom_tls {enabled, certificate, private_key,
    trusted_certificates}, overrides.
    """
    tls = settings.get("dicom_tls") or {}
    tls_on = bool(tls.get("enabled"))
    modalities = modalities_config(settings.get("modalities", []), tls_on)
    # The server's own C-ECHO health check (and log_monitoring's self-test) comes from loopback.
    modalities.update(loopback_modalities(settings, tls_on))
    config: dict = {
        "Name": settings.get("name", "Orthanc"),
        "StorageDirectory": settings["storage_directory"],
        "IndexDirectory": settings["index_directory"],
        "StorageCompression": False,
        "Plugins": list(settings.get("plugins", ["/usr/share/orthanc/plugins/"])),
        # HTTP: loopback only (nginx terminates TLS in front); authentication on even for
        # loopback, because behind a proxy every request comes from loopback.
        "HttpServerEnabled": True,
        "HttpPort": int(settings["http_port"]),
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "SslEnabled": False,
        "HttpsVerifyPeers": True,
        "KeepAlive": True,
        "TcpNoDelay": True,
        "WebDavEnabled": False,
        "ExecuteLuaEnabled": False,
        "LuaScripts": [],
        "RestApiWriteToFileSystemEnabled": False,
        "LimitFindResults": int(settings["limit_find_results"]),
        "LimitFindInstances": int(settings["limit_find_instances"]),
        "OrthancPeers": {},
        "OrthancPeersInDatabase": False,
        # DICOM: only the listed modalities, from their own address, to our AE title.
        "DicomServerEnabled": True,
        "DicomAet": settings["aet"],
        "DicomPort": int(settings["dicom_port"]),
        "DicomCheckCalledAet": True,
        # DICOM AE titles are case-sensitive; Orthanc 1.10.1 compares them without case unless told
        # (a modality registered as ct_scanner was accepted as CT_SCANNER).
        "StrictAetComparison": True,
        "DicomCheckModalityHost": True,
        "DicomAlwaysAllowEcho": False,
        "DicomAlwaysAllowStore": False,
        "DicomAlwaysAllowFind": False,
        "DicomAlwaysAllowFindWorklist": False,
        "DicomAlwaysAllowGet": False,
        "DicomAlwaysAllowMove": False,
        "UnknownSopClassAccepted": False,
        "DicomScpTimeout": int(settings["dicom_scp_timeout"]),
        "DicomScuTimeout": int(settings["dicom_scu_timeout"]),
        "DicomThreadsCount": int(settings["dicom_threads_count"]),
        "DicomModalities": modalities,
        "DicomModalitiesInDatabase": False,
        "DicomTlsEnabled": tls_on,
    }
    if tls_on:
        config.update(
            {
                "DicomTlsCertificate": tls["certificate"],
                "DicomTlsPrivateKey": tls["private_key"],
                "DicomTlsTrustedCertificates": tls["trusted_certificates"],
                "DicomTlsRemoteCertificateRequired": True,
            }
        )
    for key, value in (settings.get("overrides") or {}).items():
        config[key] = value
    return config


def registered_users(users: list[dict]) -> dict:
    """``RegisteredUsers`` (name -> password); refuses to render no user or a user without password.

    Password strength was checked before (``site_model_errors`` on the final users, generated
    passwords included: roles/orthanc/tasks/credentials.yml).
    """
    missing = [u.get("name") for u in users if not u.get("password")]
    if missing:
        raise ValueError(f"users without a password: {missing}")
    if not users:
        raise ValueError("orthanc_users: at least one user is required (Orthanc would create orthanc:orthanc)")
    return {u["name"]: u["password"] for u in users}


def user_roles(users: list[dict]) -> dict:
    """name -> role, for the request filter."""
    return {u["name"]: u["role"] for u in users}


def with_passwords(users: list[dict], generated: dict) -> list[dict]:
    """Users with ``password`` filled from ``generated`` (name -> password) where missing."""
    result = []
    for user in users:
        merged = dict(user)
        if not merged.get("password"):
            merged["password"] = generated.get(user["name"])
        result.append(merged)
    return result


def stale_credential_files(paths: list[str], users: list[dict]) -> list[str]:
    """The controller's ``credentials/<name>.txt`` files whose user is no longer in ``users``.

    Removing a user from the inventory removes the password the controller kept for them on the
    next run; files not named ``<something>.txt`` are left alone.
    """
    names = {u.get("name") for u in users or [] if isinstance(u, dict)}
    stale = []
    for path in paths or []:
        base = str(path).rsplit("/", 1)[-1]
        if base.endswith(".txt") and base[: -len(".txt")] not in names:
            stale.append(str(path))
    return sorted(stale)


def invented_keys(config: Any, prefix: str = "") -> list[str]:
    """Paths of the article's invented keys anywhere in ``config`` (recursively)."""
    found: list[str] = []
    if isinstance(config, dict):
        for key, value in config.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key in INVENTED_KEYS:
                found.append(path)
            found += invented_keys(value, path)
    elif isinstance(config, list):
        for index, value in enumerate(config):
            found += invented_keys(value, f"{prefix}[{index}]")
    return found


class FilterModule:
    """Expose the Orthanc configuration helpers to Jinja."""

    def filters(self) -> dict:
        return {
            "orthanc_settings_errors": settings_errors,
            "orthanc_main_config": main_config,
            "orthanc_registered_users": registered_users,
            "orthanc_user_roles": user_roles,
            "orthanc_with_passwords": with_passwords,
            "orthanc_invented_keys": invented_keys,
            "orthanc_stale_credential_files": stale_credential_files,
            "orthanc_config_override_errors": config_override_errors,
            "orthanc_package_version_error": package_version_error,
        }
