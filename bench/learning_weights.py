"""The weights' side of a learning run (bench/learning.py): one `autodidact refresh` in a
subprocess on the run's home (with the `--refresh-*` flags it was given, forced when too few
new examples), which adapter the next phase then measures, and the held-out loss of the base
or an adapter on TruthfulQA's human answers. The app, the questions and the scoring are
bench/learning.py's and bench/learning_checks.py's.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from bench.harness import DATA, ROOT
from bench.learning_checks import loss_records

TRUTHFULQA = DATA / "truthfulqa" / "dev.jsonl"
REFRESH_FLAGS = ("refresh_epochs", "refresh_learning_rate", "refresh_max_steps", "refresh_rank",
                 "refresh_kl_weight", "refresh_eval_prompts", "refresh_dpo_steps")  # fmt: skip


def refresh(home: Path, args, n: int) -> dict:
    """One `autodidact refresh` on the home (again with --force if too few new examples)."""
    from sqlalchemy import text

    from store.db import open_database
    from store.runs import RunStore

    # No --seed: the refresh samples with its own fixed seeds, and takes only the flags it uses.
    flags = ["--home", str(home), "--max-tokens", str(args.max_tokens)]
    env = dict(os.environ)
    if args.threads:  # llama.cpp's, and torch's (OpenMP) and the BLAS libraries'
        flags += ["--threads", str(args.threads)]
        env.update({v: str(args.threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    for name in REFRESH_FLAGS:
        if (value := getattr(args, name)) is not None:
            flags += ["--" + name.replace("_", "-"), str(value)]
    attempts = []
    for force in (False, True):
        command = [sys.executable, "-m", "assistant.cli", "refresh", *flags]
        command += ["--force"] if force else []
        log = home / f"refresh-{n}{'-forced' if force else ''}.log"
        start = time.perf_counter()
        with log.open("w") as out:
            rc = subprocess.run(
                command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env
            ).returncode
        engine = open_database(f"sqlite:///{home / 'autodidact.db'}")
        runs = RunStore(engine)
        run = runs.runs()[-1]
        with engine.connect() as db:
            query = text("SELECT exchange_id FROM trained_on WHERE run_id = :r")
            mix = [i for (i,) in db.execute(query, {"r": run.id})]
        fields = ("adapter_id", "status", "step", "reason", "data", "metrics")
        attempts.append(
            {
                "command": shlex.join(["autodidact", *command[3:]]),
                "rc": rc,
                "seconds": round(time.perf_counter() - start, 1),
                "log": str(log),
                "run_id": run.id,
                **{name: getattr(run, name) for name in fields},
                "mix": mix,
                "heldout": sorted(runs.heldout_ids()),
            }
        )
        engine.dispose()
        if not (run.status == "refused" and "new training example" in (run.reason or "")):
            break
    return {**attempts[-1], "attempts": attempts}


def serve_weights(home: Path, run: dict, args) -> tuple[str | None, str]:
    """The adapter the next phase measures and how it came to be served."""
    from store.adapters import AdapterRegistry

    registry = AdapterRegistry(home / "adapters")
    if run["status"] == "promoted":
        return run["adapter_id"], "promoted by the refresh"
    if run["status"] == "rejected" and args.promote_anyway:
        registry.activate(run["adapter_id"])
        return run["adapter_id"], "rejected by the gate; activated by the bench to measure it"
    active = registry.active()
    current = active.adapter_id if active else None
    return current, f"refresh {run['status']}; still serving {current or 'the base model'}"


def held_out_loss(home: Path, adapter_id: str | None, rows: int) -> float:
    """Mean NLL per answer token of TruthfulQA's human best answers, base or with an adapter."""
    import torch

    from assistant.llm.weights import resolve_gguf
    from assistant.settings import Settings
    from feedback.refresh.train import completion_loss, load_adapter, load_base

    lines = TRUTHFULQA.read_text(encoding="utf-8").splitlines()[:rows]
    records = loss_records([json.loads(line) for line in lines], Settings().system_prompt)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 9x faster than 2 here whenever anything else wants a core
    try:
        model, tokenizer = load_base(resolve_gguf(None), home / "cache" / "base")
        if adapter_id is not None:
            model = load_adapter(model, home / "adapters" / adapter_id / "peft")
        return completion_loss(model, tokenizer, records)
    finally:
        torch.set_num_threads(threads)
