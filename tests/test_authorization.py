"""Who may debit what: decided in the replicated state machine, the same on every replica.

A client may debit the accounts its [clients.<id>] table lists, or else the
account with its own name (the seed's rule); any other transfer is refused
with "not authorized", a result like insufficient funds. With TLS the
client id is the certificate's (tests/test_tls_runtime.py), so nobody can
borrow another client's rights or request numbers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerpaxos import tls
from ledgerpaxos.config import ConfigError, config_from_dict
from ledgerpaxos.core import Ledger
from ledgerpaxos.core.ledger import REASON_NOT_AUTHORIZED
from ledgerpaxos.core.messages import Command, CommandKind, Transfer
from tests.corenet import CoreNet
from tests.test_tls_runtime import tls_cluster, tls_config


def command(client: str, sender: str, receiver: str = "J", amount: int = 5, n: int = 1) -> Command:
    return Command(
        client_id=client,
        request_no=n,
        kind=CommandKind.transfer,
        transfers=(Transfer(sender=sender, receiver=receiver, amount=amount),),
    )


def registered(ledger: Ledger, *clients: str) -> Ledger:
    for client in clients:
        ledger.execute(Command(client_id=client, request_no=0, kind=CommandKind.register))
    return ledger


def test_a_client_debits_its_own_account_or_those_its_table_lists() -> None:
    ledger = registered(Ledger("ABCJ", 10, {"alice": ["A", "B"]}), "A", "mallory", "alice", "C")
    assert ledger.execute(command("A", "A")).ok  # its own name
    refused = ledger.execute(command("mallory", "A", n=1))
    assert refused is not None and refused.reason == REASON_NOT_AUTHORIZED
    assert ledger.execute(command("alice", "B", n=1)).ok
    assert ledger.execute(command("alice", "C", n=2)).reason == REASON_NOT_AUTHORIZED
    assert ledger.execute(command("C", "B", n=1)).reason == REASON_NOT_AUTHORIZED
    assert ledger.all_balances() == {"A": 5, "B": 5, "C": 10, "J": 20}
    # An unknown or equal account still says so first: no account is revealed to be someone's.
    assert ledger.execute(command("A", "Z", n=2)).reason == "unknown sender account"


def test_every_replica_refuses_the_same_transfer() -> None:
    net = CoreNet()
    net.run_until(lambda: net.leader() is not None)
    leader = net.leader()
    assert leader is not None
    net.submit(leader, "mallory", [("A", "J", 5)])
    net.submit(leader, "A", [("A", "J", 1)])
    net.run(20)
    for node in net.ids:
        assert net.cores[node].balances()["A"] == 9 and net.cores[node].balances()["J"] == 11
    net.check_agreement()


def test_clients_tables_in_the_config_are_checked() -> None:
    data = {
        "cluster_id": 1,
        "accounts": ["A", "B"],
        "initial_balance": 1,
        "nodes": {"n1": {"host": "127.0.0.1", "port": 7001}},
    }
    config = config_from_dict({**data, "clients": {"alice": {"accounts": ["A", "B"]}}})
    assert dict(config.client_accounts) == {"alice": ("A", "B")}
    assert config.client_ids == ("alice", "A", "B")
    with pytest.raises(ConfigError, match=r'clients\.bob\.accounts: "Z" not in accounts'):
        config_from_dict({**data, "clients": {"bob": {"accounts": ["A", "Z"]}}})
    with pytest.raises(ConfigError, match=r"clients\.bob\.owns: unknown key"):
        config_from_dict({**data, "clients": {"bob": {"accounts": [], "owns": 1}}})


async def test_over_tls_a_client_moves_only_its_own_money(
    tmp_path: Path, autojump_clock: object
) -> None:
    from ledgerpaxos.client import open_client

    config = tls_config(tmp_path)
    async with tls_cluster(config) as network:
        async with open_client(config, "A", network=network) as client:
            refused = await client.transfer("B", "J", 5)  # what client "mallory" did before
            assert not refused.ok and refused.reason == REASON_NOT_AUTHORIZED
            assert (await client.transfer("A", "J", 5)).ok
            assert await client.balances() == {"A": 5}  # a read shows a client its own
        operator = tls.operator("admin")  # the shell does the same
        async with open_client(config, "admin", network=network, identity=operator) as auditor:
            balances = await auditor.balances()  # an auditor's shows every balance
        assert (balances["A"], balances["B"], balances["J"]) == (5, 10, 15)


def test_a_read_shows_a_client_the_accounts_it_may_debit_and_an_auditor_all() -> None:
    ledger = Ledger("ABC", 10, {"alice": ["A", "B"]}, auditors=["admin"])
    read = {"kind": CommandKind.read, "transfers": ()}

    def balances(client: str) -> dict[str, int]:
        outcome = ledger.execute(Command(client_id=client, request_no=1, **read))
        assert outcome is not None and outcome.balances is not None
        return dict(outcome.balances)

    assert balances("alice") == {"A": 10, "B": 10}
    assert balances("C") == {"C": 10}
    assert balances("mallory") == {}
    assert balances("admin") == {"A": 10, "B": 10, "C": 10}
