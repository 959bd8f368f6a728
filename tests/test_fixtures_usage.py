"""A user's test suite, as a program that uses alvaro would write it with alvaro's pytest plugin.

It uses only what ``pip install ".[testing]"`` provides: the fixtures the plugin registers
through its ``pytest11`` entry point (no conftest, no imports of them) and :mod:`alvaro.testing`.
Async tests are marked ``@pytest.mark.anyio``; this repository's conftest runs them on asyncio
and trio, and a user's suite may do the same by parametrizing the ``anyio_backend`` fixture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

import alvaro
import alvaro.sync
import alvaro.testing

if TYPE_CHECKING:
    import ssl

    import trustme

    from alvaro.aio import Connection
    from alvaro.testing import TLSFiles

WAIT = 10.0


def echo(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
    conn.send_data(data, metadata)


@pytest.mark.anyio
async def test_echo(alvaro_host: alvaro.Host, alvaro_client: alvaro.Client) -> None:
    alvaro_host.got_data = echo  # type: ignore[method-assign]
    alvaro_client.send_data({"text": "hello"}, {"kind": "greeting"})
    with anyio.fail_after(WAIT):
        message = await alvaro_client.receive()
    assert message.data == {"text": "hello"}
    assert message.metadata == {"kind": "greeting"}
    assert alvaro_client.connection is not None
    assert alvaro_client.connection.tls is None  # plaintext


@pytest.mark.anyio
async def test_echo_over_tls(
    alvaro_tls_host: alvaro.Host, alvaro_tls_client: alvaro.Client
) -> None:
    alvaro_tls_host.got_data = echo  # type: ignore[method-assign]
    alvaro_tls_client.send_data(b"\x00binary\xff")
    with anyio.fail_after(WAIT):
        message = await alvaro_tls_client.receive()
    assert message.data == b"\x00binary\xff"
    connection = alvaro_tls_client.connection
    assert connection is not None
    assert connection.tls is not None
    assert connection.tls.version in {"TLSv1.2", "TLSv1.3"}


@pytest.mark.anyio
async def test_my_server_refuses_plaintext(alvaro_tls_host: alvaro.Host) -> None:
    with anyio.fail_after(WAIT), pytest.raises(alvaro.TLSError) as info:
        async with alvaro.aio.connect("127.0.0.1", alvaro_tls_host.port):
            pass
    assert info.value.kind == alvaro.TLSError.TLS_REQUIRED


@pytest.mark.anyio
async def test_mutual_tls_with_the_session_ca(alvaro_ca: trustme.CA) -> None:
    names: list[tuple[str, ...]] = []

    def new_client(conn: Connection) -> None:
        assert conn.tls is not None
        names.append(conn.tls.peer_names)

    server = alvaro.testing.server_context(alvaro_ca, client_ca=alvaro_ca)
    client = alvaro.testing.client_context(alvaro_ca, client_name="sensor-7")
    with anyio.fail_after(WAIT):
        async with alvaro.testing.running_host(ssl_context=server) as host:
            host.new_client = new_client  # type: ignore[method-assign]
            host.got_data = echo  # type: ignore[method-assign]
            async with alvaro.testing.connected_client(host, ssl_context=client) as connected:
                connected.send_data("reading")
                assert (await connected.receive()).data == "reading"
    assert names == [("sensor-7",)]


@pytest.mark.anyio
async def test_the_original_use_ssl_style(alvaro_tls_files: TLSFiles) -> None:
    files = alvaro_tls_files
    received: list[Any] = []
    host = alvaro.Host("127.0.0.1", 0)
    host.gotData = lambda conn, data, metaData: received.append(data)
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:
            await tasks.start(
                lambda task_status: host.start(
                    useSSL=True,
                    sslCert=str(files.cert),
                    sslKey=str(files.key),
                    task_status=task_status,
                )
            )
            client = alvaro.Client()
            await tasks.start(
                lambda task_status: client.connect(
                    "localhost",
                    host.port,
                    useSSL=True,
                    sslCert=str(files.ca),
                    task_status=task_status,
                )
            )
            client.sendData("over TLS", metaData={"n": 1})
            await client.aclose()
            await host.aclose()
    assert received == ["over TLS"]


def test_the_original_use_ssl_style_blocking(alvaro_tls_files: TLSFiles) -> None:
    files = alvaro_tls_files
    host = alvaro.sync.Host("127.0.0.1", 0)
    host.got_data = sync_echo  # type: ignore[method-assign]
    host.start(useSSL=True, sslCert=str(files.cert), sslKey=str(files.key))
    try:
        with alvaro.sync.Client() as client:
            client.connect("localhost", host.port, useSSL=True, sslCert=str(files.ca))
            client.sendData("blocking TLS")
            assert client.receive(timeout=WAIT).data == "blocking TLS"
    finally:
        host.close()


def test_blocking_api_with_the_context_fixtures(
    alvaro_server_ssl_context: ssl.SSLContext, alvaro_client_ssl_context: ssl.SSLContext
) -> None:
    host = alvaro.sync.Host("127.0.0.1", 0, ssl_context=alvaro_server_ssl_context)
    host.got_data = sync_echo  # type: ignore[method-assign]
    with host, alvaro.sync.Client(ssl_context=alvaro_client_ssl_context) as client:
        client.connect("127.0.0.1", host.port)
        client.send_data([1, 2, 3])
        assert client.receive(timeout=WAIT).data == [1, 2, 3]
        assert client.connection is not None
        assert client.connection.tls is not None


def sync_echo(conn: alvaro.sync.Connection, data: Any, metadata: dict[str, Any]) -> None:
    conn.send_data(data, metadata)


@pytest.mark.anyio
async def test_login_over_tls_with_fast_accounts(
    alvaro_server_ssl_context: ssl.SSLContext, alvaro_client_ssl_context: ssl.SSLContext
) -> None:
    accounts = alvaro.testing.fast_accounts({"ann": "correct horse"})
    assert accounts.users == ["ann"]
    assert accounts.auth_info("ann").iterations == alvaro.testing.FAST_ITERATIONS == 4096
    seen: list[str | None] = []
    async with alvaro.testing.running_host(
        ssl_context=alvaro_server_ssl_context, login_required=True, accounts=accounts
    ) as host:
        host.new_client = lambda conn: seen.append(conn.user)  # type: ignore[method-assign]
        async with alvaro.testing.connected_client(
            host, ssl_context=alvaro_client_ssl_context, login=("ann", "correct horse")
        ) as client:
            assert client.user == "ann"
        with pytest.raises(alvaro.AuthenticationError, match="wrong user name or password"):
            async with alvaro.testing.connected_client(
                host, ssl_context=alvaro_client_ssl_context, login=("ann", "wrong")
            ):
                pass  # pragma: no cover - the login fails before the block
    assert seen == ["ann"]
