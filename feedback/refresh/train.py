"""Training a LoRA adapter on the pool with TRL and PEFT, from the GGUF the app serves.

Owns the torch side of a refresh: loading the base weights from the GGUF file (transformers
dequantizes it to fp32; the result is cached per base file, so only the first refresh pays the
load), fine-tuning with TRL's SFTTrainer and a PEFT LoRA config, bounded in steps, seconds and
memory, held-out loss, and the PyTorch half of the export check (next-token predictions of the
trained model, which llama.cpp with the exported adapter must match). The only module that
imports torch, transformers, trl or peft. Heavy imports (torch, transformers, trl,
peft) happen inside these functions: the app and most tests never load them.

What to train on, and whether the result is promoted, is feedback/refresh/rules.py's and gates.py's business.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from assistant.options import option

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class TrainConfig:
    """LoRA training bounds and hyperparameters; `Settings` offers the bounds as
    `refresh_max_steps`, `refresh_max_seconds` and `refresh_max_memory_mb`."""

    rank: int = option(8, "LoRA rank")
    alpha: float | None = option(None, "LoRA alpha; unset: twice the rank")
    dropout: float = option(0.0, "LoRA dropout")
    learning_rate: float = option(2e-3, "SFT learning rate")
    batch_size: int = option(4, "examples per training step")
    max_steps: int = option(240, "most training steps per refresh")
    epochs: float = option(
        4.0, "passes over the mix; the steps run are min(max_steps, epochs x batches)"
    )
    max_seconds: float = option(1800.0, "most seconds of training")
    max_memory_mb: int = option(8192, "most memory for training (resident MiB of the process)")

    @property
    def lora_alpha(self) -> float:
        """
        >>> TrainConfig(rank=8).lora_alpha, TrainConfig(rank=8, alpha=4.0).lora_alpha
        (16.0, 4.0)
        """
        return float(self.alpha) if self.alpha is not None else 2.0 * self.rank

    max_length: int = option(512, "tokens per example")
    dpo_steps: int = option(0, "DPO steps after SFT when there are enough pairs; 0: none")
    dpo_learning_rate: float = option(5e-5, "DPO learning rate (its steps are sharper than SFT's)")
    dpo_beta: float = option(0.1, "how far DPO may move from the SFT adapter it starts from")
    dpo_precompute_ref: bool = option(
        True, "compute the reference's log-probabilities once before DPO, not at every step"
    )
    # bench/lessons.py (docs/learning.md): at 0.3, 62.5% recall of 16 facts but 7 of 22 known
    # answers lost; at 1, 37.5% and 3 lost, about what any adapter flips among fragile ones.
    kl_weight: float = option(
        1.0,
        "weight of a KL term holding the adapter's next-token predictions to the base "
        "model's at every position (KL-regularised SFT); 0: SFT's loss alone",
    )
    # bench/lessons.py (docs/learning.md), two sets of 16 facts at KL 1: 31.2/16.7% -> 60.4/56.2%.
    kl_spare_new: bool = option(
        True,
        "at a taught token, scale the KL term by the base model's probability of that token: "
        "what the base would not say (a taught name or number) is learnt at full strength, "
        "the words it would say anyway stay held",
    )
    seed: int = option(0, "training seed")
    targets: list[str] = field(
        default_factory=lambda: list(TARGETS), metadata={"help": "modules LoRA adapts"}
    )


class TrainingStopped(RuntimeError):
    """Training hit a bound (memory) and its result must not be used."""


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def base_key(gguf_path: Path) -> str:
    """A cache key for a base model file: its name plus a hash of its size and first 4 MiB."""
    h = hashlib.sha256(str(gguf_path.stat().st_size).encode())
    with gguf_path.open("rb") as f:
        h.update(f.read(4 << 20))
    return f"{gguf_path.stem}-{h.hexdigest()[:12]}"


def load_base(gguf_path: Path, cache_root: Path):
    """(model, tokenizer) for the GGUF, in fp32. The first call dequantizes the file with
    transformers and saves the result under `cache_root`; later calls load that."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache = cache_root / base_key(gguf_path)
    if not (cache / "config.json").exists():
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
        # Loaded from GGUF, the model still says it is quantized, and transformers then refuses
        # to train or save it; the weights are plain fp32 by now.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        tmp = cache.with_name(cache.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        shutil.rmtree(cache, ignore_errors=True)
        os.replace(tmp, cache)
    model = AutoModelForCausalLM.from_pretrained(str(cache), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(cache))
    return model, tokenizer


def prompt_completion(messages: list[dict]) -> dict:
    """A `messages` record split so the loss falls on the final answer only.

    >>> prompt_completion([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    {'prompt': [{'role': 'user', 'content': 'hi'}], 'completion': [{'role': 'assistant', 'content': 'yo'}]}
    """
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def common_args(config: TrainConfig) -> dict:
    """The trainer arguments SFT and DPO share: seeded, fp32, no checkpoints, no reporting."""
    return {
        "lr_scheduler_type": "constant",
        "warmup_steps": 0,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": config.seed,
        "data_seed": config.seed,
        "use_cpu": device() == "cpu",
        "max_length": config.max_length,
        "gradient_checkpointing": False,  # a 135M model fits; recomputation would only cost time
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "bf16": False,
        "fp16": False,
    }


class Bounds:
    """Time and memory bounds on a trainer, plus its progress: one per training phase."""

    def __init__(
        self, config: TrainConfig, steps: int, progress=None, seconds: float | None = None
    ):
        self.config, self.steps, self.progress = config, steps, progress
        self.seconds = config.max_seconds if seconds is None else seconds
        self.started = time.monotonic()
        self.peak_mb = rss_mb()
        self.stopped: str | None = None
        self.loss: float | None = None

    def callback(self):
        from transformers import TrainerCallback

        bounds = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                bounds.peak_mb = max(bounds.peak_mb, rss_mb())
                if bounds.peak_mb > bounds.config.max_memory_mb:
                    bounds.stopped = "memory"
                    control.should_training_stop = True
                elif time.monotonic() - bounds.started > bounds.seconds:
                    bounds.stopped = "time"
                    control.should_training_stop = True
                if bounds.progress:
                    bounds.progress(state.global_step, bounds.steps, bounds.loss)

            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    bounds.loss = float(logs["loss"])

        return Callback()

    def check(self) -> float:
        """Seconds spent; raises if the memory bound stopped training (its result is unusable)."""
        if self.stopped == "memory":
            raise TrainingStopped(
                f"training used {self.peak_mb:.0f} MiB, over the bound of "
                f"{self.config.max_memory_mb} MiB; lower the batch size or max length"
            )
        return time.monotonic() - self.started


def train_lora(
    model,
    tokenizer,
    records: list[dict],
    out_dir: Path,
    config: TrainConfig,
    progress: Callable[[int, int, float | None], None] | None = None,
) -> dict:
    """Fine-tune a LoRA adapter on `records` ({"messages": [...]}) with TRL's SFTTrainer.

    Saves the PEFT adapter to `out_dir` and returns the trained PEFT model (`model`) with what
    happened: steps, tokens, seconds, tokens/s, final loss, peak memory. Stops early (and says so) at `max_seconds`; raises
    TrainingStopped past `max_memory_mb`."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(config.seed)
    data = Dataset.from_list([prompt_completion(r["messages"]) for r in records])
    batches = max(1, -(-len(records) // config.batch_size))
    steps = max(1, min(config.max_steps, int(config.epochs * batches)))
    bounds = Bounds(config, steps, progress)
    args = SFTConfig(
        output_dir=str(out_dir / "trainer"),
        max_steps=steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        # Batches of similar lengths waste less on padding (pad tokens cost as much as real ones).
        train_sampling_strategy="group_by_length",
        include_num_input_tokens_seen="non_padding",
        **common_args(config),
    )
    trainer = anchored_trainer(SFTTrainer, config.kl_weight, config.kl_spare_new)(
        model=model,
        args=args,
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=config.rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.dropout,
            target_modules=config.targets,
            task_type="CAUSAL_LM",
        ),
        callbacks=[bounds.callback()],
    )
    result = trainer.train()
    seconds = bounds.check()
    done = trainer.state.global_step
    tokens = int(trainer.state.num_input_tokens_seen)  # real tokens, padding not counted
    trainer.model.save_pretrained(out_dir)
    return {
        "model": trainer.model,  # the PEFT model, for the export check and the evaluation
        "steps": done,
        "planned_steps": steps,
        "examples": len(records),
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "train_seconds": round(result.metrics.get("train_runtime", seconds), 2),
        "tokens_per_second": round(
            tokens / max(result.metrics.get("train_runtime", seconds), 1e-9), 1
        ),
        "loss": bounds.loss,
        "peak_memory_mb": round(bounds.peak_mb),
        "stopped_early": bounds.stopped,
        "device": device(),
    }


def anchored_loss(logits, reference, labels, mask, weight: float, spare_new: bool = False):
    """SFT's loss (mean NLL of the taught tokens) plus `weight` times the mean KL from the
    reference's next-token distribution to the model's over every real position.

    KL-regularised fine-tuning: the taught tokens are pulled toward the answer and, at the same
    time, every position (the prompts, the taught answers' other words, rehearsal) toward what
    the base model predicted there; at a taught token the optimum is a blend of the two, so a
    fact is learnt while the rest of the distribution stays near the base. Anchoring the prompt
    tokens alone held nothing (bench/lessons.py, docs/learning.md): the damage is done where
    the model learns. Logits, reference: (batch, length, vocab); labels: -100 where untaught.

    >>> import torch
    >>> logits = torch.zeros(1, 3, 4); labels = torch.tensor([[-100, -100, 2]])
    >>> mask = torch.ones(1, 3, dtype=torch.long)
    >>> round(float(anchored_loss(logits, logits, labels, mask, 1.0)), 4)  # ln 4, no KL
    1.3863
    >>> ref = torch.tensor([[[4.0, 0, 0, 0]] * 3])
    >>> float(anchored_loss(logits, ref, labels, mask, 1.0)) > 1.3863 + 0.5
    True
    >>> mask = torch.tensor([[1, 1, 0]])  # padding is neither taught nor anchored
    >>> round(float(anchored_loss(logits, logits, labels, mask, 1.0)), 4)
    1.3863

    With `spare_new` a taught token's KL is scaled by the base's probability of it, so a token
    the base all but rules out (a new name) is not held back; untaught positions keep weight 1:
    >>> ref = torch.tensor([[[9.0, 0, -9, 0]] * 3]); mask = torch.ones(1, 3, dtype=torch.long)
    >>> held, spared = (float(anchored_loss(logits, ref, labels, mask, 1.0, s)) for s in (0, 1))
    >>> round(held - spared, 2)  # the taught position (base p ~ 0) no longer held: half the KL
    0.69
    """
    import torch

    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:]
    taught = target != -100
    picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    nll = -(picked * taught).sum() / taught.sum().clamp(min=1)
    real = mask[:, 1:].bool()
    ref = torch.log_softmax(reference[:, :-1].float(), dim=-1)
    kl = (ref.exp() * (ref - logp)).sum(-1)
    held = real.float()
    if spare_new:  # a taught token held by the base's probability of it
        base_p = ref.gather(-1, target.clamp(min=0)[..., None])[..., 0].exp()
        held = torch.where(taught, base_p, held) * real
    return nll + weight * (kl * held).sum() / real.sum().clamp(min=1)


def anchored_trainer(base_class, weight: float, spare_new: bool = False):
    """`base_class` (TRL's SFTTrainer) as is when `weight` is 0; otherwise with its loss
    replaced by `anchored_loss`, the reference being the same model with its adapter off (one
    forward pass more per step, without gradients)."""
    if not weight:
        return base_class
    import torch

    class AnchoredTrainer(base_class):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not model.training:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            forward = {k: inputs[k] for k in ("input_ids", "attention_mask") if k in inputs}
            logits = model(**forward, use_cache=False).logits
            with torch.no_grad(), self.accelerator.unwrap_model(model).disable_adapter():
                reference = model(**forward, use_cache=False).logits
            mask = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"]))
            loss = anchored_loss(logits, reference, inputs["labels"], mask, weight, spare_new)
            return (loss, {"logits": logits}) if return_outputs else loss

    return AnchoredTrainer


def train_dpo(
    model,
    tokenizer,
    pairs: list[dict],
    out_dir: Path,
    config: TrainConfig,
    seconds: float,
    progress: Callable[[int, int, float | None], None] | None = None,
) -> dict:
    """Go on training the SFT adapter of `model` (a PeftModel) with TRL's DPOTrainer on
    preference pairs ({"prompt", "chosen", "rejected"}, conversational).

    TRL copies the adapter as it stands into a frozen "ref" adapter, so the reference policy is
    the SFT result, not the bare base: DPO only moves the model from there toward the chosen
    answers. The ref adapter is dropped afterwards and only "default" is saved to `out_dir`
    (over the SFT save). Returns the figures, as train_lora does."""
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    torch.manual_seed(config.seed)
    steps = max(1, config.dpo_steps)
    bounds = Bounds(config, steps, progress, seconds=seconds)
    args = DPOConfig(
        output_dir=str(out_dir / "trainer-dpo"),
        max_steps=steps,
        per_device_train_batch_size=min(config.batch_size, len(pairs)),
        learning_rate=config.dpo_learning_rate,
        beta=config.dpo_beta,
        # The reference (the SFT adapter, frozen as "ref") scores each pair once, up front,
        # instead of a second forward pass at every step.
        precompute_ref_log_probs=config.dpo_precompute_ref,
        precompute_ref_batch_size=min(8, len(pairs)),
        **common_args(config),
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
        callbacks=[bounds.callback()],
    )
    result = trainer.train()
    spent = bounds.check()
    margins = [h["rewards/margins"] for h in trainer.state.log_history if "rewards/margins" in h]
    accuracies = [
        h["rewards/accuracies"] for h in trainer.state.log_history if "rewards/accuracies" in h
    ]
    model = trainer.model
    if "ref" in model.peft_config:
        model.delete_adapter("ref")
    model.set_adapter("default")
    model.save_pretrained(out_dir, selected_adapters=["default"])
    return {
        "model": model,
        "pairs": len(pairs),
        "steps": trainer.state.global_step,
        "seconds": round(spent, 2),
        "train_seconds": round(result.metrics.get("train_runtime", spent), 2),
        "loss": bounds.loss,
        "first_margin": round(margins[0], 4) if margins else None,
        "last_margin": round(margins[-1], 4) if margins else None,
        "last_accuracy": round(accuracies[-1], 4) if accuracies else None,
        "peak_memory_mb": round(bounds.peak_mb),
        "stopped_early": bounds.stopped,
    }


def completion_loss(model, tokenizer, records: list[dict], max_length: int = 512) -> float:
    """Mean negative log-likelihood per answer token of each record's last message, given the
    rest (what SFT minimises, measured on data it never saw)."""
    import torch

    total, count = 0.0, 0
    model.eval()
    for r in records:
        prompt = tokenizer.apply_chat_template(
            r["messages"][:-1], tokenize=False, add_generation_prompt=True
        )
        full = tokenizer.apply_chat_template(r["messages"], tokenize=False)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(full, add_special_tokens=False)["input_ids"][:max_length]
        if len(ids) <= len(p_ids):
            continue
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        logp = torch.log_softmax(logits[:-1].float(), dim=-1)
        targets = torch.tensor(ids[1:])
        picked = logp[torch.arange(len(targets)), targets][len(p_ids) - 1 :]
        total += float(-picked.sum())
        count += len(picked)
    return round(total / count, 4) if count else math.nan


def next_token_agreement(
    peft_model, tokenizer, engine, adapter: Path, probes: list[list[dict]], tie: float = 0.5
) -> dict:
    """How often llama.cpp with the exported adapter predicts the same next token as the
    PyTorch model with the adapter (teacher-forced on each probe conversation).

    `agreement` counts a position as agreeing when llama.cpp's pick is PyTorch's pick or within
    `tie` logits of it: llama.cpp multiplies quantized weights with quantized activations, which
    moves logits by about 0.2 on average (the same as for the base model alone), so near-ties
    flip either way and say nothing about the export. A wrong export (q/k rows not permuted, a
    wrong scale) moves logits by whole units. `exact` is the strict share.

    An adapter that stays near the base (KL-regularised training) changes few positions, so a
    wrong export, which behaves much like the bare base, still agrees at most of them.
    `moved_agreement` is the same share over the `moved` positions only: those where the
    adapter put the base model's own pick more than `tie` below its best, which is where an
    export that dropped or garbled the adapter must show."""
    import torch

    agree = exact = total = moved = moved_agree = 0
    peft_model.eval()
    engine.set_adapter(adapter, adapter_id="candidate-check")
    try:
        for messages in probes:
            text = tokenizer.apply_chat_template(messages, tokenize=False)
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][:512]
            with torch.no_grad():
                logits = peft_model(torch.tensor([ids])).logits[0].float()
                with peft_model.disable_adapter():
                    base_pick = peft_model(torch.tensor([ids])).logits[0].argmax(-1)
            llama_next = torch.tensor(engine.next_tokens(ids))
            rows = torch.arange(len(ids))
            best = logits.max(-1).values
            agrees = logits[rows, llama_next] >= best - tie
            changed = logits[rows, base_pick] < best - tie
            agree += int(agrees.sum())
            exact += int((llama_next == logits.argmax(-1)).sum())
            moved += int(changed.sum())
            moved_agree += int((agrees & changed).sum())
            total += len(ids)
    finally:
        engine.set_adapter(None)
    return {
        "agreement": round(agree / total, 4) if total else 0.0,
        "exact": round(exact / total, 4) if total else 0.0,
        "positions": total,
        "moved": moved,
        "moved_agreement": round(moved_agree / moved, 4) if moved else None,
        "tie": tie,
    }


def load_adapter(base, peft_dir: Path):
    """`base` with the PEFT adapter saved in `peft_dir` (the current adapter, for its loss)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(peft_dir))
