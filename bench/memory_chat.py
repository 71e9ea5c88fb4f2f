"""The larger fact set through the chat: taught once, is each fact answered for a rewording?

bench/memory_lookup.py measures the lookup alone on bench/data/memory_facts.jsonl (308 invented
facts whose subjects share names and wordings); this runs the same facts end to end. A new
home (SQLite, Chroma on disk, the offline embedder), the real chat service and curator: every
fact is asked and corrected as a user would (a stand-in model gives the wrong answer that is
corrected, tests/fakes.py), then the embedded model, through the product's llama.cpp engine
and the app's settings (sampling with a fixed seed), answers in a new conversation:
  - one rewording per fact (the fact's position picks which of its four): recall is the fact's
    keyword in the answer; also in the model's own words (without the correction the chat
    restated under it, `retrieval_restate`), and whether the memory drew on the fact's own
    correction first;
  - the questions about subjects nobody taught (near misses, as written and in lower case)
    and the unrelated questions of bench/data/learning_facts.jsonl: a false restatement is a
    correction put under one of their answers; leakage is a taught keyword in their answer that
    the same question's answer before any teaching (same seed) did not have.
Even facts are the development half, odd the test half, as in bench/memory_lookup.py.

    .venv/bin/python -m bench.memory_chat [--facts 308] [--untaught N] [--max-tokens 96] [--seed 0]
        [--threads N] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.harness import RESULTS, command_line, commit, new_home, progress, table, write_result
from bench.learning_checks import contains
from bench.memory_lookup import load
from store.restated import model_words


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--facts", type=int, default=308)
    p.add_argument("--untaught", type=int, default=None, help="the first N untaught questions")
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=RESULTS / "memory_chat.json")
    return p.parse_args()


def services(args):
    """A chat service over a stand-in model (for teaching) and one over the embedded model,
    sharing one store and curator."""
    from assistant.chat import ChatService
    from assistant.llm.embedder import Embedder
    from assistant.llm.weights import open_gguf
    from assistant.settings import Settings
    from assistant.wiring import build_curator
    from store.conversations import ConversationStore
    from store.db import open_database
    from tests.fakes import FakeModel

    settings = Settings(
        home=new_home(prefix="autodidact-memory-chat-"),
        pool_max_user_share=1.0,
        grading=False,
        seed=args.seed,
        max_tokens=args.max_tokens,
        rate_limit_messages=0,
    )
    store = ConversationStore(open_database(settings.effective_database_url))
    curator = build_curator(settings, store.engine, Embedder(threads=1))
    teacher = ChatService(store, FakeModel(), settings, curator)
    engine = open_gguf(None, settings.context_window, args.threads)
    return teacher, ChatService(store, engine, settings, curator)


def answer(chat, question: str) -> tuple[str, list[int]]:
    *_, final = chat.send(None, question)
    return final.text, [e.exchange_id for e in final.examples]


def run(args) -> dict:
    from tests.fakes import ask

    facts, untaught = load()  # each fact's rewordings, then the same in lower case
    facts, untaught = facts[: args.facts], untaught[: args.untaught]
    teacher, chat = services(args)
    keywords = [f["keyword"] for f in facts]
    rows, others = [], []
    with progress() as bar:
        task = bar.add_task("untaught, before teaching", total=len(untaught))
        before = {}
        for question in untaught:
            before[question] = answer(chat, question)[0]
            bar.advance(task)
        task = bar.add_task("teaching", total=len(facts))
        taught = {}
        for fact in facts:
            final = ask(teacher, fact["question"], "I do not know.")
            teacher.correct(final.exchange_id, fact["answer"])
            taught[fact["id"]] = final.exchange_id
            bar.advance(task)
        task = bar.add_task("rewordings", total=len(facts))
        for number, fact in enumerate(facts):
            question = fact["paraphrases"][number % 4]
            text, drew = answer(chat, question)
            own = model_words(text)
            rows.append({"fact": fact["id"], "question": question, "answer": text,
                         "recalled": contains(fact["keyword"], text),
                         "recalled_model": contains(fact["keyword"], own),
                         "restated": own != text,
                         "drew_on_it_first": bool(drew) and drew[0] == taught[fact["id"]],
                         "half": "dev" if number % 2 == 0 else "test"})  # fmt: skip
            bar.advance(task)
        task = bar.add_task("untaught", total=len(untaught))
        for question in untaught:
            text, drew = answer(chat, question)
            others.append({"question": question, "answer": text, "drew_on": drew,
                           "restated": model_words(text) != text,
                           "before": before[question],
                           "leaked": [k for k in keywords if contains(k, text)
                                      and not contains(k, before[question])]})  # fmt: skip
            bar.advance(task)
    return {"commit": commit(), "command": command_line(), "facts": len(facts),
            "rewordings": rows, "untaught": others}  # fmt: skip


def rate(rows: list[dict], key: str) -> str:
    return f"{sum(bool(r[key]) for r in rows) / max(len(rows), 1):.1%}"


def main() -> int:
    args = arguments()
    result = run(args)
    rows, others = result["rewordings"], result["untaught"]
    halves = {h: [r for r in rows if r["half"] == h] for h in ("dev", "test")}
    lines = [[len(rows), rate(rows, "recalled"), rate(halves["dev"], "recalled"),
              rate(halves["test"], "recalled"), rate(rows, "recalled_model"),
              rate(rows, "restated"), rate(rows, "drew_on_it_first"), len(others),
              rate(others, "restated"), rate(others, "leaked")]]  # fmt: skip
    result["table"] = lines
    table(
        f"{result['facts']} facts through the chat, commit {result['commit']}",
        ["rewordings", "recall", "dev", "test", "model's words alone", "restated",
         "drew on it first", "untaught questions", "restated there", "leakage"],
        lines,
    )  # fmt: skip
    write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
