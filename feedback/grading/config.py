"""Grading's knobs: how answers are graded (`GraderConfig`) and what they are graded against
(`ReferenceConfig`), as dataclasses whose fields carry their defaults and help text.

Owns nothing but these declarations, kept apart from the grader and the reference finder so
reading a default is cheap: assistant/settings.py builds its `AUTODIDACT_*` settings from them
without loading the judge's LangChain prompts, numpy or the stores. Importing stays light: the
standard library, assistant/options.py and the scoring defaults only. grader.py and
references.py import them from here, so both names still work there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from assistant.options import option
from feedback.grading.scoring import DEFAULT_THRESHOLD, DEFAULT_WEIGHTS


@dataclass
class GraderConfig:
    """How answers are graded; `Settings` offers the user-facing knobs (assistant/settings.py)."""

    weights: dict[str, float] = field(
        default_factory=lambda: dict(DEFAULT_WEIGHTS),
        metadata={"help": "weight of each grading signal, as JSON"},
    )
    threshold: float = option(DEFAULT_THRESHOLD, "combined score below which an answer is flagged")
    consistency_samples: int = option(
        0, "resampled answers for self-consistency (0: off, see docs/grading.md)"
    )
    consistency_temperature: float = option(1.0, "temperature of the resampled answers")
    max_tokens: int = option(256, "longest answer the grader generates when resampling")
    system_prompt: str = option(
        "You are a helpful assistant.", "system message of resampled answers"
    )
    max_attempts: int = option(3, "tries before a grading job fails")
    own_context: bool = option(
        True,
        "grade on a second llama.cpp context of the served GGUF (the weights are shared), so "
        "grading never leaves its prompt in the chat's cache; off: one context for both",
    )
    judge_base: bool = option(
        True,
        "with no judge set, judge on a context of the served GGUF that never takes its "
        "adapter, so an adapter never judges its own answers (the log-probabilities still "
        "come from the model that answered); off: the judge serves the adapter too",
    )
    judge_history_chars: int = option(
        1500, "most characters of the earlier conversation the judge reads"
    )
    reference_chars: int = option(
        3000, "most characters of reference text the judge and the grounding pass read"
    )


@dataclass(frozen=True)
class ReferenceConfig:
    """References for grading; `Settings` offers these as `reference_<name>`."""

    corrections: bool = option(True, "grade answers against similar corrected or approved answers")
    min_similarity: float = option(
        0.8, "least question similarity for a correction or approval to be a reference"
    )
    most: int = option(2, "most corrections or approvals used for one answer")
    max_chars: int = option(3000, "longest reference text the grader reads, in characters")
    shared: bool = option(
        True,
        "grade against other users' corrections and approvals too (PII-masked); off: only "
        "the answer's own user's (Settings: retrieval_share_approved)",
    )
