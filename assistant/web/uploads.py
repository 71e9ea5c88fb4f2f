"""Uploaded files: whose each one is, which a request may name, and when they are deleted.

Owns the record of every file Gradio's `/gradio_api/upload` wrote (its path, the account that
sent it, when, how big) and the rules over it: an event may name only files its caller
uploaded and has not used yet (`claim`), `/gradio_api/file=` serves only the caller's own
uploads (`may_read`), an account has a bounded number of files and bytes waiting, the whole store
is bounded, and anything under the upload folder older than `ttl_s` is deleted (`sweep`).
Gradio's own path check does not run in a mounted app (it waits for `launch()`), so this record
is the only thing that decides; the gate (assistant/web/gate.py) applies it to every request.

Which files the knowledge library reads, and how, is feedback/knowledge/'s.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Upload:
    """One file under the upload folder. Gradio names uploads by their content, so two
    accounts that send the same file get the same path: each is an owner, with its own state."""

    path: Path
    at: float
    size: int
    owners: dict[int, bool] = field(default_factory=dict)  # account id: used by an event yet


def file_refs(data) -> list[str]:
    """Every file a Gradio payload names: the `path` of each dict that has one, else its `url`
    (Gradio reads a file from its path, and from its url only where a path is missing).

    >>> file_refs({"data": [[{"path": "/a", "url": "http://h/gradio_api/file=/a",
    ...     "meta": {"_type": "gradio.FileData"}}], "hi", {"url": "http://x/y"}, [{"path": None}]],
    ...     "fn_index": 3})
    ['/a', 'http://x/y']
    """
    found: list[str] = []

    def walk(node, depth: int) -> None:
        if depth > 64:
            found.append("<too deep>")
            return
        if isinstance(node, dict):
            for key in ("path", "url"):
                if isinstance(node.get(key), str) and node[key]:
                    found.append(node[key])
                    break
            for value in node.values():
                walk(value, depth + 1)
        elif isinstance(node, list):
            for value in node:
                walk(value, depth + 1)

    walk(data, 0)
    return found


def resolved(path: str) -> Path | None:
    """The absolute, symlink-free form of a local path; None for a URL or nonsense.

    >>> resolved("http://x/y") is None, resolved("/tmp/../tmp/a") == Path("/tmp/a").resolve()
    (True, True)
    """
    if "://" in path or "\x00" in path or not path.startswith("/"):
        return None
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):
        return None


def exact(path: str) -> Path | None:
    """The path, only if it is already absolute and free of `..` and links: what Gradio reads
    and what the record holds are then the same file, whichever way each resolves it.

    >>> exact("/tmp"), exact("/tmp/../tmp"), exact("tmp"), exact("http://x/y")
    (PosixPath('/tmp'), None, None, None)
    """
    real = resolved(path)
    return real if real is not None and str(real) == path else None


class Uploads:
    """The upload folder's record; thread-safe, one per app."""

    def __init__(
        self,
        folder: Path,
        ttl_s: float = 900.0,
        per_account_files: int = 20,
        per_account_mb: float = 200.0,
        total_mb: float = 2048.0,
        clock=time.time,
    ):
        self.folder = Path(os.path.realpath(folder))
        self.ttl_s, self.per_account_files = ttl_s, per_account_files
        self.per_account_bytes = int(per_account_mb * 1024 * 1024)
        self.total_bytes = int(total_mb * 1024 * 1024)
        self.clock = clock
        self._files: dict[Path, Upload] = {}
        self._reserved: dict[object, tuple[int, int, float]] = {}  # account, bytes, since
        self._lock = threading.Lock()

    # what an account has waiting
    def pending(self, account_id: int) -> tuple[int, int]:
        """(files, bytes) the account uploaded and has not used or lost yet, uploads under
        way (or cut off, until swept) counted as one file of their declared size."""
        with self._lock:
            return self._pending(account_id)

    def _pending(self, account_id: int) -> tuple[int, int]:
        mine = [u for u in self._files.values() if account_id in u.owners]
        held = [size for owner, size, _ in self._reserved.values() if owner == account_id]
        return len(mine) + len(held), sum(u.size for u in mine) + sum(held)

    def admit(self, account_id: int, incoming: int) -> object | str:
        """A reservation of `incoming` bytes for an upload about to be read, or why it is
        refused now. Checked and reserved under one lock: parallel uploads cannot all pass."""
        self.sweep()
        with self._lock:
            files, size = self._pending(account_id)
            if files >= self.per_account_files or size + incoming > self.per_account_bytes:
                return (
                    f"You have {files} uploaded files ({size / 2**20:.0f} MB) not added yet; "
                    f"wait for them to be added, or for {self.ttl_s / 60:.0f} minutes."
                )
            total = sum(u.size for u in self._files.values())
            total += sum(size for _, size, _ in self._reserved.values())
            if total + incoming > self.total_bytes:
                return "The server's upload space is full; try again in a few minutes."
            token = object()
            self._reserved[token] = (account_id, incoming, self.clock())
            return token

    def settle(self, reservation: object, account_id: int, paths: list[str]) -> None:
        """An upload ended: what it wrote is recorded in place of its reservation. One that
        wrote nothing (cut off, refused) keeps its reservation until the sweep, which also
        deletes whatever partial file it left."""
        if paths:
            with self._lock:
                self._reserved.pop(reservation, None)
            self.add(account_id, paths)

    def add(self, account_id: int, paths: list[str]) -> None:
        """Record what an upload wrote; files over the account's bound are deleted at once."""
        now = self.clock()
        for raw in paths:
            path = resolved(raw)
            if path is None or not path.is_relative_to(self.folder):
                continue
            try:
                size = path.stat().st_size
            except OSError:  # Gradio may still be moving it into place
                size = 0
            with self._lock:
                upload = self._files.setdefault(path, Upload(path, now, size))
                upload.at, upload.owners[account_id] = now, False
        with self._lock:
            mine = sorted(
                (u for u in self._files.values() if account_id in u.owners), key=lambda u: u.at
            )
        while len(mine) > self.per_account_files:
            self._drop(mine.pop(0).path, account_id)

    # what a request may name
    def claim(self, account_id: int, refs: list[str]) -> str | None:
        """Mark the files an event names as used; why not, if any is not the caller's own
        unused upload (a server path, another account's file, a URL, a file used before)."""
        paths = [exact(r) for r in refs]
        with self._lock:
            for ref, path in zip(refs, paths, strict=True):
                upload = self._files.get(path) if path is not None else None
                if upload is None or upload.owners.get(account_id, True):
                    return f"This request names a file you did not upload: {ref[:80]!r}."
            for path in paths:
                self._files[path].owners[account_id] = True
        return None

    def unclaim(self, account_id: int, refs: list[str]) -> None:
        """The event that claimed these files was not queued: they may be named again."""
        with self._lock:
            for path in (exact(r) for r in refs):
                upload = self._files.get(path) if path is not None else None
                if upload is not None and account_id in upload.owners:
                    upload.owners[account_id] = False

    def may_read(self, account_id: int, raw: str) -> bool:
        path = exact(raw)
        with self._lock:
            upload = self._files.get(path) if path is not None else None
            return upload is not None and account_id in upload.owners

    # deleting
    def release(self, account_id: int) -> int:
        """Delete the account's uploads that an event has used; how many."""
        with self._lock:
            used = [p for p, u in self._files.items() if u.owners.get(account_id)]
        for path in used:
            self._drop(path, account_id)
        # gr.File's preprocess leaves an empty NamedTemporaryFile per file it hands an event
        # (gradio/components/file.py); uploads themselves live in subfolders, never up here.
        for stray in self.folder.glob("tmp*"):
            try:
                if stray.is_file() and not stray.is_symlink() and stray.stat().st_size == 0:
                    stray.unlink()
            except OSError:
                pass
        return len(used)

    def sweep(self) -> int:
        """Delete recorded uploads older than `ttl_s`, and any other file under the folder
        that old (Gradio's cache copies, an upload cut off half-way); how many files."""
        cutoff = self.clock() - self.ttl_s
        with self._lock:
            old = [p for p, u in self._files.items() if u.at < cutoff]
            for token in [t for t, (_, _, at) in self._reserved.items() if at < cutoff]:
                del self._reserved[token]
        for path in old:
            self._delete(path)
        removed = len(old)
        if not self.folder.is_dir():
            return removed
        for root, dirs, files in os.walk(self.folder, topdown=False):
            for name in files:
                path = Path(root) / name
                try:
                    if path not in self._files and path.lstat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
                except OSError:
                    pass
            if Path(root) != self.folder and not dirs and not files:
                try:
                    Path(root).rmdir()
                except OSError:
                    pass
        return removed

    def _drop(self, path: Path, account_id: int) -> None:
        """The account lets go of the file; the last owner's going deletes it."""
        with self._lock:
            upload = self._files.get(path)
            if upload is not None:
                upload.owners.pop(account_id, None)
                if upload.owners:
                    return
        self._delete(path)

    def _delete(self, path: Path) -> None:
        with self._lock:
            self._files.pop(path, None)
        try:
            path.unlink(missing_ok=True)
            if path.parent != self.folder and not any(path.parent.iterdir()):
                path.parent.rmdir()
        except OSError:
            pass

    def clear(self) -> None:
        """Delete everything under the folder (the server stops)."""
        with self._lock:
            self._files.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


class Sweeper(threading.Thread):
    """Sweeps the upload folder every `every_s` seconds until stopped."""

    def __init__(self, uploads: Uploads, every_s: float = 60.0):
        super().__init__(daemon=True, name="upload-sweeper")
        self.uploads, self.every_s = uploads, every_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            self.uploads.sweep()
