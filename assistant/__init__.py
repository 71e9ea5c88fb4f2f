"""The chat assistant: settings, model engine, chat service, web UI and CLI."""
