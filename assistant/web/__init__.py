"""The web app: the Gradio page (one module per tab), its stable HTTP API, and `serve`.

Owns layout, event wiring and rendering only; every decision belongs to the chat service and the
stages under it, assembled by assistant/wiring.py. The only package that imports Gradio.
"""
