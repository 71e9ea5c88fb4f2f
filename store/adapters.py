"""Adapter files on disk and which one is active: owns `AUTODIDACT_HOME/adapters/`.

Each refresh writes its candidate to its own folder, `adapters/<adapter_id>/` (the GGUF adapter
llama.cpp loads, the PEFT weights it came from, the run's metrics), and never changes it after.
Which one the app serves is one small file, `adapters/active.json`, replaced by an atomic rename:
a crash at any moment leaves either the old pointer or the new one, never a half-written one,
and never a half-written adapter behind it (adapters are written under a temporary name and
renamed too, by feedback/refresh/gguf_export.py). No pointer means the base model alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

ADAPTER_FILE = "adapter.gguf"


@dataclass(frozen=True)
class Active:
    adapter_id: str
    path: Path


class AdapterRegistry:
    def __init__(self, root: Path):
        self.root = root
        self.pointer = root / "active.json"

    def folder(self, adapter_id: str) -> Path:
        return self.root / adapter_id

    def file(self, adapter_id: str) -> Path:
        return self.folder(adapter_id) / ADAPTER_FILE

    def exists(self, adapter_id: str) -> bool:
        return self.file(adapter_id).is_file()

    def active(self) -> Active | None:
        """The adapter the app should serve, or None for the base model."""
        try:
            data = json.loads(self.pointer.read_text())
        except FileNotFoundError:
            return None
        adapter_id = data.get("adapter_id")
        if not adapter_id:
            return None
        return Active(adapter_id, self.file(adapter_id))

    def activate(self, adapter_id: str | None) -> None:
        """Point the app at `adapter_id` (None: the base model), atomically."""
        if adapter_id is not None and not self.exists(adapter_id):
            raise FileNotFoundError(f"adapter {adapter_id} has no file at {self.file(adapter_id)}")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.pointer.with_name(".active.json.tmp")
        with tmp.open("w") as f:
            json.dump({"adapter_id": adapter_id}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.pointer)
        fd = os.open(self.root, os.O_RDONLY)  # make the rename itself durable
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def stamp(self) -> float:
        """Changes whenever the pointer does (the app polls it between generations)."""
        try:
            return self.pointer.stat().st_mtime_ns
        except FileNotFoundError:
            return 0
