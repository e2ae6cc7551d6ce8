"""etcd in the same run: the small replicated store most people would pick.

    python -m tools.bench.versus_etcd [--members 5] [--duration 8] [--json PATH]

An optional comparison, not a dependency: with `etcd` on the PATH (Debian's
`etcd-server`: `apt-get install etcd-server`), this starts a cluster of
`--members` on 127.0.0.1 with its data on disk and etcd's own defaults (an
fsync per commit), and runs two loads on it, one after the other: 1 client,
then 64 clients, each with one request in flight, every client writing a
100-byte value under its own key through etcd's JSON gateway (`POST
/v3/kv/put`, HTTP/1.1 keep-alive), the clients spread over the members. A put
is a blind write: a transfer reads, checks and writes two balances, so etcd
has the easier job. The one client of the 1-client load talks to etcd's
leader (its best case; ours talks to our leader). Without etcd this says how
to get it and exits 0.

`measure()` returns the figures; `ledgerpaxos-bench --matrix` prints them next
to ours (1×1 and 64×1) with the ratios.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import trio

from tools.bench.comparison import run_alone
from tools.bench.stats import percentile
from tools.cluster.ports import LOOPBACK, unreserved_ports

prog = "bench_etcd"
install_hint = "apt-get install etcd-server"
LOADS = (1, 64)  # clients, each with one put in flight
value_bytes = 100
ready_timeout_s = 30.0
settle_s = 1.0
response_bytes_max = 65536  # etcd's answer to a put is a few hundred bytes


class EtcdError(RuntimeError):
    """etcd did not start, or answered a put with something else than 200 OK."""


def available() -> bool:
    return shutil.which("etcd") is not None


def version() -> str:
    try:
        out = subprocess.run(
            ["etcd", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "etcd"
    first = out.splitlines()[0] if out else "etcd"
    return first.replace("etcd Version: ", "etcd ")


# ---------------------------------------------------------------- the cluster


class Cluster:
    """`members` etcd processes on loopback, data in a temporary directory;
    stopped and removed by close(), also when a run fails."""

    def __init__(self, members: int) -> None:
        self.members = members
        base = unreserved_ports(2 * members)  # etcd binds by itself: picked and freed
        self.client_ports = [base + 2 * i for i in range(members)]
        peer_ports = [base + 2 * i + 1 for i in range(members)]
        self.directory = tempfile.mkdtemp(prefix="ledgerpaxos-etcd-")
        initial = ",".join(f"m{i}=http://{LOOPBACK}:{p}" for i, p in enumerate(peer_ports))
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs = [os.path.join(self.directory, f"m{i}.log") for i in range(members)]
        try:
            for i in range(members):
                client, peer = (
                    f"http://{LOOPBACK}:{self.client_ports[i]}",
                    f"http://{LOOPBACK}:{peer_ports[i]}",
                )
                with open(self.logs[i], "wb") as log:
                    self.processes.append(
                        subprocess.Popen(
                            [
                                "etcd",
                                f"--name=m{i}",
                                f"--data-dir={os.path.join(self.directory, f'm{i}')}",
                                f"--listen-client-urls={client}",
                                f"--advertise-client-urls={client}",
                                f"--listen-peer-urls={peer}",
                                f"--initial-advertise-peer-urls={peer}",
                                f"--initial-cluster={initial}",
                                "--initial-cluster-token=ledgerpaxos-bench",
                                "--initial-cluster-state=new",
                            ],
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
        except BaseException:
            self.close()
            raise

    def wait_ready(self) -> None:
        """Until every member says it is healthy (a leader is elected)."""
        deadline = time.monotonic() + ready_timeout_s
        waiting = set(range(self.members))
        while waiting:
            for i in sorted(waiting):
                if self.processes[i].poll() is not None:
                    raise EtcdError(f"etcd member m{i} exited; its log ends: {self._log_tail(i)}")
                if _healthy(self.client_ports[i]):
                    waiting.discard(i)
            if waiting and time.monotonic() > deadline:
                raise EtcdError(
                    f"etcd members {sorted(waiting)} not healthy in {ready_timeout_s:g} s"
                )
            time.sleep(0.1)

    def _log_tail(self, i: int) -> str:
        """The last lines of a member's log (the directory goes with close())."""
        try:
            with open(self.logs[i], "rb") as log:
                lines = log.read().decode("utf-8", "replace").strip().splitlines()
        except OSError as error:
            return f"(unreadable: {error})"
        return " | ".join(lines[-3:]) or "(empty)"

    def ports_leader_first(self) -> list[int]:
        """The members' client ports, the leader's first: the one client of the
        1-client load talks to the leader, as ours does (a member that is not
        the leader forwards each put to it, one more hop), and the clients of a
        larger load are spread over all of them from there."""
        leader = None
        for port in self.client_ports:
            status = _post(port, "/v3/maintenance/status", {})
            if status is not None and status.get("leader") == status.get("header", {}).get(
                "member_id"
            ):
                leader = port
                break
        if leader is None:
            return list(self.client_ports)
        at = self.client_ports.index(leader)
        return self.client_ports[at:] + self.client_ports[:at]

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes = []
        shutil.rmtree(self.directory, ignore_errors=True)


def _healthy(port: int) -> bool:
    answer = _get(port, "/health")
    return answer is not None and answer.get("health") == "true"


def _get(port: int, path: str) -> dict[str, Any] | None:
    return _ask(port, "GET", path, None)


def _post(port: int, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    return _ask(port, "POST", path, json.dumps(body).encode())


def _ask(port: int, method: str, path: str, body: bytes | None) -> dict[str, Any] | None:
    """etcd's JSON answer, or None if it gave none."""
    try:
        connection = http.client.HTTPConnection(LOOPBACK, port, timeout=1)
        connection.request(method, path, body=body)
        data = connection.getresponse().read()
        connection.close()
        answer = json.loads(data)
    except (OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None


# ---------------------------------------------------------------- the load


def put_request(port: int, key: str, value: bytes) -> bytes:
    """One HTTP/1.1 keep-alive request for /v3/kv/put (keys and values base64, as
    the gateway wants them)."""
    body = json.dumps(
        {"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(value).decode()}
    ).encode()
    head = (
        f"POST /v3/kv/put HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class _Responses:
    """HTTP/1.1 responses read off one keep-alive connection, one at a time."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def next_status(self) -> int:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            await self._more()
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length > response_bytes_max or any(
            line.lower().startswith("transfer-encoding") for line in head[1:]
        ):
            raise EtcdError(f"unexpected response framing: {head[:3]}")
        while len(self.buffer) < end + 4 + length:
            await self._more()
        del self.buffer[: end + 4 + length]
        return status

    async def _more(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise EtcdError("etcd closed a keep-alive connection")
        self.buffer += data
        if len(self.buffer) > response_bytes_max:
            raise EtcdError("an etcd response larger than expected")


async def _run_load(ports: Sequence[int], clients: int, duration: float) -> list[float]:
    """Latencies (s) of the puts `clients` clients completed in `duration` s."""
    latencies: list[float] = []
    value = os.urandom(value_bytes // 2).hex().encode()[:value_bytes]
    started = trio.current_time()
    stop = started + settle_s + duration

    async def client(i: int) -> None:
        port = ports[i % len(ports)]
        stream = await trio.open_tcp_stream(LOOPBACK, port)
        async with stream:
            responses = _Responses(stream)
            request = put_request(port, f"bench/{i}", value)
            while (now := trio.current_time()) < stop:
                await stream.send_all(request)
                status = await responses.next_status()
                if status != 200:
                    raise EtcdError(f"etcd answered a put with HTTP {status}")
                if now >= started + settle_s:  # the first second warms up, uncounted
                    latencies.append(trio.current_time() - now)

    async with trio.open_nursery() as nursery:
        for i in range(clients):
            nursery.start_soon(client, i)
    return latencies


def measure(*, members: int = 5, duration: float = 8.0) -> dict[str, Any]:
    """Start etcd, run each of LOADS for `duration` s, stop it; the figures."""
    if not available():
        raise EtcdError(f"etcd is not on the PATH: {install_hint}")
    cluster = Cluster(members)
    try:
        cluster.wait_ready()
        ports = cluster.ports_leader_first()
        loads = []
        for clients in LOADS:
            latencies = trio.run(_run_load, ports, clients, duration)
            ordered = sorted(latencies)
            loads.append(
                {
                    "clients": clients,
                    "puts_per_s": len(ordered) / duration,
                    "p50_ms": percentile(ordered, 0.50) * 1000,
                    "p90_ms": percentile(ordered, 0.90) * 1000,
                    "p99_ms": percentile(ordered, 0.99) * 1000,
                    "max_ms": ordered[-1] * 1000 if ordered else 0.0,
                }
            )
    finally:
        cluster.close()
    return {
        "system": version(),
        "members": members,
        "value_bytes": value_bytes,
        "duration_s": duration,
        "loads": loads,
    }


def render(figures: dict[str, Any]) -> str:
    lines = [
        f"{figures['system']}, {figures['members']} members on {LOOPBACK}, data on disk (its "
        f"fsync per commit), {figures['value_bytes']}-byte puts through the JSON gateway, "
        "keep-alive, one in flight per client:"
    ]
    for load in figures["loads"]:
        lines.append(
            f"  {load['clients']:>2} client{'s' if load['clients'] > 1 else ' '}: "
            f"{load['puts_per_s']:,.0f} puts/s, p50 {load['p50_ms']:.2f} ms, "
            f"p90 {load['p90_ms']:.2f} ms, p99 {load['p99_ms']:.2f} ms, max {load['max_ms']:.1f} ms"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description="etcd's puts/s and latency here.")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if not available():
        print(f"{prog}: skipped, etcd is not on the PATH ({install_hint})")
        return 0
    return run_alone(
        prog, lambda: measure(members=args.members, duration=args.duration), render, args.json
    )


if __name__ == "__main__":
    sys.exit(main())
