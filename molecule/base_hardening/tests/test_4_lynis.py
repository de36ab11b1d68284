"""A third-party auditor's view: lynis (Debian's package) in the hardened server and in a plain
container of the same image, side by side. The server must score at least 75 and show no warning
the plain container does not show too (no warning is caused by our configuration)."""

import re
import subprocess

MINIMUM = 75


def _audit(container: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["docker", "exec", container, "sh", "-c",
         "lynis audit system --quick --no-colors >/dev/null 2>&1; cat /var/log/lynis-report.dat"],
        stdout=subprocess.PIPE, text=True,
    )


def _summary(report: str) -> tuple[int, list[str]]:
    index = re.search(r"^hardening_index=(\d+)$", report, re.M)
    assert index, report[-2000:]
    warnings = sorted(set(re.findall(r"^warning\[\]=([^|]+\|[^|]*)", report, re.M)))
    return int(index.group(1)), warnings


def test_lynis_hardening_index_side_by_side():
    # Both audits run at once (about two minutes each on two shared cores).
    server_run, plain_run = _audit("mol-hard-server"), _audit("mol-hard-plain")
    server_report, _ = server_run.communicate(timeout=900)
    plain_report, _ = plain_run.communicate(timeout=900)
    server_index, server_warnings = _summary(server_report)
    plain_index, plain_warnings = _summary(plain_report)
    print("\nlynis hardening index      plain image  hardened server")
    print(f"  (lynis audit system --quick) {plain_index:>9}  {server_index:>15}")
    print("  warnings, plain:  " + ("; ".join(plain_warnings) or "none"))
    print("  warnings, server: " + ("; ".join(server_warnings) or "none"))
    suggestions = sorted(set(re.findall(r"^suggestion\[\]=([^|]+\|[^|]*)", server_report, re.M)))
    print("  suggestions left on the server: " + "; ".join(suggestions))
    assert server_index >= MINIMUM, (server_index, server_warnings)
    assert server_index > plain_index
    caused_by_us = [w for w in server_warnings if w not in plain_warnings]
    assert caused_by_us == [], caused_by_us
