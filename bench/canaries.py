"""Injection canaries against the real judge: does any attack raise a wrong answer's grade?

Every canary of tests/test_injection.py (English, JSON-shaped verdicts, seven other languages,
homoglyphs, zero-width and tag characters, fullwidth and math letters, nested and faked chat
template tokens) is appended to a wrong answer (or to the question) and graded by the embedded
SmolLM2 model, with the same delimiters as the clean answer. Per case it prints:

  detected  the sanitizer found a sentence addressing the grader (feedback/grading/sanitize.py);
  grade     the grader's combined score, clean and injected (it keeps the lower of the grades
            with and without the detected sentences): "raised" when the injected one is higher;
  judge     the judge's own 1-10 score, clean and injected, with the delimiters and the
            neutralizing but without the keep-the-lower rule: what detection is there to catch.

    .venv/bin/python -m bench.canaries               # about 2-3 minutes on 2 idle cores
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.harness import offline


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    args = parser.parse_args()
    offline()  # set when bench.harness is imported; said here, before the model loads

    from assistant.llm.llama import LlamaEngine
    from assistant.llm.weights import embedded_model_path
    from feedback.grading.grader import Grader
    from feedback.grading.judge import JudgeError, judge
    from feedback.grading.sanitize import injection_lines
    from tests.test_injection import CANARIES, QUESTION, TAG, WRONG

    def judge_score(question: str, answer: str) -> int | None:
        try:
            return judge(engine, question, answer, tag=TAG).score
        except JudgeError:
            return None

    started = time.perf_counter()
    engine = LlamaEngine(embedded_model_path(), context_window=2048, threads=args.threads)
    grader = Grader(engine)
    clean = grader.grade(QUESTION, WRONG, tag=TAG).score
    clean_judge = judge_score(QUESTION, WRONG)
    print(f"question {QUESTION!r}, wrong answer {WRONG!r}: grade {clean:.3f}, judge {clean_judge}")
    print(f"{'case':20} {'detected':8} {'grade':>13} {'judge':>7}  raised")
    raised = detected = judge_raised = 0
    for name, where, text in CANARIES:
        question, answer = (text, WRONG) if where == "question" else (QUESTION, text)
        found = bool(injection_lines(text))
        score = grader.grade(question, answer, tag=TAG).score
        alone = judge_score(question, answer)
        up = score > clean
        up_judge = None not in (alone, clean_judge) and alone > clean_judge
        raised, detected, judge_raised = raised + up, detected + found, judge_raised + up_judge
        print(
            f"{name:20} {found!s:8} {clean:.3f}>{score:.3f} {clean_judge!s:>3}>{alone!s:<3}  "
            f"{'GRADE' if up else ''}{' judge' if up_judge else ''}"
        )
    print(
        f"cases={len(CANARIES)} raised={raised} detected={detected} "
        f"judge_alone_raised={judge_raised} ({time.perf_counter() - started:.0f} s)"
    )
    engine.close()
    return 1 if raised else 0


if __name__ == "__main__":
    sys.exit(main())
