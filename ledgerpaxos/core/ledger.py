"""The replicated state machine: balances plus the exactly-once client table.

Pure and deterministic: the same commands in the same order give the same
state and the same digest on every replica.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from ledgerpaxos.core.messages import (
    ClientEntry,
    Command,
    CommandKind,
    Outcome,
    Snapshot,
    Transfer,
    TransferResult,
)

REASON_AMOUNT = "amount must be greater than 0"
REASON_UNKNOWN_SENDER = "unknown sender account"
REASON_UNKNOWN_RECEIVER = "unknown receiver account"
REASON_SAME_ACCOUNT = "sender and receiver are the same account"
REASON_INSUFFICIENT = "insufficient funds"
REASON_NOT_AUTHORIZED = "not authorized"

TRANSFER_OK = TransferResult(ok=True)  # shared: results are immutable


class Ledger:
    """Account balances and the client table; applies commands in log order."""

    def __init__(
        self,
        accounts: Iterable[str],
        initial_balance: int,
        client_accounts: Mapping[str, Iterable[str]] | None = None,
        auditors: Iterable[str] = (),
    ) -> None:
        """`client_accounts`: the accounts each client named there may debit;
        any other client may debit the account with its own name (the seed's
        rule: client A sends from account A). A read shows a client the
        balances of the accounts it may debit; `auditors` see every one."""
        assert initial_balance >= 0
        self.client_accounts = {c: frozenset(a) for c, a in (client_accounts or {}).items()}
        self.auditors = frozenset(auditors)
        self.balances: dict[str, int] = dict.fromkeys(accounts, initial_balance)
        # client id -> its last executed request and the outcome it got
        self.clients: dict[str, ClientEntry] = {}
        self.total = sum(self.balances.values())
        self._digest_rows = _DigestRows(self.balances)

    # ------------------------------------------------------------ commands

    def is_duplicate(self, command: Command) -> bool:
        entry = self.clients.get(command.client_id)
        return entry is not None and command.request_no <= entry.request_no

    def stored_outcome(self, client_id: str, request_no: int) -> Outcome | None:
        """The outcome of (client_id, request_no) if it was the client's last request."""
        entry = self.clients.get(client_id)
        if entry is not None and entry.request_no == request_no:
            return entry.outcome
        return None

    def execute(self, command: Command, *, slot: int = 0, index: int = 0) -> Outcome | None:
        """Apply a command once, as command `index` of `slot`'s batch. Returns
        None when it was already applied (a duplicate or an older request):
        the ledger does not change."""
        if self.is_duplicate(command):
            return None
        if command.kind == CommandKind.read:
            client = command.client_id
            if client in self.auditors:
                shown = tuple(self.balances.items())
            else:
                shown = tuple((a, b) for a, b in self.balances.items() if self.may_debit(client, a))
            outcome = Outcome(balances=shown, slot=slot, index=index)
        else:
            client = command.client_id
            outcome = Outcome(
                results=tuple(self._transfer(t, client) for t in command.transfers),
                slot=slot,
                index=index,
            )
        self.clients[command.client_id] = ClientEntry(
            client_id=command.client_id, request_no=command.request_no, outcome=outcome
        )
        return outcome

    def may_debit(self, client_id: str, account: str) -> bool:
        owned = self.client_accounts.get(client_id)
        return account == client_id if owned is None else account in owned

    def _transfer(self, transfer: Transfer, client_id: str) -> TransferResult:
        if transfer.amount <= 0:
            return TransferResult(ok=False, reason=REASON_AMOUNT)
        if transfer.sender not in self.balances:
            return TransferResult(ok=False, reason=REASON_UNKNOWN_SENDER)
        if transfer.receiver not in self.balances:
            return TransferResult(ok=False, reason=REASON_UNKNOWN_RECEIVER)
        if not self.may_debit(client_id, transfer.sender):
            return TransferResult(ok=False, reason=REASON_NOT_AUTHORIZED)
        if transfer.sender == transfer.receiver:
            return TransferResult(ok=False, reason=REASON_SAME_ACCOUNT)
        if self.balances[transfer.sender] < transfer.amount:
            return TransferResult(ok=False, reason=REASON_INSUFFICIENT)
        self.balances[transfer.sender] -= transfer.amount
        self.balances[transfer.receiver] += transfer.amount
        changed = self._digest_rows.changed
        changed.add(transfer.sender)
        changed.add(transfer.receiver)
        return TRANSFER_OK

    # ------------------------------------------------------------ snapshots

    def digest(self) -> bytes:
        """state_digest() of the current state, from rows kept between calls:
        only the accounts and clients that changed since are formatted again."""
        return self._digest_rows.digest(self.balances, self._client_rows())

    def _client_rows(self) -> tuple[ClientEntry, ...]:
        return tuple(self.clients[c] for c in sorted(self.clients))

    def check_conservation(self) -> None:
        """Transfers move money, never make or lose it (checked at checkpoints,
        not per command: summing every balance per command is a hot-path cost)."""
        assert sum(self.balances.values()) == self.total, "balances no longer sum to their total"
        assert min(self.balances.values(), default=0) >= 0, "a balance went below zero"

    def snapshot(self, slot: int, *, chain: bytes) -> Snapshot:
        """The state after `slot`; `chain`: the decided log's chain digest there."""
        self.check_conservation()
        clients = self._client_rows()
        return Snapshot(
            slot=slot,
            balances=tuple(self.balances.items()),
            clients=clients,
            digest=self._digest_rows.digest(self.balances, clients),
            chain=chain,
        )

    def install(self, snapshot: Snapshot) -> None:
        """Replace the whole state with a checkpoint's (balances and client table)."""
        assert state_digest(snapshot.balances, snapshot.clients) == snapshot.digest
        assert sum(b for _, b in snapshot.balances) == self.total
        self.balances = dict(snapshot.balances)
        self.clients = {c.client_id: c for c in snapshot.clients}
        self._digest_rows = _DigestRows(self.balances)


def state_digest(balances: tuple[tuple[str, int], ...], clients: tuple[ClientEntry, ...]) -> bytes:
    """sha256 over a canonical text form of balances and client table: one
    row per account in account order, then one per client in client id order."""
    h = hashlib.sha256()
    h.update(b"".join(_balance_row(account, balance) for account, balance in balances))
    h.update(b"".join(_client_row(c) for c in clients))
    return h.digest()


def _balance_row(account: str, balance: int) -> bytes:
    return f"b|{account}|{balance}\n".encode()


def _client_row(c: ClientEntry) -> bytes:
    o = c.outcome
    results = ",".join("1" if r.ok else f"0:{r.reason}" for r in o.results)
    reads = "" if o.balances is None else ",".join(f"{a}={b}" for a, b in o.balances)
    return f"c|{c.client_id}|{c.request_no}|{results}|{reads}|{o.slot}.{o.index}\n".encode()


class _DigestRows:
    """The rows of state_digest(), kept up to date between checkpoints.

    A checkpoint every few slots used to format and hash every account (a
    third of a follower's checkpoint with 1,000 accounts); now only the
    accounts in `changed` (the ledger adds both sides of every transfer it
    applies) and the clients whose entry object changed are formatted again."""

    def __init__(self, balances: dict[str, int]) -> None:
        self.position = {account: i for i, account in enumerate(balances)}
        self.rows = [_balance_row(a, b) for a, b in balances.items()]
        self.changed: set[str] = set()
        self.client_rows: dict[str, tuple[ClientEntry, bytes]] = {}

    def digest(self, balances: dict[str, int], clients: tuple[ClientEntry, ...]) -> bytes:
        rows, position = self.rows, self.position
        for account in self.changed:
            rows[position[account]] = _balance_row(account, balances[account])
        self.changed.clear()
        cache = self.client_rows
        client_rows = []
        for c in clients:
            known = cache.get(c.client_id)
            if known is None or known[0] is not c:
                known = cache[c.client_id] = (c, _client_row(c))
            client_rows.append(known[1])
        h = hashlib.sha256()
        h.update(b"".join(rows))
        h.update(b"".join(client_rows))
        return h.digest()
