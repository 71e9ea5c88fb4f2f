"""Running one refresh end to end: the steps of feedback/refresh.py, recorded and crash-safe.

Owns the order of the steps, the run's row (each step is written before it starts), the lock
that keeps two refreshes from running at once, and where the candidate's files go. The rules
(what counts as too few examples, a diversity drop, a regression) live in feedback/refresh.py;
the torch work in feedback/train.py and feedback/evaluation.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from feedback.refresh import (
    Progress,
    RefreshConfig,
    build_mix,
    held_out,
    kill_point,
    read_anchor,
    regressions,
)
from store.adapters import AdapterRegistry
from store.models import RefreshRun
from store.pool import PoolStore
from store.runs import RunStore


class RefreshBusy(RuntimeError):
    pass


@contextmanager
def refresh_lock(home: Path):
    """An exclusive lock on `home/refresh.lock`; released by the OS if the process dies."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / "refresh.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise RefreshBusy(f"a refresh is already running (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


class Refresher:
    def __init__(
        self,
        engine,  # store engine (SQLAlchemy)
        home: Path,
        model_path: Path,
        llama,  # a LlamaEngine on the same GGUF, for the export check and the evaluation
        grader,
        config: RefreshConfig,
        system_prompt: str | None = None,
        progress: Progress | None = None,
        embedder=None,  # texts -> unit vectors, for the mix's embedding spread
    ):
        self.pool = PoolStore(engine)
        self.runs = RunStore(engine)
        self.home = home
        self.registry = AdapterRegistry(home / "adapters")
        self.model_path = model_path
        self.llama = llama
        self.grader = grader
        self.config = config
        self.system = system_prompt
        self.progress = progress or (lambda step, done, message: None)
        self.embedder = embedder

    def _step(self, run: RefreshRun, step: str, **fields) -> RefreshRun:
        run = self.runs.update(run.id, step=step, **fields)
        self.progress(step, 0.0, f"{step}…")
        kill_point(step)
        return run

    def run(self, dry_run: bool = False, force: bool = False) -> RefreshRun:
        with refresh_lock(self.home):
            self.runs.recover_interrupted()  # we hold the lock: any `running` run is dead
            active = self.registry.active()
            stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
            run = self.runs.start(
                adapter_id=f"adapter-{stamp}-{len(self.runs.runs()) + 1:04d}",
                base_model=self.model_path.name,
                parent_adapter_id=active.adapter_id if active else None,
                dry_run=dry_run,
                forced=force,
            )
            try:
                return self._run(run, dry_run, force)
            except Exception as exc:
                return self.runs.finish(run.id, "failed", f"{type(exc).__name__}: {exc}")

    def _run(self, run: RefreshRun, dry_run: bool, force: bool) -> RefreshRun:
        c = self.config
        # 1. select
        run = self._step(run, "select")
        forgotten = self.pool.forgotten_ids()
        entries = [e for e in self.pool.train_entries() if e.exchange_id not in forgotten]
        heldout = self.runs.heldout_ids()
        trained = self.runs.trained_ids()
        fresh = [e.exchange_id for e in entries if e.exchange_id not in heldout | trained]
        newly_held = [i for i in fresh if held_out(i, c.heldout_share)]
        if not dry_run:
            self.runs.hold_out(newly_held)
        heldout |= set(newly_held)
        # 2. guard
        run = self._step(run, "guard")
        last = self.runs.last_promoted()
        mix = build_mix(
            entries,
            heldout,
            trained,
            read_anchor(c.anchor_file),
            (last.data or {}) if last else None,
            self.system,
            c,
            forced=force,
            embed=self.embedder,
        )
        data = dict(mix.counts)
        if mix.refused:
            return self.runs.finish(run.id, "refused", mix.refused, data=data)
        if dry_run:
            return self.runs.finish(run.id, "dry_run", "dry run: nothing trained", data=data)
        self.runs.record_mix(run.id, mix.exchange_ids)
        run = self.runs.update(run.id, data=data)
        # 3. train
        run = self._step(run, "train")
        from feedback.train import load_base, train_lora

        folder = self.registry.folder(run.adapter_id)
        folder.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        base, tokenizer = load_base(self.model_path, self.home / "cache" / "base")
        load_s = time.monotonic() - t
        info = train_lora(
            base,
            tokenizer,
            mix.records,
            folder / "peft",
            c.train,
            progress=lambda s, n, loss: self.progress("train", s / n, f"step {s}/{n}, loss {loss}"),
        )
        peft_model = info.pop("model")
        metrics = {"train": {**info, "load_seconds": round(load_s, 2)}}
        pairs = self._pairs(heldout)
        metrics["train"]["preference_pairs"] = len(pairs)
        if len(pairs) >= c.min_pairs:
            from feedback.train import train_dpo

            self.runs.update(run.id, metrics=metrics)
            dpo = train_dpo(
                peft_model,
                tokenizer,
                pairs,
                folder / "peft",
                c.train,
                seconds=max(1.0, c.train.max_seconds - info["seconds"]),
                progress=lambda s, n, loss: self.progress("train", s / n, f"DPO {s}/{n}"),
            )
            peft_model = dpo.pop("model")
            metrics["train"]["dpo"] = dpo
        run = self.runs.update(run.id, metrics=metrics)
        # 4. export
        run = self._step(run, "export")
        adapter = self._export(folder, peft_model)
        # 5. verify
        run = self._step(run, "verify")
        held = [e for e in self.pool.entries(sorted(heldout)).values() if e.status == "train"]
        from feedback.export import prompt_messages

        held_records = [
            {
                "messages": prompt_messages(e, self.system)
                + [{"role": "assistant", "content": e.completion}]
            }
            for e in held
        ]
        from feedback.evaluation import next_token_agreement

        probes = [r["messages"] for r in (held_records + mix.records)[:8]]
        check = next_token_agreement(peft_model, tokenizer, self.llama, adapter, probes)
        metrics["verify"] = check
        run = self.runs.update(run.id, metrics=metrics)
        if check["agreement"] < c.min_agreement:
            return self.runs.finish(
                run.id,
                "failed",
                f"the exported adapter disagrees with the trained one: llama.cpp predicts the "
                f"same next token (up to ties within {check['tie']} logits) at "
                f"{check['agreement']:.1%} of {check['positions']} positions, below "
                f"{c.min_agreement:.0%}; it was not used",
                metrics=metrics,
            )
        # 6. evaluate
        run = self._step(run, "evaluate")
        metrics["evaluate"] = self._evaluate(peft_model, tokenizer, held_records, held, adapter)
        run = self.runs.update(run.id, metrics=metrics)
        e = metrics["evaluate"]
        reasons = regressions(e["candidate"], e["current"], c, e["base"])
        if reasons:
            return self.runs.finish(run.id, "rejected", "; ".join(reasons), metrics=metrics)
        # 7. promote
        run = self._step(run, "promote")
        (folder / "run.json").write_text(json.dumps({"run": run.id, "metrics": metrics}, indent=1))
        self.registry.activate(run.adapter_id)
        return self.runs.finish(run.id, "promoted", None, metrics=metrics)

    def _pairs(self, heldout: set[int]) -> list[dict]:
        """Preference pairs for DPO; a pair touching a held-out exchange stays out of training."""
        from feedback.export import preference_pairs

        return [
            record
            for record, _, ids in preference_pairs(self.pool, self.system)
            if heldout.isdisjoint(ids)
        ]

    def _export(self, folder: Path, peft_model) -> Path:
        import gguf
        from safetensors.numpy import load_file

        from feedback.lora_gguf import write_adapter

        cfg = peft_model.base_model.model.config
        reader = gguf.GGUFReader(str(self.model_path))
        field = reader.fields["general.architecture"]
        arch = bytes(field.parts[field.data[0]]).decode()
        alpha = json.loads((folder / "peft" / "adapter_config.json").read_text())["lora_alpha"]
        return write_adapter(
            load_file(str(folder / "peft" / "adapter_model.safetensors")),
            self.registry.file(folder.name),
            arch=arch,
            n_layers=cfg.num_hidden_layers,
            n_head=cfg.num_attention_heads,
            n_head_kv=cfg.num_key_value_heads,
            alpha=alpha,
            base_model=self.model_path.name,
        )

    def _evaluate(self, peft_model, tokenizer, held_records, held, adapter) -> dict:
        from feedback.evaluation import REGRESSION_PROMPTS, compare, completion_loss

        c = self.config
        records = held_records[:64]
        cand_loss = completion_loss(peft_model, tokenizer, records)
        active = self.registry.active()
        if active is not None and (self.registry.folder(active.adapter_id) / "peft").exists():
            from peft import PeftModel

            from feedback.train import load_base

            base, _ = load_base(self.model_path, self.home / "cache" / "base")
            current_model = PeftModel.from_pretrained(
                base, str(self.registry.folder(active.adapter_id) / "peft")
            )
            cur_loss = completion_loss(current_model, tokenizer, records)
        else:
            with peft_model.disable_adapter():
                cur_loss = completion_loss(peft_model, tokenizer, records)
        prompts = [e.prompt for e in held][: c.eval_prompts // 2] + REGRESSION_PROMPTS
        prompts = prompts[: c.eval_prompts]
        done = [0]

        def tick():
            done[0] += 1
            self.progress("evaluate", done[0] / (2 * len(prompts)), f"{done[0]} answers")

        cand, cur, base = compare(
            self.llama,
            self.grader,
            prompts,
            adapter,
            active.path if active else None,
            active.adapter_id if active else None,
            tick,
            self.embedder,
        )
        cand["heldout_loss"], cur["heldout_loss"] = cand_loss, cur_loss
        for figures in (cand, cur):
            figures.pop("answers")
        return {
            "candidate": cand,
            "current": cur,
            "base": base,
            "prompts": len(prompts),
            "heldout": len(records),
        }
