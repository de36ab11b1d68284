"""Pure functions behind the log_monitoring role.

They turn the site facts and the role's variables into what the templates render: the fail2ban
ignore list and jail definitions, the list of certificates the expiry check watches, the check
timers, and the validation messages the role asserts before touching a host. No Ansible import:
``FilterModule`` at the bottom only exposes them to Jinja.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Iterable

LOOPBACK = ("127.0.0.0/8", "::1/128")
CHECK_NAMES = ("certs", "disk", "services", "dicom_echo", "updates")
BANACTIONS = ("auto", "nftables-multiport", "nftables-allports", "iptables-multiport", "iptables-allports")
# A fail2ban time: plain seconds or a number with a unit (10m, 1h, 1d, 1w); -1 bans forever.
TIME_PATTERN = re.compile(r"^(-1|\d+|\d+(\.\d+)?\s*(s|m|h|d|w|mo|y|sec|min|hour|day|week)s?)$")
JAIL_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
# systemd OnCalendar shorthands plus anything that looks like a calendar expression.
CALENDAR_PATTERN = re.compile(r"^(minutely|hourly|daily|weekly|monthly|[0-9*][0-9*:/,.\- ]*|[A-Za-z]{3}[A-Za-z0-9*:/,.\- ]*)$")
# Orthanc command-line flags that make it log request details, passwords included
# (--trace-http logs the Authorization header; --verbose/--trace enable it for every category).
FORBIDDEN_ORTHANC_FLAGS = ("--trace", "--verbose")


def _normalise(source: Any) -> str:
    """A CIDR in canonical form; a single address becomes /32 or /128."""
    return str(ipaddress.ip_network(str(source).strip(), strict=False))


def ignoreip(
    admin_sources: Iterable[Any] | None,
    extra: Iterable[Any] | None = None,
    modalities: Iterable[dict] | None = None,
    vpn_clients: Iterable[dict] | None = None,
) -> list[str]:
    """fail2ban's ``ignoreip``: loopback, then the site's own peers, de-duplicated.

    Never banned: the admin sources (the IT team must not lock itself out by mistyping a
    password), every registered modality's host, every VPN modality gateway's tunnel address and
    the site subnets it routes (a forged or misconfigured line must not cut a modality off), and
    any extra CIDRs.
    """
    sources: list[Any] = list(admin_sources or [])
    for modality in modalities or []:
        if isinstance(modality, dict) and modality.get("host"):
            sources.append(modality["host"])
    for client in vpn_clients or []:
        if isinstance(client, dict) and client.get("kind") == "modality_gateway":
            if client.get("address"):
                sources.append(client["address"])
            sources.extend(client.get("site_subnets") or [])
    result: list[str] = list(LOOPBACK)
    for source in sources + list(extra or []):
        cidr = _normalise(source)
        if cidr not in result:
            result.append(cidr)
    return result


def choose_banaction(choice: str, whole_host: bool = False) -> str:
    """Resolve ``auto`` to a ban that fits the jail's ports.

    ``auto`` is nftables-multiport (the jail's ports only), with ufw active or not: fail2ban's
    ``ufw`` action ignores the jail's port and would cut every service of a banned address (a
    hospital NAT would lose its VPN gateway and DICOM for five wrong passwords), so it is not
    offered. fail2ban's own nftables table drops before ufw's chains. ``whole_host`` (the site asks
    for it) bans every port instead.
    """
    if choice != "auto":
        return choice
    return "nftables-allports" if whole_host else "nftables-multiport"


def jails(
    definitions: Iterable[dict],
    defaults: dict,
    overrides: dict | None = None,
) -> list[dict]:
    """Every candidate jail merged over ``defaults`` then its entry in ``overrides``.

    ``definitions`` is the role's list of jails ({name, enabled, filter, backend, logpath or
    journalmatch, port, protocol}). Disabled jails are kept with ``enabled: False``: the rendered
    file must still switch them off (Debian's defaults-debian.conf enables sshd on its own). The
    result is sorted by name, so the rendered jail file is stable from run to run.
    """
    overrides = overrides or {}
    result = []
    for definition in definitions:
        jail = {k: v for k, v in defaults.items()}
        jail.update(definition)
        jail["enabled"] = bool(definition.get("enabled", True))
        jail.update(overrides.get(definition["name"], {}))
        result.append(jail)
    return sorted(result, key=lambda j: j["name"])


def certificate_watch(
    tls_dir: str,
    dicom_tls: bool = False,
    vpn_enabled: bool = False,
    openvpn_dir: str = "/etc/openvpn/server",
    extra: Iterable[dict] | None = None,
    crl_files: Iterable[str] | None = None,
) -> dict:
    """What the certificate check watches: ``{"certificates": [...], "crls": [...]}``.

    Each certificate is ``{name, path, required}``; a ``path`` may be a glob (the VPN clients'
    issued certificates). ``required`` false means "check it if present": the DICOM certificate
    exists only with DICOM TLS, the VPN files only once openvpn_easyrsa ran.
    """
    tls_dir = tls_dir.rstrip("/") or "/"
    certificates = [
        {"name": "https", "path": f"{tls_dir}/https.crt", "required": True},
        {"name": "ca", "path": f"{tls_dir}/ca.crt", "required": False},
        {"name": "dicom", "path": f"{tls_dir}/dicom.crt", "required": bool(dicom_tls)},
        {"name": "dicom-trusted", "path": f"{tls_dir}/dicom-trusted.crt", "required": False},
    ]
    crls = []
    if vpn_enabled:
        openvpn_dir = openvpn_dir.rstrip("/")
        certificates += [
            {"name": "openvpn-ca", "path": f"{openvpn_dir}/pki/ca.crt", "required": True},
            {"name": "openvpn-issued", "path": f"{openvpn_dir}/pki/issued/*.crt", "required": True},
        ]
        crls.append({"name": "openvpn-crl", "path": f"{openvpn_dir}/crl.pem", "required": True})
    for item in extra or []:
        certificates.append({"name": item["name"], "path": item["path"], "required": bool(item.get("required", True))})
    for index, path in enumerate(crl_files or []):
        crls.append({"name": f"crl-{index + 1}", "path": path, "required": True})
    return {"certificates": certificates, "crls": crls}


def check_units(schedule: dict, enabled: dict | None = None) -> list[dict]:
    """One systemd service+timer pair per enabled check: ``[{name, unit, on_calendar}]``.

    ``schedule`` maps a check name (certs, disk, services, dicom_echo, updates) to an OnCalendar
    expression; ``enabled`` maps the same names to booleans (missing means enabled).
    """
    enabled = enabled or {}
    units = []
    for name in CHECK_NAMES:
        if name not in schedule or not enabled.get(name, True):
            continue
        units.append(
            {
                "name": name,
                "unit": "orthanc-remote-check-" + name.replace("_", "-"),
                "on_calendar": schedule[name],
            }
        )
    return units


def forbidden_orthanc_flags(unit_text: str, flags: Iterable[str] = FORBIDDEN_ORTHANC_FLAGS) -> list[str]:
    """The tracing flags present in ``systemctl cat orthanc`` output (comments ignored)."""
    found: list[str] = []
    for line in (unit_text or "").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        for token in re.split(r"[\s\"'=]+", stripped):
            for flag in flags:
                if (token == flag or token.startswith(flag + "-")) and token not in found:
                    found.append(token)
    return found


def _time_error(value: Any, variable: str) -> str | None:
    if isinstance(value, bool) or not TIME_PATTERN.match(str(value).strip()):
        return f"{variable}: {value!r} is not a fail2ban time (seconds, or e.g. 10m, 1h, 1d; -1 = forever)"
    return None


def config_errors(config: dict) -> list[str]:
    """Check the role's inputs; every message names the variable and the fix.

    ``config`` holds the resolved ``log_monitoring_*`` values under their names without the prefix.
    """
    errors: list[str] = []

    def positive_int(key: str, minimum: int = 1) -> int | None:
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            errors.append(f"log_monitoring_{key}: {value!r} must be an integer >= {minimum}")
            return None
        return value

    positive_int("log_retention_days")
    warn = positive_int("cert_warn_days")
    critical = positive_int("cert_critical_days", 0)
    if warn is not None and critical is not None and critical >= warn:
        errors.append(
            f"log_monitoring_cert_critical_days ({critical}) must be smaller than "
            f"log_monitoring_cert_warn_days ({warn})"
        )
    disk_warn = config.get("disk_warn_free_percent")
    disk_crit = config.get("disk_critical_free_percent")
    for key, value in (("disk_warn_free_percent", disk_warn), ("disk_critical_free_percent", disk_crit)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            errors.append(f"log_monitoring_{key}: {value!r} must be a percentage between 0 and 100")
    if not errors and disk_crit is not None and disk_warn is not None and disk_crit >= disk_warn:
        errors.append(
            f"log_monitoring_disk_critical_free_percent ({disk_crit}) must be smaller than "
            f"log_monitoring_disk_warn_free_percent ({disk_warn})"
        )
    if not isinstance(config.get("fail2ban_whole_host_bans", False), bool):
        errors.append("log_monitoring_fail2ban_whole_host_bans: must be true or false")
    for source in list(config.get("admin_sources") or []) + list(config.get("fail2ban_ignoreip_extra") or []):
        try:
            _normalise(source)
        except ValueError:
            errors.append(
                f"log_monitoring_admin_sources / log_monitoring_fail2ban_ignoreip_extra: {source!r} "
                "is not an IP address or CIDR; write a CIDR such as 198.51.100.0/28 or a single address"
            )
    if config.get("fail2ban_banaction") == "ufw":
        errors.append(
            "log_monitoring_fail2ban_banaction: ufw is refused: fail2ban's ufw action ignores the jail's "
            "port and bans the address on every port; use auto (nftables, port-scoped) or set "
            "log_monitoring_fail2ban_whole_host_bans: true"
        )
    elif config.get("fail2ban_banaction") not in BANACTIONS:
        errors.append(
            f"log_monitoring_fail2ban_banaction: {config.get('fail2ban_banaction')!r} must be one of {', '.join(BANACTIONS)}"
        )
    for key in ("fail2ban_bantime", "fail2ban_findtime"):
        check = _time_error(config.get(key), f"log_monitoring_{key}")
        if check:
            errors.append(check)
    positive_int("fail2ban_maxretry")
    for jail, values in (config.get("fail2ban_jail_overrides") or {}).items():
        if not JAIL_NAME_PATTERN.match(str(jail)):
            errors.append(f"log_monitoring_fail2ban_jail_overrides: {jail!r} is not a jail name")
        for key, value in (values or {}).items():
            if key in ("bantime", "findtime"):
                check = _time_error(value, f"log_monitoring_fail2ban_jail_overrides.{jail}.{key}")
                if check:
                    errors.append(check)
            elif key == "maxretry" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                errors.append(f"log_monitoring_fail2ban_jail_overrides.{jail}.maxretry: {value!r} must be an integer >= 1")
    for name, expression in (config.get("check_schedule") or {}).items():
        if name not in CHECK_NAMES:
            errors.append(f"log_monitoring_check_schedule: unknown check {name!r}; use {', '.join(CHECK_NAMES)}")
        elif not isinstance(expression, str) or not CALENDAR_PATTERN.match(expression.strip()):
            errors.append(
                f"log_monitoring_check_schedule.{name}: {expression!r} is not a systemd OnCalendar expression "
                "(e.g. daily, *:0/15)"
            )
    url = config.get("alert_webhook_url") or ""
    if url and not re.match(r"^https?://[^\s/]+(/\S*)?$", str(url)):
        errors.append(f"log_monitoring_alert_webhook_url (site_alerts.webhook_url): {url!r} must be an http(s) URL; write a URL starting with https://")
    email = config.get("alert_email") or ""
    if email and not re.match(r"^[^@\s]+@[^@\s]+$", str(email)):
        errors.append(f"log_monitoring_alert_email (site_alerts.email): {email!r} is not an e-mail address; write one address such as pacs-alerts@example.org")
    for index, item in enumerate(config.get("certificates_extra") or []):
        if not isinstance(item, dict) or not item.get("name") or not str(item.get("path", "")).startswith("/"):
            errors.append(
                f"log_monitoring_certificates_extra[{index}]: must be {{name, path}} with an absolute path"
            )
    for path in config.get("crl_files") or []:
        if not str(path).startswith("/"):
            errors.append(f"log_monitoring_crl_files: {path!r} must be an absolute path")
    return errors


def dicom_echo_args(
    dicom: dict | None,
    tls_private_key: str,
    tls_certificate: str,
    extra: Iterable[str] | None = None,
) -> list[str]:
    """echoscu options for the C-ECHO self-test: TLS with the given client certificate when the
    site's DICOM port speaks TLS (``site_dicom.tls``; the port is then TLS-only), then ``extra``.

    The peer certificate is not verified (``-ic``): the test talks to its own Orthanc on loopback;
    the certificate check watches the certificate itself.
    """
    args: list[str] = []
    if bool((dicom or {}).get("tls", False)):
        args += ["+tls", tls_private_key, tls_certificate, "-ic"]
    return args + list(extra or [])


class FilterModule:
    """Expose the log_monitoring helpers to Jinja."""

    def filters(self) -> dict:
        return {
            "log_monitoring_ignoreip": ignoreip,
            "log_monitoring_banaction": choose_banaction,
            "log_monitoring_jails": jails,
            "log_monitoring_certificate_watch": certificate_watch,
            "log_monitoring_check_units": check_units,
            "log_monitoring_forbidden_orthanc_flags": forbidden_orthanc_flags,
            "log_monitoring_config_errors": config_errors,
            "log_monitoring_dicom_echo_args": dicom_echo_args,
        }
