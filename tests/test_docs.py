"""The docs cannot go stale: the reference pages are written from the code, the site builds
strictly (a broken link or a page left out of the navigation fails), anything without its
explanation fails the build, and the README stays a front door."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings

from assistant.cli import COMMANDS
from assistant.cli.command import Command
from assistant.cli.reference import undocumented
from assistant.settings import Settings
from assistant.web.door import OPEN
from tests.conftest import ROOT

MKDOCS = [sys.executable, "-m", "mkdocs", "build", "--strict"]


def build(root: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*MKDOCS, "-f", str(root / "mkdocs.yml"), "-d", str(site)],
        capture_output=True,
        text=True,
        cwd=root,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = build(ROOT, out)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_every_setting_command_argument_and_route_is_explained():
    assert undocumented() == []


def test_the_check_names_a_setting_command_or_route_left_unexplained():
    class More(BaseSettings):
        explained: int = Field(1, description="a setting with its help text")
        forgotten: int = 2

    bare = Command("bare", "", run=lambda args, settings: 0)
    missing = undocumented(More, [*COMMANDS, bare], [*OPEN, ("GET", "/new", "")])
    assert missing == ["setting forgotten", "command bare", "route GET /new"]


def test_the_reference_pages_hold_every_setting_command_and_route(site):
    settings = (site / "settings" / "index.html").read_text()
    for name in Settings.model_fields:
        assert f"AUTODIDACT_{name.upper()}" in settings, name
    commands = (site / "commands" / "index.html").read_text()
    for command in COMMANDS:
        assert f"autodidact {command.name}" in commands, command.name
    routes = (site / "routes" / "index.html").read_text()
    for _, _, purpose in OPEN:
        assert purpose.split("(")[0].strip()[:30] in routes.replace("&#39;", "'"), purpose


def test_a_broken_link_or_a_page_left_out_fails_the_build(tmp_path):
    copy = tmp_path / "repo"
    for part in ("docs", "assistant", "feedback", "store"):
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    (copy / "docs" / "api.md").write_text("# API\n\nSee [the settings](setings.md).\n")
    broken = build(copy, tmp_path / "site")
    assert broken.returncode != 0 and "setings.md" in broken.stdout + broken.stderr
    (copy / "docs" / "api.md").write_text("# API\n")
    (copy / "docs" / "orphan.md").write_text("# Not in the navigation\n")
    orphan = build(copy, tmp_path / "site")
    assert orphan.returncode != 0 and "orphan.md" in orphan.stdout + orphan.stderr


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert "make run" in readme and "make test" in readme
    for link in ("docs/settings.md", "docs/benchmarks.md", "docs/sharing.md"):
        assert f"({link})" in readme and (ROOT / link).exists()
