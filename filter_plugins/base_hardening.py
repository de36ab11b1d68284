"""Pure functions behind the base_hardening role.

Debian version comparison (dpkg's algorithm) and the minimum-version check of the internet-facing
packages, login.defs rendered from Debian's own (diverted) copy, and the SSH lockout guard. No
Ansible import: ``FilterModule`` at the bottom only exposes them to Jinja.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any, Iterable

SSH_PERMIT_ROOT = ("no", "prohibit-password", "forced-commands-only")
LOGIN_DEFS_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _order(char: str) -> int:
    """dpkg's weight of one non-digit character: ~ sorts before everything, letters before others."""
    if char == "~":
        return -1
    if char.isalpha():
        return ord(char)
    return ord(char) + 256


def _compare_part(a: str, b: str) -> int:
    """Compare an upstream version or a revision the way dpkg's verrevcmp does."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return -1 if ac < bc else 1
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = (a[i] > b[j]) - (a[i] < b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def split_version(version: str) -> tuple[int, str, str]:
    """(epoch, upstream, revision) of a Debian version string."""
    version = version.strip()
    epoch, sep, rest = version.partition(":")
    if not sep:
        epoch, rest = "0", version
    upstream, sep, revision = rest.rpartition("-")
    if not sep:
        upstream, revision = rest, ""
    return int(epoch or 0), upstream, revision


def debian_version_compare(a: str, b: str) -> int:
    """-1, 0 or 1 as ``dpkg --compare-versions a lt/eq/gt b`` would answer."""
    ea, ua, ra = split_version(a)
    eb, ub, rb = split_version(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _compare_part(ua, ub) or _compare_part(ra, rb)


def parse_apt_policy(text: str) -> dict[str, dict[str, str | None]]:
    """``apt-cache policy PKG...`` -> {package: {"installed": v or None, "candidate": v or None}}."""
    packages: dict[str, dict[str, str | None]] = {}
    current = None
    for line in text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith(":"):
            current = line.rstrip()[:-1].split(":")[0] if line.count(":") > 1 else line.rstrip()[:-1]
            packages[current] = {"installed": None, "candidate": None}
            continue
        stripped = line.strip()
        for key in ("installed", "candidate"):
            prefix = key.capitalize() + ":"
            if current and stripped.startswith(prefix):
                value = stripped[len(prefix):].strip()
                packages[current][key] = None if value in ("(none)", "") else value
    return packages


def version_errors(
    policy: dict[str, dict[str, str | None]], minimums: dict[str, Any], upgrading: bool = False
) -> list[str]:
    """One message per package whose version is below its minimum.

    A package counts with its installed version, else with the candidate apt would install (the
    service roles install nginx and openvpn later in the play). ``upgrading`` (a check-mode run
    that would install the pending updates first): an installed package counts with its
    candidate when that is newer. A package apt does not know at all is skipped: it is neither
    installed nor installable here.
    """
    errors = []
    for package, minimum in sorted(minimums.items()):
        info = policy.get(package) or {}
        found = info.get("installed") or info.get("candidate")
        how = "installed" if info.get("installed") else "candidate"
        candidate = info.get("candidate")
        if upgrading and found and candidate and debian_version_compare(candidate, found) > 0:
            found, how = candidate, "candidate"
        if not found:
            continue
        if debian_version_compare(found, str(minimum)) < 0:
            errors.append(
                f"{package}: version {found} ({how}) found, {minimum} or newer needed"
            )
    return errors


def render_login_defs(original: str, settings: dict[str, Any]) -> str:
    """Debian's login.defs with each ``settings`` key set: its (possibly commented) line replaced
    in place, or appended at the end when Debian's file has none."""
    lines = original.splitlines()
    done = set()
    for index, line in enumerate(lines):
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)(\s+)\S", line)
        if match and match.group(1) in settings and match.group(1) not in done:
            key = match.group(1)
            if line.startswith("#") and not re.match(rf"^#\s*{key}\s+\S+\s*$", line):
                continue  # a comment that merely mentions the key
            lines[index] = f"{key}\t{settings[key]}"
            done.add(key)
    extra = [f"{key}\t{value}" for key, value in settings.items() if key not in done]
    if extra:
        lines += ["", "# orthanc-remote base_hardening: settings Debian's file does not carry"] + extra
    return "\n".join(lines) + "\n"


def login_defs_errors(settings: Any) -> list[str]:
    """Keys must look like login.defs keys, values a single word."""
    if not isinstance(settings, dict):
        return ["base_hardening_login_defs must be a mapping KEY: value"]
    errors = []
    for key, value in settings.items():
        if not LOGIN_DEFS_KEY.match(str(key)):
            errors.append(f"base_hardening_login_defs: {key!r} is not a login.defs key (upper case)")
        if not re.match(r"^\S+$", str(value)):
            errors.append(f"base_hardening_login_defs.{key}: {value!r} must be one word")
    return errors


def ssh_lockout_errors(
    user: str,
    groups: Iterable[str],
    allow_users: Iterable[str],
    allow_groups: Iterable[str],
    permit_root_login: str,
    authorized_keys: int,
) -> list[str]:
    """Why the SSH settings would lock out the account Ansible connects with (empty: they would not)."""
    errors = []
    groups = list(groups)
    allow_users = list(allow_users)
    allow_groups = list(allow_groups)
    if user == "root" and permit_root_login == "no":
        errors.append(
            "Ansible connects as root over SSH and base_hardening_ssh_permit_root_login is 'no': "
            "connect as an admin user with sudo, or set it to 'prohibit-password'"
        )
    if allow_users and not any(fnmatch.fnmatchcase(user, p.split("@")[0]) for p in allow_users):
        errors.append(
            f"the SSH user {user!r} Ansible connects with is not in site_ssh_allow_users "
            f"({', '.join(allow_users)}): add it"
        )
    if allow_groups and not any(fnmatch.fnmatchcase(g, p) for g in groups for p in allow_groups):
        errors.append(
            f"the SSH user {user!r} Ansible connects with is in none of site_ssh_allow_groups "
            f"({', '.join(allow_groups)}): add one of its groups ({', '.join(groups) or 'none'})"
        )
    if authorized_keys < 1:
        errors.append(
            f"{user!r} has no key in ~/.ssh/authorized_keys and password login is about to be "
            "switched off: install the admin key first (ssh-copy-id)"
        )
    return errors


def ssh_names_errors(values: Any, variable: str) -> list[str]:
    """site_ssh_allow_users / site_ssh_allow_groups: a list of user or group names (sshd patterns)."""
    if values is None:
        return []
    if not isinstance(values, list):
        return [f"{variable} must be a list of names"]
    pattern = r"^[A-Za-z0-9_.*?-][A-Za-z0-9_.*?-]*(@[A-Za-z0-9_.*?:/-]+)?$"
    if variable.endswith("groups"):
        pattern = r"^[A-Za-z0-9_.*?-]+$"
    return [
        f"{variable}: {value!r} is not a valid sshd name pattern (letters, digits, . _ - * ?)"
        for value in values
        if not isinstance(value, str) or not re.match(pattern, value)
    ]


SYSCTL_KEY = re.compile(r"^[a-z0-9_]+([./][a-z0-9_-]+)+$")
ALGORITHM = re.compile(r"^[A-Za-z0-9@._+-]+$")


def input_errors(settings: dict) -> list[str]:
    """Every problem with the role's inputs (variables without their ``base_hardening_`` prefix),
    each message naming the variable and the fix. Empty: the inputs are fine."""
    errors: list[str] = []

    def bad(variable: str, fix: str) -> None:
        errors.append(f"base_hardening_{variable}: {fix}")

    if settings.get("unattended_origins") not in ("security", "all"):
        bad("unattended_origins", "must be security or all")
    if not re.match(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", str(settings.get("reboot_time", ""))):
        bad("reboot_time", "must be HH:MM, e.g. 02:00")
    if not re.match(r"^(https?|file)://\S+$", str(settings.get("security_mirror", ""))):
        bad("security_mirror", "must be a URL such as http://deb.debian.org/debian-security")
    if not isinstance(settings.get("minimum_versions"), dict):
        bad("minimum_versions", "must be a mapping package: version")
    if settings.get("ssh_permit_root_login") not in SSH_PERMIT_ROOT:
        bad("ssh_permit_root_login", f"must be one of {', '.join(SSH_PERMIT_ROOT)}")
    if settings.get("ssh_allow_tcp_forwarding") not in ("no", "yes", "local", "remote"):
        bad("ssh_allow_tcp_forwarding", "must be no, yes, local or remote")
    for name in ("ssh_client_alive_interval", "ssh_client_alive_count_max", "ssh_max_auth_tries", "ssh_max_sessions"):
        try:
            if int(settings.get(name)) <= 0:
                raise ValueError
        except (TypeError, ValueError):
            bad(name, "must be a whole number above 0")
    for name in ("ssh_ciphers", "ssh_kex_algorithms", "ssh_macs"):
        values = settings.get(name)
        if not isinstance(values, list) or not values or not all(ALGORITHM.match(str(v)) for v in values):
            bad(name, "must be a non-empty list of algorithm names")
    if not re.match(r"^0?[0-7]{3}$", str(settings.get("umask", ""))):
        bad("umask", "must be three octal digits, e.g. 027")
    sysctl = settings.get("sysctl_settings")
    if not isinstance(sysctl, dict):
        bad("sysctl_settings", "must be a mapping key: value")
    else:
        for key in sysctl:
            if not SYSCTL_KEY.match(str(key)):
                bad("sysctl_settings", f"{key!r} is not a sysctl key; write e.g. net.ipv4.conf.all.rp_filter")
        if "net.ipv4.ip_forward" in sysctl or "net/ipv4/ip_forward" in sysctl:
            bad("sysctl_settings", "must not set net.ipv4.ip_forward: OpenVPN forwards (ufw_firewall owns it)")
    modules = settings.get("disabled_modules")
    if not isinstance(modules, list) or not all(re.match(r"^[a-z0-9_-]+$", str(m)) for m in modules):
        bad("disabled_modules", "must be a list of lowercase module names")
    errors += ssh_names_errors(settings.get("ssh_allow_users"), "site_ssh_allow_users")
    errors += ssh_names_errors(settings.get("ssh_allow_groups"), "site_ssh_allow_groups")
    errors += login_defs_errors(settings.get("login_defs"))
    return errors


class FilterModule:
    """Expose the functions to Jinja."""

    def filters(self) -> dict:
        return {
            "base_hardening_version_compare": debian_version_compare,
            "base_hardening_parse_apt_policy": parse_apt_policy,
            "base_hardening_version_errors": version_errors,
            "base_hardening_login_defs": render_login_defs,
            "base_hardening_login_defs_errors": login_defs_errors,
            "base_hardening_ssh_lockout_errors": ssh_lockout_errors,
            "base_hardening_ssh_names_errors": ssh_names_errors,
            "base_hardening_input_errors": input_errors,
        }
