"""The rules of feature ``request`` beyond its frame layouts (``docs/protocol.md``, section 9.3):
request ids, the deadline a REQUEST carries, and the JSON body of a REPLY with the ERROR flag.

Pure functions, shared by the encoders and the :class:`~alvaro.protocol.Decoder`, so that each
rule has one home. Matching replies to requests is not here: the decoder reports every REPLY
and CANCEL, and the connection keeps the table of its pending requests.
"""

from __future__ import annotations

import math
from typing import Final

from .._close_codes import CloseCode
from ..exceptions import RemoteProtocolError
from ._json import brief, dumps
from .frames import CONTROL_LIMIT, MAX_REQUEST_ID, MAX_TIMEOUT_MS, REPLY_PREFIX_SIZE

__all__ = (
    "ERROR_KINDS",
    "MAX_ERROR_MESSAGE",
    "MAX_ERROR_TRACEBACK",
    "MAX_ERROR_TYPE",
    "check_request_id",
    "error_body",
    "read_error",
    "shorten",
    "timeout_ms",
    "timeout_seconds",
)

ERROR_KINDS: Final = ("error", "no_handler", "busy", "cancelled")
"""Why a request failed, as a REPLY with the ERROR flag says it: the handler raised; nobody
answers requests there; too many requests of this connection are running there; the answering
side cancelled the handler itself (for example, it is shutting down)."""
MAX_ERROR_MESSAGE: Final = 1024
"""The encoder shortens an error's ``message`` to this many UTF-8 bytes."""
MAX_ERROR_TYPE: Final = 256
"""The encoder shortens an error's ``type`` to this many UTF-8 bytes."""
MAX_ERROR_TRACEBACK: Final = 2048
"""The encoder keeps the last this many UTF-8 bytes of an error's ``traceback``."""

# The JSON body of an error REPLY fits in the control limit with the REPLY's fixed prefix.
_ERROR_BODY_LIMIT: Final = CONTROL_LIMIT - REPLY_PREFIX_SIZE


def check_request_id(request_id: int) -> None:
    """Refuse a request id that does not fit in the frame's u32 field.

    Raises:
        ValueError: ``request_id`` is not an ``int`` from 0 to 2**32 - 1.
    """
    if type(request_id) is not int or not 0 <= request_id <= MAX_REQUEST_ID:
        raise ValueError(
            f"request_id must be an int from 0 to {MAX_REQUEST_ID}, not {request_id!r}"
        )


def timeout_ms(timeout: float | None) -> int:
    """The ``timeout_ms`` field of a REQUEST whose asker waits ``timeout`` seconds.

    Rounded up to a whole millisecond (at least 1), so that the answering side, which starts
    counting when the REQUEST arrives, never gives up before the asker. ``None``, and a deadline
    too far for the field (infinity included), travel as 0: no deadline.

    Raises:
        ValueError: ``timeout`` is not a positive number.
    """
    if timeout is None or timeout == math.inf:
        return 0
    if not timeout > 0:  # NaN included
        raise ValueError(f"a request's timeout must be positive, not {timeout!r}")
    # Rounded to a nanosecond first, so that float error (0.1 s is 100.00000000000001 ms)
    # does not make 100 ms into 101.
    ms = max(1, math.ceil(round(timeout * 1000, 6)))
    return ms if ms <= MAX_TIMEOUT_MS else 0


def timeout_seconds(ms: int) -> float | None:
    """The deadline a received ``timeout_ms`` field states, in seconds; ``None`` for 0."""
    return ms / 1000 if ms else None


def shorten(text: str, limit: int, *, keep_end: bool = False) -> str:
    """``text`` in at most ``limit`` UTF-8 bytes, cut at a character boundary (its start, or
    its end with ``keep_end``), with lone surrogates replaced so that it can always be sent."""
    raw = text.encode("utf-8", "replace")
    if len(raw) > limit:
        raw = raw[-limit:] if keep_end else raw[:limit]
    # "ignore" drops only the character the cut went through.
    return raw.decode("utf-8", "ignore")


def error_body(kind: str, message: str, remote_type: str | None, traceback: str | None) -> bytes:
    """The JSON payload of a REPLY with the ERROR flag, made to fit in the control limit.

    Raises:
        ValueError: ``kind`` is not one of :data:`ERROR_KINDS`.
    """
    if kind not in ERROR_KINDS:
        raise ValueError(f"kind must be one of {', '.join(ERROR_KINDS)}; not {kind!r}")
    fields = {"kind": kind, "message": shorten(message, MAX_ERROR_MESSAGE)}
    if remote_type is not None:
        fields["type"] = shorten(remote_type, MAX_ERROR_TYPE)
    if traceback is not None:
        fields["traceback"] = shorten(traceback, MAX_ERROR_TRACEBACK, keep_end=True)
    body = dumps(fields, "error")
    # Only escapes (up to six bytes for one) can make it longer than the limit: give up the
    # traceback first, then halve the message until it fits. The type alone always fits.
    fields.pop("traceback", None)
    while len(body) > _ERROR_BODY_LIMIT:
        body = dumps(fields, "error")
        fields["message"] = fields["message"][: len(fields["message"]) // 2]
    return body


def read_error(fields: object) -> tuple[str, str, str | None, str | None]:
    """Check the payload of a received REPLY with the ERROR flag, decoded from JSON.

    Returns:
        Its kind (``"error"`` for a kind this version does not know), message, type and
        traceback.

    Raises:
        RemoteProtocolError: INVALID_DATA: not an object, ``kind`` or ``message`` missing or
            not a string, ``type`` or ``traceback`` present and not a string.
    """
    if not isinstance(fields, dict):
        raise RemoteProtocolError(
            f"an error REPLY must carry a JSON object, not {brief(fields)}", CloseCode.INVALID_DATA
        )
    kind = _string(fields, "kind")
    message = _string(fields, "message")
    remote_type = _string(fields, "type") if "type" in fields else None
    traceback = _string(fields, "traceback") if "traceback" in fields else None
    # Forward compatible: a kind added later reads as a plain failure (docs/protocol.md, 9.4).
    return (kind if kind in ERROR_KINDS else "error"), message, remote_type, traceback


def _string(fields: dict[str, object], name: str) -> str:
    value = fields.get(name)
    if not isinstance(value, str):
        raise RemoteProtocolError(
            f"an error REPLY's {name!r} must be a string, not {brief(value)}",
            CloseCode.INVALID_DATA,
        )
    return value
