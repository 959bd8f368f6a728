"""Requests on alvaro.aio, both ways, on asyncio and trio: conn.request() and got_request."""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import anyio
import pytest

import alvaro
from alvaro import ConnectionClosed, Message, RemoteError, Reply
from alvaro.aio import Client, Connection, connect
from alvaro.aio._core import core_of

from ..helpers import WAIT, T, eventually

pytestmark = pytest.mark.anyio


async def test_a_request_gets_the_handlers_return_value_and_its_reply_metadata() -> None:
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = lambda conn, data, metadata: Reply(
            {"sum": sum(data)}, {"unit": metadata["unit"], "from": conn.port}
        )
        async with connect("127.0.0.1", host.port) as client:
            with anyio.fail_after(WAIT):
                answer = await client.request([1, 2, 3], {"unit": "m"})
                raw = await client.request(b"\x00\xff", {"unit": "b"})
    assert answer == Message({"sum": 6}, {"unit": "m", "from": client.connection.local_port})  # type: ignore[union-attr]
    assert raw.data == {"sum": 255}


async def test_concurrent_requests_answered_out_of_order_reach_their_callers() -> None:
    async def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        await anyio.sleep(random.random() * T)  # later requests often finish first
        return data * 2

    answers: dict[int, Any] = {}
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = got_request
        async with connect("127.0.0.1", host.port) as client:

            async def ask(n: int) -> None:
                answers[n] = (await client.request(n)).data

            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tasks:
                    for n in range(100):
                        tasks.start_soon(ask, n)
    assert answers == {n: 2 * n for n in range(100)}


async def test_10000_requests_from_50_tasks_with_no_mismatch() -> None:
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = lambda conn, data, metadata: Reply(data, {"echo": data})
        async with connect("127.0.0.1", host.port) as client:
            mismatches = 0

            async def worker(w: int) -> None:
                nonlocal mismatches
                for i in range(200):
                    question = f"{w}-{i}"
                    answer = await client.request(question)
                    mismatches += answer.data != question or answer.metadata != {"echo": question}

            with anyio.fail_after(6 * WAIT):
                async with anyio.create_task_group() as tasks:
                    for w in range(50):
                        tasks.start_soon(worker, w)
            assert client.connection is not None
            assert client.connection.late_replies == 0
    assert mismatches == 0


async def test_a_host_asks_its_client() -> None:
    async with alvaro.Host("127.0.0.1", 0) as host:
        async with connect("127.0.0.1", host.port) as client:
            client.got_request = lambda data, metadata: f"client says {data}"
            await eventually(lambda: len(host.clients) == 1)
            with anyio.fail_after(WAIT):
                answer = await host.clients[0].request("hi")
    assert answer.data == "client says hi"


async def test_a_timeout_cancels_the_handler_on_the_other_side() -> None:
    started = anyio.Event()
    cancelled = anyio.Event()

    async def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        started.set()
        try:
            await anyio.sleep(WAIT)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return "too late"

    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = got_request
        async with connect("127.0.0.1", host.port) as client:
            with pytest.raises(TimeoutError, match="no reply"):
                await client.request("slow", timeout=3 * T)
            with anyio.fail_after(WAIT):
                await started.wait()
                await cancelled.wait()  # observable on the answering side
                # The connection carries on.
                host.got_request = lambda conn, data, metadata: data
                assert (await client.request("next")).data == "next"


async def test_the_deadline_travels_with_the_request() -> None:
    """The answering side cancels its handler when the request's own deadline passes, even if
    the asker were still waiting (here it waits much longer than the deadline it sent)."""
    cancelled = anyio.Event()

    async def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        try:
            await anyio.sleep(WAIT)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = got_request
        async with connect("127.0.0.1", host.port, request_timeout=2 * T) as client:
            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(_expect_timeout, client)
                    await cancelled.wait()


async def _expect_timeout(client: Client) -> None:
    with pytest.raises(TimeoutError):
        await client.request("uses request_timeout")


async def test_a_cancelled_asker_cancels_the_handler() -> None:
    started = anyio.Event()
    cancelled = anyio.Event()

    async def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        started.set()
        try:
            await anyio.sleep(WAIT)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = got_request
        async with connect("127.0.0.1", host.port) as client:
            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(client.request, "never answered", None)
                    await started.wait()
                    tasks.cancel_scope.cancel()
                await cancelled.wait()
            assert client.connection is not None
            assert core_of(client.connection).request_table().pending == 0


async def test_a_handler_that_raises_is_a_remote_error_and_logged_there(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        raise ValueError(f"bad input: {data}")

    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = got_request
        async with connect("127.0.0.1", host.port) as client:
            with anyio.fail_after(WAIT), pytest.raises(RemoteError) as caught:
                await client.request(7)
            # The connection is fine: one failed request costs nothing else.
            client.send_data("still open")
            assert client.connected
    error = caught.value
    assert (error.kind, error.remote_type, error.message) == ("error", "ValueError", "bad input: 7")
    assert error.remote_traceback is None  # nothing of the host's code crossed the wire
    assert str(error) == "the request failed on the peer: ValueError: bad input: 7"
    logged = [r for r in caplog.records if r.name == "alvaro.host" and r.exc_info]
    assert logged, "the answering side logs the exception with its traceback"
    assert "got_request raised" in logged[0].getMessage()


async def test_reply_tracebacks_sends_the_traceback_when_asked_for() -> None:
    def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        raise KeyError("missing")

    async with alvaro.Host("127.0.0.1", 0, reply_tracebacks=True) as host:
        host.got_request = got_request
        async with connect("127.0.0.1", host.port) as client:
            with anyio.fail_after(WAIT), pytest.raises(RemoteError) as caught:
                await client.request(1)
    assert caught.value.remote_type == "KeyError"
    assert caught.value.remote_traceback is not None
    assert "got_request" in caught.value.remote_traceback


async def test_no_handler_is_reported_at_once() -> None:
    async with alvaro.Host("127.0.0.1", 0) as host:
        async with connect("127.0.0.1", host.port) as client:
            with anyio.fail_after(WAIT), pytest.raises(RemoteError) as caught:
                await client.request("anyone?", timeout=math.inf)
    assert caught.value.kind == RemoteError.NO_HANDLER


async def test_busy_beyond_max_concurrent_requests_never_a_silent_queue() -> None:
    release = anyio.Event()
    running = 0

    async def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        nonlocal running
        running += 1
        await release.wait()
        return data

    outcomes: dict[int, Any] = {}
    async with alvaro.Host("127.0.0.1", 0, max_concurrent_requests=3) as host:
        host.got_request = got_request
        async with connect("127.0.0.1", host.port) as client:

            async def ask(n: int) -> None:
                try:
                    outcomes[n] = (await client.request(n)).data
                except RemoteError as exc:
                    outcomes[n] = exc.kind

            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tasks:
                    for n in range(3):
                        tasks.start_soon(ask, n)
                    await eventually(lambda: running == 3)
                    for n in range(3, 5):
                        tasks.start_soon(ask, n)
                    await eventually(lambda: len(outcomes) == 2)
                    assert outcomes == {3: "busy", 4: "busy"}  # answered at once
                    release.set()
    assert outcomes == {0: 0, 1: 1, 2: 2, 3: "busy", 4: "busy"}


async def test_pending_requests_fail_with_connection_closed_when_it_ends() -> None:
    started = anyio.Event()

    async def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        started.set()
        await anyio.sleep(WAIT)

    failures: list[BaseException] = []
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = got_request
        async with connect("127.0.0.1", host.port) as client:

            async def ask(n: int) -> None:
                try:
                    await client.request(n)
                except ConnectionClosed as exc:
                    failures.append(exc)

            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tasks:
                    for n in range(5):
                        tasks.start_soon(ask, n)
                    await started.wait()
                    host.clients[0].disconnect("going away", alvaro.CloseCode.GOING_AWAY)
    assert len(failures) == 5
    assert all(exc.code == alvaro.CloseCode.GOING_AWAY for exc in failures)  # type: ignore[attr-defined]


async def test_a_late_reply_is_dropped_and_counted_never_given_to_another_request() -> None:
    """A peer that answers after the asker gave up (alvaro itself sends nothing once a request
    is cancelled; another implementation, or a reply already on its way, may): the answer is
    dropped and counted."""

    async def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        if data == "late":
            await anyio.sleep(WAIT)
        return data

    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = got_request
        async with connect("127.0.0.1", host.port) as client:
            conn = client.connection
            assert conn is not None
            with pytest.raises(TimeoutError):
                await client.request("late", timeout=2 * T)
            # The first request of this connection had id 1: answer it now, as a slow peer would.
            late = alvaro.protocol.encode_reply(1, "late answer")
            core_of(host.clients[0]).enqueue(late, limit=None)
            with anyio.fail_after(WAIT):
                await eventually(lambda: conn.late_replies == 1)
                assert (await client.request("fresh")).data == "fresh"
    assert conn.late_replies == 1


async def test_max_pending_requests_makes_request_wait_for_room() -> None:
    release = anyio.Event()
    handled: list[int] = []

    async def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        handled.append(data)
        await release.wait()
        return data

    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = got_request
        async with connect("127.0.0.1", host.port, max_pending_requests=2) as client:
            answers: list[int] = []

            async def ask(n: int) -> None:
                answers.append((await client.request(n)).data)

            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tasks:
                    for n in range(4):
                        tasks.start_soon(ask, n)
                    await eventually(lambda: len(handled) == 2)
                    await anyio.sleep(3 * T)
                    assert len(handled) == 2  # the other two wait on the asking side
                    assert client.connection is not None
                    assert core_of(client.connection).request_table().pending == 2
                    release.set()
    assert sorted(answers) == [0, 1, 2, 3]


async def test_a_slow_request_holds_up_neither_other_requests_nor_messages() -> None:
    release = anyio.Event()
    got: list[Any] = []

    async def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        if data == "slow":
            await release.wait()
        return data

    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = got_request
        host.got_data = lambda conn, data, metadata: got.append(data)
        async with connect("127.0.0.1", host.port) as client:
            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(client.request, "slow")
                    assert (await client.request("quick")).data == "quick"
                    for n in range(5):
                        client.send_data(n)
                    await eventually(lambda: got == [0, 1, 2, 3, 4])  # in order
                    release.set()


async def test_the_handler_may_not_answer_with_what_cannot_be_encoded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = lambda conn, data, metadata: {1, 2}  # a set is not JSON
        async with connect("127.0.0.1", host.port) as client:
            with anyio.fail_after(WAIT), pytest.raises(RemoteError) as caught:
                await client.request("x")
    assert caught.value.remote_type == "EncodeError"
    assert any(r.levelno == logging.ERROR for r in caplog.records if r.name == "alvaro.host")


async def test_invalid_timeouts_are_refused() -> None:
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = lambda conn, data, metadata: data
        async with connect("127.0.0.1", host.port) as client:
            for bad in (0, -1.0, math.nan, "1"):
                with pytest.raises(ValueError, match="timeout"):
                    await client.request("x", timeout=bad)  # type: ignore[arg-type]


async def test_a_request_id_used_twice_at_once_is_a_protocol_error() -> None:
    release = anyio.Event()

    async def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        await release.wait()

    lost: list[tuple[int | None, str]] = []
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = got_request
        host.lost_client = lambda conn: lost.append((conn.close_code, conn.close_reason))
        async with connect("127.0.0.1", host.port) as client:
            assert client.connection is not None
            core = core_of(client.connection)
            # What no alvaro asker sends: two requests with one id, the first still running.
            core.enqueue(alvaro.protocol.encode_request(5, "first"), limit=None)
            core.enqueue(alvaro.protocol.encode_request(5, "second"), limit=None)
            with anyio.fail_after(WAIT):
                await client.connection.wait_closed()
            release.set()
        await eventually(lambda: bool(lost))
    assert lost == [(alvaro.CloseCode.PROTOCOL_ERROR, "request id 5 is already in use")]


async def test_a_shorter_deadline_asked_later_still_ends_first() -> None:
    """One timer watches every deadline: a request asked later with an earlier deadline wakes
    it, and times out on time while the earlier request goes on waiting."""

    async def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        await anyio.sleep(data)
        return data

    ended: list[str] = []
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = got_request
        async with connect("127.0.0.1", host.port) as client:

            async def ask(name: str, sleep: float, timeout: float) -> None:
                try:
                    await client.request(sleep, timeout=timeout)
                    ended.append(f"{name} answered")
                except TimeoutError:
                    ended.append(f"{name} timed out")

            with anyio.fail_after(WAIT):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(ask, "long", 6 * T, WAIT)
                    await anyio.sleep(T)
                    tasks.start_soon(ask, "short", WAIT, 2 * T)
    assert ended == ["short timed out", "long answered"]


async def test_the_deadlines_of_answered_requests_do_not_pile_up() -> None:
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_request = lambda conn, data, metadata: data
        async with connect("127.0.0.1", host.port) as client:
            with anyio.fail_after(WAIT):
                for n in range(1000):
                    await client.request(n)  # each with the 30 s request_timeout
            assert client.connection is not None
            table = core_of(client.connection).request_table()
            assert table.pending == 0
            assert len(table._deadlines) <= 2 * 64
