"""The pool's subcommands: rate, correct, delete, export, pool and history, without the web app.

Owns their arguments and output. Each goes through the same chat service and curator the web
app uses (the chat service runs without a model here: rating, correcting and deleting need
none), so the CLI and the browser cannot disagree about what a thumbs down does.
"""

from __future__ import annotations

from pathlib import Path

from assistant.cli.command import Command

VALUES = {"up": 1, "down": -1, "none": 0}


def rate_arguments(p) -> None:
    from store.conversations import RATING_REASONS

    p.add_argument("exchange", type=int, help="exchange id (see `autodidact history`)")
    p.add_argument("value", choices=sorted(VALUES), help="the rating")
    p.add_argument(
        "--reason",
        action="append",
        default=[],
        choices=RATING_REASONS,
        help="why, for a thumbs down (repeatable)",
    )
    p.add_argument("--comment", help="a comment, for a thumbs down")


def correct_arguments(p) -> None:
    p.add_argument("exchange", type=int, help="exchange id (see `autodidact history`)")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--text", help="the better answer")
    group.add_argument("--file", type=Path, help="read the better answer from a file")


def delete_arguments(p) -> None:
    p.add_argument("conversation", type=int, help="conversation id (see `autodidact history`)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def export_arguments(p) -> None:
    p.add_argument(
        "--format",
        dest="fmt",
        choices=("sft", "dpo", "kto"),
        required=True,
        help="TRL's format: sft (messages), dpo (preference pairs) or kto (thumbs)",
    )
    p.add_argument("--out", type=Path, required=True, help="the .jsonl file to write")


def pool_arguments(p) -> None:
    p.add_argument(
        "action",
        nargs="?",
        choices=["synthesize"],
        help="synthesize: write and grade lessons from the taught answers that have none",
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="judge every exchange again and rebuild the vector index from the rows",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="with synthesize: say which taught answers would get lessons; write nothing",
    )
    p.add_argument(
        "--limit", type=int, metavar="N", help="with synthesize: at most N taught answers"
    )


def history_arguments(p) -> None:
    p.add_argument(
        "conversation", type=int, nargs="?", help="one conversation's turns; none: the list"
    )


def _service(settings):
    """The chat service without a model: rating, correcting and deleting need none."""
    from assistant.wiring import chat_service, private_home
    from store.db import open_database

    private_home(settings)
    return chat_service(settings, open_database(settings.effective_database_url), None)


def rate(args, settings) -> int:
    chat = _service(settings)
    value = VALUES[args.value]
    chat.rate(args.exchange, value, args.reason, args.comment)
    entry = chat.curator.pool.entry(args.exchange)
    said = {1: "thumbs up", -1: "thumbs down", 0: "rating taken back"}[value]
    print(f"Exchange {args.exchange}: {said}.")
    if entry is not None:
        print(f"Training pool: {entry.status} ({entry.reason}).")
    return 0


def correct(args, settings) -> int:
    chat = _service(settings)
    text = args.text if args.text is not None else args.file.read_text(encoding="utf-8")
    chat.correct(args.exchange, text)
    entry = chat.curator.pool.entry(args.exchange)
    print(f"Exchange {args.exchange}: your answer is stored beside the model's.")
    if entry is not None:
        print(f"Training pool: {entry.status} ({entry.reason}).")
    return 0


def delete(args, settings) -> int:
    chat = _service(settings)
    conv = chat.store.conversation(args.conversation)
    if not args.yes:
        reply = input(f"Delete conversation {conv.id} “{conv.title}” and all it holds? [y/N] ")
        if reply.strip().lower() not in ("y", "yes"):
            print("Kept.")
            return 1
    counts = chat.delete(conv.id)
    print(
        f"Deleted conversation {conv.id}: {counts['messages']} messages, "
        f"{counts['exchanges']} exchanges. {counts['pool_entries']} left the training pool "
        f"({counts['training_examples']} were training examples); none will be in any future "
        "training set."
    )
    return 0


def export(args, settings) -> int:
    from rich.progress import Progress

    from feedback.pool.records import export as write
    from store.db import open_database
    from store.pool import PoolStore

    pool = PoolStore(open_database(settings.effective_database_url))
    with Progress() as bar:
        task = bar.add_task(f"Exporting {args.fmt}", total=None)
        counts = write(
            pool,
            args.fmt,
            args.out,
            system=settings.system_prompt,
            progress=lambda n: bar.advance(task, n),
        )
        bar.update(task, total=max(1, sum(counts.values())), completed=sum(counts.values()))
    total = sum(counts.values())
    by_source = ", ".join(f"{n} {source}" for source, n in counts.most_common()) or "nothing"
    print(f"Wrote {total} {args.fmt} record(s) to {args.out}: {by_source}.")
    return 0


def pool(args, settings) -> int:
    from rich.progress import Progress

    from store.lessons import LessonStore

    chat = _service(settings)
    curator = chat.curator
    if args.rebuild:
        total = len(curator.pool.answered_exchange_ids())
        with Progress() as bar:
            task = bar.add_task("Judging exchanges", total=total or 1)
            curator.rebuild(lambda n: bar.advance(task, n))
    if args.action == "synthesize":
        synthesize(args, settings, chat)
    counts = curator.pool.counts()
    if not counts:
        print("The training pool is empty: rate or correct some answers first.")
        return 0
    print(f"{'status':<10} {'source':<16} {'exchanges':>9}")
    for (status, source), n in sorted(counts.items()):
        print(f"{status:<10} {source:<16} {n:>9}")
    lessons = LessonStore(curator.pool.engine).counts()
    for (status, kind), n in sorted(lessons.items()):
        print(f"{status:<10} {'synthetic':<16} {n:>9}  (lessons: {kind})")
    print(f"Vector index: {curator.index.count()} exchange(s).")
    return 0


def held_out_ids(engine, synth) -> set[int]:
    """The parents a refresh keeps out of training (stored, or chosen by the stable hash when
    a refresh first sees them): their lessons would never be trained on."""
    from feedback.refresh.rules import RefreshConfig, held_out
    from store.runs import RunStore

    runs = RunStore(engine)
    stored, trained, share = runs.heldout_ids(), runs.trained_ids(), RefreshConfig().heldout_share
    fresh = [i for i in synth.parents() if i not in stored | trained]
    return stored | {i for i in fresh if held_out(i, share)}


def synthesize(args, settings, chat) -> None:
    """`autodidact pool synthesize`: the refresh's synthesis step, by hand."""
    from rich.progress import Progress

    from assistant.llm.embedder import Embedder
    from assistant.wiring import build_synthesizer, load_judge, local_model

    engine = chat.curator.pool.engine
    if args.dry_run:  # counting needs no model
        synth = build_synthesizer(settings, engine, None, None, None)
    else:
        model = local_model(settings)[1]
        synth = build_synthesizer(settings, engine, model, load_judge(settings), Embedder())
    if args.dry_run:
        parents, todo, stale = synth.plan()
        todo = todo[: args.limit] if args.limit is not None else todo
        print(f"{len(parents)} taught answer(s) in the pool; {len(todo)} would get lessons")
        c = synth.config
        for e in todo:
            print(
                f"  exchange {e.exchange_id}: {c.questions} rewording(s) of {e.prompt[:60]!r}, "
                f"{c.answers} restatement(s) of its answer"
            )
        for pid, why in sorted(stale.items()):
            print(f"  exchange {pid}: its lessons would be withdrawn ({why})")
        return
    with Progress() as bar:
        task = bar.add_task("Writing lessons", total=None)

        def progress(n, total, message):
            bar.update(task, total=max(1, total), completed=n, description=message[:60])

        report = synth.run(progress, limit=args.limit, skip=held_out_ids(engine, synth))
    rate = f"{report.pass_rate:.0%}" if report.pass_rate is not None else "n/a"
    print(
        f"Lessons: {report.kept} kept of {report.written} written for {report.done} taught "
        f"answer(s) (pass rate {rate}); {report.withdrawn} withdrawn; {report.seconds:.0f} s."
    )
    for why, n in sorted(report.reasons.items(), key=lambda x: -x[1]):
        print(f"  {n:>4}  {why}")


def history(args, settings) -> int:
    chat = _service(settings)
    if args.conversation is None:
        for c in chat.conversations():
            print(f"{c.id:>6}  {c.updated_at:%Y-%m-%d %H:%M}  {c.title}")
        return 0
    chat.store.conversation(args.conversation)
    for t in chat.turns(args.conversation):
        print(f"[exchange {t.exchange_id}] user: {t.user}")
        print(f"{'':>{len(str(t.exchange_id)) + 11}}assistant: {t.assistant}")
    return 0


# A refused message or correction, an unknown exchange or conversation.
USER_ERRORS = (ValueError, LookupError)
# The settings each command uses: the chat service without a model, over the user's
# conversations, with the pool's curator (rating, correcting and deleting move the pool); `pool
# synthesize` also writes lessons with the local model and grades them with the grader.
SERVICE = ("storage", "user", "pool")
SYNTHESIS = ("model", "max_tokens", "system_prompt", "grading", "synthesis")

COMMANDS = [
    Command(
        "rate",
        "thumbs up or down an answer (or take the rating back)",
        rate,
        rate_arguments,
        errors=USER_ERRORS,
        uses=SERVICE,
    ),
    Command(
        "correct",
        "store a better answer beside the model's",
        correct,
        correct_arguments,
        errors=USER_ERRORS,
        uses=(*SERVICE, "max_message_chars"),
    ),
    Command(
        "delete",
        "delete a conversation; it leaves the training pool",
        delete,
        delete_arguments,
        errors=USER_ERRORS,
        uses=SERVICE,
    ),
    Command(
        "export",
        "write the training pool in TRL's formats (JSON Lines)",
        export,
        export_arguments,
        errors=USER_ERRORS,
        uses=("home", "database_url", "system_prompt"),
    ),
    Command(
        "pool",
        "the training pool's size by status and source",
        pool,
        pool_arguments,
        errors=USER_ERRORS,
        uses=(*SERVICE, *SYNTHESIS),
    ),
    Command(
        "history",
        "list conversations, or one conversation's exchanges",
        history,
        history_arguments,
        errors=USER_ERRORS,
        uses=SERVICE,
    ),
]
