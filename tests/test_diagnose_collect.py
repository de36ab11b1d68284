"""playbooks/files/diagnose_collect.py: only recent log lines count, whatever the year boundary."""

from __future__ import annotations

import datetime as dt
import importlib.util
import pathlib

SPEC = importlib.util.spec_from_file_location(
    "diagnose_collect", pathlib.Path(__file__).resolve().parents[1] / "playbooks" / "files" / "diagnose_collect.py")
collect = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(collect)

NOW = dt.datetime(2027, 1, 1, 0, 30, 0)


def test_orthanc_lines_carry_no_year_and_december_is_last_year_in_january():
    assert collect.orthanc_line_time("W1231 23:59:00.000000 x.cpp:1] late", NOW) == dt.datetime(2026, 12, 31, 23, 59)
    assert collect.orthanc_line_time("E0101 00:10:00.000000 x.cpp:1] early", NOW) == dt.datetime(2027, 1, 1, 0, 10)
    assert collect.orthanc_line_time("not a log line", NOW) is None
    assert collect.orthanc_line_time("W0231 10:00:00.0 impossible date", NOW) is None


def test_only_lines_since_the_window_are_kept_continuations_follow_their_line():
    lines = ["W1231 22:00:00.000000 a.cpp:1] an hour and a half ago", "   continuation of the old line",
             "E1231 23:45:00.000000 b.cpp:2] fifteen minutes ago", "   continuation of the new line"]
    kept = collect.recent(lines, lambda line: collect.orthanc_line_time(line, NOW), NOW - dt.timedelta(minutes=60))
    assert kept == lines[2:]


def test_nginx_access_lines_are_read_with_their_zone():
    line = '127.0.0.1 - dr-one [01/Dec/2026:23:47:41 +0000] "GET /system HTTP/1.1" 401 0 "-" "curl"'
    stamp = collect.access_line_time(line)
    utc = dt.datetime(2026, 12, 1, 23, 47, 41, tzinfo=dt.timezone.utc).astimezone().replace(tzinfo=None)
    assert stamp == utc
    assert collect.access_line_time("garbage") is None
