#!/usr/bin/env python3
"""The runbook's "Create Manual Backup" command: runs `echopilot backup`.

The binary is found on PATH, else at target/release/echopilot (then target/debug)
beside this script's repository. Arguments are passed on (`--home DIR`, `verify FILE`,
`list`); the exit code is echopilot's.
"""
import os
import shutil
import subprocess
import sys


def find_binary():
    found = shutil.which("echopilot")
    if found:
        return found
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for profile in ("release", "debug"):
        candidate = os.path.join(root, "target", profile, "echopilot")
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def main():
    binary = find_binary()
    if binary is None:
        sys.stderr.write(
            "disaster_recovery.py: echopilot not found on PATH or in target/release/ "
            "(build it with `cargo build --release`)\n"
        )
        return 127
    return subprocess.call([binary, "backup", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
