"""Accounts: who may log in, with which role, and the secrets that prove it.

Owns users' password hashes (Argon2id, via argon2-cffi), roles, API tokens and login sessions.
Tokens and session secrets are long random strings shown once; only their SHA-256 is kept, so a
copy of the database logs nobody in. Who may do what with a role is decided above, in
assistant/access.py; this module only stores and verifies.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import select

from store.base import Repository
from store.tables import ApiToken, LoginSession, User, utcnow

ROLES = ("user", "reviewer", "admin")  # each may do what the ones before it may
TOKEN_PREFIX = "adt_"  # API tokens
SESSION_PREFIX = "ads_"  # browser sessions
MIN_PASSWORD = 8
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash("not a password anyone has")  # verified against when a name is unknown


class AccountError(ValueError):
    """A request about accounts that cannot be done, in words a person can act on."""


@dataclass(frozen=True)
class Account:
    """A user as the access rules see it."""

    id: int
    name: str
    role: str

    def at_least(self, role: str) -> bool:
        """
        >>> Account(1, "ana", "reviewer").at_least("user")
        True
        >>> Account(1, "ana", "reviewer").at_least("admin")
        False
        """
        return ROLES.index(self.role) >= ROLES.index(role)


def check_name(name: str) -> str:
    """
    >>> check_name("ana.lopez")
    'ana.lopez'
    >>> check_name("../etc")
    Traceback (most recent call last):
    ...
    store.accounts.AccountError: a user name is 1-64 letters, digits or . _ @ -, starting with a letter or digit
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise AccountError(
            "a user name is 1-64 letters, digits or . _ @ -, starting with a letter or digit"
        )
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return role


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise AccountError("a password may be at most 1,024 characters")
    return password


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def as_account(user: User) -> Account:
    return Account(user.id, user.name, user.role)


class AccountStore(Repository):
    def add(self, name: str, password: str, role: str = "user") -> Account:
        """A new account; a user that exists without a password (from before accounts, such
        as the local user) gets this password and role and keeps its data."""
        check_name(name), check_role(role), check_password(password)
        with self.session() as s:
            user = s.exec(select(User).where(User.name == name)).first()
            if user is not None and user.password_hash and user.disabled_at is None:
                raise AccountError(f"user {name!r} exists already")
            if user is not None and user.disabled_at is not None:
                raise AccountError(
                    f"user {name!r} was removed; its conversations are still theirs, so the "
                    "name is not given to anyone else"
                )
            user = user or User(name=name)
            user.password_hash = _HASHER.hash(password)
            user.role, user.disabled_at = role, None
            s.add(user)
            s.commit()
            return as_account(user)

    def set_password(self, name: str, password: str) -> None:
        check_password(password)
        with self.session() as s:
            user = self._active(s, name)
            user.password_hash = _HASHER.hash(password)
            s.add(user)
            for row in s.exec(select(LoginSession).where(LoginSession.user_id == user.id)):
                s.delete(row)  # a new password logs every browser out
            s.commit()

    def set_role(self, name: str, role: str) -> Account:
        check_role(role)
        with self.session() as s:
            user = self._active(s, name)
            user.role = role
            s.add(user)
            s.commit()
            return as_account(user)

    def remove(self, name: str) -> None:
        """No more logins or tokens for `name`; the conversations stay (delete them first if
        they should go), and the name cannot be taken by someone else."""
        with self.session() as s:
            user = self._active(s, name)
            user.disabled_at, user.password_hash = utcnow(), None
            s.add(user)
            for table in (ApiToken, LoginSession):
                for row in s.exec(select(table).where(table.user_id == user.id)):
                    s.delete(row)
            s.commit()

    def users(self) -> list[tuple[User, int]]:
        """Every user with a password or a past, and how many tokens each holds."""
        with self.session() as s:
            users = list(s.exec(select(User).order_by(User.name)))
            tokens = {u.id: 0 for u in users}
            for token in s.exec(select(ApiToken)):
                tokens[token.user_id] = tokens.get(token.user_id, 0) + 1
            return [(u, tokens[u.id]) for u in users]

    def has_accounts(self) -> bool:
        """Whether anyone can log in: without accounts the app runs only for the local user."""
        with self.session() as s:
            found = s.exec(
                select(User.id).where(User.password_hash.is_not(None), User.disabled_at.is_(None))
            ).first()
            return found is not None

    def account(self, name: str) -> Account | None:
        with self.session() as s:
            user = s.exec(select(User).where(User.name == name)).first()
            if user is None or user.disabled_at is not None:
                return None
            return as_account(user)

    def verify(self, name: str, password: str) -> Account | None:
        """The account if `password` is right, else None; as slow for an unknown name."""
        with self.session() as s:
            user = s.exec(select(User).where(User.name == str(name))).first()
            hashed = user.password_hash if user and user.disabled_at is None else None
            try:
                _HASHER.verify(hashed or _DUMMY, str(password))
            except (VerificationError, InvalidHashError):
                return None
            if hashed is None:
                return None
            if _HASHER.check_needs_rehash(hashed):
                user.password_hash = _HASHER.hash(password)
                s.add(user)
                s.commit()
            return as_account(user)

    # secrets: API tokens for programs, sessions for browsers
    def create_token(self, name: str, label: str = "api") -> str:
        """A new API token for `name`, returned once; only its hash is stored."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.session() as s:
            user = self._active(s, name)
            s.add(ApiToken(user_id=user.id, secret_hash=digest(secret), name=label[:100]))
            s.commit()
        return secret

    def revoke_tokens(self, name: str) -> int:
        with self.session() as s:
            user = self._active(s, name)
            rows = list(s.exec(select(ApiToken).where(ApiToken.user_id == user.id)))
            for row in rows:
                s.delete(row)
            s.commit()
            return len(rows)

    def create_session(self, account: Account, agent: str, hours: float) -> str:
        secret = SESSION_PREFIX + secrets.token_urlsafe(32)
        expires = utcnow() + timedelta(hours=hours)
        with self.session() as s:
            s.add(
                LoginSession(
                    user_id=account.id,
                    secret_hash=digest(secret),
                    name=agent[:200],
                    expires_at=expires,
                )
            )
            s.commit()
        return secret

    def end_session(self, secret: str) -> None:
        with self.session() as s:
            row = s.exec(
                select(LoginSession).where(LoginSession.secret_hash == digest(secret))
            ).first()
            if row is not None:
                s.delete(row)
                s.commit()

    def holder(self, secret: str) -> Account | None:
        """Whose token or session `secret` is, if it is live."""
        if not secret.startswith((TOKEN_PREFIX, SESSION_PREFIX)):
            return None
        table = ApiToken if secret.startswith(TOKEN_PREFIX) else LoginSession
        now = _naive(utcnow())
        with self.session() as s:
            row = s.exec(select(table).where(table.secret_hash == digest(secret))).first()
            if row is None or (row.expires_at is not None and _naive(row.expires_at) < now):
                return None
            user = s.get(User, row.user_id)
            if user is None or user.disabled_at is not None:
                return None
            if row.last_used_at is None or now - _naive(row.last_used_at) > timedelta(minutes=5):
                row.last_used_at = utcnow()
                s.add(row)
                s.commit()
            return as_account(user)

    def _active(self, s, name: str) -> User:
        user = s.exec(select(User).where(User.name == name)).first()
        if user is None or user.disabled_at is not None:
            raise AccountError(f"no user {name!r} (see `autodidact user list`)")
        return user


def _naive(moment: datetime) -> datetime:
    """As naive UTC: SQLite hands datetimes back naive, PostgreSQL and utcnow() aware."""
    return moment.replace(tzinfo=None) if moment.tzinfo else moment
