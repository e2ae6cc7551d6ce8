"""The replicated state machine: accounts, their owners, and the client sessions.

Pure and deterministic: the same commands in the same order give the same
state and the same digest on every replica.

Accounts. The config names the initial accounts (core/accounts.py), each
holding `initial_balance`; only a balance that moved is kept in `balances`, so
ten million initial accounts cost nothing until they are used. More accounts
are opened through the log (CommandKind.open), at 0, owned by a client: money
only moves between accounts. Who may debit an account: for an opened account,
its owner; for an initial one, as the config says (`client_accounts`), or else
the client named like the account (the seed's rule: client A sends from A).

Sessions (TigerBeetle's client sessions). A client registers through the log
(CommandKind.register) before its first request; at most `sessions_max`
sessions are kept, and a registration beyond that evicts the session whose
last request was committed longest ago. A session is numbered by where its
registration executed (`session_number`), and every transfer and opening names
its session: one whose session the ledger does not hold (evicted, or replaced
by a newer registration) is refused as evicted and never applied. No number is
given twice, so a retry of a request from before an eviction can never be
applied twice, even once its client, or a late duplicate of an old
registration, has opened a session again: its client learns that the outcome
is unknown and registers anew. A session holds its client's last request
number and outcome, for exactly-once. Reads change nothing and are not stored.

The state digest is a sum, modulo 2**256, of one term per row that differs
from the initial state. An account's term is its weight (a hash of its name,
and for an opened account its owner) times how far its balance is from the
initial one, plus for an opened account a hash that it exists; a session's is
a hash of the whole row. The sum does not depend on order, so it is kept up to
date incrementally: a checkpoint adds weight x change for each account changed
since the last one and rehashes only the sessions that changed (`_changed`,
`_clients_changed`), never every account or session; the weights of recently
changed accounts are remembered (bounded), so a busy account is hashed once.
An additive digest is a check against replicas that diverge by mistake, not
against a peer that crafts states to collide (docs/security.md).
"""

from __future__ import annotations

import hashlib
import itertools
import operator
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence

from ledgerpaxos import constants
from ledgerpaxos.core.accounts import AccountNames, account_name_problem
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
REASON_ACCOUNT_EXISTS = "account already exists"
REASON_OPEN_FOR_OTHERS = "only an operator opens accounts for another client"

TRANSFER_OK = TransferResult(ok=True)  # shared: results are immutable

# The command kinds as module constants: reading a member off the enum class
# costs about 180 ns in CPython 3.11, several times per command and replica.
_READ = CommandKind.read
_REGISTER = CommandKind.register
_TRANSFER = CommandKind.transfer
_OPEN = CommandKind.open

_digest_modulus = 2**256
digest_bytes = 32


class SnapshotView:
    """A ledger's state at a checkpoint, read after the ledger went on.

    Made by Ledger.freeze() without copying the rows: it keeps the ledger's
    own containers, how many accounts each held then (accounts only enter
    `balances` and `opened`, never leave, and an owner never changes), a copy
    of the sessions (bounded by sessions_max), and `before`: the balance at
    the freeze of each account changed since, which the ledger notes before
    the change. build() reads a balance, then `before`, so in another thread
    (the GIL makes each dict operation atomic) it sees the balance at the
    freeze whichever way the two interleave. An install replaces the ledger's
    containers with new ones: the view keeps reading the old, unchanged."""

    def __init__(self, ledger: Ledger, slot: int, *, chain: bytes, digest: bytes) -> None:
        self.slot = slot
        self.chain = chain
        self.digest = digest
        self.before: dict[str, int] = {}
        self._balances = ledger.balances
        self._keys = ledger._keys
        self._key_count = len(ledger._keys)
        self._owners = ledger.owners
        self._opened = ledger.opened
        self._opened_count = len(ledger.opened)
        self._initial_balance = ledger.initial_balance
        self._clients = tuple(ledger.clients.values())  # committed longest ago first

    @property
    def rows(self) -> int:
        """How many rows build() reads (at most; balances back at their start are left out)."""
        return self._key_count + len(self._clients)

    def build(self) -> Snapshot:
        """The Snapshot, O(rows): in a host's worker thread, off its loop."""
        balances, before, owners = self._balances, self.before, self._owners
        b0 = self._initial_balance
        moved: list[tuple[str, int]] = []
        keys = self._keys
        for start in range(0, self._key_count, _view_slice):
            for account in keys[start : min(start + _view_slice, self._key_count)]:
                balance = balances[account]
                balance = before.get(account, balance)
                if balance != b0 and account not in owners:
                    moved.append((account, balance))
        opened = []
        accounts = self._opened
        for start in range(0, self._opened_count, _view_slice):
            for account in accounts[start : min(start + _view_slice, self._opened_count)]:
                balance = balances[account]
                opened.append((account, owners[account], before.get(account, balance)))
        return Snapshot(
            slot=self.slot,
            balances=tuple(moved),
            opened=tuple(opened),
            clients=self._clients,
            digest=self.digest,
            chain=self.chain,
        )


_view_slice = 4096  # accounts copied out of a list the ledger appends to, at a time


class Ledger:
    """Balances, owners and sessions; applies commands in log order."""

    view_class = SnapshotView  # what freeze() makes

    def __init__(
        self,
        accounts: Sequence[str],
        initial_balance: int,
        client_accounts: Mapping[str, Iterable[str]] | None = None,
        auditors: Iterable[str] = (),
        *,
        operators: Iterable[str] = (),
        sessions_max: int = constants.client_sessions_max_default,
    ) -> None:
        """`client_accounts`: the initial accounts each client named there may
        debit (a client not named there: the account with its own name). A read
        shows a client the accounts it may debit; `auditors` see every one.
        `operators` may open accounts for any owner."""
        assert initial_balance >= 0 and sessions_max >= 1
        self.initial = AccountNames.of(accounts)
        self.initial_balance = initial_balance
        listed = {c: tuple(a) for c, a in (client_accounts or {}).items()}
        self.client_accounts = {c: frozenset(a) for c, a in listed.items()}
        self._client_initial = {c: tuple(self._in_account_order(a)) for c, a in listed.items()}
        self.auditors = frozenset(auditors)
        self.operators = frozenset(operators)
        self.sessions_max = sessions_max
        self.total = len(self.initial) * initial_balance
        self._reset()

    def _reset(self) -> None:
        # initial accounts whose balance moved, and every opened account
        self.balances: dict[str, int] = {}
        # The accounts of `balances` in the order they entered it (never
        # removed): a SnapshotView reads the first N by position.
        self._keys: list[str] = []
        # While a SnapshotView is out: each account's balance at the freeze,
        # noted before its first change since (SnapshotView.before).
        self._frozen: dict[str, int] | None = None
        self.owners: dict[str, str] = {}  # opened account -> owner, in opening order
        self.opened: list[str] = []  # opened accounts, in opening order (for paging)
        self.owned_by: dict[str, list[str]] = {}  # owner -> its opened accounts
        # client id -> its last executed request and the outcome it got; the
        # session committed longest ago first
        self.clients: OrderedDict[str, ClientEntry] = OrderedDict()
        self.evictions = 0
        self._sum = 0
        # Since the digest was last brought up to date: account -> by how much
        # its balance changed, the accounts opened, client -> its session then
        # (None: it had none).
        self._changed: dict[str, int] = {}
        self._opened_since: list[str] = []
        self._clients_changed: dict[str, ClientEntry | None] = {}
        self._moved = 0  # by how much the balances digest() saw change moved in sum
        self._weights = _Weights(self.owners)

    def _in_account_order(self, accounts: Iterable[str]) -> list[str]:
        known = [a for a in dict.fromkeys(accounts) if a in self.initial]
        if self.initial.is_numbered:
            return sorted(known, key=self.initial.index)
        position = {a: i for i, a in enumerate(self.initial)}  # a config list: short
        return sorted(known, key=position.__getitem__)

    # ------------------------------------------------------------ accounts

    def balance(self, account: str) -> int | None:
        """The balance of `account`, or None if there is no such account."""
        balance = self.balances.get(account)
        if balance is None and account in self.initial:
            return self.initial_balance
        return balance

    @property
    def rows(self) -> int:
        """How many rows a snapshot holds at most: balances kept, sessions."""
        return len(self.balances) + len(self.clients)

    @property
    def account_count(self) -> int:
        return len(self.initial) + len(self.opened)

    def accounts(self, start: int = 0) -> Iterator[str]:
        """Every account in account order (the initial ones, then those opened),
        from position `start`."""
        initial = len(self.initial)
        first = (self.initial[i] for i in range(start, initial))
        return itertools.chain(first, itertools.islice(self.opened, max(0, start - initial), None))

    def owner(self, account: str) -> str | None:
        """Who owns `account`: its opener's choice, or for an initial account
        the client the config gives it (or its namesake); None if unknown."""
        owner = self.owners.get(account)
        if owner is not None or account not in self.initial:
            return owner
        for client, owned in self.client_accounts.items():
            if account in owned:
                return client
        return account

    def may_debit(self, client_id: str, account: str) -> bool:
        owner = self.owners.get(account)
        if owner is not None:
            return owner == client_id
        owned = self.client_accounts.get(client_id)
        return account == client_id if owned is None else account in owned

    def accounts_of(self, client_id: str) -> list[str]:
        """The accounts `client_id` may debit, in account order."""
        initial = self._client_initial.get(client_id)
        if initial is None:
            initial = (client_id,) if client_id in self.initial else ()
        return [*initial, *self.owned_by.get(client_id, ())]

    # ------------------------------------------------------------ commands

    def is_duplicate(self, command: Command) -> bool:
        """A request of the client's session already executed (or older than
        one that was); reads never are, nor requests of another session."""
        kind = command.kind
        if kind == _READ:
            return False
        entry = self.clients.get(command.client_id)
        if entry is None or (kind != _REGISTER and command.session != entry.session):
            return False
        return command.request_no <= entry.request_no

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
        kind = command.kind
        client = command.client_id
        if kind == _READ:
            return Outcome(balances=self._read(client, command.accounts), slot=slot, index=index)
        if self.is_duplicate(command):
            return None
        entry = self.clients.get(client)
        if kind == _REGISTER:
            # A new session, numbered by where it executed: no number is ever
            # given twice, so a request of an evicted session is refused even
            # after its client registered again, or after a late duplicate of
            # an old registration opened a session anew (as in TigerBeetle).
            if entry is None and len(self.clients) >= self.sessions_max:
                self._evict_oldest()
            session = session_number(slot, index)
            outcome = Outcome(slot=slot, index=index)
        elif entry is None or entry.session != command.session:
            return Outcome(evicted=True, slot=slot, index=index)  # refused, not stored
        elif kind == _TRANSFER:
            session = entry.session
            transfer = self._transfer
            transfers = command.transfers
            if len(transfers) == 1:  # most requests: no generator
                results: tuple[TransferResult, ...] = (transfer(transfers[0], client),)
            else:
                results = tuple(transfer(t, client) for t in transfers)
            outcome = Outcome(results=results, slot=slot, index=index)
        else:
            assert kind == _OPEN, kind
            session = entry.session
            owner = command.owner or client
            results = tuple(self._open(a, owner, client) for a in command.accounts)
            outcome = Outcome(results=results, slot=slot, index=index)
        self._store(
            ClientEntry(
                client_id=client, request_no=command.request_no, outcome=outcome, session=session
            )
        )
        return outcome

    def _store(self, entry: ClientEntry) -> None:
        """The client's row, noting the one it had when the digest was last
        brought up to date; committed last, so evicted last."""
        client, clients = entry.client_id, self.clients
        self._clients_changed.setdefault(client, clients.get(client))
        clients[client] = entry
        clients.move_to_end(client)

    def _evict_oldest(self) -> None:
        client, entry = self.clients.popitem(last=False)
        self._clients_changed.setdefault(client, entry)
        self.evictions += 1

    def _transfer(self, transfer: Transfer, client_id: str) -> TransferResult:
        amount = transfer.amount
        if amount <= 0:
            return TransferResult(ok=False, reason=REASON_AMOUNT)
        balances = self.balances
        sender = transfer.sender
        sent = balances.get(sender)
        sender_new = sent is None  # its first move: it enters `balances` (and `_keys`)
        if sent is None:
            if sender not in self.initial:
                return TransferResult(ok=False, reason=REASON_UNKNOWN_SENDER)
            sent = self.initial_balance
        receiver = transfer.receiver
        received = balances.get(receiver)
        receiver_new = received is None
        if received is None:
            if receiver not in self.initial:
                return TransferResult(ok=False, reason=REASON_UNKNOWN_RECEIVER)
            received = self.initial_balance
        if not self.may_debit(client_id, sender):
            return TransferResult(ok=False, reason=REASON_NOT_AUTHORIZED)
        if sender == receiver:
            return TransferResult(ok=False, reason=REASON_SAME_ACCOUNT)
        if sent < amount:
            return TransferResult(ok=False, reason=REASON_INSUFFICIENT)
        changed = self._changed
        changed[sender] = changed.get(sender, 0) - amount
        changed[receiver] = changed.get(receiver, 0) + amount
        frozen = self._frozen
        if frozen is not None:
            # Noted before the change: a view that reads the new balance then
            # finds the old one here (SnapshotView.build, in another thread).
            frozen.setdefault(sender, sent)
            frozen.setdefault(receiver, received)
        balances[sender] = sent - amount
        balances[receiver] = received + amount
        if sender_new:
            self._keys.append(sender)
        if receiver_new:
            self._keys.append(receiver)
        return TRANSFER_OK

    def _open(self, account: str, owner: str, client_id: str) -> TransferResult:
        if owner != client_id and client_id not in self.operators:
            return TransferResult(ok=False, reason=REASON_OPEN_FOR_OTHERS)
        problem = account_name_problem(account)
        if problem is not None:
            return TransferResult(ok=False, reason=problem)
        if account in self.balances or account in self.initial:
            return TransferResult(ok=False, reason=REASON_ACCOUNT_EXISTS)
        self.balances[account] = 0
        self._keys.append(account)
        self.owners[account] = owner
        self.opened.append(account)
        self.owned_by.setdefault(owner, []).append(account)
        self._opened_since.append(account)
        return TRANSFER_OK

    def _read(self, client_id: str, accounts: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
        """The balances of `accounts` (none named: every account the client may
        debit, or for an auditor every account) the client may see, in the
        order asked; at most read_balances_max."""
        auditor = client_id in self.auditors
        if accounts:
            names: Iterable[str] = dict.fromkeys(accounts)
        else:
            names = self.accounts() if auditor else self.accounts_of(client_id)
        shown: list[tuple[str, int]] = []
        for account in names:
            balance = self.balance(account)
            if balance is not None and (auditor or self.may_debit(client_id, account)):
                shown.append((account, balance))
                if len(shown) == constants.read_balances_max:
                    break
        return tuple(shown)

    # ------------------------------------------------------------ digests and snapshots

    def digest(self) -> bytes:
        """state_digest() of the current state, from the rows changed since the
        last call only. Notes on the way by how much the changed balances moved
        in sum, for check_conservation()."""
        total = self._sum
        owners = self.owners
        for account in self._opened_since:
            total += _opened_row(account, owners[account])
        changed = self._changed
        weights = self._weights
        if len(weights) > _weights_remembered_max:
            weights.clear()
        # weight x change for every account changed, summed in C (map and sum):
        # a checkpoint after many transfers changes many accounts.
        total += sum(map(operator.mul, map(weights.__getitem__, changed), changed.values()))
        self._moved += sum(changed.values())
        clients = self.clients
        for client, before_entry in self._clients_changed.items():
            now_entry = clients.get(client)
            if now_entry is before_entry:
                continue
            if now_entry is not None:
                total += _client_row(now_entry)
            if before_entry is not None:
                total -= _client_row(before_entry)
        self._changed.clear()
        self._opened_since.clear()
        self._clients_changed.clear()
        self._sum = total % _digest_modulus
        return self._sum.to_bytes(digest_bytes, "big")

    def check_conservation(self) -> None:
        """Transfers move money, never make or lose it: asserted at checkpoints
        from what digest() saw change (summing every balance would cost
        O(accounts)). That none went below zero the simulator checks, from
        every balance (ledgerpaxos/sim/checkers.py)."""
        assert self._moved == 0, f"balances changed by {self._moved} in total"

    def snapshot(self, slot: int, *, chain: bytes) -> Snapshot:
        """The state after `slot` (what differs from the initial state);
        `chain`: the decided log's chain digest there. O(rows): see freeze()."""
        view = self.freeze(slot, chain=chain)
        try:
            return view.build()
        finally:
            self.thaw()

    def freeze(self, slot: int, *, chain: bytes) -> SnapshotView:
        """The state after `slot`, as a view whose rows are read later (by a
        host's worker thread, while this ledger goes on) until thaw(). Costs
        the digest's update and a copy of the sessions (at most sessions_max),
        never O(accounts)."""
        assert self._frozen is None, "one snapshot view at a time"
        digest = self.digest()
        self.check_conservation()
        view = self.view_class(self, slot, chain=chain, digest=digest)
        self._frozen = view.before
        return view

    def thaw(self) -> None:
        """The view freeze() gave is read: stop noting balances for it."""
        self._frozen = None

    def install(self, snapshot: Snapshot) -> None:
        """Replace the whole state with a checkpoint's. The caller has checked
        it (core/validation.snapshot_refusal, and its digest)."""
        self._reset()  # a view of the state before reads what it replaces, untouched
        balances = self.balances
        balances.update(snapshot.balances)
        for account, owner, balance in snapshot.opened:
            balances[account] = balance
            self.owners[account] = owner
            self.opened.append(account)
            self.owned_by.setdefault(owner, []).append(account)
        self._keys = list(balances)
        # Eviction order is the order of the sessions' last commits.
        by_commit = sorted(snapshot.clients, key=lambda c: (c.outcome.slot, c.outcome.index))
        self.clients.update((c.client_id, c) for c in by_commit)
        self._sum = int.from_bytes(snapshot.digest, "big")

    def page(self, start: int, count: int) -> list[tuple[str, int]]:
        """`count` balances from position `start` in account order: O(count)."""
        return [(a, self.balance(a) or 0) for a in itertools.islice(self.accounts(start), count)]

    def all_balances(self) -> dict[str, int]:
        """Every balance, in account order: O(accounts), for tests and small ledgers."""
        return {a: self.balance(a) or 0 for a in self.accounts()}


def session_number(slot: int, index: int) -> int:
    """The number of the session a register opened as command `index` of
    `slot`'s batch: never given twice. A client learns it from the register's
    outcome (Outcome.slot, Outcome.index) and names it in every transfer and
    opening. Decided slots count from 1, so no session of a log is 0, the
    number a command names by default; a ledger driven without a log (slot 0,
    in tests) gives its first session 0."""
    assert slot >= 0 and 0 <= index < _session_index_range
    return slot * _session_index_range + index


_session_index_range = 1 << 16
assert constants.batch_commands_max < _session_index_range


def state_digest(snapshot: Snapshot, initial_balance: int) -> bytes:
    """The digest of a snapshot's state, computed from all of its rows (what
    Ledger.digest() keeps up to date incrementally)."""
    total = 0
    for account, balance in snapshot.balances:
        total += _weight(account, None) * (balance - initial_balance)
    for account, owner, balance in snapshot.opened:
        total += _opened_row(account, owner) + _weight(account, owner) * balance
    for entry in snapshot.clients:
        total += _client_row(entry)
    return (total % _digest_modulus).to_bytes(digest_bytes, "big")


# Every row is hashed in a form that parses one way only: each text field is
# preceded by its length, and the last field is a number.


def _row_hash(text: str) -> int:
    data = text.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=digest_bytes).digest(), "big")


_weights_remembered_max = 1 << 18


class _Weights(dict[str, int]):
    """Account -> _weight(account, its owner), computed when first asked for
    (a name is one account's: an opening never takes an initial account's name)."""

    def __init__(self, owners: Mapping[str, str]) -> None:
        super().__init__()
        self.owners = owners

    def __missing__(self, account: str) -> int:
        weight = self[account] = _weight(account, self.owners.get(account))
        return weight


def _weight(account: str, owner: str | None) -> int:
    """What one unit of `account`'s balance adds to the digest (owner None: an
    initial account). A pure function of its arguments; a ledger remembers
    those of the accounts changed lately (_Weights, bounded)."""
    if owner is not None:
        return _row_hash(f"v{len(account)}:{account}{owner}")
    return _row_hash(f"w{len(account)}:{account}")


def _opened_row(account: str, owner: str) -> int:
    return _row_hash(f"o{len(account)}:{account}{owner}")


def _client_row(c: ClientEntry) -> int:
    o = c.outcome
    results = "".join("1" if r.ok else f"0{len(r.reason or '')}:{r.reason}" for r in o.results)
    return _row_hash(
        f"c{len(c.client_id)}:{c.client_id}{len(results)}:{results}"
        f"{o.slot}.{o.index}.{c.request_no}.{c.session}"
    )
