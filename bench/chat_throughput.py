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
The same prompts also go through the OpenAI-compatible route (`/v1/chat/completions`,
streamed, with the official `openai` client) of the same app, alternating with the page's
prompt by prompt: no Gradio queue on that path, so its first token should come within 30 ms of
raw's.
A last line, "floor", is gradio_client's first output from a trivial streaming endpoint with no
model: what any Gradio app pays before its first token (gradio_client polls its message queue
every 50 ms), so the app's own share of the first-token gap is app - raw - floor.

    .venv/bin/python -m bench.chat_throughput [--rounds 3] [--max-tokens 128] [--threads 2]
                                              [--pool 1000] [--pause 2.0] [--documents 0]
    .venv/bin/python -m bench.chat_throughput --documents 1000    # the run "with documents"
    .venv/bin/python -m bench.chat_throughput --corrections 10000 # with a 10,000-entry memory
    .venv/bin/python -m bench.chat_throughput --during-refresh [--refresh-nice 10]
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
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench.chat_runs import PROMPTS, SYSTEM, app_run, app_settings, own_timings, summarize
from bench.harness import (
    RESULTS,
    free_port,
    new_home,
    seed_documents,
    seed_pool,
    start_app,
    table,
    write_result,
)
from bench.synthetic import invented


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
    own = own_timings(timings[1:])  # the warm-up answer left out
    return {
        "grading_jobs": jobs,
        "graded_during_run": graded,
        "answers_with_examples": drew.fetchone()[0],
        # Counted with the warm-up answer: answers given document passages, passages in all.
        "answers_with_passages": grounded[0],
        "passages_given": grounded[1],
        "prompt_tokens_median": statistics.median(prompt_tokens[1:]),
        "server_first_token_ms": own["first_token_ms"],
        "server_decode_tokens_per_s": own["decode_tokens_per_s"],
    }


def raw_phase(llm, args) -> list:
    raw_run(llm, PROMPTS[0], args)  # warm-up
    runs = []
    for _ in range(args.rounds):
        for prompt in PROMPTS:
            runs.append(raw_run(llm, prompt, args))
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


def both_routes(url: str, args) -> tuple[list, list]:
    """The prompts through the page's API (gradio_client /chat) and through
    /v1/chat/completions (the official `openai` client, streamed), alternating prompt by
    prompt and which route goes first each round, so both meet the same grading backlog;
    a warm-up answer on each first, `--pause` seconds after every answer."""
    import openai
    from gradio_client import Client

    client = openai.OpenAI(base_url=url + "v1", api_key="local", max_retries=0)
    page = Client(url, verbose=False)

    def run(prompt):
        start = time.perf_counter()
        first, last, parts = None, None, []
        messages = [{"role": "user", "content": prompt}]
        for chunk in client.chat.completions.create(
            model="autodidact", messages=messages, stream=True
        ):
            text = chunk.choices[0].delta.content if chunk.choices else None
            if text:
                last = time.perf_counter()
                first = first or last
                parts.append(text)
        return start, first, last, "".join(parts)

    app_run(page, PROMPTS[0])
    run(PROMPTS[0])
    page_runs, v1_runs = [], []
    for round_ in range(args.rounds):
        for n, prompt in enumerate(PROMPTS):
            routes = [(page_runs, lambda p: app_run(page, p)), (v1_runs, run)]
            for runs, answer in routes[:: 1 if (round_ + n) % 2 == 0 else -1]:
                runs.append(answer(prompt))
                time.sleep(args.pause)
    return page_runs, v1_runs


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


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pool", type=int, default=1000, help="exchanges in the app's pool")
    parser.add_argument(
        "--corrections",
        type=int,
        default=0,
        help="invented facts taught as corrections besides the pool (the memory's size)",
    )
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
    home = new_home()
    t = time.perf_counter()
    taught = invented(args.corrections) if args.corrections else []
    pool = seed_pool(home, args.pool, taught) if args.pool or taught else {"exchanges": 0}
    print(f"pool seeded in {time.perf_counter() - t:.0f} s: {pool}", flush=True)
    documents = seed_documents(home, args.documents) if args.documents else {"chunks": 0}
    if args.documents:
        print(f"knowledge base filled: {documents}", flush=True)
    llm = Llama(
        str(model), n_ctx=4096, n_threads=args.threads, n_threads_batch=args.threads, verbose=False
    )
    llm.chat_format = "chat_template.default"
    raw_before = raw_phase(llm, args)  # nothing else running: no server yet
    # Both routes' answers count against one account's message rate: no limit in a benchmark.
    with start_app(home, {**app_settings(args), "rate_limit_messages": 0}, child=True) as app:
        app_runs, v1_runs = both_routes(app.url, args)
        time.sleep(1.0)  # let the last answer's bookkeeping land before counting
    app_side = server_figures(home)
    raw_after = raw_phase(llm, args)  # the server is gone again
    floor = gradio_floor()
    raw = summarize(llm, raw_before + raw_after)
    app = summarize(llm, app_runs)
    v1 = summarize(llm, v1_runs)
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
        "v1_client": {k: round(v, 1) for k, v in v1.items()},
        "v1_answers_differing_from_raw": sum(
            a[3] != r[3] for a, r in zip(v1_runs, raw_before, strict=True)
        ),
        **app_side,
        # Decode speed of the model inside the app (its own timings) against raw: the target.
        "decode_ratio_app_over_raw": round(
            app_side["server_decode_tokens_per_s"] / raw["decode"], 3
        ),
        # The whole answer as a caller waits for it, request to last token.
        "whole_answer_ratio_app_over_raw": round(app["whole"] / raw["whole"], 3),
        "first_token_delta_ms": round(app["first_ms"] - raw["first_ms"], 1),
        "v1_first_token_delta_ms": round(v1["first_ms"] - raw["first_ms"], 1),
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
            "app /v1, openai client",
            *(r["v1_client"][k] for k in ("decode", "whole", "first_ms")),
            "the same app, no Gradio queue",
        ),
        (
            "app, its own timings",
            r["server_decode_tokens_per_s"],
            None,
            r["server_first_token_ms"],
            "model call start to token",
        ),
        ("floor", None, None, floor, "gradio_client, trivial endpoint"),
    ]
    table(
        None,
        ["path", "decode tok/s", "whole tok/s", "first token ms", ""],
        [[name, *(None if v is None else f"{v:.1f}" for v in figures), note]
         for name, *figures, note in rows],
    )  # fmt: skip
    print(
        f"decode ratio app/raw: {r['decode_ratio_app_over_raw']:.3f} (target >= 0.95); "
        f"whole answer: {r['whole_answer_ratio_app_over_raw']:.3f}"
    )
    print(
        f"app - raw first token: {r['first_token_delta_ms']:+.1f} ms (target <= +100 ms); "
        f"beyond the Gradio floor: {r['first_token_delta_ms'] - floor:+.1f} ms"
    )
    print(f"/v1 - raw first token: {r['v1_first_token_delta_ms']:+.1f} ms (target <= +30 ms)")
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
        write_result(result, during_refresh.result_path(result, args))
        return 0
    result = measure(args)
    show(result)
    if args.documents:
        name = "chat_throughput-documents.json"
    elif args.corrections:
        name = "chat_throughput-memory.json"
    elif args.grading and args.pool:
        name = "chat_throughput.json"
    else:
        name = "chat_throughput-variant.json"
    write_result(result, RESULTS / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
