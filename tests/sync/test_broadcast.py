"""alvaro.sync.Host.broadcast(): from a plain thread and from inside a callback."""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any

import pytest

from alvaro import CloseCode
from alvaro.protocol import Decoder, Hello, encode_hello
from alvaro.sync import Client, Connection, Host

from ..helpers import WAIT, T, wait_until
from .support import LOOPBACK, connect

if TYPE_CHECKING:
    from alvaro.sync._loop import Backend


def test_sync_broadcast_from_a_thread_and_from_got_data(sync_backend: Backend) -> None:
    """A chat: every message is relayed to everyone but its sender, from the callback thread."""
    host = Host(LOOPBACK, 0, backend=sync_backend, close_timeout=10 * T)
    counts: list[int] = []

    def relay(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        counts.append(host.broadcast(data, {"from": conn.port}, exclude=conn))

    host.got_data = relay  # type: ignore[method-assign]
    clients = [Client(backend=sync_backend) for _ in range(3)]
    try:
        host.start()
        ports = [connect(client, host.port).local_port for client in clients]
        wait_until(lambda: len(host.clients) == 3)
        assert host.broadcast("welcome") == 3
        assert [client.receive(timeout=WAIT).data for client in clients] == ["welcome"] * 3

        clients[0].send_data("hello")
        for client in clients[1:]:
            message = client.receive(timeout=WAIT)
            assert (message.data, message.metadata) == ("hello", {"from": ports[0]})
        with pytest.raises(TimeoutError):
            clients[0].receive(timeout=T)
        wait_until(lambda: counts == [2])

        assert host.broadcast("picked", where=lambda conn: conn.port == ports[2]) == 1
        assert clients[2].receive(timeout=WAIT).data == "picked"
        with pytest.raises(TimeoutError):
            clients[1].receive(timeout=T)
    finally:
        for client in clients:
            client.close()
        host.close()


def stalled_client(port: int) -> socket.socket:
    """A raw client that does its handshake, then reads nothing (a 4 KiB receive buffer)."""
    sock = socket.create_connection((LOOPBACK, port), timeout=WAIT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(encode_hello("client"))
    decoder = Decoder("client")
    while not any(isinstance(event, Hello) for event in decoder.events()):
        decoder.receive_data(sock.recv(65536))
    return sock


def test_sync_broadcast_drops_a_slow_consumer_at_once(
    sync_backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    """Every sync broadcast comes from a plain thread: a client whose outbox is full is dropped
    as a slow consumer then and there (not after write_timeout), with no error logged."""
    caplog.set_level(logging.WARNING)
    host = Host(LOOPBACK, 0, backend=sync_backend, outbox_limit=64 * 1024, write_timeout=600)
    lost: list[tuple[int, int | None]] = []
    host.lost_client = lambda conn: lost.append((conn.port, conn.close_code))  # type: ignore[method-assign]
    received: list[Any] = []
    healthy = Client(backend=sync_backend)
    healthy.got_data = lambda data, metadata: received.append(data)  # type: ignore[method-assign]
    host.start()
    stalled = stalled_client(host.port)
    try:
        connect(healthy, host.port)
        wait_until(lambda: len(host.clients) == 2)
        payload = b"x" * 32 * 1024
        for count in range(1, 301):  # 9 MiB: more than the socket buffers and the outbox hold
            host.broadcast(payload)
            wait_until(lambda count=count: len(received) == count)  # the healthy one keeps up
            if lost:
                break
        wait_until(lambda: len(lost) == 1)
        assert lost == [(stalled.getsockname()[1], CloseCode.SLOW_CONSUMER)]
        assert len(host.clients) == 1
    finally:
        stalled.close()
        healthy.close()
        host.close()
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert errors == []
