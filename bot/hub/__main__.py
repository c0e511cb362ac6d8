"""`python -m bot.hub --root DIR --port N`: run the embedded Hub in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path

from bot.hub import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bot.hub", description=__doc__)
    parser.add_argument("--root", type=Path, required=True, help="storage directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--config", type=Path, default=None, help="accounts/faults YAML")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    serve(args.root, args.host, args.port, args.config, args.log_level)


if __name__ == "__main__":
    main()
