"""Make the filter plugins importable as plain modules: they are pure Python."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "filter_plugins"))
