"""`mamori demo`: local server on SQLite, demo keys, signed example policy, enrolled agent with tray."""

from __future__ import annotations

import argparse
import sys


def run_demo(args: argparse.Namespace) -> int:
    print(
        "mamori demo is not built yet: it will create demo keys, sign policy/examples/standard.toml, start the\n"
        "server on SQLite on loopback, enroll the local agent and run it with the tray.",
        file=sys.stderr,
    )
    return 1
