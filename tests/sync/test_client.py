"""alvaro.sync.Client from plain threads: messages, the shared loop thread, errors and callbacks."""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

import alvaro
from alvaro import (
    CloseCode,
    ConnectError,
    ConnectionClosedOK,
    EncodeError,
    LocalProtocolError,
    MessageTooLarge,
    OutboxFull,
    WrongThreadError,
)
from alvaro.aio._core import core_of
from alvaro.sync import Client, Connection, Host
from alvaro.sync._loop import Backend, shared_loop

from ..helpers import WAIT, T, free_port, wait_until
from .support import (
    LOOPBACK,
    GuiLoop,
    RawHttpServer,
    alvaro_threads,
    call_in_thread,
    connect,
    echo_host,
    loop_threads,
    on_loop,
)

if TYPE_CHECKING:
    from collections.abc import Callable

# --- (a) Blocking send and receive from the main thread ----------------------------------------


def test_send_data_and_receive_from_the_main_thread(sync_backend: Backend) -> None:
    samples: list[tuple[Any, dict[str, Any]]] = [
        ("hello", {"kind": "greeting", "n": 1}),
        ({"nested": [1, 2.5, None, True, {"deep": "é✓"}]}, {}),
        (b"\x00\xffraw bytes", {"kind": "raw"}),
        (b"", {}),
        ([], {"empty": []}),
        (12345678901234567890, {"big": 2**70}),
    ]
    with echo_host(sync_backend) as host, Client(backend=sync_backend) as client:
        connect(client, host.port)
        # timeout=0 only polls; a timeout waits that long, then raises.
        with pytest.raises(TimeoutError):
            client.receive(timeout=0)
        start = time.monotonic()
        with pytest.raises(TimeoutError):
            client.receive(timeout=2 * T)
        assert 2 * T - 0.02 <= time.monotonic() - start < WAIT
        for data, metadata in samples:
            client.send_data(data, metadata)
        received = [client.receive(timeout=WAIT) for _ in samples]
        # Polling returns a message once one is there.
        client.send_data("polled")
        deadline = time.monotonic() + WAIT
        while True:
            try:
                polled = client.receive(timeout=0)
                break
            except TimeoutError:
                assert time.monotonic() < deadline
                time.sleep(T / 10)
    assert all(isinstance(message, alvaro.Message) for message in received)
    assert [(message.data, message.metadata) for message in received] == samples
    assert type(received[2].data) is bytes
    assert type(received[3].data) is bytes
    assert polled.data == "polled"


@pytest.mark.parametrize("how", ["disconnect", "stop"])
def test_iteration_ends_when_the_host_closes_normally(sync_backend: Backend, how: str) -> None:
    host = Host(LOOPBACK, 0, backend=sync_backend)

    def new_client(conn: Connection) -> None:
        for i in range(5):
            conn.send_data(i, {"i": i})
        if how == "disconnect":
            conn.disconnect("that is all")
        else:
            host.stop()  # from inside a callback: GOING_AWAY after what was queued

    host.new_client = new_client  # type: ignore[method-assign]
    with host, Client(backend=sync_backend) as client:
        connect(client, host.port)
        received = call_in_thread(lambda: [(m.data, m.metadata) for m in client])
        assert received == [(i, {"i": i}) for i in range(5)]
        assert client.connection is not None
        expected = CloseCode.NORMAL if how == "disconnect" else CloseCode.GOING_AWAY
        assert client.connection.close_code == expected
        assert not client.connected
        # Every later receive() raises too.
        with pytest.raises(ConnectionClosedOK):
            client.receive(timeout=0)


def test_using_a_client_before_connect_raises(sync_backend: Backend) -> None:
    with Client(backend=sync_backend) as client:
        assert client.connection is None
        assert not client.connected
        with pytest.raises(LocalProtocolError):
            client.send_data("too early")
        with pytest.raises(LocalProtocolError):
            client.receive(timeout=0)
        assert client.backend == sync_backend
    assert not alvaro_threads()


# --- (b) Blocking calls on the loop thread ------------------------------------------------------


def test_blocking_calls_on_the_loop_thread_raise_wrong_thread_error(sync_backend: Backend) -> None:
    with echo_host(sync_backend) as host, Client(backend=sync_backend) as client:
        conn = connect(client, host.port)
        blocking: dict[str, Callable[[], object]] = {
            "client.receive(timeout=1)": lambda: client.receive(timeout=1),
            "client.receive()": client.receive,
            "connection.receive(timeout=1)": lambda: conn.receive(timeout=1),
            "client.send()": lambda: client.send("x", timeout=1),
            "connection.send()": lambda: conn.send("x"),
            "client.wait_for_connection(timeout=1)": lambda: client.wait_for_connection(timeout=1),
            "client.waitForConnection(timeout=1)": lambda: client.waitForConnection(timeout=1),
            "connection.close()": conn.close,
            "client.close()": client.close,
            "new Client().connect()": lambda: Client(backend=sync_backend).connect(
                LOOPBACK, host.port
            ),
        }

        def on_the_loop_thread() -> dict[str, Any]:
            outcome: dict[str, Any] = {"thread": threading.current_thread().name}
            for name, call in blocking.items():
                start = time.monotonic()
                try:
                    call()
                    result: object = "returned"
                except Exception as exc:
                    result = type(exc)
                outcome[name] = (result, time.monotonic() - start)
            # Polling does not block, and neither do send_data() and the loop's own work.
            try:
                client.receive(timeout=0)
            except TimeoutError:
                outcome["poll"] = TimeoutError
            client.send_data("sent on the loop thread")
            return outcome

        outcome = on_loop(client, on_the_loop_thread)
        assert outcome.pop("thread") == f"alvaro-{sync_backend}-loop"
        assert outcome.pop("poll") is TimeoutError
        for name, (result, elapsed) in outcome.items():
            assert result is WrongThreadError, name
            assert elapsed < 5 * T, name
        # The loop is healthy: nothing was closed, and messages still round-trip.
        assert client.receive(timeout=WAIT).data == "sent on the loop thread"
        assert client.connected
        client.send_data("still alive", {"n": 2})
        message = client.receive(timeout=WAIT)
        assert (message.data, message.metadata) == ("still alive", {"n": 2})


def test_wrong_thread_error_is_a_runtime_error(sync_backend: Backend) -> None:
    with echo_host(sync_backend) as host:
        with pytest.raises(RuntimeError, match="event-loop thread"):
            on_loop(host, lambda: Client(backend=sync_backend).connect(LOOPBACK, host.port))


# --- (c) wait_for_connection and refused connections ----------------------------------------


def test_wait_for_connection_without_a_connect_sleeps_then_returns_false(
    sync_backend: Backend,
) -> None:
    client = Client(backend=sync_backend)
    try:
        cpu, start = time.process_time(), time.monotonic()
        assert client.wait_for_connection(timeout=1) is False
        elapsed, used = time.monotonic() - start, time.process_time() - cpu
        assert 0.98 <= elapsed < 1 + WAIT
        assert used < 0.05
    finally:
        client.close()


def test_wait_for_connection_returns_true_once_connected(sync_backend: Backend) -> None:
    with echo_host(sync_backend) as host, Client(backend=sync_backend) as client:
        # The original library's pattern: one thread connects, another waits for it.
        connector = threading.Thread(
            target=client.connect, args=(LOOPBACK, host.port), name="test-connector"
        )
        connector.start()
        try:
            assert client.wait_for_connection(timeout=WAIT) is True
        finally:
            connector.join(WAIT)
        assert not connector.is_alive()
        assert client.connected
        assert client.wait_for_connection(timeout=0) is True


def test_connect_refused_raises_connect_error_and_leaves_no_thread(sync_backend: Backend) -> None:
    before = {thread.ident for thread in threading.enumerate()}
    count = threading.active_count()
    client = Client(backend=sync_backend)
    try:
        with pytest.raises(ConnectError) as info:
            client.connect(LOOPBACK, free_port())
        assert isinstance(info.value, OSError)
        assert isinstance(info.value, alvaro.AlvaroError)
        assert not client.connected
        # The failed connect gave its lease back: the loop thread stopped before close().
        wait_until(lambda: threading.active_count() <= count, timeout=20 * T)
        assert {thread.ident for thread in threading.enumerate()} <= before
        assert not alvaro_threads()
    finally:
        client.close()
    assert shared_loop(sync_backend).leases == 0


@pytest.mark.parametrize("port", [70000, -1, 0, None, 3.5, "8888", True], ids=repr)
def test_an_invalid_port_is_refused_before_the_loop_thread_starts(
    sync_backend: Backend, port: Any
) -> None:
    message = rf"port must be an integer from 1 to 65535, not {re.escape(repr(port))}$"
    with Client(backend=sync_backend) as client, pytest.raises(ValueError, match=message):
        client.connect(LOOPBACK, port)
    with (
        pytest.raises(ValueError, match=message),
        alvaro.sync.connect(LOOPBACK, port, backend=sync_backend),
    ):
        pytest.fail("entered the block")
    assert shared_loop(sync_backend).leases == 0
    assert not loop_threads()
    with pytest.raises(ValueError, match="from 0 \\(any free port\\) to 65535"):
        Host(LOOPBACK, port if port != 0 else 65536, backend=sync_backend)


# --- (d) Errors inside the loop reach the caller typed ---------------------------------------


def test_errors_reach_the_caller_typed_and_the_loop_stays_healthy(sync_backend: Backend) -> None:
    with echo_host(sync_backend, max_message_size=1024) as host:
        [loop_thread] = loop_threads()
        with RawHttpServer() as http:
            client = Client(backend=sync_backend)
            try:
                with pytest.raises(ConnectError):
                    client.connect(LOOPBACK, http.port)
            finally:
                client.close()
        assert http.request  # the client did reach it, and sent its handshake
        caller = threading.current_thread()
        with Client(backend=sync_backend) as client:
            connect(client, host.port)
            # Over the host's max_message_size: raised here, before anything is queued.
            with pytest.raises(MessageTooLarge) as info:
                client.send_data("x" * 2000)
            assert isinstance(info.value, ValueError)
            assert info.value.limit == 1024
            assert info.value.size > 1024
            assert threading.current_thread() is caller
            with pytest.raises(MessageTooLarge):
                client.send("x" * 2000, timeout=WAIT)
            with pytest.raises(EncodeError):
                client.send_data(object())
            # The connection and the loop thread are fine.
            client.send_data("fits", {"ok": True})
            message = client.receive(timeout=WAIT)
            assert (message.data, message.metadata) == ("fits", {"ok": True})
        assert loop_threads() == [loop_thread]


# --- (e) Closing, and the shared loop thread --------------------------------------------------


def test_the_last_close_stops_the_loop_and_dispatcher_threads(sync_backend: Backend) -> None:
    baseline = threading.active_count()
    close_timeout = 30 * T
    host = echo_host(sync_backend, close_timeout=close_timeout)
    host.new_client = lambda conn: None  # type: ignore[method-assign]
    client = Client(backend=sync_backend, close_timeout=close_timeout)
    got = threading.Event()
    client.got_data = lambda data, metadata: got.set()  # type: ignore[method-assign]
    try:
        host.start()
        connect(client, host.port)
        client.send_data("hi")
        assert got.wait(WAIT)
        threads = {thread.name: thread for thread in alvaro_threads()}
        assert sorted(threads) == sorted(
            [f"alvaro-{sync_backend}-loop", "alvaro-client-callbacks", "alvaro-host-callbacks"]
        )
        start = time.monotonic()
        client.close()
        assert time.monotonic() - start < close_timeout
        assert not threads["alvaro-client-callbacks"].is_alive()
        assert threads[f"alvaro-{sync_backend}-loop"].is_alive()  # the host still uses it
        start = time.monotonic()
        host.close()
        assert time.monotonic() - start < close_timeout
        # Joined, not just asked to stop.
        assert not [thread for thread in threads.values() if thread.is_alive()]
        assert not alvaro_threads()
        wait_until(lambda: threading.active_count() <= baseline)
        # Idempotent.
        start = time.monotonic()
        client.close()
        host.close()
        client.close()
        host.close()
        assert time.monotonic() - start < 5 * T
    finally:
        client.close()
        host.close()


def test_two_clients_and_a_host_share_one_loop_thread(sync_backend: Backend) -> None:
    host = echo_host(sync_backend)
    one = Client(backend=sync_backend)
    two = Client(backend=sync_backend)
    try:
        host.start()
        connect(one, host.port)
        connect(two, host.port)
        for client in (one, two):
            client.send_data(client is one)
            assert client.receive(timeout=WAIT).data is (client is one)
        [loop] = loop_threads()
        assert loop.name == f"alvaro-{sync_backend}-loop"
        assert shared_loop(sync_backend).leases == 3
        # Closing the host ends both connections, but the clients still hold the loop.
        host.close()
        for client in (one, two):
            with pytest.raises(ConnectionClosedOK):
                client.receive(timeout=WAIT)
        assert loop.is_alive()
        one.close()
        assert loop.is_alive()
        assert loop_threads() == [loop]
        two.close()
        assert not loop.is_alive()
        assert not alvaro_threads()
        # A new object starts a new loop thread.
        with echo_host(sync_backend) as again:
            [fresh] = loop_threads()
            assert fresh is not loop
            assert again.running
        assert not fresh.is_alive()
    finally:
        one.close()
        two.close()
        host.close()


def test_sync_connect_context_manager(sync_backend: Backend) -> None:
    with echo_host(sync_backend) as host:
        with alvaro.sync.connect(LOOPBACK, host.port, backend=sync_backend) as client:
            wait_until(lambda: client.connection is not None)
            client.send_data("via connect()")
            assert client.receive(timeout=WAIT).data == "via connect()"
            [loop] = loop_threads()
        assert client.connection is not None
        assert client.connection.close_code == CloseCode.NORMAL
        assert client.connection.closed_by_peer is False
        assert loop.is_alive()  # the host still holds it


# --- (f) Many threads sending on one connection -----------------------------------------------


def test_100_threads_send_data_concurrently_on_one_connection(sync_backend: Backend) -> None:
    senders, per_sender = 100, 100
    received: list[tuple[Any, dict[str, Any]]] = []
    all_in = threading.Event()
    host = Host(LOOPBACK, 0, backend=sync_backend)

    def got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        received.append((data, metadata))
        if len(received) == senders * per_sender:
            all_in.set()

    def expected(thread: int, seq: int) -> list[Any]:
        return [thread, seq, "payload" * (1 + (thread * 7 + seq) % 13)]

    host.got_data = got_data  # type: ignore[method-assign]
    errors: list[BaseException] = []
    with host, Client(backend=sync_backend) as client:
        connect(client, host.port)
        barrier = threading.Barrier(senders)

        def send_all(thread: int) -> None:
            try:
                barrier.wait(WAIT)
                for seq in range(per_sender):
                    client.send_data(expected(thread, seq), {"t": thread})
            except BaseException as exc:
                errors.append(exc)

        threads = [
            threading.Thread(target=send_all, args=(i,), name=f"test-sender-{i}")
            for i in range(senders)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
        assert not [thread for thread in threads if thread.is_alive()]
        assert errors == []
        assert all_in.wait(WAIT)
    assert len(received) == senders * per_sender
    order: dict[int, list[int]] = {i: [] for i in range(senders)}
    for data, metadata in received:
        thread, seq = data[0], data[1]
        assert data == expected(thread, seq)
        assert metadata == {"t": thread}
        order[thread].append(seq)
    assert all(seqs == list(range(per_sender)) for seqs in order.values())


# --- Callbacks ------------------------------------------------------------------------------


def test_client_callbacks_run_in_order_on_the_dispatcher_thread(sync_backend: Backend) -> None:
    events: list[tuple[Any, ...]] = []
    lost = threading.Event()
    client = Client(backend=sync_backend)

    def where() -> str:
        return threading.current_thread().name

    def made_connection() -> None:
        events.append(("made", where()))
        for item in ["ping", *range(10), "last"]:
            client.send_data(item, {"item": str(item)})  # sync methods work inside callbacks

    def got_data(data: Any, metadata: dict[str, Any]) -> None:
        events.append(("data", data, metadata, where()))
        if data == "last":
            client.disconnect("thanks")

    def lost_connection() -> None:
        events.append(("lost", where()))
        lost.set()

    client.made_connection = made_connection  # type: ignore[method-assign]
    client.got_data = got_data  # type: ignore[method-assign]
    client.lost_connection = lost_connection  # type: ignore[method-assign]
    with echo_host(sync_backend) as host, client:
        client.connect(LOOPBACK, host.port)
        assert lost.wait(WAIT)
        loop_name = loop_threads()[0].name
    name = "alvaro-client-callbacks"
    assert events == [
        ("made", name),
        *[("data", item, {"item": str(item)}, name) for item in ["ping", *range(10), "last"]],
        ("lost", name),
    ]
    assert loop_name == f"alvaro-{sync_backend}-loop"
    assert client.connection is not None
    assert client.connection.close_code == CloseCode.NORMAL
    assert client.connection.close_reason == "thanks"
    assert client.connection.closed_by_peer is False


def test_a_subclassed_client_gets_its_callbacks(sync_backend: Backend) -> None:
    class Greeter(Client):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            self.seen: list[Any] = []
            self.done = threading.Event()

        def made_connection(self) -> None:
            self.send_data("hello")

        def got_data(self, data: Any, metadata: dict[str, Any]) -> None:
            self.seen.append(data)
            self.done.set()

    with echo_host(sync_backend) as host, Greeter(backend=sync_backend) as client:
        client.connect(LOOPBACK, host.port)
        assert client.done.wait(WAIT)
    assert client.seen == ["hello"]


def test_a_client_callback_that_raises_is_logged_and_closes_with_internal_error(
    sync_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    host_saw: list[Any] = []
    host_lost = threading.Event()
    host = echo_host(sync_backend)

    def lost_client(conn: Connection) -> None:
        host_saw.append(conn.close_code)
        host_lost.set()

    host.lost_client = lost_client  # type: ignore[method-assign]
    client = Client(backend=sync_backend)
    client_lost = threading.Event()

    def got_data(data: Any, metadata: dict[str, Any]) -> None:
        raise ValueError("boom in got_data")

    client.got_data = got_data  # type: ignore[method-assign]
    client.lost_connection = client_lost.set  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="alvaro.client"), host, client:
        connect(client, host.port)
        client.send_data("trigger")
        assert client_lost.wait(WAIT)
        assert host_lost.wait(WAIT)
        assert client.connection is not None
        assert client.connection.close_code == CloseCode.INTERNAL_ERROR
        assert client.connection.closed_by_peer is False
        assert host_saw == [CloseCode.INTERNAL_ERROR]
    records = [
        record
        for record in caplog.records
        if record.name == "alvaro.client" and record.exc_info is not None
    ]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is ValueError
    assert records[0].threadName == "alvaro-client-callbacks"


def test_dispatch_runs_client_callbacks_where_the_dispatcher_runs_them(
    sync_backend: Backend,
) -> None:
    events: list[tuple[Any, ...]] = []
    lost = threading.Event()

    def where() -> str:
        return threading.current_thread().name

    with GuiLoop() as gui:
        client = Client(backend=sync_backend, dispatch=gui.dispatch)
        client.made_connection = lambda: events.append(("made", where()))  # type: ignore[method-assign]
        client.got_data = lambda data, metadata: events.append(("data", data, where()))  # type: ignore[method-assign]

        def lost_connection() -> None:
            events.append(("lost", where()))
            lost.set()

        client.lost_connection = lost_connection  # type: ignore[method-assign]
        with echo_host(sync_backend) as host, client:
            connect(client, host.port)
            for i in range(40):  # more than max_queue: the loop waits for the GUI thread
                client.send_data(i)
            wait_until(lambda: len(events) == 41)
            client.disconnect()
            assert lost.wait(WAIT)
    assert events == [
        ("made", gui.name),
        *[("data", i, gui.name) for i in range(40)],
        ("lost", gui.name),
    ]
    # dispatch() itself is called by the client's dispatcher thread, never by the loop thread
    # (a dispatch function may block, as Tk's after() does when called from another thread).
    assert len(gui.dispatched_from) == 42
    assert set(gui.dispatched_from) == {"alvaro-client-callbacks"}


# --- Sync calls inside callbacks ----------------------------------------------------------------


def test_close_from_inside_a_callback_returns(sync_backend: Backend) -> None:
    took: list[float] = []
    closed = threading.Event()
    lost = threading.Event()
    client = Client(backend=sync_backend)

    def got_data(data: Any, metadata: dict[str, Any]) -> None:
        start = time.monotonic()
        client.close("closing from got_data")
        took.append(time.monotonic() - start)
        closed.set()

    client.got_data = got_data  # type: ignore[method-assign]
    client.lost_connection = lost.set  # type: ignore[method-assign]
    with echo_host(sync_backend) as host:
        try:
            connect(client, host.port)
            client.send_data("close me")
            assert closed.wait(WAIT)
            assert lost.wait(WAIT)  # still called, after the callback that closed
        finally:
            client.close()
    assert took[0] < 10 * T
    assert client.connection is not None
    assert client.connection.close_code == CloseCode.NORMAL
    assert client.connection.close_reason == "closing from got_data"


def test_close_from_inside_got_data_with_a_backlog_does_not_wait_for_close_timeout(
    sync_backend: Backend,
) -> None:
    """close() in a callback must not stall for close_timeout while max_queue callbacks are
    pending: the loop's reader waits for room in the dispatcher, whose thread waits in close().
    (A bug found while writing these tests, fixed since.)"""
    close_timeout = 20 * T
    took: list[float] = []
    host = Host(LOOPBACK, 0, backend=sync_backend)

    def new_client(conn: Connection) -> None:
        for i in range(40):  # more than the client's max_queue (16)
            conn.send_data(i)

    host.new_client = new_client  # type: ignore[method-assign]
    client = Client(backend=sync_backend, close_timeout=close_timeout)

    def got_data(data: Any, metadata: dict[str, Any]) -> None:
        if data == 0:
            start = time.monotonic()
            client.close()
            took.append(time.monotonic() - start)

    client.got_data = got_data  # type: ignore[method-assign]
    with host:
        try:
            client.connect(LOOPBACK, host.port)
            wait_until(lambda: bool(took))
        finally:
            client.close()
    assert took[0] < 5 * T, f"close() inside got_data took {took[0]:.2f} s"


# --- Backpressure -------------------------------------------------------------------------------


def test_send_blocks_while_the_peer_does_not_read(sync_backend: Backend) -> None:
    gate = threading.Event()
    received: list[Any] = []
    host = Host(LOOPBACK, 0, backend=sync_backend, max_queue=1)

    def got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        gate.wait(WAIT)  # the host's application is stuck: it stops reading
        received.append(data if isinstance(data, str) and len(data) < 10 else len(data))

    host.got_data = got_data  # type: ignore[method-assign]
    chunk = "x" * (256 * 1024)
    client = Client(backend=sync_backend, write_limit=64 * 1024, outbox_limit=1024 * 1024)
    try:
        with host, client:
            connect(client, host.port)
            sent = 0
            for _ in range(400):  # at most 100 MiB, far more than the socket buffers
                try:
                    client.send(chunk, timeout=3 * T)
                except TimeoutError:
                    break
                sent += 1
            else:
                pytest.fail("send() never blocked")
            assert sent >= 1
            # Over outbox_limit, send_data() refuses instead of queueing more.
            for _ in range(400):
                try:
                    client.send_data(chunk)
                except OutboxFull:
                    break
                sent += 1
            else:
                pytest.fail("send_data() never raised OutboxFull")
            # A send without a timeout waits, and completes once the peer reads again.
            waiting = threading.Thread(
                target=client.send, args=("last",), kwargs={"timeout": WAIT}, name="test-send"
            )
            waiting.start()
            try:
                time.sleep(3 * T)
                assert waiting.is_alive()
                gate.set()
            finally:
                gate.set()
                waiting.join(WAIT)
            assert not waiting.is_alive()
            wait_until(lambda: len(received) == sent + 1)
            assert received[-1] == "last"
            assert received[:-1] == [len(chunk)] * sent
    finally:
        gate.set()


# --- The original library's names --------------------------------------------------------------


def test_camel_case_aliases_on_the_sync_client(sync_backend: Backend) -> None:
    got: list[tuple[Any, Any]] = []
    done = threading.Event()
    with echo_host(sync_backend) as host, Client(backend=sync_backend) as client:
        assert client.waitForConnection(timeout=T) is False
        connect(client, host.port)
        assert client.waitForConnection(timeout=WAIT) is True
        client.sendData("hi", metaData={"k": 1})
        message = client.receive(timeout=WAIT)
        assert (message.data, message.metadata) == ("hi", {"k": 1})

        def gotData(data: Any, metaData: Any) -> None:
            got.append((data, metaData))
            done.set()

        client.gotData = gotData
        assert client.got_data is gotData
        client.sendData([1, 2], metaData={"k": 2})
        assert done.wait(WAIT)
    assert got == [([1, 2], {"k": 2})]


# --- Races ------------------------------------------------------------------------------------


def test_connection_is_ready_when_connect_returns(sync_backend: Backend) -> None:
    """connect() must not return before client.connection exists, or send_data() right after it
    raises LocalProtocolError. A short GIL switch interval made that race frequent. (A bug found
    while writing these tests, fixed since.)"""
    problems: list[str] = []
    interval = sys.getswitchinterval()
    with Host(LOOPBACK, 0, backend=sync_backend) as host:
        sys.setswitchinterval(1e-6)
        try:
            for _ in range(30):
                client = Client(backend=sync_backend)
                try:
                    client.connect(LOOPBACK, host.port)
                    if client.connection is None:
                        problems.append("client.connection is None")
                    try:
                        client.send_data("right after connect")
                    except LocalProtocolError as exc:
                        problems.append(f"send_data raised {exc!r}")
                finally:
                    client.close()
        finally:
            sys.setswitchinterval(interval)
    assert problems == []


def test_asyncio_and_trio_objects_coexist() -> None:
    with echo_host("asyncio") as host, Client(backend="trio") as client:
        connect(client, host.port)
        client.send_data("across loops")
        assert client.receive(timeout=WAIT).data == "across loops"
        assert sorted(thread.name for thread in loop_threads()) == [
            "alvaro-asyncio-loop",
            "alvaro-trio-loop",
        ]
        # A blocking call is refused on any alvaro loop thread, not only on its own.
        with pytest.raises(WrongThreadError):
            on_loop(host, lambda: client.receive(timeout=1))
        with pytest.raises(WrongThreadError):
            on_loop(client, lambda: host.close())
        assert host.running
        assert client.connected
    assert not alvaro_threads()


def test_send_data_from_a_plain_thread_never_drives_asyncios_transport(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """asyncio's transports are not thread-safe: a message sent from a plain thread is written
    by the loop thread, even when the outbox is empty and a direct write would be quickest.
    (On trio alvaro writes to the socket itself, which is safe from any thread.)"""
    import asyncio.selector_events

    transport_class: Any = asyncio.selector_events._SelectorSocketTransport
    writers: list[str] = []
    write = transport_class.write

    def recording_write(self: Any, data: Any) -> None:
        writers.append(threading.current_thread().name)
        write(self, data)

    monkeypatch.setattr(transport_class, "write", recording_write)
    with echo_host("asyncio") as host, Client(backend="asyncio") as client:
        connect(client, host.port)
        for number in range(20):
            client.send_data(number)  # each one into an empty outbox, with the writer idle
            assert client.receive(timeout=WAIT).data == number
    assert writers
    assert set(writers) == {"alvaro-asyncio-loop"}


def test_a_dispatch_function_that_raises_is_reported_once_and_holds_nothing_back(
    sync_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """A GUI that is gone (its dispatch function raises, as Tk's after() does once the window
    is destroyed): one WARNING, the refused callbacks dropped, and the loop is not held back
    waiting for them: the connection still reads on, and closes promptly."""
    caplog.set_level(logging.WARNING)

    def gone(function: Any) -> None:
        raise RuntimeError("main thread is not in main loop")

    received: list[Any] = []
    with echo_host(sync_backend) as host:
        client = Client(backend=sync_backend, dispatch=gone)
        client.got_data = lambda data, metadata: received.append(data)  # type: ignore[method-assign]
        connect(client, host.port)
        for _ in range(200):  # 12.5 MiB: far more than the dispatcher lets wait, and than
            client.send(b"x" * 65536, timeout=WAIT)  # the socket buffers hold
        wait_until(lambda: len(host.clients) == 1)
        # The host's echoes all reach the client: a reader held back after HANDOFF_FACTOR *
        # max_queue callbacks would leave most of them in the host's outbox.
        wait_until(lambda: core_of(host.clients[0]._aio).outbox.pending == 0)
        assert client.connection is not None
        assert client.connection.is_open
        client.close()
    assert received == []
    warnings = [r for r in caplog.records if "dispatch function raised" in r.getMessage()]
    assert len(warnings) == 1
