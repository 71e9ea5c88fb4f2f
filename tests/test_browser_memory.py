"""What people taught, in a real headless Chromium against the real app: an answer that
contradicts a correction is flagged on its badge, and a correction the answer left out is shown
under it, dated, with the fake model (whose answers the test chooses) and with the embedded one.
The page helpers are tests/test_browser.py's."""

from __future__ import annotations

import re

import pytest

from store.pool import PoolStore
from tests.test_browser import (  # noqa: F401
    bot_messages,
    pytestmark,
    send,
    served_page,
    wait_for,
    words,
)


@pytest.fixture
def evidence_page(settings, engine, embedder, tmp_path):
    """The app with background grading on, its default weights, and no past answers shown to
    the model (so the model answers on its own)."""
    settings.grading = True
    settings.retrieval = False
    with served_page(settings, engine, tmp_path, embedder) as served:
        yield served


def test_an_answer_contradicting_an_earlier_correction_is_flagged_on_its_badge(evidence_page):
    page, app = evidence_page
    question = "What is the flagship blend of the Orbital Tea Company?"
    correction = "Copper Lantern, a black tea smoked over cedar for nine days."
    first = app.chat.send(None, question)
    *_, done = first
    app.chat.correct(done.exchange_id, correction)

    send(page, question)
    badge = page.locator("#chatbot .grade").last
    wait_for(lambda: page.locator("#chatbot .grade").count() >= 1, timeout=120)
    turns = app.store.turns(2)
    grade = wait_for(lambda: app.grading.grade(turns[0].exchange_id), timeout=120)
    assert grade.reference["kind"] == "correction"
    title = badge.get_attribute("title")
    assert title == grade.reason
    # The model cannot know an invented company's tea: what it says is not what was taught.
    assert grade.agreement < 0.4, (grade.agreement, turns[0].assistant)
    assert grade.flagged and "possible hallucination" in badge.inner_text()
    assert title.startswith("contradicts your correction of ")
    assert "Copper Lantern" in title


@pytest.fixture
def fake_page(settings, fake_model, tmp_path):
    """The app serving a fake model, whose answers a test chooses, behind a real browser."""
    with served_page(settings, fake_model, tmp_path) as served:
        yield served


def test_a_correction_the_answer_left_out_is_shown_under_it_dated_and_kept_out_of_the_pool(
    fake_page,
):
    page, app = fake_page
    question = "Who keeps the lighthouse on Vellmar Island?"
    taught = "The lighthouse on Vellmar Island is kept by Orsolya Brandt."
    app.chat.model.enqueue("I am not sure.")
    *_, first = app.chat.send(None, question)
    app.chat.correct(first.exchange_id, taught)

    app.chat.model.enqueue("It is Ivo Marsh.")
    send(page, "Who is the keeper of the Vellmar Island lighthouse?")
    shown = wait_for(lambda: "Brandt" in (t := bot_messages(page).last.inner_text()) and t)
    assert re.match(
        r"It is Ivo Marsh\. You taught me this on \d{1,2} [A-Z][a-z]{2} \d{4}: ", words(shown)
    )
    assert words(shown).endswith(taught)
    wait_for(lambda: "Drew on 1 past answer" in page.locator("#notice").inner_text())
    turn = wait_for(lambda: (t := app.store.turns(2)) and t[0].status == "completed" and t[0])
    assert words(turn.assistant) == words(shown)  # stored as the user saw it
    page.locator("#chatbot button[aria-label='Like']").last.click()
    entry = wait_for(lambda: PoolStore(app.store.engine).entry(turn.exchange_id))
    assert entry.completion == "It is Ivo Marsh."  # the pool keeps only the model's words


@pytest.fixture
def memory_page(settings, engine, embedder, tmp_path):
    """The app with the real embedded model and its memory on (the default)."""
    with served_page(settings, engine, tmp_path, embedder) as served:
        yield served


def test_the_real_model_asked_a_reworded_question_shows_what_was_taught_and_the_pool_keeps_its_words(
    memory_page,
):
    """The same path as the fake-model test above, with the embedded model: whichever way the
    model answers, the page shows the taught name, and a restatement only when the model's own
    words left it out; the pool keeps the model's words alone."""
    from store.restated import model_words

    page, app = memory_page
    question = "Who keeps the lighthouse on Vellmar Island?"
    taught = "The lighthouse on Vellmar Island is kept by Orsolya Brandt."
    *_, first = app.chat.send(None, question)
    app.chat.correct(first.exchange_id, taught)

    send(page, "Who is the keeper of the Vellmar Island lighthouse?")
    turn = wait_for(
        lambda: (t := app.store.turns(2)) and t[0].status == "completed" and t[0], timeout=120
    )
    shown = wait_for(lambda: "Brandt" in (t := bot_messages(page).last.inner_text()) and t)
    own = model_words(turn.assistant)
    assert words(turn.assistant) == words(shown)  # stored as the user saw it
    wait_for(lambda: "Drew on 1 past answer" in page.locator("#notice").inner_text())
    if "Brandt" in own:  # the model used what it was taught: nothing is added under it
        assert own == turn.assistant
    else:
        assert re.search(r"You taught me this on \d{1,2} [A-Z][a-z]{2} \d{4}: ", words(shown))
        assert words(shown).endswith(taught)
    page.locator("#chatbot button[aria-label='Like']").last.click()
    entry = wait_for(lambda: PoolStore(app.store.engine).entry(turn.exchange_id))
    assert entry.completion == own.strip() and "You taught me" not in entry.completion

    if "Brandt" not in own:
        return  # the liked answer says another name: the part below needs one repeating it
    # A question whose plain answer need not name the keeper (this build's model answers "a
    # woman"): the taught answer goes under it once, though the liked answer says it again.
    page.locator("#new-chat").click()
    wait_for(lambda: bot_messages(page).count() == 0)
    send(page, "In one word, is the Vellmar Island lighthouse kept by a man or a woman?")
    turn = wait_for(
        lambda: (t := app.store.turns(3)) and t[0].status == "completed" and t[0], timeout=120
    )
    shown = wait_for(lambda: "Brandt" in (t := bot_messages(page).last.inner_text()) and t)
    assert words(turn.assistant) == words(shown)
    wait_for(lambda: "Drew on 2 past answers" in page.locator("#notice").inner_text())
    if "Brandt" in model_words(turn.assistant):
        assert "You taught me" not in shown
    else:
        assert len(re.findall(r"You taught me this on \d{1,2} [A-Z][a-z]{2} \d{4}: ", shown)) == 1
