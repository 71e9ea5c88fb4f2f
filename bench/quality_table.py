"""Grader quality, the table: AUROC per signal and combined, flag precision and recall, the
calibrated rows and the self-consistency comparison, computed from saved items without a model.
bench/grader_quality.py grades the items and prints this table (`--rescore` redoes only this).
"""

from __future__ import annotations

import random

CALIBRATION_SHARE = 0.2  # of the questions whose labels become thumbs
SEED = 0
ROWS = (
    "halueval",
    "halueval+ref",
    "truthfulqa",
    "halueval+kb",
    "corrected",
    "corrected-paraphrase",
)


def auroc(labels, values):
    """AUROC of `values` ("looks right") against the answers that are right (label 0)."""
    from sklearn.metrics import roc_auc_score

    right = [1 - y for y in labels]
    if len(set(right)) < 2:
        return None
    return round(float(roc_auc_score(right, values)), 3)


def signals_of(r: dict, without=()):
    from feedback.grading.scoring import SIGNALS, Signals

    return Signals(**{k: (None if k in without else r.get(k)) for k in SIGNALS})


def flag_figures(labels, flags) -> dict:
    from sklearn.metrics import precision_score, recall_score

    return {
        "precision": round(float(precision_score(labels, flags, zero_division=0)), 3),
        "recall": round(float(recall_score(labels, flags, zero_division=0)), 3),
        "flag_rate": round(sum(flags) / len(flags), 3) if flags else None,
    }


def report(name, rows, weights, threshold, without=("consistency",)) -> dict:
    from feedback.grading.scoring import SIGNALS, combine, normalize, should_flag

    labels = [r["label"] for r in rows]
    line = {"set": name, "answers": len(rows)}
    for signal in SIGNALS:
        raw = [None if signal in without else r.get(signal) for r in rows]
        line[f"{signal}_measured"] = sum(v is not None for v in raw)
        values = [normalize(signal, v) for v in raw]
        # Missing counts as undecided, as the calibration's features do; an invalid judge
        # verdict is then 5.5/10.
        line[signal] = (
            None
            if not line[f"{signal}_measured"]
            else auroc(labels, [0.5 if v is None else v for v in values])
        )
    line["length"] = auroc(labels, [r["length"] for r in rows])
    scores = [combine(signals_of(r, without), weights) for r in rows]
    line["combined"] = auroc(labels, scores)
    line |= flag_figures(labels, [should_flag(s, threshold) for s in scores])
    questions = {r["q"]: r for r in rows}.values()
    if "rank" in rows[0]:
        line["hit@1"] = round(sum(r["rank"] == 1 for r in questions) / len(questions), 3)
        line["hit@k"] = round(sum(r["rank"] is not None for r in questions) / len(questions), 3)
        line["hit_given"] = round(
            sum(r["given_rank"] is not None for r in questions) / len(questions), 3
        )
        line["no_passage"] = sum(r["given"] == 0 for r in questions)
    if "found" in rows[0]:
        line["found"] = sum(r["found"] for r in questions)
        line["found_first"] = sum(r["found_first"] for r in questions)
        line["lookups"] = len(questions)
    return line


def split(keys, share: float, seed: int = SEED):
    """A fixed `share` of the keys (sorted, then shuffled with `seed`)."""
    keys = sorted(set(keys))
    random.Random(seed).shuffle(keys)
    return set(keys[: max(1, round(share * len(keys)))])


def calibrated(name, rows, weights, threshold) -> dict:
    """Fit on simulated thumbs for 20% of the questions; score the other 80% both ways."""
    from feedback.grading import calibration
    from feedback.grading.scoring import combine, should_flag

    rated = split([r["key"] for r in rows], CALIBRATION_SHARE)
    train = [r for r in rows if r["key"] in rated]
    test = [r for r in rows if r["key"] not in rated]
    fit = calibration.fit(
        [(signals_of(r, ("consistency",)), 1 if r["label"] == 0 else -1) for r in train],
        weights,
        threshold,
    )
    labels = [r["label"] for r in test]
    default = [combine(signals_of(r, ("consistency",)), weights) for r in test]
    line = {"set": f"calibrated {name}", "answers": len(test), "ratings": len(train)}
    line["default"] = auroc(labels, default)
    line["default_flags"] = flag_figures(labels, [should_flag(s, threshold) for s in default])
    line["fit"] = {"weights": fit.weights, "threshold": fit.threshold, "adopted": fit.adopted}
    line["reason"] = fit.reason
    if fit.weights:
        fitted = [
            calibration.score(signals_of(r, ("consistency",)), weights, fit.weights) for r in test
        ]
        line["combined"] = auroc(labels, fitted)
        line |= flag_figures(labels, [should_flag(s, fit.threshold) for s in fitted])
    return line


def with_consistency(name, rows, source, weights, threshold) -> dict | None:
    """The answers of `rows` that `source` measured consistency for: combined with it and
    without it (same answers), its AUROC and its cost."""
    measured = {(r["question"], r["answer"]): r for r in source if r.get("consistency") is not None}
    subset = []
    for r in rows:
        m = measured.get((r["question"], r["answer"]))
        if m is not None:
            spent = r["seconds"] | {"consistency": m["seconds"].get("consistency", 0)}
            drew = m.get("drew_samples", True)
            subset.append({**r, "consistency": m["consistency"], "seconds": spent, "drew": drew})
    if not subset:
        return None
    line = report(f"{name} +cons", subset, weights, threshold, without=())
    line["combined_without"] = report(name, subset, weights, threshold)["combined"]
    # The product grades each answer once, so each pays for its own samples: the cost is read
    # from the answers that drew them (the bench shares one draw between a question's answers).
    drew = [r["seconds"] for r in subset if r["drew"]]
    line["cons_seconds"] = round(sum(s.get("consistency", 0) for s in drew) / len(drew), 2)
    spent = [r["seconds"] for r in subset]
    line["other_seconds"] = round(
        sum(sum(v for k, v in s.items() if k != "consistency") for s in spent) / len(spent), 2
    )
    return line


def lines_for(items: dict, weights, threshold) -> list[dict]:
    lines = [report(n, items[n], weights, threshold) for n in ROWS if n in items]
    pooled = []
    for n in ("halueval+kb", "corrected"):
        if n in items:
            rows = [{**r, "key": (n, r["q"])} for r in items[n]]
            pooled += rows
            lines.append(calibrated(n, rows, weights, threshold))
    if "halueval+kb" in items and "corrected" in items:
        lines.append(calibrated("pooled", pooled, weights, threshold))
    for name, source in (
        ("halueval", "halueval"),
        ("halueval+kb", "halueval"),
        ("truthfulqa", "truthfulqa"),
        ("corrected", "truthfulqa"),
    ):
        if name in items and source in items:
            line = with_consistency(name, items[name], items[source], weights, threshold)
            if line:
                lines.append(line)
    return lines


COLUMNS = ("set", "answers", "judge", "mean_logprob", "min_logprob", "consistency", "grounding",
           "agreement", "length", "combined", "precision", "recall")  # fmt: skip
SHORT = {
    "mean_logprob": "mean_lp",
    "min_logprob": "min_lp",
    "consistency": "consist",
    "grounding": "ground",
    "agreement": "agree",
    "precision": "prec",
}


def show(lines, weights, threshold) -> None:
    from bench.harness import table

    table(
        f"weights {weights}, flag threshold {threshold}",
        [*(SHORT.get(c, c) for c in COLUMNS), "notes"],
        [[*(line.get(c) for c in COLUMNS), notes(line)] for line in lines],
        width=220,
    )


def notes(line) -> str:
    out = []
    if "hit@k" in line:
        out.append(
            f"hit@1 {line['hit@1']}, hit@k {line['hit@k']}, own passage given "
            f"{line['hit_given']}, no passage {line['no_passage']}"
        )
    if "found" in line:
        out.append(
            f"own correction found {line['found']}/{line['lookups']} (first {line['found_first']})"
        )
    if "default" in line:
        d = line["default_flags"]
        out.append(
            f"on {line['ratings']} thumbs: weights in use {line['default']} "
            f"(prec {d['precision']}, rec {d['recall']}); {line['reason']}; "
            f"flag below {line['fit']['threshold']}"
        )
    if "cons_seconds" in line:
        out.append(
            f"without consistency {line['combined_without']}; consistency "
            f"{line['cons_seconds']} s/answer, the rest {line['other_seconds']} s"
        )
    if line.get("judge_measured") is not None and line.get("answers"):
        invalid = line["answers"] - line["judge_measured"]
        if invalid:
            out.append(f"{invalid} judge verdicts invalid (5.5)")
    return "; ".join(out)
