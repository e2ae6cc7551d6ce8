"""The numbers one replica core runs with, in ticks and counts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from ledgerpaxos import constants

if TYPE_CHECKING:
    from ledgerpaxos.config import Config


def ticks_for(ms: int) -> int:
    return max(1, -(-ms // constants.tick_ms))


@attrs.frozen(kw_only=True)
class CoreSettings:
    node_id: str
    node_ids: tuple[str, ...]  # configuration order; a node's index is its position + 1
    accounts: Sequence[str]  # the initial accounts (an AccountNames from a config)
    initial_balance: int
    checkpoint_interval: int
    heartbeat_ticks: int
    election_timeout_ticks_min: int
    election_timeout_ticks_max: int
    catchup_retry_ticks: int = ticks_for(constants.catchup_retry_ms)
    rejoin_retry_ticks: int = ticks_for(constants.rejoin_retry_ms)
    batch_commands_max: int = constants.batch_commands_max
    pipeline_slots_max: int = constants.pipeline_slots_max
    # Each Accept at once only to the followers a majority needs (core/fanout.py).
    accepts_to_quorum: bool = True
    pending_commands_max: int = constants.pending_commands_max
    pending_transfers_max: int = constants.pending_transfers_max
    catchup_slots_max: int = constants.catchup_slots_max
    snapshot_interval: int = constants.snapshot_interval_default
    snapshot_transfers_min: int = constants.snapshot_transfers_min
    snapshot_work_per_row_min: int = constants.snapshot_work_per_row_min
    install_part_units_max: int = constants.install_part_units_max
    # Who may debit which account (Ledger's client_accounts), as the config says.
    client_accounts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    auditors: tuple[str, ...] = ()  # clients whose reads show every balance
    operators: tuple[str, ...] = ()  # clients that may open accounts for others
    client_sessions_max: int = constants.client_sessions_max_default

    def __attrs_post_init__(self) -> None:
        assert self.node_id in self.node_ids
        assert len(set(self.node_ids)) == len(self.node_ids)
        assert 1 <= len(self.node_ids) <= constants.replicas_max
        assert self.checkpoint_interval >= 1
        assert self.snapshot_interval >= 1 and self.snapshot_transfers_min >= 1
        assert self.install_part_units_max >= 1
        assert 0 < self.heartbeat_ticks < self.election_timeout_ticks_min
        assert self.election_timeout_ticks_min <= self.election_timeout_ticks_max

    @property
    def rejoin_wait_ticks(self) -> int:
        """A rejoining replica asks only once every candidacy that may hold a
        promise it forgot has ended (core/rejoin.py): twice the longest one."""
        return 2 * self.election_timeout_ticks_max

    @property
    def majority(self) -> int:
        return len(self.node_ids) // 2 + 1

    @property
    def index(self) -> int:
        return self.index_of(self.node_id)

    def index_of(self, node_id: str) -> int:
        return self.node_ids.index(node_id) + 1

    @staticmethod
    def from_config(config: Config, node_id: str) -> CoreSettings:
        t = config.timers
        return CoreSettings(
            node_id=node_id,
            node_ids=tuple(config.node_ids),
            accounts=config.accounts,
            initial_balance=config.initial_balance,
            checkpoint_interval=config.checkpoint_interval,
            heartbeat_ticks=ticks_for(t.heartbeat_ms),
            election_timeout_ticks_min=ticks_for(t.election_timeout_ms_min),
            election_timeout_ticks_max=ticks_for(t.election_timeout_ms_max),
            batch_commands_max=config.batch_commands_max,
            pipeline_slots_max=config.pipeline_slots_max,
            accepts_to_quorum=config.accept_fanout == "quorum",
            snapshot_interval=config.snapshot_interval,
            client_accounts=config.client_accounts,
            auditors=config.auditors,
            operators=config.operators,
            client_sessions_max=config.client_sessions_max,
        )
