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
16 bytes: a collision by accident is out of the question. A batch is hashed
once per entry per replica, over its wire encoding (about 0.1 ms for 6,400
transfers, against 2.5 ms for a text form built in Python: at 64 x 100 that
was 6% of the cluster's CPU).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledgerpaxos.core.messages import Batch

digest_bytes = 16
chain_start = bytes(digest_bytes)  # the chain before slot 1: nothing decided


def batch_digest(batch: Batch) -> bytes:
    """blake2b of the batch's wire encoding (wire/batch.py): canonical, and
    nearly free, as every batch a replica holds was just encoded (the leader's
    WAL record and Accepts) or decoded (a follower's Accept) and the codec
    remembers the bytes of recent batches. A batch the wire cannot carry never
    comes from a peer; it is digested in a text form instead (tests build such)."""
    from wire.batch import encode_batch  # here: wire imports these messages

    try:
        data = encode_batch(batch)
    except ValueError:
        data = _text_form(batch)
    return hashlib.blake2b(data, digest_size=digest_bytes).digest()


def _text_form(batch: Batch) -> bytes:
    parts: list[str] = []
    for c in batch:
        parts.append(
            f"{c.client_id!r}\x1f{c.request_no!r}\x1f{c.kind!r}\x1f{c.accounts!r}\x1f{c.owner!r}\x1e"
        )
        parts.extend(f"{t.sender!r}\x1f{t.receiver!r}\x1f{t.amount!r}\x1e" for t in c.transfers)
    return "".join(parts).encode("utf-8", "surrogatepass")


def chain_next(chain: bytes, slot: int, digest: bytes) -> bytes:
    """The chain after deciding `digest` for `slot` on top of `chain`."""
    h = hashlib.blake2b(chain, digest_size=digest_bytes)
    h.update(slot.to_bytes(8, "big"))
    h.update(digest)
    return h.digest()
