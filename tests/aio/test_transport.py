"""The stream seam's safety rules, checked on real sockets."""

from __future__ import annotations

import ssl

import anyio
import anyio.abc
import pytest
import trustme
from anyio.streams.tls import TLSStream

from alvaro.aio._transport import AnyioTransport

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
