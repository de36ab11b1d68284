#!/usr/bin/env python3
"""Write many OpenVPN profiles on the controller in one go (role openvpn_easyrsa).

Usage: write_profiles.py DIR [--check] < {"name": "profile text", ...}
Each file is written atomically (temporary file + rename) with mode 0600 in DIR (made 0700).
Prints {"written": [names]}. With --check nothing is written.
"""

import json
import os
import sys
import tempfile


def main(argv):
    directory, check = argv[0], "--check" in argv[1:]
    profiles = json.load(sys.stdin)
    if not check:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        for name, text in sorted(profiles.items()):
            if "/" in name or name.startswith("."):
                sys.exit(f"refusing profile name {name!r}")
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, os.path.join(directory, name + ".ovpn"))
    print(json.dumps({"written": sorted(profiles)}))


if __name__ == "__main__":
    main(sys.argv[1:])
