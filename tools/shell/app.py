"""ledgerpaxos-shell: drive a cluster by hand or by script (cmd2).

    ledgerpaxos-shell [--config PATH] [--launch [--keep-data]] [--wait SECONDS] [@script | command ...]

With --launch the shell starts the replicas of the config as its own child
processes (logs/<id>.log; data/ and logs/ wiped first unless --keep-data) and
stops them when it ends; without it, it talks to replicas already running.
Commands given on the command line (each one argument: "load testdata/test.csv")
and @script files run in order without a prompt; the first one that fails
stops the run with exit status 1. With no commands, an interactive prompt.

Threads: cmd2 owns the main thread (prompt-toolkit, Ctrl-C); trio runs in a
second thread (trio_thread.py) with one nursery that stays open for the life of the shell and
holds the Driver, the shell's client and everything still pending. A command
hands one coroutine to that thread (`trio.from_thread.run`) and waits for its
result; Ctrl-C cancels just that coroutine. Replica processes are started from
the main thread (see tools/cluster/launcher.py for why).
"""

from __future__ import annotations

import argparse
import atexit
import functools
import json
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

import cmd2
from cmd2 import with_argparser

from ledgerpaxos import tls
from ledgerpaxos.config import Config, ConfigError, load_config
from ledgerpaxos.core.messages import ControlOp
from ledgerpaxos.tls import TlsError
from tools.certs import CertsError, ensure_certificates, identities_of
from tools.cluster.launcher import Launcher, LaunchError
from tools.shell import parsers, views
from tools.shell.backend import Backend, ShellError, wait_s_default
from tools.shell.trio_thread import TrioThread

prog = "ledgerpaxos-shell"
exit_failed = 1
exit_usage = 2
launch_leader_wait_s = 5.0


# ------------------------------------------------------------------ the cmd2 app


class Shell(cmd2.Cmd):
    """The commands. `call(fn, *args)` runs a coroutine function of the backend
    in the trio thread; tests may pass anything that does the same."""

    DEFAULT_CATEGORY = "ledgerpaxos commands"  # cmd2's own keep "Cmd2 Commands"

    def __init__(
        self,
        backend: Backend,
        call: Callable[..., Any],
        *,
        scripted: bool = False,
        stdin: Any = None,
        stdout: Any = None,
    ) -> None:
        super().__init__(
            allow_cli_args=False,
            include_py=False,
            include_ipy=False,
            stdin=stdin,
            stdout=stdout,
            suggest_similar_command=True,
        )
        self.prompt = "ledgerpaxos> "
        self.intro = (
            "ledgerpaxos shell: `help` lists the commands, `help COMMAND` explains one; "
            "try `load testdata/test.csv`, `next`, `print db`; `quit` leaves."
        )
        self.backend = backend
        self.call = call
        self.scripted = scripted  # commands from argv: errors set a non-zero exit code
        self.command_failed = False
        for name in ("alias", "edit", "macro", "run_pyscript", "shell", "shortcuts"):
            self.hidden_commands.append(name)

    # ------------------------------------------------------------ failure tracking

    def onecmd_plus_hooks(self, line: str, **kwargs: Any) -> bool:
        self.command_failed = False
        stop = super().onecmd_plus_hooks(line, **kwargs)
        if self.command_failed and self.scripted:
            self.exit_code = exit_failed
        return stop

    def onecmd(self, statement: Any, *, add_to_history: bool = True) -> bool:
        self.last_result = None
        try:
            return super().onecmd(statement, add_to_history=add_to_history)
        except ShellError as error:
            self.perror(f"error: {error}")
            return False
        except cmd2.Cmd2ArgparseError:
            self.command_failed = True  # argparse has printed the usage and what is wrong
            raise

    def runcmds_plus_hooks(
        self, cmds: Any, *, add_to_history: bool = True, stop_on_keyboard_interrupt: bool = False
    ) -> bool:
        """Run a script's commands, stopping at the first one that fails."""
        for number, line in enumerate(cmds, start=1):
            if super().runcmds_plus_hooks(
                [line],
                add_to_history=add_to_history,
                stop_on_keyboard_interrupt=stop_on_keyboard_interrupt,
            ):
                return True
            if self.command_failed:
                text = getattr(line, "raw", line)
                self.perror(f"script stopped at line {number}: {text}")
                return False
        return False

    def perror(self, *objects: Any, **kwargs: Any) -> None:
        if kwargs.get("style", cmd2.Cmd2Style.ERROR) != cmd2.Cmd2Style.WARNING:
            self.command_failed = True
        super().perror(*objects, **kwargs)

    def pexcept(self, exception: BaseException, **kwargs: Any) -> None:
        self.command_failed = True
        super().pexcept(exception, **kwargs)

    def run_commands(self, commands: Sequence[str]) -> int:
        """Commands from the command line (and @scripts), in order, no prompt; the
        exit status: 0, or 1 from the first command that failed."""
        self.scripted = True
        for line in commands:
            stop = self.onecmd_plus_hooks(line)
            if self.command_failed:
                self.exit_code = exit_failed
                break
            if stop:
                break
        return self.exit_code

    def say(self, text: str) -> None:
        """Plain text, never wrapped or styled (tables and JSON)."""
        self.poutput(text, soft_wrap=True, markup=False, highlight=False, emoji=False)

    # ------------------------------------------------------------ commands

    @with_argparser(parsers.load_parser)
    def do_load(self, args: argparse.Namespace) -> None:
        """Read a CSV test-set file."""
        result = self.call(self.backend.load, args.path)
        self.say(views.render_load(result))
        self.last_result = {
            "path": result.path,
            "sets": len(result.sets),
            "transfers": result.transfers,
        }

    @with_argparser(parsers.next_parser)
    def do_next(self, _: argparse.Namespace) -> None:
        """Run the next set of the loaded file."""
        tty = self._stdout_is_tty()
        upcoming = self._upcoming_set()
        last_line = ""

        def progress(done: int, total: int) -> None:  # runs in the trio thread; we wait meanwhile
            nonlocal last_line
            if upcoming is None:
                return  # no set left: run_next says so, with nothing to count
            last_line = views.progress_line(upcoming, done, total)
            if tty:
                self.stdout.write("\r" + last_line)
                self.stdout.flush()

        try:
            result = self.call(self.backend.run_next, progress)
        finally:
            if tty and last_line:
                self.stdout.write("\r\x1b[K")
                self.stdout.flush()
        if last_line:
            self.say(last_line)
        self.say(views.render_next(result, wait_s=self.backend.wait_s))
        self.last_result = result.to_json()

    def _upcoming_set(self) -> int | None:
        driver = self.backend.driver
        return driver.sets[driver.position].number if driver.position < len(driver.sets) else None

    def _stdout_is_tty(self) -> bool:
        try:
            return bool(self.stdout.isatty())
        except (AttributeError, ValueError):
            return False

    @with_argparser(parsers.print_parser)
    def do_print(self, args: argparse.Namespace) -> None:
        """Show every replica's balances, log, slot status or view (each takes --json)."""
        backend = self.backend
        if args.what == "db":
            answers = self.call(backend.ask_all_or_fail, ControlOp.print_db, args.start)
            document = views.db_json(answers)
            text = views.render_db(answers, views.db_accounts(answers))
            text += views.db_page_note(answers)
        elif args.what == "log":
            nodes = None
            if args.node is not None:
                nodes = [backend.check_node(args.node)]
                self.call(backend.ask, args.node, ControlOp.ping)  # a clear error if it is down
            answers = self.call(backend.ask_all_or_fail, ControlOp.print_log, 0, nodes)
            document = views.log_json(answers)
            text = views.render_log(answers)
        elif args.what == "status":
            answers = self.call(backend.ask_all_or_fail, ControlOp.print_status, args.slot)
            document = views.status_json(answers)
            text = views.render_status(answers)
        else:
            answers = self.call(backend.ask_all_or_fail, ControlOp.print_view)
            document = views.view_json(answers)
            text = views.render_view(answers)
        self.say(json.dumps(document, separators=(",", ":")) if args.json else text)
        self.last_result = document

    @with_argparser(parsers.transfer_parser)
    def do_transfer(self, args: argparse.Namespace) -> None:
        """Send one transfer: transfer SENDER RECEIVER AMOUNT [--as CLIENT]."""
        reply = self.call(
            functools.partial(
                self.backend.transfer,
                args.sender,
                args.receiver,
                args.amount,
                client_id=args.client,
            )
        )
        self.say(views.render_transfer(args.sender, args.receiver, args.amount, reply))
        self.last_result = {"ok": reply.ok, "reason": reply.reason, "leader": reply.leader}

    @with_argparser(parsers.balance_parser)
    def do_balance(self, args: argparse.Namespace) -> None:
        """Read balances through the log: balance [ACCOUNT...]."""
        for account in args.accounts:
            self.backend.check_account(account)
        balances = self.call(self.backend.balances, tuple(args.accounts))
        self.say(views.render_balances(balances, args.accounts))
        self.last_result = balances

    @with_argparser(parsers.open_parser)
    def do_open(self, args: argparse.Namespace) -> None:
        """Open accounts at balance 0: open ACCOUNT... [--owner CLIENT]."""
        for account in args.accounts:
            self.backend.check_account(account)
        replies = self.call(self.backend.open_accounts, tuple(args.accounts), args.owner)
        self.say(views.render_openings(replies, args.accounts))
        self.last_result = {
            name: {"ok": result.ok, "reason": result.reason}
            for name, result in zip(
                args.accounts, [r for _, reply in replies for r in reply.results], strict=True
            )
        }

    @with_argparser(parsers.kill_parser)
    def do_kill(self, _: argparse.Namespace) -> None:
        """Kill the current leader: kill leader."""
        leader = self.call(self.backend.kill_leader)
        self.say(f"killed the leader {leader}: it is dead now (`alive {leader} on` brings it back)")
        self.last_result = {"killed": leader}

    @with_argparser(parsers.alive_parser)
    def do_alive(self, args: argparse.Namespace) -> None:
        """Switch a replica on or off (simulated failure): alive NODE on|off."""
        self.backend.check_node(args.node)
        body = self.call(self.backend.set_alive, args.node, args.state == "on")
        self.say(f"{args.node} is {'alive' if body['alive'] else 'dead'}")
        self.last_result = {"node": args.node, "alive": body["alive"]}

    @with_argparser(parsers.node_parser("SIGKILL the replica's process (only with --launch)."))
    def do_crash(self, args: argparse.Namespace) -> None:
        """SIGKILL a replica this shell launched: crash NODE."""
        pid = self.backend.crash(args.node)  # main thread: this thread started it
        self.say(
            f"{args.node} crashed (SIGKILL of pid {pid}); `restart {args.node}` starts it on its data"
        )
        self.last_result = {"node": args.node, "pid": pid}

    @with_argparser(
        parsers.node_parser(
            "Start a crashed replica again on its data directory (only with --launch)."
        )
    )
    def do_restart(self, args: argparse.Namespace) -> None:
        """Start a crashed replica again: restart NODE."""
        pid = self.backend.start_again(args.node)
        self.call(self.backend.wait_started, [args.node])
        caught_up, executed, target = self.call(self.backend.wait_caught_up, args.node)
        state = (
            f"caught up (executed slot {executed})"
            if caught_up
            else f"still catching up (executed slot {executed} of {target})"
        )
        self.say(f"{args.node} restarted (pid {pid}), answering, {state}")
        self.last_result = {"node": args.node, "pid": pid, "caught_up": caught_up}

    @with_argparser(
        parsers.plain_parser(
            "Every replica back to the initial balances; the loaded file back to its first set."
        )
    )
    def do_reset(self, _: argparse.Namespace) -> None:
        """Reset every replica and rewind the loaded file."""
        self.call(self.backend.reset)
        config = self.backend.config
        loaded = self.backend.loaded
        rewound = f"; {loaded.path} rewound to set {loaded.sets[0].number}" if loaded else ""
        self.say(f"every replica reset to {config.initial_balance} in each account{rewound}")
        self.last_result = {"reset": list(config.node_ids)}

    @with_argparser(parsers.plain_parser("Leave the shell (stopping the replicas it launched)."))
    def do_exit(self, _: argparse.Namespace) -> bool:
        """Leave the shell (stops the replicas it launched)."""
        self.last_result = True
        return True

    def do_quit(self, _: Any) -> bool:  # cmd2's quit, with our help text
        """Leave the shell (stops the replicas it launched)."""
        self.last_result = True
        return True


# ------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Drive a ledgerpaxos cluster: CSV test sets, transfers, failures, and what every replica holds.",
        epilog="Examples: `ledgerpaxos-shell --launch` (what `make cluster` runs); "
        '`ledgerpaxos-shell --launch "load testdata/test.csv" next "print db"`; '
        "`ledgerpaxos-shell --launch @scenario.script`.",
    )
    parser.add_argument(
        "--config",
        default="configs/cluster.toml",
        help="cluster config (default configs/cluster.toml)",
    )
    parser.add_argument(
        "--launch",
        action="store_true",
        help="start the replicas as child processes, stop them on exit",
    )
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="with --launch: keep data/ and logs/ (default: wipe)",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=wait_s_default,
        metavar="SECONDS",
        help=f"how long `next` and requests wait without progress (default {wait_s_default:g})",
    )
    parser.add_argument(
        "commands", nargs="*", metavar="@script | command", help="run these, then exit"
    )
    args = parser.parse_args(argv)
    if args.keep_data and not args.launch:
        parser.error("--keep-data only makes sense with --launch")
    if args.wait <= 0:
        parser.error("--wait must be positive")
    return args


def _exit_on_signal(signum: int, _: FrameType | None) -> None:
    sys.exit(128 + signum)  # unwinds through main's finally: replicas stopped


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
        if config.tls_enabled:
            _certificates(config, create=args.launch)
    except (ConfigError, CertsError, TlsError, OSError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return exit_usage
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)

    launcher = Launcher(config, args.config) if args.launch else None
    thread = TrioThread()
    try:
        backend = thread.start(
            lambda nursery: Backend(config, nursery, wait_s=args.wait, launcher=launcher)
        )
        if launcher is not None:
            atexit.register(launcher.stop_all)
            if not _launch(launcher, backend, thread, keep_data=args.keep_data):
                return exit_failed
        else:
            _greet(backend, thread)
        shell = Shell(backend, thread.call, scripted=bool(args.commands))
        if args.commands:
            return shell.run_commands(args.commands)
        return shell.cmdloop()
    except KeyboardInterrupt:
        return 130
    finally:
        if launcher is not None:
            launcher.stop_all()
        thread.stop()


def _certificates(config: Config, *, create: bool) -> None:
    """With --launch, create whatever certificate is missing (the first
    `make cluster` on a new checkout); without, check that the operator's is
    there (TlsError says how to make it)."""
    files = tls.Files(config.tls_dir)
    if create:
        created = ensure_certificates(files, identities_of(config))
        if created:
            print(f"created {len(created)} certificate and key files in {config.tls_dir}")
    tls.client_context(files, tls.operator(tls.default_operator))


def _launch(launcher: Launcher, backend: Backend, thread: TrioThread, *, keep_data: bool) -> bool:
    config = launcher.config
    try:
        launcher.prepare(keep_data=keep_data)
        launcher.check_ports_free()
        for node_id in config.node_ids:
            launcher.start(node_id)  # from the main thread, which lives as long as the shell
        kept = "kept" if keep_data else "fresh"
        print(
            f"starting {', '.join(config.node_ids)} ({kept} data in {config.data_dir}, logs in "
            f"{launcher.logs_dir}/<id>.log) ...",
            flush=True,
        )
        thread.call(backend.wait_started, config.node_ids)
    except (LaunchError, ShellError) as error:
        print(f"{prog}: {error}", file=sys.stderr)
        return False
    leader = thread.call(backend.wait_for_leader, launch_leader_wait_s)
    pids = " ".join(f"{n}={launcher.pid(n)}" for n in config.node_ids)
    print(f"cluster up: {pids}; leader {leader or 'not elected yet'}", flush=True)
    return True


def _greet(backend: Backend, thread: TrioThread) -> None:
    alive = thread.call(backend.alive_map)
    down = [n for n, a in alive.items() if a is None]
    if not down:
        print(f"connected: {len(alive)} of {len(alive)} replicas answer", flush=True)
        return
    print(
        f"{len(alive) - len(down)} of {len(alive)} replicas answer; not answering: {', '.join(down)}. "
        "Start the cluster with `make cluster` (ledgerpaxos-shell --launch), or each replica with "
        f"`ledgerpaxos-replica --id NODE --config {backend.config.path}`.",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
