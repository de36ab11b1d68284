"""Make the filter plugins importable as plain modules: they are pure Python."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "filter_plugins"))

# Hypothesis's default 200 ms deadline per example measures the machine, not the code: on a loaded
# 2-core CI machine it fails tests that pass alone. Examples still run; only the timer is off.
from hypothesis import settings  # noqa: E402

settings.register_profile("orthanc-remote", deadline=None)
settings.load_profile("orthanc-remote")
