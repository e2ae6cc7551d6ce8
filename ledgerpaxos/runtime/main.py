"""ledgerpaxos-replica: run one replica of a cluster until SIGTERM or SIGINT.

    ledgerpaxos-replica --id n1 --config configs/cluster.toml [--format | --recover] [--log-level INFO]

A data directory is formatted once: `--format` for a replica of a new cluster
(refused on a directory that holds state), `--recover` for a replica that lost
its disk (the directory is formatted anew and the replica rejoins without
voting until a majority of the others has told it what it may have promised
and accepted: docs/protocol.md). Without a flag the directory must be
formatted already.

Exit status: 0 after a signal, 2 for a mistake of the user (config file,
unknown node id, address in use, a data directory that is not formatted or not
this replica's), 1 for a fatal error (storage corruption or an I/O failure).
Errors are one line on stderr, without a traceback.

The environment variable LEDGERPAXOS_RUNTIME, a comma-separated list of
`RuntimeOptions` names (runtime/replica.py), changes how the runtime carries
out the core's Ready; it is for measurements (docs/performance.md) and unset
in normal use.
"""

from __future__ import annotations

import argparse
import functools
import gc
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence

import trio

from ledgerpaxos import constants
from ledgerpaxos.config import Config, ConfigError, load_config
from ledgerpaxos.runtime.network import ListenError, TcpNetwork, reuse_port_wanted
from ledgerpaxos.runtime.replica import RuntimeOptions, serve_replica
from ledgerpaxos.storage import StorageCorruption, StorageError
from ledgerpaxos.storage.identity import IdentityError, Start
from ledgerpaxos.tls import TlsError

prog = "ledgerpaxos-replica"
exit_user_error = 2
exit_fatal = 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description="Run one ledgerpaxos replica.")
    parser.add_argument("--id", required=True, help="node id of this replica, e.g. n1")
    parser.add_argument(
        "--config", default="configs/cluster.toml", help="cluster config file (TOML)"
    )
    start = parser.add_mutually_exclusive_group()
    start.add_argument(
        "--format",
        dest="start",
        action="store_const",
        const=Start.format,
        default=Start.existing,
        help="format the (missing or empty) data directory for a new cluster",
    )
    start.add_argument(
        "--recover",
        dest="start",
        action="store_const",
        const=Start.recover,
        help="this replica lost its disk: format anew and rejoin without voting until safe",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="lowest level logged to stderr (default INFO)",
    )
    return parser.parse_args(argv)


def setup_logging(node_id: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s.%(msecs)03d {node_id} %(levelname)s %(message)s",
            datefmt="%Y-%m-%d %H:%M:%S",
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


async def run(
    config: Config,
    node_id: str,
    options: RuntimeOptions | None = None,
    *,
    reuse_port: bool = False,
    start: Start = Start.existing,
) -> None:
    """The replica, until a signal cancels it."""
    network = TcpNetwork(config, reuse_port=reuse_port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
        nursery.start_soon(
            functools.partial(
                serve_replica, config, node_id, network=network, options=options, start=start
            )
        )


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            logging.getLogger("ledgerpaxos.runtime").info(
                "%s: stopping", signal.Signals(signum).name
            )
            scope.cancel()
            return


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def tune_garbage_collector() -> None:
    """Collect young objects less often.

    Every batch allocates thousands of short-lived transfers and frames;
    with CPython's default gen-0 threshold (700 allocations) the collector
    runs thousands of times a second, and each pass also ages the survivors
    toward the costly full collections. Memory is reclaimed by reference
    counting anyway; the collector only finds cycles, which the hot path
    does not make. Measured in docs/performance.md."""
    gc.collect()
    gc.freeze()  # what start-up built (modules, config, recovered state) is never scanned again
    gc.set_threshold(constants.gc_young_objects_max, 50, 100)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
        config.node(args.id)
    except ConfigError as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return exit_user_error
    try:
        options = RuntimeOptions.parse(os.environ.get("LEDGERPAXOS_RUNTIME", ""))
    except ValueError as error:
        print(f"{prog}: LEDGERPAXOS_RUNTIME: {error}", file=sys.stderr)
        return exit_user_error
    setup_logging(args.id, args.log_level)
    if options != RuntimeOptions():
        logging.getLogger("ledgerpaxos.runtime").warning("runtime options: %s", options)
    tune_garbage_collector()
    try:
        trio.run(
            functools.partial(
                run, config, args.id, options, reuse_port=reuse_port_wanted(), start=args.start
            )
        )
    except BaseException as error:
        for leaf in _leaves(error):
            if isinstance(leaf, ListenError | TlsError | IdentityError):
                print(f"{prog}: {leaf}", file=sys.stderr)
                return exit_user_error
            if isinstance(leaf, (StorageCorruption, StorageError)):
                print(f"{prog}: {args.id}: {leaf}", file=sys.stderr)
                return exit_fatal
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
