"""Inventory -> Orthanc configuration for the orthanc role.

Pure functions that turn the role's structured variables (AE title, ports, timeouts, modalities,
users) into the JSON documents Orthanc 1.10.1 reads, with only keys Orthanc really knows, and
that refuse weak passwords. The ``FilterModule`` at the bottom only exposes them to Jinja.

Orthanc silently ignores keys it does not know; the keys in ``INVENTED_KEYS`` come from a widely
copied article and do nothing (see shared/facts/orthanc.md), so ``orthanc_invented_keys`` lets the
role (and its tests) prove none of them is ever rendered.
"""

from __future__ import annotations

import ipaddress
import re
import sys
from pathlib import Path
from typing import Any

# The AE title and port rules are the site model's (one definition for every role); filter plugin
# files are loaded one by one, so make their directory importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from site_model import aet_error  # noqa: E402
from site_model import port_error as _port_error  # noqa: E402

USER_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MODALITY_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
COMMANDS = ("echo", "store", "find", "move", "get")
ROLES = ("admin", "viewer", "uploader")
MIN_PASSWORD_LENGTH = 12
# Known weak or default values, compared case-insensitively. Orthanc itself creates
# orthanc:orthanc when RegisteredUsers is empty; the seed article uses admin_password.
WEAK_PASSWORDS = frozenset(
    {
        "orthanc",
        "orthancorthanc",
        "password",
        "admin_password",
        "admin",
        "administrator",
        "changeme",
        "change_me",
        "change-me",
        "secret",
        "letmein",
        "qwerty",
        "123456789012",
        "password1234",
        "password123!",
        "passwordpassword",
    }
)
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
RESERVED_KEYS = ("RegisteredUsers", "PythonScript", "PythonVerbose", "ServeFolders", "Worklists")
COMMAND_KEYS = {
    "echo": "AllowEcho",
    "store": "AllowStore",
    "find": "AllowFind",
    "move": "AllowMove",
    "get": "AllowGet",
}


def _positive_int_error(value: Any, variable: str, minimum: int = 1) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return f"{variable}: {value!r} must be an integer >= {minimum}"
    return None


def password_weakness(password: Any, user: str = "") -> str | None:
    """Why ``password`` is too weak to deploy, or None when it is acceptable."""
    if not isinstance(password, str):
        return "it is not a string"
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"it has {len(password)} characters, fewer than {MIN_PASSWORD_LENGTH}"
    if password.lower() in WEAK_PASSWORDS:
        return "it is a well-known default or weak password"
    if len(user) >= 4 and user.lower() in password.lower():
        return "it contains the user name"
    if len(set(password)) < 5:
        return "it uses fewer than 5 different characters"
    if password != password.strip() or any(ord(c) < 32 for c in password):
        return "it has leading/trailing spaces or control characters"
    return None


def user_errors(users: Any, variable: str = "orthanc_users") -> list[str]:
    """Validate users ``{name, role, password?}``: shape, roles, and password strength.

    A user without ``password`` is fine (the role generates one); a given password must pass
    ``password_weakness``. Every message names the user and the fix.
    """
    if not isinstance(users, list):
        return [f"{variable}: must be a list of {{name, role, password?}}"]
    errors: list[str] = []
    seen: set = set()
    for index, user in enumerate(users):
        if not isinstance(user, dict):
            errors.append(f"{variable}[{index}]: must be a mapping with name and role")
            continue
        name = user.get("name")
        where = f"{variable}[{name if isinstance(name, str) else index}]"
        if not isinstance(name, str) or not USER_PATTERN.match(name):
            errors.append(f"{where}.name: {name!r} must be 1-64 letters, digits, '.', '_' or '-'")
        elif name in seen:
            errors.append(f"{where}.name: user {name!r} appears twice; each name must be unique")
        else:
            seen.add(name)
        if user.get("role") not in ROLES:
            errors.append(f"{where}.role: {user.get('role')!r} must be one of {', '.join(ROLES)}")
        if "password" in user and user["password"] is not None:
            why = password_weakness(user["password"], name if isinstance(name, str) else "")
            if why:
                errors.append(
                    f"{where}.password: refused for user {name!r}: {why}. Use at least "
                    f"{MIN_PASSWORD_LENGTH} characters that are not a known default (e.g. a vaulted "
                    "random value), or remove `password` to have one generated on the controller"
                )
    return errors


def modality_errors(modalities: Any, variable: str = "orthanc_modalities") -> list[str]:
    """Validate modalities ``{name, aet, host, port, allow, tls}`` for Orthanc."""
    if not isinstance(modalities, list):
        return [f"{variable}: must be a list of {{name, aet, host, port, allow, tls}}"]
    errors: list[str] = []
    names: set = set()
    aets: set = set()
    for index, modality in enumerate(modalities):
        if not isinstance(modality, dict):
            errors.append(f"{variable}[{index}]: must be a mapping with name, aet, host, port, allow")
            continue
        name = modality.get("name")
        where = f"{variable}[{name if isinstance(name, str) else index}]"
        if not isinstance(name, str) or not MODALITY_NAME_PATTERN.match(name):
            errors.append(f"{where}.name: {name!r} must be letters, digits, '.', '_' or '-' (e.g. mri-1)")
        elif name in names:
            errors.append(f"{where}.name: {name!r} appears twice; each must be unique")
        else:
            names.add(name)
        check = aet_error(modality.get("aet"), f"{where}.aet")
        if check:
            errors.append(check)
        elif modality["aet"] in aets:
            errors.append(f"{where}.aet: {modality['aet']!r} appears twice; each must be unique")
        else:
            aets.add(modality["aet"])
        try:
            ipaddress.ip_address(str(modality.get("host")))
        except ValueError:
            errors.append(
                f"{where}.host: {modality.get('host')!r} must be the single IP address Orthanc sees "
                "the association come from (DicomCheckModalityHost compares it)"
            )
        check = _port_error(modality.get("port", 104), f"{where}.port")
        if check:
            errors.append(check)
        allow = modality.get("allow", [])
        if not isinstance(allow, list) or any(a not in COMMANDS for a in allow):
            errors.append(f"{where}.allow: {allow!r} must be a list of {', '.join(COMMANDS)}")
        if not isinstance(modality.get("tls", False), bool):
            errors.append(f"{where}.tls: must be true or false")
    return errors


def settings_errors(settings: dict) -> list[str]:
    """Check the role's Orthanc settings (see ``main_config`` for the keys)."""
    errors: list[str] = []
    check = aet_error(settings.get("aet"), "orthanc_dicom_aet")
    if check:
        errors.append(check)
    for key, variable in (("dicom_port", "orthanc_dicom_port"), ("http_port", "orthanc_http_port")):
        check = _port_error(settings.get(key), variable)
        if check:
            errors.append(check)
    if settings.get("dicom_port") == settings.get("http_port"):
        errors.append("orthanc_dicom_port and orthanc_http_port must differ")
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
    check = aet_error(settings.get("selfcheck_aet"), "orthanc_selfcheck_aet")
    if check:
        errors.append(check)
    errors += modality_errors(settings.get("modalities", []))
    if any(
        isinstance(m, dict) and m.get("aet") == settings.get("selfcheck_aet")
        for m in settings.get("modalities", []) or []
    ):
        errors.append("orthanc_selfcheck_aet: it is also a modality's aet; pick another AE title")
    tls = settings.get("dicom_tls") or {}
    if tls.get("enabled"):
        for key in ("certificate", "private_key", "trusted_certificates"):
            if not isinstance(tls.get(key), str) or not tls[key].startswith("/"):
                errors.append(f"orthanc_dicom_tls_{key}: an absolute path is required when DICOM TLS is on")
    else:
        plain_tls = [m.get("name") for m in settings.get("modalities", []) or [] if isinstance(m, dict) and m.get("tls")]
        if plain_tls:
            errors.append(
                f"orthanc_modalities: {', '.join(map(str, plain_tls))} set tls: true but orthanc_dicom_tls is "
                "false; Orthanc's DICOM port is either TLS or plain: enable site_dicom.tls or set tls: false"
            )
    overrides = settings.get("overrides") or {}
    if not isinstance(overrides, dict):
        errors.append("orthanc_config_overrides: must be a mapping of Orthanc configuration keys")
    else:
        for key in overrides:
            if key in RESERVED_KEYS:
                errors.append(
                    f"orthanc_config_overrides: {key} is rendered in its own file by the role "
                    "(a key in two files is fatal to Orthanc); remove it"
                )
        for path in invented_keys(overrides):
            errors.append(
                f"orthanc_config_overrides: {path} is not an Orthanc 1.10.1 key (silently ignored); "
                "see the role README for the real key"
            )
    return errors


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


def main_config(settings: dict) -> dict:
    """The whole orthanc.json (without RegisteredUsers and PythonScript: own files).

    ``settings`` keys: name, aet, dicom_port, http_port, dicom_scp_timeout, dicom_scu_timeout,
    modalities, storage_directory, index_directory, limit_find_results, limit_find_instances,
    dicom_threads_count, plugins, selfcheck_aet, dicom_tls {enabled, certificate, private_key,
    trusted_certificates}, overrides.
    """
    tls = settings.get("dicom_tls") or {}
    tls_on = bool(tls.get("enabled"))
    modalities = modalities_config(settings.get("modalities", []), tls_on)
    # The server's own C-ECHO health check (and log_monitoring's self-test) comes from loopback.
    modalities["orthanc-remote-selfcheck"] = {
        "AET": settings["selfcheck_aet"],
        "Host": "127.0.0.1",
        "Port": int(settings["dicom_port"]),
        "Manufacturer": "Generic",
        "AllowEcho": True,
        "AllowStore": False,
        "AllowFind": False,
        "AllowMove": False,
        "AllowGet": False,
        "AllowFindWorklist": False,
        "AllowStorageCommitment": False,
        "AllowTranscoding": False,
        "UseDicomTls": tls_on,
    }
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
    """``RegisteredUsers`` (name -> password); refuses to render a weak password."""
    errors = user_errors(users)
    missing = [u.get("name") for u in users if not u.get("password")]
    if errors or missing:
        raise ValueError("; ".join(errors) or f"users without a password: {missing}")
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
            "orthanc_user_errors": user_errors,
            "orthanc_main_config": main_config,
            "orthanc_registered_users": registered_users,
            "orthanc_user_roles": user_roles,
            "orthanc_with_passwords": with_passwords,
            "orthanc_invented_keys": invented_keys,
            "orthanc_stale_credential_files": stale_credential_files,
        }
