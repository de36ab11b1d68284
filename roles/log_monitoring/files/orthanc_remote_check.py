#!/usr/bin/python3
"""orthanc-remote-check: health checks of an orthanc-remote PACS server (installed by log_monitoring).

Usage: orthanc-remote-check [--config FILE] [--no-notify] [--set KEY=JSON] {certs,disk,services,dicom_echo,updates,all}

Each result is ONE line on stdout, e.g.
    check=cert target=/etc/orthanc-remote/tls/https.crt status=WARNING days_left=12 ...
Run by systemd with SyslogIdentifier=orthanc-remote-check, so every result lands in the journal
under that identifier (orthanc-remote-status shows the latest of each). The exit code is the worst
status: 0 OK, 1 WARNING, 2 CRITICAL. Python 3 standard library only; openssl and dcmtk's echoscu
are called as programs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import urllib.request
from typing import Any, Callable, Iterable

DEFAULT_CONFIG = "/etc/orthanc-remote/monitoring.json"
STATUSES = ("OK", "WARNING", "CRITICAL")
EXIT_CODES = {"OK": 0, "WARNING": 1, "CRITICAL": 2}
# sd-daemon(3) priority prefixes: journald files WARNING/CRITICAL results at warning/err priority.
PRIORITIES = {"OK": "<6>", "WARNING": "<4>", "CRITICAL": "<3>"}
PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)

Runner = Callable[[list, str], "tuple[int, str]"]


# ---------------------------------------------------------------------------------------------
# Pure helpers
# ---------------------------------------------------------------------------------------------
def result(check: str, target: str, status: str, **fields: Any) -> dict:
    """One check result."""
    assert status in STATUSES, status
    return {"check": check, "target": target, "status": status, **fields}


def format_line(res: dict) -> str:
    """``check=... target=... status=... key=value ...`` with shell-style quoting where needed."""
    keys = ["check", "target", "status"] + [k for k in res if k not in ("check", "target", "status")]
    return " ".join(f"{k}={shlex.quote(str(res[k]))}" for k in keys if res[k] is not None)


def parse_line(line: str) -> dict:
    """Inverse of :func:`format_line` (also used by orthanc-remote-status)."""
    fields = {}
    try:
        tokens = shlex.split(line)
    except ValueError:
        return {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
    return fields


def worst(statuses: Iterable[str]) -> str:
    """The most severe status (OK when there is none)."""
    return max(statuses, key=STATUSES.index, default="OK")


def classify_days(days_left: int, warn_days: int, critical_days: int) -> str:
    """Expired or within ``critical_days`` -> CRITICAL; within ``warn_days`` -> WARNING; else OK."""
    if days_left < 0 or days_left <= critical_days:
        return "CRITICAL"
    if days_left <= warn_days:
        return "WARNING"
    return "OK"


def classify_free(free_percent: float, warn_percent: float, critical_percent: float) -> str:
    """Free space below the critical threshold -> CRITICAL, below the warning one -> WARNING."""
    if free_percent < critical_percent:
        return "CRITICAL"
    if free_percent < warn_percent:
        return "WARNING"
    return "OK"


def split_pem(text: str) -> list[str]:
    """Every PEM certificate block in ``text`` (a full-chain file holds several)."""
    return [m.group(0) + "\n" for m in PEM_CERT.finditer(text)]


def parse_openssl_time(value: str) -> dt.datetime:
    """OpenSSL's ``Nov  9 06:00:00 2027 GMT`` as an aware UTC datetime."""
    value = " ".join(value.split())
    parsed = dt.datetime.strptime(value.replace(" GMT", ""), "%b %d %H:%M:%S %Y")
    return parsed.replace(tzinfo=dt.timezone.utc)


def parse_openssl_fields(output: str) -> dict:
    """``key=value`` lines printed by ``openssl x509/crl -noout -enddate -subject ...``."""
    fields = {}
    for line in output.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def days_between(later: dt.datetime, now: dt.datetime) -> int:
    """Whole days from ``now`` to ``later`` (negative once ``later`` has passed)."""
    return int((later - now).total_seconds() // 86400)


def free_percent(stat: os.statvfs_result) -> float:
    """Space available to unprivileged writers, as a percentage of the filesystem."""
    if not stat.f_blocks:
        return 0.0
    return 100.0 * stat.f_bavail / stat.f_blocks


def echo_succeeded(output: str) -> bool:
    """dcmtk's echoscu can exit 0 after "E: Echo Failed": read its words, not its code."""
    if re.search(r"^[EF]:", output, re.M):
        return False
    return "Received Echo Response (Success)" in output


def notification_key(res: dict) -> str:
    return f"{res['check']}|{res['target']}"


def decide_notifications(
    state: dict, results: Iterable[dict], now: float, repeat_hours: float
) -> "tuple[list[dict], dict]":
    """Which results to send, and the new state.

    A result is sent when its status changed since the last run (a new problem or a recovery;
    a first-ever OK is not news), or when it is still not OK and was last sent ``repeat_hours``
    ago (0 disables reminders).
    """
    new_state = dict(state)
    to_send = []
    for res in results:
        key = notification_key(res)
        previous = state.get(key) or {}
        status = res["status"]
        changed = previous.get("status", "OK") != status
        reminder = (
            status != "OK"
            and repeat_hours > 0
            and now - float(previous.get("notified_at", 0)) >= repeat_hours * 3600
        )
        entry = {"status": status, "notified_at": previous.get("notified_at", 0)}
        if changed or reminder:
            to_send.append(res)
            entry["notified_at"] = now
        new_state[key] = entry
    return to_send, new_state


def webhook_payload(host: str, results: Iterable[dict]) -> bytes:
    """The JSON body POSTed to the webhook."""
    results = list(results)
    return json.dumps(
        {
            "source": "orthanc-remote-check",
            "host": host,
            "status": worst(r["status"] for r in results),
            "results": results,
            "text": "\n".join(f"{host}: {format_line(r)}" for r in results),
        },
        sort_keys=True,
    ).encode()


# ---------------------------------------------------------------------------------------------
# Checks (the runner is injected so tests can fake openssl, systemctl and echoscu)
# ---------------------------------------------------------------------------------------------
def run_command(argv: list, stdin: str = "") -> "tuple[int, str]":
    """Run a program; return (exit code, stdout+stderr). A missing program is exit code 127."""
    try:
        proc = subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        return 127, f"{argv[0]}: not found"
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]}: timed out"
    return proc.returncode, proc.stdout + proc.stderr


def _expand(item: dict) -> "list[str]":
    path = item["path"]
    if any(c in path for c in "*?["):
        return sorted(glob.glob(path))
    return [path] if os.path.exists(path) else []


def check_certificates(config: dict, now: dt.datetime, run: Runner = run_command) -> list:
    """Days left on every watched certificate (the earliest in a chain file) and CRL next update."""
    warn, critical = int(config["cert_warn_days"]), int(config["cert_critical_days"])
    results = []
    for item in config.get("certificates", []):
        paths = _expand(item)
        if not paths:
            if item.get("required", True):
                results.append(result("cert", item["path"], "CRITICAL", name=item["name"], error="missing"))
            continue
        for path in paths:
            try:
                with open(path, encoding="ascii", errors="replace") as handle:
                    blocks = split_pem(handle.read())
            except OSError as exc:
                results.append(result("cert", path, "CRITICAL", name=item["name"], error=exc.strerror))
                continue
            if not blocks:
                results.append(result("cert", path, "CRITICAL", name=item["name"], error="no PEM certificate"))
                continue
            soonest = None
            for block in blocks:
                code, out = run(
                    ["openssl", "x509", "-noout", "-enddate", "-subject", "-nameopt", "RFC2253"], block
                )
                fields = parse_openssl_fields(out)
                if code != 0 or "notAfter" not in fields:
                    soonest = {"error": "openssl could not read it"}
                    break
                not_after = parse_openssl_time(fields["notAfter"])
                if soonest is None or not_after < soonest["not_after"]:
                    soonest = {"not_after": not_after, "subject": fields.get("subject", "")}
            if "error" in soonest:
                results.append(result("cert", path, "CRITICAL", name=item["name"], error=soonest["error"]))
                continue
            days = days_between(soonest["not_after"], now)
            results.append(
                result(
                    "cert",
                    path,
                    classify_days(days, warn, critical),
                    name=item["name"],
                    days_left=days,
                    not_after=soonest["not_after"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                    subject=soonest["subject"],
                )
            )
    for item in config.get("crls", []):
        paths = _expand(item)
        if not paths:
            if item.get("required", True):
                results.append(result("crl", item["path"], "CRITICAL", name=item["name"], error="missing"))
            continue
        for path in paths:
            code, out = run(["openssl", "crl", "-noout", "-nextupdate", "-in", path], "")
            fields = parse_openssl_fields(out)
            if code != 0 or not fields.get("nextUpdate") or fields["nextUpdate"] == "NONE":
                results.append(result("crl", path, "CRITICAL", name=item["name"], error="no nextUpdate readable"))
                continue
            next_update = parse_openssl_time(fields["nextUpdate"])
            days = days_between(next_update, now)
            results.append(
                result(
                    "crl",
                    path,
                    classify_days(days, warn, critical),
                    name=item["name"],
                    days_left=days,
                    next_update=next_update.strftime("%Y-%m-%dT%H:%M:%SZ"),
                )
            )
    return results


def check_disk(config: dict, statvfs: Callable = os.statvfs) -> list:
    """Free space on the filesystem holding Orthanc's storage."""
    path = config["storage_dir"]
    try:
        stat = statvfs(path)
    except OSError as exc:
        return [result("disk", path, "CRITICAL", error=exc.strerror or str(exc))]
    percent = free_percent(stat)
    status = classify_free(
        percent, float(config["disk_warn_free_percent"]), float(config["disk_critical_free_percent"])
    )
    return [
        result(
            "disk",
            path,
            status,
            free_percent=f"{percent:.1f}",
            free_gib=f"{stat.f_bavail * stat.f_frsize / 2**30:.1f}",
            size_gib=f"{stat.f_blocks * stat.f_frsize / 2**30:.1f}",
        )
    ]


def check_services(config: dict, run: Runner = run_command) -> list:
    """Every required unit active; every optional unit active when it is enabled."""
    results = []
    units = [(u, True) for u in config.get("services", [])]
    units += [(u, False) for u in config.get("optional_services", [])]
    for unit, required in units:
        if not required:
            _, enabled = run(["systemctl", "is-enabled", unit], "")
            if enabled.strip() not in ("enabled", "enabled-runtime", "static", "alias"):
                continue
        _, state = run(["systemctl", "is-active", unit], "")
        state = state.strip().splitlines()[0] if state.strip() else "unknown"
        results.append(result("service", unit, "OK" if state == "active" else "CRITICAL", active=state))
    return results


def check_dicom_echo(config: dict, run: Runner = run_command) -> list:
    """A C-ECHO from the server to its own Orthanc, as the self-test modality."""
    echo = config["dicom_echo"]
    target = f"{echo['called_aet']}@{echo['host']}:{echo['port']}"
    timeout = str(echo.get("timeout", 10))
    argv = ["echoscu", "-v", "-to", timeout, "-ta", timeout, "-td", timeout]
    argv += list(echo.get("extra_args", []))
    argv += ["-aet", echo["calling_aet"], "-aec", echo["called_aet"], echo["host"], str(echo["port"])]
    code, out = run(argv, "")
    if code == 127:
        return [result("dicom_echo", target, "CRITICAL", error="echoscu not installed (dcmtk)")]
    if echo_succeeded(out):
        return [result("dicom_echo", target, "OK", calling_aet=echo["calling_aet"])]
    errors = [line[2:].strip().rstrip(":") for line in out.splitlines() if line.startswith(("E:", "F:"))]
    return [
        result(
            "dicom_echo",
            target,
            "CRITICAL",
            calling_aet=echo["calling_aet"],
            error=("; ".join(errors) if errors else f"echoscu exit {code}")[:300],
        )
    ]


def parse_apt_simulation(output: str) -> dict:
    """``apt-get -s dist-upgrade`` -> {"security": [names], "other": [names]} of the pending upgrades.

    An ``Inst`` line names the package and the archive its new version comes from; Debian's
    security suite is labelled ``Debian-Security``.
    """
    pending: dict = {"security": [], "other": []}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[0] != "Inst":
            continue
        kind = "security" if "Debian-Security:" in line else "other"
        if parts[1] not in pending[kind]:
            pending[kind].append(parts[1])
    return pending


def classify_updates(pending: dict, reboot: "list[str] | None") -> str:
    """WARNING while a security update or a reboot is pending; other updates are reported, OK."""
    return "WARNING" if pending["security"] or reboot is not None else "OK"


def read_reboot_required(flag: str = "/run/reboot-required", pkgs: str = "/run/reboot-required.pkgs") -> "list[str] | None":
    """The packages asking for a reboot ([] when the flag carries no list), None when none is pending."""
    if not os.path.exists(flag):
        return None
    try:
        with open(pkgs, encoding="utf-8") as handle:
            return sorted(set(handle.read().split()))
    except OSError:
        return []


def check_updates(config: dict, run: Runner = run_command, reboot: Callable = read_reboot_required) -> list:
    """Pending package updates (security ones first) and a pending reboot, from APT's own lists."""
    code, out = run(["apt-get", "-s", "-o", "Debug::NoLocking=1", "dist-upgrade"], "")
    if code != 0:
        return [result("updates", "apt", "WARNING", error=(out.strip().splitlines() or ["apt-get -s failed"])[-1][:200])]
    pending = parse_apt_simulation(out)
    needs_reboot = reboot()
    fields = {
        "security": len(pending["security"]),
        "other": len(pending["other"]),
        "reboot": "no" if needs_reboot is None else ("yes: " + " ".join(needs_reboot) if needs_reboot else "yes"),
    }
    if pending["security"]:
        fields["security_packages"] = " ".join(pending["security"][:20])
    return [result("updates", "apt", classify_updates(pending, needs_reboot), **fields)]


CHECKS = {
    "certs": lambda c, now: check_certificates(c, now),
    "disk": lambda c, now: check_disk(c),
    "services": lambda c, now: check_services(c),
    "dicom_echo": lambda c, now: check_dicom_echo(c),
    "updates": lambda c, now: check_updates(c),
}


# ---------------------------------------------------------------------------------------------
# Notification and entry point
# ---------------------------------------------------------------------------------------------
def notify(config: dict, results: list) -> list:
    """Send changed results by webhook and/or local mail; return notify results for failures."""
    alerts = config.get("alerts") or {}
    state_file = config.get("state_file", "/var/lib/orthanc-remote-check/state.json")
    try:
        with open(state_file, encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        state = {}
    now = dt.datetime.now(dt.timezone.utc).timestamp()
    to_send, new_state = decide_notifications(state, results, now, float(alerts.get("repeat_hours", 24)))
    outcome = []
    host = config.get("host") or socket.getfqdn()
    if to_send and alerts.get("webhook_url"):
        request = urllib.request.Request(
            alerts["webhook_url"],
            data=webhook_payload(host, to_send),
            headers={"Content-Type": "application/json", "User-Agent": "orthanc-remote-check"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310 (URL from the inventory)
                response.read()
            outcome.append(result("notify", "webhook", "OK", sent=len(to_send)))
        except OSError as exc:
            outcome.append(result("notify", "webhook", "WARNING", error=str(exc)[:200]))
    if to_send and alerts.get("email"):
        if shutil.which("mail"):
            subject = f"[orthanc-remote] {host}: {worst(r['status'] for r in to_send)}"
            body = "\n".join(format_line(r) for r in to_send) + "\n"
            code, out = run_command(["mail", "-s", subject, alerts["email"]], body)
            if code != 0:
                outcome.append(result("notify", "mail", "WARNING", error=out.strip()[:200]))
            else:
                outcome.append(result("notify", "mail", "OK", sent=len(to_send)))
        else:
            outcome.append(result("notify", "mail", "WARNING", error="no mail command installed"))
    if all(r["status"] == "OK" for r in outcome):
        try:
            os.makedirs(os.path.dirname(state_file), mode=0o700, exist_ok=True)
            tmp = state_file + ".tmp"
            with open(tmp, "w", encoding="utf-8") as handle:
                json.dump(new_state, handle, sort_keys=True)
            os.replace(tmp, state_file)
        except OSError as exc:
            outcome.append(result("notify", "state", "WARNING", error=exc.strerror or str(exc)))
    return outcome


def apply_overrides(config: dict, overrides: Iterable[str]) -> dict:
    """``--set key=value`` (value as JSON when it parses, else a string), for manual runs and tests."""
    config = dict(config)
    for item in overrides:
        key, _, value = item.partition("=")
        try:
            config[key] = json.loads(value)
        except ValueError:
            config[key] = value
    return config


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="orthanc-remote-check", description=__doc__.splitlines()[0])
    parser.add_argument("check", choices=sorted(CHECKS) + ["all"])
    parser.add_argument("--config", default=DEFAULT_CONFIG)
    parser.add_argument("--no-notify", action="store_true", help="print results only")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override a setting")
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as handle:
        config = apply_overrides(json.load(handle), args.set)
    now = dt.datetime.now(dt.timezone.utc)
    names = sorted(CHECKS) if args.check == "all" else [args.check]
    results = []
    for name in names:
        results += CHECKS[name](config, now)
    if not args.no_notify:
        results += notify(config, results)
    prefix = "JOURNAL_STREAM" in os.environ
    for res in results:
        print((PRIORITIES[res["status"]] if prefix else "") + format_line(res), flush=True)
    return EXIT_CODES[worst(r["status"] for r in results)]


if __name__ == "__main__":
    sys.exit(main())
