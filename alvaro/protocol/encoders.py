"""The encoders of the alvaro wire protocol, version 1: messages and control frames as bytes.

Each function returns one complete frame, ready for the socket (``encode_hello`` also the
preamble before it); ``docs/protocol.md`` specifies the bytes. Nothing here does I/O::

    frame = encode_message({"x": 1}, {"kind": "point"})
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..exceptions import EncodeError, MessageTooLarge
from ._json import dumps
from .frames import (
    AUTH_MECHANISM,
    CLOSE_CODE,
    CONTROL_LIMIT,
    DATA_HEADER,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_METADATA_SIZE,
    HEADER,
    MAX_CLOSE_REASON,
    MAX_LIMIT,
    META_LENGTH_SIZE,
    PREAMBLE,
    REPLY_ERROR,
    REPLY_HEADER,
    REPLY_PREFIX_SIZE,
    REQUEST_HEADER,
    REQUEST_ID,
    Encoding,
    FrameType,
)
from .request import check_request_id, error_body, shorten, timeout_ms

if TYPE_CHECKING:
    import struct
    from collections.abc import Iterable

    from .._types import Metadata
    from .frames import Role

__all__ = (
    "encode_auth_challenge",
    "encode_auth_fail",
    "encode_auth_ok",
    "encode_auth_response",
    "encode_auth_start",
    "encode_cancel",
    "encode_close",
    "encode_hello",
    "encode_logout",
    "encode_message",
    "encode_ping",
    "encode_pong",
    "encode_refusal",
    "encode_reply",
    "encode_reply_error",
    "encode_request",
)


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
    # Written out here rather than shared with REQUEST and REPLY: this is every message's
    # path, and a helper call costs a quarter of it.
    if metadata:
        if not isinstance(metadata, dict):
            raise EncodeError(f"metadata must be a dict, not {type(metadata).__name__}")
        meta = dumps(metadata, "metadata")
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
        payload = dumps(data, "data")
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
    return (
        DATA_HEADER.pack(size + META_LENGTH_SIZE, FrameType.DATA, encoding, meta_size)
        + meta
        + payload
    )


def encode_request(
    request_id: int,
    data: object,
    metadata: Metadata | None = None,
    *,
    timeout: float | None = None,
    max_message_size: int | None = None,
    max_metadata_size: int | None = None,
) -> bytes:
    """Encode a REQUEST frame (feature ``request``): a message that asks for one REPLY.

    Args:
        request_id: the id the REPLY will carry, 0 to 2**32 - 1, not in use by another request
            of this side that is still waiting.
        data: as for :func:`encode_message`.
        metadata: as for :func:`encode_message`.
        timeout: seconds after which the asker stops waiting, or ``None`` for no deadline.
            It travels as whole milliseconds, rounded up, so that the answering side never
            gives up before the asker; a deadline beyond :data:`MAX_TIMEOUT_MS` (infinity
            included) travels as none.
        max_message_size: the receiver's limit on metadata plus payload, if known.
        max_metadata_size: the receiver's limit on the encoded metadata, if known.

    Raises:
        ValueError: ``request_id`` is out of range, or ``timeout`` is not positive.
        EncodeError: as for :func:`encode_message`.
        MessageTooLarge: as for :func:`encode_message`.
    """
    check_request_id(request_id)
    fixed = (request_id, timeout_ms(timeout))
    return _prefixed_message(
        FrameType.REQUEST,
        REQUEST_HEADER,
        fixed,
        data,
        metadata,
        max_message_size,
        max_metadata_size,
    )


def encode_reply(
    request_id: int,
    data: object,
    metadata: Metadata | None = None,
    *,
    max_message_size: int | None = None,
    max_metadata_size: int | None = None,
) -> bytes:
    """Encode a REPLY frame (feature ``request``): the answer to the peer's request
    ``request_id``. The arguments and errors are those of :func:`encode_message`, and
    ``ValueError`` for an id out of range."""
    check_request_id(request_id)
    return _prefixed_message(
        FrameType.REPLY,
        REPLY_HEADER,
        (request_id,),
        data,
        metadata,
        max_message_size,
        max_metadata_size,
    )


def _prefixed_message(
    frame_type: FrameType,
    layout: struct.Struct,
    fixed: tuple[int, ...],
    data: object,
    metadata: Metadata | None,
    max_message_size: int | None,
    max_metadata_size: int | None,
) -> bytes:
    """A frame whose ``layout`` is the header, the ``fixed`` fields and the metadata length,
    followed by the metadata and the payload: REQUEST and REPLY. The message part is encoded
    and checked as a DATA frame's is, within a limit that leaves room for the fixed fields in
    the u32 body length; then the DATA header gives way to this frame's."""
    extra = layout.size - DATA_HEADER.size  # the fixed fields before the metadata length
    largest = MAX_LIMIT - extra
    data_frame = encode_message(
        data,
        metadata,
        max_message_size=largest if max_message_size is None else min(max_message_size, largest),
        max_metadata_size=max_metadata_size,
    )
    length, _, encoding, meta_size = DATA_HEADER.unpack_from(data_frame)
    head = layout.pack(length + extra, frame_type, encoding, *fixed, meta_size)
    return head + memoryview(data_frame)[DATA_HEADER.size :]


def encode_reply_error(
    request_id: int,
    kind: str,
    message: str,
    *,
    remote_type: str | None = None,
    traceback: str | None = None,
) -> bytes:
    """Encode a REPLY frame with the ERROR flag: the peer's request ``request_id`` failed.

    The frame always fits in 4096 bytes, the limit every receiver accepts for it: ``message``
    is shortened to 1024 UTF-8 bytes, ``remote_type`` to 256, ``traceback`` to its last 2048,
    and, when escapes still make the body too long, the traceback is left out and the message
    shortened further.

    Args:
        request_id: the id of the request that failed.
        kind: ``"error"`` (the handler raised), ``"no_handler"``, ``"busy"`` or
            ``"cancelled"`` (:data:`ERROR_KINDS`).
        message: what went wrong, for a person.
        remote_type: the name of the exception the handler raised (with kind ``"error"``).
        traceback: the handler's traceback; send it only when the application opted in.

    Raises:
        ValueError: ``request_id`` is out of range, or ``kind`` is not one of
            :data:`ERROR_KINDS`.
    """
    check_request_id(request_id)
    body = error_body(kind, message, remote_type, traceback)
    return (
        REPLY_HEADER.pack(
            REPLY_PREFIX_SIZE + len(body), FrameType.REPLY, REPLY_ERROR, request_id, 0
        )
        + body
    )


def encode_cancel(request_id: int) -> bytes:
    """Encode a CANCEL frame (feature ``request``): this side no longer waits for the answer
    to its request ``request_id``."""
    check_request_id(request_id)
    return _control_frame(FrameType.CANCEL, REQUEST_ID.pack(request_id))


def _control_frame(frame_type: FrameType, body: bytes) -> bytes:
    if len(body) > CONTROL_LIMIT:
        raise ValueError(f"{frame_type.name} body of {len(body)} bytes is over {CONTROL_LIMIT}")
    return HEADER.pack(len(body), frame_type, 0) + body


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
    return PREAMBLE + _control_frame(FrameType.HELLO, dumps(body, "HELLO"))


def encode_close(code: int, reason: str = "") -> bytes:
    """Encode a CLOSE frame; a reason longer than 1024 UTF-8 bytes is shortened."""
    if not 0 <= code <= 0xFFFF:
        raise ValueError(f"close code must fit in 16 bits, not {code}")
    raw = shorten(reason, MAX_CLOSE_REASON).encode("utf-8", "replace")
    return _control_frame(FrameType.CLOSE, CLOSE_CODE.pack(code) + raw)


def encode_refusal(code: int, reason: str = "") -> bytes:
    """Encode the preamble and a CLOSE frame: how a host turns a connection away before its
    HELLO, for example when it is overloaded or requires TLS (``docs/protocol.md``, 2.3)."""
    return PREAMBLE + encode_close(code, reason)


def encode_ping(payload: bytes = b"") -> bytes:
    """Encode a PING frame; the peer echoes ``payload`` in its PONG."""
    return _control_frame(FrameType.PING, payload)


def encode_pong(payload: bytes = b"") -> bytes:
    """Encode a PONG frame answering a PING with this ``payload``."""
    return _control_frame(FrameType.PONG, payload)


def _auth_frame(frame_type: FrameType, **fields: str) -> bytes:
    # Over CONTROL_LIMIT only with a caller's own over-long strings: the peer could not accept it.
    return _control_frame(frame_type, dumps(fields, frame_type.name))


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
