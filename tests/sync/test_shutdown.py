"""alvaro.sync.Host.stop() (R23): drains, is bounded and idempotent, and lets the program exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import pytest

from alvaro import CloseCode, ConnectionClosedOK
from alvaro.sync import Client, Host

from ..helpers import WAIT, T, wait_until
from .support import LOOPBACK, connect

if TYPE_CHECKING:
    from alvaro.sync._loop import Backend

CLOSE_TIMEOUT = 10 * T


def test_r23_sync_stop_delivers_what_is_queued_then_going_away(sync_backend: Backend) -> None:
    host = Host(LOOPBACK, 0, backend=sync_backend, close_timeout=CLOSE_TIMEOUT)
    clients = [Client(backend=sync_backend, close_timeout=CLOSE_TIMEOUT) for _ in range(5)]
    try:
        host.start()
        for client in clients:
            connect(client, host.port)
        wait_until(lambda: len(host.clients) == len(clients))
        for conn in host.clients:
            for seq in range(200):
                conn.send_data(seq)
        started = time.monotonic()
        host.stop()
        elapsed = time.monotonic() - started
        again = time.monotonic()
        host.stop()
        assert time.monotonic() - again < T, "a second stop() must return at once"
        for client in clients:
            assert [client.receive(timeout=WAIT).data for _ in range(200)] == list(range(200))
            with pytest.raises(ConnectionClosedOK) as info:
                client.receive(timeout=WAIT)
            assert info.value.code == CloseCode.GOING_AWAY
    finally:
        for client in clients:
            client.close()
        host.close()
    assert elapsed < 2 * CLOSE_TIMEOUT + 1


def test_a_host_can_start_again_after_stop(sync_backend: Backend) -> None:
    host = Host(LOOPBACK, 0, backend=sync_backend, close_timeout=CLOSE_TIMEOUT)
    try:
        for _ in range(2):
            host.start()
            client = Client(backend=sync_backend)
            try:
                connect(client, host.port)
                client.send_data("ping")
            finally:
                client.close()
            host.stop()
    finally:
        host.close()


SCRIPT = textwrap.dedent(
    """
    import alvaro.sync
    host = alvaro.sync.Host("127.0.0.1", 0, backend={backend!r})
    host.start()
    client = alvaro.sync.Client(backend={backend!r})
    client.connect("127.0.0.1", host.port)
    client.close()
    host.stop()
    print("stopped", flush=True)
    """
)


def test_a_script_that_ends_with_stop_exits(sync_backend: Backend) -> None:
    """stop() lets go of the loop thread: no close() is needed for the program to end."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(backend=sync_backend)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "stopped\n"
