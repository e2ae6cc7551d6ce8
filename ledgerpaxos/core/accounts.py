"""Account names: the rule every name obeys, and the config's initial accounts.

The config names its initial accounts either as a list or, for many, as a
numbered range (`prefix` followed by a zero-padded number below `count`), which
is held here as those two values: a replica with ten million initial accounts
keeps no list of them, and a balance exists in memory only once it differs from
the initial one (core/ledger.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import attrs

from ledgerpaxos import constants

ACCOUNT_FORBIDDEN = frozenset(",()[]\"'")


def account_name_problem(name: str) -> str | None:
    """What is wrong with `name` as an account name, or None. The same rule
    for the config's accounts and for accounts opened through the log."""
    if not name:
        return "account name is empty"
    if len(name.encode("utf-8", "surrogatepass")) > constants.account_name_length_max:
        return f"account name is longer than {constants.account_name_length_max} bytes"
    if any(c.isspace() or not c.isprintable() or c in ACCOUNT_FORBIDDEN for c in name):
        return (
            "account name contains a character that is not allowed (spaces, control "
            f"characters, {' '.join(sorted(ACCOUNT_FORBIDDEN))}); use letters, digits, '_' or '-'"
        )
    return None


@attrs.frozen(eq=False)
class AccountNames(Sequence[str]):
    """The initial accounts, in order: `listed` names, or `count` numbered
    names `prefix` + a number of `digits` digits (0, 1, ... count - 1)."""

    listed: tuple[str, ...] = ()
    prefix: str = ""
    size: int = 0  # of the numbered form ("count" in the config)
    digits: int = 0
    _members: frozenset[str] | None = attrs.field(default=None, eq=False, repr=False)

    def __eq__(self, other: object) -> bool:
        """Equal to the same accounts, also given as a tuple or a list."""
        if isinstance(other, AccountNames):
            return (self.listed, self.prefix, self.size, self.digits) == (
                other.listed,
                other.prefix,
                other.size,
                other.digits,
            )
        if isinstance(other, tuple | list):
            return not self.is_numbered and self.listed == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.listed, self.prefix, self.size, self.digits))

    @staticmethod
    def of(names: Sequence[str]) -> AccountNames:
        if isinstance(names, AccountNames):
            return names
        return AccountNames(listed=tuple(names))

    @staticmethod
    def numbered(prefix: str, count: int, digits: int = 0) -> AccountNames:
        assert count >= 1
        width = max(digits, len(str(count - 1)))
        return AccountNames(prefix=prefix, size=count, digits=width)

    @property
    def is_numbered(self) -> bool:
        return not self.listed and self.size > 0

    def __len__(self) -> int:
        return self.size if self.is_numbered else len(self.listed)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...

    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if self.is_numbered and start == 0 and step == 1 and stop > 0:
                return AccountNames(prefix=self.prefix, size=stop, digits=self.digits)
            return [self[i] for i in range(start, stop, step)]
        if not self.is_numbered:
            return self.listed[index]
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(index)
        return f"{self.prefix}{index:0{self.digits}d}"

    def __iter__(self) -> Iterator[str]:
        if not self.is_numbered:
            return iter(self.listed)
        prefix, digits = self.prefix, self.digits
        return (f"{prefix}{i:0{digits}d}" for i in range(self.size))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if not self.is_numbered:
            members = self._members
            if members is None:
                members = frozenset(self.listed)
                object.__setattr__(self, "_members", members)
            return name in members
        start = len(self.prefix)
        number = name[start:]
        return (
            len(number) == self.digits
            and name.startswith(self.prefix)
            and number.isascii()
            and number.isdigit()
            and int(number) < self.size
        )

    def index(self, name: object, start: int = 0, stop: int | None = None) -> int:
        if self.is_numbered and name in self:
            assert isinstance(name, str)
            return int(name[len(self.prefix) :])
        return self.listed.index(name)

    def describe(self) -> str:
        if self.is_numbered:
            return f"{self.size:,} accounts {self[0]}..{self[self.size - 1]}"
        return f"{len(self.listed)} accounts"
