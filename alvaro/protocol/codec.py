"""Sans-I/O codec for the alvaro wire protocol, version 1.

This module turns messages into bytes and bytes into events. It does no I/O: no sockets, no anyio,
no threads. ``docs/protocol.md`` is the specification it implements, byte by byte.

Sending::

    frame = encode_message({"x": 1}, {"kind": "point"})      # bytes ready for the socket

Receiving::

    decoder = Decoder(role="client")
    try:
        decoder.receive_data(chunk)           # any number of bytes, any segmentation
    except RemoteProtocolError as exc:        # the peer broke the protocol: close with exc.code
        ...
    for event in decoder.events():            # Hello, Message, Ping, Pong, Close, Auth*
        ...

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
import json
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, NamedTuple, TypeAlias

from .._close_codes import CloseCode
from ..exceptions import EncodeError, MessageTooLarge, RemoteProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from .._types import Metadata

__all__ = (
    "AUTH_MECHANISM",
    "CONTROL_LIMIT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_METADATA_SIZE",
    "MAGIC",
    "MAX_LIMIT",
    "PREAMBLE",
    "SUPPORTED_FEATURES",
    "VERSION",
    "AuthChallenge",
    "AuthFail",
    "AuthOk",
    "AuthResponse",
    "AuthStart",
    "Close",
    "Decoder",
    "Encoding",
    "Event",
    "FrameType",
    "Hello",
    "Logout",
    "Message",
    "Ping",
    "Pong",
    "Role",
    "encode_auth_challenge",
    "encode_auth_fail",
    "encode_auth_ok",
    "encode_auth_response",
    "encode_auth_start",
    "encode_close",
    "encode_hello",
    "encode_logout",
    "encode_message",
    "encode_ping",
    "encode_pong",
)

MAGIC: Final = b"ALVARO"
"""The six bytes every alvaro connection starts with, in both directions."""
VERSION: Final = 1
"""The protocol version this module speaks."""
PREAMBLE: Final = MAGIC + bytes((VERSION, 0))
"""Magic, version, and one reserved zero byte: the first eight bytes each side sends."""

DEFAULT_MAX_MESSAGE_SIZE: Final = 1024 * 1024
"""Default limit on a message's metadata plus payload, in bytes (1 MiB)."""
DEFAULT_MAX_METADATA_SIZE: Final = 64 * 1024
"""Default limit on a message's encoded metadata, in bytes (64 KiB)."""
CONTROL_LIMIT: Final = 4096
"""Limit on the body of every frame that is not a message (HELLO, PING, PONG, CLOSE)."""
MAX_CLOSE_REASON: Final = 1024
"""The encoder shortens close reasons to this many UTF-8 bytes."""
AUTH_MECHANISM: Final = "SCRAM-SHA-256"
"""The login mechanism of feature ``auth`` (RFC 5802, RFC 7677; no channel binding)."""

MAX_LIMIT: Final = 2**32 - 1 - 4
"""The largest size limit the protocol can state: a u32 body length less a DATA frame's
metadata-length field."""

_HEADER: Final = struct.Struct("!IBB")  # body length, frame type, flags
_HEADER_SIZE: Final = _HEADER.size
_DATA_HEADER: Final = struct.Struct("!IBBI")  # header, then the DATA body's metadata length
_META_LENGTH: Final = struct.Struct("!I")
_CLOSE_CODE: Final = struct.Struct("!H")

Role: TypeAlias = Literal["host", "client"]


class FrameType(enum.IntEnum):
    """The frame types of protocol version 1.

    Types marked *reserved* are specified in ``docs/protocol.md`` and become legal once the feature
    named there is negotiated in HELLO; until then receiving one is a protocol error.
    """

    DATA = 0x01
    REQUEST = 0x02  # reserved: feature "request"
    REPLY = 0x03  # reserved: feature "request"
    CHUNK = 0x04  # reserved: feature "chunk"
    CHUNK_ABORT = 0x05  # reserved: feature "chunk"
    ACK = 0x06  # reserved: feature "ack"
    PING = 0x10
    PONG = 0x11
    CLOSE = 0x12
    HELLO = 0x20
    AUTH_START = 0x21  # reserved: feature "auth"
    AUTH_CHALLENGE = 0x22  # reserved: feature "auth"
    AUTH_RESPONSE = 0x23  # reserved: feature "auth"
    AUTH_OK = 0x24  # reserved: feature "auth"
    AUTH_FAIL = 0x25  # reserved: feature "auth"
    LOGOUT = 0x26  # reserved: feature "auth"


class Encoding(enum.IntEnum):
    """How a message payload is encoded: the two low bits of a DATA frame's flags."""

    JSON = 0
    BYTES = 1


SUPPORTED_FEATURES: Final[frozenset[str]] = frozenset({"auth"})
"""Optional features this version of the codec implements (see ``FrameType``)."""
_FEATURE_OF: Final[dict[int, str]] = {
    FrameType.REQUEST: "request",
    FrameType.REPLY: "request",
    FrameType.CHUNK: "chunk",
    FrameType.CHUNK_ABORT: "chunk",
    FrameType.ACK: "ack",
    FrameType.AUTH_START: "auth",
    FrameType.AUTH_CHALLENGE: "auth",
    FrameType.AUTH_RESPONSE: "auth",
    FrameType.AUTH_OK: "auth",
    FrameType.AUTH_FAIL: "auth",
    FrameType.LOGOUT: "auth",
}


@dataclass(frozen=True, slots=True)
class Hello:
    """The peer's HELLO: its protocol version, role, limits and features."""

    version: int
    role: Role
    max_message_size: int
    max_metadata_size: int
    features: frozenset[str] = field(default_factory=frozenset)
    auth_required: bool = False
    """Whether the host requires login; only ever true when feature ``auth`` is negotiated."""


class Message(NamedTuple):
    """One message: JSON ``data`` (or ``bytes``) and its ``metadata`` dict.

    ``data`` is ``bytes`` exactly when the sender sent ``bytes``, ``bytearray`` or ``memoryview``.
    A named tuple, so ``data, metadata = message`` works; it is also the cheapest immutable
    record to build, which matters at hundreds of thousands of messages a second.
    """

    data: Any
    metadata: Metadata


@dataclass(frozen=True, slots=True)
class Ping:
    """A keepalive probe; the receiver answers with a PONG carrying the same payload."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to a PING, echoing its payload."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Close:
    """The peer closes the connection with a code and a reason."""

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AuthStart:
    """A client begins a login (feature ``auth``): the SCRAM client-first-message."""

    mechanism: str
    message: str


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    """The host's answer to :class:`AuthStart`: the SCRAM server-first-message."""

    message: str


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """The client's proof: the SCRAM client-final-message."""

    message: str


@dataclass(frozen=True, slots=True)
class AuthOk:
    """The host accepted the login: the SCRAM server-final-message, and the user's name."""

    message: str
    user: str


@dataclass(frozen=True, slots=True)
class AuthFail:
    """The host refused the login, saying why (the same words for every wrong credential)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Logout:
    """The client ends its login; the host then closes the connection."""


Event: TypeAlias = (
    Hello
    | Message
    | Ping
    | Pong
    | Close
    | AuthStart
    | AuthChallenge
    | AuthResponse
    | AuthOk
    | AuthFail
    | Logout
)


# --- JSON -------------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259); Python's json module accepts them by default.
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.dumps/json.loads with keyword arguments would build a new coder per call.
_json_encoder = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=False
)


def _refuse(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# JSONEncoder.encode() builds a new C encoder on every call; build it once instead. Without
# circular-reference markers it keeps no state, so threads may share it; a circular structure
# then ends in RecursionError, which _dumps reports like any other encoding error.
_c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_c_encoder = (
    None
    if _c_make_encoder is None
    else _c_make_encoder(
        None, _refuse, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
)


def _json_encode(value: object) -> str:
    if type(value) is str:
        return json.encoder.encode_basestring(value)
    if _c_encoder is None:  # pragma: no cover - Pythons without the C accelerator
        return _json_encoder.encode(value)
    return "".join(_c_encoder(value, 0))


_json_decoder = json.JSONDecoder(parse_constant=_reject_constant)
# The decoder's own scanner, in C where available. JSONDecoder.decode() wraps it in two regular
# expression matches for surrounding whitespace, which cost as much as scanning a small value.
_json_scan: Callable[[str, int], tuple[Any, int]] = _json_decoder.scan_once  # type: ignore[attr-defined]  # set by JSONDecoder.__init__


def _json_decode(text: str) -> Any:
    try:
        value, end = _json_scan(text, 0)
    except StopIteration:
        value, end = None, -1  # not a value at offset 0: leading whitespace, or invalid
    if end != len(text):
        # Whitespace around the value, or an error: the full decoder accepts the former and
        # words the latter exactly as it always does.
        return _json_decoder.decode(text)
    return value


def _dumps(value: object, what: str) -> bytes:
    try:
        return _json_encode(value).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        # ValueError covers NaN/Infinity, circular references and lone surrogates.
        raise EncodeError(f"{what} cannot be encoded as JSON: {exc}") from exc


def _load_orjson() -> Callable[[memoryview], Any] | None:
    try:
        import orjson
    except ImportError:
        return None
    loads: Callable[[memoryview], Any] = orjson.loads
    return loads


# orjson, when installed, decodes several times faster. It differs from the standard library on
# a few inputs: it turns integers beyond 64 bits into floats (losing digits) and refuses 1e400
# and lone surrogate escapes, which the standard library accepts. So it is used only when the
# bytes hold no run of 19 or more digits, and any input it refuses goes to the standard library,
# which decides and words the error: either way, the result is the standard library's.
_orjson_loads = _load_orjson()
# Digits become "9" and everything else a space, so one bytes.find() spots a long digit run;
# measured three times faster than a regular expression on message-sized input.
_DIGITS_AS_NINES: Final = bytes(57 if 48 <= byte <= 57 else 32 for byte in range(256))
_LONG_DIGIT_RUN: Final = b"9" * 19


def _has_long_digit_run(raw: memoryview) -> bool:
    return len(raw) >= 19 and raw.tobytes().translate(_DIGITS_AS_NINES).find(_LONG_DIGIT_RUN) >= 0


def _loads(raw: memoryview, what: str) -> Any:
    if _orjson_loads is not None and not _has_long_digit_run(raw):
        try:
            return _orjson_loads(raw)
        except ValueError:  # orjson.JSONDecodeError; the standard library decides below
            pass
    try:
        return _json_decode(str(raw, "utf-8"))
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"{what} is not valid UTF-8", CloseCode.INVALID_DATA) from exc
    except (ValueError, RecursionError) as exc:
        # ValueError covers syntax errors, NaN/Infinity and integers over CPython's digit limit;
        # RecursionError covers nesting deeper than the interpreter's stack.
        raise RemoteProtocolError(
            f"{what} is not valid JSON: {exc}", CloseCode.INVALID_DATA
        ) from exc


# --- Encoding ---------------------------------------------------------------------------------


def encode_message(
    data: object,
    metadata: Metadata | None = None,
    *,
    max_message_size: int | None = None,
    max_metadata_size: int | None = None,
) -> bytes:
    """Encode one message as a DATA frame.

    Args:
        data: a JSON-serialisable value, or ``bytes``/``bytearray``/``memoryview`` sent raw.
        metadata: a dict of JSON-serialisable values, or ``None`` for an empty one.
        max_message_size: the receiver's limit on metadata plus payload, if known.
        max_metadata_size: the receiver's limit on the encoded metadata, if known.

    Returns:
        The complete frame.

    Raises:
        EncodeError: ``data`` or ``metadata`` cannot be encoded, or ``metadata`` is not a dict.
        MessageTooLarge: the encoded message or metadata is over the given limit.
    """
    if metadata:
        if not isinstance(metadata, dict):
            raise EncodeError(f"metadata must be a dict, not {type(metadata).__name__}")
        meta = _dumps(metadata, "metadata")
    elif metadata is None or isinstance(metadata, dict):
        meta = b""  # an empty object travels as zero bytes
    else:
        raise EncodeError(f"metadata must be a dict, not {type(metadata).__name__}")
    if isinstance(data, bytes):
        payload = data
        encoding = Encoding.BYTES
    elif isinstance(data, (bytearray, memoryview)):
        try:
            payload = bytes(data)
        except ValueError as exc:  # a released memoryview
            raise EncodeError(f"data cannot be read: {exc}") from exc
        encoding = Encoding.BYTES
    else:
        payload = _dumps(data, "data")
        encoding = Encoding.JSON
    meta_size = len(meta)
    size = meta_size + len(payload)
    if max_metadata_size is not None and meta_size > max_metadata_size:
        raise MessageTooLarge(
            f"metadata of {meta_size} bytes is over the limit of {max_metadata_size} bytes",
            size=meta_size,
            limit=max_metadata_size,
        )
    limit = MAX_LIMIT if max_message_size is None else min(max_message_size, MAX_LIMIT)
    if size > limit:
        raise MessageTooLarge(
            f"message of {size} bytes is over the limit of {limit} bytes", size=size, limit=limit
        )
    return _DATA_HEADER.pack(size + 4, FrameType.DATA, encoding, meta_size) + meta + payload


def _control_frame(frame_type: FrameType, body: bytes) -> bytes:
    if len(body) > CONTROL_LIMIT:
        raise ValueError(f"{frame_type.name} body of {len(body)} bytes is over {CONTROL_LIMIT}")
    return _HEADER.pack(len(body), frame_type, 0) + body


def encode_hello(
    role: Role,
    *,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_metadata_size: int = DEFAULT_MAX_METADATA_SIZE,
    features: Iterable[str] = (),
    auth_required: bool = False,
) -> bytes:
    """Encode the preamble and HELLO frame that open a connection.

    Args:
        role: ``"host"`` for the accepting side, ``"client"`` for the connecting side.
        max_message_size: the largest metadata plus payload this side accepts, in bytes.
        max_metadata_size: the largest encoded metadata this side accepts, in bytes.
        features: names of optional protocol features this side speaks.
        auth_required: a host that requires login says so (``features`` must list ``auth``).
    """
    for name, value in (
        ("max_message_size", max_message_size),
        ("max_metadata_size", max_metadata_size),
    ):
        if not 1 <= value <= MAX_LIMIT:
            raise ValueError(f"{name} must be between 1 and {MAX_LIMIT}, not {value}")
    names = sorted(set(features))
    body: dict[str, object] = {
        "role": role,
        "max_message_size": max_message_size,
        "max_metadata_size": max_metadata_size,
        "features": names,
    }
    if auth_required:
        if role != "host" or "auth" not in names:
            raise ValueError("only a host that lists feature 'auth' can require login")
        body["auth_required"] = True
    return PREAMBLE + _control_frame(FrameType.HELLO, _dumps(body, "HELLO"))


def encode_close(code: int, reason: str = "") -> bytes:
    """Encode a CLOSE frame; a reason longer than 1024 UTF-8 bytes is shortened."""
    if not 0 <= code <= 0xFFFF:
        raise ValueError(f"close code must fit in 16 bits, not {code}")
    raw = reason.encode("utf-8", "replace")
    if len(raw) > MAX_CLOSE_REASON:
        # Cut at a character boundary so the shortened reason is still valid UTF-8.
        raw = raw[:MAX_CLOSE_REASON].decode("utf-8", "ignore").encode("utf-8")
    return _control_frame(FrameType.CLOSE, _CLOSE_CODE.pack(code) + raw)


def encode_ping(payload: bytes = b"") -> bytes:
    """Encode a PING frame; the peer echoes ``payload`` in its PONG."""
    return _control_frame(FrameType.PING, payload)


def encode_pong(payload: bytes = b"") -> bytes:
    """Encode a PONG frame answering a PING with this ``payload``."""
    return _control_frame(FrameType.PONG, payload)


def _auth_frame(frame_type: FrameType, **fields: str) -> bytes:
    body = _dumps(fields, frame_type.name)
    if len(body) > CONTROL_LIMIT:
        # Only a caller's own over-long strings get here; the peer could not accept the frame.
        raise ValueError(f"{frame_type.name} body of {len(body)} bytes is over {CONTROL_LIMIT}")
    return _HEADER.pack(len(body), frame_type, 0) + body


def encode_auth_start(message: str, mechanism: str = AUTH_MECHANISM) -> bytes:
    """Encode AUTH_START (client to host) carrying the SCRAM client-first-message."""
    return _auth_frame(FrameType.AUTH_START, mechanism=mechanism, message=message)


def encode_auth_challenge(message: str) -> bytes:
    """Encode AUTH_CHALLENGE (host to client) carrying the SCRAM server-first-message."""
    return _auth_frame(FrameType.AUTH_CHALLENGE, message=message)


def encode_auth_response(message: str) -> bytes:
    """Encode AUTH_RESPONSE (client to host) carrying the SCRAM client-final-message."""
    return _auth_frame(FrameType.AUTH_RESPONSE, message=message)


def encode_auth_ok(message: str, user: str) -> bytes:
    """Encode AUTH_OK (host to client): the SCRAM server-final-message and the user's name."""
    return _auth_frame(FrameType.AUTH_OK, message=message, user=user)


def encode_auth_fail(reason: str) -> bytes:
    """Encode AUTH_FAIL (host to client) with a reason a person can read."""
    return _auth_frame(FrameType.AUTH_FAIL, reason=reason)


def encode_logout() -> bytes:
    """Encode LOGOUT (client to host)."""
    return _auth_frame(FrameType.LOGOUT)


# --- Decoding ---------------------------------------------------------------------------------


class _Phase(enum.Enum):
    PREAMBLE = "preamble"
    HELLO = "hello"
    LOGIN = "login"  # a host that requires login: HELLOs exchanged, no login accepted yet
    OPEN = "open"
    CLOSED = "closed"
    FAILED = "failed"


class _Login(enum.Enum):
    """Where the login exchange is, as seen from the frames received."""

    IDLE = "idle"  # nothing yet (or, on a host, logged out)
    STARTED = "started"  # host: AUTH_START received; client: AUTH_CHALLENGE received
    ANSWERED = "answered"  # host: AUTH_RESPONSE received, the verdict is the host's to send
    DONE = "done"  # client: AUTH_OK received; host: login accepted
    LOGGED_OUT = "logged out"  # host: LOGOUT received; no further login on this connection


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
        self._login = _Login.IDLE
        self._buffer = bytearray()
        self._pos = 0
        self._events: list[Event] = []
        self._sizes: list[int] = []
        self.message_sizes: list[int] = []
        """The size on the wire (header included) of each :class:`Message` among the events
        the last :meth:`events` call returned, in order: what a receive queue should count
        against its byte limit, since a message's decoded form tells nothing of its size."""
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
        return self._login is _Login.DONE

    def accept_login(self) -> None:
        """Tell a host's decoder that the login succeeded (call it as AUTH_OK is sent): from
        now on DATA frames are accepted, up to ``max_message_size``."""
        if self.role != "host" or self._login is not _Login.ANSWERED:
            raise RuntimeError("accept_login() is for a host that has received AUTH_RESPONSE")
        self._login = _Login.DONE
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
        seen = bytes(buf[: len(MAGIC)])
        if not MAGIC.startswith(seen):
            raise RemoteProtocolError(_describe_foreign_bytes(seen))
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
        with memoryview(buf) as view:
            try:
                while end - pos >= _HEADER_SIZE and self._phase is not _Phase.CLOSED:
                    length, frame_type, flags = _HEADER.unpack_from(buf, pos)
                    # Check the header before waiting for (or keeping) any of the body.
                    if frame_type == FrameType.DATA and self._phase is _Phase.OPEN:
                        if length > self.max_message_size + 4:
                            raise RemoteProtocolError(
                                f"message of {length - 4} bytes is over the limit of "
                                f"{self.max_message_size} bytes",
                                CloseCode.MESSAGE_TOO_BIG,
                            )
                        if flags > Encoding.BYTES:
                            raise RemoteProtocolError(f"DATA frame with invalid flags {flags:#04x}")
                        start = pos + _HEADER_SIZE
                        if end - start < length:
                            break
                        pos = start + length
                        events.append(self._message(view, start, length, flags))
                        sizes.append(_HEADER_SIZE + length)
                        continue
                    self._check_control_header(length, frame_type, flags)
                    start = pos + _HEADER_SIZE
                    if end - start < length:
                        break
                    pos = start + length
                    events.append(self._control(frame_type, view[start:pos]))
            finally:
                # After CLOSE the rest of the buffer is dropped (docs/protocol.md, section 5).
                self._pos = end if self._phase is _Phase.CLOSED else pos

    def _message(self, view: memoryview, start: int, length: int, flags: int) -> Message:
        if length < 4:
            raise RemoteProtocolError(f"DATA frame body of {length} bytes is too short")
        (meta_size,) = _META_LENGTH.unpack_from(view, start)
        if meta_size > length - 4:
            raise RemoteProtocolError(
                f"metadata length {meta_size} is longer than the frame body {length - 4}"
            )
        if meta_size > self.max_metadata_size:
            raise RemoteProtocolError(
                f"metadata of {meta_size} bytes is over the limit of "
                f"{self.max_metadata_size} bytes",
                CloseCode.MESSAGE_TOO_BIG,
            )
        meta_start = start + 4
        payload_start = meta_start + meta_size
        metadata: Metadata
        if meta_size:
            metadata = _loads(view[meta_start:payload_start], "metadata")
            if not isinstance(metadata, dict):
                raise RemoteProtocolError(
                    f"metadata must be a JSON object, not {type(metadata).__name__}",
                    CloseCode.INVALID_DATA,
                )
        else:
            metadata = {}
        payload = view[payload_start : start + length]
        if flags == Encoding.JSON:
            return Message(_loads(payload, "data"), metadata)
        return Message(payload.tobytes(), metadata)

    def _check_control_header(self, length: int, frame_type: int, flags: int) -> None:
        if self._phase is _Phase.HELLO and frame_type not in (FrameType.HELLO, FrameType.CLOSE):
            raise RemoteProtocolError(
                f"frame type {_type_name(frame_type)} arrived before the peer's HELLO"
            )
        if frame_type == FrameType.DATA:
            # Only in the LOGIN phase does DATA come this way (OPEN takes the fast path), so
            # the gate costs the message path nothing.
            if self.role == "client":
                raise RemoteProtocolError("the host sent a message before AUTH_OK")
            raise RemoteProtocolError(
                "a message arrived before the login; this host requires login first",
                CloseCode.POLICY_VIOLATION,
            )
        if frame_type in _FEATURE_OF:
            feature = _FEATURE_OF[frame_type]
            if feature not in self.negotiated:
                raise RemoteProtocolError(
                    f"frame type {_type_name(frame_type)} needs feature {feature!r}, "
                    "which was not negotiated"
                )
            if feature == "auth" and frame_type not in _AUTH_RECEIVED_BY[self.role]:
                sender = "client" if self.role == "host" else "host"
                raise RemoteProtocolError(f"{_type_name(frame_type)} is not sent by a {sender}")
        elif frame_type not in _CONTROL_TYPES:
            raise RemoteProtocolError(f"unknown frame type {frame_type:#04x}")
        if flags:
            raise RemoteProtocolError(
                f"{_type_name(frame_type)} frame with reserved flags {flags:#04x}"
            )
        if length > CONTROL_LIMIT:
            raise RemoteProtocolError(
                f"{_type_name(frame_type)} frame of {length} bytes is over the limit of "
                f"{CONTROL_LIMIT} bytes",
                CloseCode.MESSAGE_TOO_BIG,
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
            return hello
        if frame_type == FrameType.CLOSE:
            self._phase = _Phase.CLOSED
            return _close(body)
        if frame_type == FrameType.PING:
            return Ping(body.tobytes())
        if frame_type == FrameType.PONG:
            return Pong(body.tobytes())
        # A reserved type passes the header check only once its feature is negotiated, and the
        # only feature this version implements is "auth".
        return self._auth(frame_type, body)

    def _auth(self, frame_type: int, body: memoryview) -> Event:
        # The order first, then the body (docs/protocol.md, section 7).
        allowed, after, problem = _AUTH_ORDER[frame_type]
        if self._login not in allowed:
            raise RemoteProtocolError(problem)
        name = _type_name(frame_type)
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
        fields = _loads(body, "HELLO")
        if not isinstance(fields, dict):
            raise RemoteProtocolError("HELLO must be a JSON object", CloseCode.INVALID_DATA)
        role = fields.get("role")
        expected: Role = "client" if self.role == "host" else "host"
        if role != expected:
            raise RemoteProtocolError(
                f"the peer's HELLO says role {_brief(role)}; a {self.role} expects {expected!r}"
            )
        sizes = []
        for name in ("max_message_size", "max_metadata_size"):
            value = fields.get(name)
            if type(value) is not int or not 1 <= value <= MAX_LIMIT:
                raise RemoteProtocolError(
                    f"HELLO field {name!r} must be an integer from 1 to {MAX_LIMIT}, "
                    f"not {_brief(value)}",
                    CloseCode.INVALID_DATA,
                )
            sizes.append(value)
        features = fields.get("features", [])
        if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
            raise RemoteProtocolError(
                "HELLO field 'features' must be a list of strings", CloseCode.INVALID_DATA
            )
        offered = frozenset(features)
        self.negotiated = offered & self.features
        auth_required = False
        if "auth" in self.negotiated:
            if self.role == "client":
                # Version 1 hosts offer login only to require it (docs/protocol.md, 9.8).
                if fields.get("auth_required") is not True:
                    raise RemoteProtocolError(
                        "the host lists feature 'auth' without \"auth_required\": true",
                        CloseCode.INVALID_DATA,
                    )
                auth_required = True
        elif self.login_required:
            raise RemoteProtocolError(
                "this host requires login, and the client does not offer feature 'auth'",
                CloseCode.POLICY_VIOLATION,
            )
        return Hello(self._peer_version, expected, sizes[0], sizes[1], offered, auth_required)


def _brief(value: object) -> str:
    """A short description of a value the peer sent, for an error message.

    Never ``repr()`` of a container: one nested a thousand deep (which orjson decodes) would
    raise RecursionError instead of describing it.
    """
    if value is None or isinstance(value, (bool, float)):
        return repr(value)
    if isinstance(value, int):
        text = str(value) if abs(value) < 10**30 else "a very large integer"
        return text
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "...")
    return "an array" if isinstance(value, list) else "an object"


_CONTROL_TYPES: Final = frozenset(
    (FrameType.HELLO, FrameType.CLOSE, FrameType.PING, FrameType.PONG)
)
_AUTH_RECEIVED_BY: Final[dict[Role, frozenset[int]]] = {
    "host": frozenset((FrameType.AUTH_START, FrameType.AUTH_RESPONSE, FrameType.LOGOUT)),
    "client": frozenset((FrameType.AUTH_CHALLENGE, FrameType.AUTH_OK, FrameType.AUTH_FAIL)),
}


#: For each AUTH frame type: the login states it may arrive in, the state it leads to, and the
#: error when it comes out of order. Which side receives which types is checked before this.
_AUTH_ORDER: Final[dict[int, tuple[frozenset[_Login], _Login, str]]] = {
    # Received by a host.
    FrameType.AUTH_START: (
        frozenset((_Login.IDLE,)),
        _Login.STARTED,
        "AUTH_START arrived after a login had begun",
    ),
    FrameType.AUTH_RESPONSE: (
        frozenset((_Login.STARTED,)),
        _Login.ANSWERED,
        "AUTH_RESPONSE arrived without an AUTH_START before it",
    ),
    FrameType.LOGOUT: (
        frozenset((_Login.DONE,)),
        _Login.LOGGED_OUT,
        "LOGOUT arrived from a client that is not logged in",
    ),
    # Received by a client.
    FrameType.AUTH_CHALLENGE: (
        frozenset((_Login.IDLE,)),
        _Login.STARTED,
        "AUTH_CHALLENGE arrived out of order",
    ),
    FrameType.AUTH_OK: (
        frozenset((_Login.STARTED,)),
        _Login.DONE,
        "AUTH_OK arrived without an AUTH_CHALLENGE before it",
    ),
    FrameType.AUTH_FAIL: (
        frozenset((_Login.IDLE, _Login.STARTED)),
        _Login.ANSWERED,
        "AUTH_FAIL arrived after the login had ended",
    ),
}


def _auth_fields(body: memoryview, name: str) -> dict[str, Any]:
    fields = _loads(body, name)
    if not isinstance(fields, dict):
        raise RemoteProtocolError(f"{name} must be a JSON object", CloseCode.INVALID_DATA)
    return fields


def _auth_string(fields: dict[str, Any], key: str, name: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str):
        raise RemoteProtocolError(
            f"{name} field {key!r} must be a string, not {_brief(value)}", CloseCode.INVALID_DATA
        )
    return value


def _close(body: memoryview) -> Close:
    if len(body) < 2:
        raise RemoteProtocolError("CLOSE frame without a close code")
    (code,) = _CLOSE_CODE.unpack_from(body)
    try:
        reason = str(body[2:], "utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(
            "CLOSE reason is not valid UTF-8", CloseCode.INVALID_DATA
        ) from exc
    return Close(code, reason)


def _type_name(frame_type: int) -> str:
    try:
        return FrameType(frame_type).name
    except ValueError:
        return f"{frame_type:#04x}"


def _describe_foreign_bytes(seen: bytes) -> str:
    # Say what the peer probably is: these are the usual mistakes on a misconfigured port.
    if seen[:1] == b"\x16":
        return "the peer started a TLS handshake; is it configured for TLS while this side is not?"
    if seen[:1].isalpha() and seen.isascii():
        return f"the peer is not speaking the alvaro protocol (it sent {seen!r}, perhaps HTTP)"
    return f"the peer is not speaking the alvaro protocol (it sent {seen!r})"
