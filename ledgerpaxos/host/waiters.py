"""Who waits on which request: the one map from a command's key to its waiters.

A waiter is whatever a host answers a client through: a connection in the
runtime, a client's name in the simulator. Both directions are bounded: a
waiter waits on at most `per_waiter_max` requests (its oldest wait is
forgotten first), and at most `keys_max` requests are waited on at all. A
forgotten wait costs the client a retry, never a wrong answer: the ledger's
client table answers the retry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

from ledgerpaxos.core.messages import CommandKey

W = TypeVar("W", bound=Hashable)


class Waiters(Generic[W]):
    def __init__(self, *, keys_max: int, per_waiter_max: int) -> None:
        assert keys_max >= 1 and per_waiter_max >= 1
        self._keys_max = keys_max
        self._per_waiter_max = per_waiter_max
        self._by_key: OrderedDict[CommandKey, set[W]] = OrderedDict()  # oldest wait first
        self._by_waiter: dict[W, OrderedDict[CommandKey, None]] = {}

    def __len__(self) -> int:
        """Requests waited on."""
        return len(self._by_key)

    def wait(self, key: CommandKey, waiter: W) -> None:
        """`waiter` wants the reply to `key`."""
        waiters = self._by_key.get(key)
        if waiters is None:
            waiters = self._by_key[key] = set()
        else:
            self._by_key.move_to_end(key)
        waiters.add(waiter)
        keys = self._by_waiter.get(waiter)
        if keys is None:
            keys = self._by_waiter[waiter] = OrderedDict()
        keys[key] = None
        keys.move_to_end(key)
        while len(keys) > self._per_waiter_max:
            oldest, _ = keys.popitem(last=False)
            self._drop(oldest, waiter)
        while len(self._by_key) > self._keys_max:
            oldest, dropped = self._by_key.popitem(last=False)
            for other in dropped:
                self._unlink(oldest, other)

    def take(self, key: CommandKey) -> set[W]:
        """Everyone waiting on `key`, who wait no longer."""
        waiters = self._by_key.pop(key, None)
        if waiters is None:
            return set()
        for waiter in waiters:
            self._unlink(key, waiter)
        return waiters

    def forget(self, waiter: W) -> None:
        """`waiter` is gone (a closed connection): drop each of its waits."""
        for key in self._by_waiter.pop(waiter, ()):
            self._drop(key, waiter)

    def clear(self) -> None:
        self._by_key.clear()
        self._by_waiter.clear()

    def _drop(self, key: CommandKey, waiter: W) -> None:
        waiters = self._by_key.get(key)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._by_key[key]

    def _unlink(self, key: CommandKey, waiter: W) -> None:
        keys = self._by_waiter.get(waiter)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self._by_waiter[waiter]
