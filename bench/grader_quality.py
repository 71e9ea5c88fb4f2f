"""Grader quality: how well each signal, and the combined score, separates right from wrong answers.

Three rows, as the grading issue asks:
  halueval        HaluEval QA (each question's right and hallucinated answer), no reference;
  halueval+ref    the same answers with the knowledge passage given as a reference (grounding);
  truthfulqa      TruthfulQA dev: each question's best answer and its first incorrect answer.
For each: AUROC of every signal alone (1.0 = perfect, 0.5 = chance; a signal "looks right" when high),
of answer length (the trap baseline: HaluEval's hallucinated answers are longer), and of the
combined score with the current settings' weights; precision and recall of the flag at the
current threshold (positive = hallucinated). Items are graded with the real embedded model.

    .venv/bin/python bench/grader_quality.py --limit 50          # 50 questions = 100 answers per source
    .venv/bin/python bench/grader_quality.py                     # the full sets (about 1.5 h on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"


def halueval(limit):
    rows = [json.loads(line) for line in (DATA / "halueval" / "qa_one-turn.jsonl").open()][:limit]
    for r in rows:
        yield r["question"], r["right_answer"], 0, r["knowledge"]
        yield r["question"], r["hallucinated_answer"], 1, r["knowledge"]


def truthfulqa(limit):
    rows = [json.loads(line) for line in (DATA / "truthfulqa" / "dev.jsonl").open()][:limit]
    for r in rows:
        yield r["question"], r["best_answer"], 0, None
        yield r["question"], r["incorrect_answers"][0], 1, None


def measure(grader, items, with_reference):
    from tqdm import tqdm

    out = []
    for question, answer, label, reference in tqdm(items, desc="grading", leave=False):
        result = grader.grade(question, answer, reference=reference if with_reference else None)
        out.append(
            {
                "label": label,
                "length": len(answer),
                "score": result.score,
                "flagged": result.flagged,
                "seconds": result.seconds,
                **vars(result.signals),
            }
        )
    return out


def report(name, rows, weights, threshold):
    from sklearn.metrics import precision_score, recall_score, roc_auc_score

    from feedback.grading.scoring import SIGNALS, Signals, combine, should_flag

    labels = [r["label"] for r in rows]
    right = [1 - y for y in labels]  # AUROC of "looks right" against truly right
    line = {"set": name, "answers": len(rows)}
    for signal in (*SIGNALS, "length"):
        values = [r[signal] for r in rows]
        if all(v is None for v in values):
            line[signal] = None
            continue
        if signal == "judge":  # an invalid verdict counts as undecided, as in the combined score
            line["judge_invalid"] = sum(v is None for v in values)
            values = [5.5 if v is None else v for v in values]
        line[signal] = round(roc_auc_score(right, values), 3)
    scores = [combine(Signals(**{k: r[k] for k in SIGNALS}), weights) for r in rows]
    flags = [should_flag(s, threshold) for s in scores]
    line["combined"] = round(roc_auc_score(right, scores), 3)
    line["precision"] = round(precision_score(labels, flags, zero_division=0), 3)
    line["recall"] = round(recall_score(labels, flags, zero_division=0), 3)
    return line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="questions per source")
    parser.add_argument("--consistency", type=int, default=0, help="resampled answers per item")
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="recompute the table from the saved items with the current weights (no model)",
    )
    parser.add_argument(
        "--save", type=Path, default=ROOT / "bench" / "results" / "grader_quality.json"
    )
    args = parser.parse_args()

    from assistant.settings import Settings
    from feedback.grading.grader import Grader, GraderConfig

    settings = Settings()
    config = GraderConfig(
        weights=settings.grade_weights,
        threshold=settings.flag_threshold,
        consistency_samples=args.consistency,
        max_tokens=64,
    )
    if args.rescore:
        saved = json.loads(args.save.read_text())["items"]
        halu_ref, tqa = saved["halueval"], saved["truthfulqa"]
    else:
        from assistant.llm.llama import LlamaEngine
        from assistant.llm.weights import embedded_model_path

        engine = LlamaEngine(embedded_model_path(), context_window=4096, threads=settings.threads)
        grader = Grader(engine, config=config)
        halu_ref = measure(grader, list(halueval(args.limit)), with_reference=True)
        tqa = measure(grader, list(truthfulqa(args.limit)), with_reference=False)
    # The same HaluEval answers without the reference: everything but grounding is identical.
    halu_plain = [{**r, "grounding": None} for r in halu_ref]

    lines = [
        report(n, rows, config.weights, config.threshold)
        for n, rows in (("halueval", halu_plain), ("halueval+ref", halu_ref), ("truthfulqa", tqa))
    ]
    cols = [
        "set",
        "answers",
        "judge",
        "mean_logprob",
        "min_logprob",
        "consistency",
        "grounding",
        "length",
        "combined",
        "precision",
        "recall",
    ]
    print(f"weights {config.weights}, flag threshold {config.threshold}")
    print(" | ".join(f"{c:>12}" for c in cols))
    for line in lines:
        print(" | ".join(f"{'-' if line[c] is None else line[c]!s:>12}" for c in cols))
    print(
        "judge verdicts that were not valid JSON (counted as 5.5/10): "
        + ", ".join(f"{line['set']} {line.get('judge_invalid', 0)}" for line in lines)
    )
    if not args.rescore:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        items = {"halueval": halu_ref, "truthfulqa": tqa}
        args.save.write_text(json.dumps({"lines": lines, "items": items}, indent=1))
        print(f"items saved to {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
