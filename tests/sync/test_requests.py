"""Requests on alvaro.sync, on both loop backends: blocking request(), request_nowait() and
got_request on worker threads."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from alvaro import Message, RemoteError, Reply, TooManyRequests
from alvaro.sync import Client, Connection, Host

from ..helpers import WAIT, T, wait_until
from .support import LOOPBACK, connect

if TYPE_CHECKING:
    from collections.abc import Iterator

    from alvaro.sync._loop import Backend


@pytest.fixture
def pair(sync_backend: Backend) -> Iterator[tuple[Host, Client]]:
    host = Host(LOOPBACK, 0, backend=sync_backend, close_timeout=10 * T)
    client = Client(backend=sync_backend, close_timeout=10 * T)
    try:
        host.start()
        connect(client, host.port)
        wait_until(lambda: len(host.clients) == 1)
        yield host, client
    finally:
        client.close()
        host.stop()


def test_a_blocking_request_gets_the_handlers_answer(pair: tuple[Host, Client]) -> None:
    host, client = pair
    threads: list[threading.Thread] = []

    def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Reply:
        threads.append(threading.current_thread())
        return Reply(data.upper(), {"port": conn.port})

    host.got_request = got_request
    answer = client.request("hello", {"n": 1}, timeout=WAIT)
    assert answer == Message("HELLO", {"port": client.connection.local_port})  # type: ignore[union-attr]
    # A worker thread: neither this one, nor the dispatcher's (got_data's), nor the loop's.
    assert threads[0] is not threading.current_thread()
    assert threads[0] is not host._runner.dispatcher.thread


def test_requests_run_concurrently_on_worker_threads(pair: tuple[Host, Client]) -> None:
    host, client = pair
    lock = threading.Lock()
    running = 0
    most = 0
    gate = threading.Event()

    def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        gate.wait(WAIT)  # each handler blocks until all have started, or WAIT passes
        with lock:
            running -= 1
        return data

    host.got_request = got_request
    answers: dict[int, Any] = {}

    def ask(n: int) -> None:
        answers[n] = client.request(n, timeout=WAIT).data

    askers = [threading.Thread(target=ask, args=(n,)) for n in range(4)]
    for thread in askers:
        thread.start()
    wait_until(lambda: most == 4)  # all four handlers at once: none waits for another
    gate.set()
    for thread in askers:
        thread.join(WAIT)
    assert answers == {0: 0, 1: 1, 2: 2, 3: 3}


def test_no_handler_and_a_handler_that_raises(pair: tuple[Host, Client]) -> None:
    host, client = pair
    with pytest.raises(RemoteError) as caught:
        client.request("anyone?", timeout=WAIT)
    assert caught.value.kind == RemoteError.NO_HANDLER

    def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        raise LookupError("no such thing")

    host.got_request = got_request
    with pytest.raises(RemoteError) as caught:
        client.request("thing", timeout=WAIT)
    assert (caught.value.kind, caught.value.remote_type) == ("error", "LookupError")


def test_a_host_asks_its_sync_client(pair: tuple[Host, Client]) -> None:
    host, client = pair
    client.got_request = lambda data, metadata: data * 3
    assert host.clients[0].request(14, timeout=WAIT).data == 42


def test_a_timeout_in_a_blocking_request(pair: tuple[Host, Client]) -> None:
    host, client = pair
    release = threading.Event()

    def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        release.wait(WAIT)
        return data

    host.got_request = got_request
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        client.request("slow", timeout=3 * T)
    release.set()
    assert time.monotonic() - started < WAIT
    # The thread's answer came after the request ended: never given to the next one.
    assert client.request("next", timeout=WAIT).data == "next"


def test_request_nowait_delivers_on_the_dispatcher_thread(pair: tuple[Host, Client]) -> None:
    host, client = pair
    host.got_request = lambda conn, data, metadata: data + 1
    outcomes: list[tuple[str, Any, threading.Thread]] = []
    client.request_nowait(
        1,
        on_reply=lambda message: outcomes.append(
            ("reply", message.data, threading.current_thread())
        ),
    )
    client.request_nowait(
        "x",
        on_reply=lambda message: outcomes.append(("reply", message, threading.current_thread())),
        on_error=lambda error: outcomes.append(
            ("error", type(error).__name__, threading.current_thread())
        ),
    )
    wait_until(lambda: len(outcomes) == 2)
    assert sorted(outcome[:2] for outcome in outcomes) == [("error", "RemoteError"), ("reply", 2)]
    assert {outcome[2] for outcome in outcomes} == {client._runner.dispatcher.thread}


def test_request_nowait_refuses_beyond_max_pending_requests(sync_backend: Backend) -> None:
    host = Host(LOOPBACK, 0, backend=sync_backend, close_timeout=10 * T)
    client = Client(backend=sync_backend, close_timeout=10 * T, max_pending_requests=2)
    release = threading.Event()

    def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        release.wait(WAIT)
        return data

    host.got_request = got_request
    replies: list[Any] = []
    try:
        host.start()
        connect(client, host.port)
        for n in range(2):
            client.request_nowait(n, on_reply=lambda message: replies.append(message.data))
        with pytest.raises(TooManyRequests, match="max_pending_requests"):
            client.request_nowait(2, on_reply=replies.append)
        release.set()
        wait_until(lambda: sorted(replies) == [0, 1])
        client.request_nowait(3, on_reply=lambda message: replies.append(message.data))
        wait_until(lambda: sorted(replies) == [0, 1, 3])
    finally:
        release.set()
        client.close()
        host.stop()


def test_request_nowait_reports_a_lost_connection(pair: tuple[Host, Client]) -> None:
    host, client = pair
    release = threading.Event()

    def got_request(conn: Connection, data: Any, metadata: dict[str, Any]) -> Any:
        release.wait(WAIT)

    host.got_request = got_request
    errors: list[Exception] = []
    client.request_nowait("x", on_reply=print, on_error=errors.append)
    time.sleep(2 * T)
    host.clients[0].disconnect("bye")
    wait_until(lambda: len(errors) == 1)
    release.set()
    assert type(errors[0]).__name__ == "ConnectionClosedOK"
