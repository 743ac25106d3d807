#!/usr/bin/env python3
"""The long soak and crash loops, printing their figures (see tests/soak.py).

.venv/bin/python scripts/soak.py [--seconds 120] [--concurrency 64] [--cycles 40]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.soak import crash_loop, soak, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the soak")
    parser.add_argument("--concurrency", type=int, default=64, help="clients at once")
    parser.add_argument("--cycles", type=int, default=40, help="kills in the crash loop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        print(
            "soak:", json.dumps(summary(soak(Path(tmp), args.seconds, args.concurrency)), indent=1)
        )
    with tempfile.TemporaryDirectory(prefix="crash-") as tmp:
        print("crash loop:", json.dumps(summary(crash_loop(Path(tmp), args.cycles)), indent=1))


if __name__ == "__main__":
    main()
