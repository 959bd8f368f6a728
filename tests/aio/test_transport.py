"""The stream seam's safety rules, checked on real sockets."""

from __future__ import annotations

import socket
import ssl

import anyio
import anyio.abc
import pytest
import trustme
from anyio.streams.tls import TLSStream

from alvaro.aio._io.anyio_tcp import AnyioTransport

from ..helpers import WAIT

pytestmark = pytest.mark.anyio


async def test_send_now_never_bypasses_tls(anyio_backend_name: str) -> None:
    # A TLS stream forwards raw_socket from the TCP stream beneath it; a direct write there
    # would put plaintext on the wire. The transport must refuse, and leave sending to send().
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    received: list[bytes] = []
    got = anyio.Event()

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with await TLSStream.wrap(
            stream, server_side=True, ssl_context=server_context
        ) as tls:
            received.append(await tls.receive())
            got.set()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    with anyio.fail_after(WAIT):
        async with listener, anyio.create_task_group() as tasks:
            tasks.start_soon(listener.serve, serve)
            tcp = await anyio.connect_tcp("127.0.0.1", port)
            tls = await TLSStream.wrap(
                tcp, server_side=False, hostname="localhost", ssl_context=client_context
            )
            transport = AnyioTransport(tls, trio=anyio_backend_name == "trio")  # type: ignore[arg-type]
            assert transport.send_now(b"secret") == 0
            await transport.send(b"secret")  # the normal path encrypts
            await got.wait()
            await tls.aclose()
            tasks.cancel_scope.cancel()
    assert received == [b"secret"]


async def test_send_now_writes_directly_on_plain_tcp_under_trio_only(
    anyio_backend_name: str,
) -> None:
    # On trio the raw socket is a real socket object; on asyncio anyio offers a wrapper without
    # send(), and alvaro uses its own asyncio transport instead.
    received: list[bytes] = []
    got = anyio.Event()

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            received.append(await stream.receive())
            got.set()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    with anyio.fail_after(WAIT):
        async with listener, anyio.create_task_group() as tasks:
            tasks.start_soon(listener.serve, serve)
            stream = await anyio.connect_tcp("127.0.0.1", port)
            transport = AnyioTransport(stream, trio=anyio_backend_name == "trio")
            written = transport.send_now(b"hello")
            if written == 0:
                await transport.send(b"hello")
            await got.wait()
            await transport.aclose()
            tasks.cancel_scope.cancel()
    assert received == [b"hello"]
    assert written == (5 if anyio_backend_name == "trio" else 0)


# --- Large messages --------------------------------------------------------------------------


@pytest.mark.parametrize("use_tls", [False, True], ids=["plain", "tls"])
async def test_large_and_small_messages_interleaved_arrive_intact_and_in_order(
    use_tls: bool,
    alvaro_server_ssl_context: ssl.SSLContext,
    alvaro_client_ssl_context: ssl.SSLContext,
) -> None:
    # Messages of megabytes arrive over many reads; the small ones around them must still be
    # parsed whole and in order, in plaintext and through TLS records.
    from alvaro.aio import Host, connect

    size = 3 * 1024 * 1024
    blobs = [bytes([n]) * size + bytes(range(256)) * n for n in range(1, 5)]
    host_options = {"ssl_context": alvaro_server_ssl_context} if use_tls else {}
    client_options = {"ssl_context": alvaro_client_ssl_context} if use_tls else {}
    received: list[tuple[object, dict[str, object]]] = []
    done = anyio.Event()
    host = Host("127.0.0.1", 0, max_message_size=4 * size, **host_options)  # type: ignore[arg-type]

    def got_data(conn: object, data: object, metadata: dict[str, object]) -> None:
        received.append((data, metadata))
        if len(received) == 2 * len(blobs):
            done.set()

    host.got_data = got_data  # type: ignore[method-assign]
    with anyio.fail_after(WAIT):
        async with (
            host,
            connect("127.0.0.1", host.port, max_message_size=4 * size, **client_options) as client,
        ):
            for index, blob in enumerate(blobs):
                await client.send(blob, {"index": index})
                await client.send({"after": index})
            await done.wait()
    assert received == [
        item
        for index, blob in enumerate(blobs)
        for item in ((blob, {"index": index}), ({"after": index}, {}))
    ]


def _raw_socket(transport: object) -> socket.socket:
    """The socket beneath one of alvaro's plaintext transports."""
    asyncio_transport = getattr(transport, "_transport", None)
    if asyncio_transport is not None:
        return asyncio_transport.get_extra_info("socket")  # type: ignore[no-any-return]
    direct = getattr(transport, "_direct", None)
    assert isinstance(direct, socket.socket)
    return direct


async def test_accepted_and_connected_sockets_send_small_writes_at_once() -> None:
    """Nagle's algorithm is off on both ends: a burst of small replies must not wait for the
    peer's delayed ACK (which cost every reply burst of an asyncio host 40 ms)."""
    from alvaro.aio._io import listen, open_transport
    from alvaro.aio._loop import LoopHandle

    trio = LoopHandle().is_trio
    listener = await listen("127.0.0.1", 0, trio=trio)
    try:
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tasks:
                accepted: list[object] = []

                async def accept() -> None:
                    accepted.append(await listener.accept(listener.sockets[0]))

                tasks.start_soon(accept)
                client = await open_transport("127.0.0.1", listener.port, timeout=WAIT, trio=trio)
        (server,) = accepted
        for transport in (server, client):
            sock = _raw_socket(transport)
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
            await transport.aclose()  # type: ignore[attr-defined]
    finally:
        await listener.aclose()
