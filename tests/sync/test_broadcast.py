"""alvaro.sync.Host.broadcast(): from a plain thread and from inside a callback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

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
