"""The knowledge documents' knobs (`KnowledgeConfig`): fields carrying their defaults and help.

Owns nothing but the declaration, kept apart from the library so reading a default is cheap:
assistant/settings.py builds its `knowledge_*` settings from it without loading numpy, the
parsers or the stores. feedback/knowledge/library.py imports it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from assistant.options import option


@dataclass(frozen=True)
class KnowledgeConfig:
    """Knowledge documents; `Settings` offers these as `knowledge_<name>`."""

    enabled: bool = option(True, "ground answers in the knowledge documents")
    passages: int = option(4, "most document passages put into one prompt")
    min_similarity: float = option(0.4, "least question-passage similarity for a passage")
    max_tokens: int = option(700, "most prompt tokens the passages may take")
    chunk_chars: int = option(800, "passage length when a document is split, in characters")
    chunk_overlap: int = option(120, "characters two neighbouring passages share")
    max_file_mb: float = option(20.0, "largest file accepted, in MB")
    isolated: bool = option(
        True, "read each file in a child process with the memory and time limits below"
    )
    parse_memory_mb: int = option(1024, "most memory reading one file may take, in MB")
    parse_timeout_s: float = option(60.0, "most seconds reading one file may take")
