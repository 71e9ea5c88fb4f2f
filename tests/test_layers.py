"""The layering stays true: every import in the product code (module level and inside
functions) points down, each heavy dependency is imported by its one module, and the CLI's
commands that do not serve the page never load Gradio.

Layers, bottom to top: the model boundary (assistant.llm) and the store; the feedback stages
(grading, then pool, then refresh); the chat service, settings and wiring; the web UI and CLI.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("assistant", "feedback", "store")

# What each part may import from the project (a prefix matches the package and its modules).
ALLOWED = {
    "assistant": (),  # the package docstrings: nothing
    "feedback": (),
    "assistant.llm": ("assistant.llm",),
    "store": ("store",),
    "feedback.config": (),
    "feedback.grading": ("assistant.llm", "store", "feedback.config", "feedback.grading"),
    "feedback.pool": ("assistant.llm", "store", "feedback.config", "feedback.pool"),
    "feedback.refresh": ("assistant.llm", "store", "feedback"),
    "feedback.dashboard": ("store", "feedback.pool"),
    "assistant.settings": ("feedback",),
    "assistant.chat": ("assistant.llm", "assistant.settings", "store", "feedback"),
    "assistant.wiring": ("assistant.llm", "assistant.settings", "assistant.chat", "store", "feedback"),
    "assistant.web": ("assistant.llm", "assistant.settings", "assistant.chat", "assistant.wiring", "assistant.web", "store", "feedback"),
    "assistant.cli": ("assistant", "store", "feedback"),
}  # fmt: skip

# Each heavy dependency has one home (the prefixes of the modules allowed to import it).
OWNERS = {
    "llama_cpp": ("assistant.llm.llama",),
    "openai": ("assistant.llm.openai_compat",),
    "onnxruntime": ("assistant.llm.embedder",),
    "chromadb": ("store.vectors",),
    "torch": ("feedback.refresh.train",),
    "transformers": ("feedback.refresh.train",),
    "trl": ("feedback.refresh.train",),
    "peft": ("feedback.refresh.train",),
    "gguf": ("feedback.refresh.gguf_export",),
    "gradio": ("assistant.web",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str) -> set[str]:
    """Every module `source` imports, anywhere in it (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def part_of(module: str) -> str:
    """The entry of ALLOWED a module falls under (the longest matching prefix)."""
    return max((p for p in ALLOWED if within(module, [p])), key=len)


def violations(module: str, source: str) -> list[str]:
    out = []
    allowed = ALLOWED[part_of(module)]
    for name in sorted(imports(source)):
        top = name.split(".")[0]
        if top in PACKAGES and not within(name, allowed) and not within(name, [part_of(module)]):
            out.append(f"{module} imports {name}")
        if top in OWNERS and not within(module, OWNERS[top]):
            out.append(f"{module} imports {top}, which belongs to {OWNERS[top][0]}")
    return out


def product_modules() -> list[Path]:
    skip = ROOT / "store" / "migrations"
    return [
        p
        for package in PACKAGES
        for p in sorted((ROOT / package).rglob("*.py"))
        if skip not in p.parents
    ]


def test_no_module_imports_upward_or_borrows_another_modules_heavy_dependency():
    found = [v for p in product_modules() for v in violations(module_name(p), p.read_text())]
    assert found == []


def test_every_product_module_belongs_to_a_layer():
    assert all(part_of(module_name(p)) for p in product_modules())


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("store.pool", "from feedback.pool.rules import verdict"),
        ("store.dashboard", "def f():\n    from feedback.pool.diversity import distinct_n"),
        ("assistant.llm.base", "import assistant.settings"),
        ("feedback.grading.judge", "from feedback.pool.curator import Curator"),
        ("feedback.pool.curator", "from feedback.refresh import rules"),
        ("feedback.refresh.rules", "from assistant.chat import ChatService"),
        ("assistant.chat", "from assistant.web.page import build_page"),
        ("assistant.wiring", "import gradio as gr"),
        ("feedback.refresh.pipeline", "def f():\n    import torch"),
        ("assistant.web.page", "from assistant.cli import main"),
    ],
)
def test_the_check_catches_an_upward_or_misplaced_import(module, source):
    assert violations(module, source)


def test_commands_that_do_not_serve_the_page_never_import_gradio(home):
    probe = (
        "import sys\n"
        "from assistant.cli import main\n"
        "assert main(['history']) == 0\n"
        "assert main(['adapters']) == 0\n"
        "assert main(['pool']) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('gradio', 'torch'))\n"
        "print(loaded)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
