"""A data directory's identity: whose it is, and whether it may vote yet.

    data/<node>/identity.toml      written by --format or --recover, then kept

    cluster_id = 7                 the config's cluster id
    node_id = "n1"
    incarnation = "9f0c3a1b52d4e6f7"   random, new at every format: a replica
                                       that lost its disk is a new incarnation
    formatted_at = "2026-12-02T05:50:00Z"   for people
    rejoining = true               only after --recover, until the rejoin is done

A directory is formatted once, explicitly: a replica never takes an empty or
missing directory for a new one, because an empty directory is also what a
replica that lost its disk sees, and such a replica must not vote at once
(it may have promised or accepted what it no longer knows: docs/protocol.md,
"Rejoining after a lost disk"). So `prepare` refuses, naming the flag:
`--format` for a new cluster, `--recover` for a replica that lost its disk.
`--recover` on a formatted directory that holds state (an older copy put
back) keeps the state and marks it rejoining too.
"""

from __future__ import annotations

import enum
import os
import random
import time
import tomllib
from typing import TypeVar

import attrs
import tomli_w

from ledgerpaxos.storage import files
from ledgerpaxos.storage.errors import StorageError
from ledgerpaxos.storage.filesystem import OS_FILE_SYSTEM, FileSystem

T = TypeVar("T")

identity_file_name = "identity.toml"
# What may be in a directory that holds no state: the lock, an identity's temporary.
_not_state = frozenset({"replica.lock", identity_file_name + ".tmp", files.probe_name})


class Start(enum.Enum):
    """How a replica starts on its data directory (ledgerpaxos-replica's flags)."""

    existing = "existing"  # no flag: the directory must be formatted
    format = "format"  # --format: a replica of a new cluster
    recover = "recover"  # --recover: a replica that lost its disk


class IdentityError(Exception):
    """The data directory is not one this replica may start on (the operator's
    mistake, or a lost disk): the message says which flag to use."""


@attrs.frozen(kw_only=True)
class Identity:
    cluster_id: int
    node_id: str
    incarnation: str
    formatted_at: str
    rejoining: bool


def prepare(
    directory: str | os.PathLike[str],
    *,
    cluster_id: int,
    node_id: str,
    start: Start,
    rng: random.Random | None = None,
    fs: FileSystem = OS_FILE_SYSTEM,
    fsync: bool = True,
) -> Identity:
    """The directory's identity, after formatting it when `start` says so."""
    directory = os.fspath(directory)
    state = _state_files(fs, directory)
    if start is Start.existing:
        if not state:
            raise IdentityError(
                f"{directory} holds no replica state (missing or empty): start with --format "
                "for a replica of a new cluster, or with --recover for a replica that lost "
                "its disk (it rejoins without voting until that is safe)"
            )
        identity = load(fs, directory)
        if identity is None:
            raise IdentityError(
                f"{directory} holds replica state but no {identity_file_name}; it was not "
                "formatted by this version: move it aside and start with --recover"
            )
        _check_owner(identity, directory, cluster_id=cluster_id, node_id=node_id)
        return identity
    if state and start is Start.recover:
        # An older copy put back (a backup, a volume snapshot): it is a true
        # prefix of what the replica wrote, but what came after may hold
        # promises it made. Kept, and it rejoins.
        identity = load(fs, directory)
        if identity is None:
            raise IdentityError(
                f"--recover refused: {directory} holds replica state but no "
                f"{identity_file_name}: move it aside (or empty it) and start with --recover"
            )
        _check_owner(identity, directory, cluster_id=cluster_id, node_id=node_id)
        identity = attrs.evolve(identity, rejoining=True)
        write(fs, directory, identity, fsync=fsync)
        return identity
    if state:
        raise IdentityError(
            f"--format refused: {directory} already holds replica state "
            f"({', '.join(sorted(state)[:3])}{', ...' if len(state) > 3 else ''}); "
            "start without the flag to go on with it, or with --recover if it is an "
            "older copy put back"
        )
    rng = rng or random.SystemRandom()
    identity = Identity(
        cluster_id=cluster_id,
        node_id=node_id,
        incarnation=f"{rng.getrandbits(64):016x}",
        formatted_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        rejoining=start is Start.recover,
    )
    try:
        fs.makedirs(directory)
    except OSError as error:
        raise StorageError(directory, "create data directory", error) from error
    write(fs, directory, identity, fsync=fsync)
    return identity


def load(fs: FileSystem, directory: str) -> Identity | None:
    path = os.path.join(directory, identity_file_name)
    if not fs.exists(path):
        return None
    data = files.read_file(fs, path)
    try:
        table = tomllib.loads(data.decode("utf-8"))
        return Identity(
            cluster_id=_typed(table, "cluster_id", int),
            node_id=_typed(table, "node_id", str),
            incarnation=_typed(table, "incarnation", str),
            formatted_at=_typed(table, "formatted_at", str),
            rejoining=_typed(table, "rejoining", bool),
        )
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as error:
        raise IdentityError(f"{path} is not a replica identity: {error}") from None


def write(fs: FileSystem, directory: str, identity: Identity, *, fsync: bool) -> None:
    path = os.path.join(directory, identity_file_name)
    files.write_file_durably(fs, path, tomli_w.dumps(attrs.asdict(identity)).encode(), fsync=fsync)


def _typed(table: dict[str, object], key: str, kind: type[T]) -> T:
    value = table[key]
    if type(value) is not kind:
        raise TypeError(f"{key} must be a {kind.__name__}, not {value!r}")
    return value  # its type is checked just above


def holds_state(directory: str | os.PathLike[str], fs: FileSystem = OS_FILE_SYSTEM) -> bool:
    """Whether the directory holds anything of a replica's (formatted or not)."""
    return bool(_state_files(fs, os.fspath(directory)))


def _state_files(fs: FileSystem, directory: str) -> set[str]:
    if not fs.is_directory(directory):
        return set()
    return set(files.list_directory(fs, directory)) - _not_state


def _check_owner(identity: Identity, directory: str, *, cluster_id: int, node_id: str) -> None:
    if identity.node_id != node_id or identity.cluster_id != cluster_id:
        raise IdentityError(
            f"{directory} belongs to node {identity.node_id} of cluster {identity.cluster_id}, "
            f"not to {node_id} of cluster {cluster_id}: check --id and data_dir in the config"
        )
