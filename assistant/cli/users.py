"""`autodidact user add|list|remove|role|password|token`: the accounts of a shared server.

Owns these commands' arguments and output. Passwords are asked twice without echo (or read
from standard input with --password-stdin, for scripts); a token is printed once and only its
hash is kept. Storing and verifying is store/accounts.py's; what a role may do,
assistant/access.py's.
"""

from __future__ import annotations

import argparse
import getpass
import sys

from assistant.cli.command import Command, settings_flags
from store.accounts import ROLES, AccountError

USES = ("home", "database_url")  # the accounts are rows in the database


def arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, help="what to do")
    add = actions.add_parser(
        "add",
        help="add an account (asks for its password)",
        description="Add an account. A user that exists without a password (the local user "
        "from before accounts) keeps its conversations and gets this password.",
    )
    add.add_argument("name", help="the account's name")
    add.add_argument("--role", choices=ROLES, default="user", help="what the account may do")
    password = actions.add_parser("password", help="set an account's password")
    password.add_argument("name", help="the account's name")
    role = actions.add_parser("role", help="change an account's role")
    role.add_argument("name", help="the account's name")
    role.add_argument("role", choices=ROLES, help="its new role")
    for action in (add, password):
        action.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input",
        )
    listing = actions.add_parser("list", help="the accounts: name, role, tokens, since")
    remove = actions.add_parser(
        "remove", help="end an account: no logins or tokens; its conversations stay"
    )
    remove.add_argument("name", help="the account's name")
    token = actions.add_parser(
        "token",
        help="print a new API token for programs (send it as 'Authorization: Bearer TOKEN')",
    )
    token.add_argument("name", help="the account's name")
    token.add_argument("--label", default="api", help="what the token is for, for the list")
    token.add_argument("--revoke", action="store_true", help="revoke the account's tokens")
    for action in (add, password, role, listing, remove, token):
        settings_flags(action, USES)


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise AccountError("the two passwords differ; nothing was changed")
    return first


def user_command(args, settings) -> int:
    from assistant.wiring import private_home
    from store.accounts import AccountStore
    from store.db import open_database

    private_home(settings)
    accounts = AccountStore(open_database(settings.effective_database_url))
    if args.action == "add":
        account = accounts.add(args.name, read_password(args.password_stdin), args.role)
        print(f"Added {account.name} ({account.role}).")
    elif args.action == "password":
        accounts.set_password(args.name, read_password(args.password_stdin))
        print(f"Changed the password of {args.name}; its browsers must log in again.")
    elif args.action == "role":
        account = accounts.set_role(args.name, args.role)
        print(f"{account.name} is now a {account.role}.")
    elif args.action == "remove":
        accounts.remove(args.name)
        print(f"Removed {args.name}: no more logins or tokens. Its conversations stay.")
    elif args.action == "token" and args.revoke:
        print(f"Revoked {accounts.revoke_tokens(args.name)} token(s) of {args.name}.")
    elif args.action == "token":
        print(accounts.create_token(args.name, args.label))
    else:
        print_users(accounts)
    return 0


def print_users(accounts) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("name", "role", "login", "tokens", "since")
    for user, tokens in accounts.users():
        login = (
            "removed" if user.disabled_at else "password" if user.password_hash else "local only"
        )
        table.add_row(user.name, user.role, login, str(tokens), f"{user.created_at:%Y-%m-%d}")
    Console().print(table)


COMMANDS = [
    Command(
        "user",
        "manage accounts: add, list, remove, role, password, token",
        user_command,
        arguments,
        errors=(AccountError,),
        uses=USES,
    )
]
