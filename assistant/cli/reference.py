"""The reference pages, written from the code: settings, commands and routes as Markdown tables.

Owns turning `Settings` (its fields' defaults and help text, which the stages' config
dataclasses supply), the command table (assistant/cli/__init__.py, each command with its own
arguments and the settings' flags it takes) and the door's table of open routes
(assistant/web/door.py) into the tables docs/settings.md, docs/commands.md and docs/routes.md
show, and `undocumented`, which names anything that would show up without an
explanation. docs/hooks.py puts the tables into the pages when MkDocs builds the site, so there
is nothing to keep in step by hand. Not a command: nothing here runs when `autodidact` does.
"""

from __future__ import annotations

import argparse

from pydantic.fields import FieldInfo

from assistant.settings import Settings, setting_names


def cell(text: object) -> str:
    """A value as a table cell: pipes escaped, newlines as spaces.

    >>> cell("a|b\\nc")
    'a\\\\|b c'
    """
    return str(text).replace("|", "\\|").replace("\n", " ")


def default_text(field: FieldInfo) -> str:
    """How a default reads in the table.

    >>> from pydantic import Field
    >>> default_text(Field(None)), default_text(Field(0.2)), default_text(Field(default_factory=list))
    ('unset', '`0.2`', '`[]`')
    """
    if field.default_factory is not None:
        return f"`{field.default_factory()!r}`"
    if field.default is None:
        return "unset"
    value = field.default
    return f"`{value}`" if not isinstance(value, str) else f"`{value!r}`"


def settings_markdown(settings: type = Settings) -> str:
    rows = ["| setting | environment variable | default | what it is |", "|---|---|---|---|"]
    for name, field in settings.model_fields.items():
        env = f"AUTODIDACT_{name.upper()}"
        help = field.description or ""
        rows.append(
            f"| `--{name.replace('_', '-')}` | `{env}` | {default_text(field)} | {cell(help)} |"
        )
    return "\n".join(rows) + "\n"


SETTING_DESTS = set(Settings.model_fields)


def own_arguments(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments a parser adds itself: not help, not the settings' flags (`setting_flags`
    names those; the settings page explains them)."""
    return [
        a
        for a in parser._actions
        if not isinstance(a, argparse._HelpAction) and a.dest not in SETTING_DESTS
    ]


def command_parser(command) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"autodidact {command.name}", add_help=False)
    command.arguments(parser)
    return parser


def arguments_markdown(parser: argparse.ArgumentParser, title: str) -> list[str]:
    out, nested = [], []
    rows = []
    for action in own_arguments(parser):
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            nested += [
                (f"{title} {name}", sub, helps.get(name, ""))
                for name, sub in action.choices.items()
            ]
            continue
        name = (
            ", ".join(f"`{o}`" for o in action.option_strings)
            or f"`{action.metavar or action.dest}`"
        )
        default = (
            "" if action.default in (None, False, argparse.SUPPRESS, []) else f"`{action.default}`"
        )
        choices = f" (one of {', '.join(map(str, action.choices))})" if action.choices else ""
        rows.append(f"| {name} | {default} | {cell((action.help or '') + choices)} |")
    if rows:
        out += ["| argument | default | what it does |", "|---|---|---|", *rows, ""]
    for sub_title, sub, help in nested:
        out += [f"### `{sub_title}`", "", help or "", "", *arguments_markdown(sub, sub_title)]
    return out


def setting_flags(command) -> str:
    """The line under a command naming the settings' flags it takes.

    >>> from assistant.cli.command import Command
    >>> setting_flags(Command("x", "", run=None, uses=("home", "database_url")))
    'Setting flags: `--home`, `--database-url` (see [Settings](settings.md)).'
    """
    if command.uses is None:
        return "Setting flags: all of them (see [Settings](settings.md))."
    flags = ", ".join(f"`--{name.replace('_', '-')}`" for name in setting_names(command.uses))
    return f"Setting flags: {flags} (see [Settings](settings.md))."


def commands_markdown(commands=None) -> str:
    if commands is None:
        from assistant.cli import COMMANDS as commands
    out = []
    for command in commands:
        title = f"autodidact {command.name}"
        out += [f"## `{title}`", "", command.help, "", setting_flags(command), ""]
        out += arguments_markdown(command_parser(command), title)
    return "\n".join(out)


def unexplained(parser: argparse.ArgumentParser) -> list[str]:
    found = []
    for action in own_arguments(parser):
        if not action.help:
            found.append(action.dest)
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                found += [f"{name} {a}" for a in unexplained(sub)] + (
                    [] if helps.get(name) else [name]
                )
    return found


def routes_markdown(routes=None) -> str:
    if routes is None:
        from assistant.web.door import OPEN as routes
    rows = ["| method | path | what it is for |", "|---|---|---|"]
    for method, pattern, purpose in routes:
        rows.append(f"| {method} | `{cell(pattern)}` | {cell(purpose)} |")
    return "\n".join(rows) + "\n"


def undocumented(settings: type = Settings, commands=None, routes=None) -> list[str]:
    """Every setting, command, command argument or open route without its explanation.

    >>> from pydantic_settings import BaseSettings
    >>> class Two(BaseSettings):
    ...     a: int = 1
    >>> undocumented(Two, commands=[], routes=[("GET", "/x", "")])
    ['setting a', 'route GET /x']
    """
    if commands is None:
        from assistant.cli import COMMANDS as commands
    if routes is None:
        from assistant.web.door import OPEN as routes
    missing = [f"setting {n}" for n, f in settings.model_fields.items() if not f.description]
    for command in commands:
        if not command.help:
            missing.append(f"command {command.name}")
        missing += [f"argument {command.name} {a}" for a in unexplained(command_parser(command))]
    missing += [f"route {m} {p}" for m, p, purpose in routes if not purpose]
    return missing
