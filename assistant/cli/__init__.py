"""The `autodidact` command: one table of subcommands, and the one place errors become exit codes.

Owns argument parsing (each command adds its own arguments and takes the flags of the settings
it uses; every setting applies to every command through its environment variable) and turning
failures a user can act on (a missing model, an unknown id, a busy refresh, an unwritable file)
into one readable line and exit code 1; invalid settings exit with 2. The commands live beside
this file, one module per concern; only `serve` imports Gradio.
"""

from __future__ import annotations

import argparse
import os
import sys

from assistant.cli import grade, knowledge, pool, refresh, serve, users
from assistant.cli.command import Command
from assistant.llm.base import ModelError
from assistant.settings import add_flags, from_args
from feedback.refresh.pipeline import RefreshBusy

COMMANDS: list[Command] = [
    *serve.COMMANDS,
    *grade.COMMANDS,
    *pool.COMMANDS,
    *refresh.COMMANDS,
    *knowledge.COMMANDS,
    *users.COMMANDS,
]

# A private assistant phones nobody: no usage analytics, no model hub look-ups.
OFFLINE = {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autodidact", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        p = sub.add_parser(command.name, help=command.help)
        command.arguments(p)
        add_flags(p, command.uses)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # what any command writes (database, vectors, adapters) is its owner's alone
    for key, value in OFFLINE.items():
        os.environ.setdefault(key, value)
    args = build_parser().parse_args(argv)
    try:
        settings, args.given = from_args(args)
    except Exception as exc:  # pydantic's ValidationError: bad values from flags or env
        print(f"autodidact: invalid settings: {exc}", file=sys.stderr)
        return 2
    command = next(c for c in COMMANDS if c.name == args.command)
    try:
        return command.run(args, settings)
    except (ModelError, RefreshBusy, *command.errors) as exc:
        print(f"autodidact: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a model, home folder, --out or --file that cannot be used
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"autodidact: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
