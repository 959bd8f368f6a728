"""The bytes of the wire protocol: preamble, frame header layouts, frame types, sizes and limits.

Every size the protocol fixes is named here (``docs/protocol.md``, sections 2 and 3), so that no
other module re-derives one: a frame is a :data:`HEADER` (body length, type, flags) and a body;
a DATA body starts with the metadata length (:data:`META_LENGTH`), so a DATA frame begins with
:data:`DATA_HEADER`; a CLOSE body starts with the code (:data:`CLOSE_CODE`). Feature ``request``
(section 9.3) adds REQUEST (:data:`REQUEST_HEADER`: id, timeout, metadata length), REPLY
(:data:`REPLY_HEADER`: id, metadata length) and CANCEL (its body a :data:`REQUEST_ID`).
"""

from __future__ import annotations

import enum
import struct
from typing import Final, Literal, TypeAlias

__all__ = (
    "AUTH_MECHANISM",
    "CLOSE_CODE",
    "CONTROL_LIMIT",
    "CONTROL_TYPES",
    "DATA_HEADER",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_METADATA_SIZE",
    "FEATURE_OF",
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "MAX_BODY",
    "MAX_CLOSE_REASON",
    "MAX_LIMIT",
    "MAX_REQUEST_ID",
    "MAX_TIMEOUT_MS",
    "META_LENGTH",
    "META_LENGTH_SIZE",
    "PREAMBLE",
    "REPLY_ERROR",
    "REPLY_HEADER",
    "REPLY_PREFIX_SIZE",
    "REQUEST_HEADER",
    "REQUEST_ID",
    "REQUEST_PREFIX_SIZE",
    "SUPPORTED_FEATURES",
    "VERSION",
    "Encoding",
    "FrameType",
    "Role",
    "data_frame_sizes",
    "may_be_preamble",
    "type_name",
)

MAGIC: Final = b"ALVARO"
"""The six bytes every alvaro connection starts with, in both directions."""
VERSION: Final = 1
"""The protocol version this package speaks."""
PREAMBLE: Final = MAGIC + bytes((VERSION, 0))
"""Magic, version, and one reserved zero byte: the first eight bytes each side sends."""

HEADER: Final = struct.Struct("!IBB")
"""Every frame's header: body length (u32), frame type (u8), flags (u8)."""
HEADER_SIZE: Final = HEADER.size
META_LENGTH: Final = struct.Struct("!I")
"""The first field of a DATA body: the length of the encoded metadata that follows (u32)."""
META_LENGTH_SIZE: Final = META_LENGTH.size
DATA_HEADER: Final = struct.Struct("!IBBI")
"""A DATA frame's :data:`HEADER` followed by its :data:`META_LENGTH`, read or written at once."""
CLOSE_CODE: Final = struct.Struct("!H")
"""The first field of a CLOSE body: the close code (u16); the UTF-8 reason follows."""
REQUEST_HEADER: Final = struct.Struct("!IBBIII")
"""A REQUEST frame's :data:`HEADER` followed by its fixed prefix: request id (u32), timeout in
milliseconds (u32, 0 for none), metadata length (u32)."""
REQUEST_PREFIX_SIZE: Final = REQUEST_HEADER.size - HEADER_SIZE
"""The bytes of a REQUEST body before its metadata (12)."""
REPLY_HEADER: Final = struct.Struct("!IBBII")
"""A REPLY frame's :data:`HEADER` followed by its fixed prefix: request id (u32), metadata
length (u32)."""
REPLY_PREFIX_SIZE: Final = REPLY_HEADER.size - HEADER_SIZE
"""The bytes of a REPLY body before its metadata (8)."""
REQUEST_ID: Final = struct.Struct("!I")
"""A request id (u32): the first field of REQUEST and REPLY bodies, and the whole CANCEL body."""
REPLY_ERROR: Final = 0x04
"""The flag of a REPLY that reports a failed request; its payload is a JSON object."""
MAX_REQUEST_ID: Final = 2**32 - 1
"""The largest request id (a u32)."""
MAX_TIMEOUT_MS: Final = 2**32 - 1
"""The longest deadline a REQUEST can carry, in milliseconds (about 49.7 days)."""

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

MAX_BODY: Final = 2**32 - 1
"""The largest body length a frame header can state (a u32)."""
MAX_LIMIT: Final = MAX_BODY - META_LENGTH_SIZE
"""The largest size limit the protocol can state: a u32 body length less a DATA frame's
metadata-length field."""

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
    CANCEL = 0x07  # reserved: feature "request"
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


SUPPORTED_FEATURES: Final[frozenset[str]] = frozenset({"auth", "request"})
"""Optional features this version of the codec implements (see ``FrameType``)."""
FEATURE_OF: Final[dict[int, str]] = {
    FrameType.REQUEST: "request",
    FrameType.REPLY: "request",
    FrameType.CANCEL: "request",
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
"""The feature each reserved frame type belongs to."""
CONTROL_TYPES: Final = frozenset((FrameType.HELLO, FrameType.CLOSE, FrameType.PING, FrameType.PONG))
"""The frame types, other than DATA, that need no feature."""


def type_name(frame_type: int) -> str:
    """The name of a frame type for messages, or its number in hex when it has none."""
    try:
        return FrameType(frame_type).name
    except ValueError:
        return f"{frame_type:#04x}"


def may_be_preamble(first: bytes | bytearray) -> bool:
    """Whether the first bytes a peer sent may begin an alvaro preamble (its magic so far)."""
    return MAGIC.startswith(bytes(first[: len(MAGIC)]))


def data_frame_sizes(frame: bytes) -> tuple[int, int]:
    """The message size (metadata plus payload) and the metadata size of an encoded DATA frame,
    read from its header: what a receiver's limits apply to."""
    body, _, _, meta_size = DATA_HEADER.unpack_from(frame)
    return body - META_LENGTH_SIZE, meta_size
