"""`python -m examples.demo_migrator --port 8050 --loom-url http://localhost:3000 --data-dir data/demo`."""

from __future__ import annotations

import argparse
import os

from examples.demo_migrator import run_demo_migrator


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.demo_migrator", description=__doc__)
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOOM_DEMO_PORT", "8050")))
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--loom-url", default=os.environ.get("LOOM_URL", "http://localhost:3000"))
    parser.add_argument("--data-dir", default=os.environ.get("LOOM_DEMO_DATA_DIR", "data/demo"))
    parser.add_argument("--merge-delay", type=float, default=5.0, help="seconds before a bump PR merges")
    args = parser.parse_args(argv)
    run_demo_migrator(args.port, args.loom_url, args.data_dir, args.merge_delay, args.host)


if __name__ == "__main__":
    main()
