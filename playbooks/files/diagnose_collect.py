#!/usr/bin/python3
"""Read a PACS server's state for `playbooks/diagnose.yml`: read-only, one JSON document on stdout.

Argument: a JSON object with the paths to read (orthanc_log, nginx_access_log, vpn_status,
certificates [{path, role, ca}]). Runs as root (sockets, fail2ban, logs). Python 3 standard
library only; calls orthanc-remote-check (installed by log_monitoring), ss, ufw, fail2ban-client
and openssl. Changes nothing: no check notifies, no file is written.
"""

from __future__ import annotations

import ast
import collections
import datetime as dt
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys

ACCESS_LINE = re.compile(r'^(?P<source>\S+) \S+ (?P<user>\S+) \[[^\]]*\] "[^"]*" (?P<status>\d{3}) ')


def run(argv: list[str], timeout: int = 60) -> tuple[int, str]:
    """A command's exit code and its output (stdout and stderr)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 127, str(exc)
    return done.returncode, done.stdout + done.stderr


def tail(path: str, lines: int) -> list[str]:
    """The last ``lines`` lines of a text file ([] when it cannot be read)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - lines * 300))
            return handle.read().decode("utf-8", "replace").splitlines()[-lines:]
    except OSError:
        return []


def orthanc_line_time(line: str, now: dt.datetime) -> dt.datetime | None:
    """When an Orthanc log line was written (``W1201 10:00:00.123456 ...``: no year, local time)."""
    match = re.match(r"^[EWIT](\d{2})(\d{2}) (\d{2}):(\d{2}):(\d{2})", line)
    if not match:
        return None
    month, day, hour, minute, second = (int(g) for g in match.groups())
    try:
        when = dt.datetime(now.year, month, day, hour, minute, second)
    except ValueError:
        return None
    return when.replace(year=now.year - 1) if when > now + dt.timedelta(days=1) else when


def access_line_time(line: str) -> dt.datetime | None:
    """When an nginx access-log line was written (``[01/Dec/2026:23:47:41 +0000]``), naive local time."""
    match = re.search(r"\[(\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\]", line)
    if not match:
        return None
    return dt.datetime.strptime(match.group(1), "%d/%b/%Y:%H:%M:%S %z").astimezone().replace(tzinfo=None)


def recent(lines: list[str], when, since: dt.datetime) -> list[str]:
    """The lines written at or after ``since`` (a line without a readable time follows the previous one)."""
    kept, keep = [], False
    for line in lines:
        stamp = when(line)
        keep = stamp >= since if stamp is not None else keep
        if keep:
            kept.append(line)
    return kept


def checks() -> dict:
    """orthanc-remote-check's results, parsed (``check=... target=... status=...`` lines)."""
    if not shutil.which("orthanc-remote-check"):
        return {"checks_error": "orthanc-remote-check is not installed (log_monitoring not applied)"}
    _, out = run(["orthanc-remote-check", "--no-notify", "all"], timeout=120)
    results = []
    for line in out.splitlines():
        if line.startswith("check="):
            try:
                results.append(dict(token.split("=", 1) for token in shlex.split(line) if "=" in token))
            except ValueError:
                continue
    return {"checks": results}


def listening() -> list[dict]:
    """Listening TCP and UDP sockets: proto, address, port."""
    _, out = run(["ss", "-H", "-lntu"])
    sockets = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 5 and ":" in fields[4]:
            address, _, port = fields[4].rpartition(":")
            if port.isdigit():
                sockets.append({"proto": fields[0], "address": address, "port": int(port)})
    return sockets


def http_guard(table: str) -> str:
    """The nftables table that keeps Orthanc's HTTP port to loopback ("" when it is not loaded)."""
    if not table or not shutil.which("nft"):
        return ""
    code, out = run(["nft", "list", "table", *table.split()])
    return out if code == 0 else ""


def https_refusals(path: str, since: dt.datetime) -> list[dict]:
    """Refused HTTPS logins (status 401) per user and source, from nginx's access log."""
    counts: collections.Counter = collections.Counter()
    for line in recent(tail(path, 5000), access_line_time, since):
        match = ACCESS_LINE.match(line)
        if match and match.group("status") == "401" and match.group("user") != "-":
            counts[(match.group("user"), match.group("source"))] += 1
    return [{"user": user, "source": source, "count": n} for (user, source), n in counts.items()]


def vpn_connected(path: str) -> list[str]:
    """Common names of the VPN clients connected now (OpenVPN's status file, version 2 or 3)."""
    names = []
    for line in tail(path, 2000):
        fields = re.split(r"[,\t]", line)
        if fields[0] == "CLIENT_LIST" and len(fields) > 1:
            names.append(fields[1])
    return names


def revoked_clients(pki_dir: str, crl_path: str) -> list[str]:
    """VPN clients whose certificate is in the server's CRL (and that hold no other valid one)."""
    code, out = run(["openssl", "crl", "-noout", "-text", "-in", crl_path])
    if code != 0 or not pki_dir:
        return []
    in_crl = set(re.findall(r"Serial Number: ([0-9A-F]+)", out))
    revoked, valid = set(), set()
    for path in glob.glob(os.path.join(pki_dir, "issued", "*.crt")) + glob.glob(os.path.join(pki_dir, "revoked", "certs_by_serial", "*.crt")):
        code, out = run(["openssl", "x509", "-noout", "-serial", "-subject", "-nameopt", "RFC2253", "-in", path])
        serial = re.search(r"serial=([0-9A-F]+)", out)
        name = re.search(r"CN=([^,\n]+)", out)
        if code == 0 and serial and name:
            (revoked if serial.group(1) in in_crl else valid).add(name.group(1))
    return sorted(revoked - valid)


def bans() -> dict:
    """Banned addresses per fail2ban jail."""
    if not shutil.which("fail2ban-client"):
        return {}
    code, out = run(["fail2ban-client", "banned"])
    if code != 0:
        return {}
    try:
        parsed = ast.literal_eval(out.strip())
    except (SyntaxError, ValueError):
        return {}
    merged: dict = {}
    for entry in parsed if isinstance(parsed, list) else []:
        for jail, addresses in entry.items():
            merged.setdefault(jail, []).extend(addresses)
    return merged


def certificate(item: dict) -> dict:
    """A certificate's SANs and whether it chains to its CA."""
    path = item["path"]
    info = {"path": path, "role": item.get("role"), "ca": item.get("ca")}
    code, out = run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", path])
    if code != 0:
        return dict(info, error=(out.strip().splitlines() or ["unreadable"])[-1][:200])
    info["san"] = [entry.split(":", 1)[1] for entry in re.split(r",\s*", out.split("\n", 1)[-1].strip()) if ":" in entry]
    if item.get("ca") and os.path.exists(item["ca"]):
        code, out = run(["openssl", "verify", "-CAfile", item["ca"], path])
        info["chain"] = code == 0
        if code != 0:
            info["chain_error"] = out.strip().splitlines()[-1][:200] if out.strip() else ""
    return info


def resources() -> dict:
    """Load, cores and memory."""
    meminfo = {}
    for line in tail("/proc/meminfo", 100):
        key, _, value = line.partition(":")
        meminfo[key] = int(value.split()[0]) if value.split() else 0
    return {"load1": os.getloadavg()[0], "cores": os.cpu_count() or 1,
            "mem_total_kb": meminfo.get("MemTotal", 0), "mem_available_kb": meminfo.get("MemAvailable", 0)}


def main() -> int:
    paths = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    # Only what happened lately: a fault fixed an hour ago must not FAIL forever.
    since = dt.datetime.now() - dt.timedelta(minutes=int(paths.get("window_minutes", 60)))
    orthanc_log = tail(paths.get("orthanc_log", "/var/log/orthanc/Orthanc.log"), 3000)
    _, ufw = run(["ufw", "status"])
    state = {
        **checks(),
        "listening": listening(),
        "http_guard": http_guard(paths.get("http_guard_table", "")),
        "verify_probe_aet": paths.get("verify_probe_aet", ""),
        "ufw_active": "Status: active" in ufw,
        "orthanc_log": [line for line in recent(orthanc_log, lambda line: orthanc_line_time(line, dt.datetime.now()), since)
                        if line[:1] in ("E", "W")],
        "https_401": https_refusals(paths.get("nginx_access_log", ""), since),
        "window_minutes": int(paths.get("window_minutes", 60)),
        "vpn_connected": vpn_connected(paths.get("vpn_status", "")),
        "vpn_revoked": revoked_clients(paths.get("vpn_pki", ""), paths.get("vpn_crl", "")),
        "bans": bans(),
        "certificates": [certificate(item) for item in paths.get("certificates", []) if os.path.exists(item["path"])],
        "resources": resources(),
    }
    json.dump(state, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
