"""The cluster configuration: loading (tomllib), validation, writing (tomli-w).

A config file names the cluster, its accounts and its replicas; see
configs/cluster.toml and the "Configuration" section of README.md. Every
mistake in it raises `ConfigError`, whose message names the file and the
dotted key and says what to do, e.g.

    configs/cluster.toml: nodes.n3.port: expected an integer 1-65535, got "x"

Node order is the order of the [nodes.<id>] tables in the file; a node's
1-based position is its index (ballots name their proposer by it).
"""

from __future__ import annotations

import ipaddress
import json
import os
import pathlib
import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import attrs
import tomli_w

from ledgerpaxos import constants, tls
from ledgerpaxos.core.accounts import ACCOUNT_FORBIDDEN, AccountNames, account_name_problem

__all__ = [
    "Config",
    "ConfigError",
    "NodeConfig",
    "Timers",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "make_local_config",
    "write_config",
]

# Label used in messages for a config built from a dict rather than a file.
NO_FILE = "<config>"

cluster_id_max = 2**32 - 1
port_max = 65535
balance_total_max = 2**63 - 1  # all balances together fit one signed 64-bit integer

default_accounts = ("A", "B", "C", "D", "E", "F", "G", "H", "I", "J")
default_initial_balance = 10
default_checkpoint_interval = 10
default_data_dir = "data"
default_fsync = True
default_tls_dir = "tls"
default_auditor = tls.default_operator  # the shell's own reads go out as this client

_NODE_ID_RE = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
# Characters that would make an account name ambiguous in the CSV sets, whose
# transfers look like "(A, C, 1)" (core/accounts.py).
_ACCOUNT_FORBIDDEN = ACCOUNT_FORBIDDEN
_ACCOUNTS_TABLE_KEYS = ("prefix", "count", "digits")

ACCEPT_FANOUTS = ("quorum", "all")  # Config.accept_fanout

_TOP_REQUIRED = ("cluster_id", "accounts", "initial_balance", "nodes")
_TOP_OPTIONAL = (
    "checkpoint_interval",
    "snapshot_interval",
    "data_dir",
    "fsync",
    "batch_commands_max",
    "pipeline_slots_max",
    "accept_fanout",
    "timers",
    "tls",
    "clients",
    "allow_reset",
    "auditors",
    "operators",
    "client_sessions_max",
)
_TLS_KEYS = ("dir", "enabled")
_TIMER_KEYS = (
    "heartbeat_ms",
    "election_timeout_ms_min",
    "election_timeout_ms_max",
    "client_timeout_ms",
)
_NODE_KEYS = ("host", "port")


class ConfigError(Exception):
    """A mistake in a config file (the user's to fix): names the file and the key.

    `file` is the path as given (or "<config>" for a dict), `key` the dotted key
    ("" when the whole file is at fault), `problem` what is wrong and what to do.
    """

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")


@attrs.frozen(kw_only=True)
class Timers:
    """Timer settings in milliseconds (defaults in ledgerpaxos.constants)."""

    heartbeat_ms: int = constants.heartbeat_ms_default
    election_timeout_ms_min: int = constants.election_timeout_ms_min_default
    election_timeout_ms_max: int = constants.election_timeout_ms_max_default
    client_timeout_ms: int = constants.client_timeout_ms_default


@attrs.frozen(kw_only=True)
class NodeConfig:
    """One replica: its id ("n1") and the TCP address it listens on."""

    node_id: str
    host: str
    port: int


@attrs.frozen(kw_only=True)
class Config:
    """A validated cluster configuration. Build it with load_config or config_from_dict."""

    path: pathlib.Path | None  # absolute path of the file it came from, if any
    cluster_id: int
    accounts: AccountNames  # the initial accounts: a list, or a numbered range
    initial_balance: int
    checkpoint_interval: int
    data_dir: pathlib.Path  # absolute
    fsync: bool
    timers: Timers
    nodes: tuple[NodeConfig, ...]  # in file order; index = position + 1
    batch_commands_max: int
    pipeline_slots_max: int
    snapshot_interval: int = constants.snapshot_interval_default
    # "quorum": each Accept at once to the followers a majority needs, the
    # others a little later (core/fanout.py); "all": to every follower at once.
    accept_fanout: str = "quorum"
    tls_dir: pathlib.Path  # absolute: the certificates (ledgerpaxos/tls.py)
    tls_enabled: bool = True
    # Client id -> the accounts it may debit; a client not named here may
    # debit the account with its own name (core/ledger.py).
    client_accounts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    allow_reset: bool = False  # control `reset` wipes every replica: test clusters only
    auditors: tuple[str, ...] = (default_auditor,)  # clients whose reads show every balance
    operators: tuple[str, ...] = (default_auditor,)  # clients that may open accounts for anyone
    client_sessions_max: int = constants.client_sessions_max_default

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(node.node_id for node in self.nodes)

    @property
    def client_ids(self) -> tuple[str, ...]:
        """The clients the config names: those of [clients.<id>], and one per
        listed account named like it (the seed's sets; numbered accounts are
        too many to name their clients one by one)."""
        return tuple(dict.fromkeys([*(c for c, _ in self.client_accounts), *self.accounts.listed]))

    @property
    def majority(self) -> int:
        return len(self.nodes) // 2 + 1

    def node(self, node_id: str) -> NodeConfig:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        known = ", ".join(self.node_ids)
        raise ConfigError(self._label(), "nodes", f"no node {node_id!r}; use one of: {known}")

    def index_of(self, node_id: str) -> int:
        """The node's 1-based position in the file."""
        return self.nodes.index(self.node(node_id)) + 1

    def data_dir_for(self, node_id: str) -> pathlib.Path:
        """The directory holding one replica's WAL and snapshots."""
        return self.data_dir / self.node(node_id).node_id

    def _label(self) -> str:
        return str(self.path) if self.path is not None else NO_FILE


# ------------------------------------------------------------------ loading


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a TOML config file; raises ConfigError on any mistake."""
    label = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        reason = e.strerror or str(e)
        raise ConfigError(
            label, "", f"cannot read the config file ({reason}); check the path"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(label, "", "not valid UTF-8 text; save the file as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(label, "", f"TOML syntax error: {e}; fix the syntax") from None
    return config_from_dict(data, path=path)


def config_from_dict(
    data: Mapping[str, Any], *, path: str | os.PathLike[str] | None = None
) -> Config:
    """Validate parsed TOML (or an equivalent dict) and build a Config.

    `path` is only used in messages and stored in Config.path. A relative
    data_dir is resolved against the current working directory now, at load
    time, so the Config stays valid if the process changes directory later.
    """
    check = _Checker(os.fspath(path) if path is not None else NO_FILE)
    check.keys(data, "", required=_TOP_REQUIRED, optional=_TOP_OPTIONAL)

    cluster_id = check.integer(data, "cluster_id", 0, cluster_id_max)
    accounts = check.accounts(data)
    initial_balance = check.integer(data, "initial_balance", 0, None)
    if initial_balance * len(accounts) > balance_total_max:
        check.fail(
            "initial_balance",
            f"{len(accounts)} accounts of {initial_balance} exceed {balance_total_max} in total; "
            "use a smaller initial_balance",
        )
    checkpoint_interval = check.integer(
        data, "checkpoint_interval", 1, None, default_checkpoint_interval
    )
    snapshot_interval = check.integer(
        data, "snapshot_interval", 1, None, constants.snapshot_interval_default
    )
    data_dir_text = check.string(data, "data_dir", default_data_dir)
    fsync = check.boolean(data, "fsync", default_fsync)
    batch_commands_max = check.integer(
        data, "batch_commands_max", 1, constants.batch_commands_max, constants.batch_commands_max
    )
    pipeline_slots_max = check.integer(
        data, "pipeline_slots_max", 1, constants.pipeline_slots_max, constants.pipeline_slots_max
    )
    accept_fanout = check.string(data, "accept_fanout", "quorum")
    if accept_fanout not in ACCEPT_FANOUTS:
        check.fail(
            "accept_fanout",
            f"expected one of {', '.join(map(repr, ACCEPT_FANOUTS))}, got {_show(accept_fanout)}",
        )
    timers = check.timers(data)
    nodes = check.nodes(data)
    tls_dir, tls_enabled = check.tls(data, path, nodes)
    client_accounts = check.clients(data, accounts)
    allow_reset = check.boolean(data, "allow_reset", False)
    auditors = check.client_ids(data, "auditors", [default_auditor])
    operators = check.client_ids(data, "operators", [default_auditor])
    client_sessions_max = check.integer(
        data, "client_sessions_max", 1, None, constants.client_sessions_max_default
    )

    return Config(
        path=pathlib.Path(path).absolute() if path is not None else None,
        cluster_id=cluster_id,
        accounts=accounts,
        initial_balance=initial_balance,
        checkpoint_interval=checkpoint_interval,
        # Relative to the working directory at load time (see the docstring).
        data_dir=pathlib.Path(data_dir_text).absolute(),
        fsync=fsync,
        timers=timers,
        nodes=nodes,
        batch_commands_max=batch_commands_max,
        pipeline_slots_max=pipeline_slots_max,
        accept_fanout=accept_fanout,
        snapshot_interval=snapshot_interval,
        tls_dir=tls_dir,
        tls_enabled=tls_enabled,
        client_accounts=tuple(client_accounts.items()),
        allow_reset=allow_reset,
        auditors=auditors,
        operators=operators,
        client_sessions_max=client_sessions_max,
    )


class _Checker:
    """Reads values out of parsed TOML, raising ConfigError naming file and key."""

    _MISSING = object()

    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ConfigError(self.file, key, problem)

    # --- structure

    def keys(
        self,
        table: Mapping[str, Any],
        prefix: str,
        *,
        required: tuple[str, ...],
        optional: tuple[str, ...],
    ) -> None:
        """Reject unknown keys and report the first missing required one."""
        known = required + optional
        for key in table:
            if key not in known:
                self.fail(
                    _join(prefix, key),
                    "unknown key; remove it or fix its spelling "
                    f"(known keys here: {', '.join(known)})",
                )
        for key in required:
            if key not in table:
                self.fail(
                    _join(prefix, key),
                    "missing; this key is required (see README.md, Configuration)",
                )

    def table(self, parent: Mapping[str, Any], key: str, dotted: str) -> Mapping[str, Any]:
        value = parent[key]
        if not isinstance(value, dict):
            self.fail(dotted, f"expected a table [{dotted}], got {_show(value)}")
        return value

    # --- scalars

    def integer(
        self,
        table: Mapping[str, Any],
        key: str,
        low: int,
        high: int | None,
        default: Any = _MISSING,
        *,
        dotted: str | None = None,
    ) -> int:
        dotted = dotted or key
        value = table.get(key, default)
        expected = f"an integer {low}-{high}" if high is not None else f"an integer >= {low}"
        # bool is a subclass of int: `true` is not a number here.
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(dotted, f"expected {expected}, got {_show(value)}")
        if value < low or (high is not None and value > high):
            self.fail(dotted, f"expected {expected}, got {_show(value)}")
        return value

    def string(
        self,
        table: Mapping[str, Any],
        key: str,
        default: Any = _MISSING,
        *,
        dotted: str | None = None,
    ) -> str:
        dotted = dotted or key
        value = table.get(key, default)
        if not isinstance(value, str) or not value:
            self.fail(dotted, f"expected a non-empty string, got {_show(value)}")
        return value

    def boolean(
        self, table: Mapping[str, Any], key: str, default: Any, *, dotted: str | None = None
    ) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.fail(dotted or key, f"expected true or false, got {_show(value)}")
        return value

    # --- compound values

    def accounts(self, data: Mapping[str, Any]) -> AccountNames:
        value = data["accounts"]
        if isinstance(value, dict):
            return self.numbered_accounts(value)
        if not isinstance(value, list):
            self.fail(
                "accounts",
                f'expected an array of account names like ["A", "B"], or a table like '
                f'{{ prefix = "a", count = 1000000 }}, got {_show(value)}',
            )
        if not value:
            self.fail(
                "accounts",
                'the list is empty; give at least one account name, e.g. accounts = ["A", "B"]',
            )
        seen: set[str] = set()
        for i, name in enumerate(value):
            key = f"accounts[{i}]"
            if not isinstance(name, str):
                self.fail(key, f"expected an account name (a string), got {_show(name)}")
            if not name:
                self.fail(key, "account name is empty; give every account a name")
            if len(name.encode()) > constants.account_name_length_max:
                self.fail(
                    key,
                    f"account name {_show(name)} is longer than "
                    f"{constants.account_name_length_max} bytes; use a shorter name",
                )
            if any(c.isspace() or not c.isprintable() or c in _ACCOUNT_FORBIDDEN for c in name):
                self.fail(
                    key,
                    f"account name {_show(name)} contains a character that is not allowed "
                    f"(spaces, control characters, {' '.join(sorted(_ACCOUNT_FORBIDDEN))}); "
                    "use letters, digits, '_' or '-'",
                )
            if name in seen:
                self.fail(key, f"account {_show(name)} is listed twice; remove the duplicate")
            seen.add(name)
        return AccountNames(listed=tuple(value))

    def numbered_accounts(self, table: Mapping[str, Any]) -> AccountNames:
        """accounts = { prefix = "a", count = 1000, digits = 4 }: a0000 ... a0999."""
        self.keys(table, "accounts", required=("prefix", "count"), optional=("digits",))
        prefix = self.string(table, "prefix", dotted="accounts.prefix")
        count = self.integer(table, "count", 1, None, dotted="accounts.count")
        digits = self.integer(table, "digits", 0, None, 0, dotted="accounts.digits")
        names = AccountNames.numbered(prefix, count, digits)
        for name in (names[0], names[count - 1]):  # the longest name is the last
            problem = account_name_problem(name)
            if problem is not None:
                self.fail(
                    "accounts.prefix", f"{problem} (account {_show(name)}); change the prefix"
                )
        return names

    def timers(self, data: Mapping[str, Any]) -> Timers:
        if "timers" not in data:
            return Timers()
        table = self.table(data, "timers", "timers")
        self.keys(table, "timers", required=(), optional=_TIMER_KEYS)
        defaults = attrs.asdict(Timers())
        values: dict[str, int] = {}
        for key in _TIMER_KEYS:
            # Heartbeats and elections are counted in core ticks, so they need
            # at least one tick; the client timeout is plain wall time.
            low = 1 if key == "client_timeout_ms" else constants.tick_ms
            values[key] = self.integer(table, key, low, None, defaults[key], dotted=f"timers.{key}")
        timers = Timers(**values)
        if timers.election_timeout_ms_min >= timers.election_timeout_ms_max:
            self.fail(
                "timers.election_timeout_ms_min",
                "must be less than timers.election_timeout_ms_max "
                f"({timers.election_timeout_ms_min} >= {timers.election_timeout_ms_max}); "
                "lower the min or raise the max",
            )
        if timers.heartbeat_ms * 2 >= timers.election_timeout_ms_min:
            self.fail(
                "timers.heartbeat_ms",
                f"twice the heartbeat ({timers.heartbeat_ms * 2} ms) must be less than "
                f"timers.election_timeout_ms_min ({timers.election_timeout_ms_min} ms); "
                "lower heartbeat_ms or raise election_timeout_ms_min",
            )
        return timers

    def tls(
        self,
        data: Mapping[str, Any],
        path: str | os.PathLike[str] | None,
        nodes: tuple[NodeConfig, ...],
    ) -> tuple[pathlib.Path, bool]:
        """tls.dir, relative to the config file's directory (to the working
        directory for a config that is not a file), and tls.enabled: off only
        where no byte leaves the machine."""
        table: Mapping[str, Any] = {}
        if "tls" in data:
            table = self.table(data, "tls", "tls")
            self.keys(table, "tls", required=(), optional=_TLS_KEYS)
        text = self.string(table, "dir", default_tls_dir, dotted="tls.dir")
        enabled = self.boolean(table, "enabled", True, dotted="tls.enabled")
        if not enabled:
            remote = [n.node_id for n in nodes if not _is_loopback(n.host)]
            if remote:
                self.fail(
                    "tls.enabled",
                    f"false is only for experiments on one machine, but {', '.join(remote)} "
                    "listen on addresses other machines can reach; remove the key to use TLS",
                )
        base = pathlib.Path(path).absolute().parent if path is not None else pathlib.Path.cwd()
        return (base / text).absolute(), enabled

    def client_ids(self, data: Mapping[str, Any], key: str, default: list[str]) -> tuple[str, ...]:
        value = data.get(key, default)
        if not isinstance(value, list) or not all(
            isinstance(c, str) and _NODE_ID_RE.fullmatch(c) for c in value
        ):
            self.fail(key, f"expected an array of client ids, got {_show(value)}")
        return tuple(dict.fromkeys(value))

    def clients(
        self, data: Mapping[str, Any], accounts: AccountNames
    ) -> dict[str, tuple[str, ...]]:
        """[clients.<id>] accounts = [...]: the accounts client <id> may debit."""
        if "clients" not in data:
            return {}
        table = self.table(data, "clients", "clients")
        known = accounts
        found: dict[str, tuple[str, ...]] = {}
        for client_id, fields in table.items():
            prefix = f"clients.{client_id}"
            if not _NODE_ID_RE.fullmatch(client_id) or len(client_id) > 64:
                self.fail(prefix, "a client id is a letter, then letters, digits, '_' or '-'")
            if not isinstance(fields, dict):
                self.fail(prefix, f"expected a table [{prefix}], got {_show(fields)}")
            self.keys(fields, prefix, required=("accounts",), optional=())
            owned = fields["accounts"]
            if not isinstance(owned, list) or not all(isinstance(a, str) for a in owned):
                self.fail(
                    f"{prefix}.accounts", f"expected an array of account names, got {_show(owned)}"
                )
            unknown = [a for a in owned if a not in known]
            if unknown:
                self.fail(
                    f"{prefix}.accounts",
                    f"{', '.join(map(_show, unknown))} not in accounts; list only accounts of the cluster",
                )
            found[client_id] = tuple(dict.fromkeys(owned))
        return found

    def nodes(self, data: Mapping[str, Any]) -> tuple[NodeConfig, ...]:
        table = self.table(data, "nodes", "nodes")
        if not table:
            self.fail("nodes", "no nodes; add at least one [nodes.<id>] table with host and port")
        if len(table) > constants.replicas_max:
            self.fail(
                "nodes", f"{len(table)} nodes; at most {constants.replicas_max} are supported"
            )
        nodes: list[NodeConfig] = []
        addresses: dict[tuple[str, int], str] = {}
        for node_id in table:
            prefix = _join("nodes", str(node_id))
            if (
                not isinstance(node_id, str)
                or not _NODE_ID_RE.fullmatch(node_id)
                or len(node_id.encode()) > constants.node_id_length_max
            ):
                self.fail(
                    prefix,
                    f"node id {_show(node_id)} is not a short identifier; use a letter "
                    "followed by letters, digits, '_' or '-', at most "
                    f"{constants.node_id_length_max} characters (e.g. n1)",
                )
            fields = self.table(table, node_id, prefix)
            self.keys(fields, prefix, required=(), optional=_NODE_KEYS)
            for key in _NODE_KEYS:
                if key not in fields:
                    self.fail(_join(prefix, key), "missing; every node needs host and port")
            host = self.string(fields, "host", dotted=_join(prefix, "host"))
            port = self.integer(fields, "port", 1, port_max, dotted=_join(prefix, "port"))
            address = (host.lower(), port)
            if address in addresses:
                self.fail(
                    prefix,
                    f"address {host}:{port} is also used by node {addresses[address]}; "
                    "give every node its own host and port",
                )
            addresses[address] = node_id
            nodes.append(NodeConfig(node_id=node_id, host=host, port=port))
        return tuple(nodes)


def _join(prefix: str, key: str) -> str:
    """A dotted TOML key; parts that are not bare keys are quoted."""
    part = key if _BARE_KEY_RE.fullmatch(key) else json.dumps(key, ensure_ascii=False)
    return f"{prefix}.{part}" if prefix else part


def _show(value: Any) -> str:
    """A value as it would look in TOML, short enough for a message."""
    if value is _Checker._MISSING:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= 60 else text[:56] + '..."'
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__} ({value})"


# ------------------------------------------------------------------ writing


def config_to_dict(config: Config) -> dict[str, Any]:
    """The config as a TOML-ready dict with every key spelled out."""
    return {
        "cluster_id": config.cluster_id,
        "accounts": _accounts_to_toml(config.accounts),
        "initial_balance": config.initial_balance,
        "checkpoint_interval": config.checkpoint_interval,
        "snapshot_interval": config.snapshot_interval,
        "data_dir": str(config.data_dir),
        "fsync": config.fsync,
        "batch_commands_max": config.batch_commands_max,
        "pipeline_slots_max": config.pipeline_slots_max,
        "accept_fanout": config.accept_fanout,
        "timers": attrs.asdict(config.timers),
        "tls": {"dir": str(config.tls_dir), "enabled": config.tls_enabled},
        "clients": {c: {"accounts": list(a)} for c, a in config.client_accounts},
        "allow_reset": config.allow_reset,
        "auditors": list(config.auditors),
        "operators": list(config.operators),
        "client_sessions_max": config.client_sessions_max,
        "nodes": {node.node_id: {"host": node.host, "port": node.port} for node in config.nodes},
    }


def _accounts_to_toml(accounts: AccountNames) -> Any:
    if accounts.is_numbered:
        return {"prefix": accounts.prefix, "count": accounts.size, "digits": accounts.digits}
    return list(accounts)


def write_config(config: Config, path: str | os.PathLike[str]) -> None:
    """Write the config as TOML (atomically: temporary file, then rename).

    load_config(path) gives back an equal Config, apart from `path`.
    """
    target = pathlib.Path(path)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(tomli_w.dumps(config_to_dict(config)), encoding="utf-8")
    os.replace(temporary, target)


def make_local_config(
    n: int,
    base_port: int | Sequence[int],
    data_dir: str | os.PathLike[str],
    *,
    hosts: Sequence[str] | None = None,
    **overrides: Any,
) -> Config:
    """n nodes n1..n<n> on 127.0.0.1 (or on the n `hosts` given), ports
    base_port, base_port+1, ... or the n ports given (for tests;
    tools/cluster/ports.py reserves them).

    `overrides` are config keys that replace the defaults (accounts A-J,
    initial balance 10, cluster id 1); `timers` may be a dict of some timer
    keys or a Timers. Invalid values raise ConfigError like a bad file would.
    """
    ports = [base_port + i for i in range(n)] if isinstance(base_port, int) else list(base_port)
    if len(ports) != n:
        raise ValueError(f"{n} nodes need {n} ports, got {len(ports)}")
    addresses = list(hosts) if hosts is not None else ["127.0.0.1"] * n
    if len(addresses) != n:
        raise ValueError(f"{n} nodes need {n} hosts, got {len(addresses)}")
    data: dict[str, Any] = {
        "cluster_id": 1,
        "accounts": list(default_accounts),
        "initial_balance": default_initial_balance,
        "data_dir": os.fspath(data_dir),
        "nodes": {
            f"n{i}": {"host": host, "port": port}
            for i, (host, port) in enumerate(zip(addresses, ports, strict=True), start=1)
        },
    }
    # In-process test clusters speak plaintext unless a test asks for TLS
    # (tls={"enabled": True, "dir": ...}): loopback only, so it is allowed.
    data["tls"] = {"enabled": False}
    data["allow_reset"] = True  # the CSV sets' `reset` between runs
    for key, value in overrides.items():
        data[key] = _plain(value)
    return config_from_dict(data)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def _plain(value: Any) -> Any:
    """An override value as parsed TOML would have it."""
    if isinstance(value, Timers):
        return attrs.asdict(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, pathlib.PurePath):
        return os.fspath(value)
    return value
