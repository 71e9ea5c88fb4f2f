"""Chat throughput: the raw llama-cpp-python streaming loop against the full app path.

Same prompts, model, threads, max tokens and greedy sampling, measured in one run, in phases
that never overlap, so each path has the machine to itself:
  raw  - Llama.create_chat_completion(stream=True) in this process, with no server running;
         measured before and after the app (their mean is the baseline, their gap the drift);
  app  - `autodidact serve` in a child process as users run it: background grading on, and a
         training pool of `--pool` exchanges (default 1,000; synthetic, from tests/data,
         curated by the real curator), so retrieval (PII masking, embedding the question, the
         Chroma query) is inside the first-token time. Called through gradio_client's /chat
         stream (HTTP, queue, chat service, prompt building, SQLite writes included). Between
         answers both paths pause `--pause` seconds, as a person would: long enough for the
         grader to start on the last answer, so each new message has to preempt it.
         With `--documents N` the app's home also holds a knowledge base of N passages
         (bench/documents.py: the 500 HaluEval passages, then TruthfulQA's correct answers as
         FAQ paragraphs, then HaluEval re-split; one file each, through `Library.add_bytes`),
         so every message is also embedded and searched there, and the passages that pass the
         similarity threshold go into the system prompt, as users with documents run it. The
         prompts stay the same five; raw never gets passages, so an answer given passages
         differs from raw's and the first-token gap includes their longer prefill. The
         summary says how many answers were given passages.
Prints tokens/s (decode, after the first token) and time to first token for both, and the
ratios app/raw. Tokens are counted with the model's tokenizer on the final text of each answer.
A last line, "floor", is gradio_client's first output from a trivial streaming endpoint with no
model: what any Gradio app pays before its first token (gradio_client polls its message queue
every 50 ms), so the app's own share of the first-token gap is app - raw - floor.

    .venv/bin/python bench/chat_throughput.py [--rounds 3] [--max-tokens 128] [--threads 2]
                                              [--pool 1000] [--pause 2.0] [--documents 0]
    .venv/bin/python bench/chat_throughput.py --documents 1000    # the run "with documents"
    .venv/bin/python bench/chat_throughput.py --during-refresh [--refresh-nice 10]
                                              [--refresh-threads 1]   # the chat beside a refresh

About 2.5 minutes with the defaults on 2 cores (10 s to seed the pool; --documents 1000 adds
about a minute to fill the knowledge base). Writes bench/results/chat_throughput.json, with
--documents chat_throughput-documents.json, and for other variants (--no-grading, --pool 0)
chat_throughput-variant.json.

`--during-refresh` measures something else in one run: the app idle, then the app while a
refresh started the way the Models tab starts it trains on the same home, and the ratios
during/idle (bench/during_refresh.py; no raw phase). It writes
chat_throughput-during-refresh.json (with -niceN-threadsT when the refresh's are overridden).
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


def seed_pool(home: Path, n: int) -> dict:
    """A home whose training pool holds `n` curated exchanges (bench/pool.py's synthetic data)."""
    from assistant.settings import Settings
    from assistant.wiring import build_curator
    from bench.pool import synthesize
    from store.db import open_database

    settings = Settings(home=home)
    engine = open_database(settings.effective_database_url)
    synthesize(engine, n)
    curator = build_curator(settings, engine)
    curator.rebuild()
    counts = curator.pool.counts()
    engine.dispose()
    return {
        "exchanges": n,
        "train": sum(v for (status, _), v in counts.items() if status == "train"),
        "indexed": curator.index.count(),
    }


def seed_documents(home: Path, n: int) -> dict:
    """A knowledge base of `n` passages in the home, for the user the server answers as."""
    from tqdm import tqdm

    from assistant.settings import Settings
    from assistant.wiring import build_library
    from bench.documents import fill
    from store.conversations import ConversationStore
    from store.db import open_database

    settings = Settings(home=home)
    engine = open_database(settings.effective_database_url)
    library = build_library(settings, engine)
    user_id = ConversationStore(engine).user(settings.user).id
    with tqdm(total=n, desc="knowledge base", unit="passage") as bar:
        filled = fill(library, user_id, n, progress=bar.update)
    engine.dispose()
    return filled


def server_figures(home: Path) -> dict:
    """What the app did besides answering (grades written, jobs left, answers drawing on the
    pool), and its own timings of each answer: the model's decode speed inside the app, with the
    app's other work competing, measured where the tokens are made, not where they arrive."""
    import sqlite3

    with sqlite3.connect(home / "autodidact.db") as db:
        jobs = dict(db.execute("SELECT status, count(*) FROM grading_jobs GROUP BY status"))
        mine = "id IN (SELECT exchange_id FROM grading_jobs)"  # the run's answers, not the pool's
        graded = db.execute(f"SELECT count(*) FROM grades WHERE exchange_{mine}").fetchone()[0]
        drew = db.execute(f"SELECT count(*) FROM exchanges WHERE retrieved != '[]' AND {mine}")
        grounded = db.execute(
            "SELECT count(DISTINCT exchange_id), count(*) FROM exchange_sources "
            f"WHERE exchange_{mine}"
        ).fetchone()
        prompt_tokens = [
            n
            for (n,) in db.execute(f"SELECT prompt_tokens FROM exchanges WHERE {mine} ORDER BY id")
        ]
        timings = db.execute(
            f"SELECT first_token_ms, latency_ms, completion_tokens FROM exchanges WHERE {mine}"
        ).fetchall()
    timings = timings[1:]  # the warm-up answer
    decode = [(n - 1) / ((total - first) / 1000) for first, total, n in timings if total > first]
    return {
        "grading_jobs": jobs,
        "graded_during_run": graded,
        "answers_with_examples": drew.fetchone()[0],
        # Counted with the warm-up answer: answers given document passages, passages in all.
        "answers_with_passages": grounded[0],
        "passages_given": grounded[1],
        "prompt_tokens_median": statistics.median(prompt_tokens[1:]),
        "server_first_token_ms": round(statistics.median(f for f, _, _ in timings), 1),
        "server_decode_tokens_per_s": round(statistics.median(decode), 1),
    }


def raw_phase(llm, args) -> list:
    raw_run(llm, PROMPTS[0], args)  # warm-up
    runs = []
    for _ in range(args.rounds):
        for prompt in PROMPTS:
            runs.append(raw_run(llm, prompt, args))
            time.sleep(args.pause)
    return runs


def app_phase(url: str, args) -> list:
    from gradio_client import Client

    client = Client(url, verbose=False)
    app_run(client, PROMPTS[0])  # warm-up
    runs = []
    for _ in range(args.rounds):
        for prompt in PROMPTS:
            runs.append(app_run(client, prompt))
            time.sleep(args.pause)
    return runs


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


def start_server(home: Path, args) -> tuple[subprocess.Popen, str]:
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
        "AUTODIDACT_GRADING": str(args.grading).lower(),
        "AUTODIDACT_RETRIEVAL": "true",
    }
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=1)
            return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the app did not start within 2 minutes")


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pool", type=int, default=1000, help="exchanges in the app's pool")
    parser.add_argument("--pause", type=float, default=2.0, help="seconds between answers")
    parser.add_argument(
        "--documents", type=int, default=0, help="passages in the app's knowledge base"
    )
    parser.add_argument(
        "--during-refresh",
        action="store_true",
        help="the app idle, then while a refresh (as the Models tab starts it) trains beside it",
    )
    parser.add_argument(
        "--refresh-nice", type=int, help="the refresh's nice (default: the refresh_nice setting)"
    )
    parser.add_argument(
        "--refresh-threads",
        type=int,
        help="the refresh's threads (default: the refresh_threads setting)",
    )
    parser.add_argument(
        "--grading",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="background grading in the app (--no-grading: off, to see what it costs)",
    )
    return parser.parse_args()


def measure(args) -> dict:
    """Raw alone, the app alone, raw alone again, then the Gradio floor; the figures."""
    from llama_cpp import Llama

    from assistant.llm.weights import embedded_model_path

    model = embedded_model_path()
    home = Path(tempfile.mkdtemp(prefix="autodidact-bench-"))
    t = time.perf_counter()
    pool = seed_pool(home, args.pool) if args.pool else {"exchanges": 0}
    print(f"pool seeded in {time.perf_counter() - t:.0f} s: {pool}", flush=True)
    documents = seed_documents(home, args.documents) if args.documents else {"chunks": 0}
    if args.documents:
        print(f"knowledge base filled: {documents}", flush=True)
    llm = Llama(
        str(model), n_ctx=4096, n_threads=args.threads, n_threads_batch=args.threads, verbose=False
    )
    llm.chat_format = "chat_template.default"
    raw_before = raw_phase(llm, args)  # nothing else running: no server yet
    server, url = start_server(home, args)
    try:
        app_runs = app_phase(url, args)
        time.sleep(1.0)  # let the last answer's bookkeeping land before counting
    finally:
        server.terminate()
        server.wait(timeout=60)
    app_side = server_figures(home)
    raw_after = raw_phase(llm, args)  # the server is gone again
    floor = gradio_floor()
    raw = summarize(llm, raw_before + raw_after)
    app = summarize(llm, app_runs)
    before, after = summarize(llm, raw_before), summarize(llm, raw_after)
    return {
        "model": model.name,
        "threads": args.threads,
        "max_tokens": args.max_tokens,
        "pause_s": args.pause,
        "grading": args.grading,
        "pool": pool,
        "documents": documents,
        "answers_per_path": len(app_runs),
        "answers_differing_from_raw": sum(
            a[3] != r[3] for a, r in zip(app_runs, raw_before, strict=True)
        ),
        "raw": {k: round(v, 1) for k, v in raw.items()},
        "raw_decode_before_after": [round(before["decode"], 1), round(after["decode"], 1)],
        "app_client": {k: round(v, 1) for k, v in app.items()},
        **app_side,
        # Decode speed of the model inside the app (its own timings) against raw: the target.
        "decode_ratio_app_over_raw": round(
            app_side["server_decode_tokens_per_s"] / raw["decode"], 3
        ),
        # The whole answer as a caller waits for it, request to last token.
        "whole_answer_ratio_app_over_raw": round(app["whole"] / raw["whole"], 3),
        "first_token_delta_ms": round(app["first_ms"] - raw["first_ms"], 1),
        "gradio_floor_first_output_ms": round(floor, 1),
    }


def show(r: dict) -> None:
    raw, app, floor = r["raw"], r["app_client"], r["gradio_floor_first_output_ms"]
    before, after = r["raw_decode_before_after"]
    where = f"grading {'on' if r['grading'] else 'off'}, pool of {r['pool']['exchanges']:,}"
    if r["documents"]["chunks"]:
        where += f", {r['documents']['chunks']:,} passages"
    rows = [
        ("raw (before, after)", raw["decode"], raw["whole"], raw["first_ms"], f"{before}, {after}"),
        ("app, as the client sees it", app["decode"], app["whole"], app["first_ms"], where),
        (
            "app, its own timings",
            r["server_decode_tokens_per_s"],
            None,
            r["server_first_token_ms"],
            "model call start to token",
        ),
        ("floor", None, None, floor, "gradio_client, trivial endpoint"),
    ]
    print(f"{'path':<28} {'decode tok/s':>12} {'whole tok/s':>12} {'first token ms':>15}")
    for name, decode, whole, first, note in rows:
        cells = [f"{v:>12.1f}" if v is not None else f"{'-':>12}" for v in (decode, whole)]
        print(f"{name:<28} {' '.join(cells)} {first:>15.1f}   ({note})")
    print(
        f"decode ratio app/raw: {r['decode_ratio_app_over_raw']:.3f} (target >= 0.95); "
        f"whole answer: {r['whole_answer_ratio_app_over_raw']:.3f}"
    )
    print(
        f"app - raw first token: {r['first_token_delta_ms']:+.1f} ms (target <= +100 ms); "
        f"beyond the Gradio floor: {r['first_token_delta_ms'] - floor:+.1f} ms"
    )
    n = r["answers_per_path"]
    print(
        f"answers identical to raw: {n - r['answers_differing_from_raw']}/{n}; drew on pool "
        f"examples: {r['answers_with_examples']}; grading jobs {r['grading_jobs']}, "
        f"{r['graded_during_run']} graded during the run"
    )
    if r["documents"]["chunks"]:
        print(
            f"given document passages: {r['answers_with_passages']}/{n + 1} answers (warm-up "
            f"included), {r['passages_given']} passages in all; median prompt "
            f"{r['prompt_tokens_median']:.0f} tokens"
        )


def main() -> int:
    args = arguments()
    if args.during_refresh:
        from bench import during_refresh

        result = during_refresh.measure_during_refresh(args)
        during_refresh.show(result)
        (ROOT / "bench" / "results").mkdir(exist_ok=True)
        print(f"saved {during_refresh.save(result, ROOT / 'bench' / 'results', args)}")
        return 0
    result = measure(args)
    show(result)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    if args.documents:
        name = "chat_throughput-documents.json"
    elif args.grading and args.pool:
        name = "chat_throughput.json"
    else:
        name = "chat_throughput-variant.json"
    (out / name).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
