"""A user's tests of an alvaro program, with the fixtures of alvaro's pytest plugin.

Nothing here sets the plugin up: installing alvaro with trustme is enough. The async tests run
on the anyio plugin's backends, which this module chooses with its own ``anyio_backend``; the
blocking tests on alvaro.sync's loops, chosen with ``alvaro_sync_backend``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import stat
import sys
import threading
from typing import Any

import anyio
import pytest

import alvaro
import alvaro.sync
import alvaro.testing
import alvaro.tls

#: Every wait is bounded: a broken test fails instead of hanging.
WAIT = 10


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test of this module on asyncio and on trio."""
    return str(request.param)


@pytest.fixture(params=["asyncio", "trio"])
def alvaro_sync_backend(request: pytest.FixtureRequest) -> str:
    """Run every test of this module that uses a sync fixture on both of alvaro.sync's loops."""
    return str(request.param)


def echo(conn: alvaro.aio.Connection, data: Any, metadata: dict[str, Any]) -> None:
    """The program under test: a host that echoes every message."""
    conn.send_data({"echo": data}, metadata)


def running_on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def round_trip(client: alvaro.aio.Client) -> None:
    client.send_data("hello", metadata={"n": 1})
    message = await client.receive(timeout=WAIT)
    assert message.data == {"echo": "hello"}
    assert message.metadata == {"n": 1}


@pytest.mark.anyio
async def test_plaintext(
    alvaro_host: alvaro.aio.Host, alvaro_client: alvaro.aio.Client, anyio_backend: str
) -> None:
    # The fixtures run on the test's backend.
    assert running_on_asyncio() == (anyio_backend == "asyncio")
    alvaro_host.got_data = echo  # type: ignore[method-assign]
    await round_trip(alvaro_client)
    assert alvaro_host.addr == "127.0.0.1"
    assert alvaro_client.connection is not None
    assert alvaro_client.connection.tls is None


@pytest.mark.anyio
async def test_tls(
    alvaro_tls_host: alvaro.aio.Host, alvaro_tls_client: alvaro.aio.Client, anyio_backend: str
) -> None:
    assert running_on_asyncio() == (anyio_backend == "asyncio")
    alvaro_tls_host.got_data = echo  # type: ignore[method-assign]
    await round_trip(alvaro_tls_client)
    assert alvaro_tls_client.connection is not None
    info = alvaro_tls_client.connection.tls
    assert info is not None
    assert info.version in {"TLSv1.2", "TLSv1.3"}
    assert "127.0.0.1" in info.peer_names
    (conn,) = alvaro_tls_host.clients
    assert conn.tls is not None
    assert conn.tls.peer_certificate is None  # no mutual TLS by default


@pytest.mark.anyio
async def test_tls_host_refuses_plaintext(alvaro_tls_host: alvaro.aio.Host) -> None:
    with pytest.raises(alvaro.TLSError) as error, anyio.fail_after(WAIT):
        async with alvaro.aio.connect("127.0.0.1", alvaro_tls_host.port):
            pass
    assert error.value.kind == alvaro.TLSError.TLS_REQUIRED


@pytest.mark.anyio
async def test_mutual_tls_with_the_ca(alvaro_ca: Any) -> None:
    # alvaro_ca is a trustme.CA: build other contexts from it with alvaro.testing.
    server_tls = alvaro.testing.server_context(alvaro_ca, client_ca=alvaro_ca)
    client_tls = alvaro.testing.client_context(alvaro_ca, client_name="tester")
    async with alvaro.testing.running_host(ssl_context=server_tls) as host:
        host.got_data = echo  # type: ignore[method-assign]
        async with alvaro.testing.connected_client(host, ssl_context=client_tls) as client:
            await round_trip(client)
            (conn,) = host.clients
            assert conn.tls is not None
            assert conn.tls.peer_names == ("tester",)


@pytest.mark.anyio
async def test_original_style_with_tls_files(alvaro_tls_files: alvaro.testing.TLSFiles) -> None:
    # A program written for the original Alvaro: start(useSSL=..., sslCert=..., sslKey=...).
    host = alvaro.Host("127.0.0.1", 0)
    host.got_data = echo  # type: ignore[method-assign]
    client = alvaro.Client()
    files = alvaro_tls_files
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:
            port = await tasks.start(
                functools.partial(
                    host.start, useSSL=True, sslCert=str(files.cert), sslKey=str(files.key)
                )
            )
            await tasks.start(
                functools.partial(
                    client.connect, "127.0.0.1", port, useSSL=True, sslCert=str(files.ca)
                )
            )
            try:
                await round_trip(client)
                assert client.connection is not None
                assert client.connection.tls is not None
            finally:
                await client.aclose()
                host.stop()


def test_tls_files(alvaro_tls_files: alvaro.testing.TLSFiles) -> None:
    # A plain test: the session's PEM files, keys readable by their owner only.
    files = alvaro_tls_files
    for path in (files.ca, files.cert, files.client_cert):
        assert path.read_text().startswith("-----BEGIN CERTIFICATE-----")
    if sys.platform != "win32":
        for key in (files.key, files.client_key):
            assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    # The files work with alvaro.tls, as a deployed program would load them.
    alvaro.tls.server_context(files.cert, files.key, client_ca=files.ca)
    alvaro.tls.client_context(files.ca, certfile=files.client_cert, keyfile=files.client_key)


def test_the_plugin_is_loaded_from_its_entry_point(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.has_plugin("alvaro")
    # No conftest.py here: the fixtures come from the plugin.
    assert not (request.config.rootpath / "conftest.py").exists()


def test_no_fixture_is_forced_on_a_test(request: pytest.FixtureRequest) -> None:
    # This test asks for no alvaro fixture, and the plugin has no autouse ones: none is active.
    assert [name for name in request.fixturenames if name.startswith("alvaro")] == []


def sync_echo(conn: alvaro.sync.Connection, data: Any, metadata: dict[str, Any]) -> None:
    """The program under test, blocking style: it must not run on the test's own thread."""
    assert threading.current_thread() is not threading.main_thread()
    conn.send_data({"echo": data}, metadata)


def sync_round_trip(client: alvaro.sync.Client) -> None:
    client.send_data("hello", metadata={"n": 1})
    message = client.receive(timeout=WAIT)
    assert message.data == {"echo": "hello"}
    assert message.metadata == {"n": 1}


def test_sync_plaintext(
    alvaro_sync_host: alvaro.sync.Host,
    alvaro_sync_client: alvaro.sync.Client,
    alvaro_sync_backend: str,
) -> None:
    # A plain test: the host and client run on alvaro.sync's loop thread, on the chosen loop.
    assert alvaro_sync_host.backend == alvaro_sync_client.backend == alvaro_sync_backend
    alvaro_sync_host.got_data = sync_echo  # type: ignore[method-assign]
    sync_round_trip(alvaro_sync_client)
    assert alvaro_sync_host.addr == "127.0.0.1"
    assert alvaro_sync_host.running
    assert alvaro_sync_client.connection is not None
    assert alvaro_sync_client.connection.tls is None


def test_sync_tls(
    alvaro_sync_tls_host: alvaro.sync.Host,
    alvaro_sync_tls_client: alvaro.sync.Client,
    alvaro_sync_backend: str,
) -> None:
    assert alvaro_sync_tls_host.backend == alvaro_sync_tls_client.backend == alvaro_sync_backend
    alvaro_sync_tls_host.got_data = sync_echo  # type: ignore[method-assign]
    sync_round_trip(alvaro_sync_tls_client)
    assert alvaro_sync_tls_client.connection is not None
    info = alvaro_sync_tls_client.connection.tls
    assert info is not None
    assert "127.0.0.1" in info.peer_names
    # TLS only: a plaintext client is refused.
    plain = alvaro.sync.Client(backend=alvaro_sync_backend)
    try:
        with pytest.raises(alvaro.TLSError):
            plain.connect("127.0.0.1", alvaro_sync_tls_host.port)
    finally:
        plain.close()
