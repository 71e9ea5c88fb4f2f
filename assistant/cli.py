"""The `autodidact` command: subcommands and start-up. Owns argument parsing and turning
start-up failures (a missing model, a database that cannot be opened) into one readable line.

`serve` starts the web app; later subcommands (grading, export, refresh) hang off the same parser.
"""

from __future__ import annotations

import argparse
import os
import sys

from assistant.settings import add_flags, from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autodidact", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the chat web app")
    add_flags(serve)
    return parser


# A private assistant phones nobody: no usage analytics, no model hub look-ups.
OFFLINE = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
}


def main(argv: list[str] | None = None) -> int:
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    try:
        settings, flags = from_args(args)
    except Exception as exc:  # pydantic's ValidationError: bad values from flags or env
        print(f"autodidact: invalid settings: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        from assistant.app import serve

        return serve(settings, flags)
    return 1


if __name__ == "__main__":
    sys.exit(main())
