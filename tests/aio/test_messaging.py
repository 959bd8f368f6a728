"""Messages, callbacks and life cycle of alvaro.aio Host and Client, on asyncio and trio."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest

import alvaro
from alvaro import CloseCode, Message
from alvaro.aio import Connection, State, connect
from alvaro.aio._core import core_of

from ..helpers import WAIT, T, eventually, free_port

pytestmark = pytest.mark.anyio


def echo(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
    conn.send_data(data, metadata)


async def test_round_trip_json_bytes_and_metadata() -> None:
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_data = echo  # type: ignore[method-assign]
        async with connect("127.0.0.1", host.port) as client:
            samples: list[tuple[Any, dict[str, Any]]] = [
                ("hello", {"kind": "greeting", "n": 1}),
                ({"nested": [1, 2.5, None, True, {"deep": "é✓"}]}, {}),
                (b"\x00\xffraw bytes", {"kind": "raw"}),
                (b"", {}),
                ([], {"empty": []}),
                (12345678901234567890, {"big": 2**70}),
            ]
            for data, metadata in samples:
                client.send_data(data, metadata)
            with anyio.fail_after(WAIT):
                received = [await client.receive() for _ in samples]
    assert [(m.data, m.metadata) for m in received] == samples
    assert isinstance(received[2].data, bytes)


async def test_async_and_plain_callbacks_in_order_per_connection() -> None:
    events: list[tuple[str, Any]] = []
    closed = anyio.Event()

    class Recorder(alvaro.Host):
        async def new_client(self, conn: Connection) -> None:
            events.append(("new", conn.port))
            await anyio.lowlevel.checkpoint()  # an async callback may await
            conn.send_data("welcome")

        def got_data(self, conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
            events.append(("data", data))

        async def lost_client(self, conn: Connection) -> None:
            events.append(("lost", conn.port))
            closed.set()

    async with Recorder("127.0.0.1", 0) as host:
        async with connect("127.0.0.1", host.port) as client:
            with anyio.fail_after(WAIT):
                assert (await client.receive()).data == "welcome"
            port = client.connection.local_port  # type: ignore[union-attr]
            for i in range(50):
                client.send_data(i)
        with anyio.fail_after(WAIT):
            await closed.wait()
    assert events == [("new", port), *[("data", i) for i in range(50)], ("lost", port)]


async def test_client_callbacks_assigned_as_attributes() -> None:
    seen: list[Any] = []
    done = anyio.Event()
    client = alvaro.Client()

    async def made_connection() -> None:
        seen.append("made")
        client.send_data("ping")

    def got_data(data: Any, metadata: dict[str, Any]) -> None:
        seen.append((data, metadata))
        client.disconnect("thanks")

    def lost_connection() -> None:
        seen.append("lost")
        done.set()

    client.made_connection = made_connection  # type: ignore[method-assign]
    client.got_data = got_data  # type: ignore[method-assign]
    client.lost_connection = lost_connection  # type: ignore[method-assign]
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_data = echo  # type: ignore[method-assign]
        with anyio.fail_after(WAIT):
            # The seed's semantics: connect() runs until the connection ends.
            await client.connect("127.0.0.1", host.port)
            await done.wait()
    assert seen == ["made", ("ping", {}), "lost"]
    assert client.connection is not None
    assert client.connection.close_code == CloseCode.NORMAL
    assert client.connection.closed_by_peer is False
    assert not client.connected


async def test_port_zero_clients_and_peer_addresses() -> None:
    host = alvaro.Host("127.0.0.1", 0)
    assert host.port == 0
    assert not host.running
    async with host:
        assert host.port > 0
        assert host.running
        assert host.clients == []
        async with connect("127.0.0.1", host.port) as one, connect("127.0.0.1", host.port) as two:
            await eventually(lambda: len(host.clients) >= 2)
            ports = {conn.port for conn in host.clients}
            assert ports == {one.connection.local_port, two.connection.local_port}  # type: ignore[union-attr]
            assert all(conn.addr == "127.0.0.1" and conn.is_open for conn in host.clients)
            assert one.connected
            assert one.connection.addr == "127.0.0.1"  # type: ignore[union-attr]
            assert one.connection.port == host.port  # type: ignore[union-attr]
        await eventually(lambda: not host.clients)
    assert not host.running


async def test_disconnect_reason_and_code_reach_the_peer() -> None:
    lost: list[tuple[Any, str, Any]] = []
    gone = anyio.Event()

    def lost_client(conn: Connection) -> None:
        lost.append((conn.close_code, conn.close_reason, conn.closed_by_peer))
        gone.set()

    async with alvaro.Host("127.0.0.1", 0) as host:
        host.lost_client = lost_client  # type: ignore[method-assign]
        async with connect("127.0.0.1", host.port) as client:
            await client.aclose("done for today", code=4321)
            conn = client.connection
            assert conn is not None
            assert conn.state is State.CLOSED
            assert (conn.close_code, conn.close_reason, conn.closed_by_peer) == (
                4321,
                "done for today",
                False,
            )
            with pytest.raises(alvaro.ConnectionClosedError) as info:
                client.send_data("too late")
            assert info.value.code == 4321
        with anyio.fail_after(WAIT):
            await gone.wait()
    assert lost == [(4321, "done for today", True)]


async def test_host_disconnect_is_seen_by_receive_and_iteration() -> None:
    async def new_client(conn: Connection) -> None:
        conn.send_data(1)
        conn.send_data(2)
        conn.disconnect("bye")

    async with alvaro.Host("127.0.0.1", 0) as host:
        host.new_client = new_client  # type: ignore[method-assign]
        async with connect("127.0.0.1", host.port) as client:
            with anyio.fail_after(WAIT):
                # Messages sent before the close are all delivered, then iteration ends.
                assert [m.data async for m in client] == [1, 2]
                with pytest.raises(alvaro.ConnectionClosedOK) as info:
                    await client.receive()
    assert info.value.code == CloseCode.NORMAL
    assert info.value.reason == "bye"
    assert info.value.by_peer is True


async def test_stop_closes_clients_with_going_away_and_start_returns() -> None:
    host = alvaro.Host("127.0.0.1", 0)
    lost = anyio.Event()
    client = alvaro.Client()
    client.lost_connection = lost.set  # type: ignore[method-assign]
    async with anyio.create_task_group() as tasks:
        port = await tasks.start(host.start)
        await tasks.start(client.connect, "127.0.0.1", port)
        await eventually(lambda: bool(host.clients))
        for i in range(100):
            host.clients[0].send_data(i)
        host.stop()
        host.stop()  # idempotent
        with anyio.fail_after(WAIT):
            # What the host had queued before stopping is still delivered, then the close.
            received = [(await client.receive()).data for _ in range(100)]
            await lost.wait()
    assert received == list(range(100))
    assert client.connection is not None
    assert client.connection.close_code == CloseCode.GOING_AWAY
    assert client.connection.closed_by_peer is True
    assert not host.running


async def test_stop_from_another_thread() -> None:
    host = alvaro.Host("127.0.0.1", 0)
    async with anyio.create_task_group() as tasks:
        await tasks.start(host.start)
        stopper = threading.Thread(target=host.stop)
        with anyio.fail_after(WAIT):
            stopper.start()
            await host.aclose()
        stopper.join(WAIT)
    assert not host.running


async def test_send_data_from_many_threads_keeps_each_threads_order() -> None:
    threads, per_thread = 20, 100
    received: list[tuple[int, int]] = []
    all_in = anyio.Event()

    def got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        received.append((data[0], data[1]))
        if len(received) == threads * per_thread:
            all_in.set()

    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_data = got_data  # type: ignore[method-assign]
        async with connect("127.0.0.1", host.port) as client:

            def produce(thread_no: int) -> None:
                for seq in range(per_thread):
                    client.send_data([thread_no, seq], {"pad": "x" * 50})

            workers = [threading.Thread(target=produce, args=(n,)) for n in range(threads)]
            for worker in workers:
                worker.start()
            with anyio.fail_after(WAIT):
                await all_in.wait()
            for worker in workers:
                worker.join(WAIT)
    assert len(received) == threads * per_thread
    for thread_no in range(threads):
        assert [seq for n, seq in received if n == thread_no] == list(range(per_thread))


async def test_wait_for_connection_from_a_thread() -> None:
    client = alvaro.Client()
    assert client.wait_for_connection(timeout=0) is False
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(client.wait_for_connection(WAIT)))
    waiter.start()
    async with alvaro.Host("127.0.0.1", 0) as host, anyio.create_task_group() as tasks:
        await tasks.start(client.connect, "127.0.0.1", host.port)
        await eventually(lambda: not waiter.is_alive())
        # On the loop thread, once connected, it answers at once instead of blocking.
        assert client.wait_for_connection(timeout=0) is True
        await client.aclose()
    assert result == [True]


def test_wait_for_connection_against_nothing_sleeps() -> None:
    port = free_port()
    client = alvaro.Client(open_timeout=5 * T)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            anyio.run(client.connect, "127.0.0.1", port)
        except BaseException as exc:  # the connect error is expected; keep it for the assertion
            errors.append(exc)

    thread = threading.Thread(target=run)
    cpu_before = time.process_time()
    thread.start()
    assert client.wait_for_connection(timeout=10 * T) is False
    cpu_used = time.process_time() - cpu_before
    thread.join(WAIT)
    assert isinstance(errors[0], alvaro.ConnectError)
    assert cpu_used < 0.5  # a busy-wait burns a whole second of CPU per second


async def test_wait_for_connection_on_the_loop_thread_raises() -> None:
    accepted = anyio.Event()
    client = alvaro.Client(open_timeout=20 * T)

    async def silent(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            accepted.set()  # then never answer: the client stays in its opening handshake
            await anyio.sleep(WAIT)

    async def try_connect(port: int) -> None:
        with pytest.raises(TimeoutError):
            await client.connect("127.0.0.1", port)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, silent)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tasks.start_soon(try_connect, port)
        with anyio.fail_after(WAIT):
            await accepted.wait()
        # Blocking here would freeze the very loop that runs the handshake.
        with pytest.raises(alvaro.WrongThreadError):
            client.wait_for_connection(timeout=1)
        tasks.cancel_scope.cancel()


async def test_outbox_full_and_send_waits_for_room() -> None:
    release = anyio.Event()
    got: list[int] = []

    async def slow(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        await release.wait()  # the host does not read while this waits
        got.append(len(data))

    chunk = b"x" * 60_000
    async with alvaro.Host("127.0.0.1", 0, max_queue=1) as host:
        host.got_data = slow  # type: ignore[method-assign]
        async with connect(
            "127.0.0.1", host.port, write_limit=100_000, outbox_limit=200_000
        ) as client:
            conn = client.connection
            assert conn is not None
            sent = 0
            with pytest.raises(alvaro.OutboxFull):  # noqa: PT012 - the loop is the setup
                for _ in range(10_000):  # bounded: kernel buffers are a few MiB at most
                    client.send_data(chunk)
                    sent += 1
                    await anyio.lowlevel.checkpoint()
            # send() waits for room instead of raising, and completes once the host reads again.
            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(client.send, chunk)
                    await anyio.sleep(5 * T)
                    assert (
                        core_of(conn).outbox.pending > 100_000
                    )  # still waiting: nothing was drained
                    release.set()
            sent += 1
            await eventually(lambda: len(got) >= sent)
    assert got == [len(chunk)] * sent


async def test_message_too_large_is_refused_before_sending() -> None:
    async with alvaro.Host("127.0.0.1", 0, max_message_size=1000, max_metadata_size=100) as host:
        host.got_data = echo  # type: ignore[method-assign]
        async with connect("127.0.0.1", host.port) as client:
            assert client.connection.peer_max_message_size == 1000  # type: ignore[union-attr]
            with pytest.raises(alvaro.MessageTooLarge) as info:
                client.send_data("x" * 2000)
            assert info.value.limit == 1000
            with pytest.raises(alvaro.MessageTooLarge):
                await client.send("ok", {"m": "y" * 200})
            client.send_data("fits")  # the connection is still fine
            with anyio.fail_after(WAIT):
                assert (await client.receive()).data == "fits"


async def test_encode_errors_are_typed_and_harmless() -> None:
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_data = echo  # type: ignore[method-assign]
        async with connect("127.0.0.1", host.port) as client:
            with pytest.raises(alvaro.EncodeError):
                client.send_data({1, 2})
            with pytest.raises(TypeError):  # EncodeError is a TypeError too
                client.send_data("x", metadata=["not", "a", "dict"])  # type: ignore[arg-type]
            client.send_data("still works")
            with anyio.fail_after(WAIT):
                assert (await client.receive()).data == "still works"


async def test_receive_timeout_poll_and_concurrency() -> None:
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_data = echo  # type: ignore[method-assign]
        async with connect("127.0.0.1", host.port) as client:
            with pytest.raises(TimeoutError):
                await client.receive(timeout=0)  # polling
            with pytest.raises(TimeoutError):
                await client.receive(timeout=T)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(client.receive)
                await anyio.sleep(T)
                with pytest.raises(alvaro.ConcurrencyError):
                    await client.receive()
                client.send_data("wake the first receiver")
            client.send_data("next")
            with anyio.fail_after(WAIT):
                message = await client.receive()
    assert message == Message("next", {})


async def test_host_side_receive_when_got_data_is_not_set() -> None:
    results: list[Message] = []
    finished = anyio.Event()

    async def new_client(conn: Connection) -> None:
        # Without got_data, messages queue for conn.receive(); the iteration ends on close.
        async for message in conn:
            results.append(message)
        finished.set()

    # new_client runs before the reader starts, so pull in a separate task.
    async with alvaro.Host("127.0.0.1", 0) as host, anyio.create_task_group() as tasks:

        def spawn(conn: Connection) -> None:
            tasks.start_soon(new_client, conn)

        host.new_client = spawn  # type: ignore[method-assign]
        async with connect("127.0.0.1", host.port) as client:
            for i in range(40):  # more than max_queue: reading pauses and resumes
                await client.send(i, {"i": i})
        with anyio.fail_after(WAIT):
            await finished.wait()
    assert [(m.data, m.metadata["i"]) for m in results] == [(i, i) for i in range(40)]


async def test_connect_twice_is_refused() -> None:
    async with alvaro.Host("127.0.0.1", 0) as host, connect("127.0.0.1", host.port) as client:
        with pytest.raises(RuntimeError):
            await client.connect("127.0.0.1", host.port)


async def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="max_message_size"):
        alvaro.Host(max_message_size=0)
    with pytest.raises(ValueError, match="open_timeout"):
        alvaro.Client(open_timeout=-1)
    with pytest.raises(ValueError, match="outbox_limit"):
        alvaro.Client(write_limit=100, outbox_limit=10)
    async with alvaro.Host("127.0.0.1", 0) as host, connect("127.0.0.1", host.port) as client:
        with pytest.raises(ValueError, match="close code"):
            client.disconnect(code=CloseCode.ABNORMAL)


#: Not ports: over 65535, negative, and values of other types (a bool is not a port either).
BAD_PORTS = [70000, 65536, -1, None, 3.5, "8888", True, False]


@pytest.mark.parametrize("port", [*BAD_PORTS, 0], ids=repr)
async def test_a_client_refuses_an_invalid_port_before_connecting(port: Any) -> None:
    """BUG: 70000 raised OverflowError on asyncio and an ExceptionGroup on trio; None connected
    to port 0 and 3.5 to port 3. A client cannot connect to port 0."""
    message = rf"port must be an integer from 1 to 65535, not {re.escape(repr(port))}$"
    client = alvaro.Client()
    with pytest.raises(ValueError, match=message):
        await client.connect("127.0.0.1", port)
    with pytest.raises(ValueError, match=message):
        async with connect("127.0.0.1", port):
            pytest.fail("entered the block")
    assert client.connection is None
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_data = echo  # type: ignore[method-assign]
        async with anyio.create_task_group() as tasks:
            await tasks.start(client.connect, "127.0.0.1", host.port)  # the same client, intact
            client.send_data("after a bad port")
            with anyio.fail_after(WAIT):
                assert (await client.receive()).data == "after a bad port"
            await client.aclose()


@pytest.mark.parametrize("port", BAD_PORTS, ids=repr)
def test_a_host_refuses_an_invalid_port_when_made(port: Any) -> None:
    allowed = r"from 0 \(any free port\) to 65535"
    message = rf"port must be an integer {allowed}, not {re.escape(repr(port))}$"
    with pytest.raises(ValueError, match=message):
        alvaro.Host("127.0.0.1", port)


@pytest.mark.parametrize("port", [1, 65535, 0])
def test_ports_at_the_limits_are_accepted(port: int) -> None:
    assert alvaro.Host("127.0.0.1", port).port == port


@pytest.mark.parametrize("runner", ["asyncio.run", "trio.run", "anyio.run"])
def test_start_runs_under_each_event_loop_runner(runner: str) -> None:
    import asyncio

    import trio

    host = alvaro.Host("127.0.0.1", 0)
    started = threading.Event()
    host.server_started = lambda h: started.set()  # type: ignore[method-assign]
    run = {
        "asyncio.run": lambda: asyncio.run(host.start()),
        "trio.run": lambda: trio.run(host.start),
        "anyio.run": lambda: anyio.run(host.start),
    }[runner]
    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert started.wait(WAIT)
        got: list[Any] = []

        def got_data(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
            got.append(data)  # runs on the host's event loop, in the host's thread
            conn.send_data("ack")

        host.got_data = got_data  # type: ignore[method-assign]

        async def talk() -> None:
            async with connect("127.0.0.1", host.port) as client:
                client.send_data("from the client")
                with anyio.fail_after(WAIT):
                    assert (await client.receive()).data == "ack"

        anyio.run(talk)
        assert got == ["from the client"]
    finally:
        host.stop()  # from the main thread, while the host runs in another
        thread.join(WAIT)
    assert not thread.is_alive()
    assert not host.running
