"""Config loading, validation messages, writing and make_local_config."""

from __future__ import annotations

import copy
import pathlib
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import tomli_w

from ledgerpaxos import constants
from ledgerpaxos.config import (
    Config,
    ConfigError,
    NodeConfig,
    Timers,
    config_from_dict,
    config_to_dict,
    load_config,
    make_local_config,
    write_config,
)
from ledgerpaxos.core.settings import CoreSettings

SHIPPED = pathlib.Path(__file__).resolve().parent.parent / "configs" / "cluster.toml"

BASE: dict[str, Any] = {
    "cluster_id": 1,
    "accounts": ["A", "B", "C"],
    "initial_balance": 10,
    "timers": {
        "heartbeat_ms": 50,
        "election_timeout_ms_min": 400,
        "election_timeout_ms_max": 800,
        "client_timeout_ms": 1000,
    },
    "nodes": {
        "n1": {"host": "127.0.0.1", "port": 5001},
        "n2": {"host": "127.0.0.1", "port": 5002},
        "n3": {"host": "127.0.0.1", "port": 5003},
    },
}


def write_toml(tmp_path: pathlib.Path, text: str) -> pathlib.Path:
    path = tmp_path / "cluster.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_mistake(tmp_path: pathlib.Path, mutate: Callable[[dict[str, Any]], None]) -> ConfigError:
    """Write BASE changed by `mutate` to a file, load it and return the error."""
    data = copy.deepcopy(BASE)
    mutate(data)
    path = write_toml(tmp_path, tomli_w.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def assert_names(error: ConfigError, path: pathlib.Path, key: str, *fragments: str) -> None:
    message = str(error)
    assert error.file == str(path)
    assert error.key == key
    assert message.startswith(f"{path}: {key}: "), message
    for fragment in fragments:
        assert fragment in message, message


# ------------------------------------------------------------ good configs


def test_shipped_config_loads_with_five_nodes() -> None:
    config = load_config(SHIPPED)
    assert config.node_ids == ("n1", "n2", "n3", "n4", "n5")
    assert [n.port for n in config.nodes] == [5001, 5002, 5003, 5004, 5005]
    assert all(n.host == "127.0.0.1" for n in config.nodes)
    assert config.accounts == tuple("ABCDEFGHIJ")
    assert config.initial_balance == 10
    assert config.checkpoint_interval == 10
    assert config.snapshot_interval == 1000
    assert config.cluster_id == 1
    assert config.fsync is True
    assert config.majority == 3
    assert config.timers == Timers(
        heartbeat_ms=50,
        election_timeout_ms_min=400,
        election_timeout_ms_max=800,
        client_timeout_ms=1000,
    )
    assert config.path == SHIPPED


def test_optional_keys_take_defaults(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = copy.deepcopy(BASE)
    del data["timers"]
    config = config_from_dict(data)
    assert config.path is None
    assert config.checkpoint_interval == 10
    assert config.fsync is True
    assert config.timers == Timers()
    assert config.timers.heartbeat_ms == constants.heartbeat_ms_default
    assert config.batch_commands_max == constants.batch_commands_max
    assert config.pipeline_slots_max == constants.pipeline_slots_max
    assert config.accept_fanout == "quorum"
    assert config.snapshot_interval == constants.snapshot_interval_default
    # a relative data_dir is resolved against the working directory at load time
    assert config.data_dir == tmp_path / "data"


def test_partial_timers_and_extra_limits(tmp_path: pathlib.Path) -> None:
    data = copy.deepcopy(BASE)
    data["timers"] = {"heartbeat_ms": 20}
    data["batch_commands_max"] = 16
    data["pipeline_slots_max"] = 4
    data["fsync"] = False
    data["data_dir"] = str(tmp_path / "d")
    config = config_from_dict(data)
    assert config.timers.heartbeat_ms == 20
    assert config.timers.election_timeout_ms_min == constants.election_timeout_ms_min_default
    assert (config.batch_commands_max, config.pipeline_slots_max) == (16, 4)
    assert config.fsync is False
    assert config.data_dir_for("n2") == tmp_path / "d" / "n2"


def test_accept_fanout_is_quorum_or_all(tmp_path: pathlib.Path) -> None:
    data = copy.deepcopy(BASE)
    data["accept_fanout"] = "all"
    config = config_from_dict(data)
    assert config.accept_fanout == "all"
    assert not CoreSettings.from_config(config, config.node_ids[0]).accepts_to_quorum
    data["accept_fanout"] = "everyone"
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert info.value.key == "accept_fanout"
    assert "'quorum', 'all'" in str(info.value) and "everyone" in str(info.value)


def test_node_helpers_follow_file_order() -> None:
    data = copy.deepcopy(BASE)
    data["nodes"] = {
        "c": {"host": "127.0.0.1", "port": 7003},
        "a": {"host": "127.0.0.1", "port": 7001},
    }
    config = config_from_dict(data)
    assert config.node_ids == ("c", "a")
    assert config.index_of("c") == 1
    assert config.index_of("a") == 2
    assert config.node("a") == NodeConfig(node_id="a", host="127.0.0.1", port=7001)
    assert config.majority == 2
    with pytest.raises(ConfigError) as info:
        config.node("b")
    assert info.value.key == "nodes"
    assert "'b'" in str(info.value)


def test_round_trip(tmp_path: pathlib.Path) -> None:
    original = load_config(SHIPPED)
    path = tmp_path / "copy.toml"
    write_config(original, path)
    again = load_config(path)
    assert again.path == path
    assert without_path(again) == without_path(original)
    assert config_to_dict(again) == config_to_dict(original)


def test_round_trip_of_non_defaults(tmp_path: pathlib.Path) -> None:
    original = make_local_config(
        3,
        6100,
        tmp_path / "data",
        fsync=False,
        checkpoint_interval=3,
        batch_commands_max=2,
        pipeline_slots_max=1,
        timers=Timers(
            heartbeat_ms=10,
            election_timeout_ms_min=30,
            election_timeout_ms_max=60,
            client_timeout_ms=5,
        ),
    )
    path = tmp_path / "c.toml"
    write_config(original, path)
    assert without_path(load_config(path)) == without_path(original)


def without_path(config: Config) -> Config:
    return attrs.evolve(config, path=None)


@pytest.mark.parametrize("n", [3, 5, 7])
def test_make_local_config(n: int, tmp_path: pathlib.Path) -> None:
    config = make_local_config(n, 6000, tmp_path)
    assert config.node_ids == tuple(f"n{i}" for i in range(1, n + 1))
    assert [node.port for node in config.nodes] == list(range(6000, 6000 + n))
    assert all(node.host == "127.0.0.1" for node in config.nodes)
    assert config.majority == n // 2 + 1
    assert config.data_dir == tmp_path
    assert config.data_dir_for(f"n{n}") == tmp_path / f"n{n}"
    assert config.index_of(f"n{n}") == n


def test_make_local_config_overrides(tmp_path: pathlib.Path) -> None:
    config = make_local_config(3, 6000, tmp_path, accounts=("x", "y"), initial_balance=0)
    assert config.accounts == ("x", "y")
    assert config.initial_balance == 0
    with pytest.raises(ConfigError) as info:
        make_local_config(3, 6000, tmp_path, initial_balance=-1)
    assert str(info.value).startswith("<config>: initial_balance: ")


def test_make_local_config_rejects_too_many_nodes(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_local_config(constants.replicas_max + 1, 6000, tmp_path)
    assert info.value.key == "nodes"


# ------------------------------------------------------------ file mistakes


def test_toml_syntax_error(tmp_path: pathlib.Path) -> None:
    path = write_toml(tmp_path, "cluster_id = 1\ninitial_balance = = 10\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    assert info.value.key == ""
    assert str(info.value).startswith(f"{path}: TOML syntax error: ")
    assert "line 2" in str(info.value)  # tomllib's message says where


def test_missing_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    assert "cannot read" in str(info.value)
    assert "check the path" in str(info.value)


def test_unreadable_file_is_a_directory(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value).startswith(f"{tmp_path}: cannot read")


def test_not_utf8(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b"cluster_id = 1\n# \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)


# ------------------------------------------------------------ value mistakes

Mutation = Callable[[dict[str, Any]], None]


def setter(*keys: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        table = data
        for key in keys[:-1]:
            table = table[key]
        table[keys[-1]] = value

    return mutate


def deleter(*keys: str) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        table = data
        for key in keys[:-1]:
            table = table[key]
        del table[keys[-1]]

    return mutate


MISTAKES: list[tuple[str, Mutation, str, tuple[str, ...]]] = [
    # (id, mutation, dotted key, fragments of the message)
    ("unknown-top-key", setter("acounts", value=1), "acounts", ("unknown key", "accounts")),
    (
        "unknown-timer-key",
        setter("timers", "heartbeat", value=1),
        "timers.heartbeat",
        ("unknown key", "heartbeat_ms"),
    ),
    (
        "unknown-node-key",
        setter("nodes", "n2", "hots", value="x"),
        "nodes.n2.hots",
        ("unknown key", "host"),
    ),
    ("missing-cluster-id", deleter("cluster_id"), "cluster_id", ("missing", "required")),
    ("missing-accounts", deleter("accounts"), "accounts", ("missing",)),
    ("missing-initial-balance", deleter("initial_balance"), "initial_balance", ("missing",)),
    ("missing-nodes", deleter("nodes"), "nodes", ("missing",)),
    (
        "missing-node-port",
        deleter("nodes", "n3", "port"),
        "nodes.n3.port",
        ("missing", "host and port"),
    ),
    ("missing-node-host", deleter("nodes", "n1", "host"), "nodes.n1.host", ("missing",)),
    (
        "port-not-int",
        setter("nodes", "n3", "port", value="x"),
        "nodes.n3.port",
        ('expected an integer 1-65535, got "x"',),
    ),
    (
        "port-out-of-range",
        setter("nodes", "n3", "port", value=70000),
        "nodes.n3.port",
        ("1-65535", "70000"),
    ),
    ("port-zero", setter("nodes", "n3", "port", value=0), "nodes.n3.port", ("1-65535",)),
    (
        "int-is-bool",
        setter("initial_balance", value=True),
        "initial_balance",
        ("expected an integer", "got true"),
    ),
    ("port-is-bool", setter("nodes", "n1", "port", value=True), "nodes.n1.port", ("got true",)),
    (
        "int-is-float",
        setter("checkpoint_interval", value=2.5),
        "checkpoint_interval",
        ("expected an integer",),
    ),
    (
        "host-not-string",
        setter("nodes", "n1", "host", value=1),
        "nodes.n1.host",
        ("expected a non-empty string",),
    ),
    ("host-empty", setter("nodes", "n1", "host", value=""), "nodes.n1.host", ("non-empty",)),
    ("fsync-not-bool", setter("fsync", value="yes"), "fsync", ("expected true or false", '"yes"')),
    (
        "data-dir-not-string",
        setter("data_dir", value=3),
        "data_dir",
        ("expected a non-empty string",),
    ),
    ("data-dir-empty", setter("data_dir", value=""), "data_dir", ("non-empty",)),
    ("timers-not-table", setter("timers", value=5), "timers", ("expected a table",)),
    ("nodes-not-table", setter("nodes", value=["n1"]), "nodes", ("expected a table",)),
    (
        "node-not-table",
        setter("nodes", "n2", value="127.0.0.1:5002"),
        "nodes.n2",
        ("expected a table",),
    ),
    ("no-nodes", setter("nodes", value={}), "nodes", ("at least one",)),
    (
        "too-many-nodes",
        setter(
            "nodes",
            value={
                f"n{i}": {"host": "127.0.0.1", "port": 5000 + i}
                for i in range(1, constants.replicas_max + 2)
            },
        ),
        "nodes",
        (f"at most {constants.replicas_max}",),
    ),
    (
        "duplicate-address",
        setter("nodes", "n3", value={"host": "127.0.0.1", "port": 5001}),
        "nodes.n3",
        ("127.0.0.1:5001", "n1", "its own host and port"),
    ),
    (
        "node-id-not-identifier",
        setter("nodes", "1 bad", value={"host": "127.0.0.1", "port": 5009}),
        'nodes."1 bad"',
        ("not a short identifier",),
    ),
    (
        "node-id-too-long",
        setter("nodes", "n" * (constants.node_id_length_max + 1), value={"host": "h", "port": 1}),
        "nodes." + "n" * (constants.node_id_length_max + 1),
        ("not a short identifier",),
    ),
    (
        "account-twice",
        setter("accounts", value=["A", "B", "A"]),
        "accounts[2]",
        ('"A"', "listed twice"),
    ),
    ("accounts-empty", setter("accounts", value=[]), "accounts", ("is empty",)),
    ("accounts-not-array", setter("accounts", value="A"), "accounts", ("expected an array",)),
    ("account-not-string", setter("accounts", value=["A", 7]), "accounts[1]", ("got 7",)),
    ("account-name-empty", setter("accounts", value=["A", ""]), "accounts[1]", ("empty",)),
    (
        "account-name-too-long",
        setter("accounts", value=["x" * (constants.account_name_length_max + 1)]),
        "accounts[0]",
        (f"longer than {constants.account_name_length_max} bytes",),
    ),
    ("account-name-comma", setter("accounts", value=["A,B"]), "accounts[0]", ("contains",)),
    (
        "negative-initial-balance",
        setter("initial_balance", value=-1),
        "initial_balance",
        ("got -1",),
    ),
    (
        "balance-total-overflow",
        setter("initial_balance", value=2**62),
        "initial_balance",
        ("smaller initial_balance",),
    ),
    (
        "checkpoint-interval-zero",
        setter("checkpoint_interval", value=0),
        "checkpoint_interval",
        (">= 1", "got 0"),
    ),
    (
        "snapshot-interval-zero",
        setter("snapshot_interval", value=0),
        "snapshot_interval",
        (">= 1", "got 0"),
    ),
    ("cluster-id-negative", setter("cluster_id", value=-1), "cluster_id", ("0-4294967295",)),
    ("cluster-id-too-big", setter("cluster_id", value=2**32), "cluster_id", ("0-4294967295",)),
    (
        "timer-zero",
        setter("timers", "client_timeout_ms", value=0),
        "timers.client_timeout_ms",
        ("got 0",),
    ),
    (
        "timer-negative",
        setter("timers", "heartbeat_ms", value=-50),
        "timers.heartbeat_ms",
        ("got -50",),
    ),
    (
        "timer-below-tick",
        setter("timers", "heartbeat_ms", value=constants.tick_ms - 1),
        "timers.heartbeat_ms",
        (f">= {constants.tick_ms}",),
    ),
    (
        "timer-not-int",
        setter("timers", "heartbeat_ms", value="50ms"),
        "timers.heartbeat_ms",
        ('"50ms"',),
    ),
    (
        "election-min-not-below-max",
        setter("timers", "election_timeout_ms_min", value=800),
        "timers.election_timeout_ms_min",
        ("less than timers.election_timeout_ms_max",),
    ),
    (
        "heartbeat-too-slow",
        setter("timers", "heartbeat_ms", value=200),
        "timers.heartbeat_ms",
        ("lower heartbeat_ms or raise election_timeout_ms_min",),
    ),
    ("batch-max-zero", setter("batch_commands_max", value=0), "batch_commands_max", ("got 0",)),
    (
        "batch-max-above-limit",
        setter("batch_commands_max", value=constants.batch_commands_max + 1),
        "batch_commands_max",
        (f"1-{constants.batch_commands_max}",),
    ),
    ("pipeline-max-zero", setter("pipeline_slots_max", value=0), "pipeline_slots_max", ("got 0",)),
    (
        "pipeline-max-bool",
        setter("pipeline_slots_max", value=True),
        "pipeline_slots_max",
        ("got true",),
    ),
]


@pytest.mark.parametrize(
    ("mutate", "key", "fragments"),
    [pytest.param(m, k, f, id=i) for i, m, k, f in MISTAKES],
)
def test_mistake_names_file_and_key(
    tmp_path: pathlib.Path, mutate: Mutation, key: str, fragments: tuple[str, ...]
) -> None:
    error = load_mistake(tmp_path, mutate)
    assert_names(error, tmp_path / "cluster.toml", key, *fragments)


def test_unknown_key_in_raw_file(tmp_path: pathlib.Path) -> None:
    text = SHIPPED.read_text(encoding="utf-8").replace("[nodes.n3]\n", "[nodes.n3]\nweight = 2\n")
    path = write_toml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert_names(info.value, path, "nodes.n3.weight", "unknown key")


def test_even_and_single_node_clusters_are_allowed(tmp_path: pathlib.Path) -> None:
    assert make_local_config(1, 6000, tmp_path).majority == 1
    assert make_local_config(4, 6000, tmp_path).majority == 3
    assert (
        len(make_local_config(constants.replicas_max, 6000, tmp_path).nodes)
        == constants.replicas_max
    )


def test_dict_without_file_uses_placeholder_label() -> None:
    data = copy.deepcopy(BASE)
    data["nodes"]["n1"]["port"] = "x"
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert str(info.value) == '<config>: nodes.n1.port: expected an integer 1-65535, got "x"'
