"""`autodidact serve`: the web app. The only command that imports Gradio, and only when run."""

from __future__ import annotations

from assistant.access import Unguarded
from assistant.cli.command import Command


def serve(args, settings) -> int:
    from assistant.web.app import serve as start

    return start(settings, args.given)


# The app uses every setting, so it takes every setting's flag (uses=None).
COMMANDS = [Command("serve", "start the chat web app", serve, errors=(Unguarded,), uses=None)]
