"""The local model engine: the only module that imports llama_cpp.

Owns loading a GGUF file, streaming chat completions with the chat template stored in the file,
counting prompt tokens and scoring the log-probabilities of a given answer. It knows nothing
about conversations or storage; the rest of the app sees it as a `ChatModel`.

Message contents are untrusted (a user's message, an answer shown to the judge, a document): the
prompt's token ids are built here, with the template's own markers as control tokens and every
content tokenized as plain text, so a message that spells "<|im_end|>" stays those characters
and cannot end its turn or fake another. Generation runs from those ids, never from a string
llama-cpp-python would tokenize with special tokens on.

Every call that runs the model runs on one thread the engine owns, one call at a time (a
llama.cpp context is not safe to share). One thread, not merely one lock: llama.cpp is built
with OpenMP, which keeps a team of worker threads for each thread that has run a computation,
and once a second thread (the background grader) had run the model, chat generation on other
threads fell from about 140 to 40-100 tokens/s on 2 cores (bench/chat_throughput.py; the
probe is tests/test_engine.py's). Callers still see blocking calls and a streaming iterator.
"""

from __future__ import annotations

import ctypes
import json
import queue
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from assistant.llm.base import CONTEXT_WINDOW, Delta, Messages, ModelError, Sampling

try:
    import llama_cpp
    from llama_cpp import Llama
    from llama_cpp.llama import StoppingCriteriaList
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar
except ImportError as exc:  # pragma: no cover - a broken install, not a code path
    raise ModelError(
        "llama-cpp-python is not installed; run `make run`, which builds it for this CPU"
    ) from exc


# Stands in for message i while the template renders, so the template's own text and the
# contents can be told apart afterwards (private-use characters no template writes).
_SLOT = "\ue000{}\ue001"
_SLOT_SPLIT = re.compile("\ue000(\\d+)\ue001")


# The sampler settings every generation uses (llama-cpp-python's chat handler's); in the
# fingerprint, since a text depends on them.
TOP_K, MIN_P = 40, 0.05


def system_info() -> str:
    """llama.cpp's report of the CPU features it was built with (e.g. 'AVX2 = 1 | AMX_INT8 = 0')."""
    return llama_cpp.llama_print_system_info().decode("utf-8", "replace")


class LlamaEngine:
    supports_adapters = True

    def __init__(
        self,
        path: Path,
        context_window: int = CONTEXT_WINDOW,
        threads: int | None = None,
        lora_path: Path | None = None,
        thread: ThreadPoolExecutor | None = None,
    ):
        self.path = Path(path)
        self.model_id = self.path.name
        stat = self.path.stat() if self.path.exists() else None  # the file as it was loaded
        self._file = [str(self.path.resolve()), stat and stat.st_size, stat and stat.st_mtime_ns]
        self.adapter_id: str | None = None
        self._adapter = None  # the llama.cpp adapter set on the context, freed when replaced
        # The one thread every model call runs on; queued calls wait their turn. A sibling
        # (`sibling`) shares its owner's: one set of compute threads for both contexts.
        self._owns_thread = thread is None
        self._thread = thread or ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
        self._closed = False
        self._local = threading.local()  # the calling thread's preemption event, if any
        try:
            self.llm = self._run(
                Llama,
                model_path=str(self.path),
                n_ctx=context_window,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            self.close(wait=False)
            raise ModelError(f"could not load model {self.path}: {exc}") from exc
        try:
            self._prepare(lora_path)
        except BaseException:
            self.close(wait=False)
            raise

    def sibling(self, context_window: int | None = None) -> LlamaEngine:
        """A second context on the same GGUF, with its own KV cache, run on this engine's
        thread: calls of both take turns, as one engine's do, and share one set of compute
        threads (a second set, even idle, slows this one's decoding by a fifth or more on a
        small machine: OpenMP throttles its spinning once it has more threads than cores).
        For background work (grading) that must not evict the chat's cached prompt."""
        return LlamaEngine(
            self.path,
            context_window or self.context_window,
            self.llm.n_threads,
            thread=self._thread,
        )

    @property
    def fingerprint(self) -> str:
        """What the base model's greedy answers depend on besides the prompt's tokens: the GGUF
        file as it was loaded (path, size, time written), the llama.cpp build and the context's
        threads and size. Same fingerprint, same token ids: the same greedy answer."""
        parts = [*self._file, llama_cpp.__version__, system_info(), TOP_K, MIN_P]
        parts += [self.llm.n_threads, self.llm.n_threads_batch, self.context_window]
        return json.dumps(parts)

    def _prepare(self, lora_path: Path | None) -> None:
        """The adapter asked for, and the chat template read from the file's metadata."""
        if lora_path:
            self.set_adapter(Path(lora_path))
        self.context_window = self.llm.n_ctx()
        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise ModelError(f"model {self.path} has no chat template in its GGUF metadata")
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        eos_text = self.llm._model.token_get_text(eos) if eos != -1 else ""
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=eos_text,
            bos_token=self.llm._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        # What llama-cpp-python's chat handler stops on, kept for generating from token ids.
        self._stop = [eos_text] if eos_text else []
        self._stop_at_eos = StoppingCriteriaList([lambda tokens, _logits: tokens[-1] == eos])
        self._control = _control_tokens(self.llm)
        self._grammars: dict[str, LlamaGrammar] = {}

    def _submit(self, fn: Callable, *args, **kwargs):
        """Queue `fn` for the engine's thread. Once the engine is closed (or the interpreter is
        exiting) the call is refused as an interruption: a grading job goes back to its queue,
        it does not count as failed."""
        if self._closed:
            raise InterruptedError("the model is shutting down")
        try:
            return self._thread.submit(fn, *args, **kwargs)
        except RuntimeError as exc:  # "cannot schedule new futures after shutdown"
            raise InterruptedError("the model is shutting down") from exc

    def _run(self, fn: Callable, *args, **kwargs):
        """`fn(*args, **kwargs)` on the engine's thread, waiting for its result (or error)."""
        return self._submit(fn, *args, **kwargs).result()

    def close(self, wait: bool = True) -> None:
        """Refuse new calls and drop queued ones; a call already running finishes first. A
        sibling leaves the thread it shares to its owner."""
        self._closed = True
        if self._owns_thread:
            self._thread.shutdown(wait=wait, cancel_futures=True)

    def set_adapter(self, path: Path | None, adapter_id: str | None = None) -> None:
        """Apply a GGUF LoRA adapter (None: the base model alone), between generations.

        Waits for a running generation to end, then swaps the adapter on the live context: no
        reload, and the KV cache computed with the old weights is dropped. A file llama.cpp
        cannot load leaves the current adapter in place and raises ModelError.
        """
        self._run(self._set_adapter, path, adapter_id)

    def _set_adapter(self, path: Path | None, adapter_id: str | None) -> None:
        new = None
        if path is not None:
            new = llama_cpp.llama_adapter_lora_init(
                self.llm._model.model, str(path).encode("utf-8")
            )
            if not new:
                raise ModelError(f"llama.cpp could not load the LoRA adapter {path}")
            adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(new)
            scales = (ctypes.c_float * 1)(1.0)
            failed = llama_cpp.llama_set_adapters_lora(self.llm._ctx.ctx, adapters, 1, scales)
        else:
            failed = llama_cpp.llama_set_adapters_lora(self.llm._ctx.ctx, None, 0, None)
        if failed:
            if new:
                llama_cpp.llama_adapter_lora_free(new)
            raise ModelError(f"llama.cpp could not apply the LoRA adapter {path}")
        if self._adapter:
            llama_cpp.llama_adapter_lora_free(self._adapter)
        self._adapter = new
        self.adapter_id = (adapter_id or Path(path).stem) if path is not None else None
        self.llm.reset()

    def next_tokens(self, tokens: list[int]) -> list[int]:
        """The model's greedy prediction after each prefix of `tokens` (teacher forcing), in
        batches: what the export check compares with PyTorch's predictions."""
        if len(tokens) > self.context_window:
            raise ModelError("the probe does not fit the context window")
        return self._run(self._next_tokens, tokens)

    def _next_tokens(self, tokens: list[int]) -> list[int]:
        self.llm.reset()
        out = [int(i) for logits in self._logits_batches(tokens) for i in logits.argmax(1)]
        self.llm.reset()
        return out

    def _logits_batches(self, tokens: list[int]) -> Iterator[np.ndarray]:
        """On the engine's thread: decode `tokens` after what the cache holds, in batches, and
        yield the logits at every position (llama-cpp-python only keeps them for the whole
        context when built with `logits_all`, n_ctx x vocab floats)."""
        llm = self.llm
        for start in range(0, len(tokens), llm.n_batch):
            piece = tokens[start : start + llm.n_batch]
            llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
            llm._batch.set_batch(batch=piece, n_past=llm.n_tokens, logits_all=True)
            llm._ctx.decode(llm._batch)
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(piece), llm.n_vocab()))
            llm.input_ids[llm.n_tokens : llm.n_tokens + len(piece)] = piece
            llm.n_tokens += len(piece)
            yield logits

    @contextmanager
    def interruptible(self, cancel: threading.Event):
        """Calls from this thread inside the block stop mid-decode once `cancel` is set.

        For background work (grading) that must give the model up at once when a chat arrives:
        without it a prompt evaluation or a scoring pass runs to its end first. The check costs a
        Python call per graph node, so chat generation never runs with it.
        """
        self._local.interrupt = cancel
        try:
            yield
        finally:
            self._local.interrupt = None

    def _interrupt(self) -> threading.Event | None:
        """The preemption event the calling thread is inside `interruptible` with, if any."""
        return getattr(self._local, "interrupt", None)

    @contextmanager
    def _abort_when_interrupted(self, cancel: threading.Event | None):
        """On the engine's thread: install llama.cpp's abort callback for this call only."""
        if cancel is None:
            yield
            return
        ctx = self.llm._ctx.ctx
        callback = llama_cpp.ggml_abort_callback(lambda _data: cancel.is_set())
        llama_cpp.llama_set_abort_callback(ctx, callback, None)
        try:
            yield
        except RuntimeError as exc:  # llama_decode returned 2: aborted
            if not cancel.is_set():
                raise
            self.llm.reset()  # the cache may hold half a batch
            raise InterruptedError("preempted by a chat") from exc
        finally:
            llama_cpp.llama_set_abort_callback(ctx, llama_cpp.ggml_abort_callback(), None)

    def prompt_tokens(self, messages: Messages) -> list[int]:
        """The prompt's token ids: the template's markers as control tokens, each message's
        content as plain text whatever it spells (llama.cpp tokenizes it with special=False)."""
        slotted = [{**m, "content": _SLOT.format(i)} for i, m in enumerate(messages)]
        rendered = self._formatter(messages=slotted).prompt
        contents = [str(m.get("content") or "") for m in messages]
        ids: list[int] = []
        for control, text in prompt_runs(rendered, contents, self._control):
            ids += self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=control)
        return ids

    def count_tokens(self, messages: Messages) -> int:
        return len(self.prompt_tokens(messages))

    def stream(
        self,
        messages: Messages,
        sampling: dict[str, Any],
        cancel: threading.Event | None = None,
        json_schema: dict | None = None,
    ) -> Iterator[Delta]:
        cancel = cancel or threading.Event()
        closed = threading.Event()  # the caller stopped reading: stop generating
        pieces: queue.Queue = queue.Queue()
        job = self._submit(
            self._generate, messages, sampling, cancel, closed, json_schema, self._interrupt(),
            pieces,
        )  # fmt: skip
        try:
            while True:
                item = pieces.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None or item.completion_tokens is not None:
                    return
        finally:
            closed.set()
            job.result()  # the model is free again when the caller's stream ends

    def _generate(self, messages, sampling, cancel, closed, json_schema, interrupt, pieces):
        """On the engine's thread: run one generation, handing each Delta to `pieces`."""
        try:
            with self._abort_when_interrupted(interrupt):
                for delta in self._deltas(messages, sampling, cancel, closed, json_schema):
                    pieces.put(delta)
        except BaseException as exc:  # handed to the caller, who raises it
            pieces.put(exc)

    def _deltas(self, messages, sampling, cancel, closed, json_schema) -> Iterator[Delta]:
        prompt = self.prompt_tokens(messages)
        cached = self.llm.input_ids[: min(self.llm.n_tokens, len(prompt))].tolist()
        if cached == prompt:
            # The whole prompt is cached (the same request again): llama-cpp-python would
            # evaluate its last token alone, and on some CPU builds (AVX2) those logits differ
            # from the batch's, so the same seed gave another answer. Evaluated afresh instead.
            self.llm.reset()
        parts: list[str] = []
        finish_reason = None
        # From token ids, with the sampler settings llama-cpp-python's chat handler used.
        chunks = self.llm.create_completion(
            prompt=prompt,
            stream=True,
            temperature=Sampling.value(sampling, "temperature"),
            top_p=Sampling.value(sampling, "top_p"),
            top_k=TOP_K,
            min_p=MIN_P,
            repeat_penalty=Sampling.value(sampling, "repeat_penalty"),
            presence_penalty=sampling.get("presence_penalty", 0.0),
            frequency_penalty=sampling.get("frequency_penalty", 0.0),
            max_tokens=Sampling.value(sampling, "max_tokens"),
            seed=sampling.get("seed"),
            stop=self._stop + list(sampling.get("stop") or ()),  # a caller's own, if any
            stopping_criteria=self._stop_at_eos,
            grammar=self._grammar(json_schema) if json_schema else None,
        )
        try:
            for chunk in chunks:
                if cancel.is_set() or closed.is_set():
                    finish_reason = "stopped"
                    break
                choice = chunk["choices"][0]
                text = choice.get("text") or ""
                if text:
                    parts.append(text)
                    yield Delta(text=text)
                finish_reason = choice.get("finish_reason") or finish_reason
        finally:
            chunks.close()
        completion = "".join(parts)
        yield Delta(
            finish_reason=finish_reason,
            prompt_tokens=len(prompt),
            completion_tokens=len(self.llm.tokenize(completion.encode(), add_bos=False))
            if completion
            else 0,
        )

    def _grammar(self, schema: dict) -> LlamaGrammar:
        """The llama.cpp grammar for JSON matching `schema` (any JSON where llama-cpp-python
        cannot convert the schema, as its chat handler does), built once per schema."""
        key = json.dumps(schema)  # as llama-cpp-python's chat handler converts it
        if key not in self._grammars:
            try:
                self._grammars[key] = LlamaGrammar.from_json_schema(key, verbose=False)
            except Exception:  # the converter raises bare Exceptions
                self._grammars[key] = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
        return self._grammars[key]

    def token_logprobs(self, messages: Messages, answer: str) -> list[float]:
        """Log-probability of each token of `answer` given the prompt, in one batched pass.

        llama-cpp-python only exposes per-token logprobs when the whole context keeps logits for
        every position (`logits_all`, n_ctx x vocab floats), so we ask llama.cpp for logits at the
        answer positions only.
        """
        prompt = self.prompt_tokens(messages)
        target = self.llm.tokenize(answer.encode("utf-8"), add_bos=False, special=False)
        if not target:
            return []
        if len(prompt) + len(target) > self.context_window:
            raise ModelError("prompt and answer together do not fit the context window")
        return self._run(self._token_logprobs, prompt, target, self._interrupt())

    def _token_logprobs(self, prompt, target, interrupt) -> list[float]:
        with self._abort_when_interrupted(interrupt):
            llm = self.llm
            llm.reset()
            llm.eval(prompt[:-1])
            # Position i of `scored` predicts target[i].
            scored = [prompt[-1], *target[:-1]]
            out: list[float] = []
            start = 0
            for raw in self._logits_batches(scored):
                logits = raw.astype(np.float64)
                peak = logits.max(axis=1, keepdims=True)
                logz = peak[:, 0] + np.log(np.exp(logits - peak).sum(axis=1))
                ids = np.asarray(target[start : start + len(logits)])
                out.extend((logits[np.arange(len(logits)), ids] - logz).tolist())
                start += len(logits)
            # The next generation must not reuse a cache that holds the scored answer.
            llm.reset()
            return out


def _control_tokens(llm: Llama) -> re.Pattern:
    """The text of every control token in the vocabulary (what special=True turns into one
    token), longest first, as one pattern that finds them in the template's own text."""
    control = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    texts = {
        llm._model.token_get_text(i)
        for i in range(llm.n_vocab())
        if llm._model.token_get_attr(i) & control
    }
    texts.discard("")
    return re.compile(
        "|".join(re.escape(t) for t in sorted(texts, key=len, reverse=True)) or "(?!)"
    )


def prompt_runs(rendered: str, contents: list[str], control: re.Pattern) -> list[tuple[bool, str]]:
    r"""Cut a prompt rendered with slots (`_SLOT`) for the contents into (is_control, text) runs.

    Control tokens are looked for only in the template's own text; the contents go back into
    their slots afterwards and join the plain text around them, so each plain run is tokenized
    in one piece (as llama.cpp would, between control tokens) but never for control tokens.

    >>> control = re.compile(re.escape("<|im_start|>") + "|" + re.escape("<|im_end|>"))
    >>> rendered = "<|im_start|>user\n" + _SLOT.format(0) + "<|im_end|>\n"
    >>> prompt_runs(rendered, ["hi<|im_end|>"], control)
    [(True, '<|im_start|>'), (False, 'user\nhi<|im_end|>'), (True, '<|im_end|>'), (False, '\n')]
    >>> prompt_runs("<|im_start|>" + _SLOT.format(0), ["<|im_"], control)
    [(True, '<|im_start|>'), (False, '<|im_')]
    """
    runs: list[tuple[bool, str]] = []
    plain = ""
    for i, part in enumerate(_SLOT_SPLIT.split(rendered)):
        if i % 2:  # the index of a slot
            plain += contents[int(part)]
            continue
        start = 0
        for match in control.finditer(part):
            plain += part[start : match.start()]
            if plain:
                runs.append((False, plain))
            runs.append((True, match.group()))
            plain, start = "", match.end()
        plain += part[start:]
    if plain:
        runs.append((False, plain))
    return runs
