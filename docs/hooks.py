"""MkDocs hook: fills the reference pages from the code as the site is built.

A page that holds `{{ settings }}`, `{{ commands }}` or `{{ routes }}` gets the table that
assistant/cli/reference.py writes from `Settings`, the command table or the door's open routes,
so the reference is never written twice. The build fails (the site is built strictly) when
`undocumented()` names anything without its explanation.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assistant.cli import reference  # noqa: E402

TABLES = {
    "{{ settings }}": reference.settings_markdown,
    "{{ commands }}": reference.commands_markdown,
    "{{ routes }}": reference.routes_markdown,
}


def on_pre_build(config, **kwargs) -> None:
    missing = reference.undocumented()
    if missing:
        raise SystemExit(f"undocumented (give each its help text): {', '.join(missing)}")


def on_page_markdown(markdown: str, page, config, files, **kwargs) -> str:
    for marker, table in TABLES.items():
        if marker in markdown:
            markdown = markdown.replace(marker, table())
    return markdown
