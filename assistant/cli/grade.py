"""`autodidact grade --backlog`: grade every answer still waiting, with a progress bar.
`autodidact grade --calibrate`: fit the grading signals to the thumbs given so far, adopted only
when the fit ranks held-out thumbs better than the score in use (one summary line)."""

from __future__ import annotations

from assistant.cli.command import Command


def arguments(parser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--backlog",
        action="store_true",
        help="grade every answer still waiting for a grade, with a progress bar",
    )
    what.add_argument(
        "--calibrate",
        action="store_true",
        help="fit the grading signals' weights to the thumbs given so far (no model needed)",
    )


def grade_command(args, settings) -> int:
    if args.calibrate:
        return calibrate_command(args, settings)
    return grade_backlog_command(args, settings)


def calibrate_command(args, settings) -> int:
    from assistant.wiring import build_calibrator
    from feedback.grading.calibrate import summary
    from store.db import open_database

    engine = open_database(settings.effective_database_url)
    print(summary(build_calibrator(settings, engine).run()))
    return 0


def grade_backlog_command(args, settings) -> int:
    from rich.progress import Progress

    from assistant.wiring import build_curator, build_worker, load_model
    from feedback.grading.worker import grade_backlog
    from store.db import open_database

    engine = open_database(settings.effective_database_url)
    curator = build_curator(settings, engine)
    worker = build_worker(
        settings,
        engine,
        load_model(settings),
        curator,
        on_graded=lambda exchange_id: curator.update([exchange_id]),
    )
    grading = worker.grading
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


# The settings it uses: the answering model, the grader (with its references), the calibration,
# and the pool's, whose curator follows each grade.
USES = ("storage", "model", "max_tokens", "system_prompt", "grading", "references")
USES += ("calibration", "pool")
COMMANDS = [
    Command(
        "grade",
        "self-grade answers from the command line",
        grade_command,
        arguments,
        uses=USES,
    )
]
