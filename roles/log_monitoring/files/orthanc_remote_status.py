#!/usr/bin/python3
"""orthanc-remote-status: the latest result of every orthanc-remote check, read from the journal.

Usage: orthanc-remote-status [--since '3 days ago'] [--json]

The checks (orthanc-remote-check, run by systemd timers) log one line per result under the
identifier orthanc-remote-check. This prints the newest line of each (check, target), worst
first, and exits with the worst status: 0 OK, 1 WARNING, 2 CRITICAL (3 when nothing was found).
Python 3 standard library only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shlex
import subprocess
import sys
from typing import Iterable

IDENTIFIER = "orthanc-remote-check"
STATUSES = ("OK", "WARNING", "CRITICAL")


def parse_line(line: str) -> dict:
    """``check=... target=... status=... k=v`` -> dict (shell-style quoting)."""
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


def message_text(entry: dict) -> str:
    """journalctl -o json gives MESSAGE as a string, or as a list of bytes when not UTF-8."""
    message = entry.get("MESSAGE", "")
    if isinstance(message, list):
        return bytes(message).decode("utf-8", "replace")
    return str(message or "")


def latest_results(entries: Iterable[dict]) -> "list[dict]":
    """Newest result per (check, target), sorted worst first then by check and target."""
    latest: dict = {}
    for entry in entries:
        fields = parse_line(message_text(entry))
        if not {"check", "target", "status"} <= fields.keys():
            continue
        stamp = int(entry.get("__REALTIME_TIMESTAMP", 0))
        key = (fields["check"], fields["target"])
        if key not in latest or stamp >= latest[key]["timestamp"]:
            latest[key] = {"timestamp": stamp, **fields}
    rank = {s: i for i, s in enumerate(STATUSES)}
    return sorted(
        latest.values(),
        key=lambda r: (-rank.get(r["status"], len(STATUSES)), r["check"], r["target"]),
    )


def exit_code(results: "list[dict]") -> int:
    if not results:
        return 3
    return max({"OK": 0, "WARNING": 1}.get(r["status"], 2) for r in results)


def render(results: "list[dict]") -> str:
    """A fixed-width table: time (UTC), status, check, target, details."""
    if not results:
        return f"no {IDENTIFIER} results in the journal (are the orthanc-remote-check-*.timer units active?)\n"
    rows = []
    for res in results:
        when = dt.datetime.fromtimestamp(res["timestamp"] / 1e6, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        details = " ".join(
            f"{k}={shlex.quote(v)}" for k, v in res.items() if k not in ("timestamp", "check", "target", "status")
        )
        rows.append((when, res["status"], res["check"], res["target"], details))
    header = ("LAST RUN", "STATUS", "CHECK", "TARGET", "DETAILS")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(4)]
    lines = []
    for row in [header] + rows:
        lines.append("  ".join(row[i].ljust(widths[i]) for i in range(4)) + "  " + row[4])
    return "\n".join(line.rstrip() for line in lines) + "\n"


def read_journal(since: str) -> "list[dict]":
    proc = subprocess.run(
        ["journalctl", "--no-pager", "-o", "json", "-t", IDENTIFIER, "--since", since],
        capture_output=True,
        text=True,
        check=False,
    )
    entries = []
    for line in proc.stdout.splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue
    return entries


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="orthanc-remote-status", description=__doc__.splitlines()[0])
    parser.add_argument("--since", default="3 days ago", help="how far back to look (journalctl --since)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    results = latest_results(read_journal(args.since))
    if args.json:
        print(json.dumps(results, indent=2, sort_keys=True))
    else:
        sys.stdout.write(render(results))
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
