"""Timing answers through the app, for the chat benchmarks (bench/chat_throughput.py and its
`--during-refresh` phase order, bench/during_refresh.py): the prompts, the settings the app runs
with, one streamed answer through gradio_client's /chat, rounds of them, the medians over
answers and the app's own timings. Measures nothing by itself.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

PROMPTS = [
    "Tell me a short story about a lighthouse keeper.",
    "Explain how photosynthesis works.",
    "Write a poem about autumn leaves.",
    "What are the benefits of regular exercise?",
    "Describe the water cycle step by step.",
]
SYSTEM = "You are a helpful assistant."


def app_settings(args) -> dict:
    """The app's settings for a run: greedy, the same threads, max tokens and system prompt as
    the raw loop, grading as asked, retrieval on."""
    return {
        "temperature": 0,
        "top_p": 1.0,
        "seed": 1,
        "repeat_penalty": 1.1,
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "system_prompt": SYSTEM,
        "context_window": 4096,
        "grading": args.grading,
        "retrieval": True,
    }


def app_run(client, prompt):
    start = time.perf_counter()
    first, last, seen = None, None, ""
    job = client.submit(prompt, "", api_name="/chat")
    for answer, _conv in job:
        if answer != seen:
            last = time.perf_counter()
            first = first or last
            seen = answer
    answer, _ = job.result()
    # The stream ends when the last token arrives; the bookkeeping after it (storing the
    # exchange) is not generation time.
    return start, first, last, answer


def app_answers(url: str, args, warm_up: bool = True, after_each: Callable | None = None) -> list:
    """`--rounds` x the prompts through the app (after one warm-up answer), `--pause` seconds
    apart; `after_each()` is called as each answer ends."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    if warm_up:
        app_run(client, PROMPTS[0])
    runs = []
    for _ in range(args.rounds):
        for prompt in PROMPTS:
            runs.append(app_run(client, prompt))
            if after_each is not None:
                after_each()
            time.sleep(args.pause)
    return runs


def summarize(llm, runs) -> dict:
    """Medians over answers: decode tokens/s as the client sees them arrive (after the first),
    the whole answer's tokens/s (request to last token) and the time to the first token."""
    decode, whole, first = [], [], []
    for start, f, end, text in runs:
        n = len(llm.tokenize(text.encode(), add_bos=False))
        decode.append((n - 1) / (end - f) if end > f else 0.0)
        whole.append(n / (end - start))
        first.append((f - start) * 1000)
    return {
        "decode": statistics.median(decode),
        "whole": statistics.median(whole),
        "first_ms": statistics.median(first),
    }


def own_timings(rows) -> dict:
    """The app's own timings of its answers, from `exchanges` rows of (first_token_ms,
    latency_ms, completion_tokens): medians of the first token and of the decode speed."""
    decode = [(n - 1) / ((total - first) / 1000) for first, total, n in rows if total > first]
    return {
        "first_token_ms": round(statistics.median(f for f, _, _ in rows), 1),
        "decode_tokens_per_s": round(statistics.median(decode), 1),
    }
