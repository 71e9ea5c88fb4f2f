"""The llama.cpp engine on the real embedded model: load, stream, count, score, fail clearly."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from assistant.llm.base import ModelError
from assistant.llm.buildflags import cmake_args, cpu_flags
from assistant.llm.weights import check_gguf, embedded_model_path

# A question the embedded model answers the same way on every CPU build: its greedy answer's
# top-2 logit margin is at least 1.6. "The capital of France" opens on a margin of 0.13: on an
# AVX2-only build (AMD EPYC) the answer starts "La femme de France" where earlier machines said
# Paris.
QUESTION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of Japan?"},
]
GREEDY = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 24, "seed": 1}


def test_the_embedded_model_is_found_through_its_package():
    path = embedded_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert "site-packages" in path.parts and path.stat().st_size > 50_000_000


def test_the_build_never_enables_amx_even_where_the_cpu_advertises_it():
    info = "processor : 0\nflags : fpu avx avx2 fma f16c avx512f avx512cd avx512vl avx512dq avx512bw amx_tile amx_int8 amx_bf16\n"
    args = cmake_args(cpu_flags(info), "x86_64")
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_AVX512=ON" in args
    assert all(f"-D{o}=OFF" in args for o in ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16"))


def test_the_installed_llama_cpp_has_no_amx_kernels():
    from assistant.llm.llama import system_info

    info = system_info()
    assert "AMX" not in info.replace("AMX_INT8 = 0", "")
    assert "AVX2 = 1" in info or "AVX2" not in Path("/proc/cpuinfo").read_text()


def test_a_fresh_process_decodes_without_crashing(embedded_path):
    # A native build with AMX dies with SIGSEGV at the first decode; run one in a child process
    # so a crash shows up as a failed test rather than a dead test run.
    code = (
        "from assistant.llm.llama import LlamaEngine;import sys;"
        f"e=LlamaEngine(sys.argv[1], context_window=512, threads=2);"
        f"print(''.join(d.text for d in e.stream({QUESTION!r}, {GREEDY!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(embedded_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Tokyo" in done.stdout


def test_streams_an_answer_token_by_token(engine):
    deltas = list(engine.stream(QUESTION, GREEDY))
    pieces = [d.text for d in deltas if d.text]
    assert len(pieces) > 3
    assert "Tokyo" in "".join(pieces)
    last = deltas[-1]
    assert last.finish_reason in ("stop", "length")
    assert last.prompt_tokens == engine.count_tokens(QUESTION)
    assert 0 < last.completion_tokens <= 24


def test_greedy_generation_is_reproducible(engine):
    first = "".join(d.text for d in engine.stream(QUESTION, GREEDY))
    second = "".join(d.text for d in engine.stream(QUESTION, GREEDY))
    assert first == second


def test_counts_prompt_tokens_with_the_files_chat_template(engine):
    n = engine.count_tokens(QUESTION)
    longer = engine.count_tokens(
        [{"role": "user", "content": "What is the capital of France? " * 10}]
    )
    assert 8 < n < 40
    assert longer > n + 50


def test_cancel_stops_generation_early(engine):
    cancel = threading.Event()
    pieces = []
    for delta in engine.stream(
        [{"role": "user", "content": "Write a long story."}], {**GREEDY, "max_tokens": 200}, cancel
    ):
        if delta.text:
            pieces.append(delta.text)
            if len(pieces) == 3:
                cancel.set()
    assert len(pieces) == 3
    assert delta.finish_reason == "stopped"


def test_token_logprobs_match_llama_cpps_own_full_logits(engine, embedded_path):
    from llama_cpp import Llama

    answer = "The capital of Japan is Tokyo."
    ours = engine.token_logprobs(QUESTION, answer)
    reference = Llama(str(embedded_path), n_ctx=512, logits_all=True, verbose=False)
    import numpy as np

    prompt = engine.prompt_tokens(QUESTION)
    target = reference.tokenize(answer.encode(), add_bos=False, special=False)
    reference.eval(prompt + target)
    logits = np.array(
        reference.scores[len(prompt) - 1 : len(prompt) + len(target) - 1], dtype=np.float64
    )
    logz = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    expected = logits[np.arange(len(target)), target] - logz
    assert len(ours) == len(target)
    assert np.allclose(ours, expected, atol=1e-3)
    # A fluent answer is far more likely than a scrambled one.
    assert np.mean(ours) > np.mean(
        engine.token_logprobs(QUESTION, "Tokyo capital. The is of Japan")
    )


def test_generation_after_scoring_is_unaffected(engine):
    before = "".join(d.text for d in engine.stream(QUESTION, GREEDY))
    engine.token_logprobs(QUESTION, "Some unrelated answer about cheese.")
    assert "".join(d.text for d in engine.stream(QUESTION, GREEDY)) == before


def test_a_missing_or_broken_model_file_gives_one_readable_line(tmp_path):
    with pytest.raises(ModelError, match=r"^model file not found: .*nope\.gguf$"):
        check_gguf(tmp_path / "nope.gguf")
    bad = tmp_path / "notes.gguf"
    bad.write_text("hello")
    with pytest.raises(ModelError, match=r"^not a GGUF model file: .*notes\.gguf$"):
        check_gguf(bad)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(b"GGUF" + b"\0" * 64)
    from assistant.llm.llama import LlamaEngine

    with pytest.raises(ModelError, match="could not load model"):
        LlamaEngine(truncated)


LONG_PROMPT = [{"role": "user", "content": "Summarize: " + "The fox jumps over the dog. " * 150}]
BACKGROUND = {
    # the grader's log-probability pass
    "scoring": lambda engine: engine.token_logprobs(LONG_PROMPT, "word " * 100),
    # the grader's judge, which streams
    "judging": lambda engine: list(
        engine.stream(LONG_PROMPT, {"temperature": 0.0, "max_tokens": 400})
    ),
}


@pytest.mark.parametrize("work", BACKGROUND)
def test_background_work_is_interrupted_mid_decode_and_the_engine_stays_sound(engine, work):
    """A chat arriving must stop the grader inside llama.cpp's decode, not after the prompt or
    the answer is done."""
    import time

    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    start = time.perf_counter()
    with pytest.raises(InterruptedError), engine.interruptible(cancel):
        BACKGROUND[work](engine)
    assert time.perf_counter() - start < 2.0
    # The next call, from a chat (no interrupt installed), runs normally even though the
    # event is still set.
    assert "Tokyo" in "".join(d.text for d in engine.stream(QUESTION, GREEDY))


def test_every_model_call_runs_on_the_engines_one_thread_whoever_calls(engine, monkeypatch):
    """llama.cpp's OpenMP keeps a worker team per thread that has computed; once the grader's
    thread had run the model, chat on other threads decoded at 40-100 instead of ~140 tokens/s.
    So every decode, from any caller, must happen on the engine's own thread."""
    import threading

    seen = []
    decode = type(engine.llm._ctx).decode

    def recording(ctx, batch):
        seen.append(threading.current_thread().name)
        return decode(ctx, batch)

    monkeypatch.setattr(type(engine.llm._ctx), "decode", recording)
    messages = [{"role": "user", "content": "Say hi."}]
    greedy = {"temperature": 0.0, "max_tokens": 4, "seed": 0}

    def work():
        list(engine.stream(messages, greedy))
        engine.token_logprobs(messages, "Hi there.")

    callers = [threading.Thread(target=work, name=f"caller-{i}") for i in range(2)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    list(engine.stream(messages, greedy))  # and from the main thread
    assert seen and {name.split("_")[0] for name in seen} == {"llama"}, set(seen)


def test_a_reader_that_stops_early_frees_the_model_for_the_next_call(engine):
    stream = engine.stream([{"role": "user", "content": "Count to fifty."}], {"max_tokens": 200})
    next(stream)
    stream.close()  # the generation stops on the engine's thread before close returns
    answer = "".join(
        d.text for d in engine.stream([{"role": "user", "content": "Say hi."}], {"max_tokens": 5})
    )
    assert answer


def test_a_closed_engine_refuses_calls_as_an_interruption(embedded_path):
    """After close (the app stopping), a grading call is an interruption: its job goes back to
    the queue instead of counting as a failed attempt."""
    from assistant.llm.llama import LlamaEngine

    engine = LlamaEngine(embedded_path, context_window=512, threads=1)
    engine.close()
    with pytest.raises(InterruptedError):
        list(engine.stream(QUESTION, GREEDY))
    with pytest.raises(InterruptedError):
        engine.token_logprobs(QUESTION, "Tokyo.")


def test_the_same_request_with_the_same_seed_gives_the_same_answer_again(engine):
    """A repeated prompt is all in the cache; it is evaluated afresh, not by its last token alone
    (whose logits differ from the batch's on an AVX2 build, and changed the sampled answer)."""
    messages = [QUESTION[0], {"role": "user", "content": "Invent a name."}]
    sampling = {"temperature": 1.5, "seed": 11, "max_tokens": 6}
    first, again = ("".join(d.text for d in engine.stream(messages, sampling)) for _ in "ab")
    assert first == again


def test_the_fingerprint_names_what_greedy_answers_depend_on(engine):
    sibling = engine.sibling()
    other = engine.sibling(context_window=1024)
    try:
        assert sibling.fingerprint == engine.fingerprint
        assert other.fingerprint != engine.fingerprint  # another context size
        assert str(engine.path.resolve()) in engine.fingerprint
    finally:
        sibling.close()
        other.close()
