"""The synthesis stage's settings, in a module that imports nothing heavy: `Settings` reads
their defaults and help texts without loading the stage (assistant/settings.py)."""

from __future__ import annotations

from dataclasses import dataclass

from assistant.options import option


@dataclass(frozen=True)
class SynthesisConfig:
    """How lessons are written and judged; `Settings` offers each as `synthesis_<name>`."""

    enabled: bool = option(True, "write lessons from new corrections and approvals in a refresh")
    questions: int = option(4, "rewordings of a parent's question the model writes")
    answers: int = option(2, "restatements of a parent's answer the model writes")
    neighbours: int = option(
        3,
        "tries at a question like a taught one about another, well-known subject, per parent, "
        "when a refresh rehearses; the base model's graded answers to the first that passes "
        "lead its rehearsal, so a fact learnt does not leak into what the model says of its "
        "neighbours (0: none)",
    )
    temperature: float = option(0.8, "sampling temperature of the lessons")
    max_tokens: int = option(96, "longest lesson the model writes, in tokens")
    min_similarity: float = option(
        0.7, "least meaning similarity of a reworded question to the parent's question"
    )
    min_agreement: float = option(
        0.6, "least agreement of a lesson's answer with the parent's answer (the grade's)"
    )
    seed: int = option(0, "seed of the first lesson's sampling (each next one adds 1)")
