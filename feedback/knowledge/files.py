"""Which files a folder holds for the library: every supported file under the paths given,
each once, and the rest named with why they are skipped. Reading a file's text is parse.py's.
"""

from __future__ import annotations

import os
from pathlib import Path

from feedback.knowledge.parse import SUPPORTED


def find_files(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """The supported files among `paths`: files as given, folders walked in sorted order
    (hidden files and folders skipped, links followed only to files inside the folder).
    Returns (files to add, [(path, why skipped)]); a file reached twice is listed once."""
    found: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for path in map(Path, paths):
        if path.is_dir():
            files, why = _walk(path)
            skipped += why
        elif path.exists() or path.is_symlink():
            files = [path]
        else:
            skipped.append((path, "no such file or folder"))
            continue
        for file in files:
            reason = _unsupported(file)
            if reason:
                skipped.append((file, reason))
            else:
                found.append(file)
    return _unique(found), skipped


def _unsupported(path: Path) -> str | None:
    if not path.is_file():
        return "not a regular file" if path.exists() else "a broken link"
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        return f"{suffix} files are not supported" if suffix else "no suffix: kind unknown"
    return None


def _walk(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    inside = root.resolve()
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []

    def unreadable(exc: OSError) -> None:
        skipped.append((Path(exc.filename or root), "could not open the folder"))

    # os.walk never descends into a linked folder (followlinks=False); linked files are
    # checked below, so nothing outside the folder is reached.
    for folder, dirs, names in os.walk(root, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        skipped += [
            (Path(folder) / d, "a linked folder, not followed")
            for d in dirs
            if (Path(folder) / d).is_symlink()
        ]
        for name in sorted(n for n in names if not n.startswith(".")):
            path = Path(folder) / name
            if path.is_symlink() and not path.resolve().is_relative_to(inside):
                skipped.append((path, "a link to outside the folder"))
            else:
                files.append(path)
    return files, skipped


def _unique(paths: list[Path]) -> list[Path]:
    seen: set[Path] = set()
    out = []
    for path in paths:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out
