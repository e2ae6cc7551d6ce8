"""What a vote and a commit name: a digest of a slot's value, and a chain of the decided log.

A vote (Accepted) names the digest of the value it is for, so a leader counts
it only for the value it proposed. A commit point travels with the chain
digest of the decided log up to it, `chain(s) = H(chain(s-1), s, digest(s))`,
so a follower commits its entries only when they are, slot for slot, the
values the leader decided. Catch-up replies carry the chain at their last
entry, and a snapshot the chain at its slot. TigerBeetle's prepares work the
same way: each header holds the checksum of its body and of its parent, and a
commit names the checksum of the prepare it commits.

These are checks against values that are wrong, not against a peer that
lies with care: a peer that holds a node's key and computes digests of its
own values can still make them look right (docs/security.md). blake2b with
16 bytes: a collision by accident is out of the question, and the digests are
hashed once per entry per replica.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledgerpaxos.core.messages import Batch

digest_bytes = 16
chain_start = bytes(digest_bytes)  # the chain before slot 1: nothing decided


def batch_digest(batch: Batch) -> bytes:
    """blake2b over a canonical text form of the batch: every field of every
    command and transfer, separated so that no two batches share a form."""
    parts: list[str] = []
    for c in batch:
        parts.append(f"{c.client_id}\x1f{c.request_no}\x1f{int(c.kind)}\x1f{len(c.transfers)}\x1e")
        parts.extend(f"{t.sender}\x1f{t.receiver}\x1f{t.amount}\x1e" for t in c.transfers)
    return hashlib.blake2b("".join(parts).encode(), digest_size=digest_bytes).digest()


def chain_next(chain: bytes, slot: int, digest: bytes) -> bytes:
    """The chain after deciding `digest` for `slot` on top of `chain`."""
    h = hashlib.blake2b(chain, digest_size=digest_bytes)
    h.update(slot.to_bytes(8, "big"))
    h.update(digest)
    return h.digest()
