"""What a user does with their conversations and with the answers in them, for the chat service.

Owns whose data it is (an id that is not the account's reads exactly like a missing one), the
conversation list, renaming and deleting, and feedback on answers: ratings, corrections and
bringing the exchange's place in the training pool up to date. `ChatService`
(assistant/chat.py) inherits it and owns generation; it provides `store`, `user`, `settings`,
`curator`, `on_rated` and `stop`.
"""

from __future__ import annotations

import logging

from assistant.prompt import ChatRefused
from store.accounts import Account
from store.conversations import NotFound, Turn

log = logging.getLogger(__name__)


class Conversations:
    # whose data it is
    def user_id(self, account: Account | None) -> int:
        return self.user.id if account is None else account.id

    def check_conversation(self, conversation_id: int, account: Account | None) -> None:
        """NotFound unless the conversation exists and is the account's. Someone else's
        conversation reads exactly like a missing one, so ids reveal nothing."""
        if account is None:
            return
        if self.store.owner(conversation_id) != account.id:
            raise NotFound(f"conversation {conversation_id} does not exist")

    def check_exchange(self, exchange_id: int, account: Account | None) -> None:
        if account is None:
            return
        if self.store.exchange_owner(exchange_id) != account.id:
            raise NotFound(f"exchange {exchange_id} does not exist")

    # conversations
    def conversations(self, account: Account | None = None):
        return self.store.conversations(self.user_id(account))

    def conversation(self, conversation_id: int, account: Account | None = None):
        self.check_conversation(conversation_id, account)
        return self.store.conversation(conversation_id)

    def turns(self, conversation_id: int, account: Account | None = None) -> list[Turn]:
        self.check_conversation(conversation_id, account)
        return self.store.turns(conversation_id)

    def rename(self, conversation_id: int, title: str, account: Account | None = None):
        self.check_conversation(conversation_id, account)
        title = " ".join(str(title or "").split())
        if not title:
            raise ChatRefused("A title cannot be empty.")
        return self.store.rename_conversation(conversation_id, title[:200])

    def delete(self, conversation_id: int, account: Account | None = None) -> dict[str, int]:
        """Delete a conversation; its exchanges leave the training pool and the index too."""
        self.check_conversation(conversation_id, account)
        self.stop(conversation_id)
        ids = self.store.exchange_ids(conversation_id)
        counts = self.store.delete_conversation(conversation_id)
        if self.curator is not None:
            try:
                self.curator.forget(ids)
            except Exception:  # the rows are gone; a rebuild drops any vector left behind
                log.exception("could not remove deleted exchanges from the vector index")
        return counts

    def rate(
        self,
        exchange_id: int,
        value: int,
        reasons=(),
        comment: str | None = None,
        account: Account | None = None,
    ):
        self.check_exchange(exchange_id, account)
        rating = self.store.rate(exchange_id, self.user_id(account), value, reasons, comment)
        self.curate(exchange_id)
        for hook in self.on_rated:
            try:
                hook(exchange_id)
            except Exception:  # the rating is stored; what follows from it can catch up
                log.exception("after rating exchange %s", exchange_id)
        return rating

    def correct(self, exchange_id: int, content: str, account: Account | None = None):
        """Store a better answer written by the user, beside the model's."""
        self.check_exchange(exchange_id, account)
        if not isinstance(content, str) or not content.strip():
            raise ChatRefused("Write the better answer first: a correction cannot be empty.")
        if len(content) > self.settings.max_message_chars:
            raise ChatRefused(
                f"That correction is {len(content):,} characters; the limit is "
                f"{self.settings.max_message_chars:,}."
            )
        try:
            correction = self.store.correct(exchange_id, self.user_id(account), content)
        except ValueError as exc:
            raise ChatRefused(f"That answer cannot be corrected: {exc}.") from exc
        self.curate(exchange_id)
        return correction

    def curate(self, exchange_id: int) -> None:
        """Bring the exchange's pool entry up to date; a failure never loses the feedback,
        which is stored already (`autodidact pool --rebuild` catches up)."""
        if self.curator is None:
            return
        try:
            ids = [exchange_id, *self.curator.pool.regeneration_relatives([exchange_id])]
            self.curator.update(ids)
        except Exception:
            log.exception("could not update the training pool for exchange %s", exchange_id)
