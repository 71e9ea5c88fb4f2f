"""The chat page in a real headless Chromium, driven by Playwright, against the real app."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from store.tables import Rating

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian chromium is not installed (make test installs it)"
    ),
]


@pytest.fixture
def page(running_app, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(running_app.url)
        yield page
        page.screenshot(path=str(tmp_path / "last.png"))
        browser.close()


def wait_for(predicate, timeout=60.0, every=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def send(page, text):
    box = page.locator("#message textarea")
    box.fill(text)
    box.press("Enter")


def bot_messages(page):
    return page.locator("#chatbot .message.bot")


def words(text):
    return " ".join(text.split())


def test_chat_streams_an_answer_and_thumbs_up_is_stored(page, running_app):
    store = running_app.store
    send(page, "Tell me a short story about a cat.")
    bot_messages(page).first.wait_for(timeout=30_000)
    seen = set()
    while not ((t := store.turns(1)) and t[0].status != "generating"):
        seen.add(words(bot_messages(page).first.inner_text()))
        time.sleep(0.02)
    [turn] = store.turns(1)
    assert turn.status == "completed"
    answer = words(turn.assistant)
    wait_for(lambda: words(bot_messages(page).first.inner_text()) == answer)
    # Streaming: the page showed a growing prefix of the answer before it was finished.
    partial = [t for t in seen if t and t != answer and answer.startswith(t)]
    assert partial, f"no partial answer seen; saw {sorted(seen)[:5]}"
    assert page.locator("#message textarea").input_value() == ""
    wait_for(
        lambda: "Tell me a short story about a cat." in page.locator("#conversations").inner_text()
    )

    page.locator("#chatbot button[aria-label='Like']").last.click()
    wait_for(lambda: store.count(Rating) == 1)
    assert store.current_rating(turn.exchange_id) == 1
    page.locator("#chatbot button[aria-label='Dislike']").last.click()
    wait_for(lambda: store.count(Rating) == 2)
    assert store.current_rating(turn.exchange_id) == -1


def test_empty_message_is_refused_with_a_visible_notice(page, running_app):
    send(page, "   ")
    wait_for(lambda: "empty message" in page.locator("#notice").inner_text())
    assert running_app.store.turns(1) == []


def test_stop_regenerate_and_manage_conversations(page, running_app):
    store = running_app.store
    running_app.settings.max_tokens = 400
    running_app.settings.temperature = 0.8
    send(page, "Write a long essay about the history of the sea.")
    wait_for(
        lambda: store.turns(1) and len((bot_messages(page).first.inner_text() or "").split()) > 5
    )
    page.locator("#stop").click()
    turn = wait_for(lambda: (t := store.turns(1)) and t[0].status != "generating" and t[0])
    assert turn.status == "stopped"
    assert store.exchange(turn.exchange_id).completion_tokens < 400
    wait_for(lambda: "Generation stopped" in page.locator("#notice").inner_text())

    running_app.settings.max_tokens = 24
    page.locator("#regenerate").click()
    new = wait_for(
        lambda: (
            (t := store.turns(1))
            and t[0].exchange_id != turn.exchange_id
            and t[0].status == "completed"
            and t[0]
        )
    )
    assert store.exchange(new.exchange_id).regenerated_from_id == turn.exchange_id
    wait_for(lambda: words(bot_messages(page).first.inner_text()) == words(new.assistant))

    page.locator("#new-chat").click()
    wait_for(lambda: bot_messages(page).count() == 0)
    send(page, "Hello there")
    wait_for(
        lambda: (
            len(store.conversations(store.user("local").id)) == 2
            and store.turns(2)
            and store.turns(2)[0].status == "completed"
        )
    )
    # The page's last update for that answer re-renders the list with the new conversation
    # selected; a click before it lands would be undone by it.
    hello = store.turns(2)[0]
    wait_for(lambda: words(bot_messages(page).first.inner_text()) == words(hello.assistant))
    selected = page.locator("#conversations label", has_text="Hello there").locator("input")
    wait_for(lambda: selected.count() and selected.is_checked())
    page.locator("#conversations label", has_text="Write a long essay").click()
    wait_for(lambda: words(bot_messages(page).first.inner_text()) == words(new.assistant))

    page.locator("#title textarea, #title input").first.fill("Sea essay")
    page.locator("#rename").click()
    wait_for(lambda: store.conversation(1).title == "Sea essay")
    wait_for(lambda: "Sea essay" in page.locator("#conversations").inner_text())

    page.locator("#delete").click()
    page.locator("#confirm-delete").click()
    wait_for(lambda: [c.id for c in store.conversations(store.user("local").id)] == [2])
    wait_for(lambda: "Sea essay" not in page.locator("#conversations").inner_text())
    assert store.turns(1) == []


def test_reopening_a_conversation_shows_its_answers_and_thumbs(page, running_app):
    chat = running_app.chat
    first = list(chat.send(None, "Say hello."))[-1]
    chat.rate(first.exchange_id, 1)
    list(chat.send(None, "Another chat."))
    page.reload()
    page.locator("#conversations label", has_text="Say hello.").click()
    wait_for(lambda: words(bot_messages(page).first.inner_text()) == words(first.text))
    liked = page.locator("#chatbot button[aria-label='Liked']")
    wait_for(lambda: liked.count() == 1)
    liked.click()  # clicking a given thumb again takes the rating back
    wait_for(lambda: running_app.store.current_rating(first.exchange_id) == 0)


@pytest.fixture
def grading_page(settings, engine, tmp_path):
    """The app with background grading on and every answer flagged: with the (always negative)
    mean log-probability weighed in, no score reaches the threshold of 1."""
    settings.grading = True
    settings.flag_threshold = 1.0
    settings.grade_weights = {"judge": 1.0, "mean_logprob": 1.0}
    with served_page(settings, engine, tmp_path) as served:
        yield served


@contextmanager
def served_page(settings, engine, tmp_path, embedder=None):
    """The app on a free port with these settings, and a Chromium page on it."""
    from playwright.sync_api import sync_playwright

    from assistant.web.app import create_app, launch
    from tests.conftest import free_port

    settings.port = free_port()
    app = create_app(settings, model=engine, embedder=embedder)
    launch(app, block=False)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                ],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{settings.port}/")
            yield page, app
            page.screenshot(path=str(tmp_path / "last.png"))
            browser.close()
    finally:
        app.close()


def test_grade_badge_appears_and_a_reviewer_decides_on_the_flag(grading_page):
    from store.tables import Review

    page, app = grading_page
    send(page, "What is the capital of France?")
    badge = page.locator("#chatbot .grade.flagged")
    badge.wait_for(timeout=60_000)
    assert "possible hallucination" in badge.inner_text()
    [turn] = app.store.turns(1)
    grade = app.grading.grade(turn.exchange_id)
    assert badge.get_attribute("title") == grade.reason
    assert f"self-grade {grade.judge_score}/10" in badge.inner_text()
    # The grade reached the training pool through the app's own wiring (worker -> curator).
    entry = wait_for(lambda: app.curator.pool.entry(turn.exchange_id))
    assert (entry.status, entry.source) == ("flagged", "model_only")

    page.get_by_role("tab", name="Review").click()
    table = page.locator("#flagged")
    wait_for(lambda: "What is the capital of France?" in table.inner_text())
    table.locator("[data-testid=cell-0-2]").click()
    wait_for(lambda: f"Exchange {turn.exchange_id}" in page.locator("#review-detail").inner_text())
    page.locator("#correction textarea").fill("Paris is the capital of France.")
    page.locator("#review-correct").click()
    wait_for(lambda: app.store.count(Review) == 1)
    [review] = app.grading.reviews(turn.exchange_id)
    assert (review.decision, review.correction, review.reviewer) == (
        "correct",
        "Paris is the capital of France.",
        "local",
    )
    page.locator("#review-dismiss").click()
    wait_for(lambda: app.store.count(Review) == 2)
    assert app.grading.reviews(turn.exchange_id)[-1].decision == "dismiss"
    wait_for(lambda: "dismiss" in table.inner_text())


def test_thumbs_down_reasons_correction_retrieval_dashboard_and_delete(page, running_app):
    from store.tables import Correction, PoolEntry

    app, store = running_app, running_app.store
    pool = app.curator.pool
    send(page, "What is the capital of France?")
    first = wait_for(lambda: (t := store.turns(1)) and t[0].status == "completed" and t[0])
    wait_for(lambda: words(bot_messages(page).first.inner_text()) == words(first.assistant))

    page.locator("#chatbot button[aria-label='Dislike']").last.click()
    panel = page.locator("#rating-panel")
    panel.wait_for(state="visible", timeout=10_000)
    page.locator("#rating-reasons label", has_text="wrong facts").click()
    page.locator("#rating-comment textarea, #rating-comment input").first.fill("Not Paris?")
    page.locator("#send-feedback").click()
    wait_for(lambda: (r := store.rating(first.exchange_id)) and r.reasons == ["wrong facts"])
    rating = store.rating(first.exchange_id)
    assert (rating.value, rating.comment) == (-1, "Not Paris?")
    assert pool.entry(first.exchange_id).status == "flagged"

    page.locator("#write-better").click()
    editor = page.locator("#better-answer textarea")
    editor.wait_for(state="visible", timeout=10_000)
    wait_for(lambda: editor.input_value() == first.assistant)
    editor.fill("The capital of France is Paris.")
    page.locator("#save-correction").click()
    wait_for(lambda: store.count(Correction) == 1)
    wait_for(lambda: pool.entry(first.exchange_id).status == "train")  # curated right after
    assert store.correction(first.exchange_id).content == "The capital of France is Paris."
    assert store.answer(first.exchange_id) == first.assistant  # the original is kept
    e = pool.entry(first.exchange_id)
    assert (e.status, e.source, e.completion) == (
        "train",
        "human_written",
        "The capital of France is Paris.",
    )
    wait_for(lambda: "stored beside the original" in page.locator("#rating-status").inner_text())

    # Retrieval: a new conversation with a similar question gets the correction as an example.
    page.locator("#new-chat").click()
    wait_for(lambda: bot_messages(page).count() == 0)
    send(page, "What's the capital city of France?")
    second = wait_for(lambda: (t := store.turns(2)) and t[0].status == "completed" and t[0])
    assert store.exchange(second.exchange_id).retrieved == [first.exchange_id]
    wait_for(lambda: "Drew on 1 past answer" in page.locator("#notice").inner_text())
    assert f"#{first.exchange_id}" in page.locator("#notice").inner_text()

    page.get_by_role("tab", name="Dashboard").click()
    summary = page.locator("#dashboard-summary")
    wait_for(lambda: "2 exchanges" in summary.inner_text())
    assert "1 train" in summary.inner_text()
    wait_for(lambda: page.locator("#plot-pool canvas, #plot-pool svg").count() > 0)

    page.get_by_role("tab", name="Chat").click()
    page.locator("#conversations label", has_text="What is the capital of France?").click()
    wait_for(lambda: words(bot_messages(page).first.inner_text()) == words(first.assistant))
    page.locator("#delete").click()
    page.locator("#confirm-delete").click()
    toast = page.locator(".toast-body, [data-testid=toast-body]")
    wait_for(lambda: "left the training pool" in " ".join(toast.all_inner_texts()))
    assert "1 exchange(s) left the training pool (1 were training examples)" in " ".join(
        toast.all_inner_texts()
    )
    assert pool.entry(first.exchange_id) is None and store.count(PoolEntry) == 0
    assert app.curator.index.ids() == set()


def test_models_tab_lists_adapters_and_switches_what_the_chat_serves(page, running_app, promoted):
    store = running_app.store
    page.get_by_role("tab", name="Models").click()
    active = page.locator("#active-adapter")
    wait_for(lambda: "adapter-b" in active.inner_text())
    runs = page.locator("#runs")
    wait_for(lambda: "adapter-b (active)" in runs.inner_text())
    assert "adapter-a" in runs.inner_text() and "1.0 / 2.1" in runs.inner_text()
    assert "0.6 / 0.6 / 0.7" in runs.inner_text()  # distinct-2: candidate / current / base
    wait_for(lambda: page.locator("#plot-runs canvas, #plot-runs svg").count() > 0)

    page.locator("#adapter-choice input").click()
    page.get_by_role("option", name="adapter-a").click()
    page.locator("#serve-adapter").click()
    wait_for(lambda: "Switched to adapter-a" in page.locator("#models-status").inner_text())
    assert promoted.active().adapter_id == "adapter-a"
    wait_for(lambda: "adapter-a (active)" in runs.inner_text())

    page.get_by_role("tab", name="Chat").click()
    send(page, "Say hello.")
    first = wait_for(lambda: (t := store.turns(1)) and t[0].status == "completed" and t[0])
    assert store.exchange(first.exchange_id).adapter_id == "adapter-a"

    page.get_by_role("tab", name="Models").click()
    page.locator("#serve-base").click()
    wait_for(lambda: "Switched to the base model" in page.locator("#models-status").inner_text())
    assert promoted.active() is None
    wait_for(lambda: "the base model (no adapter)" in active.inner_text())
    page.get_by_role("tab", name="Chat").click()
    send(page, "Say goodbye.")
    wait_for(lambda: (t := store.turns(1)) and len(t) == 2 and t[1].status == "completed")
    second = store.turns(1)[1]
    assert store.exchange(second.exchange_id).adapter_id is None


def test_a_refresh_started_in_the_models_tab_runs_beside_the_chat_and_says_how_it_ended(
    page, running_app
):
    """The refresh runs in its own process (here it refuses: the pool is empty) while the chat
    answers; the tab polls its progress and then shows the outcome with the reason."""
    page.get_by_role("tab", name="Models").click()
    page.locator("#refresh-now").click()
    progress = page.locator("#refresh-progress")
    wait_for(lambda: "by local" in progress.inner_text())
    page.get_by_role("tab", name="Chat").click()
    send(page, "Say hello.")
    wait_for(lambda: (t := running_app.store.turns(1)) and t[0].status == "completed")
    page.get_by_role("tab", name="Models").click()
    wait_for(lambda: "Refused" in progress.inner_text(), timeout=180)
    assert "nothing was trained" in progress.inner_text()
    assert "only 0 new training example(s)" in progress.locator("li").first.inner_text()
    wait_for(lambda: "refused" in page.locator("#runs").inner_text())


HANDBOOK = """Orbital Tea Company staff handbook.

The Orbital Tea Company was founded in 1987 by Marisol Quenby in the harbour town of Vellacourt.
Its flagship blend is called Copper Lantern and it is smoked over cedar for nine days.
"""


def test_a_document_uploaded_in_the_knowledge_tab_grounds_an_answer_until_it_is_removed(
    page, running_app, tmp_path
):
    doc = tmp_path / "handbook.md"
    doc.write_text(HANDBOOK)
    page.get_by_role("tab", name="Knowledge").click()
    page.locator("#knowledge-upload input[type=file]").set_input_files(str(doc))
    wait_for(lambda: "handbook.md: added" in page.locator("#knowledge-result").inner_text())
    wait_for(lambda: "handbook.md" in page.locator("#knowledge-list").inner_text())
    [document] = running_app.library.documents()

    page.get_by_role("tab", name="Chat").click()
    send(page, "Who founded the Orbital Tea Company?")
    sources = page.locator("#chatbot .message.bot details.sources").first
    sources.wait_for(timeout=60_000)
    assert "[1] handbook.md" in sources.locator("summary").first.inner_text()
    wait_for(
        lambda: running_app.store.turns(1) and running_app.store.turns(1)[0].status != "generating"
    )
    sources.locator("summary").first.click()
    passage = sources.locator("details.source").first
    passage.locator("summary").click()
    wait_for(lambda: "Marisol Quenby" in passage.inner_text())
    [turn] = running_app.store.turns(1)
    assert (
        running_app.chat.sources([turn.exchange_id])[turn.exchange_id][0].document == "handbook.md"
    )

    page.get_by_role("tab", name="Knowledge").click()
    page.locator("#knowledge-choice input").click()
    page.get_by_role("option", name=f"handbook.md (#{document.id})").click()
    page.locator("#knowledge-remove").click()
    wait_for(lambda: "Removed handbook.md" in page.locator("#knowledge-result").inner_text())
    assert running_app.library.documents() == []

    # The old answer no longer shows the source once the conversation is shown again, and a
    # new answer to the same question has none.
    page.get_by_role("tab", name="Chat").click()
    page.locator("#new-chat").click()
    wait_for(lambda: bot_messages(page).count() == 0)
    page.locator("#conversations label").first.click()
    wait_for(lambda: bot_messages(page).count() == 1)
    assert "Sources" not in bot_messages(page).first.inner_text()
    send(page, "Who founded the Orbital Tea Company?")
    wait_for(
        lambda: (
            len(running_app.store.turns(1)) == 2
            and running_app.store.turns(1)[1].status != "generating"
        )
    )
    time.sleep(0.5)
    assert page.locator("#chatbot details.sources").count() == 0
