"""The :class:`Decoder` of the alvaro wire protocol, version 1: received bytes as events.

It does no I/O: no sockets, no anyio, no threads. ``docs/protocol.md`` is the specification it
implements, byte by byte::

    decoder = Decoder(role="client")
    try:
        decoder.receive_data(chunk)           # any number of bytes, any segmentation
    except RemoteProtocolError as exc:        # the peer broke the protocol: close with exc.code
        ...
    for event in decoder.events():            # Hello, Message, Ping, Pong, Close, Auth*,
        ...                                   # and with feature "request" Request, Reply*, Cancel

When :meth:`Decoder.receive_data` raises, the events parsed before the bad frame are complete and
valid: collect them with :meth:`Decoder.events` before closing, so nothing sent before the error is
lost.

The decoder checks every length against its limit as soon as the frame header is complete, before
any body byte of that frame is kept beyond what one read delivered. All malformed input raises a
:class:`~alvaro.exceptions.RemoteProtocolError` carrying the close code to send; it never raises
``KeyError``, ``UnicodeDecodeError``, ``RecursionError`` or other incidental errors.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from .._close_codes import CloseCode
from ..exceptions import RemoteProtocolError
from ._json import brief, loads
from .events import (
    AuthChallenge,
    AuthFail,
    AuthOk,
    AuthResponse,
    AuthStart,
    Cancel,
    Close,
    Event,
    Hello,
    Logout,
    Message,
    Ping,
    Pong,
    ReplyError,
    ReplyOk,
    Request,
)
from .frames import (
    CLOSE_CODE,
    CONTROL_LIMIT,
    CONTROL_TYPES,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_METADATA_SIZE,
    FEATURE_OF,
    HEADER,
    HEADER_SIZE,
    MAGIC,
    META_LENGTH,
    META_LENGTH_SIZE,
    PREAMBLE,
    REPLY_ERROR,
    REPLY_PREFIX_SIZE,
    REQUEST_HEADER,
    REQUEST_ID,
    REQUEST_PREFIX_SIZE,
    SUPPORTED_FEATURES,
    Encoding,
    FrameType,
    may_be_preamble,
    type_name,
)
from .request import read_error, timeout_seconds
from .state import AUTH_RECEIVED_BY, Login, next_login, read_hello

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .._types import Metadata
    from .frames import Role

__all__ = ("Decoder",)


class _Phase(enum.Enum):
    PREAMBLE = "preamble"
    HELLO = "hello"
    LOGIN = "login"  # a host that requires login: HELLOs exchanged, no login accepted yet
    OPEN = "open"
    CLOSED = "closed"
    FAILED = "failed"


class Decoder:
    """Turns the bytes received on one connection into events.

    Args:
        role: this side's role; the peer's HELLO must state the other one.
        max_message_size: the largest metadata plus payload accepted in one message, in bytes.
        max_metadata_size: the largest encoded metadata accepted in one message, in bytes.
        features: optional features this side offers in its HELLO (a subset of
            :data:`SUPPORTED_FEATURES`). A feature is negotiated when the peer's HELLO lists it
            too (:attr:`negotiated`); frames of features not negotiated are protocol errors.
        login_required: only for a host that offers ``auth``: the client must offer ``auth``
            too (else POLICY_VIOLATION), and until :meth:`accept_login` is called every DATA
            frame is refused with POLICY_VIOLATION at its header, before any of its body is
            kept (``docs/protocol.md``, section 9.8).

    The decoder keeps an offset into one buffer and parses every complete frame of each chunk, so
    the cost is linear in the bytes received (a quadratic buffer would be a denial of service).
    """

    def __init__(
        self,
        role: Role,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_metadata_size: int = DEFAULT_MAX_METADATA_SIZE,
        features: Iterable[str] = (),
        login_required: bool = False,
    ) -> None:
        if role not in ("host", "client"):
            raise ValueError(f"role must be 'host' or 'client', not {role!r}")
        self.role: Role = role
        self.max_message_size = max_message_size
        self.max_metadata_size = max_metadata_size
        self.features = frozenset(features)
        if not self.features <= SUPPORTED_FEATURES:
            unknown = ", ".join(sorted(self.features - SUPPORTED_FEATURES))
            raise ValueError(f"the decoder does not implement these features: {unknown}")
        if login_required and (role != "host" or "auth" not in self.features):
            raise ValueError("login_required needs role 'host' and feature 'auth'")
        self.login_required = login_required
        self.negotiated: frozenset[str] = frozenset()
        """The features both HELLOs list; empty until the peer's HELLO has arrived."""
        self._login = Login.IDLE
        self._buffer = bytearray()
        self._pos = 0
        self._events: list[Event] = []
        self._sizes: list[int] = []
        self.message_sizes: list[int] = []
        """The size on the wire (header included) of each message-carrying event among the
        events the last :meth:`events` call returned, in order: each :class:`Message`, and
        with feature ``request`` each :class:`Request`, :class:`ReplyOk` and
        :class:`ReplyError` (one per DATA, REQUEST or REPLY frame). What a receive queue
        should count against its byte limit, since a decoded message tells nothing of its
        size."""
        # REQUEST and REPLY: the largest body each may have, once "request" is negotiated.
        self._request_limits: dict[int, int] = {}
        self._phase = _Phase.PREAMBLE
        self._peer_version = 0
        self._hello_received = False

    @property
    def buffered(self) -> int:
        """How many received bytes belong to a frame that is not complete yet."""
        return len(self._buffer) - self._pos

    @property
    def handshake_complete(self) -> bool:
        """Whether the peer's HELLO has been received."""
        # Not the phase: a CLOSE may arrive before any HELLO, and an error may follow one.
        return self._hello_received

    @property
    def closed(self) -> bool:
        """Whether the peer's CLOSE has been received (possibly before any HELLO)."""
        return self._phase is _Phase.CLOSED

    @property
    def logged_in(self) -> bool:
        """Host: whether :meth:`accept_login` was called (and no LOGOUT came since).
        Client: whether the host's AUTH_OK has been received."""
        return self._login is Login.DONE

    def accept_login(self) -> None:
        """Tell a host's decoder that the login succeeded (call it as AUTH_OK is sent): from
        now on DATA frames are accepted, up to ``max_message_size``."""
        if self.role != "host" or self._login is not Login.ANSWERED:
            raise RuntimeError("accept_login() is for a host that has received AUTH_RESPONSE")
        self._login = Login.DONE
        if self._phase is _Phase.LOGIN:
            self._phase = _Phase.OPEN

    def events(self) -> list[Event]:
        """Return the events parsed so far, oldest first, and forget them."""
        events = self._events
        self._events = []
        self.message_sizes = self._sizes
        self._sizes = []
        return events

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed bytes received from the peer and parse every complete frame in them.

        Raises:
            RemoteProtocolError: the bytes break the protocol; ``.code`` is the close code to send.
                Events parsed before the bad frame stay available from :meth:`events`. After an
                error the decoder accepts no more data.
        """
        if self._phase is _Phase.FAILED:
            raise RemoteProtocolError("the decoder already met a protocol error")
        if not data or self._phase is _Phase.CLOSED:
            # Nothing may follow CLOSE; whatever does is dropped, never buffered.
            return
        self._buffer += data
        try:
            if self._phase is _Phase.PREAMBLE:
                self._parse_preamble()
            if self._phase is not _Phase.PREAMBLE:
                self._parse_frames()
        except RemoteProtocolError:
            self._phase = _Phase.FAILED
            raise
        # Compact: drop consumed bytes so the buffer holds at most one partial frame.
        if self._pos == len(self._buffer):
            self._buffer.clear()
            self._pos = 0
        elif self._pos > 65536:
            del self._buffer[: self._pos]
            self._pos = 0

    def _parse_preamble(self) -> None:
        buf = self._buffer
        if not may_be_preamble(buf):
            raise RemoteProtocolError(_describe_foreign_bytes(bytes(buf[: len(MAGIC)])))
        if len(buf) < len(PREAMBLE):
            return
        version = buf[len(MAGIC)]
        if version == 0:
            raise RemoteProtocolError(
                "the peer announced protocol version 0", CloseCode.UNSUPPORTED
            )
        # A peer that speaks a newer version must fall back to ours (docs/protocol.md, 2.1).
        self._peer_version = version
        self._pos = len(PREAMBLE)
        self._phase = _Phase.HELLO

    def _parse_frames(self) -> None:
        buf = self._buffer
        pos = self._pos
        end = len(buf)
        events = self._events
        sizes = self._sizes
        header_size = HEADER_SIZE  # a local: read for every frame
        # The largest DATA body the limit allows: its metadata length field, then the message.
        data_limit = self.max_message_size + META_LENGTH_SIZE
        with memoryview(buf) as view:
            try:
                while end - pos >= HEADER_SIZE and self._phase is not _Phase.CLOSED:
                    length, frame_type, flags = HEADER.unpack_from(buf, pos)
                    # Check the header before waiting for (or keeping) any of the body.
                    if frame_type == FrameType.DATA and self._phase is _Phase.OPEN:
                        if length > data_limit:
                            size = length - META_LENGTH_SIZE
                            raise RemoteProtocolError(
                                f"message of {size} bytes is over the limit of "
                                f"{self.max_message_size} bytes",
                                CloseCode.MESSAGE_TOO_BIG,
                            )
                        if flags > Encoding.BYTES:
                            raise RemoteProtocolError(f"DATA frame with invalid flags {flags:#04x}")
                        start = pos + header_size
                        if end - start < length:
                            break
                        pos = start + length
                        events.append(self._message(view, start, length, flags))
                        sizes.append(header_size + length)
                        continue
                    if frame_type in self._request_limits and self._phase is _Phase.OPEN:
                        self._check_request_header(length, frame_type, flags)
                        start = pos + header_size
                        if end - start < length:
                            break
                        pos = start + length
                        events.append(self._request(view, start, length, frame_type, flags))
                        sizes.append(header_size + length)
                        continue
                    self._check_control_header(length, frame_type, flags)
                    start = pos + HEADER_SIZE
                    if end - start < length:
                        break
                    pos = start + length
                    events.append(self._control(frame_type, view[start:pos]))
            finally:
                # After CLOSE the rest of the buffer is dropped (docs/protocol.md, section 5).
                self._pos = end if self._phase is _Phase.CLOSED else pos

    def _message(self, view: memoryview, start: int, length: int, flags: int) -> Message:
        # Per message: each module-level name costs a lookup, so META_LENGTH_SIZE is read once.
        meta_start = start + META_LENGTH_SIZE
        if length < META_LENGTH_SIZE:
            raise RemoteProtocolError(f"DATA frame body of {length} bytes is too short")
        (meta_size,) = META_LENGTH.unpack_from(view, start)
        if meta_start + meta_size > start + length:
            raise RemoteProtocolError(
                f"metadata length {meta_size} is longer than the frame body "
                f"{length - META_LENGTH_SIZE}"
            )
        if meta_size > self.max_metadata_size:
            raise RemoteProtocolError(
                f"metadata of {meta_size} bytes is over the limit of "
                f"{self.max_metadata_size} bytes",
                CloseCode.MESSAGE_TOO_BIG,
            )
        payload_start = meta_start + meta_size
        metadata: Metadata
        if meta_size:
            metadata = loads(view[meta_start:payload_start], "metadata")
            if not isinstance(metadata, dict):
                raise RemoteProtocolError(
                    f"metadata must be a JSON object, not {type(metadata).__name__}",
                    CloseCode.INVALID_DATA,
                )
        else:
            metadata = {}
        payload = view[payload_start : start + length]
        if flags == Encoding.JSON:
            return Message(loads(payload, "data"), metadata)
        return Message(payload.tobytes(), metadata)

    def _check_request_header(self, length: int, frame_type: int, flags: int) -> None:
        # The flags first: they say which limit applies (docs/protocol.md, 7.1 R1, R2).
        if flags > Encoding.BYTES and (frame_type != FrameType.REPLY or flags != REPLY_ERROR):
            raise RemoteProtocolError(
                f"{type_name(frame_type)} frame with invalid flags {flags:#04x}"
            )
        if flags == REPLY_ERROR:
            # An error REPLY fits in the control limit whatever the receiver's message limit,
            # so that a request can always be answered.
            if length > CONTROL_LIMIT:
                raise RemoteProtocolError(
                    f"error REPLY of {length} bytes is over the limit of {CONTROL_LIMIT} bytes",
                    CloseCode.MESSAGE_TOO_BIG,
                )
        elif length > self._request_limits[frame_type]:
            size = length - (self._request_limits[frame_type] - self.max_message_size)
            raise RemoteProtocolError(
                f"{type_name(frame_type)} message of {size} bytes is over the limit of "
                f"{self.max_message_size} bytes",
                CloseCode.MESSAGE_TOO_BIG,
            )

    def _request(
        self, view: memoryview, start: int, length: int, frame_type: int, flags: int
    ) -> Request | ReplyOk | ReplyError:
        # The request id comes first in both bodies; the message after the fixed prefix is
        # read as a DATA body is (docs/protocol.md, 9.2).
        prefix = REQUEST_PREFIX_SIZE if frame_type == FrameType.REQUEST else REPLY_PREFIX_SIZE
        if length < prefix:
            raise RemoteProtocolError(
                f"{type_name(frame_type)} frame body of {length} bytes is too short"
            )
        skip = prefix - META_LENGTH_SIZE
        if frame_type == FrameType.REQUEST:
            _, _, _, request_id, ms, _ = REQUEST_HEADER.unpack_from(view, start - HEADER_SIZE)
            data, metadata = self._message(view, start + skip, length - skip, flags)
            return Request(request_id, data, metadata, timeout_seconds(ms))
        (request_id,) = REQUEST_ID.unpack_from(view, start)
        if flags == REPLY_ERROR:
            # The metadata of an error REPLY is checked as any other, and not used.
            fields = self._message(view, start + skip, length - skip, Encoding.JSON).data
            return ReplyError(request_id, *read_error(fields))
        data, metadata = self._message(view, start + skip, length - skip, flags)
        return ReplyOk(request_id, data, metadata)

    def _check_control_header(self, length: int, frame_type: int, flags: int) -> None:
        if self._phase is _Phase.HELLO and frame_type not in (FrameType.HELLO, FrameType.CLOSE):
            raise RemoteProtocolError(
                f"frame type {type_name(frame_type)} arrived before the peer's HELLO"
            )
        if frame_type == FrameType.DATA:
            # Only in the LOGIN phase does DATA come this way (OPEN takes the fast path), so
            # the gate costs the message path nothing.
            self._refuse_before_login()
        if frame_type in FEATURE_OF:
            feature = FEATURE_OF[frame_type]
            if feature not in self.negotiated:
                raise RemoteProtocolError(
                    f"frame type {type_name(frame_type)} needs feature {feature!r}, "
                    "which was not negotiated"
                )
            if feature == "request" and self._phase is _Phase.LOGIN:
                # Requests are messages: none before the login (docs/protocol.md, 9.8.4).
                self._refuse_before_login()
            if feature == "auth" and frame_type not in AUTH_RECEIVED_BY[self.role]:
                sender = "client" if self.role == "host" else "host"
                raise RemoteProtocolError(f"{type_name(frame_type)} is not sent by a {sender}")
        elif frame_type not in CONTROL_TYPES:
            raise RemoteProtocolError(f"unknown frame type {frame_type:#04x}")
        if flags:
            raise RemoteProtocolError(
                f"{type_name(frame_type)} frame with reserved flags {flags:#04x}"
            )
        if length > CONTROL_LIMIT:
            raise RemoteProtocolError(
                f"{type_name(frame_type)} frame of {length} bytes is over the limit of "
                f"{CONTROL_LIMIT} bytes",
                CloseCode.MESSAGE_TOO_BIG,
            )

    def _refuse_before_login(self) -> None:
        if self.role == "client":
            raise RemoteProtocolError("the host sent a message before AUTH_OK")
        raise RemoteProtocolError(
            "a message arrived before the login; this host requires login first",
            CloseCode.POLICY_VIOLATION,
        )

    def _control(self, frame_type: int, body: memoryview) -> Event:
        if frame_type == FrameType.HELLO:
            if self._phase is not _Phase.HELLO:
                raise RemoteProtocolError("the peer sent a second HELLO")
            hello = self._hello(body)
            # Until the login ends, DATA is refused: by a host that requires login, and by a
            # client of such a host, to which the host may send nothing before AUTH_OK.
            gated = self.login_required or hello.auth_required
            self._phase = _Phase.LOGIN if gated else _Phase.OPEN
            self._hello_received = True
            if "request" in self.negotiated:
                # A body holds its fixed prefix, then a message up to the limit.
                self._request_limits = {
                    FrameType.REQUEST: self.max_message_size + REQUEST_PREFIX_SIZE,
                    FrameType.REPLY: self.max_message_size + REPLY_PREFIX_SIZE,
                }
            return hello
        if frame_type == FrameType.CLOSE:
            self._phase = _Phase.CLOSED
            return _close(body)
        if frame_type == FrameType.PING:
            return Ping(body.tobytes())
        if frame_type == FrameType.PONG:
            return Pong(body.tobytes())
        if frame_type == FrameType.CANCEL:
            return _cancel(body)
        # A reserved type passes the header check only once its feature is negotiated; of the
        # features this version implements, "request" sends its messages the fast way.
        return self._auth(frame_type, body)

    def _auth(self, frame_type: int, body: memoryview) -> Event:
        # The order first, then the body (docs/protocol.md, section 7).
        after = next_login(self._login, frame_type)
        name = type_name(frame_type)
        event: Event
        if frame_type == FrameType.LOGOUT:
            if len(body):
                _auth_fields(body, name)
            # Logged out: DATA is refused again while the host closes the connection.
            self._phase = _Phase.LOGIN
            event = Logout()
        else:
            fields = _auth_fields(body, name)
            if frame_type == FrameType.AUTH_START:
                event = AuthStart(
                    _auth_string(fields, "mechanism", name), _auth_string(fields, "message", name)
                )
            elif frame_type == FrameType.AUTH_OK:
                event = AuthOk(
                    _auth_string(fields, "message", name), _auth_string(fields, "user", name)
                )
                self._phase = _Phase.OPEN
            elif frame_type == FrameType.AUTH_FAIL:
                event = AuthFail(_auth_string(fields, "reason", name))
            else:
                message = _auth_string(fields, "message", name)
                kind = AuthResponse if frame_type == FrameType.AUTH_RESPONSE else AuthChallenge
                event = kind(message)
        self._login = after
        return event

    def _hello(self, body: memoryview) -> Hello:
        hello, self.negotiated = read_hello(
            loads(body, "HELLO"),
            role=self.role,
            features=self.features,
            login_required=self.login_required,
            version=self._peer_version,
        )
        return hello


def _auth_fields(body: memoryview, name: str) -> dict[str, Any]:
    fields = loads(body, name)
    if not isinstance(fields, dict):
        raise RemoteProtocolError(f"{name} must be a JSON object", CloseCode.INVALID_DATA)
    return fields


def _auth_string(fields: dict[str, Any], key: str, name: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str):
        raise RemoteProtocolError(
            f"{name} field {key!r} must be a string, not {brief(value)}", CloseCode.INVALID_DATA
        )
    return value


def _close(body: memoryview) -> Close:
    if len(body) < 2:
        raise RemoteProtocolError("CLOSE frame without a close code")
    (code,) = CLOSE_CODE.unpack_from(body)
    try:
        reason = str(body[2:], "utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(
            "CLOSE reason is not valid UTF-8", CloseCode.INVALID_DATA
        ) from exc
    return Close(code, reason)


def _cancel(body: memoryview) -> Cancel:
    if len(body) != REQUEST_ID.size:
        raise RemoteProtocolError(f"CANCEL frame body of {len(body)} bytes; it must be 4")
    (request_id,) = REQUEST_ID.unpack_from(body)
    return Cancel(request_id)


def _describe_foreign_bytes(seen: bytes) -> str:
    # Say what the peer probably is: these are the usual mistakes on a misconfigured port.
    if seen[:1] == b"\x16":
        return "the peer started a TLS handshake; is it configured for TLS while this side is not?"
    if seen[:1].isalpha() and seen.isascii():
        return f"the peer is not speaking the alvaro protocol (it sent {seen!r}, perhaps HTTP)"
    return f"the peer is not speaking the alvaro protocol (it sent {seen!r})"
