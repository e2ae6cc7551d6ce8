"""The argument parsers of the shell's commands, with their completions."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

import cmd2
from cmd2 import Choices, Cmd2ArgumentParser, CompletionItem

if TYPE_CHECKING:
    from tools.shell.app import Shell


def node_choices(app: Shell) -> Choices:
    return Choices(items=[CompletionItem(n) for n in app.backend.config.node_ids])


def account_choices(app: Shell) -> Choices:
    # A numbered range may hold millions: complete its first names only.
    accounts = app.backend.config.accounts
    return Choices(items=[CompletionItem(a) for a in accounts[:completions_max]])


completions_max = 1_000


def position(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"position {text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("positions start at 0")
    return value


def amount(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"amount {text!r} is not an integer") from None


def slot(text: str) -> int:
    if text.lower() == "all":
        return 0
    try:
        slot = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"slot {text!r} is neither a number nor `all`") from None
    if slot < 1:
        raise argparse.ArgumentTypeError("slots start at 1 (or use `all`)")
    return slot


def load_parser() -> Cmd2ArgumentParser:
    parser = Cmd2ArgumentParser(
        description="Read a CSV test-set file; `next` then runs its sets one by one."
    )
    parser.add_argument(
        "path",
        metavar="PATH",
        help="the CSV file, e.g. testdata/test.csv",
        completer=cmd2.Cmd.path_complete,
    )
    return parser


def next_parser() -> Cmd2ArgumentParser:
    return Cmd2ArgumentParser(
        description="Run the next set of the loaded file: make its live nodes alive, finish what earlier "
        "sets left pending, run its transfers with the LF leader kills. Returns when done, or when "
        "nothing completed for --wait seconds (no majority): what is pending keeps retrying."
    )


def print_parser() -> Cmd2ArgumentParser:
    parser = Cmd2ArgumentParser(description="Show the state of every replica.")
    subparsers = parser.add_subparsers(dest="what", metavar="db|log|status|view", required=True)
    db = subparsers.add_parser(
        "db", help="balances of every replica side by side (a page of at most 1,000 accounts)"
    )
    db.add_argument(
        "--from",
        dest="start",
        metavar="POSITION",
        type=position,
        default=0,
        help="the account position to start the page at (0: the first; a page says the next)",
    )
    log = subparsers.add_parser("log", help="the log entries of one or every replica")
    log.add_argument(
        "node",
        metavar="NODE",
        nargs="?",
        help="one replica (default: all)",
        choices_provider=node_choices,
    )
    status = subparsers.add_parser("status", help="status letters of a slot, or all slots")
    status.add_argument("slot", metavar="SLOT|all", type=slot, help="a slot number, or `all`")
    view = subparsers.add_parser("view", help="leader, ballot, role per replica and the views seen")
    for sub in (db, log, status, view):
        sub.add_argument("--json", action="store_true", help="one JSON document on one line")
    return parser


def transfer_parser() -> Cmd2ArgumentParser:
    parser = Cmd2ArgumentParser(
        description="Send one transfer to the cluster and wait for its outcome."
    )
    parser.add_argument(
        "sender", metavar="SENDER", choices_provider=account_choices, help="account to take from"
    )
    parser.add_argument(
        "receiver", metavar="RECEIVER", choices_provider=account_choices, help="account to give to"
    )
    parser.add_argument("amount", metavar="AMOUNT", type=amount, help="a positive integer")
    parser.add_argument(
        "--as",
        dest="client",
        metavar="CLIENT",
        help="the client that sends it (default: the one named like SENDER, its usual owner)",
    )
    return parser


def balance_parser() -> Cmd2ArgumentParser:
    parser = Cmd2ArgumentParser(description="Read balances through the log (linearizable).")
    parser.add_argument(
        "accounts",
        metavar="ACCOUNT",
        nargs="*",
        choices_provider=account_choices,
        help="the accounts to read (default: all, at most the first 10,000)",
    )
    return parser


def open_parser() -> Cmd2ArgumentParser:
    parser = Cmd2ArgumentParser(
        description="Open accounts through the log, at balance 0, owned by a client."
    )
    parser.add_argument("accounts", metavar="ACCOUNT", nargs="+", help="names of new accounts")
    parser.add_argument(
        "--owner",
        metavar="CLIENT",
        help="the client that may debit them (default: each one's namesake, as for the config's)",
    )
    return parser


def kill_parser() -> Cmd2ArgumentParser:
    parser = Cmd2ArgumentParser(
        description="`kill leader`: the current leader stops answering (as LF does)."
    )
    parser.add_argument("what", choices=["leader"])
    return parser


def alive_parser() -> Cmd2ArgumentParser:
    parser = Cmd2ArgumentParser(
        description="Simulated failure: a dead replica ignores every message."
    )
    parser.add_argument(
        "node", metavar="NODE", choices_provider=node_choices, help="a replica, e.g. n3"
    )
    parser.add_argument("state", choices=["on", "off"], help="on: alive, off: dead")
    return parser


def node_parser(description: str) -> Callable[[], Cmd2ArgumentParser]:
    def build() -> Cmd2ArgumentParser:
        parser = Cmd2ArgumentParser(description=description)
        parser.add_argument(
            "node", metavar="NODE", choices_provider=node_choices, help="a replica, e.g. n2"
        )
        return parser

    return build


def plain_parser(description: str) -> Callable[[], Cmd2ArgumentParser]:
    return lambda: Cmd2ArgumentParser(description=description)
