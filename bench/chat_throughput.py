"""Chat throughput: the raw llama-cpp-python streaming loop against the full app path.

Same prompts, model, threads, max tokens and greedy sampling, measured two ways in one run:
  raw  - Llama.create_chat_completion(stream=True) in this process;
  app  - `autodidact serve` in a child process, called through gradio_client's /chat stream
         (HTTP, queue, chat service, prompt building, SQLite writes included).
Prints tokens/s (decode, after the first token) and time to first token for both, and the
ratios app/raw. Tokens are counted with the model's tokenizer on the final text of each answer.
A third line, "floor", is gradio_client's first output from a trivial streaming endpoint with no
model: what any Gradio app pays before its first token (gradio_client polls its message queue
every 50 ms), so the app's own share of the first-token gap is app - raw - floor.

    .venv/bin/python bench/chat_throughput.py [--rounds 3] [--max-tokens 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "Tell me a short story about a lighthouse keeper.",
    "Explain how photosynthesis works.",
    "Write a poem about autumn leaves.",
    "What are the benefits of regular exercise?",
    "Describe the water cycle step by step.",
]
SYSTEM = "You are a helpful assistant."


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_run(llm, prompt, args):
    start = time.perf_counter()
    first, last, parts = None, None, []
    for chunk in llm.create_chat_completion(
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        stream=True,
        temperature=0.0,
        top_p=1.0,
        repeat_penalty=1.1,
        max_tokens=args.max_tokens,
        seed=1,
    ):
        text = chunk["choices"][0]["delta"].get("content") or ""
        if text:
            last = time.perf_counter()
            first = first or last
            parts.append(text)
    return start, first, last, "".join(parts)


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


def gradio_floor(n: int = 20) -> float:
    """Median ms to the first output of a do-nothing streaming gr.api endpoint."""
    import gradio as gr
    from gradio_client import Client

    def echo(message: str, conversation_id: str = "") -> Iterator[tuple[str, str]]:
        yield message, "1"

    with gr.Blocks() as demo:
        gr.api(echo, api_name="chat")
    demo.queue(default_concurrency_limit=1)
    port = free_port()
    demo.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        job = client.submit("hi", "", api_name="/chat")
        first = None
        for _out in job:
            first = first or time.perf_counter()
        times.append((first - start) * 1000)
    demo.close()
    return statistics.median(times)


def summarize(llm, runs):
    ttft = [(f - s) * 1000 for s, f, _, _ in runs]
    rates = []
    for _s, f, e, text in runs:
        n = len(llm.tokenize(text.encode(), add_bos=False))
        rates.append((n - 1) / (e - f) if e > f else 0.0)
    return statistics.median(rates), statistics.median(ttft)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    from gradio_client import Client
    from llama_cpp import Llama

    from assistant.llm.weights import embedded_model_path

    model = embedded_model_path()
    home = Path(tempfile.mkdtemp(prefix="autodidact-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "AUTODIDACT_HOME": str(home),
        "AUTODIDACT_TEMPERATURE": "0",
        "AUTODIDACT_TOP_P": "1.0",
        "AUTODIDACT_SEED": "1",
        "AUTODIDACT_REPEAT_PENALTY": "1.1",
        "AUTODIDACT_MAX_TOKENS": str(args.max_tokens),
        "AUTODIDACT_THREADS": str(args.threads),
        "AUTODIDACT_SYSTEM_PROMPT": SYSTEM,
        "AUTODIDACT_CONTEXT_WINDOW": "4096",
    }
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        client = Client(url, verbose=False)
        llm = Llama(
            str(model),
            n_ctx=4096,
            n_threads=args.threads,
            n_threads_batch=args.threads,
            verbose=False,
        )
        llm.chat_format = "chat_template.default"
        raw_runs, app_runs, mismatches = [], [], 0
        raw_run(llm, PROMPTS[0], args)  # warm-up both paths
        app_run(client, PROMPTS[0])
        for _ in range(args.rounds):
            for prompt in PROMPTS:
                raw_runs.append(raw_run(llm, prompt, args))
                app_runs.append(app_run(client, prompt))
                mismatches += raw_runs[-1][3] != app_runs[-1][3]
        raw_rate, raw_ttft = summarize(llm, raw_runs)
        app_rate, app_ttft = summarize(llm, app_runs)
    finally:
        server.terminate()
        server.wait(timeout=30)

    floor = gradio_floor()
    result = {
        "model": model.name,
        "threads": args.threads,
        "max_tokens": args.max_tokens,
        "answers": len(raw_runs),
        "answers_differing": mismatches,
        "raw_tokens_per_s": round(raw_rate, 1),
        "app_tokens_per_s": round(app_rate, 1),
        "throughput_ratio_app_over_raw": round(app_rate / raw_rate, 3),
        "raw_first_token_ms": round(raw_ttft, 1),
        "app_first_token_ms": round(app_ttft, 1),
        "first_token_delta_ms": round(app_ttft - raw_ttft, 1),
        "first_token_ratio_app_over_raw": round(app_ttft / raw_ttft, 2),
        "gradio_floor_first_output_ms": round(floor, 1),
    }
    print(f"{'path':<5} {'tokens/s':>9} {'first token ms':>15}")
    print(f"{'raw':<5} {raw_rate:>9.1f} {raw_ttft:>15.1f}")
    print(f"{'app':<5} {app_rate:>9.1f} {app_ttft:>15.1f}")
    print(f"{'floor':<5} {'-':>9} {floor:>15.1f}   (gradio_client, trivial endpoint, no model)")
    print(
        f"app/raw throughput ratio: {result['throughput_ratio_app_over_raw']:.3f} (target >= 0.95)"
    )
    print(
        f"app - raw first token: {result['first_token_delta_ms']:+.1f} ms (target <= +100 ms); "
        f"beyond the Gradio floor: {app_ttft - raw_ttft - floor:+.1f} ms"
    )
    print(f"answers identical in both paths: {len(raw_runs) - mismatches}/{len(raw_runs)}")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "chat_throughput.json").write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
