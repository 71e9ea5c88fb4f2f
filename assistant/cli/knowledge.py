"""`autodidact knowledge add PATH... | list | remove ID`: the knowledge documents, without the web app.

    autodidact knowledge add ~/notes ~/papers/survey.pdf   # files and whole folders
    autodidact knowledge list --json                         # for programs
    autodidact knowledge remove 12

Owns these commands' arguments and output: the progress bar, one line per file, the summary,
the table. Parsing, embedding and storing are the library's (feedback/knowledge/library.py,
built by assistant/wiring.py), so a file added here is the same as one added in the browser.
A Ctrl-C while adding finishes the file under way and stops: every file the command reported
is whole, and the same command again resumes (the library's content hash skips finished files).
"""

from __future__ import annotations

import argparse
import json
import signal
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

from assistant.cli.command import Command, settings_flags
from feedback.knowledge.parse import human_size

INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C
STATUSES = ("added", "replaced", "reindexed", "unchanged", "refused")


# The settings it uses: the user's documents under home, and how they are read and searched.
USES = ("storage", "user", "knowledge")


def arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, help="what to do")
    add = actions.add_parser(
        "add",
        help="add files and folders (searched recursively)",
        description="Add files and folders (searched recursively): .txt, .md, .pdf, .html, "
        ".docx. One line per file, then a summary. Exit code 0 when every file was added, "
        "replaced or unchanged; 1 when any was refused (the others are still added). Ctrl-C "
        "finishes the file under way and stops (exit code 130); the same command again resumes.",
    )
    add.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders")
    listing = actions.add_parser("list", help="the documents: id, name, kind, size, passages")
    listing.add_argument("--json", action="store_true", help="print JSON, for programs")
    remove = actions.add_parser("remove", help="remove a document with all its passages")
    remove.add_argument("document", type=int, metavar="ID", help="a document id (see `list`)")
    for action in (add, listing, remove):
        settings_flags(action, USES)


def knowledge_command(args, settings) -> int:
    from assistant.wiring import private_home
    from store.conversations import ConversationStore
    from store.db import open_database

    private_home(settings)
    engine = open_database(settings.effective_database_url)
    user_id = ConversationStore(engine).user(settings.user).id
    run = {"add": add_command, "list": list_command, "remove": remove_command}[args.action]
    return run(args, settings, engine, user_id)


def add_command(args, settings, engine, user_id) -> int:
    from assistant.llm.embedder import Embedder
    from assistant.wiring import build_library
    from feedback.knowledge.files import find_files
    from feedback.knowledge.library import Added

    files, skipped = find_files(args.paths)
    results = [Added(p.name, "refused", message=f"{p}: {why}") for p, why in skipped]
    for result in results:
        print(result.line())
    library = build_library(settings, engine, embedder=Embedder() if files else no_embedding)
    try:
        stopped = add_files(library, files, user_id, results)
    except KeyboardInterrupt:  # the second Ctrl-C: the file under way may be left out
        stopped = True
    print(summary(results, library.documents(user_id)))
    if stopped:
        done = len(results) - len(skipped)
        print(f"Stopped after {done} of {len(files)} file(s): run the same command to resume.")
        return INTERRUPTED
    return 1 if any(r.status == "refused" for r in results) else 0


def add_files(library, files: list[Path], user_id: int, results: list) -> bool:
    """Add `files` one by one under a progress bar naming the one under way, appending each
    result to `results` and printing its line; returns whether a Ctrl-C stopped it early."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    # Transient: the file lines stay, the bar goes; into a pipe or file it is not drawn at all.
    shown = Console().is_terminal
    progress = Progress(*columns, TimeRemainingColumn(), transient=True, disable=not shown)
    with progress as bar, stop_requested() as stop:
        task = bar.add_task("", total=len(files))
        for path in files:
            if stop():
                return True
            bar.update(task, description=f"Adding {escape(path.name)}")
            results.append(library.add_file(path, user_id))
            print(results[-1].line())
            bar.advance(task)
    return False


@contextmanager
def stop_requested():
    """Turns the first Ctrl-C into a request to stop between files (`stop()` says whether one
    came), so no file is left half added; a second Ctrl-C stops at once."""
    asked: list[bool] = []

    def on_interrupt(signum, frame):
        asked.append(True)
        signal.signal(signal.SIGINT, previous)
        print("Stopping after this file (Ctrl-C again to stop now)...")

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield lambda: bool(asked)
    finally:
        signal.signal(signal.SIGINT, previous)


def summary(results, documents) -> str:
    """The last line of `add`: what each file came to, and the passages they brought."""
    counts = Counter(r.status for r in results)
    new = sum(r.chunks for r in results if r.status in ("added", "replaced"))
    held = sum(d.chunks for d in documents)
    shown = [s for s in STATUSES if s != "reindexed" or counts[s]]  # rare: after a crash
    each = ", ".join(f"{counts[s]} {s}" for s in shown)
    return f"{each}; {new} new passage(s), {held} in {len(documents)} document(s) in all."


def list_command(args, settings, engine, user_id) -> int:
    from store.knowledge import KnowledgeStore

    # Listing reads rows only: no embedder, no vector index to open.
    documents = KnowledgeStore(engine).documents(user_id)
    if args.json:
        print(json.dumps([as_json(d) for d in documents], indent=2, ensure_ascii=False))
    elif not documents:
        print("No documents yet: add some with `autodidact knowledge add PATH`.")
    else:
        show_table(documents)
    return 0


def as_json(doc) -> dict:
    return {
        "id": doc.id,
        "name": doc.name,
        "kind": doc.kind,
        "size_bytes": doc.size_bytes,
        "passages": doc.chunks,
        "created_at": doc.created_at.isoformat(),
        "updated_at": doc.updated_at.isoformat(),
    }


def show_table(documents) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold")
    for name, justify in [("id", "right"), ("name", "left"), ("kind", "left"),
                          ("size", "right"), ("passages", "right"), ("added", "left"),
                          ("updated", "left")]:  # fmt: skip
        table.add_column(name, justify=justify, overflow="fold")
    for d in documents:
        table.add_row(
            str(d.id),
            Text(d.name),  # a Text, so a name with [brackets] is not read as markup
            d.kind,
            human_size(d.size_bytes),
            str(d.chunks),
            f"{d.created_at.astimezone():%Y-%m-%d %H:%M}",  # stored in UTC, shown in local time
            f"{d.updated_at.astimezone():%Y-%m-%d %H:%M}",
        )
    Console().print(table)


def no_embedding(texts):
    raise RuntimeError("removing a document embeds nothing")


def remove_command(args, settings, engine, user_id) -> int:
    from assistant.wiring import build_library

    # Removing embeds nothing: the embedder, a second's load, is not built.
    library = build_library(settings, engine, embedder=no_embedding)
    doc = library.remove(args.document)
    print(f"Removed document {doc.id} “{doc.name}” and its {doc.chunks} passage(s).")
    return 0


COMMANDS = [
    Command(
        "knowledge",
        "add, list and remove the documents answers are grounded in",
        knowledge_command,
        arguments,
        # A refused file is a line of `add`'s output, not an error; an unknown id is one.
        errors=(LookupError,),
        uses=USES,
    )
]
