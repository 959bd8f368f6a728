"""JSON as the protocol uses it: strict (RFC 8259: no NaN, no Infinity), compact, and fast.

Encoding reports what cannot be encoded as :class:`~alvaro.exceptions.EncodeError`; decoding
reports the peer's invalid JSON or UTF-8 as :class:`~alvaro.exceptions.RemoteProtocolError` with
close code INVALID_DATA. orjson, when installed, decodes; the standard library decides every
input on which the two would differ.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from .._close_codes import CloseCode
from ..exceptions import EncodeError, RemoteProtocolError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("brief", "dumps", "loads")


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
# then ends in RecursionError, which dumps() reports like any other encoding error.
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


def dumps(value: object, what: str) -> bytes:
    """``value`` as compact UTF-8 JSON; :class:`EncodeError` names ``what`` if it cannot be."""
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


def loads(raw: memoryview, what: str) -> Any:
    """The value of the peer's JSON ``raw``; invalid JSON or UTF-8 is a protocol error
    (INVALID_DATA) that names ``what``."""
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


def brief(value: object) -> str:
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
