"""The browser meets a shared server: a login page, and a page that fetches nothing from other
hosts. Headless Debian Chromium through Playwright, against the real app (tests/test_browser.py
holds the chat itself)."""

from __future__ import annotations

import time
from contextlib import contextmanager

# pytestmark: the same marks as the chat's browser tests (skipped, with the reason, without Chromium)
from tests.test_browser import pytestmark, send, served_page, wait_for  # noqa: F401


@contextmanager
def tracker():
    """A server on loopback that counts every request: a stand-in for a remote host."""
    import http.server
    import threading

    hits = []

    class Count(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the standard library's name)
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Count)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()


def test_images_in_messages_are_links_and_nothing_is_fetched_from_another_host(
    settings, engine, tmp_path
):
    with tracker() as (remote, hits), served_page(settings, engine, tmp_path) as (page, app):
        requested = []
        page.on("request", lambda r: requested.append(r.url))
        send(page, f"Look ![cat]({remote}/md.png) and <img src='{remote}/tag.png'> please")
        wait_for(lambda: app.store.turns(1) and app.store.turns(1)[0].status != "generating")
        link = page.locator(f"#chatbot a[href='{remote}/md.png']")
        wait_for(lambda: link.count() == 1)
        assert page.locator("#chatbot img[src^='http://127.0.0.1']").count() == 0
        assert "<img src=" in page.locator("#chatbot").inner_text()  # shown as text
        time.sleep(1)
        assert hits == []
        assert [u for u in requested if u.startswith(remote)] == []


def test_with_accounts_the_page_asks_for_a_login_and_shows_only_your_conversations(
    settings, engine, tmp_path
):
    from assistant.chat import ChatService
    from store.accounts import AccountStore
    from store.conversations import ConversationStore
    from store.db import open_database

    engine_db = open_database(settings.effective_database_url)
    accounts = AccountStore(engine_db)
    accounts.add("ana", "correct horse battery", "user")
    bob = accounts.add("bob", "correct horse battery", "user")
    other = ChatService(ConversationStore(engine_db), engine, settings)
    for _ in other.send(None, "Bob's private question about turnips", account=bob):
        pass
    with served_page(settings, engine, tmp_path) as (page, app):
        page.wait_for_url("**/login")
        page.fill("#username", "ana")
        page.fill("#password", "wrong password")
        page.click("button[type=submit]")
        assert "Wrong user name or password" in page.content()
        page.fill("#username", "ana")
        page.fill("#password", "correct horse battery")
        page.click("button[type=submit]")
        page.locator("#message textarea").wait_for(timeout=30_000)
        send(page, "Hello from Ana")
        wait_for(lambda: "Hello from Ana" in page.locator("#conversations").inner_text())
        assert "turnips" not in page.locator("#conversations").inner_text()
        ana = accounts.account("ana")
        assert [c.title for c in app.chat.conversations(ana)] == ["Hello from Ana"]
