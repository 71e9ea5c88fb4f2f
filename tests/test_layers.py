"""The layering stays true: every import in the product code (module level and inside
functions) points down, each heavy dependency is imported by its one module, and the CLI's
commands that do not serve the page never load Gradio.

Layers, bottom to top: the model boundary (assistant.llm), the config helpers every layer
uses (assistant.options) and the store; the feedback stages
(grading, then pool, then synthesis, then refresh); the chat service, settings and wiring; the web UI and CLI.
"""

from __future__ import annotations

import ast
import importlib.util
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
    "assistant.options": (),  # the config helpers every layer uses: imports nothing of ours
    "feedback.grading": ("assistant.llm", "assistant.options", "store", "feedback.grading"),
    "feedback.pool": ("assistant.llm", "assistant.options", "store", "feedback.pool"),
    "feedback.synthesis": ("assistant.llm", "assistant.options", "store", "feedback.grading", "feedback.pool", "feedback.synthesis"),
    "feedback.refresh": ("assistant.llm", "assistant.options", "store", "feedback"),
    "feedback.dashboard": ("store", "feedback.pool"),
    "feedback.knowledge": ("assistant.llm", "assistant.options", "store", "feedback.knowledge"),
    "assistant.access": ("assistant.options",),
    "assistant.limits": (),
    "assistant.settings": ("feedback", "assistant.access", "assistant.options", "assistant.llm.base"),
    "assistant.prompt": ("assistant.llm", "assistant.settings", "store", "feedback"),
    "assistant.answers": ("assistant.prompt", "store"),
    "assistant.chat": ("assistant.llm", "assistant.settings", "assistant.prompt", "assistant.limits", "assistant.answers", "store", "feedback"),
    "assistant.wiring": ("assistant.llm", "assistant.settings", "assistant.chat", "assistant.prompt", "store", "feedback"),
    "assistant.web": ("assistant.llm", "assistant.settings", "assistant.access", "assistant.limits", "assistant.chat", "assistant.prompt", "assistant.wiring", "assistant.web", "store", "feedback"),
    "assistant.cli": ("assistant", "store", "feedback"),
}  # fmt: skip

# Each heavy dependency has one home (the prefixes of the modules allowed to import it).
OWNERS = {
    "llama_cpp": ("assistant.llm.llama",),
    "openai": ("assistant.llm.openai_compat",),
    "onnxruntime": ("assistant.llm.embedder",),
    "chromadb": ("store.vectors",),
    "bm25s": ("feedback.pool.keywords",),
    "torch": ("feedback.refresh.train",),
    "transformers": ("feedback.refresh.train",),
    "trl": ("feedback.refresh.train",),
    "peft": ("feedback.refresh.train",),
    "gguf": ("feedback.refresh.gguf_export",),
    "gradio": ("assistant.web",),
    "uvicorn": ("assistant.web.app",),
    "argon2": ("store.accounts",),
    "pypdf": ("feedback.knowledge.parse",),
    "inscriptis": ("feedback.knowledge.parse",),
    "docx": ("feedback.knowledge.parse",),
    "charset_normalizer": ("feedback.knowledge.parse",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(source: str, module: str) -> set[str]:
    """Every module `source` (the text of `module`) imports, anywhere in it: functions
    included, relative imports resolved, and `importlib.import_module("...")` /
    `__import__("...")` calls with a literal name."""
    package = module if module.count(".") == 0 else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = importlib.util.resolve_name("." * node.level + base, package)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Call) and _dynamic_import(node):
            found.add(node.args[0].value)
    return found


def _dynamic_import(call: ast.Call) -> bool:
    name = getattr(call.func, "attr", None) or getattr(call.func, "id", None)
    literal = call.args and isinstance(call.args[0], ast.Constant)
    return name in ("import_module", "__import__") and bool(literal)


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


ROOTS = ("assistant", "feedback")  # their entries cover the package docstrings alone


def part_of(module: str) -> str | None:
    """The entry of ALLOWED a module falls under (the longest matching prefix); a module
    directly in a package root that is not listed belongs to none, so it must be placed."""
    if module in ALLOWED:
        return module
    found = [p for p in ALLOWED if p not in ROOTS and within(module, [p])]
    return max(found, key=len) if found else None


def violations(module: str, source: str) -> list[str]:
    part = part_of(module)
    if part is None:
        return [f"{module} belongs to no layer: add it to ALLOWED"]
    own = [] if part in ROOTS else [part]
    out = []
    for name in sorted(imports(source, module)):
        top = name.split(".")[0]
        if top in PACKAGES and not within(name, [*ALLOWED[part], *own]):
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
    assert [m for p in product_modules() if part_of(m := module_name(p)) is None] == []


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
        ("feedback.grading.judge", "from ..pool.curator import Curator"),
        ("feedback.pool.curator", "from ..refresh.rules import build_mix"),
        ("store.pool", "import importlib\nimportlib.import_module('feedback.pool.rules')"),
        ("assistant.something_new", "from assistant.web.page import build_page"),
        ("feedback.something_new", "from feedback.refresh.pipeline import Refresher"),
        ("feedback", "from feedback.grading import grader"),
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
