"""Retrieval cost: the time searching the knowledge documents adds before the first token.

  1. `Library.search` at each size in `--sizes` (default 1,000 and 10,000 passages): embedding
     the question, the Chroma query, the SQL fetch of the passages and their documents. Median
     and p95 over `--questions` questions x `--repeats`, the whole call and each of its three
     parts timed on its own (the parts are called as `search` calls them). Target: <= 50 ms at
     10,000. Not included: the longer prompt the passages make (its prefill is the model's).
  2. The chat's prompt building with and without documents, in the same run on the same
     questions: `ChatService.passages_for` + `build_prompt` with the passages found, against
     `build_prompt` alone (a new conversation, no pool examples), as a ratio; `build_prompt`
     given the passages already found (fitting them in costs a token count per passage); and
     the prompt tokens the passages add.

The knowledge base is bench/documents.py's corpus (HaluEval passages, TruthfulQA FAQ paragraphs,
then HaluEval re-split), grown in place from one size to the next. It is written in files of
`--per-file` passages (default 100) with the library's own two writes (rows, then vectors, the
embedder run on each file's passages at once); `--per-file 1` sends every passage through
`Library.add_bytes` as its own file instead (far slower at 10,000: every add compares the
file's hash with every document's). The questions are bench/documents.py's mix: HaluEval and
TruthfulQA questions whose answer passage is in the base, and open requests; the share whose
own passage came back is printed as a check that the searches find something.

    .venv/bin/python -m bench.retrieval_cost [--sizes 1000 10000] [--questions 50] [--repeats 3]
                                             [--per-file 100]

Filling 10,000 passages embeds every one (a few minutes on 2 cores, with a progress bar); the
measurements take seconds. Writes bench/results/retrieval_cost.json. A small check:
`--sizes 100 300 --questions 10 --repeats 1`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from bench.harness import RESULTS, new_home, table, write_result

TARGET_MS = 50.0  # search time at 10,000 passages


def ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def summary(values: list[float]) -> dict[str, float]:
    import numpy as np

    return {
        "median_ms": round(statistics.median(values), 2),
        "p95_ms": round(float(np.percentile(values, 95)), 2),
        "max_ms": round(max(values), 2),
    }


def search_times(library, questions, repeats: int, in_base: set[str]) -> dict:
    """`search` whole, then its parts, on every question `repeats` times; and how often a
    question's own passage (when it is in the base, `in_base`) was among the hits."""
    k, floor = library.config.passages, library.config.min_similarity
    whole, embed, query, fetch = [], [], [], []
    found = askable = 0
    for _ in range(repeats):
        for q in questions:
            start = time.perf_counter()
            hits = library.search(q.text)
            whole.append(ms_since(start))
            if q.passage in in_base:
                askable += 1
                found += any(h.text == q.passage for h in hits)
            # The same three steps `Library.search` takes, each timed.
            start = time.perf_counter()
            vector = library.embed([q.text[:4000]])[0]
            embed.append(ms_since(start))
            start = time.perf_counter()
            library.index.count()  # search checks for an empty index first
            near = [n for n in library.index.nearest(vector, k) if n.similarity >= floor]
            query.append(ms_since(start))
            start = time.perf_counter()
            library.store.passages([n.exchange_id for n in near])
            fetch.append(ms_since(start))
    return {
        "search": summary(whole),
        "embed": summary(embed),
        "chroma_query": summary(query),
        "sql_fetch": summary(fetch),
        "samples": len(whole),
        "answer_passage_found": [found, askable],
    }


def prompt_times(chat, questions, repeats: int) -> dict:
    """Prompt building for a new conversation, without and with the knowledge search; and
    `build_prompt` alone given the passages found (fitting them costs a token count each)."""
    without, with_docs, build_only, added, given = [], [], [], [], 0
    for _ in range(repeats):
        for q in questions:
            start = time.perf_counter()
            plain = chat.build_prompt([], q.text, [], [])
            without.append(ms_since(start))
            start = time.perf_counter()
            hits = chat.passages_for(q.text)
            grounded = chat.build_prompt([], q.text, [], hits)
            with_docs.append(ms_since(start))
            start = time.perf_counter()
            chat.build_prompt([], q.text, [], hits)
            build_only.append(ms_since(start))
            added.append(grounded.tokens - plain.tokens)
            given += bool(grounded.sources)
    return {
        "without_documents": summary(without),
        "with_documents": summary(with_docs),
        "build_with_passages_found": summary(build_only),
        "ratio_median": round(statistics.median(with_docs) / statistics.median(without), 2),
        "tokens_added_median": statistics.median(added),
        "prompts_given_passages": [given, len(with_docs)],
    }


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the questions")
    parser.add_argument(
        "--per-file", type=int, default=100, help="passages per file (1: through add_bytes)"
    )
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads (tokenizer)")
    return parser.parse_args()


def main() -> int:
    args = arguments()

    from tqdm import tqdm

    from assistant.llm.llama import LlamaEngine
    from assistant.llm.weights import embedded_model_path
    from assistant.settings import Settings
    from assistant.wiring import chat_service
    from bench.documents import fill, passages, questions
    from store.db import open_database

    home = new_home()
    settings = Settings(home=home, threads=args.threads)
    db = open_database(settings.effective_database_url)
    # The model is here for its tokenizer: build_prompt counts tokens through the chat template.
    model = LlamaEngine(embedded_model_path(), context_window=4096, threads=settings.threads)
    chat = chat_service(settings, db, model)
    library = chat.library
    print(
        f"home {home}; sizes {args.sizes}, {args.questions} questions x {args.repeats}, "
        f"{args.per_file} passages per file; passages <= {library.config.passages}, "
        f"similarity >= {library.config.min_similarity}",
        flush=True,
    )

    asked = questions()[: args.questions]
    results = []
    for size in sorted(args.sizes):
        with tqdm(total=size, desc=f"knowledge base to {size:,}", unit="passage") as bar:
            filled = fill(library, chat.user.id, size, args.per_file, progress=bar.update)
        start = time.perf_counter()
        library.search(asked[0].text)
        first_ms = ms_since(start)
        for q in asked[:5]:  # warm-up
            library.search(q.text)
        results.append(
            {
                "passages": size,
                "knowledge_base": filled,
                "first_search_ms": round(first_ms, 2),
                **search_times(library, asked, args.repeats, set(passages(size))),
                "prompt": prompt_times(chat, asked, args.repeats),
            }
        )
        show(results[-1])
    write_result({"settings": vars(args), "sizes": results}, RESULTS / "retrieval_cost.json")
    model.close()
    return 0


MS = ("median ms", "p95 ms", "max ms")


def ms_cells(s: dict) -> list[str]:
    return [f"{s[key]:.2f}" for key in ("median_ms", "p95_ms", "max_ms")]


def show(r: dict) -> None:
    kb = r["knowledge_base"]
    print(
        f"\n{r['passages']:,} passages ({kb['chunks']:,} chunks in {kb['documents']:,} files, "
        f"{kb['vectors']:,} vectors; filled in {kb['seconds']:.0f} s); "
        f"{r['samples']} searches; first search after filling {r['first_search_ms']:.1f} ms"
    )
    parts = (
        ("search", "Library.search"),
        ("embed", "  embed the question"),
        ("chroma_query", "  Chroma query"),
        ("sql_fetch", "  SQL fetch of passages"),
    )
    table(None, ["", *MS], [[name, *ms_cells(r[key])] for key, name in parts])
    verdict = "met" if r["search"]["p95_ms"] <= TARGET_MS else "not met"
    found, askable = r["answer_passage_found"]
    print(
        f"  search p95 {r['search']['p95_ms']:.1f} ms against the target <= {TARGET_MS:.0f} ms "
        f"({verdict} at this size); answer passage found for {found}/{askable} questions"
    )
    p = r["prompt"]
    given, total = p["prompts_given_passages"]
    parts = (
        ("without_documents", "  build_prompt"),
        ("with_documents", "  passages_for + build"),
        ("build_with_passages_found", "  build, passages given"),
    )
    table(None, ["prompt building", *MS], [[name, *ms_cells(p[key])] for key, name in parts])
    print(
        f"  with/without documents: {p['ratio_median']:.2f}x (medians); passages in "
        f"{given}/{total} prompts, adding {p['tokens_added_median']:.0f} tokens (median)"
    )


if __name__ == "__main__":
    sys.exit(main())
