"""How the stages declare their settings: dataclass fields carrying their help text.

Each stage keeps one configuration dataclass (`GraderConfig`, `CuratorConfig`,
`RetrievalConfig`, `PoolRules`, `RefreshConfig`, `TrainConfig`) whose fields are declared with
`option(default, help)`. The default and its explanation are written once, there;
assistant/settings.py reads both to build the matching `AUTODIDACT_*` setting and CLI flag.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def option(default: Any, help: str) -> Any:
    """A dataclass field with its default and its help text (TRL's `metadata={"help": ...}`)."""
    return dataclasses.field(default=default, metadata={"help": help})


def described(config: type, name: str) -> tuple[Any, str]:
    """(default, help) of one field of a stage's configuration dataclass.

    >>> from feedback.pool.rules import PoolRules
    >>> described(PoolRules, "user_weight")
    (3.0, 'how many times a thumbs outweighs the self-grade in the pool')
    """
    found = {f.name: f for f in dataclasses.fields(config)}[name]
    if found.default is not dataclasses.MISSING:
        default = found.default
    else:
        default = found.default_factory()
    return default, found.metadata["help"]
