"""Running one refresh end to end: the steps feedback/refresh/rules.py lists, crash-safe.

Owns the order of the steps, the run's row (each step is written before it starts), the lock
that keeps two refreshes from running at once, and where the candidate's files go. The rules
(what counts as too few examples, a diversity drop, a regression) live in
feedback/refresh/rules.py and feedback/refresh/gates.py; the torch work in
feedback/refresh/train.py, the GGUF file in feedback/refresh/gguf_export.py and the comparison
of answers in feedback/refresh/evaluation.py (judged pairwise by a fixed judge: the settings'
judge model or server, else the base model). Each step is one method.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from feedback.pool.records import preference_pairs, sft_record
from feedback.refresh.evaluation import compare, gate_prompts
from feedback.refresh.gates import regressions, unmeasured
from feedback.refresh.known import (
    gate_questions,
    known_figures,
    known_regression,
    known_unmeasured,
)
from feedback.refresh.rules import (
    Mix,
    Progress,
    RefreshConfig,
    build_mix,
    cap_model_only,
    general_records,
    held_out,
    read_anchor,
    rehearsal_prompts,
)
from store.adapters import AdapterRegistry
from store.pool import PoolStore
from store.runs import RunStore
from store.tables import RefreshRun

# How the served model answers the rehearsal prompts: as the app does, with a fixed seed.
REHEARSAL_SAMPLING = {"temperature": 0.2, "top_p": 0.9, "max_tokens": 192, "seed": 0}


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
        judge,  # the fixed pairwise judge (a ChatModel); None: the base model on `llama`
        config: RefreshConfig,
        system_prompt: str | None = None,
        progress: Progress | None = None,
        embedder=None,  # texts -> unit vectors, for the mix's embedding spread
        synthesizer=None,  # feedback.synthesis.stage.Synthesizer; None: no lessons are written
    ):
        self.pool = PoolStore(engine)
        self.runs = RunStore(engine)
        self.home = home
        self.registry = AdapterRegistry(home / "adapters")
        self.model_path = model_path
        self.llama = llama
        self.judge = judge
        self.config = config
        self.system = system_prompt
        self.progress = progress or (lambda step, done, message: None)
        self.embedder = embedder
        self.synthesizer = synthesizer
        self.rehearsal: list[dict] = []  # this run's graded answers to the rehearsal prompts
        self.seconds: dict[str, float] = {}  # per step, this run
        self._began: tuple[str, float] | None = None

    def _step(self, run: RefreshRun, step: str, **fields) -> RefreshRun:
        """Record `step` as begun (in its own transaction) before any of its work starts."""
        self._clock(step)
        run = self.runs.update(run.id, step=step, **fields)
        self.progress(step, 0.0, f"{step}…")
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
            self.seconds, self._began, self.rehearsal = {}, None, []
            try:
                run = self._run(run, dry_run, force)
            except Exception as exc:
                run = self.runs.finish(run.id, "failed", f"{type(exc).__name__}: {exc}")
            self._clock(None)
            return self.runs.update(run.id, metrics={**run.metrics, "seconds": self.seconds})

    def _clock(self, step: str | None) -> None:
        """The seconds each step took, for the run's record (`metrics["seconds"]`)."""
        now = time.monotonic()
        if self._began is not None:
            name, began = self._began
            self.seconds[name] = round(self.seconds.get(name, 0.0) + now - began, 2)
        self._began = (step, now) if step else None

    def _run(self, run: RefreshRun, dry_run: bool, force: bool) -> RefreshRun:
        run = self._step(run, "select")
        entries, heldout, trained = self._select(dry_run)
        run = self._step(run, "synthesize")
        synthesis = self._synthesize(heldout, dry_run)
        run = self._step(run, "guard")
        mix = self._guard(entries, heldout, trained, force)
        if not mix.refused and self._rehearses(dry_run):  # only for a mix that will train
            self.rehearsal, synthesis["rehearsal"] = self._rehearse(heldout, self._room(mix))
            mix = self._guard(entries, heldout, trained, force)
        data = dict(mix.counts)
        if synthesis is not None:
            data["synthesis"] = synthesis
        if mix.refused:
            return self.runs.finish(run.id, "refused", mix.refused, data=data)
        if dry_run:
            return self.runs.finish(run.id, "dry_run", "dry run: nothing trained", data=data)
        self.runs.record_mix(run.id, mix.exchange_ids)
        run = self.runs.update(run.id, data=data)
        run = self._step(run, "train")
        folder = self.registry.folder(run.adapter_id)
        trained_model = self._train(run, folder, mix, heldout)
        run = self.runs.update(run.id, metrics=trained_model.metrics)
        run = self._step(run, "export")
        adapter = self._export(folder, trained_model.model)
        run = self._step(run, "verify")
        held = [e for e in self.pool.entries(sorted(heldout)).values() if e.status == "train"]
        held_records = [sft_record(e, self.system) for e in held]
        metrics = trained_model.metrics
        metrics["verify"] = check = self._verify(trained_model, adapter, held_records + mix.records)
        run = self.runs.update(run.id, metrics=metrics)
        if failure := export_failure(check, self.config):
            return self.runs.finish(run.id, "failed", failure, metrics=metrics)
        run = self._step(run, "evaluate")
        metrics["evaluate"] = e = self._evaluate(trained_model, held_records, held, adapter)
        run = self.runs.update(run.id, metrics=metrics)
        reasons = regressions(e["candidate"], e["current"], self.config, e["base"])
        reasons += known_regression(e["candidate"].get("known"), self.config.known_tolerance)
        if reasons:
            metrics["reasons"] = reasons  # one entry per failed gate, for the Models tab
            return self.runs.finish(run.id, "rejected", "; ".join(reasons), metrics=metrics)
        run = self._step(run, "promote")
        (folder / "run.json").write_text(json.dumps({"run": run.id, "metrics": metrics}, indent=1))
        self.registry.activate(run.adapter_id)
        return self.runs.finish(run.id, "promoted", None, metrics=metrics)

    def _select(self, dry_run: bool) -> tuple[list, set[int], set[int]]:
        """Step 1: every `train` entry but deleted ones, the held-out split (new entries join
        it once, by a stable hash) and what promoted runs trained on before."""
        forgotten = self.pool.forgotten_ids()
        entries = [e for e in self.pool.train_entries() if e.exchange_id not in forgotten]
        heldout = self.runs.heldout_ids()
        trained = self.runs.trained_ids()
        fresh = [e.exchange_id for e in entries if e.exchange_id not in heldout | trained]
        newly_held = [i for i in fresh if held_out(i, self.config.heldout_share)]
        if not dry_run:
            self.runs.hold_out(newly_held)
        return entries, heldout | set(newly_held), trained

    def _synthesize(self, heldout: set[int], dry_run: bool) -> dict | None:
        """Step 1b: lessons written from the human entries that lack them (held-out ones
        excepted: they are never trained on); stale lessons withdrawn. A dry run only counts."""
        if self.synthesizer is None:
            return None
        tick = lambda n, total, message: self.progress("synthesize", n / max(1, total), message)  # noqa: E731
        return self.synthesizer.run(tick, dry_run=dry_run, skip=heldout).to_json()

    def _rehearses(self, dry_run: bool) -> bool:
        return bool(self.config.rehearsal and self.synthesizer is not None and not dry_run)

    def _room(self, mix: Mix) -> int:
        """How many rehearsal records the human share lets into `mix` (built without any):
        answering more would be work the cap throws away."""
        k = mix.counts
        human = k["human_written"] + k["human_approved"] + k["anchor"]
        return cap_model_only(human, 10**9, self.config.human_share) - k["model_only"]

    def _rehearse(self, heldout: set[int], room: int) -> tuple[list[dict], dict]:
        """Step 2, for a mix that will train: the model as it is without an adapter answers
        the neighbours of what was taught (feedback/synthesis/stage.py `neighbours`), then the
        served model (its adapter, if any) the shipped general prompts; both graded. The
        neighbours (at most one per parent) come first in the room the human share leaves for
        rehearsal, the general answers fill the rest; writing and answering stop once that
        `room` is full (a quarter more, at least two, for answers the repeat caps refuse)."""
        synth = self.synthesizer
        tick = lambda n, total, message: self.progress("guard", n / max(1, total), message)  # noqa: E731
        everyone = synth.parents()  # held-out ones too: no neighbour may ask what they ask
        parents = [e for pid, e in everyone.items() if pid not in heldout]
        enough = room + max(2, room // 4) if room > 0 else 0
        taught = [e.prompt for e in everyone.values()]
        questions, near = synth.neighbours(
            parents if enough else [], tick, measured=gate_questions() + taught, enough=enough
        )
        if not enough:
            near["skipped"] = "the human share leaves no room for rehearsal in this mix"
        near_records, near["answers"] = synth.rehearse(
            questions, self.system, REHEARSAL_SAMPLING, tick, enough=enough
        )
        active = self.registry.active() if synth.model.supports_adapters else None
        if active is not None:
            synth.model.set_adapter(active.path, active.adapter_id)
        try:
            prompts = rehearsal_prompts(self.config.rehearsal)
            left = enough - len(near_records)
            general, figures = synth.rehearse(
                prompts, self.system, REHEARSAL_SAMPLING, tick, enough=left
            )
        finally:
            if active is not None:
                synth.model.set_adapter(None)
        return near_records + general, figures | {"neighbours": near}

    def _guard(self, entries, heldout: set[int], trained: set[int], force: bool) -> Mix:
        """Step 2: the mix, with its human share, repeat caps and diversity guards applied."""
        last = self.runs.last_promoted()
        return build_mix(
            entries,
            heldout,
            trained,
            read_anchor(self.config.anchor_file),
            (last.data or {}) if last else None,
            self.system,
            self.config,
            forced=force,
            embed=self.embedder,
            lessons=self.synthesizer.lessons.kept() if self.synthesizer else (),
            rehearsal=self.rehearsal,
        )

    def _train(self, run: RefreshRun, folder: Path, mix: Mix, heldout: set[int]) -> Trained:
        """Step 3: SFT on the mix, then DPO on the preference pairs when it is on
        (`dpo_steps`) and there are enough."""
        from feedback.refresh.train import load_base, train_dpo, train_lora

        c = self.config
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
        model = info.pop("model")
        metrics = {"train": {**info, "load_seconds": round(load_s, 2)}}
        pairs = self._pairs(heldout)
        metrics["train"]["preference_pairs"] = len(pairs)
        if c.train.dpo_steps > 0 and len(pairs) >= c.min_pairs:
            self.runs.update(run.id, metrics=metrics)
            dpo = train_dpo(
                model,
                tokenizer,
                pairs,
                folder / "peft",
                c.train,
                seconds=max(1.0, c.train.max_seconds - info["seconds"]),
                progress=lambda s, n, loss: self.progress("train", s / n, f"DPO {s}/{n}"),
            )
            model = dpo.pop("model")
            metrics["train"]["dpo"] = dpo
        return Trained(model, tokenizer, metrics)

    def _pairs(self, heldout: set[int]) -> list[dict]:
        """Preference pairs for DPO; a pair touching a held-out exchange stays out of training."""
        return [
            record
            for record, _, ids in preference_pairs(self.pool, self.system)
            if heldout.isdisjoint(ids)
        ]

    def _export(self, folder: Path, peft_model) -> Path:
        """Step 4: the PEFT adapter as a GGUF adapter llama.cpp loads."""
        from feedback.refresh.gguf_export import export_peft

        cfg = peft_model.base_model.model.config
        return export_peft(
            folder / "peft",
            self.registry.file(folder.name),
            self.model_path,
            n_layers=cfg.num_hidden_layers,
            n_head=cfg.num_attention_heads,
            n_head_kv=cfg.num_key_value_heads,
        )

    def _verify(self, trained: Trained, adapter: Path, records: list[dict]) -> dict:
        """Step 5: llama.cpp with the exported adapter against PyTorch with the trained one."""
        from feedback.refresh.train import next_token_agreement

        probes = [r["messages"] for r in records[:8]]
        return next_token_agreement(trained.model, trained.tokenizer, self.llama, adapter, probes)

    def _current_losses(self, trained: Trained, record_sets: list[list[dict]]) -> list[float]:
        """Losses of the adapter being served (or of the base model, with none) on each set."""
        from feedback.refresh.train import completion_loss, load_adapter, load_base

        active = self.registry.active()
        peft_dir = self.registry.folder(active.adapter_id) / "peft" if active else None
        if peft_dir is not None and peft_dir.exists():
            base, _ = load_base(self.model_path, self.home / "cache" / "base")
            model = load_adapter(base, peft_dir)
            return [completion_loss(model, trained.tokenizer, r) for r in record_sets]
        with trained.model.disable_adapter():
            return [completion_loss(trained.model, trained.tokenizer, r) for r in record_sets]

    def _base_losses(self, trained: Trained, records, general, cur_loss, cur_general) -> dict:
        """The base model's held-out and general losses: the bar a candidate is held to
        whatever is served (with no adapter active, the current model's are the base's)."""
        from feedback.refresh.train import completion_loss

        if self.registry.active() is None:
            return {"heldout_loss": cur_loss, "general_loss": cur_general}
        with trained.model.disable_adapter():
            return {
                "heldout_loss": completion_loss(trained.model, trained.tokenizer, records),
                "general_loss": completion_loss(trained.model, trained.tokenizer, general),
            }

    def _taught(self, heldout: set[int]) -> list:
        """Corrections users wrote that earlier promoted adapters trained on: what a candidate
        must not forget. At most 64, spread over the whole history."""
        forgotten = self.pool.forgotten_ids()
        ids = sorted(self.runs.trained_ids() - heldout - forgotten)
        taught = [
            e
            for e in self.pool.entries(ids).values()
            if e.source == "human_written" and e.status == "train"
        ]
        return taught[:: max(1, len(taught) // 64)][:64]

    def _evaluate(self, trained: Trained, held_records, held, adapter) -> dict:
        """Step 6: held-out and taught-answer losses, then both models' answers to the same
        prompts, judged pairwise."""
        from feedback.refresh.train import completion_loss

        c = self.config
        records = held_records[:64]
        taught = self._taught({e.exchange_id for e in held})
        taught_records = [sft_record(e, self.system) for e in taught]
        head = [{"role": "system", "content": self.system}] if self.system else []
        general = [{"messages": head + r["messages"]} for r in general_records()]
        sets = (records, taught_records, general)
        cand_loss, cand_taught, cand_general = (
            completion_loss(trained.model, trained.tokenizer, r) for r in sets
        )
        cur_loss, cur_taught, cur_general = self._current_losses(trained, list(sets))
        active = self.registry.active()
        prompts, references = gate_prompts(
            [e.prompt for e in held], [(e.prompt, e.completion) for e in taught], c.eval_prompts
        )
        done, total = [0], 3 * len(prompts)

        def tick():
            done[0] += 1
            self.progress("evaluate", done[0] / total, f"{done[0]} of {total} answers and verdicts")

        # What the base model answers at a seed is kept between refreshes (the current model's
        # answers when none is served, the base's diversity sample): the same text, read back.
        memo = self.synthesizer.memo if self.synthesizer else None
        cand, cur, base = compare(
            memo.over(self.llama) if memo else self.llama,
            self.judge or self.llama,  # verdicts are grades: never kept
            prompts,
            adapter,
            active.path if active else None,
            active.adapter_id if active else None,
            references,
            tick,
            self.embedder,
            c.gate_alpha if c.judge_early_stop else None,
        )
        cand["heldout_loss"], cur["heldout_loss"] = cand_loss, cur_loss
        cand["taught_loss"], cur["taught_loss"] = cand_taught, cur_taught
        cand["general_loss"], cur["general_loss"] = cand_general, cur_general
        if memo:
            memo.save()
        base.update(self._base_losses(trained, records, general, cur_loss, cur_general))
        self.progress("evaluate", 1.0, "the known answers: the base model's, then the candidate's")
        cache = self.home / "cache" / "known-base.json"
        cand["known"] = known_figures(self.llama, adapter, cache=cache)
        for figures in (cand, cur):
            figures.pop("answers")
        return {
            "candidate": cand,
            "current": cur,
            "unmeasured": unmeasured({"candidate": cand, "current": cur})
            + known_unmeasured(cand.get("known")),
            "base": base,
            "prompts": len(prompts),
            "heldout": len(records),
            "taught": len(taught_records),
            "judge": self.judge.model_id
            if self.judge
            else f"the base model ({self.llama.model_id})",
        }


@dataclass
class Trained:
    """The trained PEFT model, its tokenizer and the run's metrics so far."""

    model: object
    tokenizer: object
    metrics: dict


def export_failure(check: dict, c: RefreshConfig) -> str | None:
    """Why a run whose export check failed was not used; None when it passed.

    >>> export_failure({"tie": 0.5, "agreement": 0.9, "positions": 100}, RefreshConfig())
    'the exported adapter disagrees with the trained one: llama.cpp predicts the same next token (up to ties within 0.5 logits) at 90.0% of 100 positions, below 95%; it was not used'
    >>> ok = {"tie": 0.5, "agreement": 0.97, "positions": 100, "moved": 20}
    >>> export_failure(ok | {"moved_agreement": 0.96}, RefreshConfig()) is None
    True
    >>> export_failure(ok | {"moved_agreement": 0.88}, RefreshConfig())
    "the exported adapter disagrees with the trained one where it matters: at the 20 positions where the adapter changed the base model's pick, llama.cpp follows it at 88.0%, below 95%; it was not used"
    >>> export_failure(ok | {"moved": 3, "moved_agreement": 0.0}, RefreshConfig()) is None
    True
    """
    if check["agreement"] < c.min_agreement:
        return (
            f"the exported adapter disagrees with the trained one: llama.cpp predicts the "
            f"same next token (up to ties within {check['tie']} logits) at "
            f"{check['agreement']:.1%} of {check['positions']} positions, below "
            f"{c.min_agreement:.0%}; it was not used"
        )
    moved, share = check.get("moved", 0), check.get("moved_agreement")
    if moved >= c.min_moved and share is not None and share < c.min_agreement:
        return (
            f"the exported adapter disagrees with the trained one where it matters: at the "
            f"{moved} positions where the adapter changed the base model's pick, llama.cpp "
            f"follows it at {share:.1%}, below {c.min_agreement:.0%}; it was not used"
        )
    return None
