"""TLS over any alvaro transport, with :class:`ssl.SSLObject` and memory buffers.

One implementation serves both backends: on asyncio it runs over alvaro's native transport, on
trio over anyio's socket stream. anyio's ``TLSStream`` does the same job; alvaro drives the
``SSLObject`` itself because it needs what that stream does not give:

* a failed handshake still sends OpenSSL's alert, so the peer learns why (a client whose
  certificate was refused reads "certificate required", not a bare disconnect);
* the close is bounded in time (``TLSStream.aclose()`` waits for the peer's close_notify without
  a limit) and the reader and writer tasks may share the connection;
* :mod:`ssl` errors become :class:`~alvaro.TLSError` with a ``kind`` a program can test, or
  :class:`~alvaro.ConnectionClosedError` once the connection is up;
* a host recognises a plaintext alvaro client and tells it, in plaintext, that TLS is required,
  instead of leaving it with an unexplained disconnect.
"""

from __future__ import annotations

import math
import ssl
from typing import TYPE_CHECKING

import anyio

from ..._close_codes import CloseCode
from ...exceptions import ConnectionClosed, ConnectionClosedError, TLSError
from ...protocol.encoders import encode_refusal
from ...protocol.frames import may_be_preamble
from ...tls import TLSInfo

if TYPE_CHECKING:
    from .base import Transport

__all__ = ("TLSTransport", "check_context", "classify_ssl_error", "start_tls")

# One record carries at most 16 KiB of plaintext; ssl allocates the full request on each read.
_READ_SIZE = 64 * 1024

_TLS_HANDSHAKE_RECORD = 0x16
_TLS_ALERT_RECORD = 0x15

# OpenSSL reasons that mean the peer answered in something other than TLS.
_NOT_TLS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "PACKET_LENGTH_TOO_LONG",
        "HTTP_REQUEST",
        "HTTPS_PROXY_REQUEST",
        "UNKNOWN_PROTOCOL",
        "RECORD_LENGTH_MISMATCH",
    }
)
_VERSION = frozenset(
    {
        "UNSUPPORTED_PROTOCOL",
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "NO_PROTOCOLS_AVAILABLE",
        "VERSION_TOO_LOW",
        "WRONG_SSL_VERSION",
    }
)
# Alerts a peer sends when it refuses this side's certificate, or a missing one.
_CERTIFICATE_REFUSED = frozenset(
    {
        "TLSV13_ALERT_CERTIFICATE_REQUIRED",
        "SSLV3_ALERT_BAD_CERTIFICATE",
        "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
        "SSLV3_ALERT_CERTIFICATE_EXPIRED",
        "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
        "TLSV1_ALERT_UNKNOWN_CA",
        "PEER_DID_NOT_RETURN_A_CERTIFICATE",
    }
)
_EXPIRED_CODES = frozenset({9, 10})  # X509_V_ERR_CERT_NOT_YET_VALID, X509_V_ERR_CERT_HAS_EXPIRED
_NAME_CODES = frozenset({62, 64})  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


def check_context(context: object, *, server_side: bool) -> ssl.SSLContext | None:
    """Check an ``ssl_context=`` argument: ``None`` or a context made for this side.

    Raises:
        TypeError: not an :class:`ssl.SSLContext`.
        TLSError: a context made for the other side (kind CONFIGURATION).
    """
    if context is None:
        return None
    if not isinstance(context, ssl.SSLContext):
        raise TypeError(f"ssl_context must be an ssl.SSLContext, not {context!r}")
    wrong, role, helper = (
        (ssl.PROTOCOL_TLS_CLIENT, "a client context and cannot serve", "server_context")
        if server_side
        else (ssl.PROTOCOL_TLS_SERVER, "a server context and cannot connect", "client_context")
    )
    if context.protocol == wrong:
        raise TLSError(
            f"ssl_context is {role}; build it with alvaro.tls.{helper}()", TLSError.CONFIGURATION
        )
    return context


def classify_ssl_error(
    exc: BaseException, *, server_side: bool, peer: str, hostname: str | None = None
) -> TLSError:
    """Turn an error from a TLS handshake into a :class:`TLSError` that says what went wrong.

    ``hostname`` is the name the client checks the server's certificate against.
    """
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or str(exc)
        whose = "client" if server_side else "server"
        if exc.verify_code in _EXPIRED_CODES:
            kind, text = TLSError.EXPIRED, f"the {whose}'s certificate is not valid now"
        elif exc.verify_code in _NAME_CODES:
            kind, text = (
                TLSError.HOSTNAME_MISMATCH,
                f"the server's certificate is not for the name {hostname!r}; connect with the name "
                "the certificate was issued for, or pass server_hostname=",
            )
        elif server_side:
            kind, text = (
                TLSError.UNTRUSTED,
                "the client's certificate is not issued by a CA the host trusts "
                "(alvaro.tls.server_context(client_ca=...))",
            )
        else:
            kind, text = (
                TLSError.UNTRUSTED,
                "the server's certificate is not issued by a trusted CA; give its CA "
                "(alvaro.tls.client_context(cafile=...) or sslCert=)",
            )
        return _chained(TLSError(f"TLS with {peer} failed: {text} ({detail})", kind), exc)
    reason = getattr(exc, "reason", None) or ""
    if isinstance(exc, ssl.SSLError) and reason in _NOT_TLS:
        if server_side:
            kind, text = TLSError.TLS_REQUIRED, "the client is not speaking TLS"
        else:
            kind, text = (
                TLSError.PLAINTEXT_PEER,
                "the server did not answer in TLS; is it a plaintext host?",
            )
    elif isinstance(exc, ssl.SSLError) and reason in _VERSION:
        kind, text = TLSError.PROTOCOL_VERSION, "no TLS version both sides accept (TLS 1.2+)"
    elif isinstance(exc, ssl.SSLError) and reason in _CERTIFICATE_REFUSED:
        if server_side and reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            kind, text = (
                TLSError.CERTIFICATE_REQUIRED,
                "the client presented no certificate, and the host requires one",
            )
        elif server_side:  # an alert from the client
            kind, text = TLSError.UNTRUSTED, "the client refused this host's certificate"
        else:
            kind, text = (
                TLSError.CERTIFICATE_REQUIRED,
                "the server refused this client's certificate, or requires one "
                "(alvaro.tls.client_context(certfile=...))",
            )
    elif (
        isinstance(exc, ssl.SSLError)
        and reason == "SSLV3_ALERT_HANDSHAKE_FAILURE"
        and not server_side
    ):
        kind, text = (
            TLSError.HANDSHAKE,
            "the server refused the handshake (under TLS 1.2 this is also how a host that "
            "requires a client certificate refuses a client without one)",
        )
    elif isinstance(exc, ssl.SSLError):
        kind, text = TLSError.HANDSHAKE, "the TLS handshake failed"
    else:
        kind, text = TLSError.HANDSHAKE, "the peer closed the connection during the TLS handshake"
    detail = getattr(exc, "verify_message", None) or str(exc) or type(exc).__name__
    return _chained(TLSError(f"TLS with {peer} failed: {text} ({detail})", kind), exc)


def _chained(error: TLSError, cause: BaseException) -> TLSError:
    error.__cause__ = cause
    return error


class TLSTransport:
    """An encrypted connection, with the interface of the plain transports.

    The TLS state machine is :class:`ssl.SSLObject` over two :class:`ssl.MemoryBIO` buffers: what
    the socket delivers is written into one, what :mod:`ssl` produces is read from the other and
    sent. The reader task and the writer task share the object; one sends at a time, so that TLS
    records leave in the order :mod:`ssl` produced them.

    Attributes:
        peer_addr, peer_port, local_host, local_port: the TCP addresses.
        tls: what was negotiated, and the peer's certificate.
    """

    __slots__ = (
        "_decrypted",
        "_incoming",
        "_inner",
        "_outgoing",
        "_send_done",
        "_sending",
        "_ssl",
        "local_host",
        "local_port",
        "peer_addr",
        "peer_port",
        "tls",
    )

    def __init__(
        self,
        inner: Transport,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        hostname: str | None,
        first: bytes = b"",
    ) -> None:
        self._inner = inner
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        if first:
            self._incoming.write(first)
        self._ssl = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=hostname
        )
        self._sending = False  # a task is in _flush's send; others wait for _send_done
        self._send_done: anyio.Event | None = None  # made on first contention only
        self._decrypted = False  # whether application data has arrived yet
        self.peer_addr: str = inner.peer_addr
        self.peer_port: int = inner.peer_port
        self.local_host: str = inner.local_host
        self.local_port: int = inner.local_port
        self.tls: TLSInfo | None = None

    async def _handshake(self) -> None:
        """Raises: ssl.SSLError (the alert for the peer is sent first), ConnectionClosed."""
        while True:
            try:
                self._ssl.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
            except ssl.SSLError:
                # Tell the peer why (the alert OpenSSL wrote), so that its user reads a reason.
                with anyio.move_on_after(1):
                    try:
                        await self._flush()
                    except ConnectionClosed:
                        pass
                raise
            else:
                break
        await self._flush()
        cipher = self._ssl.cipher()
        # getpeercert() is {} when the peer sent no certificate (optional mutual TLS).
        self.tls = TLSInfo(
            version=self._ssl.version() or "",
            cipher=cipher[0] if cipher else "",
            peer_certificate=self._ssl.getpeercert() or None,
        )

    async def _flush(self) -> None:
        """Send what :mod:`ssl` has produced, in order.

        The reader and the writer task may both flush; one sends at a time, so records leave in
        the order they were produced (and trio never sees two concurrent sends).
        """
        while self._outgoing.pending:
            if self._sending:
                if self._send_done is None:
                    self._send_done = anyio.Event()
                await self._send_done.wait()
                continue
            self._sending = True
            try:
                await self._inner.send(self._outgoing.read())
            finally:
                self._sending = False
                done, self._send_done = self._send_done, None
                if done is not None:
                    done.set()

    async def _fill(self) -> None:
        """Give :mod:`ssl` the next bytes from the socket (or the end of the stream)."""
        data = await self._inner.receive()
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()

    async def receive(self) -> bytes:
        """Return the next decrypted bytes, or ``b""`` once the peer has closed its side.

        Raises:
            ConnectionClosedError: the connection broke, or a TLS error arrived (the
                :class:`TLSError` is its ``__cause__``).
        """
        while True:
            try:
                data = self._ssl.read(_READ_SIZE)
            except ssl.SSLWantReadError:
                # TLS 1.3 may have something to answer (a key update) before reading on.
                await self._flush()
                await self._fill()
                continue
            except ssl.SSLEOFError as exc:
                raise ConnectionClosedError(
                    CloseCode.ABNORMAL,
                    "connection lost while receiving: the peer closed the TCP connection "
                    "without closing TLS",
                    by_peer=True,
                ) from exc
            except ssl.SSLError as exc:
                if self._decrypted:
                    # Records have been decrypted before: the link is set up right, and a
                    # record that fails now was damaged or forged on the way (or the peer
                    # says so of ours, with an alert).
                    raise ConnectionClosedError(
                        CloseCode.ABNORMAL,
                        "TLS error: a record from the peer could not be authenticated; it was "
                        f"corrupted or tampered with on the way ({exc.reason or exc})",
                        by_peer=True,
                    ) from exc
                # Before any data, this is how TLS 1.3 tells a client that its certificate was
                # refused: the handshake has completed on the client's side; the alert comes at
                # the first read.
                error = classify_ssl_error(
                    exc, server_side=self._ssl.server_side, peer=self._peer()
                )
                raise ConnectionClosedError(
                    CloseCode.ABNORMAL, f"TLS error: {error}", by_peer=True
                ) from error
            if self._outgoing.pending:
                await self._flush()
            self._decrypted = True
            return data  # b"" once the peer's close_notify has arrived

    def send_now(self, data: bytes) -> int:
        """Never writes directly: every byte must go through the encryption. Returns 0."""
        return 0

    async def send(self, data: bytes | memoryview) -> None:
        """Encrypt and send ``data``.

        Raises:
            ConnectionClosedError: the connection broke or was closed.
        """
        try:
            self._ssl.write(data)
        except ssl.SSLError as exc:  # closed for writing (after a TLS error or close_notify)
            raise ConnectionClosedError(
                CloseCode.ABNORMAL, f"connection lost while sending: {exc}", by_peer=False
            ) from exc
        await self._flush()

    async def aclose(self, timeout: float = math.inf) -> None:
        """Send close_notify, wait at most ``timeout`` seconds for the peer's, then close the
        socket (at once if the time is up). Never raises; runs even while being cancelled."""
        with anyio.CancelScope(shield=True):
            deadline = anyio.current_time() + timeout
            with anyio.move_on_after(timeout):
                try:
                    await self._unwrap()
                except (ConnectionClosed, ssl.SSLError):
                    pass  # the peer is gone or broke the close: the socket closes all the same
            await self._inner.aclose(max(0.0, deadline - anyio.current_time()))

    async def _unwrap(self) -> None:
        while True:
            try:
                self._ssl.unwrap()
            except ssl.SSLWantReadError:
                await self._flush()
                if self._incoming.eof:
                    return
                await self._fill()
            else:
                await self._flush()
                return

    def _peer(self) -> str:
        return f"{self.peer_addr}:{self.peer_port}"


async def start_tls(
    inner: Transport,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    hostname: str | None = None,
) -> TLSTransport:
    """Run the TLS handshake over ``inner`` and return the encrypted transport.

    The caller bounds the time (``open_timeout``) and closes ``inner`` if this raises.

    Raises:
        TLSError: the handshake failed; ``kind`` says why.
        ConnectionClosedError: (host) the client went away before sending a byte, as port
            probes and health checks do: no TLS failure.
    """
    peer = f"{inner.peer_addr}:{inner.peer_port}"
    first = await _first_bytes(inner, peer) if server_side else b""
    try:
        transport = TLSTransport(
            inner, context, server_side=server_side, hostname=hostname, first=first
        )
    except ValueError as exc:  # for example a client context without check_hostname's name
        raise TLSError(f"TLS with {peer} failed: {exc}", TLSError.CONFIGURATION) from exc
    try:
        await transport._handshake()
    except (ssl.SSLError, ConnectionClosed) as exc:
        raise classify_ssl_error(
            exc, server_side=server_side, peer=peer, hostname=hostname
        ) from exc
    return transport


async def _first_bytes(inner: Transport, peer: str) -> bytes:
    """Read the client's first bytes; refuse a client that does not start a TLS handshake.

    A plaintext alvaro client starts with the alvaro preamble: it is answered, in plaintext, with
    a CLOSE that says TLS is required, so its user reads why instead of a bare disconnect.
    """
    first = await inner.receive()
    if not first:
        raise ConnectionClosedError(
            CloseCode.ABNORMAL,
            f"{peer} closed the connection before sending anything",
            by_peer=True,
        )
    if first[0] == _TLS_HANDSHAKE_RECORD:
        return first
    if first[0] == _TLS_ALERT_RECORD:
        raise TLSError(
            f"TLS with {peer} failed: the client gave up before its handshake (TLS alert "
            f"{first[-1]}; perhaps no TLS version in common)",
            TLSError.HANDSHAKE,
        )
    if may_be_preamble(first):
        try:
            await inner.send(
                encode_refusal(CloseCode.TLS_REQUIRED, "this host accepts only TLS connections")
            )
        except ConnectionClosed:
            pass
        raise TLSError(
            f"TLS with {peer} failed: a plaintext alvaro client connected; "
            "this host accepts only TLS",
            TLSError.TLS_REQUIRED,
        )
    raise TLSError(
        f"TLS with {peer} failed: the client is not speaking TLS (it sent {first[:16]!r})",
        TLSError.TLS_REQUIRED,
    )
