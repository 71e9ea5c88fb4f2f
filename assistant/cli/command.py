"""The contract every subcommand keeps, after TRL's CLI: a name, its help, the arguments it adds,
the settings it uses and `run(args, settings) -> exit code`. The table of commands is
assistant/cli/__init__.py's; turning errors into exit codes happens there too, once, not in each
command; a command only names which errors are its user's to fix."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field

from assistant.settings import Settings, add_flags


def no_arguments(parser: argparse.ArgumentParser) -> None:
    return None


def settings_flags(parser: argparse.ArgumentParser, uses: tuple[str, ...] | None) -> None:
    """The settings' flags once more, on an action of a command that has actions
    (`knowledge add DIR --home H`). Their default is "absent", not None: argparse copies an
    action's values over those given before it (`knowledge --home H add DIR`), and None would
    erase them."""
    add_flags(parser, uses, default=argparse.SUPPRESS)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[argparse.Namespace, Settings], int]
    arguments: Callable[[argparse.ArgumentParser], None] = field(default=no_arguments)
    # What this command's user can act on, besides what every command reports (a model that
    # cannot load, a busy refresh, a file that cannot be read or written): shown as one line.
    # Anything else is a bug and keeps its traceback.
    errors: tuple[type[BaseException], ...] = ()
    # The settings it uses, whose flags it takes: groups of assistant/settings.py's
    # SETTING_GROUPS or single settings; None: every setting. The others still apply through
    # their AUTODIDACT_* variables.
    uses: tuple[str, ...] | None = None
