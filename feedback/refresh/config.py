"""The refresh's knobs (`RefreshConfig`): its guards, gates and training bounds, as fields
carrying their defaults and help text.

Owns nothing but the declaration, kept apart from the rules so reading a default is cheap:
assistant/settings.py builds its `refresh_*` settings from it without loading numpy or the
pool's records. What each knob does is told where it is used: feedback/refresh/rules.py (the
steps, the guards, the gates), which imports it from here, so the name still works there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from assistant.options import option
from feedback.refresh.train import TrainConfig


@dataclass(frozen=True)
class RefreshConfig:
    """The refresh's guards and gates; `Settings` offers each as `refresh_<name>`."""

    min_new: int = option(20, "new training examples a refresh needs (else it refuses)")
    min_pairs: int = option(8, "preference pairs (corrections, regenerations) needed for DPO")
    human_share: float = option(0.5, "least share of human-written/approved training data")
    anchor_file: Path | None = option(
        None, "JSONL of {'messages': [...]} mixed into every refresh as human data"
    )
    diversity_tolerance: float = option(0.1, "most relative drop in the mix's diversity")
    max_answer_repeats: int = option(
        2, "most copies of one answer that model-only examples bring to a mix"
    )
    model_answers_per_question: int = option(
        1, "most model-only answers to one question in a mix (human ones count)"
    )
    lessons_per_parent: int = option(
        4, "most lessons the model wrote from one taught answer in a mix (0: none)"
    )
    rehearsal: int = option(
        32,
        "general prompts the served model answers before training; the answers its grade "
        "passes join the mix as rehearsal, capped like model-only data (0: none)",
    )
    heldout_share: float = option(0.1, "share of new entries kept out for evaluation, for good")
    min_agreement: float = option(
        0.95, "export check: least llama.cpp/PyTorch next-token agreement"
    )
    min_moved: int = option(
        8,
        "export check: the positions where the adapter changed the base model's pick must "
        "also agree at `min_agreement`, when there are at least this many of them",
    )
    # The promotion gates: a candidate that regresses past any of these stays on disk, rejected.
    loss_tolerance: float = option(0.02, "most relative rise in held-out loss")
    base_loss_tolerance: float = option(
        0.05,
        "most relative rise in held-out and general loss over the base model's, whatever is "
        "served (a damaged model once promoted never lowers the bar)",
    )
    taught_tolerance: float = option(
        0.1, "most relative rise in loss on the answers users taught (corrections trained before)"
    )
    gate_alpha: float = option(
        0.05, "sign-test level at which the judge's pairwise verdicts reject a worse candidate"
    )
    answer_diversity_tolerance: float = option(
        0.1, "most relative drop in sampled answers' diversity (vs current and base)"
    )
    # Net, since any adapter flips a few fragile greedy answers each way: bench/learning.py's
    # candidate lost 5 of the base's 22 and gained 7 (docs/learning.md).
    known_tolerance: float = option(
        0.1,
        "most drop, as a share of the base model's right answers, in how many of the known "
        "answers (feedback/refresh/data/known.jsonl) a candidate gets right",
    )
    eval_prompts: int = option(
        64, "prompts the candidate and the current model both answer, judged pairwise"
    )
    # bench/gate_cost.py (docs/refresh.md): the embedded judge picks answer A in both orders.
    judge_early_stop: bool = option(
        True,
        "stop asking a judge that chose the same position in both orders of every pair so far "
        "once the pairs left could not plausibly reject the candidate (it reads position, not "
        "answers)",
    )
    seed: int = option(0, "seed of the mix's sampling")
    train: TrainConfig = field(default_factory=TrainConfig)
