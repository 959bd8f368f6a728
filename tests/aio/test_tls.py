"""TLS on live connections, on asyncio and on trio: the reliability cases R11 to R14.

* R11: the happy path (version, verified names, 1000 messages in order, a graceful close).
* R12: every verification failure raises :class:`alvaro.TLSError` with the right ``kind`` and
  never falls back to plaintext; no application data reaches the host.
* R13: mutual TLS, required and optional.
* R14: TLS close edge cases, driven by a raw TLS peer (:class:`RawTLS`) that can end a connection
  the ways no alvaro peer would: a reset mid-frame, a FIN without close_notify, no answer to
  close_notify.

Plus handshakes that never start or never finish, rate-limited logging of failed handshakes, and
the original library's ``useSSL``/``sslCert``/``sslKey`` style. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import datetime
import functools
import logging
import socket
import ssl
import time
import types
import warnings
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import anyio.abc
import pytest
import trustme

import alvaro
import alvaro.testing
import alvaro.tls
from alvaro import CloseCode, TLSError, _throttle
from alvaro.aio import Client, Connection, Host, connect
from alvaro.protocol import (
    PREAMBLE,
    Close,
    Decoder,
    Event,
    Hello,
    Message,
    Role,
    encode_close,
    encode_hello,
    encode_message,
)

from ..helpers import WAIT, T, reset_on_close

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from pathlib import Path

    from alvaro.testing import TLSFiles

pytestmark = pytest.mark.anyio

E = TypeVar("E", bound=Event)

OPEN_TIMEOUT = 20 * T
CLOSE_TIMEOUT = 5 * T
#: Settings of most hosts and clients here: small, so that faults resolve fast.
OPTIONS: dict[str, Any] = {"open_timeout": OPEN_TIMEOUT, "close_timeout": CLOSE_TIMEOUT}
#: Extra time allowed on top of a timeout for the work around it, on a busy 2-core machine.
MARGIN = 10 * T
#: A moment in the past, for expired certificates.
PAST = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)

LOOPBACK = "127.0.0.1"


# --- Helpers ----------------------------------------------------------------------------------


class Recorder:
    """Host callbacks that record what happened, keyed by the client's port.

    ``got_data`` echoes every message back, so a client can prove that the host serves it.
    """

    def __init__(self) -> None:
        self.new: list[int] = []
        self.tls: dict[int, alvaro.tls.TLSInfo | None] = {}
        self.data: dict[int, list[Any]] = {}
        self.lost: dict[int, tuple[int | None, bool | None, str]] = {}
        self._changed = anyio.Event()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds after some callback; bound it with fail_after."""
        while not predicate():
            await self._changed.wait()

    async def wait_lost(self, port: int) -> tuple[int | None, bool | None, str]:
        await self.wait_for(lambda: port in self.lost)
        return self.lost[port]

    @property
    def nothing_reached_the_application(self) -> bool:
        return not self.new and not self.data and not self.lost

    def new_client(self, conn: Connection) -> None:
        self.new.append(conn.port)
        self.tls[conn.port] = conn.tls
        self._notify()

    def got_data(self, conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        self.data.setdefault(conn.port, []).append(data)
        conn.send_data(data, metadata)
        self._notify()

    def lost_client(self, conn: Connection) -> None:
        assert conn.port not in self.lost, "lost_client called twice"
        self.lost[conn.port] = (conn.close_code, conn.closed_by_peer, conn.close_reason)
        self._notify()

    def install(self, host: Host) -> Host:
        host.new_client = self.new_client  # type: ignore[method-assign]
        host.got_data = self.got_data  # type: ignore[method-assign]
        host.lost_client = self.lost_client  # type: ignore[method-assign]
        return host


def tls_host(recorder: Recorder, context: ssl.SSLContext | None, **options: Any) -> Host:
    """A recording host on a free loopback port; TLS with ``context``, plaintext with None."""
    return recorder.install(Host(LOOPBACK, 0, ssl_context=context, **{**OPTIONS, **options}))


async def connect_fails(
    port: int, name: str = "localhost", *, ssl_context: ssl.SSLContext | None, **connect: Any
) -> TLSError:
    """Connect, expect a TLSError within open_timeout, and return it.

    A client that connects after all disconnects at once, so the test fails instead of hanging.
    """
    client = Client(ssl_context=ssl_context, **OPTIONS)
    client.made_connection = client.disconnect  # type: ignore[method-assign]
    started = time.monotonic()
    with anyio.fail_after(WAIT), pytest.raises(TLSError) as info:
        await client.connect(name, port, **connect)
    assert time.monotonic() - started < OPEN_TIMEOUT
    assert not client.connected
    return info.value


def client_context(ca: trustme.CA, *, maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A new client context trusting ``ca`` (never mutate the session-scoped fixture)."""
    context = alvaro.testing.client_context(ca)
    if maximum is not None:
        context.maximum_version = maximum
    return context


def server_context_for(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.num_tickets = 0
    cert.configure_cert(context)
    return context


def host_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "alvaro.host" and record.levelno >= logging.WARNING
    ]


def tls_version_1_1_only(context: ssl.SSLContext) -> ssl.SSLContext:
    """Cap ``context`` at TLS 1.1 (deprecated in :mod:`ssl`, hence the local filter)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


class RawTLS:
    """One end of a TLS connection driven by hand: :class:`ssl.SSLObject` over memory buffers on
    an anyio TCP stream, speaking alvaro frames encoded by hand.

    Decrypted bytes from the other side are decoded as they arrive (``events``). A test can end
    the connection in ways no alvaro peer would: TCP FIN without close_notify, a reset, or never
    answering the other side's close_notify. Reads wait without a limit of their own: callers
    bound their waits with ``anyio.fail_after``.
    """

    def __init__(
        self,
        stream: anyio.abc.SocketStream,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        hostname: str | None = None,
    ) -> None:
        self.stream = stream
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._ssl = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=hostname
        )
        role: Role = "host" if server_side else "client"
        self.decoder = Decoder(role)
        self.role = role
        #: Every alvaro event decoded so far, oldest first.
        self.events: list[Event] = []
        #: Whether the other side closed TLS (close_notify) or TCP (FIN or reset).
        self.close_notify = False
        self.tcp_eof = False
        self._seen = 0
        self.local_port = int(stream.extra(anyio.abc.SocketAttribute.local_port))

    @classmethod
    async def connect(
        cls, port: int, context: ssl.SSLContext, hostname: str = "localhost"
    ) -> RawTLS:
        """Connect to 127.0.0.1:port and complete the TLS handshake (not alvaro's)."""
        stream = await anyio.connect_tcp(LOOPBACK, port)
        peer = cls(stream, context, server_side=False, hostname=hostname)
        try:
            await peer.tls_handshake()
        except BaseException:
            await stream.aclose()
            raise
        return peer

    async def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            await self.stream.send(data)

    async def _fill(self) -> None:
        try:
            data = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            self.tcp_eof = True
            self._incoming.write_eof()
            return
        self._incoming.write(data)

    async def tls_handshake(self) -> None:
        while True:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
            else:
                break
        await self._flush()

    async def send(self, data: bytes) -> None:
        """Encrypt and send ``data``."""
        self._ssl.write(data)
        await self._flush()

    async def read_chunk(self) -> bool:
        """Read and decode the next decrypted bytes; False once the other side closed TLS."""
        while True:
            try:
                data = self._ssl.read(64 * 1024)
            except ssl.SSLWantReadError:
                if self.tcp_eof:
                    return False
                await self._flush()
                await self._fill()
                continue
            except ssl.SSLZeroReturnError:
                self.close_notify = True
                return False
            except ssl.SSLError:  # SSLEOFError: TCP closed without close_notify
                return False
            break
        if not data:  # SSLObject.read() returns b"" once close_notify has arrived
            self.close_notify = True
            return False
        self.decoder.receive_data(data)
        self.events.extend(self.decoder.events())
        return True

    async def expect(self, kind: type[E]) -> E:
        """Return the next not yet returned event of type ``kind``, reading as needed."""
        while True:
            for index in range(self._seen, len(self.events)):
                event = self.events[index]
                if isinstance(event, kind):
                    self._seen = index + 1
                    return event
            if not await self.read_chunk():
                raise AssertionError(f"the peer closed before a {kind.__name__}: {self.events}")

    async def alvaro_handshake(self) -> Hello:
        await self.send(encode_hello(self.role))
        return await self.expect(Hello)

    async def wait_tcp_eof(self) -> None:
        """Read (and drop) whatever comes until the TCP connection is closed."""
        while await self.read_chunk():
            pass
        while not self.tcp_eof:
            await self._fill()

    async def send_close_notify(self) -> None:
        """Send TLS's close_notify without waiting for the answer."""
        try:
            self._ssl.unwrap()
        except ssl.SSLWantReadError:
            pass
        await self._flush()

    async def close_tcp(self) -> None:
        """Close the socket (FIN) without close_notify."""
        await self.stream.aclose()

    async def reset(self) -> None:
        """Close the socket with a TCP reset (SO_LINGER on, timeout 0), without close_notify."""
        reset_on_close(self.stream)
        await self.stream.aclose()


@asynccontextmanager
async def raw_tls_server(
    context: ssl.SSLContext, handler: Callable[[RawTLS], Awaitable[None]]
) -> AsyncIterator[int]:
    """Listen on 127.0.0.1 and run ``handler`` on a server-side :class:`RawTLS` (handshake done)
    for every connection; yields the port. Streams close when their handler returns."""
    listener = await anyio.create_tcp_listener(local_host=LOOPBACK, local_port=0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            peer = RawTLS(stream, context, server_side=True)
            await peer.tls_handshake()
            await handler(peer)

    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, serve)
        try:
            yield port
        finally:
            tasks.cancel_scope.cancel()


@asynccontextmanager
async def silent_tcp_server() -> AsyncIterator[int]:
    """A TCP server on loopback that accepts, reads, and never answers; yields the port."""
    listener = await anyio.create_tcp_listener(local_host=LOOPBACK, local_port=0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))

    async def serve(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                while True:
                    await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass

    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, serve)
        try:
            yield port
        finally:
            tasks.cancel_scope.cancel()


# --- R11: the happy path -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "maximum"),
    [
        pytest.param("localhost", None, id="localhost"),
        pytest.param("127.0.0.1", None, id="ip-address"),
        pytest.param("localhost", ssl.TLSVersion.TLSv1_2, id="tls1.2"),
    ],
)
async def test_r11_happy_path(
    name: str,
    maximum: ssl.TLSVersion | None,
    alvaro_ca: trustme.CA,
    alvaro_server_ssl_context: ssl.SSLContext,
) -> None:
    recorder = Recorder()
    close_timeout = 30 * T
    context = client_context(alvaro_ca, maximum=maximum)
    with anyio.fail_after(WAIT):
        async with tls_host(recorder, alvaro_server_ssl_context, close_timeout=close_timeout) as h:
            async with connect(
                name, h.port, ssl_context=context, open_timeout=OPEN_TIMEOUT
            ) as client:
                conn = client.connection
                assert conn is not None
                port = conn.local_port
                # Both sides report what was negotiated; the client verified the host's
                # certificate (getpeercert() gives it only when verified) for the name dialled.
                assert conn.tls is not None
                assert conn.tls.version in {"TLSv1.2", "TLSv1.3"}
                if maximum is not None:
                    assert conn.tls.version == "TLSv1.2"
                assert conn.tls.cipher
                assert conn.tls.peer_certificate is not None
                assert name in conn.tls.peer_names
                await recorder.wait_for(lambda: port in recorder.new)
                host_tls = recorder.tls[port]
                assert host_tls is not None
                assert host_tls.version == conn.tls.version
                assert host_tls.peer_certificate is None  # no client certificate asked for

                for n in range(1000):
                    client.send_data({"n": n, "pad": "x" * (n % 50)}, {"seq": n})
                echoed = [await client.receive() for _ in range(1000)]
                started = time.monotonic()
            elapsed = time.monotonic() - started

            assert [message.data["n"] for message in echoed] == list(range(1000))
            assert [message.metadata for message in echoed] == [{"seq": n} for n in range(1000)]
            assert [d["n"] for d in recorder.data[port]] == list(range(1000))
            # The closing handshake (alvaro's CLOSE, then TLS close_notify) completed, well
            # under close_timeout: nobody waited for a timeout.
            assert elapsed < close_timeout
            assert conn.close_code == CloseCode.NORMAL
            assert conn.closed_by_peer is False
            assert await recorder.wait_lost(port) == (CloseCode.NORMAL, True, "")


#: Sizes around TLS's 16 KiB record limit, and one near max_message_size (1 MiB).
SIZES = [0, 1, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 100_000, 1_000_000]


def blob(n: int, size: int) -> bytes:
    return bytes([n % 251]) * size


async def test_r11_large_messages_both_ways_at_once(
    alvaro_ca: trustme.CA, alvaro_server_ssl_context: ssl.SSLContext
) -> None:
    # The reader and the writer share one TLS object: streaming megabytes in both directions
    # at once, beyond what socket buffers hold, must neither deadlock nor corrupt a byte.
    rounds = 12
    to_host: list[bytes] = []
    to_client: list[bytes] = []
    host_done, client_done = anyio.Event(), anyio.Event()
    recorder = Recorder()
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:

            async def stream(send: Callable[[bytes], Awaitable[None]]) -> None:
                for n in range(rounds):
                    for size in SIZES:
                        await send(blob(n, size))

            def new_client(conn: Connection) -> None:
                recorder.new_client(conn)
                tasks.start_soon(stream, conn.send)

            def host_got(conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
                to_host.append(data)
                if len(to_host) == rounds * len(SIZES):
                    host_done.set()

            def client_got(data: Any, metadata: dict[str, Any]) -> None:
                to_client.append(data)
                if len(to_client) == rounds * len(SIZES):
                    client_done.set()

            async with tls_host(recorder, alvaro_server_ssl_context) as host:
                host.new_client = new_client  # type: ignore[method-assign]
                host.got_data = host_got  # type: ignore[method-assign]
                client = Client(ssl_context=client_context(alvaro_ca), **OPTIONS)
                client.got_data = client_got  # type: ignore[method-assign]
                await tasks.start(functools.partial(client.connect, "localhost", host.port))
                await stream(client.send)
                await host_done.wait()
                await client_done.wait()
                await client.aclose()
    expected = [blob(n, size) for n in range(rounds) for size in SIZES]
    assert to_host == expected
    assert to_client == expected


# --- R12: every verification failure is fatal, never a plaintext fallback ----------------------


async def test_r12_untrusted_ca(alvaro_server_ssl_context: ssl.SSLContext) -> None:
    recorder = Recorder()
    async with tls_host(recorder, alvaro_server_ssl_context) as host:
        other = trustme.CA()
        error = await connect_fails(host.port, ssl_context=alvaro.testing.client_context(other))
        assert error.kind == TLSError.UNTRUSTED
        assert "trusted CA" in str(error)
    assert recorder.nothing_reached_the_application


@pytest.mark.parametrize("dial", ["localhost", "127.0.0.1"])
async def test_r12_wrong_hostname(
    dial: str, alvaro_ca: trustme.CA, alvaro_server_ssl_context: ssl.SSLContext
) -> None:
    recorder = Recorder()
    async with tls_host(recorder, alvaro_server_ssl_context) as host:
        error = await connect_fails(
            host.port,
            dial,
            ssl_context=client_context(alvaro_ca),
            server_hostname="not-this-host.example",
        )
        assert error.kind == TLSError.HOSTNAME_MISMATCH
        assert "not-this-host.example" in str(error)
    assert recorder.nothing_reached_the_application


async def test_r12_expired_server_certificate(alvaro_ca: trustme.CA) -> None:
    recorder = Recorder()
    expired = alvaro_ca.issue_cert(*alvaro.testing.LOOPBACK_NAMES, not_after=PAST)
    async with tls_host(recorder, server_context_for(expired)) as host:
        error = await connect_fails(host.port, ssl_context=client_context(alvaro_ca))
        assert error.kind == TLSError.EXPIRED
    assert recorder.nothing_reached_the_application


async def test_r12_tls_client_to_a_plaintext_host(alvaro_ca: trustme.CA) -> None:
    recorder = Recorder()
    async with tls_host(recorder, None) as host:
        error = await connect_fails(host.port, ssl_context=client_context(alvaro_ca))
        assert error.kind == TLSError.PLAINTEXT_PEER
        # The plaintext host still serves plaintext clients: nothing was broken for them.
        async with connect(LOOPBACK, host.port, **OPTIONS) as client:
            client.send_data("plain")
            assert (await client.receive()).data == "plain"
    # Only the plaintext client's message reached the application.
    assert len(recorder.new) == 1
    assert list(recorder.data.values()) == [["plain"]]


async def test_r12_plaintext_client_to_a_tls_host(
    alvaro_server_ssl_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alvaro")
    recorder = Recorder()
    async with tls_host(recorder, alvaro_server_ssl_context) as host:
        error = await connect_fails(host.port, LOOPBACK, ssl_context=None)
        assert error.kind == TLSError.TLS_REQUIRED
        assert "use_ssl=True" in str(error)  # tells the user what to do
        # The host told the client why, in a plaintext CLOSE with code TLS_REQUIRED.
        assert isinstance(error.__cause__, alvaro.ConnectionClosed)
        assert error.__cause__.code == CloseCode.TLS_REQUIRED
    assert recorder.nothing_reached_the_application
    # One WARNING line on the host, without a traceback.
    (warning,) = host_warnings(caplog)
    assert warning.levelno == logging.WARNING
    assert warning.exc_info is None
    assert "plaintext" in warning.getMessage()


async def test_r12_plaintext_bytes_get_a_plaintext_close(
    alvaro_server_ssl_context: ssl.SSLContext,
) -> None:
    # What a plaintext alvaro client reads from a TLS host: the preamble, then a CLOSE frame
    # with TLS_REQUIRED, then EOF. Nothing else, and nothing encrypted.
    recorder = Recorder()
    with anyio.fail_after(WAIT):
        async with tls_host(recorder, alvaro_server_ssl_context) as host:
            stream = await anyio.connect_tcp(LOOPBACK, host.port)
            async with stream:
                await stream.send(encode_hello("client"))
                decoder = Decoder("client")
                received = b""
                while True:
                    try:
                        chunk = await stream.receive()
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        break
                    received += chunk
                    decoder.receive_data(chunk)
    events = decoder.events()
    assert received.startswith(PREAMBLE)
    assert len(events) == 1
    assert isinstance(events[0], Close)
    assert events[0].code == CloseCode.TLS_REQUIRED
    assert recorder.nothing_reached_the_application


@pytest.mark.parametrize("client", ["alvaro-capped", "legacy"])
async def test_r12_client_capped_at_tls_1_1(
    client: str, alvaro_ca: trustme.CA, alvaro_server_ssl_context: ssl.SSLContext
) -> None:
    recorder = Recorder()
    context = tls_version_1_1_only(client_context(alvaro_ca))
    if client == "legacy":
        # An old client that really offers TLS 1.0 and 1.1: the host must refuse it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
    async with tls_host(recorder, alvaro_server_ssl_context) as host:
        error = await connect_fails(host.port, ssl_context=context)
        assert error.kind == TLSError.PROTOCOL_VERSION
    assert recorder.nothing_reached_the_application


async def test_r12_missing_ca_file_is_refused_before_connecting(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    async with silent_tcp_server() as port:
        # The error comes before any connection: a silent server would make connect() hang.
        error = await connect_fails(port, use_ssl=True, ssl_cert=str(missing), ssl_context=None)
    assert error.kind == TLSError.CONFIGURATION
    assert str(missing) in str(error)


async def test_r12_ssl_cert_without_use_ssl_is_refused(alvaro_tls_files: TLSFiles) -> None:
    recorder = Recorder()
    async with tls_host(recorder, None) as plaintext_host:
        # A plaintext host would accept a plaintext connection: the client must refuse first.
        error = await connect_fails(
            plaintext_host.port, ssl_cert=str(alvaro_tls_files.ca), ssl_context=None
        )
        assert error.kind == TLSError.CONFIGURATION
        assert "use_ssl" in str(error)
        # The seed spelling is refused the same way.
        error = await connect_fails(
            plaintext_host.port, sslCert=str(alvaro_tls_files.ca), ssl_context=None
        )
        assert error.kind == TLSError.CONFIGURATION
    assert recorder.nothing_reached_the_application


CAUSE_CASES = ["untrusted", "hostname", "expired", "plaintext_peer", "protocol_version"]


def _cause_case(
    case: str, ca: trustme.CA, server: ssl.SSLContext
) -> tuple[ssl.SSLContext | None, ssl.SSLContext, dict[str, Any]]:
    """(host context, client context, connect() options) that fail the way ``case`` says."""
    client = client_context(ca)
    if case == "untrusted":
        return server, alvaro.testing.client_context(trustme.CA()), {}
    if case == "hostname":
        return server, client, {"server_hostname": "not-this-host.example"}
    if case == "expired":
        return server_context_for(ca.issue_cert("localhost", not_after=PAST)), client, {}
    if case == "plaintext_peer":
        return None, client, {}
    assert case == "protocol_version"
    return server, tls_version_1_1_only(client), {}


@pytest.mark.parametrize("case", CAUSE_CASES)
async def test_r12_the_ssl_error_is_kept_as_cause(
    case: str, alvaro_ca: trustme.CA, alvaro_server_ssl_context: ssl.SSLContext
) -> None:
    recorder = Recorder()
    server, client, options = _cause_case(case, alvaro_ca, alvaro_server_ssl_context)
    async with tls_host(recorder, server) as host:
        error = await connect_fails(host.port, ssl_context=client, **options)
    assert isinstance(error.__cause__, ssl.SSLError), repr(error.__cause__)


# --- R13: mutual TLS ---------------------------------------------------------------------------


def mutual_server_context(how: str, ca: trustme.CA, files: TLSFiles) -> ssl.SSLContext:
    """A host context that requires a client certificate from ``ca``, built from files with
    alvaro.tls or directly from the CA with alvaro.testing."""
    if how == "files":
        return alvaro.tls.server_context(files.cert, files.key, client_ca=files.ca)
    return alvaro.testing.server_context(ca, client_ca=ca)


@pytest.mark.parametrize("how", ["files", "testing"])
@pytest.mark.parametrize("version", ["default", "tls1.2"])
@pytest.mark.parametrize("certificate", ["none", "other_ca", "expired"])
async def test_r13_mutual_tls_refuses_clients_without_a_valid_certificate(
    how: str,
    version: str,
    certificate: str,
    alvaro_ca: trustme.CA,
    alvaro_tls_files: TLSFiles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    maximum = ssl.TLSVersion.TLSv1_2 if version == "tls1.2" else None
    context = client_context(alvaro_ca, maximum=maximum)
    if certificate == "other_ca":
        trustme.CA().issue_cert("intruder").configure_cert(context)
    elif certificate == "expired":
        alvaro_ca.issue_cert("alvaro-client", not_after=PAST).configure_cert(context)
    server = mutual_server_context(how, alvaro_ca, alvaro_tls_files)
    async with tls_host(recorder, server) as host:
        error = await connect_fails(host.port, ssl_context=context)
    if version == "tls1.2" and certificate == "none":
        # TLS 1.2 refuses a missing certificate with a bare handshake_failure alert, which
        # cannot be told apart from other refusals; the message names the likely cause.
        assert error.kind == TLSError.HANDSHAKE
        assert "client certificate" in str(error)
    else:
        assert error.kind == TLSError.CERTIFICATE_REQUIRED
    assert recorder.nothing_reached_the_application
    warning = host_warnings(caplog)
    assert len(warning) == 1
    assert warning[0].exc_info is None


async def test_r13_refused_client_certificate_keeps_the_ssl_error_as_cause(
    alvaro_ca: trustme.CA,
) -> None:
    recorder = Recorder()
    server = alvaro.testing.server_context(alvaro_ca, client_ca=alvaro_ca)
    async with tls_host(recorder, server) as host:
        error = await connect_fails(host.port, ssl_context=client_context(alvaro_ca))
    assert error.kind == TLSError.CERTIFICATE_REQUIRED
    assert error.__cause__ is not None
    assert error.__cause__.__cause__ is not error, "a cycle in the chain of causes"
    assert isinstance(error.__cause__, ssl.SSLError), repr(error.__cause__)


@pytest.mark.parametrize("how", ["files", "testing"])
async def test_r13_mutual_tls_valid_certificate(
    how: str, alvaro_ca: trustme.CA, alvaro_tls_files: TLSFiles
) -> None:
    recorder = Recorder()
    seen_in_new_client: list[tuple[str, ...]] = []

    def new_client(conn: Connection) -> None:
        # The client's verified identity is there before the application accepts the client.
        assert conn.tls is not None
        assert conn.tls.peer_certificate is not None
        seen_in_new_client.append(conn.tls.peer_names)
        recorder.new_client(conn)

    if how == "files":
        context = alvaro.tls.client_context(
            alvaro_tls_files.ca,
            certfile=alvaro_tls_files.client_cert,
            keyfile=alvaro_tls_files.client_key,
        )
        name = "alvaro-client"
    else:
        name = "client-7"
        context = alvaro.testing.client_context(alvaro_ca, client_name=name)
    server = mutual_server_context(how, alvaro_ca, alvaro_tls_files)
    with anyio.fail_after(WAIT):
        async with tls_host(recorder, server) as host:
            host.new_client = new_client  # type: ignore[method-assign]
            async with connect("localhost", host.port, ssl_context=context, **OPTIONS) as client:
                for n in range(100):
                    client.send_data(n)
                echoed = [(await client.receive()).data for _ in range(100)]
    assert echoed == list(range(100))
    assert len(seen_in_new_client) == 1
    assert name in seen_in_new_client[0]
    assert list(recorder.data.values()) == [list(range(100))]


@pytest.mark.parametrize("with_certificate", [False, True])
async def test_r13_optional_client_certificate(
    with_certificate: bool, alvaro_ca: trustme.CA, alvaro_tls_files: TLSFiles
) -> None:
    recorder = Recorder()
    server = alvaro.tls.server_context(
        alvaro_tls_files.cert,
        alvaro_tls_files.key,
        client_ca=alvaro_tls_files.ca,
        require_client_cert=False,
    )
    if with_certificate:
        context = alvaro.testing.client_context(alvaro_ca, client_name="optional-client")
    else:
        context = client_context(alvaro_ca)
    with anyio.fail_after(WAIT):
        async with (
            tls_host(recorder, server) as host,
            connect("localhost", host.port, ssl_context=context, **OPTIONS) as client,
        ):
            client.send_data("hi")
            assert (await client.receive()).data == "hi"
    (info,) = recorder.tls.values()
    assert info is not None
    if with_certificate:
        assert info.peer_certificate is not None
        assert "optional-client" in info.peer_names
    else:
        assert info.peer_certificate is None
        assert info.peer_names == ()


async def test_r13_optional_mode_still_refuses_a_certificate_from_another_ca(
    alvaro_ca: trustme.CA, alvaro_tls_files: TLSFiles
) -> None:
    recorder = Recorder()
    server = alvaro.tls.server_context(
        alvaro_tls_files.cert,
        alvaro_tls_files.key,
        client_ca=alvaro_tls_files.ca,
        require_client_cert=False,
    )
    context = client_context(alvaro_ca)
    trustme.CA().issue_cert("intruder").configure_cert(context)
    async with tls_host(recorder, server) as host:
        error = await connect_fails(host.port, ssl_context=context)
    assert error.kind == TLSError.CERTIFICATE_REQUIRED
    assert recorder.nothing_reached_the_application


# --- R14: TLS close edge cases -----------------------------------------------------------------


async def raw_tls_client(port: int, ca: trustme.CA, recorder: Recorder) -> RawTLS:
    """A raw TLS client that completed both handshakes, once the host has called new_client."""
    peer = await RawTLS.connect(port, client_context(ca))
    hello = await peer.alvaro_handshake()
    assert hello.role == "host"
    await recorder.wait_for(lambda: peer.local_port in recorder.new)
    return peer


MESSAGES = [{"n": 1}, "two", [3, 3, 3]]


@pytest.mark.parametrize("ending", ["reset_mid_frame", "fin_at_boundary", "close_notify_only"])
async def test_r14_connection_ends_without_close_frame(
    ending: str, alvaro_ca: trustme.CA, alvaro_server_ssl_context: ssl.SSLContext
) -> None:
    recorder = Recorder()
    with anyio.fail_after(WAIT):
        async with tls_host(recorder, alvaro_server_ssl_context) as host:
            peer = await raw_tls_client(host.port, alvaro_ca, recorder)
            port = peer.local_port
            await peer.send(b"".join(encode_message(m) for m in MESSAGES))
            await recorder.wait_for(lambda: len(recorder.data.get(port, [])) == len(MESSAGES))
            if ending == "reset_mid_frame":
                fourth = encode_message({"n": 4, "pad": "x" * 100})
                await peer.send(fourth[: len(fourth) // 2])
                await peer.reset()
            elif ending == "fin_at_boundary":
                await peer.close_tcp()
            else:
                # TLS closed cleanly, but alvaro's CLOSE never came: still not a graceful close.
                await peer.send_close_notify()
                await peer.close_tcp()
            code, by_peer, reason = await recorder.wait_lost(port)
            assert code == CloseCode.ABNORMAL
            assert by_peer is True
            assert reason
            # Everything before the fault was delivered, and no part of the broken frame.
            assert recorder.data[port] == MESSAGES
            assert host.clients == []
            # The host keeps serving.
            async with connect(
                "localhost", host.port, ssl_context=client_context(alvaro_ca), **OPTIONS
            ) as client:
                client.send_data("still here")
                assert (await client.receive()).data == "still here"


async def test_r14_host_closes_a_peer_that_never_answers_close_notify(
    alvaro_ca: trustme.CA, alvaro_server_ssl_context: ssl.SSLContext
) -> None:
    recorder = Recorder()
    with anyio.fail_after(WAIT):
        async with tls_host(recorder, alvaro_server_ssl_context) as host:
            peer = await raw_tls_client(host.port, alvaro_ca, recorder)
            async with peer.stream:
                (conn,) = host.clients
                async with anyio.create_task_group() as tasks:

                    async def answer_close_only() -> None:
                        # Answers alvaro's CLOSE, then neither answers close_notify nor closes.
                        close = await peer.expect(Close)
                        await peer.send(encode_close(close.code))

                    tasks.start_soon(answer_close_only)
                    started = time.monotonic()
                    await conn.aclose()
                    elapsed = time.monotonic() - started
                assert elapsed < CLOSE_TIMEOUT + MARGIN
                # The host closed the socket: the peer reads close_notify, then TCP EOF.
                await peer.wait_tcp_eof()
                assert peer.close_notify
            code, by_peer, _ = await recorder.wait_lost(peer.local_port)
            assert (code, by_peer) == (CloseCode.NORMAL, False)


async def test_r14_host_stops_while_a_peer_answers_nothing(
    alvaro_ca: trustme.CA, alvaro_server_ssl_context: ssl.SSLContext
) -> None:
    recorder = Recorder()
    with anyio.fail_after(WAIT):
        host = tls_host(recorder, alvaro_server_ssl_context)
        async with anyio.create_task_group() as tasks:
            await tasks.start(host.start)
            peer = await raw_tls_client(host.port, alvaro_ca, recorder)
            async with peer.stream:
                started = time.monotonic()
                await host.aclose()
                elapsed = time.monotonic() - started
                # Neither the GOING_AWAY close nor close_notify is answered: the host gives up
                # on them (after close_timeout at most for each) and closes the socket.
                assert elapsed < 2 * CLOSE_TIMEOUT + MARGIN
                await peer.wait_tcp_eof()
    # The peer got the host's GOING_AWAY before the socket closed.
    assert [e.code for e in peer.events if isinstance(e, Close)] == [CloseCode.GOING_AWAY]
    code, by_peer, _ = recorder.lost[peer.local_port]
    assert code == CloseCode.GOING_AWAY
    assert by_peer is False


async def test_r14_client_closes_a_host_that_never_answers_close_notify(
    alvaro_ca: trustme.CA, alvaro_server_ssl_context: ssl.SSLContext
) -> None:
    answered = anyio.Event()
    socket_closed = anyio.Event()
    close_notify: list[bool] = []

    async def handler(peer: RawTLS) -> None:
        await peer.alvaro_handshake()
        close = await peer.expect(Close)
        await peer.send(encode_close(close.code))
        answered.set()
        await peer.wait_tcp_eof()  # reads the client's close_notify, never answers it
        close_notify.append(peer.close_notify)
        socket_closed.set()

    with anyio.fail_after(WAIT):
        async with raw_tls_server(alvaro_server_ssl_context, handler) as port:
            client = Client(ssl_context=client_context(alvaro_ca), **OPTIONS)
            async with anyio.create_task_group() as tasks:
                await tasks.start(functools.partial(client.connect, "localhost", port))
                started = time.monotonic()
                await client.aclose()
                elapsed = time.monotonic() - started
            # The client closed its socket (after sending close_notify).
            await socket_closed.wait()
    assert answered.is_set()
    assert close_notify == [True]
    assert elapsed < CLOSE_TIMEOUT + MARGIN
    conn = client.connection
    assert conn is not None
    assert (conn.close_code, conn.closed_by_peer) == (CloseCode.NORMAL, False)


@pytest.mark.parametrize("vanish", ["fin", "reset"])
async def test_r14_peer_sends_close_then_vanishes(
    vanish: str, alvaro_ca: trustme.CA, alvaro_server_ssl_context: ssl.SSLContext
) -> None:
    recorder = Recorder()
    with anyio.fail_after(WAIT):
        async with tls_host(recorder, alvaro_server_ssl_context) as host:
            peer = await raw_tls_client(host.port, alvaro_ca, recorder)
            port = peer.local_port
            await peer.send(
                b"".join(encode_message(m) for m in MESSAGES)
                + encode_close(CloseCode.NORMAL, "bye")
            )
            if vanish == "reset":
                # The CLOSE travels in the same TLS record as the messages: once they are
                # delivered the host has read it. Then reset instead of answering.
                await recorder.wait_for(lambda: len(recorder.data.get(port, [])) == 3)
                await peer.reset()
            else:
                await peer.close_tcp()
            assert await recorder.wait_lost(port) == (CloseCode.NORMAL, True, "bye")
            assert recorder.data[port] == MESSAGES


# --- Handshakes that never start or never finish ------------------------------------------------


async def test_tls_handshake_that_never_starts_is_dropped_after_open_timeout(
    alvaro_server_ssl_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    open_timeout = 5 * T
    with anyio.fail_after(WAIT):
        async with tls_host(recorder, alvaro_server_ssl_context, open_timeout=open_timeout) as h:
            stream = await anyio.connect_tcp(LOOPBACK, h.port)
            async with stream:
                started = time.monotonic()
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await stream.receive()  # sends nothing; the host must hang up
                elapsed = time.monotonic() - started
    assert elapsed < open_timeout + MARGIN
    assert recorder.nothing_reached_the_application
    (warning,) = host_warnings(caplog)
    assert "timed out" in warning.getMessage()
    assert warning.exc_info is None


async def test_client_times_out_when_the_host_never_answers_the_tls_handshake(
    alvaro_ca: trustme.CA,
) -> None:
    open_timeout = 5 * T
    async with silent_tcp_server() as port:
        client = Client(ssl_context=client_context(alvaro_ca), open_timeout=open_timeout)
        started = time.monotonic()
        with anyio.fail_after(WAIT), pytest.raises(TimeoutError) as info:
            await client.connect("localhost", port)
        elapsed = time.monotonic() - started
    assert not isinstance(info.value, alvaro.ConnectError)
    assert "TLS handshake" in str(info.value)
    assert elapsed < open_timeout + MARGIN
    assert not client.connected


async def test_host_drops_a_tls_handshake_trickled_byte_by_byte_at_open_timeout(
    alvaro_server_ssl_context: ssl.SSLContext,
) -> None:
    # open_timeout bounds the whole handshake, not each read: a peer that sends one byte of its
    # ClientHello at a time cannot hold the connection open for longer.
    recorder = Recorder()
    open_timeout = 5 * T
    hello = client_hello()
    with anyio.fail_after(WAIT):
        async with tls_host(recorder, alvaro_server_ssl_context, open_timeout=open_timeout) as h:
            stream = await anyio.connect_tcp(LOOPBACK, h.port)
            started = time.monotonic()
            async with stream:
                hung_up = False
                for byte in hello:  # bounded: far more bytes than open_timeout lets through
                    try:
                        await stream.send(bytes([byte]))
                    except (anyio.BrokenResourceError, OSError):
                        hung_up = True
                        break
                    with anyio.move_on_after(T / 2):
                        try:
                            await stream.receive()
                        except (anyio.EndOfStream, anyio.BrokenResourceError):
                            hung_up = True
                            break
                elapsed = time.monotonic() - started
    assert hung_up, "the host waited for the whole ClientHello"
    assert elapsed < open_timeout + MARGIN
    assert recorder.nothing_reached_the_application


def client_hello() -> bytes:
    """The first flight of a TLS client: a ClientHello, as bytes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    obj = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


async def test_host_drops_a_client_that_completes_tls_but_sends_no_hello(
    alvaro_ca: trustme.CA, alvaro_server_ssl_context: ssl.SSLContext
) -> None:
    # One clock covers the TLS and the alvaro handshakes together.
    recorder = Recorder()
    open_timeout = 2 * T
    with anyio.fail_after(WAIT):
        async with tls_host(recorder, alvaro_server_ssl_context, open_timeout=open_timeout) as h:
            started = time.monotonic()
            peer = await RawTLS.connect(h.port, client_context(alvaro_ca))
            async with peer.stream:
                await peer.wait_tcp_eof()
            elapsed = time.monotonic() - started
    # The peer never answers close_notify either, so the host may wait close_timeout for it.
    assert elapsed < open_timeout + CLOSE_TIMEOUT + MARGIN
    assert recorder.nothing_reached_the_application
    # The host said why before hanging up: its HELLO, then a CLOSE with TIMEOUT.
    assert [type(event) for event in peer.events] == [Hello, Close]
    last = peer.events[-1]
    assert isinstance(last, Close)
    assert last.code == CloseCode.TIMEOUT


#: For the alvaro handshake's timeout: a long close_timeout must not stretch it.
SHORT_OPEN, LONG_CLOSE = 2 * T, 10 * T


async def test_client_times_out_within_open_timeout_when_the_host_sends_no_hello(
    alvaro_ca: trustme.CA, alvaro_server_ssl_context: ssl.SSLContext
) -> None:
    # The host completes TLS, then never sends its HELLO nor answers close_notify.
    async def mute(peer: RawTLS) -> None:
        await peer.wait_tcp_eof()

    with anyio.fail_after(WAIT):
        async with raw_tls_server(alvaro_server_ssl_context, mute) as port:
            client = Client(
                ssl_context=client_context(alvaro_ca),
                open_timeout=SHORT_OPEN,
                close_timeout=LONG_CLOSE,
            )
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await client.connect("localhost", port)
            elapsed = time.monotonic() - started
    assert not client.connected
    assert elapsed < SHORT_OPEN + 6 * T


async def test_host_drops_a_silent_tls_client_within_open_timeout(
    alvaro_ca: trustme.CA, alvaro_server_ssl_context: ssl.SSLContext
) -> None:
    recorder = Recorder()
    host = tls_host(
        recorder, alvaro_server_ssl_context, open_timeout=SHORT_OPEN, close_timeout=LONG_CLOSE
    )
    with anyio.fail_after(WAIT):
        async with host:
            started = time.monotonic()
            peer = await RawTLS.connect(host.port, client_context(alvaro_ca))
            async with peer.stream:
                await peer.wait_tcp_eof()
            elapsed = time.monotonic() - started
    assert recorder.nothing_reached_the_application
    assert elapsed < SHORT_OPEN + 6 * T


async def test_host_that_hangs_up_during_the_tls_handshake(alvaro_ca: trustme.CA) -> None:
    async def hang_up(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()  # the ClientHello, then close without answering

    listener = await anyio.create_tcp_listener(local_host=LOOPBACK, local_port=0)
    port = int(listener.extra(anyio.abc.SocketAttribute.local_port))
    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, hang_up)
        error = await connect_fails(port, ssl_context=client_context(alvaro_ca))
        tasks.cancel_scope.cancel()
    assert error.kind == TLSError.HANDSHAKE


async def test_host_stops_promptly_during_pending_tls_handshakes(
    alvaro_server_ssl_context: ssl.SSLContext,
) -> None:
    recorder = Recorder()
    host = tls_host(recorder, alvaro_server_ssl_context, open_timeout=WAIT)
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:
            await tasks.start(host.start)
            streams = [await anyio.connect_tcp(LOOPBACK, host.port) for _ in range(3)]
            # A half-done handshake too: the ClientHello, never the rest.
            await streams[0].send(client_hello())
            await anyio.sleep(T)  # let the host accept them
            started = time.monotonic()
            await host.aclose()
            elapsed = time.monotonic() - started
            for stream in streams:
                async with stream:
                    try:
                        while await stream.receive():
                            pass
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        pass
    assert elapsed < CLOSE_TIMEOUT + MARGIN
    assert recorder.nothing_reached_the_application


@pytest.mark.parametrize("side", ["host", "client"])
async def test_corrupted_tls_record_is_abnormal(
    side: str, alvaro_ca: trustme.CA, alvaro_server_ssl_context: ssl.SSLContext
) -> None:
    # Bytes injected into the TCP stream after the handshake fail TLS's integrity check: the
    # connection is lost (ABNORMAL), never delivered as data, and nothing crashes.
    junk = bytes([0x17, 0x03, 0x03, 0x00, 0x20]) + b"\x55" * 32  # an application-data record
    with anyio.fail_after(WAIT):
        if side == "host":
            recorder = Recorder()
            async with tls_host(recorder, alvaro_server_ssl_context) as host:
                peer = await raw_tls_client(host.port, alvaro_ca, recorder)
                async with peer.stream:
                    await peer.send(encode_message("before"))
                    await recorder.wait_for(lambda: peer.local_port in recorder.data)
                    await peer.stream.send(junk)
                    code, by_peer, reason = await recorder.wait_lost(peer.local_port)
                    await peer.wait_tcp_eof()
                assert recorder.data[peer.local_port] == ["before"]
                assert host.running
        else:

            async def corrupt(peer: RawTLS) -> None:
                await peer.alvaro_handshake()
                await peer.send(encode_message("before"))
                await peer.stream.send(junk)
                await peer.wait_tcp_eof()

            lost = anyio.Event()
            async with raw_tls_server(alvaro_server_ssl_context, corrupt) as port:
                client = Client(ssl_context=client_context(alvaro_ca), **OPTIONS)
                client.lost_connection = lost.set  # type: ignore[method-assign]
                async with anyio.create_task_group() as tasks:
                    await tasks.start(functools.partial(client.connect, "localhost", port))
                    assert (await client.receive()).data == "before"
                    await lost.wait()
                conn = client.connection
                assert conn is not None
                code, by_peer, reason = conn.close_code, conn.closed_by_peer, conn.close_reason
    assert code == CloseCode.ABNORMAL
    assert by_peer is True
    assert "TLS" in reason


# --- Rate-limited logging of failed handshakes ---------------------------------------------------


async def test_failed_handshakes_are_logged_rate_limited(
    alvaro_ca: trustme.CA,
    alvaro_server_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="alvaro")
    recorder = Recorder()
    garbage = [b"GET / HTTP/1.1\r\n\r\n", encode_hello("client"), b"\x00" * 64, b"\xff garbage"]
    with anyio.fail_after(WAIT):
        async with tls_host(recorder, alvaro_server_ssl_context) as host:

            async def bad_client(n: int) -> None:
                async with await anyio.connect_tcp(LOOPBACK, host.port) as stream:
                    await stream.send(garbage[n % len(garbage)])
                    # The host hangs up on each of them.
                    try:
                        while await stream.receive():
                            pass
                    except (anyio.EndOfStream, anyio.BrokenResourceError):
                        pass

            async with anyio.create_task_group() as tasks:
                for n in range(50):
                    tasks.start_soon(bad_client, n)

            # The host still serves a valid TLS client.
            async with connect(
                "localhost", host.port, ssl_context=client_context(alvaro_ca), **OPTIONS
            ) as client:
                client.send_data("valid")
                assert (await client.receive()).data == "valid"
            assert host.running
    warnings_logged = host_warnings(caplog)
    # LogThrottle lets 5 through per minute; the 50 failures must not produce 50 lines.
    assert 1 <= len(warnings_logged) <= 6, [r.getMessage() for r in warnings_logged]
    assert all(record.exc_info is None for record in warnings_logged)
    assert all("TLS handshake" in record.getMessage() for record in warnings_logged)
    assert len(recorder.new) == 1  # only the valid client


async def test_suppressed_handshake_failures_are_counted_in_the_next_warning(
    alvaro_server_ssl_context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A fake clock for the host's log throttle only: a minute passes without waiting for it.
    now = [1000.0]
    monkeypatch.setattr(_throttle, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    recorder = Recorder()

    async def plaintext_client(port: int) -> None:
        async with await anyio.connect_tcp(LOOPBACK, port) as stream:
            await stream.send(b"GET / HTTP/1.1\r\n\r\n")
            try:
                while await stream.receive():  # until the host hangs up (it logs first)
                    pass
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass

    with anyio.fail_after(WAIT):
        async with tls_host(recorder, alvaro_server_ssl_context) as host:
            for _ in range(7):
                await plaintext_client(host.port)
            assert len(host_warnings(caplog)) == 5
            now[0] += 60
            await plaintext_client(host.port)
    messages = [record.getMessage() for record in host_warnings(caplog)]
    assert len(messages) == 6
    assert not any("more not logged" in message for message in messages[:5])
    assert "(2 more not logged)" in messages[5]


async def test_r11_over_ipv6(
    alvaro_ca: trustme.CA, alvaro_server_ssl_context: ssl.SSLContext
) -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback on this machine")
    recorder = Recorder()
    with anyio.fail_after(WAIT):
        async with (
            recorder.install(Host("::1", 0, ssl_context=alvaro_server_ssl_context, **OPTIONS)) as h,
            connect("::1", h.port, ssl_context=client_context(alvaro_ca), **OPTIONS) as client,
        ):
            conn = client.connection
            assert conn is not None
            assert conn.tls is not None
            assert "::1" in conn.tls.peer_names  # the certificate's IPv6 address was verified
            client.send_data("v6")
            assert (await client.receive()).data == "v6"
    assert list(recorder.data.values()) == [["v6"]]


# --- The original library's style ----------------------------------------------------------------


async def test_seed_style_use_ssl_with_certificate_files(alvaro_tls_files: TLSFiles) -> None:
    files = alvaro_tls_files
    recorder = Recorder()
    host = recorder.install(Host(LOOPBACK, 0, **OPTIONS))
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:
            await tasks.start(
                functools.partial(
                    host.start, useSSL=True, sslCert=str(files.cert), sslKey=str(files.key)
                )
            )
            client = Client(**OPTIONS)
            await tasks.start(
                functools.partial(
                    client.connect, "localhost", host.port, useSSL=True, sslCert=str(files.ca)
                )
            )
            conn = client.connection
            assert conn is not None
            assert conn.tls is not None
            assert conn.tls.version in {"TLSv1.2", "TLSv1.3"}
            client.send_data("seed", {"style": "camelCase"})
            message = await client.receive()
            assert message == Message("seed", {"style": "camelCase"})
            await client.aclose()
            await host.aclose()
            assert conn.close_code == CloseCode.NORMAL
    assert list(recorder.data.values()) == [["seed"]]


async def test_seed_style_plaintext_client_is_refused(alvaro_tls_files: TLSFiles) -> None:
    files = alvaro_tls_files
    recorder = Recorder()
    host = recorder.install(Host(LOOPBACK, 0, **OPTIONS))
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:
            await tasks.start(
                functools.partial(
                    host.start, useSSL=True, sslCert=str(files.cert), sslKey=str(files.key)
                )
            )
            error = await connect_fails(host.port, ssl_context=None)
            assert error.kind == TLSError.TLS_REQUIRED
            await host.aclose()
    assert recorder.nothing_reached_the_application


async def test_host_use_ssl_without_a_certificate_is_a_configuration_error() -> None:
    host = Host(LOOPBACK, 0, **OPTIONS)
    with anyio.fail_after(WAIT), pytest.raises(TLSError) as info:
        await host.start(use_ssl=True)
    assert info.value.kind == TLSError.CONFIGURATION
    assert "ssl_cert" in str(info.value)
    assert not host.running


async def test_host_use_ssl_with_a_missing_key_file_is_a_configuration_error(
    alvaro_tls_files: TLSFiles, tmp_path: Any
) -> None:
    missing = tmp_path / "missing.key"
    host = Host(LOOPBACK, 0, **OPTIONS)
    with anyio.fail_after(WAIT), pytest.raises(TLSError) as info:
        await host.start(use_ssl=True, ssl_cert=str(alvaro_tls_files.cert), ssl_key=str(missing))
    assert info.value.kind == TLSError.CONFIGURATION
    assert str(missing) in str(info.value)
    assert not host.running


async def test_ssl_context_and_use_ssl_together_are_refused(
    alvaro_tls_files: TLSFiles,
    alvaro_server_ssl_context: ssl.SSLContext,
    alvaro_client_ssl_context: ssl.SSLContext,
) -> None:
    # Two TLS configurations at once is a mistake: refused, not one silently preferred.
    files = alvaro_tls_files
    host = Host(LOOPBACK, 0, ssl_context=alvaro_server_ssl_context, **OPTIONS)
    with anyio.fail_after(WAIT), pytest.raises(TLSError) as info:
        await host.start(use_ssl=True, ssl_cert=str(files.cert), ssl_key=str(files.key))
    assert info.value.kind == TLSError.CONFIGURATION
    assert not host.running
    async with silent_tcp_server() as port:
        error = await connect_fails(
            port, ssl_context=alvaro_client_ssl_context, use_ssl=True, ssl_cert=str(files.ca)
        )
    assert error.kind == TLSError.CONFIGURATION
