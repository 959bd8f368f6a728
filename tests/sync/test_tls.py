"""TLS through the blocking API, on both loop backends: the happy path, ``conn.tls``, the seed's
``useSSL`` style, and failures that must reach the caller as typed errors without leaking threads.

The autouse fixture of ``tests/sync/conftest.py`` checks after each test that every lease on the
loop thread was released and no alvaro thread is left, failed connects included.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest
import trustme

import alvaro.testing
from alvaro import CloseCode, TLSError
from alvaro.sync import Client, Connection, Host

from ..helpers import WAIT, T, wait_until
from .support import LOOPBACK, call_in_thread

if TYPE_CHECKING:
    import ssl

    from alvaro.sync._loop import Backend
    from alvaro.testing import TLSFiles

OPTIONS: dict[str, Any] = {"open_timeout": 20 * T, "close_timeout": 30 * T}


class Recorder:
    """Sync host callbacks: echo every message, and record connections and their TLS."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tls: list[alvaro.tls.TLSInfo | None] = []
        self.data: list[Any] = []
        self.lost: list[tuple[int | None, bool | None]] = []

    def new_client(self, conn: Connection) -> None:
        with self.lock:
            self.tls.append(conn.tls)

    def got_data(self, conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        with self.lock:
            self.data.append(data)
        conn.send_data(data, metadata)

    def lost_client(self, conn: Connection) -> None:
        with self.lock:
            self.lost.append((conn.close_code, conn.closed_by_peer))

    def host(self, backend: Backend, **options: Any) -> Host:
        host = Host(LOOPBACK, 0, backend=backend, **{**OPTIONS, **options})
        host.new_client = self.new_client  # type: ignore[method-assign]
        host.got_data = self.got_data  # type: ignore[method-assign]
        host.lost_client = self.lost_client  # type: ignore[method-assign]
        return host


def connect_fails(client: Client, port: int, **connect: Any) -> TLSError:
    """``client.connect()`` under a watchdog; expect a TLSError within open_timeout."""
    started = time.monotonic()
    with pytest.raises(TLSError) as info:
        call_in_thread(lambda: client.connect("localhost", port, **connect))
    assert time.monotonic() - started < OPTIONS["open_timeout"]
    assert not client.connected
    return info.value


@pytest.mark.parametrize("name", ["localhost", "127.0.0.1"])
def test_sync_tls_happy_path(
    name: str,
    sync_backend: Backend,
    alvaro_server_ssl_context: ssl.SSLContext,
    alvaro_client_ssl_context: ssl.SSLContext,
) -> None:
    recorder = Recorder()
    host = recorder.host(sync_backend, ssl_context=alvaro_server_ssl_context)
    client = Client(ssl_context=alvaro_client_ssl_context, backend=sync_backend, **OPTIONS)
    with host, client:
        call_in_thread(lambda: client.connect(name, host.port))
        conn = client.connection
        assert conn is not None
        assert conn.tls is not None
        assert conn.tls.version in {"TLSv1.2", "TLSv1.3"}
        assert name in conn.tls.peer_names  # the host's verified certificate
        for n in range(1000):
            client.send_data(n, {"n": n})
        echoed = [client.receive(timeout=WAIT) for _ in range(1000)]
        assert [(m.data, m.metadata) for m in echoed] == [(n, {"n": n}) for n in range(1000)]
        # conn.tls on the host's sync Connection, as new_client saw it.
        (host_tls,) = recorder.tls
        assert host_tls is not None
        assert host_tls.version == conn.tls.version
        assert host_tls.peer_certificate is None
        assert [c.tls for c in host.clients] == [host_tls]
        started = time.monotonic()
        assert call_in_thread(lambda: conn.close(timeout=WAIT))
        elapsed = time.monotonic() - started
        assert elapsed < OPTIONS["close_timeout"]  # the closing handshake completed
        assert (conn.close_code, conn.closed_by_peer) == (CloseCode.NORMAL, False)
        wait_until(lambda: bool(recorder.lost))
    assert recorder.lost == [(CloseCode.NORMAL, True)]
    assert recorder.data == list(range(1000))


def test_sync_tls_seed_style(sync_backend: Backend, alvaro_tls_files: TLSFiles) -> None:
    files = alvaro_tls_files
    recorder = Recorder()
    host = recorder.host(sync_backend)
    client = Client(backend=sync_backend, **OPTIONS)
    try:
        host.start(useSSL=True, sslCert=str(files.cert), sslKey=str(files.key))
        call_in_thread(
            lambda: client.connect("localhost", host.port, useSSL=True, sslCert=str(files.ca))
        )
        client.sendData("seed", metaData={"style": "camelCase"})
        message = client.receive(timeout=WAIT)
        assert (message.data, message.metadata) == ("seed", {"style": "camelCase"})
        assert client.connection is not None
        assert client.connection.tls is not None
    finally:
        client.close()
        host.close()
    assert recorder.data == ["seed"]


def test_sync_tls_untrusted_ca(
    sync_backend: Backend,
    alvaro_server_ssl_context: ssl.SSLContext,
    alvaro_client_ssl_context: ssl.SSLContext,
) -> None:
    recorder = Recorder()
    other = alvaro.testing.client_context(trustme.CA())
    with (
        recorder.host(sync_backend, ssl_context=alvaro_server_ssl_context) as host,
        Client(ssl_context=other, backend=sync_backend, **OPTIONS) as client,
    ):
        error = connect_fails(client, host.port)
        assert error.kind == TLSError.UNTRUSTED
        assert recorder.tls == []
        # The loop thread is healthy: a trusting client connects after the failure.
        with Client(ssl_context=alvaro_client_ssl_context, backend=sync_backend, **OPTIONS) as good:
            call_in_thread(lambda: good.connect("localhost", host.port))
            good.send_data("after")
            assert good.receive(timeout=WAIT).data == "after"
    assert recorder.data == ["after"]


def test_sync_tls_plaintext_client_to_a_tls_host(
    sync_backend: Backend,
    alvaro_server_ssl_context: ssl.SSLContext,
    alvaro_client_ssl_context: ssl.SSLContext,
) -> None:
    recorder = Recorder()
    with (
        recorder.host(sync_backend, ssl_context=alvaro_server_ssl_context) as host,
        Client(backend=sync_backend, **OPTIONS) as plaintext,
    ):
        error = connect_fails(plaintext, host.port)
        assert error.kind == TLSError.TLS_REQUIRED
        assert recorder.tls == []
        # The host and the loop thread keep serving a TLS client.
        with Client(
            ssl_context=alvaro_client_ssl_context, backend=sync_backend, **OPTIONS
        ) as client:
            call_in_thread(lambda: client.connect("localhost", host.port))
            client.send_data("after")
            assert client.receive(timeout=WAIT).data == "after"
    assert recorder.data == ["after"]


def test_sync_tls_ssl_cert_without_use_ssl_is_refused(
    sync_backend: Backend, alvaro_tls_files: TLSFiles
) -> None:
    recorder = Recorder()
    with recorder.host(sync_backend) as plaintext_host, Client(backend=sync_backend) as client:
        error = connect_fails(client, plaintext_host.port, ssl_cert=str(alvaro_tls_files.ca))
        assert error.kind == TLSError.CONFIGURATION
    assert recorder.tls == []


def test_sync_tls_wrong_hostname(
    sync_backend: Backend,
    alvaro_server_ssl_context: ssl.SSLContext,
    alvaro_client_ssl_context: ssl.SSLContext,
) -> None:
    recorder = Recorder()
    with (
        recorder.host(sync_backend, ssl_context=alvaro_server_ssl_context) as host,
        Client(ssl_context=alvaro_client_ssl_context, backend=sync_backend, **OPTIONS) as client,
    ):
        error = connect_fails(client, host.port, server_hostname="not-this-host.example")
        assert error.kind == TLSError.HOSTNAME_MISMATCH
    assert recorder.tls == []


def test_sync_host_use_ssl_without_a_certificate(sync_backend: Backend) -> None:
    host = Host(LOOPBACK, 0, backend=sync_backend, **OPTIONS)
    try:
        with pytest.raises(TLSError) as info:
            call_in_thread(lambda: host.start(use_ssl=True))
        assert info.value.kind == TLSError.CONFIGURATION
        assert not host.running
    finally:
        host.close()
