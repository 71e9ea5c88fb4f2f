"""How every layer declares its knobs: dataclass fields carrying their help text.

Each stage keeps its configuration dataclasses (`GraderConfig`, `CuratorConfig`,
`RetrievalConfig`, `PoolRules`, `RefreshConfig`, `TrainConfig`, ...), and the chat and the
server theirs (`AccessConfig`, `Sampling`), with fields declared as `option(default, help)`. The
default and its explanation are written once, there; assistant/settings.py reads both to build
the matching `AUTODIDACT_*` setting and CLI flag.

Why here: every layer uses it, from the feedback stages to the settings and the web server, so
it sits at the bottom of the stack beside the model boundary (assistant.llm) and imports nothing
of the project, only the standard library. It used to be feedback/config.py, inside the stages,
which made the chat's and the server's settings import from a layer above them.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def option(default: Any, help: str) -> Any:
    """A dataclass field with its default and its help text (TRL's `metadata={"help": ...}`)."""
    return dataclasses.field(default=default, metadata={"help": help})


def described(config: type, name: str) -> tuple[Any, str]:
    """(default, help) of one field of a configuration dataclass.

    >>> @dataclasses.dataclass
    ... class Rules:
    ...     user_weight: float = option(3.0, "how many times a thumbs outweighs the self-grade")
    >>> described(Rules, "user_weight")
    (3.0, 'how many times a thumbs outweighs the self-grade')
    """
    found = {f.name: f for f in dataclasses.fields(config)}[name]
    if found.default is not dataclasses.MISSING:
        default = found.default
    else:
        default = found.default_factory()
    return default, found.metadata["help"]
