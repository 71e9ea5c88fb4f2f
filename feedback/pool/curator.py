"""The curator: keeps the training pool in step with everything said about each exchange.

Owns the path from an exchange to its pool entry: gather the facts (store/pool.py), apply the
rules (feedback/pool/rules.py), mask personal data (feedback/pool/pii.py), and for an exchange that may
be trained on, find near-duplicates and enforce each user's share against the vector index
(store/vectors.py) before it joins. It also serves retrieval: the past `train` exchanges most
like a new question, a user's own and, from other users, only human-approved ones (`shown_to`),
PII-masked. It is called after every rating, correction, review and grade, and by
`autodidact pool --rebuild`; the SQL rows are the record and the index follows them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from feedback.pool.config import CuratorConfig, RetrievalConfig  # noqa: F401 (still importable here)
from feedback.pool.english import ENGLISH, load_english
from feedback.pool.keywords import KeywordIndex
from feedback.pool.memory import Thresholds, fuse, names, names_agree, names_subject
from feedback.pool.pii import mask
from feedback.pool.rules import SOURCE_RANK, Evidence, Verdict, share_allows, verdict
from store.base import chunks
from store.pool import Facts, PoolStore, aware
from store.restated import model_words
from store.tables import PoolEntry
from store.vectors import VectorIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    """A past exchange shown to the model as an example for a new question."""

    exchange_id: int
    conversation_id: int
    prompt: str
    completion: str
    similarity: float
    shared: bool = False  # another user's exchange (human-approved, masked again on the way out)
    taught: bool = False  # a person wrote or approved the answer (a correction, a thumbs up)
    taught_at: datetime | None = None  # the newest correction, else the exchange
    matched: str = "meaning"  # which search found it: meaning, words or both


# Human-approved: a person vouched for the answer. `human_written` is a correction (by its user
# or a reviewer), `human_approved` a thumbs up from its user; an entry is `train` with either
# only while that still stands (a later thumbs down or a confirmed hallucination takes it out).
# A reviewer's dismissal of a flag on a model-only answer is not among them: it clears a doubt,
# it does not vouch for the answer.
HUMAN_SOURCES = ("human_written", "human_approved")


def shown_to(owner: int, source: str, user_id: int | None, share_approved: bool) -> bool:
    """May a `train` entry of user `owner`, of this provenance, be an example for `user_id`?
    Always their own; another user's only when human-approved and sharing is on. No `user_id`:
    every entry (one user, or a caller that does not say whose prompt it is).

    >>> shown_to(1, "model_only", 1, True), shown_to(2, "model_only", 1, True)
    (True, False)
    >>> shown_to(2, "human_approved", 1, True), shown_to(2, "human_written", 1, True)
    (True, True)
    >>> shown_to(2, "human_written", 1, False), shown_to(1, "model_only", 1, False)
    (False, True)
    >>> shown_to(2, "model_only", None, False)
    True
    """
    if user_id is None or owner == user_id:
        return True
    return share_approved and source in HUMAN_SOURCES


def evidence(f: Facts) -> Evidence:
    g = f.grade
    e = f.exchange
    return Evidence(
        rating=f.rating.value if f.rating else 0,
        reasons=tuple(f.rating.reasons) if f.rating and f.rating.value < 0 else (),
        corrected=f.correction is not None,
        review=f.review.decision if f.review else None,
        complete=e.status == "completed" and e.finish_reason != "length",
        grade=g.score if g else None,
        grade_flagged=bool(g and g.flagged),
        judge=g.judge_score if g else None,
        consistency=g.consistency if g else None,
        grounding=g.grounding if g else None,
    )


def is_correction(entry: PoolEntry) -> bool:
    return entry.source == "human_written"


def outranks(new: PoolEntry, old: PoolEntry) -> bool:
    """Whether `new` replaces `old`, which it duplicates: higher provenance, or both the same
    user's corrections and `new` the later one (the newer correction wins).

    >>> from datetime import datetime
    >>> def entry(source, user, day):
    ...     return PoolEntry(exchange_id=day, conversation_id=1, user_id=user, status="train",
    ...         source=source, score=1, reason="", prompt="q", completion="a", model_id="m",
    ...         exchange_at=datetime(2026, 11, day))
    >>> outranks(entry("human_written", 1, 2), entry("model_only", 1, 9))
    True
    >>> outranks(entry("human_written", 1, 9), entry("human_written", 1, 2))
    True
    >>> outranks(entry("human_written", 1, 2), entry("human_written", 1, 9))
    False
    >>> outranks(entry("human_written", 2, 9), entry("human_written", 1, 2))
    False
    """
    if SOURCE_RANK[new.source] != SOURCE_RANK[old.source]:
        return SOURCE_RANK[new.source] > SOURCE_RANK[old.source]
    same_user = new.user_id == old.user_id
    return is_correction(new) and same_user and aware(new.exchange_at) > aware(old.exchange_at)


def same_subject(a: PoolEntry, b: PoolEntry) -> bool:
    """Whether two questions name the same things (two corrections alike in wording may be
    about different subjects: "What does Stodroum Industries make?", "...Staigeth...")."""
    return names(a.prompt) == names(b.prompt)


def replaced(old: PoolEntry, new: PoolEntry) -> PoolEntry:
    """`old` leaves the pool for `new`: a correction superseded by the user's newer one, or a
    near-duplicate. Either comes back if `new` leaves (`duplicate_of`)."""
    old.duplicate_of = new.exchange_id
    if is_correction(old) and is_correction(new):
        old.status = "superseded"
        old.reason = f"superseded by the newer correction in exchange {new.exchange_id}"
    else:
        old.status, old.reason = "duplicate", f"near-duplicate of exchange {new.exchange_id}"
    return old


def exchange_text(entry: PoolEntry) -> str:
    return f"{entry.prompt}\n\n{entry.completion}"


class Curator:
    def __init__(
        self,
        pool: PoolStore,
        index: VectorIndex,
        embed: Callable[[list[str]], np.ndarray],
        config: CuratorConfig = CuratorConfig(),
    ):
        self.pool = pool
        self.index = index
        self.embed = embed
        self.config = config
        self.keywords = KeywordIndex()
        self._keywords_lock = threading.Lock()

    def _mask(self, text: str) -> tuple[str, int]:
        masked, found = mask(text, self.config.pii_region)
        return masked, sum(found.values())

    def entry_for(self, f: Facts, v: Verdict) -> PoolEntry:
        prompt, n1 = self._mask(f.question)
        answer, n2 = self._mask(model_words(f.answer))  # not a correction restated under it
        context, n3 = [], 0
        for m in f.context:
            text, n = self._mask(m["content"])
            context.append({"role": m["role"], "content": text})
            n3 += n
        completion, original, n4 = answer, None, 0
        if f.correction is not None:
            completion, n4 = self._mask(f.correction)
            original = answer
        e = f.exchange
        return PoolEntry(
            exchange_id=e.id,
            conversation_id=e.conversation_id,
            user_id=f.user_id,
            status=v.status,
            source=v.source,
            score=v.score,
            reason=v.reason,
            rating=f.rating.value if f.rating else 0,
            grade_score=f.grade.score if f.grade else None,
            context=context,
            prompt=prompt,
            completion=completion,
            original=original,
            pii_masked=n1 + n2 + n3 + n4,
            model_id=e.model_id,
            adapter_id=e.adapter_id,
            grader_version=f.grade.grader_version if f.grade else None,
            exchange_at=e.created_at,
        )

    def update(self, exchange_ids: list[int], progress: Callable[[int], None] | None = None):
        """Re-judge these exchanges and bring their pool entries and vectors up to date.
        Returns the new entries. `progress(n)` is called as each chunk of n is done."""
        out: list[PoolEntry] = []
        left_pool: list[int] = []
        for ids in chunks(list(exchange_ids), 256):
            entries, left = self._update_chunk(ids)
            out += entries
            left_pool += left
            if progress:
                progress(len(ids))
        # Answers kept out as duplicates of one that just left may now stand on their own.
        again = [i for i in self.pool.duplicates_of(left_pool) if i not in set(exchange_ids)]
        if again:
            out += self.update(again)
        self._sync_words_after_change()
        return out

    def _update_chunk(self, ids: list[int]) -> tuple[list[PoolEntry], list[int]]:
        facts = self.pool.facts(ids)
        before = self.pool.entries(ids)
        entries = [self.entry_for(f, verdict(evidence(f), self.config.rules)) for f in facts]
        was_train = {i for i, e in before.items() if e.status == "train"}
        candidates = [e for e in entries if e.status == "train"]
        # Higher provenance first, so within a chunk a correction wins over a copy of it; of
        # two corrections, the newer first, so it wins over the one it supersedes.
        candidates.sort(
            key=lambda e: (
                -SOURCE_RANK[e.source],
                -e.exchange_id if is_correction(e) else e.exchange_id,
            )
        )
        accepted, vectors, prompts = [], [], []
        demoted: list[PoolEntry] = []
        if candidates:
            v_all = self.embed([exchange_text(e) for e in candidates])
            p_all = self.embed([e.prompt for e in candidates])
            neighbours = self.index.nearest_exchanges(v_all, k=2)
            counts = self.pool.train_counts()
            for i in was_train:  # this chunk's own entries are being decided again
                counts[before[i].user_id] -= 1
            rivals = self.pool.entries([n.exchange_id for ns in neighbours for n in ns])
            for entry, v, p, near in zip(candidates, v_all, p_all, neighbours, strict=True):
                dup = self._duplicate(entry, v, near, accepted, vectors, rivals, set(ids))
                if isinstance(dup, PoolEntry):  # the newcomer outranks what it duplicates
                    demoted.append(replaced(dup, entry))
                    counts[dup.user_id] = counts.get(dup.user_id, 1) - 1
                elif dup is not None:
                    entry.status, entry.duplicate_of = "duplicate", dup
                    entry.reason = f"near-duplicate of exchange {dup} ({entry.reason})"
                    continue
                users = sum(1 for n in counts.values() if n > 0) + (
                    0 if counts.get(entry.user_id, 0) > 0 else 1
                )
                mine, total = counts.get(entry.user_id, 0), sum(counts.values())
                if not share_allows(mine, total, users, self.config.max_user_share):
                    entry.status = "capped"
                    entry.reason = (
                        f"this user already has {mine} of the pool's {total} examples "
                        f"(most allowed: {self.config.max_user_share:.0%})"
                    )
                    continue
                for old in self._superseded(entry, p, accepted):
                    demoted.append(replaced(old, entry))
                    counts[old.user_id] = counts.get(old.user_id, 1) - 1
                counts[entry.user_id] = mine + 1
                accepted.append(entry)
                vectors.append(v)
                prompts.append(p)
        # One entry can be demoted twice in a chunk (a duplicate of one newcomer, superseded by
        # another): it is saved, and its vector removed, once.
        demoted = list({d.exchange_id: d for d in demoted}.values())
        self.pool.save(entries + demoted)
        keep = {e.exchange_id for e in accepted}
        self.index.remove(
            sorted({i for i in was_train if i not in keep} | {d.exchange_id for d in demoted})
        )
        self.index.add(
            [e.exchange_id for e in accepted],
            np.array(vectors),
            np.array(prompts),
            [{"user_id": e.user_id, "source": e.source} for e in accepted],
        )
        left = [i for i in was_train if i not in keep] + [d.exchange_id for d in demoted]
        return entries, left

    def _duplicate(self, entry, vector, near, accepted, vectors, rivals, chunk):
        """None if new; the id it duplicates; or the indexed entry it outranks and replaces."""
        threshold = self.config.dedup_similarity
        for other, v in zip(accepted, vectors, strict=True):
            if float(vector @ v) >= threshold and (
                not (is_correction(entry) and is_correction(other)) or same_subject(entry, other)
            ):
                return other.exchange_id
        for n in near:
            if n.exchange_id in chunk or n.similarity < threshold:
                continue  # this chunk's own entries are compared above, in rank order
            rival = rivals.get(n.exchange_id)
            if rival is None or rival.status != "train":
                continue  # a vector left behind by a crash; the SQL row is the record
            if is_correction(entry) and is_correction(rival) and not same_subject(entry, rival):
                continue  # alike in wording, about another subject: both stand
            if outranks(entry, rival):
                return rival
            return n.exchange_id
        return None

    def _superseded(self, entry: PoolEntry, prompt_vector, accepted) -> list[PoolEntry]:
        """The same user's older corrections of the same question (their questions at least
        `supersede_similarity` alike), which this newer correction replaces; none unless
        `entry` is a correction."""
        if not is_correction(entry):
            return []
        near = self.index.nearest_prompts(
            prompt_vector, 4, sources=("human_written",), user_id=entry.user_id
        )
        close = [n.exchange_id for n in near if n.similarity >= self.config.supersede_similarity]
        rows = self.pool.entries([i for i in close if i != entry.exchange_id])
        taken = {a.exchange_id for a in accepted}
        return [
            old
            for old in rows.values()
            if old.status == "train" and old.exchange_id not in taken and outranks(entry, old)
            and is_correction(old) and same_subject(old, entry)
        ]  # fmt: skip

    def forget(self, exchange_ids: list[int]) -> None:
        """Drop deleted exchanges' vectors (their rows are already gone), with every copy
        Chroma keeps of them on disk."""
        self.index.forget(list(exchange_ids))
        again = self.pool.duplicates_of(list(exchange_ids))
        if again:
            self.update(again)
        self._sync_words_after_change()

    def rebuild(self, progress: Callable[[int], None] | None = None) -> int:
        """Re-judge every answered exchange, and drop vectors with no `train` row behind them."""
        ids = self.pool.answered_exchange_ids()
        self.update(ids, progress)
        train = {e.exchange_id for e in self.pool.train_entries()}
        self.index.remove(sorted(self.index.ids() - train))
        return len(ids)

    def examples(
        self,
        question: str,
        k: int,
        min_similarity: float,
        exclude_conversation: int | None = None,
        user_id: int | None = None,
    ) -> list[Example]:
        """The `train` exchanges whose questions are most like `question`, most similar first;
        none from `exclude_conversation` (its history is in the prompt already).

        With `user_id`, whose prompt this is: their own exchanges, and other users' only when
        human-approved and `retrieval.share_approved` is on (`shown_to`). Chroma filters on
        the vectors' `user_id` and `source`, and every hit is checked again against its row,
        so a vector left stale by a crash never shows an exchange its row would not. Another
        user's text is masked again here: the pool stores it masked, and this makes sure even
        a row written under other masking rules never reaches a prompt raw."""
        if k <= 0 or self.index.count() == 0:
            return []
        share = self.config.retrieval.share_approved
        # The embedder reads 256 tokens at most; masking a 100,000-character message in full
        # would cost the chat's first token a fifth of a second for nothing.
        masked, _ = self._mask(question[:4000])
        near = self.index.nearest_prompts(
            self.embed([masked])[0],
            k * 2,
            user_id=user_id,
            shared_sources=HUMAN_SOURCES if share else (),
        )
        found = fuse([(n.exchange_id, n.similarity) for n in near], self.by_words(masked, k * 10))
        entries = self.pool.entries([f.exchange_id for f in found])
        rules = self.thresholds(min_similarity)
        found = [
            f
            for f in found
            if f.exchange_id in entries and self._counts(f, entries[f.exchange_id], rules, masked)
        ]
        theirs = [e.exchange_id for e in entries.values() if user_id and e.user_id != user_id]
        vouched = self.pool.vouched(theirs) if theirs else set()
        taught_at = self.pool.corrected_at(
            [i for i, e in entries.items() if e.source in HUMAN_SOURCES]
        )
        out = []
        for f in found:
            e = entries.get(f.exchange_id)
            if e is None or e.status != "train" or e.conversation_id == exclude_conversation:
                continue
            if not shown_to(e.user_id, e.source, user_id, share):
                continue
            if user_id is not None and e.user_id != user_id and e.exchange_id not in vouched:
                continue  # another user's own approval shares nothing: a reviewer must vouch
            prompt, completion = e.prompt, e.completion
            shared = user_id is not None and e.user_id != user_id
            if shared:
                prompt, completion = self._mask(prompt)[0], self._mask(completion)[0]
            taught = e.source in HUMAN_SOURCES
            out.append(
                Example(
                    e.exchange_id,
                    e.conversation_id,
                    prompt,
                    completion,
                    round(f.similarity or 0.0, 3),
                    shared,
                    taught=taught,
                    taught_at=taught_at.get(e.exchange_id, aware(e.exchange_at))
                    if taught
                    else None,
                    matched=f.matched,
                )
            )
        return out[:k]

    def _counts(self, found, entry: PoolEntry, rules: Thresholds, question: str) -> bool:
        """A found entry counts by its thresholds; a taught one only if it names every name
        the question does (`names_agree`; a lower-case word English does not know counts as a
        name), and the question names the subject its taught question names (`names_subject`)."""
        if entry.source not in HUMAN_SOURCES:
            return rules.admits(found)
        known = ENGLISH
        if not names_agree(question, f"{entry.prompt}\n{entry.completion}", known):
            return False
        if not names_subject(question, entry.prompt, entry.completion, known):
            return False
        return rules.admits(found, taught=True, named=bool(names(question, known)))

    def thresholds(self, min_similarity: float) -> Thresholds:
        r = self.config.retrieval
        return Thresholds(
            min_similarity,
            r.taught_similarity,
            r.min_keywords,
            r.agree_similarity,
            r.agree_keywords,
        )

    def by_words(self, text: str, k: int) -> list[tuple[int, float]]:
        """The taught entries (a person wrote or approved the answer) whose words best match
        `text`, every user's: the caller filters them as it does the vector hits. The BM25
        index is rebuilt when the taught entries changed since it was built, so a correction
        is found the moment it is saved and gone the moment it is not `train` any more. The
        curator's own changes rebuild it as they happen (`sync_words`), so a chat pays the
        rebuild only after a change made elsewhere (another process on the same database)."""
        self.sync_words()
        return self.keywords.search(text, k)

    def sync_words(self) -> None:
        """Rebuild the BM25 index if the taught entries changed since it was built."""
        if self.keywords.version == self.pool.taught_version(HUMAN_SOURCES):
            return
        with self._keywords_lock:
            # Read again under the lock: another thread may have rebuilt it meanwhile, and the
            # index must carry the version of the texts it was built from.
            version = self.pool.taught_version(HUMAN_SOURCES)
            if self.keywords.version != version:
                self.keywords.rebuild(self.pool.taught_texts(HUMAN_SOURCES), version)

    def warm(self) -> None:
        """Build the word index and load the English word lists now (the app calls this as it
        starts), so the first question does not pay for them."""
        try:
            self.sync_words()
            load_english()
        except Exception:
            log.exception("could not warm the memory's word index")

    def _sync_words_after_change(self) -> None:
        """`sync_words` where the pool changed, so the next chat's lookup does not pay it; a
        failure here is logged and left to that lookup, which tries again."""
        try:
            self.sync_words()
        except Exception:
            log.exception("could not rebuild the memory's word index; the next lookup will")
