"""Faults that need a peer in a process of its own: killed peers, file descriptors, memory.

The peers are the scripts in ``tests/process_peers/``, run with ``python -u``; what they print
is collected line by line by threads. Every peer is killed and reaped before its test ends.

- R21: a peer process is killed (SIGKILL) in the middle of a stream, at a point drawn from a
  seeded random generator (the seed is printed; ``ALVARO_TEST_SEED=<seed>`` repeats it). The
  side that survives must notice within about a second, report ABNORMAL, free what the
  connection held, deliver no partial message, and lose nothing it confirmed; calls waiting on
  the connection must raise ConnectionClosed instead of hanging.
- R09 (b): a host limited to 64 file descriptors is flooded with connections. It must stay
  alive, log its trouble at most about once per second, use little CPU meanwhile, and serve a
  new client once the flood is over.
- R26: a host's memory per idle connection, plain and TLS, measured from outside while a second
  process holds the connections.

The tests that read ``/proc`` run on Linux only.
"""

from __future__ import annotations

import itertools
import os
import random
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import alvaro
import alvaro.sync
import alvaro.testing
from alvaro import CloseCode, ConnectionClosed

from .helpers import WAIT, T, open_fds, rss_kib
from .process_peers.streaming_client import message
from .processes import Peer, host_process

if TYPE_CHECKING:
    from collections.abc import Callable

    from alvaro.aio import Connection

LOOPBACK = "127.0.0.1"
BACKENDS = [pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")]

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc, which only Linux has"
)

#: How long the surviving side may take to notice that its peer was killed: the 1 s the
#: reliability cases allow, plus a margin for a machine busy with other jobs.
KILL_NOTICED_WITHIN = 1.0 + 20 * T

#: Timeouts of the in-test hosts and clients: small, so that a fault resolves fast.
OPTIONS: dict[str, Any] = {"open_timeout": 50 * T, "close_timeout": 20 * T}


async def until(predicate: Callable[[], bool], what: Callable[[], str], timeout: float) -> None:
    """Wait in async code until ``predicate()`` holds; fail with ``what()`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what()}")
        await anyio.sleep(T / 20)


def wait_until(predicate: Callable[[], bool], what: Callable[[], str], timeout: float) -> None:
    """Wait (blocking) until ``predicate()`` holds; fail with ``what()`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what()}")
        time.sleep(T / 20)


@pytest.fixture
def rng() -> random.Random:
    """A random generator whose seed is printed, and taken from ALVARO_TEST_SEED when set."""
    seed = int(os.environ.get("ALVARO_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"random seed {seed} (ALVARO_TEST_SEED={seed} repeats it)")
    return random.Random(seed)


# --- /proc --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used so far, user and system, in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # the name in parentheses may hold spaces
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


# --- R21: a peer killed mid-stream --------------------------------------------------------------


def intact(data: Any, seq: Any) -> bool:
    """Whether ``data`` is exactly what the streaming peers send as message ``seq``."""
    return isinstance(seq, int) and data == message(seq)


@linux_only
@pytest.mark.anyio
async def test_client_process_killed_mid_stream(anyio_backend: str, rng: random.Random) -> None:
    # The child streams numbered messages with alvaro.sync and prints each acknowledgement; it
    # is killed once it has printed a random number of them, and up to 10 ms more.
    kill_after = rng.randint(1, 1500)
    extra_delay = rng.uniform(0, 0.01)
    delivered: list[int] = []
    garbage: list[tuple[Any, Any]] = []
    lost: list[tuple[float, int | None, str]] = []

    async def got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        seq = metadata.get("seq")
        if not intact(data, seq):
            garbage.append((str(data)[:100], metadata))
        delivered.append(seq)  # type: ignore[arg-type]
        try:
            await conn.send("ack", {"ack": seq})
        except ConnectionClosed:
            pass  # the peer is gone; lost_client tells the rest

    def lost_client(conn: Connection) -> None:
        lost.append((time.monotonic(), conn.close_code, conn.close_reason))

    host = alvaro.Host(LOOPBACK, 0, **OPTIONS)
    host.got_data = got_data  # type: ignore[method-assign]
    host.lost_client = lost_client  # type: ignore[method-assign]
    async with host:
        fds_before = open_fds()
        with Peer("streaming_client.py", str(host.port), anyio_backend) as child:
            await until(
                lambda: len(child.lines("acked ")) >= kill_after,
                lambda: f"{kill_after} acknowledgements; {child.describe()}",
                WAIT,
            )
            await anyio.sleep(extra_delay)
            killed_at = child.kill()
            await until(lambda: bool(lost), lambda: "lost_client after the kill", WAIT)
        noticed_after = lost[0][0] - killed_at
        print(f"lost_client {noticed_after * 1000:.1f} ms after the kill: {lost[0][2]}")
        acked = [int(line.split()[1]) for line in child.lines("acked ")]

        assert noticed_after <= KILL_NOTICED_WITHIN
        assert lost[0][1] == CloseCode.ABNORMAL
        # Nothing torn or invented: the messages arrived whole, in order, from 1 without gaps.
        assert garbage == []
        assert delivered == list(range(1, len(delivered) + 1))
        # Nothing confirmed was lost.
        assert len(acked) >= kill_after
        assert set(acked) <= set(delivered)
        # The host let go of the connection and of its socket.
        await until(lambda: not host.clients, lambda: f"no clients: {host.clients}", 20 * T)
        await until(
            lambda: abs(open_fds() - fds_before) <= 2,
            lambda: f"open fds {open_fds()} back to {fds_before} +-2",
            20 * T,
        )
        await anyio.sleep(3 * T)  # time for a second lost_client, which must not come
        assert len(lost) == 1


class StreamingClient:
    """An in-test alvaro.aio client that streams numbered messages and collects the answers.

    ``outcomes`` maps ``"send"`` and ``"receive"`` to the exception that ended that loop of
    calls and the time it came; a loop still running has no entry.
    """

    def __init__(self) -> None:
        self.client = alvaro.Client(**OPTIONS)
        self.client.lost_connection = self._lost  # type: ignore[method-assign]
        self.lost: list[float] = []
        self.acks: list[int] = []
        self.sending_since: float | None = None
        self.sending: int | None = None  # the seq of the send() under way
        self.failed: int | None = None  # the seq of the send() that raised
        self.outcomes: dict[str, tuple[BaseException, float]] = {}

    def _lost(self) -> None:
        self.lost.append(time.monotonic())

    async def send_forever(self) -> None:
        seq = 0
        try:
            while True:
                seq += 1
                self.sending, self.sending_since = seq, time.monotonic()
                await self.client.send(message(seq), {"seq": seq})
                self.sending, self.sending_since = None, None
        except Exception as exc:
            self.failed = seq
            self.outcomes["send"] = (exc, time.monotonic())

    async def receive_forever(self) -> None:
        try:
            while True:
                self.acks.append((await self.client.receive()).metadata["ack"])
        except Exception as exc:
            self.outcomes["receive"] = (exc, time.monotonic())

    def send_blocked(self, longer_than: float) -> bool:
        since = self.sending_since
        return since is not None and time.monotonic() - since > longer_than


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["streaming", "blocked"])
async def test_host_process_killed_while_a_client_streams(
    anyio_backend: str, mode: str, rng: random.Random
) -> None:
    # "streaming": the host answers every message and is killed after a random number of
    # answers. "blocked": the host stops reading after a random number of messages, and is
    # killed while the client's send() waits for room.
    kill_after = rng.randint(1, 1500)
    stall = ["--stall-after", str(rng.randint(1, 200))] if mode == "blocked" else []
    streamer = StreamingClient()
    host, port = host_process("--backend", anyio_backend, *stall)
    with host:
        async with anyio.create_task_group() as tasks:
            await tasks.start(streamer.client.connect, LOOPBACK, port)
            tasks.start_soon(streamer.send_forever)
            tasks.start_soon(streamer.receive_forever)
            if mode == "streaming":
                await until(
                    lambda: len(streamer.acks) >= kill_after,
                    lambda: f"{kill_after} answers; {host.describe()}",
                    WAIT,
                )
            else:
                await until(
                    lambda: streamer.send_blocked(3 * T),
                    lambda: f"a send() blocked; {host.describe()}",
                    WAIT,
                )
            killed_at = host.kill()
            blocked = streamer.sending
            with anyio.move_on_after(WAIT):
                await until(
                    lambda: bool(streamer.lost) and len(streamer.outcomes) == 2,
                    lambda: f"lost_connection and both calls ended: {streamer.outcomes}",
                    WAIT,
                )
            tasks.cancel_scope.cancel()  # only if something hangs: the assertions below fail
    noticed_after = streamer.lost[0] - killed_at
    print(f"lost_connection {noticed_after * 1000:.1f} ms after the kill ({mode})")
    assert noticed_after <= KILL_NOTICED_WITHIN
    assert len(streamer.lost) == 1
    assert streamer.client.connection is not None
    assert streamer.client.connection.close_code == CloseCode.ABNORMAL
    for call in ("send", "receive"):
        error, ended_at = streamer.outcomes[call]
        assert isinstance(error, ConnectionClosed), (call, error)
        assert ended_at - killed_at <= KILL_NOTICED_WITHIN, call
    if mode == "blocked":
        # The send() that was waiting for room at the kill is the one that raised.
        assert blocked is not None
        assert streamer.failed == blocked


def alvaro_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name.startswith("alvaro-")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_sync_client_calls_raise_when_the_host_process_is_killed(
    backend: str, rng: random.Random
) -> None:
    # The host stops reading after a random number of messages; one thread blocks in send()
    # for room, another in receive() for an answer that never comes. Killing the host must end
    # both with ConnectionClosed, and later calls must raise it at once.
    threads_before = alvaro_threads()
    stall = rng.randint(1, 200)
    host, port = host_process("--backend", backend, "--stall-after", str(stall))
    client = alvaro.sync.Client(backend=backend, **OPTIONS)  # type: ignore[arg-type]
    lost = threading.Event()
    client.lost_connection = lost.set  # type: ignore[method-assign]
    outcomes: dict[str, tuple[BaseException, float]] = {}
    sending: list[tuple[int, float]] = []  # the send() under way: its seq and start
    failed: list[int] = []  # the seq of the send() that raised

    def sender() -> None:
        seq = 0
        try:
            while True:
                seq += 1
                sending[:] = [(seq, time.monotonic())]
                client.send(message(seq), {"seq": seq}, timeout=WAIT)
                sending.clear()
        except Exception as exc:
            failed.append(seq)
            outcomes["send"] = (exc, time.monotonic())

    def receiver() -> None:
        try:
            while True:
                client.receive(timeout=WAIT)
        except Exception as exc:
            outcomes["receive"] = (exc, time.monotonic())

    workers = [threading.Thread(target=sender), threading.Thread(target=receiver)]
    try:
        client.connect(LOOPBACK, port)
        for worker in workers:
            worker.start()
        wait_until(
            lambda: bool(sending) and time.monotonic() - sending[0][1] > 3 * T,
            lambda: f"a send() blocked; {outcomes}, {host.describe()}",
            WAIT,
        )
        killed_at = host.kill()
        blocked = sending[0][0]
        for worker in workers:
            worker.join(timeout=WAIT)
        assert not any(worker.is_alive() for worker in workers), "a call hangs after the kill"
        print(f"send() raised {(outcomes['send'][1] - killed_at) * 1000:.1f} ms after the kill")
        for call in ("send", "receive"):
            error, ended_at = outcomes[call]
            assert isinstance(error, ConnectionClosed), (call, error)
            assert ended_at - killed_at <= KILL_NOTICED_WITHIN, call
        assert failed == [blocked]  # the send() that waited for room raised
        assert lost.wait(KILL_NOTICED_WITHIN)
        # Every later call raises at once.
        with pytest.raises(ConnectionClosed):
            client.send("more", timeout=WAIT)
        with pytest.raises(ConnectionClosed):
            client.receive(timeout=WAIT)
        assert client.connection is not None
        assert client.connection.close_code == CloseCode.ABNORMAL
    finally:
        client.close()
        host.close()
        for worker in workers:
            if worker.ident is not None:
                worker.join(timeout=WAIT)
    wait_until(
        lambda: alvaro_threads() <= threads_before,
        lambda: f"alvaro's threads gone: {alvaro_threads() - threads_before}",
        WAIT,
    )


# --- R09 (b): out of file descriptors -----------------------------------------------------------

#: The file-descriptor limit of the flooded host.
NOFILE = 64
#: How long the host is kept out of file descriptors.
FLOOD = 1.5
#: Connections opened beyond the point where the host runs out, so that some always wait in
#: its accept backlog while the flood lasts, even if it closes some of those it accepted.
BACKLOG = 150
ACCEPT_WARNING = "cannot accept connections"
#: How soon after the flood a new client must have its answer.
SERVED_WITHIN = 30 * T


def log_time(line: str) -> float:
    """The time (time.time()) at the start of a log line of the host peer."""
    return float(line.split()[0])


def ask(port: int, backend: str) -> tuple[Any, float]:
    """Connect a new client, send a message and return the answer, with how long it took.

    A host still busy with what a flood left may turn clients away with TRY_AGAIN_LATER
    meanwhile; those are retried until SERVED_WITHIN has passed.
    """
    started = time.monotonic()
    while True:
        remaining = SERVED_WITHIN - (time.monotonic() - started)
        try:
            with alvaro.sync.connect(
                LOOPBACK, port, backend=backend, open_timeout=max(remaining, T)
            ) as client:
                client.send_data("still there?")
                data = client.receive(timeout=max(remaining, T)).data
                return data, time.monotonic() - started
        except alvaro.ConnectError:
            if remaining <= 0:
                raise
            time.sleep(T / 2)


@linux_only
@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ],
)
def test_host_out_of_file_descriptors_keeps_serving(backend: str) -> None:
    # The flood comes from one address: let it past the per-address handshake cap, which
    # would otherwise refuse it long before the host runs out of descriptors.
    host, port = host_process(
        "--backend", backend, "--nofile", str(NOFILE), "--per-address", "1000", "--log"
    )
    held: list[socket.socket] = []
    with host:
        host_fds_before = open_fds(host.pid)

        def cannot_accept() -> bool:
            return bool(host.errors(ACCEPT_WARNING)) or open_fds(host.pid) >= NOFILE

        try:
            # Open connections until the host is out of file descriptors, then a backlog more.
            deadline = time.monotonic() + WAIT
            while not cannot_accept():
                assert time.monotonic() < deadline, f"the host never ran out: {host.describe()}"
                if len(held) < 4 * NOFILE:
                    held.append(socket.create_connection((LOOPBACK, port), timeout=WAIT))
                else:
                    time.sleep(T / 20)
            for _ in range(BACKLOG):
                held.append(socket.create_connection((LOOPBACK, port), timeout=WAIT))
            # Hold them, while the host fails to accept more. Measure its CPU time meanwhile.
            started, cpu_before = time.monotonic(), cpu_seconds(host.pid)
            time.sleep(FLOOD)
            wall, cpu = time.monotonic() - started, cpu_seconds(host.pid) - cpu_before
            assert host.process.poll() is None, host.describe()
        finally:
            for sock in held:
                sock.close()
        warnings = host.errors(ACCEPT_WARNING)
        warnings_read_at = time.time()
        print(
            f"{backend}: host CPU {cpu / wall:.1%} of {wall:.2f} s out of file descriptors; "
            f"{len(warnings)} warning(s) about it"
        )
        assert cpu / wall < 0.5

        # Once the flood is over, a new client is served at once.
        answer, served_after = ask(port, backend)
        print(f"{backend}: a new client was answered {served_after * 1000:.0f} ms after the flood")
        assert answer == "still there?"
        assert host.process.poll() is None, host.describe()

        # The host said why it could not accept, at most once a second.
        assert warnings, f"no {ACCEPT_WARNING!r} in the log: {host.describe()}"
        times = [log_time(line) for line in warnings]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert all(gap >= 0.95 for gap in gaps), warnings
        assert len(warnings) <= warnings_read_at - times[0] + 1, warnings
        assert not host.errors("Traceback"), host.describe()
        wait_until(
            lambda: abs(open_fds(host.pid) - host_fds_before) <= 2,
            lambda: f"the host's fds {open_fds(host.pid)} back to {host_fds_before} +-2",
            WAIT,
        )


# --- R26: memory per idle connection ------------------------------------------------------------

#: Connections opened before the first measurement, so that lazily made objects and the
#: allocator's first arenas are not counted per connection.
WARM_UP = 16
#: The most a host may keep in memory per idle connection.
BUDGET_KIB = 64


def measure_idle_connections(tmp_path: Path, *, backend: str, tls: bool, count: int) -> float:
    """Open ``count`` idle connections to a host process; return its RSS growth per connection."""
    host_args = ["--backend", backend]
    client_args: list[str] = []
    if tls:
        files = alvaro.testing.write_tls_files(tmp_path)
        host_args += ["--cert", str(files.cert), "--key", str(files.key)]
        client_args = ["--ca", str(files.ca)]
    host, port = host_process(*host_args)
    with host, Peer("idle_clients.py", str(port), *client_args, stdin=True) as clients:
        fds_at_start = open_fds(host.pid)

        def open_more(more: int, total: int) -> None:
            clients.tell(f"open {more}")
            clients.wait_for(f"open {total}", timeout=WAIT + count * T / 10)
            # The host counts a client in once the handshake is done on its side too.
            wait_until(
                lambda: open_fds(host.pid) >= fds_at_start + total,
                lambda: f"{total} connections on the host; {host.describe()}",
                WAIT,
            )
            time.sleep(3 * T)

        open_more(WARM_UP, WARM_UP)
        before = rss_kib(host.pid)
        open_more(count, WARM_UP + count)
        after = rss_kib(host.pid)
        assert host.process.poll() is None, host.describe()
    per_connection = (after - before) / count
    print(
        f"{backend}, {'TLS' if tls else 'plain'}: host RSS {before} KiB -> {after} KiB "
        f"for {count} idle connections: {per_connection:.1f} KiB per connection"
    )
    return per_connection


TLS_MODES = [pytest.param(False, id="plain"), pytest.param(True, id="tls")]


@linux_only
@pytest.mark.parametrize("tls", TLS_MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_per_idle_connection(tmp_path: Path, backend: str, tls: bool) -> None:
    per_connection = measure_idle_connections(tmp_path, backend=backend, tls=tls, count=500)
    assert per_connection <= BUDGET_KIB


@linux_only
@pytest.mark.slow
@pytest.mark.parametrize("tls", TLS_MODES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_per_idle_connection_thousand(tmp_path: Path, backend: str, tls: bool) -> None:
    per_connection = measure_idle_connections(tmp_path, backend=backend, tls=tls, count=1000)
    assert per_connection <= BUDGET_KIB


# --- A PING flood (control frames have a bound of their own) ----------------------------------

#: What a peer sends in the flood: 100 MiB of PINGs with the largest payload (4 KiB).
FLOOD_BYTES = 100 * 1024 * 1024
#: How much the host may grow meanwhile: its PONG bound (64 KiB) plus the batch its writer is
#: stuck on, a read buffer and allocator noise; far below the flood (the bug grew it by all of it).
FLOOD_GROWTH_KIB = 4 * 1024


def _flood_with_pings(port: int, total: int) -> int:
    """Connect, do the handshake, then send ``total`` bytes of PINGs and read nothing more;
    return how many bytes were sent before the host closed the connection (if it did)."""
    from alvaro.protocol import Decoder, Hello, encode_hello, encode_ping

    ping = encode_ping(b"p" * 4096)
    batch = ping * 64
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(encode_hello("client"))
        decoder = Decoder("client")
        while not any(isinstance(event, Hello) for event in decoder.events()):
            decoder.receive_data(sock.recv(65536))
        sent = 0
        try:
            while sent < total:
                sock.sendall(batch)
                sent += len(batch)
        except OSError:
            pass  # dropped (as a slow consumer): the flood is over all the same
        return sent


@linux_only
@pytest.mark.parametrize("backend", BACKENDS)
def test_ping_flood_from_a_peer_that_never_reads_does_not_grow_the_host(backend: str) -> None:
    host, port = host_process("--backend", backend)
    with host:
        # Warm up: one ordinary round trip, so that what is measured is the flood alone.
        with alvaro.sync.connect("127.0.0.1", port, backend=backend) as client:
            client.send_data("warm")
            assert client.receive(timeout=WAIT).data == "warm"
        time.sleep(3 * T)
        before = rss_kib(host.pid)
        sent = _flood_with_pings(port, FLOOD_BYTES)
        after = rss_kib(host.pid)
        assert host.process.poll() is None, host.describe()
        # The host read the whole flood (it kept reading), and still serves others.
        assert sent >= FLOOD_BYTES
        with alvaro.sync.connect("127.0.0.1", port, backend=backend) as client:
            client.send_data("still here")
            assert client.receive(timeout=WAIT).data == "still here"
    print(f"{backend}: host RSS {before} KiB -> {after} KiB after {sent >> 20} MiB of PINGs")
    assert after - before < FLOOD_GROWTH_KIB
