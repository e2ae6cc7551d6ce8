"""The shell without real processes.

- the table formatter and the views (pure functions of replica answers);
- the Backend (everything a command does on the trio side) against an in-process
  cluster under the autojump clock;
- the cmd2 Shell itself, its trio thread and an in-process cluster in real time:
  command names, --json on one line, last_result, errors as messages, scripts
  that stop at the first failing command.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from ledgerpaxos.config import make_local_config
from ledgerpaxos.core.messages import ControlOp
from tests.conftest import Cluster, open_cluster
from tools.shell.app import Shell, parse_args, views
from tools.shell.backend import Backend, NodeAnswer, ShellError
from tools.shell.trio_thread import TrioThread
from tools.tables import format_table

TESTDATA = Path(__file__).resolve().parent.parent / "testdata"
ACCOUNTS = tuple("ABCDEFGHIJ")


def row(text: str) -> dict[str, int]:
    return dict(zip(ACCOUNTS, (int(x) for x in text.split()), strict=True))


# ------------------------------------------------------------------ tables and views


def test_format_table_aligns_columns_and_strips_trailing_spaces() -> None:
    text = format_table(["name", "n"], [["a", 1], ["long name", 100], [None, ""]], align="lr")
    assert text.split("\n") == ["name         n", "a            1", "long name  100", ""]


def test_format_table_pads_short_rows() -> None:
    assert format_table(None, [["a", "b", "c"], ["d"]]) == "a  b  c\nd"


def db_answer(node: str, balances: dict[str, int] | None, alive: bool = True) -> NodeAnswer:
    if balances is None:
        return NodeAnswer(
            node=node,
            error="unreachable at 127.0.0.1:5002 (connection refused): it may be crashed or not started",
        )
    return NodeAnswer(node=node, body={"node": node, "alive": alive, "balances": balances})


def test_print_db_marks_a_live_replica_that_disagrees_and_explains_dead_and_down() -> None:
    base = dict.fromkeys(ACCOUNTS, 10)
    answers = {
        "n1": db_answer("n1", base),
        "n2": db_answer("n2", None),
        "n3": db_answer("n3", {**base, "A": 9, "B": 11}),
        "n4": db_answer("n4", {**base, "A": 3}, alive=False),  # dead: behind, not marked
        "n5": db_answer("n5", base),
    }
    text = views.render_db(answers, ACCOUNTS)
    lines = text.splitlines()
    assert lines[0].split() == ["account", "n1", "n2", "n3", "n4", "n5"]
    assert lines[1].split() == ["live", "down", "live", "dead", "live"]
    assert lines[2].split() == ["A", "10", "?", "9*", "3", "10"]
    assert lines[3].split() == ["B", "10", "?", "11*", "10", "10"]
    assert lines[12].split() == ["total", "100", "?", "100", "93", "100"]
    assert "* differs from what most live replicas show" in text
    assert "dead:" in text and "n2: unreachable at 127.0.0.1:5002" in text
    # digits stay aligned in a column with marks
    a_line, c_line = lines[2], lines[4]
    nine = a_line.index("9*")
    assert c_line[nine - 1 : nine + 2] == "10 "  # the units digits line up under a mark


def test_print_db_json_has_the_documented_shape() -> None:
    answers = {"n1": db_answer("n1", {"A": 1}), "n2": db_answer("n2", None)}
    document = views.db_json(answers)
    assert document["nodes"]["n1"] == {"alive": True, "balances": {"A": 1}}
    assert (
        document["nodes"]["n2"]["alive"] is None
        and "unreachable" in document["nodes"]["n2"]["error"]
    )


def test_print_status_is_a_slot_by_node_grid() -> None:
    answers = {
        "n1": NodeAnswer(node="n1", body={"node": "n1", "status": {"1": "X", "2": "E", "3": "C"}}),
        "n2": NodeAnswer(node="n2", body={"node": "n2", "status": {"1": "E", "2": "A"}}),
        "n3": NodeAnswer(node="n3", error="unreachable"),
    }
    lines = views.render_status(answers).splitlines()
    assert [line.split() for line in lines[:4]] == [
        ["slot", "n1", "n2", "n3"],
        ["1", "X", "E", "?"],
        ["2", "E", "A", "?"],
        ["3", "C", "-", "?"],
    ]


def view(
    node: str,
    role: str,
    leader: str,
    ballot: str,
    views_seen: list[tuple[str, str]],
    alive: bool = True,
) -> NodeAnswer:
    return NodeAnswer(
        node=node,
        body={
            "node": node,
            "alive": alive,
            "role": role,
            "leader": leader,
            "ballot": ballot,
            "promised": ballot,
            "views": [{"ballot": b, "leader": n} for b, n in views_seen],
            "commit_slot": 4,
            "executed_slot": 4,
            "checkpoint_slot": 0,
        },
    )


def test_print_view_names_the_leader_and_the_views_seen() -> None:
    answers = {
        "n1": view("n1", "leader", "n1", "2.1", [("1.3", "n3"), ("2.1", "n1")]),
        "n2": view("n2", "follower", "n1", "2.1", [("2.1", "n1")]),
        "n3": view("n3", "leader", "n3", "1.3", [("1.3", "n3")], alive=False),
    }
    text = views.render_view(answers)
    assert text.splitlines()[0] == "leader: n1 (ballot 2.1), followed by n2"
    assert "1.3     n3      n1 n3" in text and "2.1     n1      n1 n2" in text
    assert views.view_json(answers)["leader"] == "n1"
    assert "rejoining" not in text
    rejoining = view("n2", "rejoining", "n1", "2.1", [("2.1", "n1")])
    assert rejoining.body is not None
    rejoining.body["rejoin"] = "asked the peers: answers from n1, 2 needed"
    text = views.render_view({**answers, "n2": rejoining})
    assert "n2 is rejoining after a lost or damaged disk" in text
    assert "answers from n1, 2 needed" in text
    paused = view("n2", "paused", None, "2.1", [("2.1", "n1")], alive=False)
    assert paused.body is not None
    paused.body["paused"] = "disk full: data/n2"
    text = views.render_view({**answers, "n2": paused})
    assert "n2 is paused (disk full: data/n2)" in text and "resumes by itself" in text
    assert any(line.split()[:2] == ["n2", "paused"] for line in text.splitlines())


# ------------------------------------------------------------------ the backend, in virtual time


async def test_backend_runs_test_csv_and_explains_what_it_saw(
    tmp_path: Path, autojump_clock: object
) -> None:
    async with open_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
        backend = Backend(cluster.config, nursery, network=cluster.network, wait_s=5)
        with pytest.raises(ShellError, match="nothing loaded"):
            await backend.run_next()
        loaded = await backend.load(str(TESTDATA / "test.csv"))
        assert len(loaded.sets) == 10 and loaded.transfers == 79
        seen: list[tuple[int, int]] = []
        results = {}
        for number in range(1, 7):
            results[number] = await backend.run_next(lambda done, total: seen.append((done, total)))
        assert seen[-1] == (5, 5)  # set 6: its 3 and the 2 set 5 left
        assert [str(r.txn) for r in results[4].rejected] == ["(B, F, 3)"]
        assert results[4].rejected[0].reply.reason == "insufficient funds"  # type: ignore[union-attr]
        stuck = results[5]
        assert not stuck.report.done and len(stuck.report.pending) == 2
        assert stuck.alive == {"n1": True, "n2": True, "n3": False, "n4": False, "n5": False}
        text = views.render_next(stuck, wait_s=5)
        assert (
            "stuck" in text
            and "why: no majority: alive n1, n2" in text
            and "(C, B, 1) (set 5, line 13)" in text
        )
        assert len(results[6].earlier_completed) == 2 and results[6].report.done
        assert len(results[6].report.killed) == 1

        db = await backend.ask_all_or_fail(ControlOp.print_db)
        document = views.db_json(db)
        for node in ("n1", "n2", "n3", "n4", "n5"):
            if document["nodes"][node]["alive"]:
                assert document["nodes"][node]["balances"] == row("2 6 10 11 12 13 12 11 12 11")

        # a crashed replica: shown as down, `next` runs without it, and reset names it
        await cluster.stop("n2")
        db = await backend.ask_all_or_fail(ControlOp.print_db)
        assert db["n2"].body is None and "connection refused" in (db["n2"].error or "")
        assert "down" in views.render_db(db, ACCOUNTS)
        result = await backend.run_next()  # set 7: all five should be alive
        assert result.report.done and result.report.unreachable == ("n2",)
        assert "unreachable, so not switched on or off: n2" in views.render_next(result, wait_s=5)
        with pytest.raises(
            ShellError, match=r"n2 is unreachable at 127\.0\.0\.1:7002 \(connection refused\)"
        ):
            await backend.set_alive("n2", True)
        with pytest.raises(ShellError, match="not reset:\n  n2: unreachable"):
            await backend.reset()
        await cluster.start("n2")
        await backend.reset()
        assert backend.driver.position == 0
        await cluster.wait_for_leader()
        assert await backend.balances() == dict.fromkeys(ACCOUNTS, 10)
        nursery.cancel_scope.cancel()


async def test_backend_one_off_requests_and_failures(
    tmp_path: Path, autojump_clock: object
) -> None:
    async with open_cluster(tmp_path) as cluster, trio.open_nursery() as nursery:
        backend = Backend(cluster.config, nursery, network=cluster.network, wait_s=3)
        await cluster.wait_for_leader()
        assert (await backend.transfer("A", "B", 4)).ok
        rejected = await backend.transfer("C", "D", 11)
        assert not rejected.ok and rejected.reason == "insufficient funds"
        unknown = await backend.transfer("A", "Z", 1)  # no such account (yet): the ledger says
        assert not unknown.ok and unknown.reason == "unknown receiver account"
        with pytest.raises(
            ShellError, match=r"not allowed.*: 'Z\(1'; the config's accounts are A, B"
        ):
            await backend.transfer("A", "Z(1", 1)
        with pytest.raises(ShellError, match="unknown node 'n9'"):
            await backend.set_alive("n9", False)
        assert (await backend.balances())["B"] == 14
        # right after a transfer every live replica shows it (the backend settles)
        db = await backend.ask_all_or_fail(ControlOp.print_db)
        assert {a.body["balances"]["A"] for a in db.values() if a.body} == {6}  # type: ignore[index]

        killed = await backend.kill_leader()
        assert (await backend.ask(killed, ControlOp.ping))["alive"] is False
        for node in cluster.node_ids:
            await backend.set_alive(node, node in ("n1", "n2") and node != killed)
        with pytest.raises(
            ShellError, match=r"no reply to transfer \(A, B, 1\) within 3 s: no majority"
        ):
            await backend.transfer("A", "B", 1)
        with pytest.raises(ShellError, match="no leader to kill within 3 s: no majority"):
            await backend.kill_leader()
        for node in cluster.node_ids:
            await cluster.stop(node)
        with pytest.raises(ShellError, match="no replica answered:\n  n1: unreachable"):
            await backend.ask_all_or_fail(ControlOp.print_view)
        with pytest.raises(ShellError, match="crash` works on replicas this shell started"):
            backend.crash("n1")
        nursery.cancel_scope.cancel()


# ------------------------------------------------------------------ the cmd2 shell, with its trio thread


class ShellHarness:
    """The real Shell and TrioThread, talking to an in-process cluster in real time."""

    def __init__(self, tmp_path: Path) -> None:
        self.config = make_local_config(5, 7001, tmp_path / "data", fsync=False)
        self.thread = TrioThread()
        self.cluster: Cluster | None = None

    def start(self) -> None:
        def setup(nursery: trio.Nursery) -> Backend:
            self.cluster = Cluster(self.config, nursery, seed=random.randrange(1000))
            return Backend(self.config, nursery, network=self.cluster.network, wait_s=2)

        self.backend = self.thread.start(setup)

        async def start_all() -> None:
            assert self.cluster is not None
            for node_id in self.config.node_ids:
                await self.cluster.start(node_id)
            await self.cluster.wait_for_leader()

        self.thread.call(start_all)
        self.out = io.StringIO()
        self.shell = Shell(self.backend, self.thread.call, stdout=self.out)

    def run(self, *lines: str) -> tuple[int, str]:
        """Run commands as the command line would; (exit status, stdout)."""
        self.out.seek(0)
        self.out.truncate()
        self.shell.exit_code = 0
        status = self.shell.run_commands(list(lines))
        return status, self.out.getvalue()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[ShellHarness]:
    h = ShellHarness(tmp_path)
    h.start()
    try:
        yield h
    finally:
        h.thread.stop()


def test_shell_commands_print_tables_json_and_set_last_result(
    harness: ShellHarness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = harness.run(f"load {TESTDATA / 'test.csv'}", "next", "print db")
    assert status == 0, capsys.readouterr().err
    assert "10 sets, 79 transfers" in out
    assert "set 1: transfers 5/5 done" in out  # not a tty: one final progress line
    assert "set 1 (live n1 n2 n3 n4 n5): done" in out
    assert out.splitlines()[-11].split() == ["A", "7", "7", "7", "7", "7"]
    assert harness.shell.last_result["nodes"]["n1"]["balances"] == row("7 6 9 11 14 8 12 8 12 13")

    status, out = harness.run("print db --json")
    assert status == 0 and out.count("\n") == 1
    assert json.loads(out)["nodes"]["n3"] == {
        "alive": True,
        "balances": row("7 6 9 11 14 8 12 8 12 13"),
    }
    for line in (
        "print log --json",
        "print log n2 --json",
        "print status all --json",
        "print status 1 --json",
        "print view --json",
    ):
        status, out = harness.run(line)
        assert (
            status == 0 and out.count("\n") == 1 and json.loads(out) == harness.shell.last_result
        ), line
    assert set(json.loads(harness.run("print log n2 --json")[1])["nodes"]) == {"n2"}

    status, out = harness.run("transfer A B 2", "balance A", "balance")
    assert status == 0
    assert "done: (A, B, 2) applied" in out and "A: 5" in out
    assert harness.shell.last_result == row("5 8 9 11 14 8 12 8 12 13")
    status, out = harness.run("transfer A B 100")
    assert status == 0 and "rejected: (A, B, 100): insufficient funds" in out
    assert harness.shell.last_result["ok"] is False

    status, out = harness.run("alive n4 off", "print view", "print status all", "print log n1")
    assert status == 0
    assert (
        "n4 is dead" in out
        and "views seen" in out
        and "E executed" in out
        and "slot  ballot  status  batch" in out
    )
    status, out = harness.run("kill leader")
    assert status == 0 and "killed the leader" in out
    status, out = harness.run("reset", "balance J")
    assert status == 0 and "rewound to set 1" in out and "J: 10" in out


def test_shell_errors_are_messages_and_stop_a_script(
    harness: ShellHarness, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _ = harness.run("next")
    assert status == 1 and "error: nothing loaded" in capsys.readouterr().err
    for line, words in [
        ("transfer A Z(1 1", "account name contains a character that is not allowed"),
        ("transfer A B x", "amount 'x' is not an integer"),
        ("alive n9 on", "unknown node 'n9'"),
        ("alive n1 maybe", "invalid choice"),
        ("print status zero", "neither a number nor `all`"),
        ("print log n7", "unknown node 'n7'"),
        ("crash n1", "works on replicas this shell started"),
        ("restart n1", "works on replicas this shell started"),
        ("load /no/such.csv", "cannot read the file"),
        ("frobnicate", "not a recognized command"),
    ]:
        status, _ = harness.run(line)
        err = capsys.readouterr().err
        assert status == 1 and words in err, (line, err)
        assert "Traceback" not in err

    bad = tmp_path / "bad.csv"
    bad.write_text('Set Number,Transactions,Live Nodes\n1,"(A, B, 1)","[n1, n2]"\n,"(A, B)",\n')
    script = tmp_path / "s.script"
    script.write_text(f"balance A\nload {bad}\nbalance B\n")
    status, out = harness.run(f"@{script}", "balance C")
    err = capsys.readouterr().err
    assert status == 1
    assert (
        "bad.csv: line 3: transaction '(A, B)' has 2 parts" in err
        and "script stopped at line 2" in err
    )
    assert "A: 10" in out and "B: 10" not in out and "C: 10" not in out

    # interactively (not scripted) an error stops the script but not the shell
    harness.shell.scripted = False
    harness.shell.exit_code = 0
    harness.shell.onecmd_plus_hooks(f"@{script}")
    assert harness.shell.exit_code == 0 and harness.shell.command_failed
    capsys.readouterr()
    status, out = harness.run(f"load {TESTDATA / 'single.csv'}", "next", "next")
    assert status == 1 and "all 1 sets of" in capsys.readouterr().err


def test_command_line_options() -> None:
    args = parse_args(["--launch", "--keep-data", "--wait", "2.5", "@x.script", "print db"])
    assert (
        args.launch
        and args.keep_data
        and args.wait == 2.5
        and args.commands == ["@x.script", "print db"]
    )
    with pytest.raises(SystemExit):
        parse_args(["--keep-data"])


def test_the_shell_opens_accounts_reads_some_and_pages_print_db(harness: ShellHarness) -> None:
    status, out = harness.run("open K L", "open M --owner A", "open A")
    assert status == 0
    assert "opened K (owner K, balance 0)" in out and "opened M (owner A, balance 0)" in out
    assert "refused A: account already exists" in out
    status, out = harness.run("transfer A M 3", "transfer M K 1 --as A", "transfer M K 1")
    assert status == 0 and "done: (A, M, 3) applied" in out and "done: (M, K, 1) applied" in out
    assert "rejected: (M, K, 1): not authorized" in out  # client M does not own M
    status, out = harness.run("balance M K Q")
    assert status == 0 and "no such account: Q" in out
    assert harness.shell.last_result == {"M": 2, "K": 1}
    status, out = harness.run("print db --from 9")
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[2:7]] == ["J", "K", "L", "M", "total"]
    assert "accounts 10-13 of 13" in out and "all accounts hold 100" in out
