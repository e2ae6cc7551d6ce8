"""Asking replicas control questions: one, all at once, and waiting for a leader.

The shell, the set driver, the benchmark and the process tests all look at a
cluster the same way, through these: `ask` one replica (its JSON body, or
ControlRefused / ClientTimeout / OSError), `ask_all` at once (every answer or
its error), `wait_for_leader` until every replica names the same one, and
`highest_leader` among the answers of `print_view`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import trio

from ledgerpaxos import constants
from ledgerpaxos.client import ClientTimeout, control
from ledgerpaxos.config import Config
from ledgerpaxos.core.messages import ControlOp
from ledgerpaxos.runtime.network import Network

control_timeout_s = constants.control_timeout_ms / 1000
leader_poll_s = 0.05


class ControlRefused(Exception):
    """The replica answered, and refused the request (its reason in `body`)."""

    def __init__(self, node_id: str, op: ControlOp, body: dict[str, Any]) -> None:
        super().__init__(f"{node_id} refused {op.name}: {body.get('reason', body)}")
        self.body = body


class NoLeader(Exception):
    """The replicas did not agree on a leader in time."""


@attrs.frozen
class Answer:
    """One replica's answer (`body`), or why there is none (`error`)."""

    node: str
    body: dict[str, Any] | None = None
    error: Exception | None = None  # ControlRefused, ClientTimeout or an OSError


async def ask(
    config: Config,
    node_id: str,
    op: ControlOp,
    argument: int = 0,
    *,
    network: Network | None = None,
    timeout_s: float = control_timeout_s,
) -> dict[str, Any]:
    """One replica's answer; ControlRefused, ClientTimeout or OSError if none."""
    reply = await control(config, node_id, op, argument, network=network, timeout_s=timeout_s)
    body: dict[str, Any] = json.loads(reply.body)
    if not reply.ok:
        raise ControlRefused(node_id, op, body)
    return body


async def ask_all(
    config: Config,
    op: ControlOp,
    argument: int = 0,
    *,
    nodes: Iterable[str] | None = None,
    network: Network | None = None,
    timeout_s: float = control_timeout_s,
) -> dict[str, Answer]:
    """The same request to every replica in `nodes` (all by default) at
    once; every answer or its error, in the order asked."""
    node_ids = list(nodes) if nodes is not None else list(config.node_ids)
    answers: dict[str, Answer] = {}

    async def one(node_id: str) -> None:
        try:
            # A bound whatever the network does: `control` bounds only the wait for a reply.
            with trio.fail_after(timeout_s + 1):
                body = await ask(
                    config, node_id, op, argument, network=network, timeout_s=timeout_s
                )
            answers[node_id] = Answer(node_id, body=body)
        except trio.TooSlowError:
            answers[node_id] = Answer(node_id, error=ClientTimeout("timed out"))
        except (ControlRefused, ClientTimeout, OSError) as error:
            answers[node_id] = Answer(node_id, error=error)

    async with trio.open_nursery() as nursery:
        for node_id in node_ids:
            nursery.start_soon(one, node_id)
    return {n: answers[n] for n in node_ids}


def bodies(answers: dict[str, Answer]) -> dict[str, dict[str, Any]]:
    """The answers that came, by node."""
    return {n: a.body for n, a in answers.items() if a.body is not None}


def agreed_leader(answers: dict[str, Answer]) -> str | None:
    """The leader every replica names in its answer (ping or print_view),
    None unless all answered and agree."""
    leaders = {a.body["leader"] if a.body is not None else None for a in answers.values()}
    if len(leaders) == 1 and None not in leaders:
        return str(leaders.pop())
    return None


def highest_leader(views: dict[str, dict[str, Any]]) -> str | None:
    """Among print_view answers, the alive replica that leads with the highest ballot."""
    leaders = [
        (ballot_key(v["ballot"]), node)
        for node, v in views.items()
        if v["role"] == "leader" and v["alive"]
    ]
    return max(leaders)[1] if leaders else None


def ballot_key(ballot: str) -> tuple[int, int]:
    """A ballot as control prints it, "round.node", in ballot order."""
    round_, _, node = ballot.partition(".")
    return int(round_), int(node)


async def wait_for_leader(
    config: Config,
    *,
    timeout_s: float,
    network: Network | None = None,
    check: Callable[[], None] | None = None,
) -> str:
    """The leader every replica names, once they all answer and agree;
    NoLeader saying what was last seen if that takes over `timeout_s`.
    `check` runs before every poll (a launcher raising when a process died)."""
    last = "no answer yet"
    with trio.move_on_after(timeout_s):
        while True:
            if check is not None:
                check()
            answers = await ask_all(config, ControlOp.ping, network=network)
            leader = agreed_leader(answers)
            if leader is not None:
                return leader
            silent = [f"{n}: {a.error}" for n, a in answers.items() if a.error is not None]
            named = sorted({str(a.body["leader"]) for a in answers.values() if a.body is not None})
            last = "; ".join(silent) if silent else f"leaders named: {', '.join(named)}"
            await trio.sleep(leader_poll_s)
    raise NoLeader(f"no leader within {timeout_s:g} s ({last})")
