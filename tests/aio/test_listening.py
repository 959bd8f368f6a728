"""Where a host listens, beyond an address and a port: a socket bound by someone else (``sock=``)
and a port shared with other hosts (``reuse_port=True``), on asyncio and on trio.

Several *processes* on one port are in tests/test_shared_port.py; here the hosts share a process,
which is enough to show what the options do to the listening sockets.
"""

from __future__ import annotations

import errno
import socket
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import alvaro
import alvaro.testing
from alvaro.aio import Connection, Host, connect

from ..helpers import WAIT

if TYPE_CHECKING:
    import ssl
    from collections.abc import Iterator

needs_reuse_port = pytest.mark.skipif(
    not hasattr(socket, "SO_REUSEPORT"), reason="this system has no SO_REUSEPORT"
)


def echo(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
    conn.send_data({"echo": data}, metadata)


async def round_trip(port: int, **options: Any) -> Any:
    async with connect("127.0.0.1", port, **options) as client:
        client.send_data("hello")
        return (await client.receive(timeout=WAIT)).data


@pytest.fixture
def bound_socket() -> Iterator[socket.socket]:
    """A TCP socket bound to a free port of 127.0.0.1, as a supervisor would make it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock
    finally:
        sock.close()


# --- sock= -----------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("listening", [True, False], ids=["listening", "bound-only"])
async def test_a_host_serves_on_the_socket_it_is_given(
    bound_socket: socket.socket, listening: bool
) -> None:
    if listening:
        bound_socket.listen()
    port = bound_socket.getsockname()[1]
    host = Host(sock=bound_socket)
    # The host reports the socket's address before it starts, and keeps it once started.
    assert (host.addr, host.port) == ("127.0.0.1", port)
    host.got_data = echo
    with anyio.fail_after(WAIT):
        async with host:
            assert host.port == port
            assert await round_trip(port) == {"echo": "hello"}
    # The host took the socket over: stopping closed it, and nothing listens there any more.
    assert bound_socket.fileno() == -1
    with pytest.raises(alvaro.ConnectError), anyio.fail_after(WAIT):
        await round_trip(port)


@pytest.mark.anyio
async def test_a_host_serves_tls_on_the_socket_it_is_given(
    bound_socket: socket.socket,
    alvaro_server_ssl_context: ssl.SSLContext,
    alvaro_client_ssl_context: ssl.SSLContext,
) -> None:
    host = Host(sock=bound_socket, ssl_context=alvaro_server_ssl_context)
    host.got_data = echo
    with anyio.fail_after(WAIT):
        async with host:
            async with connect(
                "127.0.0.1", host.port, ssl_context=alvaro_client_ssl_context
            ) as client:
                client.send_data("hello")
                assert (await client.receive(timeout=WAIT)).data == {"echo": "hello"}
                assert client.connection is not None
                assert client.connection.tls is not None
            # TLS only: a plaintext client is refused, as on a host that bound its own socket.
            with pytest.raises(alvaro.TLSError) as error:
                await round_trip(host.port)
            assert error.value.kind == alvaro.TLSError.TLS_REQUIRED


@pytest.mark.anyio
async def test_a_host_whose_socket_was_closed_cannot_start_again(
    bound_socket: socket.socket,
) -> None:
    host = Host(sock=bound_socket)
    with anyio.fail_after(WAIT):
        async with host:
            pass
        with pytest.raises(ValueError, match=r"closed .* give a new one"):
            async with host:
                pass


@pytest.mark.anyio
async def test_the_testing_helper_takes_a_socket(bound_socket: socket.socket) -> None:
    async with alvaro.testing.running_host(sock=bound_socket) as host:
        host.got_data = echo
        async with alvaro.testing.connected_client(host) as client:
            client.send_data(1)
            assert (await client.receive(timeout=WAIT)).data == {"echo": 1}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"addr": "0.0.0.0"}, "either sock= or addr and port"),
        ({"port": 8888}, "either sock= or addr and port"),
        ({"addr": "::1", "port": 0}, "either sock= or addr and port"),
        # Even the socket's own address: the socket alone says where the host listens.
        ({"addr": "127.0.0.1", "port": "own"}, "either sock= or addr and port"),
        ({"reuse_port": True}, "set SO_REUSEPORT on the socket"),
    ],
)
def test_sock_with_an_address_is_a_value_error(
    bound_socket: socket.socket, arguments: dict[str, Any], message: str
) -> None:
    if arguments.get("port") == "own":
        arguments["port"] = bound_socket.getsockname()[1]
    with pytest.raises(ValueError, match=message):
        Host(sock=bound_socket, **arguments)
    # The socket is left to its owner: it was not taken over.
    assert bound_socket.fileno() != -1


def test_a_socket_the_host_cannot_serve_on_is_refused_at_once() -> None:
    with pytest.raises(TypeError, match=r"sock must be a socket\.socket"):
        Host(sock=8888)  # type: ignore[arg-type]
    with socket.socket() as unbound, pytest.raises(ValueError, match="must be bound"):
        Host(sock=unbound)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match="must be a TCP socket"):
            Host(sock=udp)
    closed = socket.socket()
    closed.close()
    with pytest.raises(ValueError, match="is closed"):
        Host(sock=closed)


# --- reuse_port= -----------------------------------------------------------------------------


@needs_reuse_port
@pytest.mark.anyio
async def test_hosts_with_reuse_port_share_a_port() -> None:
    first = Host(reuse_port=True)
    first.got_data = echo
    with anyio.fail_after(WAIT):
        async with first:
            second = Host("127.0.0.1", first.port, reuse_port=True)
            second.got_data = echo
            async with second:
                assert second.port == first.port
                assert await round_trip(first.port) == {"echo": "hello"}
            # The first one still serves once the other has stopped.
            assert await round_trip(first.port) == {"echo": "hello"}


@needs_reuse_port
@pytest.mark.anyio
async def test_without_reuse_port_a_second_host_cannot_bind_the_port() -> None:
    # Both must ask: one host with reuse_port=True does not open its port to others.
    with anyio.fail_after(WAIT):
        async with Host(reuse_port=True) as first:
            with pytest.raises(OSError, match="in use") as error:
                await Host("127.0.0.1", first.port).start()
            assert error.value.errno == errno.EADDRINUSE
            async with Host("127.0.0.1", first.port, reuse_port=True):
                pass


def test_reuse_port_where_the_system_lacks_it_is_a_value_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # As on Windows, whose socket module has no SO_REUSEPORT.
    monkeypatch.delattr(socket, "SO_REUSEPORT", raising=False)
    with pytest.raises(ValueError, match="needs SO_REUSEPORT, which this system"):
        Host(reuse_port=True)
    Host(reuse_port=False)  # the default needs nothing


def test_reuse_port_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="reuse_port must be True or False"):
        Host(reuse_port="yes")  # type: ignore[arg-type]
