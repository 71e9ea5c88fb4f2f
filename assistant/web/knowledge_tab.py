"""The Knowledge tab: the user's documents, which answers are grounded in and graded against.

Owns the tab's layout and events: upload (one line per file, with progress), the list with size,
passages and dates, and removal. Parsing, indexing and searching are the library's
(feedback/knowledge/library.py); putting passages into prompts is the chat service's.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from assistant.web.common import PRIVATE
from assistant.web.gate import Guard
from assistant.web.uploads import Uploads
from feedback.knowledge.library import Library
from feedback.knowledge.parse import SUPPORTED, human_size

COLUMNS = ["id", "name", "kind", "size", "passages", "added", "updated"]


class KnowledgeTab:
    """Built inside a `gr.Tab`; `load` fills it when the tab is opened."""

    def __init__(self, library: Library, guard: Guard, uploads: Uploads | None = None):
        self.library, self.guard, self.uploads = library, guard, uploads
        gr.Markdown(
            "Answers are grounded in these documents: the passages most like each question go "
            "into the prompt, numbered, and are shown under the answer. The grader checks each "
            "answer against the same passages. Supported: "
            + ", ".join(sorted(set(SUPPORTED)))
            + f"; up to {library.config.max_file_mb:g} MB per file."
        )
        self.upload = gr.File(
            label="Add documents",
            file_count="multiple",
            file_types=sorted(SUPPORTED),
            elem_id="knowledge-upload",
        )
        self.result = gr.Markdown(elem_id="knowledge-result")
        self.table = gr.Dataframe(
            headers=COLUMNS, interactive=False, elem_id="knowledge-list", wrap=True
        )
        with gr.Row():
            self.choice = gr.Dropdown(
                label="Document", choices=[], elem_id="knowledge-choice", scale=4
            )
            self.remove_btn = gr.Button(
                "Remove", variant="stop", elem_id="knowledge-remove", scale=1
            )
        self.outputs = [self.table, self.choice]
        self.upload.upload(
            self.on_upload, [self.upload], [self.result, *self.outputs, self.upload], **PRIVATE
        )
        self.remove_btn.click(
            self.on_remove, [self.choice], [self.result, *self.outputs], **PRIVATE
        )

    def load(self, request: gr.Request):
        return self.listing(self.guard.account(request).id)

    def listing(self, user_id: int):
        docs = self.library.documents(user_id)
        rows = [
            [
                d.id,
                d.name,
                d.kind,
                human_size(d.size_bytes),
                d.chunks,
                f"{d.created_at:%Y-%m-%d %H:%M}",
                f"{d.updated_at:%Y-%m-%d %H:%M}",
            ]
            for d in docs
        ]
        choices = [(f"{d.name} (#{d.id})", d.id) for d in docs]
        return pd.DataFrame(rows, columns=COLUMNS), gr.update(choices=choices, value=None)

    def on_upload(self, files, request: gr.Request, progress=gr.Progress()):  # noqa: B008
        user_id = self.guard.account(request).id
        paths = [Path(f if isinstance(f, str) else f.name) for f in files or []]
        lines = []
        try:
            for path in progress.tqdm(paths, desc="Adding documents"):
                lines.append(self.library.add_file(path, user_id).line())
                path.unlink(missing_ok=True)  # the library keeps the text; the upload can go
        finally:
            if self.uploads is not None:
                self.uploads.release(user_id)  # the uploads this event used, whatever happened
        return "\n".join(f"- {line}" for line in lines), *self.listing(user_id), None

    def on_remove(self, document_id, request: gr.Request):
        user_id = self.guard.account(request).id
        if document_id is None:
            gr.Warning("Choose a document to remove.")
            return gr.skip(), gr.skip(), gr.skip()
        try:
            doc = self.library.remove(int(document_id), user_id=user_id)
        except (LookupError, TypeError, ValueError) as exc:
            return f"{exc}.", *self.listing(user_id)
        note = f"Removed {doc.name} and its {doc.chunks} passages: no answer will cite it again."
        return note, *self.listing(user_id)
