"""alvaro.sync.Host from plain threads: starting, serving, callbacks, connections and stopping."""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

import alvaro
from alvaro import CloseCode, ConnectionClosedError, ConnectionClosedOK, WrongThreadError
from alvaro.sync import Client, Connection, Host
from alvaro.sync._loop import shared_loop

from ..helpers import WAIT, T, wait_until
from .support import (
    LOOPBACK,
    GuiLoop,
    alvaro_threads,
    connect,
    echo,
    echo_host,
    loop_threads,
    on_loop,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from alvaro.sync._loop import Backend


def where() -> str:
    return threading.current_thread().name


def running(host: Host) -> bool:
    """``host.running``, read through a call so that type checkers do not narrow it."""
    return host.running


# --- Starting and serving -------------------------------------------------------------------


def test_start_listens_on_a_free_port_and_lists_the_clients(sync_backend: Backend) -> None:
    host = Host(LOOPBACK, 0, backend=sync_backend)
    one = Client(backend=sync_backend)
    two = Client(backend=sync_backend)
    try:
        assert (host.port, host.running) == (0, False)
        host.start()
        assert host.port > 0
        assert host.running
        assert host.addr == LOOPBACK
        assert host.backend == sync_backend
        assert host.clients == []
        with pytest.raises(RuntimeError):
            host.start()
        one_conn = connect(one, host.port)
        wait_until(lambda: len(host.clients) == 1)
        two_conn = connect(two, host.port)
        wait_until(lambda: len(host.clients) == 2)
        clients = host.clients
        assert all(isinstance(conn, alvaro.sync.Connection) for conn in clients)
        # Oldest first, with the peers' addresses.
        assert [(conn.addr, conn.port) for conn in clients] == [
            (LOOPBACK, one_conn.local_port),
            (LOOPBACK, two_conn.local_port),
        ]
        assert all(conn.is_open and conn.local_port == host.port for conn in clients)
        assert host.clients[0] is clients[0]  # one facade per connection
        one.close()
        wait_until(lambda: len(host.clients) == 1)
        assert host.clients[0] is clients[1]
    finally:
        one.close()
        two.close()
        host.close()
    assert not running(host)
    assert not alvaro_threads()


def test_with_block_starts_and_closes_the_host(sync_backend: Backend) -> None:
    with echo_host(sync_backend) as host:
        assert host.running
        assert host.port > 0
        [loop] = loop_threads()
        with Client(backend=sync_backend) as client:
            connect(client, host.port)
            client.send_data("in a with block")
            assert client.receive(timeout=WAIT).data == "in a with block"
    assert not running(host)
    assert not loop.is_alive()


def test_serve_forever_in_a_thread_returns_after_stop(sync_backend: Backend) -> None:
    host = echo_host(sync_backend)
    server = threading.Thread(target=host.serve_forever, name="test-server")
    server.start()
    try:
        wait_until(lambda: host.running and host.port > 0)
        with Client(backend=sync_backend) as client:
            connect(client, host.port)
            client.send_data("served")
            assert client.receive(timeout=WAIT).data == "served"
            assert server.is_alive()
            start = time.monotonic()
            host.stop()  # from the main thread
            assert time.monotonic() - start < WAIT
            server.join(WAIT)
            assert not server.is_alive()
            assert not host.running
            with pytest.raises(ConnectionClosedOK):
                client.receive(timeout=WAIT)
            assert client.connection is not None
            assert client.connection.close_code == CloseCode.GOING_AWAY
            host.stop()  # idempotent
    finally:
        host.stop()
        server.join(WAIT)
        host.close()
    assert not server.is_alive()


def test_running_means_listening_when_serve_forever_starts_in_a_thread(
    sync_backend: Backend,
) -> None:
    """BUG: ``running`` (documented "whether the host is listening") turns True before listening,
    while ``port`` is still 0, so a thread that waits for ``running`` connects to port 0."""
    seen: list[int] = []
    for _ in range(10):
        host = Host(LOOPBACK, 0, backend=sync_backend)
        server = threading.Thread(target=host.serve_forever, name="test-server")
        server.start()
        try:
            deadline = time.monotonic() + WAIT
            while not host.running:  # a tight poll, as a thread waiting for the host might do
                assert time.monotonic() < deadline
                time.sleep(0)
            seen.append(host.port)
        finally:
            wait_until(lambda: host.port > 0)  # noqa: B023
            host.stop()
            server.join(WAIT)
            host.close()
        assert not server.is_alive()
    assert all(port > 0 for port in seen), seen


# --- Callbacks ------------------------------------------------------------------------------


def test_host_callbacks_run_in_order_on_the_dispatcher_thread(sync_backend: Backend) -> None:
    events: list[tuple[Any, ...]] = []

    class Recorder(Host):
        def server_started(self, host: Host) -> None:
            events.append(("started", host, where()))

        def new_client(self, conn: Connection) -> None:
            events.append(("new", conn.port, id(conn), where()))

        def got_data(self, conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
            events.append(("data", conn.port, id(conn), data, metadata, where()))

        def lost_client(self, conn: Connection) -> None:
            events.append(("lost", conn.port, id(conn), where()))

    host = Recorder(LOOPBACK, 0, backend=sync_backend)
    with host:
        with Client(backend=sync_backend) as one, Client(backend=sync_backend) as two:
            ports = {
                one: connect(one, host.port).local_port,
                two: connect(two, host.port).local_port,
            }
            for i in range(20):
                (one if i % 2 else two).send_data(i, {"i": i})
        wait_until(lambda: sum(event[0] == "lost" for event in events) == 2)
        loop_name = loop_threads()[0].name
    name = "alvaro-host-callbacks"
    assert events[0] == ("started", host, name)
    assert events[0][1] is host  # the sync host, not the async one inside it
    for client, port in ports.items():
        mine = [event for event in events[1:] if event[1] == port]
        ids = {event[2] for event in mine}
        assert len(ids) == 1  # the same Connection object in every callback
        expected = [i for i in range(20) if (i % 2 == 1) == (client is one)]
        assert [(event[0], *event[3:]) for event in mine] == [
            ("new", name),
            *[("data", i, {"i": i}, name) for i in expected],
            ("lost", name),
        ]
    assert loop_name == f"alvaro-{sync_backend}-loop"
    assert loop_name not in {event[-1] for event in events}


def test_sync_calls_from_inside_host_callbacks(sync_backend: Backend) -> None:
    timings: dict[str, Any] = {}
    host = Host(LOOPBACK, 0, backend=sync_backend)

    def got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        if data == "close me":
            start = time.monotonic()
            closed = conn.close("closing from a callback", timeout=WAIT)
            timings["close"] = (closed, time.monotonic() - start)
        elif data == "stop":
            start = time.monotonic()
            host.stop()
            timings["stop"] = time.monotonic() - start
        else:
            conn.send_data(["echo", data], metadata)

    host.got_data = got_data  # type: ignore[method-assign]
    with host:
        with Client(backend=sync_backend) as client:
            connect(client, host.port)
            client.send_data("hello", {"n": 1})
            message = client.receive(timeout=WAIT)
            assert (message.data, message.metadata) == (["echo", "hello"], {"n": 1})
            client.send_data("close me")
            with pytest.raises(ConnectionClosedOK):
                client.receive(timeout=WAIT)
            wait_until(lambda: "close" in timings)
            assert timings["close"][0] is True
            assert timings["close"][1] < 10 * T
            assert client.connection is not None
            assert client.connection.close_reason == "closing from a callback"
        with Client(backend=sync_backend) as client:
            connect(client, host.port)
            client.send_data("stop")
            wait_until(lambda: "stop" in timings)
            assert timings["stop"] < 10 * T
            assert not host.running
            with pytest.raises(ConnectionClosedOK):
                client.receive(timeout=WAIT)
            assert client.connection is not None
            assert client.connection.close_code == CloseCode.GOING_AWAY


def test_conn_close_inside_got_data_with_a_backlog_does_not_wait_for_close_timeout(
    sync_backend: Backend,
) -> None:
    """BUG: conn.close() in a host callback stalls for close_timeout when max_queue callbacks are
    pending: the reader waits for room in the dispatcher, whose thread waits in close()."""
    close_timeout = 20 * T
    took: list[float] = []
    host = Host(LOOPBACK, 0, backend=sync_backend, close_timeout=close_timeout)

    def got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        if data == 0:
            start = time.monotonic()
            conn.close("enough", timeout=WAIT)
            took.append(time.monotonic() - start)

    host.got_data = got_data  # type: ignore[method-assign]
    with host, Client(backend=sync_backend) as client:
        connect(client, host.port)
        for i in range(40):  # more than the host's max_queue (16)
            client.send_data(i)
        wait_until(lambda: bool(took))
    assert took[0] < 5 * T, f"conn.close() inside got_data took {took[0]:.2f} s"


def test_stop_inside_got_data_with_a_backlog_returns_promptly(sync_backend: Backend) -> None:
    close_timeout = 20 * T
    took: list[float] = []
    host = Host(LOOPBACK, 0, backend=sync_backend, close_timeout=close_timeout)

    def got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        if data == 0:
            start = time.monotonic()
            host.stop()
            took.append(time.monotonic() - start)

    host.got_data = got_data  # type: ignore[method-assign]
    with host, Client(backend=sync_backend) as client:
        connect(client, host.port)
        for i in range(40):  # more than the host's max_queue (16)
            client.send_data(i)
        wait_until(lambda: bool(took))
        with pytest.raises(ConnectionClosedOK):
            client.receive(timeout=WAIT)
    assert took[0] < 5 * T, f"host.stop() inside got_data took {took[0]:.2f} s"


def test_a_host_callback_that_raises_closes_only_its_connection(
    sync_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    host = Host(LOOPBACK, 0, backend=sync_backend)

    def got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        if data == "boom":
            raise RuntimeError("application bug")
        conn.send_data(data, metadata)

    host.got_data = got_data  # type: ignore[method-assign]
    with (
        caplog.at_level(logging.ERROR, logger="alvaro.host"),
        host,
        Client(backend=sync_backend) as good,
        Client(backend=sync_backend) as bad,
    ):
        good_conn = connect(good, host.port)
        connect(bad, host.port)
        wait_until(lambda: len(host.clients) == 2)
        bad.send_data("boom")
        with pytest.raises(ConnectionClosedError) as info:
            bad.receive(timeout=WAIT)
        assert info.value.code == CloseCode.INTERNAL_ERROR
        assert bad.connection is not None
        assert bad.connection.close_code == CloseCode.INTERNAL_ERROR
        assert bad.connection.closed_by_peer is True
        # The other client is unaffected.
        good.send_data("still fine", {"ok": 1})
        message = good.receive(timeout=WAIT)
        assert (message.data, message.metadata) == ("still fine", {"ok": 1})
        assert good.connected
        wait_until(lambda: len(host.clients) == 1)
        assert host.clients[0].port == good_conn.local_port
        assert host.running
    records = [
        record
        for record in caplog.records
        if record.name == "alvaro.host" and record.exc_info is not None
    ]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is RuntimeError
    assert records[0].threadName == "alvaro-host-callbacks"


def test_dispatch_runs_host_callbacks_where_the_dispatcher_runs_them(sync_backend: Backend) -> None:
    events: list[tuple[Any, ...]] = []
    with GuiLoop() as gui:
        host = Host(LOOPBACK, 0, backend=sync_backend, dispatch=gui.dispatch)
        host.server_started = lambda host: events.append(("started", where()))  # type: ignore[method-assign]
        host.new_client = lambda conn: events.append(("new", where()))  # type: ignore[method-assign]

        def got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
            events.append(("data", data, where()))
            conn.send_data(data)

        host.got_data = got_data  # type: ignore[method-assign]
        host.lost_client = lambda conn: events.append(("lost", where()))  # type: ignore[method-assign]
        with host:
            with Client(backend=sync_backend) as client:
                connect(client, host.port)
                for i in range(40):  # more than max_queue: the loop waits for the GUI thread
                    client.send_data(i)
                assert [client.receive(timeout=WAIT).data for _ in range(40)] == list(range(40))
            wait_until(lambda: len(events) == 43)
    assert events == [
        ("started", gui.name),
        ("new", gui.name),
        *[("data", i, gui.name) for i in range(40)],
        ("lost", gui.name),
    ]
    # dispatch() itself is called by the host's dispatcher thread, never by the loop thread.
    assert set(gui.dispatched_from) == {"alvaro-host-callbacks"}


# --- Connections ----------------------------------------------------------------------------


def test_per_connection_send_data_and_disconnect_reach_the_client(sync_backend: Backend) -> None:
    got: list[tuple[Any, Any]] = []
    lost = threading.Event()
    client = Client(backend=sync_backend)
    client.got_data = lambda data, metadata: got.append((data, metadata))  # type: ignore[method-assign]
    client.lost_connection = lost.set  # type: ignore[method-assign]
    with Host(LOOPBACK, 0, backend=sync_backend) as host, client:
        client.connect(LOOPBACK, host.port)
        wait_until(lambda: len(host.clients) == 1)
        [conn] = host.clients
        conn.send_data("hi", {"from": "host"})
        conn.sendData(b"\x00raw", metaData={"k": 2})
        conn.disconnect("see you", 4321)
        assert lost.wait(WAIT)
        assert got == [("hi", {"from": "host"}), (b"\x00raw", {"k": 2})]
        assert client.connection is not None
        assert client.connection.close_code == 4321
        assert client.connection.close_reason == "see you"
        assert client.connection.closed_by_peer is True
        assert conn.wait_closed(WAIT)
        assert conn.close_code == 4321
        assert conn.closed_by_peer is False
        wait_until(lambda: host.clients == [])


def test_host_receives_from_a_connection_without_got_data(sync_backend: Backend) -> None:
    with Host(LOOPBACK, 0, backend=sync_backend) as host, Client(backend=sync_backend) as client:
        connect(client, host.port)
        wait_until(lambda: len(host.clients) == 1)
        [conn] = host.clients
        with pytest.raises(TimeoutError):
            conn.receive(timeout=0)
        for i in range(30):  # more than max_queue: the reader waits for receive()
            client.send_data(i, {"i": i})
        received = [conn.receive(timeout=WAIT) for _ in range(30)]
        assert [(m.data, m.metadata) for m in received] == [(i, {"i": i}) for i in range(30)]
        client.disconnect()
        with pytest.raises(ConnectionClosedOK):
            conn.receive(timeout=WAIT)


# --- The loop thread ------------------------------------------------------------------------


def test_host_calls_on_the_loop_thread(sync_backend: Backend) -> None:
    with echo_host(sync_backend) as host, Client(backend=sync_backend) as client:
        connect(client, host.port)
        wait_until(lambda: len(host.clients) == 1)
        [conn] = host.clients
        [loop] = loop_threads()
        blocking: dict[str, Callable[[], object]] = {
            "host.close()": host.close,
            "host.start()": host.start,
            "host.serve_forever()": host.serve_forever,
            "conn.receive(timeout=1)": lambda: conn.receive(timeout=1),
            "conn.send()": lambda: conn.send("x"),
            "conn.close()": conn.close,
        }

        def on_the_loop_thread() -> dict[str, Any]:
            outcome: dict[str, Any] = {"thread": where()}
            for name, call in blocking.items():
                start = time.monotonic()
                try:
                    call()
                    result: object = "returned"
                except Exception as exc:
                    result = type(exc)
                outcome[name] = (result, time.monotonic() - start)
            conn.send_data("sent on the loop thread")  # never blocks: allowed there
            # stop() on the loop thread only asks for the shutdown.
            start = time.monotonic()
            host.stop()
            outcome["host.stop()"] = time.monotonic() - start
            return outcome

        outcome = on_loop(host, on_the_loop_thread)
        assert outcome.pop("thread") == loop.name
        assert outcome.pop("host.stop()") < 5 * T
        for name, (result, elapsed) in outcome.items():
            assert result is WrongThreadError, name
            assert elapsed < 5 * T, name
        # The requested shutdown happens, after what was queued.
        assert client.receive(timeout=WAIT).data == "sent on the loop thread"
        with pytest.raises(ConnectionClosedOK):
            client.receive(timeout=WAIT)
        wait_until(lambda: not host.running)
        # The loop thread is still healthy.
        with echo_host(sync_backend) as other, Client(backend=sync_backend) as again:
            connect(again, other.port)
            again.send_data("healthy")
            assert again.receive(timeout=WAIT).data == "healthy"
        assert loop_threads() == [loop]


# --- The original library's names --------------------------------------------------------------


def test_camel_case_aliases_on_the_sync_host(sync_backend: Backend) -> None:
    new: list[Connection] = []
    started: list[Host] = []
    host = Host(LOOPBACK, 0, backend=sync_backend)

    def gotData(conn: Connection, data: Any, metaData: Any) -> None:
        conn.sendData(["echo", data], metaData=metaData)

    host.newClient = new.append
    host.gotData = gotData
    host.serverStarted = started.append
    assert host.got_data is gotData
    assert host.newClient is host.new_client
    with host, Client(backend=sync_backend) as client:
        connect(client, host.port)
        client.sendData("hi", metaData={"k": 1})
        message = client.receive(timeout=WAIT)
        assert (message.data, message.metadata) == (["echo", "hi"], {"k": 1})
        wait_until(lambda: len(new) == 1)
        assert isinstance(new[0], Connection)
        assert new[0] is host.clients[0]
        wait_until(lambda: len(started) == 1)
        assert started[0] is host


def test_a_subclass_with_seed_names_gets_its_callbacks(sync_backend: Backend) -> None:
    seen: list[Any] = []

    class SeedHost(Host):
        def newClient(self, conn: Connection) -> None:
            seen.append("new")

        def gotData(self, conn: Connection, data: Any, metaData: Any) -> None:
            seen.append(data)
            echo(conn, data, metaData)

    with (
        SeedHost(LOOPBACK, 0, backend=sync_backend) as host,
        Client(backend=sync_backend) as client,
    ):
        connect(client, host.port)
        client.send_data("seed")
        assert client.receive(timeout=WAIT).data == "seed"
    assert seen == ["new", "seed"]


def test_replies_to_messages_sent_just_before_a_close_still_arrive(
    sync_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    # Host callbacks run behind the loop; before answering a client's CLOSE, the host lets the
    # callbacks already scheduled reply, as an alvaro.aio host would.
    caplog.set_level(logging.INFO)
    replies: list[Any] = []
    with echo_host(sync_backend) as host:
        for round_no in range(5):
            client = Client(backend=sync_backend)
            client.got_data = lambda data, metadata: replies.append(data)  # type: ignore[method-assign]
            connect(client, host.port)
            client.send_data(["last words", round_no])
            client.close()  # at once, without waiting for the reply
    assert replies == [["last words", n] for n in range(5)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# --- Starting and stopping from many threads at once ---------------------------------------------


def race(*actions: Callable[[], object]) -> list[str]:
    """Run each action in a thread of its own, all released at once; return their outcomes
    ("ok" or the exception's type name), in the order of ``actions``."""
    barrier = threading.Barrier(len(actions))
    outcomes = [""] * len(actions)

    def run(index: int, action: Callable[[], object]) -> None:
        barrier.wait(WAIT)
        try:
            action()
        except Exception as exc:
            outcomes[index] = type(exc).__name__
        else:
            outcomes[index] = "ok"

    threads = [threading.Thread(target=run, args=item) for item in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive()
    return outcomes


def test_concurrent_start_stop_and_close_keep_the_loop_leases_right(sync_backend: Backend) -> None:
    """A lost start() race raises RuntimeError and gives back nothing it did not take; stop()
    and close() racing each other, or a start(), leave the host either running (with its one
    lease) or stopped (with none); another object's close() then works as ever."""
    loop = shared_loop(sync_backend)
    with Client(backend=sync_backend) as bystander, echo_host(sync_backend) as other:
        connect(bystander, other.port)
        leases = loop.leases
        for _ in range(10):
            host = Host(LOOPBACK, 0, backend=sync_backend)
            assert sorted(race(host.start, host.start, host.start)) == ["RuntimeError"] * 2 + ["ok"]
            assert host.running
            assert loop.leases == leases + 1
            assert race(host.stop, host.close, host.stop) == ["ok"] * 3
            assert not host.running
            assert loop.leases == leases
            outcomes = race(host.start, host.stop)
            assert outcomes[0] == "ok"
            assert loop.leases == leases + (1 if host.running else 0)
            host.close()
            assert loop.leases == leases
        bystander.send_data("still fine")
        assert bystander.receive(timeout=WAIT).data == "still fine"
    assert loop.leases == leases - 2


def test_concurrent_connects_connect_once(sync_backend: Backend) -> None:
    loop = shared_loop(sync_backend)
    with echo_host(sync_backend) as host:
        leases = loop.leases
        for _ in range(10):
            client = Client(backend=sync_backend)
            connect_once = functools.partial(client.connect, LOOPBACK, host.port)
            outcomes = race(connect_once, connect_once, connect_once)
            assert sorted(outcomes) == ["RuntimeError"] * 2 + ["ok"]
            assert loop.leases == leases + 1
            race(client.close, client.close)
            assert loop.leases == leases
