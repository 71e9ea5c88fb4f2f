"""The memory's lookup, alone: for a reworded question, is the right correction found first?

How: a new home (SQLite, Chroma on disk, the offline embedder) and the real chat service and
curator over a stand-in model (tests/fakes.py: the answers do not matter here). Every fact of
bench/data/memory_facts.jsonl (bench/make_facts.py: 308 invented facts, subjects with two or
three facts each, so they share names and wordings) is asked and corrected, as a user would,
and curated into the pool. Then each rewording (as written, and in lower case) is looked up: the meaning search (Chroma) and
the word search (BM25) run once per question, and every pair of thresholds is applied to their
results offline (feedback/pool/memory.py `fuse`, the same code the chat runs).
  - found first: the question's own correction is the first example; found: among the first
    `--examples`; wrong first: another correction is first; none: nothing found.
  - false hits: anything found for a question nobody taught: questions about subjects nobody
    taught, worded like the taught ones (near misses, also typed in lower case, so the names
    check cannot see them), and the unrelated questions of bench/data/learning_facts.jsonl.
The facts are split by id: even ids choose the thresholds (dev), odd ids report (test). The
chosen pair is the one with the most found-first on dev among those with at most
`--max-false` false hits; the test figures are read at that pair only. Also the median time of
one whole `Curator.examples` call at the chosen pair.

    .venv/bin/python -m bench.memory_lookup [--examples 2] [--max-false 0.02] [--out FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

from bench.harness import (
    RESULTS,
    ROOT,
    command_line,
    commit,
    new_home,
    read_jsonl,
    table,
    write_result,
)
from feedback.pool.english import ENGLISH

FACTS = ROOT / "bench" / "data" / "memory_facts.jsonl"
LEARNING = ROOT / "bench" / "data" / "learning_facts.jsonl"
GRID = {  # 2.0 and 1e9: that rule off
    "taught_similarity": [0.5, 0.55, 0.6, 0.65, 0.7, 0.8, 2.0],
    "min_keywords": [2.0, 3.0, 4.0, 6.0, 1e9],
    "agree_similarity": [0.2, 0.3, 0.4, 0.5, 0.6, 2.0],
    "agree_keywords": [1.0, 1.5, 2.0, 3.0, 1e9],
}


TEXTS: dict[int, tuple[str, str]] = {}  # exchange id: the taught question and answer


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=2, help="examples per prompt (the default)")
    p.add_argument("--max-false", type=float, default=0.02, help="most false hits allowed")
    p.add_argument("--out", type=Path, default=RESULTS / "memory_lookup.json")
    return p.parse_args()


def load() -> tuple[list[dict], list[str]]:
    rows = read_jsonl(FACTS)
    facts = [r for r in rows if r["kind"] == "fact"]
    for fact in facts:  # people type in lower case too: then there are no names to check
        fact["paraphrases"] += [q.lower() for q in fact["paraphrases"]]
    untaught = [r["question"] for r in rows if r["kind"] == "near_miss"]
    untaught += [q.lower() for q in untaught]  # typed without capitals: no names to check
    untaught += [r["question"] for r in read_jsonl(LEARNING) if r["unrelated"]]
    return facts, untaught


def teach(facts: list[dict]):
    """The chat service and curator over a new home, every fact asked and corrected."""
    from rich.progress import track

    from assistant.chat import ChatService
    from assistant.llm.embedder import Embedder
    from assistant.settings import Settings
    from assistant.wiring import build_curator
    from store.conversations import ConversationStore
    from store.db import open_database
    from tests.fakes import FakeModel, ask

    settings = Settings(
        home=new_home(prefix="autodidact-memory-"), pool_max_user_share=1.0, grading=False
    )
    store = ConversationStore(open_database(settings.effective_database_url))
    curator = build_curator(settings, store.engine, Embedder(threads=1))
    chat = ChatService(store, FakeModel(), settings, curator)
    taught = {}
    for fact in track(facts, description="teaching"):
        final = ask(chat, fact["question"], "I do not know.")
        chat.correct(final.exchange_id, fact["answer"])
        taught[fact["id"]] = final.exchange_id
    return chat, taught, settings


def candidates(curator, question: str, k: int) -> tuple[list, list]:
    """Both searches' raw results for one question, before any threshold."""
    masked = curator._mask(question[:4000])[0]
    near = curator.index.nearest_prompts(curator.embed([masked])[0], k * 2)
    return [(n.exchange_id, n.similarity) for n in near], curator.by_words(masked, k * 10)


def outcome(found: list, taught_id: int, k: int) -> str:
    ids = [f.exchange_id for f in found][:k]
    if not ids:
        return "none"
    return "first" if ids[0] == taught_id else ("found" if taught_id in ids else "wrong")


def evaluate(fused: dict, rules, facts: list[dict], untaught: list[str], taught: dict, k: int):
    """(rules, counts on dev and on test, share of false hits) for one set of thresholds; the
    names check as the chat applies it (unless the rules say `names=False`). `fused` holds
    each question's hits with whether each names what the question names, and whether the
    question names anything."""
    check = getattr(rules, "names", True)

    def counts(f, agree: bool, named: bool) -> bool:
        if not check:  # before: meaning alone
            return rules.admits(f)
        return agree and rules.admits(f, True, named)

    kept = {
        q: [f for f, agree in hits if counts(f, agree, named)] for q, (hits, named) in fused.items()
    }
    counts_by = {"dev": {}, "test": {}}
    for fact in facts:
        split = "dev" if int(fact["id"][1:]) % 2 == 0 else "test"
        for q in fact["paraphrases"]:
            o = outcome(kept[q], taught[fact["id"]], k)
            counts_by[split][o] = counts_by[split].get(o, 0) + 1
    return rules, counts_by, sum(bool(kept[q]) for q in untaught) / len(untaught)


def checked(question: str, hits: list, known: frozenset[str]) -> tuple[list, bool]:
    """Each hit with whether it passes the chat's names checks (feedback/pool/curator.py
    `_counts`), and whether the question names anything."""
    from feedback.pool.memory import names, names_agree, names_subject

    def passes(i: int) -> bool:
        prompt, completion = TEXTS[i]
        return names_agree(question, f"{prompt}\n{completion}", known) and names_subject(
            question, prompt, completion, known
        )

    return [(f, passes(f.exchange_id)) for f in hits], bool(names(question, known))


def sweep(fused: dict, facts: list[dict], untaught: list[str], taught: dict, k: int) -> list:
    import itertools

    from feedback.pool.memory import Thresholds

    return [
        evaluate(fused, Thresholds(0.6, *values), facts, untaught, taught, k)
        for values in itertools.product(*GRID.values())
    ]


def share(counts: dict, key: str) -> float:
    return counts.get(key, 0) / max(sum(counts.values()), 1)


def row(name: str, result) -> list:
    rules, counts, false = result
    return [
        name,
        f"{rules.taught_similarity:g} / {rules.min_keywords:g} / "
        f"{rules.agree_similarity:g} + {rules.agree_keywords:g}",
        f"{share(counts['dev'], 'first'):.1%}",
        f"{share(counts['test'], 'first'):.1%}",
        f"{share(counts['test'], 'first') + share(counts['test'], 'found'):.1%}",
        f"{share(counts['test'], 'wrong'):.1%}",
        f"{false:.1%}",
    ]


def main() -> int:
    import dataclasses

    from feedback.pool.memory import Thresholds, fuse

    args = arguments()
    started = commit()
    facts, untaught = load()
    chat, taught, settings = teach(facts)
    curator, k = chat.curator, args.examples
    questions = [q for f in facts for q in f["paraphrases"]] + untaught
    entries = curator.pool.entries(list(taught.values()))
    TEXTS.update({i: (e.prompt, e.completion) for i, e in entries.items()})
    known = ENGLISH  # what the curator checks names against
    fused = {q: checked(q, fuse(*candidates(curator, q, k)), known) for q in questions}
    results = sweep(fused, facts, untaught, taught, k)
    allowed = [r for r in results if r[2] <= args.max_false] or results
    best = max(allowed, key=lambda r: (share(r[1]["dev"], "first"), -r[2]))
    rules = curator.thresholds(0.6)
    default = evaluate(fused, rules, facts, untaught, taught, k)
    false_hits = [
        q for q in untaught
        if any(agree and rules.admits(f, True, fused[q][1]) for f, agree in fused[q][0])
    ]  # fmt: skip
    old = Thresholds(0.6, 0.6, 1e9, 0.6, 1e9)
    object.__setattr__(old, "names", False)  # before: meaning alone, no names check
    before = evaluate(fused, old, facts, untaught, taught, k)
    words = [r for r in allowed if r[0].taught_similarity == 2.0 and r[0].agree_similarity == 2.0]
    words_only = max(words or allowed, key=lambda r: share(r[1]["dev"], "first"))
    chosen = best[0]
    curator.config = dataclasses.replace(
        curator.config,
        retrieval=dataclasses.replace(
            curator.config.retrieval,
            **{f.name: getattr(chosen, f.name) for f in dataclasses.fields(chosen)
               if f.name != "min_similarity"},
        ),
    )  # fmt: skip
    times = []
    for q in questions[:300]:
        start = time.perf_counter()
        curator.examples(q, k, 0.6, user_id=chat.user.id)
        times.append((time.perf_counter() - start) * 1000)
    rows = [
        row("chosen on dev", best),
        row("the defaults", default),
        row("meaning only, 0.6 (before)", before),
        row("words only, best", words_only),
    ]
    table(
        f"memory lookup: {len(facts)} facts, {len(questions) - len(untaught)} rewordings, "
        f"{len(untaught)} untaught questions, commit {started}",
        ["thresholds", "meaning / words / both", "first (dev)", "first (test)",
         "found (test)", "wrong first (test)", "false hits"],
        rows,
    )  # fmt: skip
    median = statistics.median(times)
    print(f"one Curator.examples call: median {median:.1f} ms at {len(facts)} corrections")
    write_result(
        {
            "commit": started,
            "command": command_line(),
            "chosen": dataclasses.asdict(chosen),
            "rows": rows,
            "sweep": [[dataclasses.asdict(r), c, f] for r, c, f in results],
            "lookup_ms_median": median,
            "false_hits_at_defaults": false_hits,
            "when": datetime.now().isoformat(timespec="seconds"),
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
