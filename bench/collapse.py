"""A simulated self-learning loop: does training on its own graded answers make the model
collapse, and do our guards stop it?

Five generations with the embedded model, run twice from the same base:

- guarded: the product's loop. The mix is feedback/refresh/rules.py's build_mix: the model-only
  answers of every generation accumulate; human-written answers (the operator's anchor data, here
  TruthfulQA's best answers to other questions) make at least half of each mix, model-only
  examples capped to keep that share and to repeat no answer past the cap; a mix less diverse
  than the last promoted one's is refused. Each candidate then meets the promotion gate
  (feedback/refresh/evaluation.py's compare, feedback/refresh/gates.py's regressions, default
  tolerances) on its own 64 questions: the base model judges the candidate's and the served
  model's answers pairwise in both orders (sign test), the relatedness of answers to questions
  is compared the same way, the held-out loss is on the gate questions' human answers and, once
  the served model has trained on the anchor answers, the loss on them is the "taught" gate. A
  rejected candidate is dropped and the served model stays. Each guarded generation also trains
  a deliberately broken candidate from the same mix, every answer moved half the mix away,
  which the gate must reject (`--no-broken` skips it). The gate also holds the candidate to
  the base model's known answers, as the refresh does (feedback/refresh/known.py).
- replace: each generation trains only on the previous generation's self-graded answers, with no
  human data and no gate, the setting in which model collapse is reported.
- lessons: guarded, and every generation also trains on lessons the model wrote from the human
  anchor answers (feedback/synthesis: reworded questions and restated answers, checked and
  graded against their parent; at most `refresh_lessons_per_parent` per parent). As in the
  product, lessons are written by the base model from human text only, once, never from
  lessons or model-only answers; the anchor answers are their parents, as pool entries.

In both modes a generation's model answers the same TruthfulQA questions with the app's sampling
settings, the real grader (the same model as judge) keeps the answers it does not flag, a fresh
LoRA adapter is trained on the mix with TRL (feedback/refresh/train.py), exported to GGUF and served by
llama.cpp for the next generation. Per generation it prints the diversity of sampled answers to
held-out questions (distinct-2, and the embedding spread from the pool's MiniLM) and the held-out
loss: mean NLL per token of TruthfulQA's human best answers to questions never trained on.
The verdict lines compare the last generation's distinct-2 and spread with generation 0's
(target: the guarded loop within 10%, the replace loop losing more). Rows are saved as they come,
to bench/results/collapse-seed<N>.json.

    .venv/bin/python -m bench.collapse [--generations 5] [--seed 0] [--modes guarded replace]
    .venv/bin/python -m bench.collapse --modes guarded --seed 1    # the gate runs in docs/benchmarks.md
    .venv/bin/python -m bench.collapse --modes lessons --seed 0    # with the model's own lessons
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import DATA, RESULTS, new_home, read_jsonl, table


def half_turned(items: list) -> list:
    """`items` turned by half their length: the broken candidate's answers. A parent's lessons
    sit side by side in the mix and share its answer, so a turn by one would leave most of them
    with an answer to their own question (seen in the lessons runs of docs/learning.md).

    >>> half_turned([1, 2, 3, 4, 5])
    [3, 4, 5, 1, 2]
    """
    half = len(items) // 2
    return items[half:] + items[:half]


def splits(n_prompts: int, n_anchor: int, n_eval: int, n_heldout: int, n_gate: int, seed: int = 0):
    """Disjoint question sets: answered for training, human anchor answers, diversity figures,
    held-out loss figures, and the promotion gate's own questions and answers (the gate never
    sees the questions the figures are measured on)."""
    rows = read_jsonl(DATA / "truthfulqa" / "dev.jsonl")
    random.Random(seed).shuffle(rows)
    out, start = [], 0
    for n in (n_prompts, n_anchor, n_eval, n_heldout, n_gate):
        out.append(rows[start : start + n])
        start += n
    return out


def messages(system: str, question: str, answer: str | None = None) -> list[dict]:
    out = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    return out + ([{"role": "assistant", "content": answer}] if answer is not None else [])


class Loop:
    def __init__(self, llama, grader, embedder, settings, base_cache: Path, args):
        self.llama, self.grader, self.embedder = llama, grader, embedder
        self.settings, self.base_cache, self.args = settings, base_cache, args
        self.system = settings.system_prompt
        self.prompts, anchor, self.eval, heldout, gate = splits(
            args.prompts, args.anchor, args.eval, args.heldout, args.gate, args.seed
        )
        self.gate_questions = [r["question"] for r in gate]
        self.gate_records = [
            {"messages": messages(self.system, r["question"], r["best_answer"])} for r in gate
        ]
        self.anchor = [
            {"messages": messages(self.system, r["question"], r["best_answer"])} for r in anchor
        ]
        self.heldout = [
            {"messages": messages(self.system, r["question"], r["best_answer"])} for r in heldout
        ]
        self.work = Path(tempfile.mkdtemp(prefix="collapse-"))
        self.rows: list[dict] = []

    @staticmethod
    def served(last: dict, mode: str, generation: int) -> dict:
        """A generation that trained nothing new keeps serving the last model: its figures."""
        keep = ("distinct_2", "spread", "heldout_loss")
        return {"mode": mode, "generation": generation, **{k: last[k] for k in keep}}

    def report(self, row: dict) -> None:
        """Print a generation's row and save every row so far: a run cut short keeps them."""
        print(json.dumps(row), flush=True)
        self.rows.append(row)
        self.args.out.parent.mkdir(parents=True, exist_ok=True)
        args = {k: str(v) for k, v in vars(self.args).items()}
        tmp = self.args.out.with_suffix(".tmp")  # a kill mid-write keeps the last whole file
        tmp.write_text(json.dumps({"args": args, "rows": self.rows}, indent=1))
        os.replace(tmp, self.args.out)

    def answers(self, adapter: Path | None, questions: list[str], sampling: dict) -> list[str]:
        self.llama.set_adapter(adapter, adapter_id=str(adapter))
        try:
            out = []
            for i, q in enumerate(questions):
                params = {**sampling, "seed": self.args.seed * 100_000 + i}
                out.append(
                    "".join(d.text for d in self.llama.stream(messages(self.system, q), params))
                )
            return out
        finally:
            self.llama.set_adapter(None)

    def figures(self, adapter: Path | None, peft_model, tokenizer) -> dict:
        from feedback.pool.diversity import distinct_n, embedding_spread
        from feedback.refresh.train import completion_loss

        sample = {"temperature": 0.8, "top_p": 0.95, "max_tokens": 64, "repeat_penalty": 1.1}
        texts = self.answers(adapter, [r["question"] for r in self.eval], sample)
        return {
            "distinct_2": distinct_n(texts, 2),
            "spread": embedding_spread(self.embedder(texts)),
            "heldout_loss": completion_loss(peft_model, tokenizer, self.heldout),
            "example": texts[0][:80],
        }

    def self_graded(self, adapter: Path | None, generation: int) -> list:
        """The generation's answers to the training questions that its own grader keeps, as
        model-only pool entries (ids unique across generations, so they accumulate)."""
        from store.tables import PoolEntry

        questions = [r["question"] for r in self.prompts]
        # The app's sampling, with answers cut at 96 tokens to keep five generations affordable.
        texts = self.answers(adapter, questions, {**self.settings.sampling(), "max_tokens": 96})
        kept = []
        for i, (q, a) in enumerate(zip(questions, texts, strict=True)):
            grade = self.grader.grade(q, a)
            if not grade.flagged:
                kept.append(
                    PoolEntry(
                        exchange_id=generation * 10_000 + i + 1,
                        conversation_id=0,
                        user_id=1,
                        status="train",
                        source="model_only",
                        score=grade.score,
                        reason="self-graded",
                        prompt=q,
                        completion=a,
                        model_id="sim",
                    )
                )
        return kept

    def train(self, records: list[dict], name: str):
        import gguf  # noqa: F401  (the export needs it; fail before training, not after)
        from safetensors.numpy import load_file

        from feedback.refresh.gguf_export import write_adapter
        from feedback.refresh.train import TrainConfig, load_base, train_lora

        base, tokenizer = load_base(self.llama.path, self.base_cache)
        out = self.work / name
        info = train_lora(
            base,
            tokenizer,
            records,
            out / "peft",
            TrainConfig(
                max_steps=self.args.steps,
                epochs=1e9,
                learning_rate=self.args.lr,
                seed=self.args.seed,
            ),
        )
        model = info.pop("model")
        cfg = model.base_model.model.config
        adapter = write_adapter(
            load_file(str(out / "peft" / "adapter_model.safetensors")),
            out / "adapter.gguf",
            arch="llama",
            n_layers=cfg.num_hidden_layers,
            n_head=cfg.num_attention_heads,
            n_head_kv=cfg.num_key_value_heads,
            alpha=json.loads((out / "peft" / "adapter_config.json").read_text())["lora_alpha"],
            base_model=self.llama.path.name,
        )
        return model, tokenizer, adapter, info

    def gate(self, model, tokenizer, candidate: Path, served: Path | None, served_model) -> dict:
        """The refresh's promotion step on the gate's questions: the same comparison
        (feedback/refresh/evaluation.py: the base model judges both orders of every pair) and
        the same rules with their default tolerances. The held-out loss is on the gate's
        human answers; the taught-answer loss on the anchor answers, once the served model
        has trained on them (the product's corrections learnt before)."""
        from feedback.refresh.evaluation import compare
        from feedback.refresh.gates import regressions
        from feedback.refresh.known import known_figures, known_regression
        from feedback.refresh.rules import RefreshConfig
        from feedback.refresh.train import completion_loss

        config = RefreshConfig(seed=self.args.seed)
        cand, cur, base = compare(
            self.llama,
            None,
            self.gate_questions,
            candidate,
            served,
            str(served) if served else None,
            embed=self.embedder,
            stop_alpha=config.gate_alpha if config.judge_early_stop else None,
        )
        cand["heldout_loss"] = completion_loss(model, tokenizer, self.gate_records)
        if served_model is None:
            with model.disable_adapter():
                cur["heldout_loss"] = completion_loss(model, tokenizer, self.gate_records)
        else:
            cur["heldout_loss"] = completion_loss(served_model, tokenizer, self.gate_records)
            cand["taught_loss"] = completion_loss(model, tokenizer, self.anchor)
            cur["taught_loss"] = completion_loss(served_model, tokenizer, self.anchor)
        # As the refresh does: the base model's known answers, and how many the candidate loses.
        cand["known"] = known_figures(self.llama, candidate, cache=self.base_cache / "known.json")
        reasons = regressions(cand, cur, config, base)
        reasons += known_regression(cand["known"], config.known_tolerance)
        keep = ("heldout_loss", "taught_loss", "answer_distinct_2", "answer_spread", "known")
        pairwise = {k: v for k, v in cand["pairwise"].items() if k != "outcomes"}
        return {
            "reasons": reasons,
            "candidate": {k: cand[k] for k in keep if k in cand},
            "current": {k: cur[k] for k in keep if k in cur},
            "base": base,
            "pairwise": pairwise,
            "relevance": cand.get("relevance"),
        }

    def broken(self, records: list[dict], g: int, served: Path | None, served_model) -> dict:
        """A deliberately broken candidate from the same mix, every answer moved half the mix
        away (`half_turned`); the gate must reject it."""
        rotated = half_turned([r["messages"][-1] for r in records])
        shuffled = [
            {"messages": r["messages"][:-1] + [a]} for r, a in zip(records, rotated, strict=True)
        ]
        model, tokenizer, adapter, info = self.train(shuffled, f"broken-{g}")
        verdict = self.gate(model, tokenizer, adapter, served, served_model)
        return {"rejected": bool(verdict["reasons"]), "train_loss": info["loss"], **verdict}

    def parents_and_lessons(self) -> tuple[list, list]:
        """The anchor answers as human-written pool entries, and the lessons the base model
        writes from them (checked and graded as feedback/synthesis does in a refresh)."""
        from feedback.synthesis.stage import Report, Synthesizer
        from store.tables import PoolEntry

        parents = [
            PoolEntry(exchange_id=900_000 + i, conversation_id=0, user_id=1, status="train",
                      source="human_written", score=1.0, reason="anchor", prompt=m[1]["content"],
                      completion=m[2]["content"], model_id="sim")
            for i, m in enumerate(r["messages"] for r in self.anchor)
        ]  # fmt: skip
        synth = Synthesizer(None, None, self.llama, self.grader, self.embedder)
        report, lessons = Report(), []
        for n, parent in enumerate(parents):
            for i, lesson in enumerate(synth.lessons_for(parent, report)):
                lesson.id = n * 100 + i
                lessons.append(lesson)
        self.synthesis = report.to_json()
        print(json.dumps({"synthesis": self.synthesis}), flush=True)
        return parents, [x for x in lessons if x.status == "kept"]

    def run(self, mode: str, generation0: dict, answers0: list) -> list[dict]:
        from feedback.refresh.rules import RefreshConfig, build_mix

        rows = [{"mode": mode, "generation": 0, **generation0}]
        parents, lessons, anchor = [], [], self.anchor
        if mode == "lessons":
            parents, lessons = self.parents_and_lessons()
            anchor = []  # the anchor answers are in the pool, as the lessons' parents
        served, served_model = None, None  # what answers: the base model to begin with
        pool, kept = [], answers0
        previous = None  # the last promoted mix's diversity, for the mix gate
        for g in range(1, self.args.generations + 1):
            t = time.perf_counter()
            if g > 1:
                kept = self.self_graded(served, g - 1)
            if mode in ("guarded", "lessons"):
                pool += kept
                mix = build_mix(
                    parents + pool,
                    set(),
                    set(),
                    anchor,
                    previous,
                    self.system,
                    RefreshConfig(min_new=0, seed=self.args.seed),
                    embed=self.embedder,
                    lessons=lessons,
                )
                if mix.refused:
                    rows.append({**self.served(rows[-1], mode, g), "refused": mix.refused})
                    self.report(rows[-1])
                    continue
                records = mix.records
            else:
                records = [
                    {"messages": messages(self.system, e.prompt, e.completion)} for e in kept
                ]
                if not records:
                    rows.append({**self.served(rows[-1], mode, g), "refused": "nothing kept"})
                    self.report(rows[-1])
                    continue
            model, tokenizer, adapter, info = self.train(records, f"{mode}-{g}")
            row = {
                "mode": mode,
                "generation": g,
                "kept": len(kept),
                "mix": len(records),
                "model_only": mix.counts["model_only"] if mode != "replace" else len(records),
                "synthetic": mix.counts["synthetic"] if mode != "replace" else 0,
                "train_loss": info["loss"],
            }
            figures = self.figures(adapter, model, tokenizer)
            if mode != "replace" and self.args.broken:
                row["broken"] = self.broken(records, g, served, served_model)
            if mode != "replace":
                row["gate"] = self.gate(model, tokenizer, adapter, served, served_model)
                if row["gate"]["reasons"]:
                    # Rejected: the served model stays, and so do its figures.
                    rows.append(
                        {
                            **row,
                            **self.served(rows[-1], mode, g),
                            "rejected": row["gate"]["reasons"],
                            "candidate": figures,
                            "seconds": round(time.perf_counter() - t, 1),
                        }
                    )
                    self.report(rows[-1])
                    continue
                previous = mix.counts
            served, served_model = adapter, model
            rows.append({**row, **figures, "seconds": round(time.perf_counter() - t, 1)})
            self.report(rows[-1])
        return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generations", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=32, help="questions answered per generation")
    parser.add_argument("--anchor", type=int, default=32, help="human-written anchor examples")
    parser.add_argument("--eval", type=int, default=24, help="questions for answer diversity")
    parser.add_argument("--heldout", type=int, default=48, help="human answers for held-out loss")
    parser.add_argument("--gate", type=int, default=64, help="questions for the promotion gate")
    parser.add_argument("--steps", type=int, default=16, help="training steps per generation")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument("--modes", nargs="+", default=["guarded", "replace"])
    parser.add_argument(
        "--no-broken",
        dest="broken",
        action="store_false",
        help="skip the shuffled-answer candidate each guarded generation meets the gate with",
    )
    parser.add_argument("--out", type=Path, help="default: bench/results/collapse-seed<N>.json")
    args = parser.parse_args()
    args.out = args.out or RESULTS / f"collapse-seed{args.seed}.json"

    from assistant.llm.embedder import Embedder
    from assistant.llm.llama import LlamaEngine
    from assistant.llm.weights import embedded_model_path
    from assistant.settings import Settings
    from assistant.wiring import build_grader
    from feedback.refresh.train import load_base

    settings = Settings(home=new_home(prefix="collapse-home-"))
    path = embedded_model_path()
    llama = LlamaEngine(path, context_window=2048, threads=args.threads)
    base_cache = Path(tempfile.mkdtemp(prefix="base-cache-"))
    loop = Loop(
        llama, build_grader(settings, llama), Embedder(threads=1), settings, base_cache, args
    )

    base, tokenizer = load_base(path, base_cache)
    t = time.perf_counter()
    generation0 = loop.figures(None, base, tokenizer)
    answers0 = loop.self_graded(None, 0)
    generation0["kept"] = len(answers0)
    generation0["seconds"] = round(time.perf_counter() - t, 1)
    loop.report({"mode": "base", "generation": 0, **generation0})
    rows = []
    for mode in args.modes:
        rows += loop.run(mode, generation0, answers0)
    show(rows, generation0, args.modes)
    return 0


def show(rows: list[dict], generation0: dict, modes: list[str]) -> None:
    """The generations' table, the gate's tally and each mode's change since generation 0."""
    lines = []
    for r in rows:
        mix = f"{r.get('mix', '-')} ({r.get('model_only', '-')})"
        note = " refused: " + r["refused"] if "refused" in r else ""
        note += " rejected: " + "; ".join(r["rejected"]) if "rejected" in r else ""
        lines.append(
            [
                r["mode"],
                r["generation"],
                r["distinct_2"],
                r["spread"],
                r["heldout_loss"],
                mix + note,
            ]
        )
    columns = ["mode", "gen", "distinct-2", "spread", "held-out loss", "mix (model-only)"]
    table(None, columns, lines)
    for mode in ("guarded", "lessons"):
        gated = [r for r in rows if r["mode"] == mode and r["generation"] > 0]
        if not gated:
            continue
        promoted = sum("gate" in r and not r.get("rejected") for r in gated)
        broken = [r["broken"]["rejected"] for r in gated if "broken" in r]
        print(
            f"{mode}: {promoted} of {len(gated)} candidates promoted; shuffled-answer "
            f"candidates rejected {sum(broken)} of {len(broken)}"
        )
    for mode in modes:
        last = [r for r in rows if r["mode"] == mode][-1]
        changes = [
            f"{name} {generation0[key]} -> {last[key]} "
            f"({(last[key] - generation0[key]) / generation0[key]:+.1%})"
            for key, name in (("distinct_2", "distinct-2"), ("spread", "spread"))
        ]
        print(f"{mode}: " + ", ".join(changes) + " vs generation 0")


if __name__ == "__main__":
    sys.exit(main())
