"""The refresh at 100 and 1,000 exchanges: wall time and peak memory of each step, and the
training speed of our path (TRL's SFTTrainer, feedback/refresh/train.py) against a plain transformers
Trainer + PEFT loop on the same data, in the same process.

For each size a fresh home is filled with synthetic exchanges (bench/pool.py's generator: real
HaluEval and TruthfulQA questions and answers, a third rated up, some corrected), the real curator
builds the pool, and a real refresh runs with the default settings on the embedded model: train,
GGUF export, llama.cpp export check, the pairwise evaluation, promotion. A sampler thread records
the process's resident memory every 50 ms and keeps the peak per step. The dequantized base model
is cached before the first size (its one-off cost is printed apart), as it is after a user's
first refresh.

The speed comparison trains the same records for the same steps and batch size both ways, in the
order plain, ours, ours, plain after a warm-up of each, and divides the real (unpadded) tokens
each trainer counted (`include_num_input_tokens_seen="non_padding"`) by its own `train_runtime`
(ratio > 1: ours is faster).

The DPO comparison trains the same preference pairs (from the 1,000-exchange pool's
corrections) for the same steps from a fresh SFT adapter, with the reference model's
log-probabilities computed once up front (`dpo_precompute_ref`, the default) and at every
step, in the order every-step, once, once, every-step, and reports each's wall time.

    .venv/bin/python -m bench.refresh [--sizes 100 1000] [--speed-records 64] [--skip-speed]
        [--skip-dpo] [--dpo-steps 20] [--dpo-repeats 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.harness import new_home, table
from bench.synthetic import synthesize


class StepMemory:
    """Peak resident memory and wall time per refresh step, from the refresh's progress calls."""

    def __init__(self):
        import psutil

        self.proc = psutil.Process()
        self.step, self.started = "setup", time.perf_counter()
        self.peak: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self):
        while not self.stop.wait(0.05):
            mb = self.proc.memory_info().rss / 2**20
            self.peak[self.step] = max(self.peak.get(self.step, 0.0), mb)

    def progress(self, step: str, fraction: float, message: str) -> None:
        if step != self.step:
            self.switch(step)

    def switch(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[self.step] = self.seconds.get(self.step, 0.0) + now - self.started
        self.step, self.started = step, now

    def close(self) -> None:
        self.switch("done")
        self.stop.set()
        self.thread.join()


def refresh_at(n: int, llama, embedder, base_cache: Path) -> dict:
    from assistant.settings import Settings
    from assistant.wiring import build_curator, refresh_config
    from feedback.refresh.pipeline import Refresher
    from feedback.refresh.rules import STEPS
    from store.db import open_database

    home = new_home(prefix=f"refresh{n}-")
    settings = Settings(home=home)
    db = open_database(settings.effective_database_url)
    synthesize(db, n)
    curator = build_curator(settings, db, embedder)
    curator.update(curator.pool.answered_exchange_ids())
    (home / "cache").mkdir()
    (home / "cache" / "base").symlink_to(base_cache)
    memory = StepMemory()
    refresher = Refresher(
        db,
        home,
        llama.path,
        llama,
        None,  # the base model judges, as with the default settings
        refresh_config(settings),
        system_prompt=settings.system_prompt,
        progress=memory.progress,
        embedder=embedder,
    )
    run = refresher.run()
    memory.close()
    train = (run.metrics or {}).get("train", {})
    return {
        "exchanges": n,
        "status": run.status,
        "reason": run.reason,
        "mix": (run.data or {}).get("mix"),
        "steps": {s: round(memory.seconds.get(s, 0.0), 1) for s in STEPS},
        "peak_mb": {s: round(memory.peak.get(s, 0.0)) for s in STEPS},
        "train_steps": train.get("steps"),
        "train_tokens": train.get("tokens"),
        "tokens_per_second": train.get("tokens_per_second"),
        "dpo": train.get("dpo"),
        "verify": (run.metrics or {}).get("verify"),
    }


def plain_trainer(base_cache_dir: Path, records: list[dict], steps: int, batch: int) -> dict:
    """The baseline: transformers' Trainer on a PEFT model, the prompt masked out of the labels,
    padded per batch; nothing from TRL."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
    )

    from feedback.refresh.train import TARGETS, TrainConfig

    c = TrainConfig()
    tokenizer = AutoTokenizer.from_pretrained(str(base_cache_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_cache_dir), dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(r=c.rank, lora_alpha=c.lora_alpha, lora_dropout=0.0, target_modules=TARGETS),
    )

    def encode(r):
        prompt = tokenizer.apply_chat_template(
            r["messages"][:-1], tokenize=False, add_generation_prompt=True
        )
        full = tokenizer.apply_chat_template(r["messages"], tokenize=False)
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(full, add_special_tokens=False)["input_ids"][: c.max_length]
        return {"input_ids": ids, "labels": [-100] * len(p) + ids[len(p) :]}

    data = Dataset.from_list([encode(r) for r in records])
    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(prefix="plain-"),
        max_steps=steps,
        per_device_train_batch_size=batch,
        learning_rate=c.learning_rate,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        use_cpu=True,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collator)
    result = trainer.train()
    return {
        "tokens": trainer.state.num_input_tokens_seen,
        "seconds": result.metrics["train_runtime"],
    }


def ours(base_cache_dir: Path, records: list[dict], steps: int, batch: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from feedback.refresh.train import TrainConfig, train_lora

    tokenizer = AutoTokenizer.from_pretrained(str(base_cache_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_cache_dir), dtype=torch.float32)
    info = train_lora(
        model,
        tokenizer,
        records,
        Path(tempfile.mkdtemp(prefix="ours-")),
        TrainConfig(max_steps=steps, epochs=1e9, batch_size=batch),
    )
    return {"tokens": info["tokens"], "seconds": info["train_seconds"]}


def speed(base_cache_dir: Path, records: list[dict], steps: int, batch: int = 4) -> dict:
    ours(base_cache_dir, records, 2, batch)  # warm-up: thread pools, first-call costs
    plain_trainer(base_cache_dir, records, 2, batch)
    runs = {"plain": [], "ours": []}
    for kind in ("plain", "ours", "ours", "plain"):
        fn = plain_trainer if kind == "plain" else ours
        runs[kind].append(fn(base_cache_dir, records, steps, batch))
        print(f"  {kind}: {runs[kind][-1]}", flush=True)
    rate = {k: sum(r["tokens"] for r in v) / sum(r["seconds"] for r in v) for k, v in runs.items()}
    return {
        "ours tokens/s": round(rate["ours"], 1),
        "plain Trainer+PEFT tokens/s": round(rate["plain"], 1),
        "ratio": round(rate["ours"] / rate["plain"], 3),
        "steps": steps,
        "batch": batch,
    }


def dpo_once(base_cache_dir: Path, records, pairs, precompute: bool, steps: int = 20) -> float:
    """Wall seconds of `steps` steps of `train_dpo` on `pairs`, from a 2-step SFT adapter on
    `records`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from feedback.refresh.train import TrainConfig, train_dpo, train_lora

    tokenizer = AutoTokenizer.from_pretrained(str(base_cache_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_cache_dir), dtype=torch.float32)
    out = Path(tempfile.mkdtemp(prefix="dpo-"))
    config = TrainConfig(max_steps=2, dpo_precompute_ref=precompute, dpo_steps=steps)
    model = train_lora(model, tokenizer, records, out, config)["model"]
    t = time.perf_counter()
    train_dpo(model, tokenizer, pairs, out, config, seconds=3600)
    return round(time.perf_counter() - t, 2)


def dpo_speed(
    base_cache_dir: Path, records: list[dict], pairs: list[dict], steps: int, repeats: int = 2
) -> dict:
    dpo_once(base_cache_dir, records, pairs[:4], True, steps=2)  # warm-up
    runs = {True: [], False: []}
    for precompute in (False, True, True, False)[: 2 * repeats]:
        runs[precompute].append(dpo_once(base_cache_dir, records, pairs, precompute, steps))
        print(f"  precompute={precompute}: {runs[precompute][-1]} s", flush=True)
    every, once = sum(runs[False]) / repeats, sum(runs[True]) / repeats
    return {
        "pairs": len(pairs),
        "steps": steps,
        "every step s": round(every, 2),
        "precomputed s": round(once, 2),
        "ratio": round(every / once, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 1000])
    parser.add_argument(
        "--speed-records",
        type=int,
        default=64,
        help="train both ways for exactly one epoch over this many records, so both see the "
        "same tokens (our sampler groups by length, and a partial epoch would see others)",
    )
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-dpo", action="store_true")
    parser.add_argument("--dpo-steps", type=int, default=20, help="DPO steps per timed run")
    parser.add_argument(
        "--dpo-repeats", type=int, choices=(1, 2), default=2, help="1: every-step, once; 2: ABBA"
    )
    args = parser.parse_args()

    from assistant.llm.embedder import Embedder
    from assistant.llm.llama import LlamaEngine
    from assistant.llm.weights import embedded_model_path
    from feedback.refresh.train import base_key, load_base

    path = embedded_model_path()
    base_cache = Path(tempfile.mkdtemp(prefix="base-cache-"))
    t = time.perf_counter()
    load_base(path, base_cache)
    print(f"first load of the base (GGUF dequantized, cached): {time.perf_counter() - t:.1f} s")
    t = time.perf_counter()
    load_base(path, base_cache)
    print(f"later loads from the cache: {time.perf_counter() - t:.1f} s", flush=True)
    llama = LlamaEngine(path, context_window=2048, threads=2)
    embedder = Embedder(threads=1)

    results = []
    for n in args.sizes:
        results.append(refresh_at(n, llama, embedder, base_cache))
        print("so far:", json.dumps(results[-1]), flush=True)
    show(results)
    if not (args.skip_speed and args.skip_dpo):
        compare_training(args, base_cache / base_key(path), embedder)
    return 0


def show(results: list[dict]) -> None:
    """Each size's steps (seconds and peak memory), then its mix, training and export check."""
    from feedback.refresh.rules import STEPS

    table(
        "wall seconds per step (peak resident MiB)",
        ["exchanges", *STEPS, "status"],
        [
            [r["exchanges"], *(f"{r['steps'][s]} ({r['peak_mb'][s]})" for s in STEPS), r["status"]]
            for r in results
        ],
    )
    for r in results:
        print(
            f"{r['exchanges']}: mix {r['mix']}, {r['train_steps']} steps, "
            f"{r['train_tokens']} tokens at {r['tokens_per_second']} tokens/s; "
            f"DPO {r['dpo'] and {k: r['dpo'][k] for k in ('pairs', 'steps', 'seconds')}}; "
            f"export check {r['verify']}; {r['reason'] or ''}"
        )


def compare_training(args, base: Path, embedder) -> None:
    """DPO with the reference's log-probs precomputed against every step, and our training
    against a plain Trainer + PEFT, on a 1,000-exchange pool's records."""
    records, pairs = speed_records(new_home(prefix="speed-"), embedder)
    if not args.skip_dpo:
        print(
            f"\nDPO, {len(pairs)} pairs, {args.dpo_steps} steps, the reference's log-probs every "
            "step vs once:",
            flush=True,
        )
        print(
            json.dumps(
                dpo_speed(
                    base,
                    records[:16],
                    pairs,
                    args.dpo_steps,
                    args.dpo_repeats,
                )
            )
        )
    if not args.skip_speed:
        records = records[: args.speed_records]
        steps = -(-len(records) // 4)
        print(f"\ntraining speed, one epoch of {len(records)} records:", flush=True)
        figures = speed(base, records, steps)
        print(json.dumps(figures))


def speed_records(home: Path, embedder) -> tuple[list[dict], list[dict]]:
    """The SFT records and the preference pairs a refresh of 1,000 synthetic exchanges would
    train on."""
    from assistant.settings import Settings
    from assistant.wiring import build_curator
    from feedback.pool.records import preference_pairs, records
    from store.db import open_database

    settings = Settings(home=home)
    db = open_database(settings.effective_database_url)
    synthesize(db, 1000, seed=1)
    curator = build_curator(settings, db, embedder)
    curator.update(curator.pool.answered_exchange_ids())
    sft = [r for r, _ in records(curator.pool, "sft", settings.system_prompt)]
    pairs = [r for r, _, _ in preference_pairs(curator.pool, settings.system_prompt)]
    return sft, pairs


if __name__ == "__main__":
    sys.exit(main())
