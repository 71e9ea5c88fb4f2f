"""The `autodidact` command: subcommands and start-up. Owns argument parsing and turning
start-up failures (a missing model, a database that cannot be opened) into one readable line.

`serve` starts the web app, `grade --backlog` grades what waits; the training pool's commands
(rate, correct, delete, export, pool, history) live in assistant/pool_cli.py.
"""

from __future__ import annotations

import argparse
import os
import sys

from assistant import refresh_cli
from assistant.pool_cli import COMMANDS, add_commands
from assistant.pool_cli import run as run_pool_command
from assistant.settings import add_flags, from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autodidact", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the chat web app")
    add_flags(serve)
    grade = sub.add_parser("grade", help="self-grade answers from the command line")
    grade.add_argument(
        "--backlog",
        action="store_true",
        required=True,
        help="grade every answer still waiting for a grade, with a progress bar",
    )
    add_flags(grade)
    add_commands(sub)
    refresh_cli.add_commands(sub)
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
    if args.command == "grade":
        return grade_backlog_command(settings)
    if args.command in COMMANDS:
        return run_pool_command(args, settings)
    if args.command in ("refresh", "adapters", "rollback"):
        return refresh_cli.run(args, settings)
    return 1


def grade_backlog_command(settings) -> int:
    from rich.progress import Progress

    from assistant.app import build_curator, build_grader
    from assistant.model import ModelError, load_model
    from feedback.worker import GradingWorker, grade_backlog
    from store.db import open_database
    from store.grading import GradingStore

    try:
        engine = open_database(settings.effective_database_url)
        model = load_model(settings)
        grader = build_grader(settings, model)
    except ModelError as exc:
        print(f"autodidact: {exc}", file=sys.stderr)
        return 1
    grading = GradingStore(engine)
    curator = build_curator(settings, engine)
    worker = GradingWorker(
        grader,
        grading,
        max_attempts=settings.grading_max_attempts,
        on_graded=lambda exchange_id: curator.update([exchange_id]),
    )
    pending = grading.counts().get("pending", 0) + grading.counts().get("running", 0)
    with Progress() as bar:
        task = bar.add_task("Grading", total=pending or 1)
        done = grade_backlog(worker, lambda n, total: bar.update(task, completed=n, total=total))
        bar.update(task, completed=max(done, 1), total=max(done, 1))
    counts = grading.counts()
    flagged = sum(1 for _ in grading.flagged(limit=10**9))
    print(
        f"Graded {done} job(s): {counts.get('done', 0)} done, {counts.get('failed', 0)} failed, "
        f"{counts.get('pending', 0)} pending; {flagged} flagged in total."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
