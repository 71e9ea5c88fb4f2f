"""Grader quality: how well each signal, and the combined score, separates right from wrong answers.

Every row grades a right and a wrong answer per question with the real embedded model (answerer
and judge), and reports the AUROC of each signal alone (1.0 = perfect, 0.5 = chance; a signal
"looks right" when high; a signal not measured for an answer counts as undecided, 0.5 on its 0-1
scale), of answer length (the trap baseline: HaluEval's hallucinated answers are longer), and of
the combined score with the weights in use; then precision and recall of the flag at the
threshold (positive = wrong answer). The rows:

  halueval              HaluEval QA (right vs hallucinated answer), no reference at all;
  halueval+ref          the same answers, the row's own knowledge passage as `reference=`
                        (the evidence handed over, no retrieval);
  truthfulqa            TruthfulQA dev: best answer vs first incorrect answer, no reference;
  halueval+kb           all 500 HaluEval passages added as documents (`halueval-{i}.txt`) to one
                        knowledge base through `Library.add_bytes`; each question retrieves as the
                        chat does (`ChatService.passages_for`, then `build_prompt` keeps what fits
                        the passage budget), the kept passages become one reference
                        (`from_sources`), as the grading worker builds it; no passage found: no
                        reference. Also hit@1 / hit@k: the question's own passage among the hits;
  corrected             TruthfulQA, the 120 questions with a hand-written paraphrase: each asked
                        through `ChatService.send` (the model answers), then `chat.correct` with
                        the best answer (a human correction, curated into the pool); afterwards
                        both answers are graded against `ReferenceFinder.human(question)`;
                        "found" = the lookup returned that question's own correction;
  corrected-paraphrase  the same answers and corrections, graded for the reworded question (the
                        lookup is by the paraphrase);
  calibrated <set>      thumbs simulated from the labels (up = right answer) on 20% of the
                        questions (both answers of a question on one side; seed 0), fitted with
                        `feedback.grading.calibration.fit`; AUROC of the fitted score on the other
                        80% against the weights in use on the same 80%, per set and pooled
                        (halueval+kb and corrected);
  <set> +cons N         self-consistency (`--consistency N` resampled answers, as the grader does
                        it) on the first `--consistency-limit` questions of halueval and
                        truthfulqa, merged by (question, answer) into halueval+kb and corrected:
                        the same answers' combined score with and without it, and its seconds per
                        answer. The other rows leave consistency out (the product default).

    .venv/bin/python -m bench.grader_quality --limit 10                       # a check, ~10 min
    nohup .venv/bin/python -m bench.grader_quality --limit 150 --consistency 3 \\
        > bench/results/grader_quality.log 2>&1 &                            # the recorded run
    .venv/bin/python -m bench.grader_quality --rescore                        # table from saved items
    .venv/bin/python -m bench.grader_quality --rescore --weights '{"judge": 1, "agreement": 4}' \\
        --threshold 0.5                                                       # other weights
    .venv/bin/python -m bench.grader_quality --rows halueval+kb --limit 50    # some rows; the
                                                                              # others keep their
                                                                              # saved items

Data: tests/data/halueval/qa_one-turn.jsonl, tests/data/truthfulqa/{dev,paraphrases}.jsonl.
Items are saved to bench/results/grader_quality.json after each row (`--rescore` reads them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import DATA, RESULTS, read_jsonl
from bench.quality_table import ROWS, SEED, lines_for, show


# data
def halueval(limit):
    return read_jsonl(DATA / "halueval" / "qa_one-turn.jsonl")[:limit]


def truthfulqa(limit):
    return read_jsonl(DATA / "truthfulqa" / "dev.jsonl")[:limit]


def paraphrased(limit):
    """The dev questions that have a paraphrase, with it: (index, row, paraphrase)."""
    dev = read_jsonl(DATA / "truthfulqa" / "dev.jsonl")
    out = []
    for p in read_jsonl(DATA / "truthfulqa" / "paraphrases.jsonl"):
        assert dev[p["index"]]["question"] == p["question"], p
        out.append((p["index"], dev[p["index"]], p["paraphrase"]))
    return out[:limit]


def pairs_halueval(rows):
    for i, r in enumerate(rows):
        yield i, r["question"], r["right_answer"], 0
        yield i, r["question"], r["hallucinated_answer"], 1


def pairs_truthfulqa(rows):
    for i, r in enumerate(rows):
        yield i, r["question"], r["best_answer"], 0
        yield i, r["question"], r["incorrect_answers"][0], 1


# grading
class Progress:
    def __init__(self, name: str, total: int):
        self.name, self.total, self.done, self.start = name, total, 0, time.perf_counter()

    def step(self) -> None:
        self.done += 1
        if self.done % 20 == 0 or self.done == self.total:
            spent = time.perf_counter() - self.start
            left = spent / self.done * (self.total - self.done)
            print(
                f"  {self.name}: {self.done}/{self.total} graded, {spent:.0f} s, ~{left:.0f} s left",
                flush=True,
            )


class SameSamples:
    """The answering model, with each resampling (a seeded, temperature > 0 generation)
    remembered: the grader resamples the question, not the answer, so a question's right and
    wrong answer are compared with the same samples, drawn once. `fresh` counts the draws, so
    the cost per answer is read from the answers that drew them."""

    def __init__(self, model):
        self.model, self.samples, self.fresh = model, {}, 0

    def __getattr__(self, name):
        return getattr(self.model, name)

    def stream(self, messages, sampling, cancel=None, json_schema=None):
        if not sampling.get("temperature") or json_schema is not None:
            yield from self.model.stream(messages, sampling, cancel, json_schema)
            return
        key = json.dumps([messages, sampling], sort_keys=True)
        if key not in self.samples:
            self.fresh += 1
            self.samples[key] = list(self.model.stream(messages, sampling, cancel))
        yield from self.samples[key]


def item(q, question, answer, label, result, **extra) -> dict:
    return {
        "q": q,
        "question": question,
        "answer": answer,
        "label": label,
        "length": len(answer),
        "score": result.score,
        "flagged": result.flagged,
        "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
        "reference": result.reference.kind if result.reference else None,
        **vars(result.signals),
        **extra,
    }


def grade_plain(grader, cons_grader, pairs, cons_limit, name, reference_of=None):
    """Grade (q, question, answer, label) pairs; the first `cons_limit` questions with
    `cons_grader` (self-consistency on) when there is one."""
    pairs = list(pairs)
    progress, out = Progress(name, len(pairs)), []
    for q, question, answer, label in pairs:
        g = cons_grader if cons_grader is not None and q < cons_limit else grader
        drawn = g.answer_model.fresh if g is cons_grader else 0
        result = g.grade(question, answer, reference=reference_of(q) if reference_of else None)
        extra = {"drew_samples": g.answer_model.fresh > drawn} if g is cons_grader else {}
        out.append(item(q, question, answer, label, result, **extra))
        progress.step()
    return out


def product(home: Path, model, embedder, **settings):
    """The whole product (chat, pool, library, grader worker) in `home`, grading off."""
    from assistant.settings import Settings
    from assistant.wiring import build_references, create_services

    s = Settings(
        home=home,
        database_url=f"sqlite:///{home / 'autodidact.db'}",
        chroma_url=None,
        grading=False,
        **settings,
    )
    services = create_services(s, model=model, embedder=embedder)
    finder = build_references(s, services.grading.engine, services.curator)
    return services, finder


def grade_kb(grader, model, embedder, rows, all_rows):
    """halueval+kb: every passage a document in one knowledge base; retrieval as the chat."""
    from feedback.grading.references import from_sources

    with tempfile.TemporaryDirectory(prefix="grader-kb-", ignore_cleanup_errors=True) as tmp:
        services, finder = product(Path(tmp), model, embedder)
        try:
            chat, library = services.chat, services.library
            t = time.perf_counter()
            added = [
                library.add_bytes(f"halueval-{i}.txt", r["knowledge"].encode(), chat.user.id)
                for i, r in enumerate(all_rows)
            ]
            status = {s: sum(a.status == s for a in added) for s in {a.status for a in added}}
            print(f"  knowledge base: {status} in {time.perf_counter() - t:.0f} s", flush=True)
            pairs = list(pairs_halueval(rows))
            progress, out = Progress("halueval+kb", len(pairs)), []
            for i, r in enumerate(rows):
                hits = chat.passages_for(r["question"])
                sources = list(chat.build_prompt([], r["question"], [], hits).sources)
                ref = from_sources(sources, finder.config.max_chars)
                own = f"halueval-{i}.txt"
                retrieval = {
                    "hits": len(hits),
                    "given": len(sources),
                    "rank": next((n for n, h in enumerate(hits, 1) if h.document == own), None),
                    "given_rank": next((s.number for s in sources if s.document == own), None),
                    "top_similarity": hits[0].similarity if hits else None,
                }
                retrieval["refs"] = [{"kind": ref.kind, "text": ref.text}] if ref else []
                for q, question, answer, label in pairs[2 * i : 2 * i + 2]:
                    result = grader.grade(question, answer, references=[ref] if ref else [])
                    out.append(item(q, question, answer, label, result, **retrieval))
                    progress.step()
            return out
        finally:
            services.close()


def grade_corrected(grader, model, embedder, rows, chat_max_tokens):
    """corrected and corrected-paraphrase: real answers, human corrections, lookups."""
    with tempfile.TemporaryDirectory(prefix="grader-corr-", ignore_cleanup_errors=True) as tmp:
        services, finder = product(
            Path(tmp), model, embedder, max_tokens=chat_max_tokens, seed=SEED
        )
        try:
            chat, own = services.chat, {}
            t = time.perf_counter()
            for n, (index, r, _) in enumerate(rows):
                *_, reply = chat.send(None, r["question"])
                if reply.status != "completed":
                    raise RuntimeError(f"question {index}: {reply.status} {reply.error}")
                chat.correct(reply.exchange_id, r["best_answer"])
                own[index] = reply.exchange_id
                if (n + 1) % 20 == 0:
                    print(f"  asked and corrected {n + 1}/{len(rows)}", flush=True)
            print(f"  asked and corrected {len(rows)} in {time.perf_counter() - t:.0f} s")
            pool = services.curator.pool
            entries = pool.entries(list(own.values()))
            kept = sum(
                e.status == "train" and e.source == "human_written" for e in entries.values()
            )
            print(f"  pool: {kept}/{len(own)} corrections in as human_written train entries")
            out = {"corrected": [], "corrected-paraphrase": []}
            for name in out:
                progress = Progress(name, 2 * len(rows))
                for index, r, paraphrase in rows:
                    question = paraphrase if name == "corrected-paraphrase" else r["question"]
                    refs = finder.human(question)
                    lookup = {
                        "refs": [{"kind": x.kind, "text": x.text} for x in refs],
                        "found": any(x.exchange_id == own[index] for x in refs),
                        "found_first": bool(refs) and refs[0].exchange_id == own[index],
                        "ref_similarity": refs[0].similarity if refs else None,
                    }
                    for answer, label in ((r["best_answer"], 0), (r["incorrect_answers"][0], 1)):
                        result = grader.grade(question, answer, references=refs)
                        out[name].append(item(index, question, answer, label, result, **lookup))
                        progress.step()
            return out
        finally:
            services.close()


def measure(args, saved: dict, save) -> dict:
    """Grade the rows asked for with the real model; `save(items)` after each row."""
    from dataclasses import replace

    from assistant.llm.embedder import Embedder
    from assistant.settings import Settings
    from assistant.wiring import grader_config, load_model
    from feedback.grading.grader import Grader

    settings = Settings()
    model = load_model(settings)
    embedder = Embedder(threads=1)
    config = replace(grader_config(settings), consistency_samples=0)
    grader = Grader(model, model, config)
    cons = None
    if args.consistency:
        cons_config = replace(config, consistency_samples=args.consistency)
        cons = Grader(model, SameSamples(model), cons_config)
    print(f"grader: {config}", flush=True)
    items = dict(saved)
    halu, tqa = halueval(args.limit), truthfulqa(args.limit)
    try:
        for name in args.rows:
            t = time.perf_counter()
            print(f"{name}:", flush=True)
            if name == "halueval":
                items[name] = grade_plain(
                    grader, cons, pairs_halueval(halu), args.consistency_limit, name
                )
            elif name == "halueval+ref":
                items[name] = grade_plain(
                    grader, None, pairs_halueval(halu), 0, name, lambda q: halu[q]["knowledge"]
                )
            elif name == "truthfulqa":
                items[name] = grade_plain(
                    grader, cons, pairs_truthfulqa(tqa), args.consistency_limit, name
                )
            elif name == "halueval+kb":
                items[name] = grade_kb(grader, model, embedder, halu, halueval(None))
            elif name == "corrected":
                items |= grade_corrected(
                    grader, model, embedder, paraphrased(args.limit), args.chat_max_tokens
                )
            print(f"{name}: done in {time.perf_counter() - t:.0f} s", flush=True)
            save(items)
    finally:
        model.close()
    return items


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="questions per row")
    parser.add_argument(
        "--rows",
        nargs="+",
        default=None,
        choices=ROWS[:5],
        help="rows to grade (corrected brings corrected-paraphrase); default all",
    )
    parser.add_argument("--consistency", type=int, default=0, help="resampled answers per item")
    parser.add_argument(
        "--consistency-limit",
        type=int,
        default=60,
        help="questions of halueval and truthfulqa graded with consistency",
    )
    parser.add_argument(
        "--chat-max-tokens",
        type=int,
        default=128,
        help="longest chat answer in the corrected row (only stored, not graded)",
    )
    parser.add_argument(
        "--rescore", action="store_true", help="recompute the table from the saved items (no model)"
    )
    parser.add_argument(
        "--weights",
        type=json.loads,
        default=None,
        help="grading weights as JSON (default: the settings')",
    )
    parser.add_argument("--threshold", type=float, default=None, help="flag threshold")
    parser.add_argument("--save", type=Path, default=RESULTS / "grader_quality.json")
    args = parser.parse_args()
    args.rows = args.rows or list(ROWS[:5])

    from assistant.settings import Settings

    settings = Settings()
    weights = args.weights if args.weights is not None else settings.grade_weights
    threshold = args.threshold if args.threshold is not None else settings.flag_threshold
    saved = json.loads(args.save.read_text()) if args.save.exists() else {}

    def save(items):
        args.save.parent.mkdir(parents=True, exist_ok=True)
        meta = saved.get("meta", {}) | {
            "limit": args.limit,
            "consistency": args.consistency,
            "consistency_limit": args.consistency_limit,
        }
        lines = lines_for(items, weights, threshold)
        body = {
            "weights": weights,
            "threshold": threshold,
            "meta": meta,
            "lines": lines,
            "items": items,
        }
        args.save.write_text(json.dumps(body, indent=1, default=str))

    if args.rescore:
        items = saved["items"]
    else:
        t = time.perf_counter()
        items = measure(args, saved.get("items", {}), save)
        print(f"graded in {time.perf_counter() - t:.0f} s; items saved to {args.save}")
    show(lines_for(items, weights, threshold), weights, threshold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
