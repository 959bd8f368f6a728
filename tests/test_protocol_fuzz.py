"""Fuzzing of the sans-I/O codec in ``alvaro.protocol`` (reliability cases R01 and R03).

Three parts:

- a Hypothesis state machine that plays a peer through a connection's life (preamble, HELLO, the
  login when feature ``auth`` is negotiated, then DATA, PING, PONG and CLOSE frames, valid and
  invalid, cut into arbitrary pieces) against a :class:`~alvaro.protocol.Decoder`, and checks the
  decoder against a model of what it must deliver;
- mutation fuzzing of a corpus of valid frames, after a plain opening or a login: bit flips,
  truncation, duplication, splices, reserved flags, unknown types and lying lengths;
- the explicit malformed inputs of R03 that ``tests/test_protocol.py`` does not already cover,
  under both JSON back ends (orjson when installed, and the standard library).

The invariants everywhere: the decoder returns events or raises
:class:`~alvaro.exceptions.RemoteProtocolError` with a close code of section 7 of
``docs/protocol.md``, never an incidental error; the valid frames before a bad one are all
delivered, in order; after an error or a CLOSE it delivers nothing more; it never buffers more
than one frame header plus its size limit.

Each property runs with the selected Hypothesis profile (``tests/hypothesis_profiles.py``) and
has a long variant marked ``slow``: ``python3 -m pytest -m slow``.
"""

from __future__ import annotations

import itertools
import json
import math
import struct
import sys
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from alvaro import CloseCode, MessageTooLarge, RemoteProtocolError
from alvaro.protocol import (
    CONTROL_LIMIT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_METADATA_SIZE,
    MAGIC,
    MAX_LIMIT,
    PREAMBLE,
    VERSION,
    AuthChallenge,
    AuthFail,
    AuthOk,
    AuthResponse,
    AuthStart,
    Close,
    Decoder,
    Encoding,
    Event,
    FrameType,
    Hello,
    Logout,
    Message,
    Ping,
    Pong,
    Role,
    _json,
    encode_auth_challenge,
    encode_auth_fail,
    encode_auth_ok,
    encode_auth_response,
    encode_auth_start,
    encode_close,
    encode_hello,
    encode_logout,
    encode_message,
    encode_ping,
    encode_pong,
)
from tests.hypothesis_profiles import LONG_TIMEOUT, default_settings, long_settings

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HEADER = struct.Struct("!IBB")
HEADER_SIZE = HEADER.size
AUTH_EVENTS: dict[Role, tuple[type, ...]] = {
    "host": (AuthStart, AuthResponse, Logout),
    "client": (AuthChallenge, AuthOk, AuthFail),
}
EVENT_TYPES = (Hello, Message, Ping, Pong, Close, *AUTH_EVENTS["host"], *AUTH_EVENTS["client"])
# The close codes of section 7 of docs/protocol.md that a decoder may raise.
DECODER_CODES = frozenset(
    (
        CloseCode.PROTOCOL_ERROR,
        CloseCode.UNSUPPORTED,
        CloseCode.INVALID_DATA,
        CloseCode.POLICY_VIOLATION,
        CloseCode.MESSAGE_TOO_BIG,
    )
)
KNOWN_TYPES = frozenset(int(t) for t in FrameType)
RESERVED_TYPES = sorted(
    KNOWN_TYPES - {FrameType.DATA, FrameType.PING, FrameType.PONG, FrameType.CLOSE, FrameType.HELLO}
)
UNKNOWN_TYPES = sorted(frozenset(range(256)) - KNOWN_TYPES)
CONTROL_TYPES = [FrameType.PING, FrameType.PONG, FrameType.CLOSE, FrameType.HELLO]
# The AUTH frame types each role receives (docs/protocol.md, 9.8); the others go the other way.
AUTH_RECEIVED: dict[Role, list[int]] = {
    "host": [FrameType.AUTH_START, FrameType.AUTH_RESPONSE, FrameType.LOGOUT],
    "client": [FrameType.AUTH_CHALLENGE, FrameType.AUTH_OK, FrameType.AUTH_FAIL],
}

# (max_message_size, max_metadata_size) of the decoders under test: tiny limits make the size
# checks reachable, the defaults let large inputs (deep nesting, long numbers) through.
LIMITS = [(64, 16), (48, 1000), (1000, 100), (DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_METADATA_SIZE)]

HOST_HELLO = encode_hello("host")
PEER_HELLO = Hello(VERSION, "host", DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_METADATA_SIZE)
# A host that requires login, and the start of a login that a client decoder receives from it.
LOGIN_HOST_HELLO = encode_hello("host", features=["auth"], auth_required=True)
LOGIN_PEER_HELLO = Hello(
    VERSION,
    "host",
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_METADATA_SIZE,
    frozenset({"auth"}),
    auth_required=True,
)

# Default-run settings: the whole profile for the properties that matter most, a share of it for
# the narrower ones, so that the default suite stays fast.
MACHINE = default_settings(0.4, stateful_step_count=20)
CORPUS_FUZZ = default_settings()
R03_PROPERTY = default_settings()
LOGIN_SCRIPTS = default_settings(0.4)
MACHINE_LONG = long_settings(stateful_step_count=60)
LONG = long_settings()


# --- Helpers ----------------------------------------------------------------------------------


def frame(frame_type: int, body: bytes = b"", flags: int = 0, length: int | None = None) -> bytes:
    """A raw frame; ``length`` overrides the body length the header states."""
    return HEADER.pack(len(body) if length is None else length, frame_type, flags) + body


def data_frame(
    payload: bytes, meta: bytes = b"", *, flags: int = Encoding.JSON, meta_length: int | None = None
) -> bytes:
    stated = len(meta) if meta_length is None else meta_length
    return frame(FrameType.DATA, struct.pack("!I", stated) + meta + payload, flags)


def hello_frame(body: bytes, flags: int = 0) -> bytes:
    """A HELLO frame, without the preamble."""
    return frame(FrameType.HELLO, body, flags)


def host_hello_body(**changes: object) -> bytes:
    fields: dict[str, object] = {
        "role": "host",
        "max_message_size": 1000,
        "max_metadata_size": 100,
        "features": [],
    }
    fields.update(changes)
    return json.dumps(fields).encode()


def other_role(role: Role) -> Role:
    return "client" if role == "host" else "host"


def opened() -> Decoder:
    decoder = Decoder("client")
    decoder.receive_data(HOST_HELLO)
    assert decoder.events() == [PEER_HELLO]
    return decoder


def buffer_limit(decoder: Decoder) -> int:
    """The most a decoder may keep: one frame header plus the largest body it accepts."""
    return HEADER_SIZE + max(decoder.max_message_size + 4, CONTROL_LIMIT)


def check_error(error: BaseException | None) -> None:
    """Only a RemoteProtocolError carrying one of the decoder's close codes may come out."""
    if error is None:
        return
    assert isinstance(error, RemoteProtocolError), repr(error)
    assert isinstance(error.code, CloseCode)
    assert error.code in DECODER_CODES


def check_events(decoder: Decoder, events: list[Event], error: BaseException | None) -> None:
    """The invariants that hold for any input, however broken."""
    check_error(error)
    assert all(isinstance(event, EVENT_TYPES) for event in events)
    # AUTH events only when "auth" is negotiated, and only those of the peer's direction.
    auth_events = AUTH_EVENTS["host"] + AUTH_EVENTS["client"]
    for event in events:
        if isinstance(event, auth_events):
            assert "auth" in decoder.negotiated
            assert isinstance(event, AUTH_EVENTS[decoder.role])
    logouts = [i for i, event in enumerate(events) if isinstance(event, Logout)]
    if logouts:  # a host takes no message after LOGOUT
        assert not any(isinstance(event, Message) for event in events[logouts[0] + 1 :])
        assert not decoder.logged_in
    hellos = [i for i, event in enumerate(events) if isinstance(event, Hello)]
    closes = [i for i, event in enumerate(events) if isinstance(event, Close)]
    assert hellos in ([], [0])  # at most one HELLO, and it comes first
    assert closes in ([], [len(events) - 1])  # nothing after a CLOSE
    if not hellos:  # before the HELLO, only a CLOSE may arrive
        assert all(isinstance(event, Close) for event in events)
    for event in events:
        if isinstance(event, Hello):
            assert event.role == other_role(decoder.role)
            assert event.version >= 1
            assert 1 <= event.max_message_size <= MAX_LIMIT
            assert 1 <= event.max_metadata_size <= MAX_LIMIT
            assert all(isinstance(name, str) for name in event.features)
            assert decoder.negotiated == event.features & decoder.features
            assert event.auth_required == (
                decoder.role == "client" and "auth" in decoder.negotiated
            )
        elif isinstance(event, Message):
            assert type(event.metadata) is dict
            if type(event.data) is bytes:
                assert len(event.data) <= decoder.max_message_size
        elif isinstance(event, (Ping, Pong)):
            assert type(event.payload) is bytes
            assert len(event.payload) <= CONTROL_LIMIT
        elif isinstance(event, Close):
            assert 0 <= event.code <= 0xFFFF
            assert type(event.reason) is str
        elif not isinstance(event, Logout):
            texts = [getattr(event, name) for name in event.__slots__]
            assert all(type(text) is str for text in texts)
    assert decoder.handshake_complete == bool(hellos)
    assert decoder.closed == bool(closes)
    if closes:
        assert error is None
        assert decoder.buffered == 0
    elif error is None:
        assert 0 <= decoder.buffered < buffer_limit(decoder)


def check_refuses_more(decoder: Decoder) -> None:
    """After an error, the decoder takes nothing more and delivers nothing more."""
    for more in (b"", b"\x00", HOST_HELLO, encode_ping()):
        with pytest.raises(RemoteProtocolError):
            decoder.receive_data(more)
        assert decoder.events() == []


LATE_BYTES = (encode_ping(b"late"), b"\xff" * 7, HOST_HELLO, encode_close(1000))


def check_drops_more(decoder: Decoder) -> None:
    """After the peer's CLOSE, the decoder drops every byte: no event, nothing buffered."""
    for more in LATE_BYTES:
        decoder.receive_data(more)
        assert decoder.events() == []
        assert decoder.buffered == 0
        assert decoder.closed


def check_the_end(decoder: Decoder, error: RemoteProtocolError | None) -> None:
    """After an error or a CLOSE, nothing more comes out, whatever comes in."""
    if error is not None:
        check_refuses_more(decoder)
    elif decoder.closed:
        check_drops_more(decoder)


def feed(decoder: Decoder, pieces: list[bytes]) -> tuple[list[Event], RemoteProtocolError | None]:
    """Feed ``pieces`` until the decoder raises; return the events and the error."""
    events: list[Event] = []
    for piece in pieces:
        try:
            decoder.receive_data(piece)
        except RemoteProtocolError as exc:
            events += decoder.events()
            return events, exc
        events += decoder.events()
        if not decoder.closed:
            assert decoder.buffered < buffer_limit(decoder)
    return events, None


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    """Cut ``stream`` at ``points``; repeated points make empty pieces."""
    bounds = [0, *sorted(p % (len(stream) + 1) for p in points), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


def first_difference(a: bytes, b: bytes) -> int:
    """The offset of the first byte where ``a`` and ``b`` differ (or where the shorter ends)."""
    shorter = min(len(a), len(b))
    return next((i for i in range(shorter) if a[i] != b[i]), shorter)


MUTATIONS = ("flip", "truncate", "duplicate", "splice", "insert", "delete")
byte_mutations = st.lists(
    st.tuples(
        st.sampled_from(MUTATIONS),
        st.integers(0, 2**16),
        st.integers(0, 2**16),
        st.integers(0, 7),
        st.binary(max_size=8),
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, other: bytes, ops: list[tuple[str, int, int, int, bytes]]) -> bytes:
    """Apply byte-level mutations: bit flips, truncation, duplication, splices, inserts, deletes."""
    out = bytearray(data)
    for op, a, b, bit, blob in ops:
        i = a % (len(out) + 1)
        if op == "flip":
            if out:
                out[a % len(out)] ^= 1 << bit
        elif op == "truncate":
            del out[i:]
        elif op == "duplicate":
            out[i:i] = out[i : i + 1 + b % 32]
        elif op == "splice":
            out[i:] = other[b % (len(other) + 1) :]
        elif op == "insert":
            out[i:i] = blob
        else:
            del out[i : i + 1 + b % 16]
    return bytes(out)


@pytest.fixture(params=["orjson", "stdlib"])
def json_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test with orjson decoding (when installed) and with the standard library only."""
    if request.param == "orjson":
        if _json._orjson_loads is None:
            pytest.skip("orjson (the speedups extra) is not installed")
    else:
        monkeypatch.setattr(_json, "_orjson_loads", None)
    return str(request.param)


# --- Strategies -------------------------------------------------------------------------------

keys = st.text(max_size=6)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=6,
)
# Cheaper to draw, for values whose shape matters less than their presence.
small_values = (
    json_leaves | st.lists(json_leaves, max_size=2) | st.dictionaries(keys, json_leaves, max_size=2)
)
metadata_values = st.dictionaries(keys, small_values, max_size=3)


def nest(leaf: object, containers: list[str]) -> object:
    value = leaf
    for container in containers:
        value = [value] if container == "list" else {"k": value}
    return value


# Values nested up to 20 deep, as R01 asks for; json_values rarely goes past 4.
deep_values = st.builds(
    nest, json_leaves, st.lists(st.sampled_from(["list", "dict"]), min_size=5, max_size=20)
)
payloads = st.binary(max_size=48)
close_reasons = st.text(max_size=24)
close_codes = st.sampled_from([1000, 1001, 1002, 4000, 4100]) | st.integers(0, 0xFFFF)
sizes = st.sampled_from([1, 1000, DEFAULT_MAX_MESSAGE_SIZE, MAX_LIMIT]) | st.integers(1, MAX_LIMIT)
feature_lists = st.lists(st.text(max_size=8), max_size=3)
# Members a HELLO may carry beyond the four of version 1: receivers ignore them.
extra_members = st.dictionaries(keys.map(lambda k: "x-" + k), small_values, max_size=2)
json_styles: st.SearchStrategy[dict[str, Any]] = st.sampled_from(
    [
        {"separators": (",", ":"), "ensure_ascii": False},
        {"ensure_ascii": True},
        {"indent": 1},
        {"separators": (" , ", " : ")},
    ]
)


auth_texts = st.text(max_size=40)
# A valid frame of each AUTH type (valid where the login's order allows it), and its members.
AUTH_FRAME_OF: dict[int, st.SearchStrategy[bytes]] = {
    FrameType.AUTH_START: st.builds(encode_auth_start, auth_texts)
    | st.builds(encode_auth_start, auth_texts, mechanism=auth_texts),
    FrameType.AUTH_CHALLENGE: auth_texts.map(encode_auth_challenge),
    FrameType.AUTH_RESPONSE: auth_texts.map(encode_auth_response),
    FrameType.AUTH_OK: st.builds(encode_auth_ok, auth_texts, auth_texts),
    FrameType.AUTH_FAIL: auth_texts.map(encode_auth_fail),
    FrameType.LOGOUT: st.sampled_from([encode_logout(), frame(FrameType.LOGOUT)]),
}
AUTH_MEMBERS: dict[int, tuple[str, ...]] = {
    FrameType.AUTH_START: ("mechanism", "message"),
    FrameType.AUTH_CHALLENGE: ("message",),
    FrameType.AUTH_RESPONSE: ("message",),
    FrameType.AUTH_OK: ("message", "user"),
    FrameType.AUTH_FAIL: ("reason",),
    FrameType.LOGOUT: (),
}
AUTH_EVENT_OF: dict[int, Callable[..., Event]] = {
    FrameType.AUTH_START: AuthStart,
    FrameType.AUTH_CHALLENGE: AuthChallenge,
    FrameType.AUTH_RESPONSE: AuthResponse,
    FrameType.AUTH_OK: AuthOk,
    FrameType.AUTH_FAIL: AuthFail,
    FrameType.LOGOUT: Logout,
}
AUTH_ENCODER_OF: dict[int, Callable[..., bytes]] = {
    FrameType.AUTH_START: encode_auth_start,
    FrameType.AUTH_CHALLENGE: encode_auth_challenge,
    FrameType.AUTH_RESPONSE: encode_auth_response,
    FrameType.AUTH_OK: encode_auth_ok,
    FrameType.AUTH_FAIL: encode_auth_fail,
    FrameType.LOGOUT: encode_logout,
}
# The AUTH frames a peer of each role sends.
AUTH_SENT: dict[Role, st.SearchStrategy[bytes]] = {
    role: st.one_of([AUTH_FRAME_OF[t] for t in AUTH_RECEIVED[other_role(role)]])
    for role in ("host", "client")
}


def _valid_frames(peer: Role) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.builds(lambda d, m: encode_message(d, m), json_values | payloads, metadata_values),
        payloads.map(encode_ping),
        payloads.map(encode_pong),
        st.builds(encode_close, close_codes, close_reasons),
        st.builds(lambda f: encode_hello(peer, features=f)[len(PREAMBLE) :], feature_lists),
        AUTH_SENT[peer],
    )


#: Valid frames, HELLO included, that a decoder of each role may receive.
VALID_FRAMES: dict[Role, st.SearchStrategy[bytes]] = {
    role: _valid_frames(other_role(role)) for role in ("host", "client")
}


# --- (a) A connection's life as a state machine -------------------------------------------------


@dataclass(frozen=True)
class Item:
    """A run of bytes the model queued, and what the decoder must make of it."""

    start: int
    end: int
    kind: str  # "silent" (the preamble), "event", "error" or "garbage" (unpredictable)
    event: Event | None = None
    code: int | None = None


# Invalid JSON texts for DATA payloads, each rejected with INVALID_DATA once its frame fits.
BAD_JSON = [
    b"NaN",
    b"Infinity",
    b"-Infinity",
    b'{"a":[1,-Infinity]}',
    b"1 2",
    b"{}{}",
    b"[1]]",
    b"[1,]",
    b"",
    b"\xef\xbb\xbf1",
    b"'x'",
    b'"\xff"',
    b'"\xc0\x80"',
    b'"\xed\xa0\x80"',
    b'"\xf4\x90\x80\x80"',
    b'"\x80"',
    b'"\xe2\x82"',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
]
if getattr(sys, "get_int_max_str_digits", lambda: 0)():
    BAD_JSON.append(b"9" * 5000)  # over the interpreter's limit on integer digits
# Invalid metadata: not JSON, not UTF-8, or not an object.
BAD_METADATA = [
    b"[]",
    b"1",
    b"null",
    b'"x"',
    b"true",
    b'{"a":NaN}',
    b'{"a":1}x',
    b"{}{}",
    b'{"\xff":1}',
    b'{"a":"\xc0\x80"}',
    b"{" * 3000,
]
OPENINGS = [
    *["HELLO"] * 24,
    "CLOSE before HELLO",
    "frame before HELLO",
    "bad HELLO",
    "bad HELLO",
    "login refused",
    "login refused",
    "wrong magic",
    "version 0",
]
BAD_HELLOS = [
    "own role",
    "no role",
    "role not a role",
    "bad size",
    "bad features",
    "not an object",
    "trailing bytes",
    "NaN",
    "invalid UTF-8",
    "reserved flags",
    "too long",
]
BAD_SIZES: list[object] = [0, -1, MAX_LIMIT + 1, 1.5, "10", True, None, [10]]
# What may end a life: a CLOSE, unpredictable bytes, or an invalid frame (each kind of which is
# rarer than the first two).
ENDINGS = [
    *["CLOSE"] * 2,
    *["corrupted frame"] * 3,
    "random bytes",
    "unknown or reserved type",
    "control frame with reserved flags",
    "DATA with reserved flags",
    "oversized header",
    "DATA body too short",
    "metadata length past the body",
    "second HELLO",
    "invalid JSON payload",
    "invalid metadata",
    "invalid CLOSE",
    *["AUTH frame out of order"] * 2,
    *["AUTH frame in the wrong direction"] * 2,
    *["AUTH frame with a bad body"] * 2,
]
# The endings made of a DATA frame: a host that requires login refuses every DATA frame from
# its header until the login succeeds (POLICY_VIOLATION, docs/protocol.md 7.1 D0).
DATA_ENDINGS = frozenset(
    (
        "DATA with reserved flags",
        "DATA body too short",
        "metadata length past the body",
        "invalid JSON payload",
        "invalid metadata",
    )
)
# How the feature "auth" stands: offered by neither side, by the decoder's side only, by the
# peer only, or by both (negotiated: the peer then logs in, or the decoder's side does).
LOGINS = ["none", "none", "both", "both", "both", "both", "this side", "peer"]
# The stages of a login, as the decoder sees them (docs/protocol.md, 9.8).
HOST_STAGES = ("idle", "started", "answered", "logged in", "logged out")
CLIENT_STAGES = ("idle", "challenged", "logged in", "refused")
# The AUTH types that are in order at each stage, and those that are out of order. Left out of
# the latter: AUTH_START after LOGOUT and a second AUTH_FAIL, which the decoder accepts (a known
# bug, shown by xfail tests in tests/test_protocol.py).
IN_ORDER: dict[tuple[Role, str], list[int]] = {
    ("host", "idle"): [FrameType.AUTH_START],
    ("host", "started"): [FrameType.AUTH_RESPONSE],
    ("host", "logged in"): [FrameType.LOGOUT],
    ("client", "idle"): [FrameType.AUTH_CHALLENGE, FrameType.AUTH_FAIL],
    ("client", "challenged"): [FrameType.AUTH_OK, FrameType.AUTH_FAIL],
}
OUT_OF_ORDER: dict[tuple[Role, str], list[int]] = {
    ("host", "idle"): [FrameType.AUTH_RESPONSE, FrameType.LOGOUT],
    ("host", "started"): [FrameType.AUTH_START, FrameType.LOGOUT],
    ("host", "answered"): [FrameType.AUTH_START, FrameType.AUTH_RESPONSE, FrameType.LOGOUT],
    ("host", "logged in"): [FrameType.AUTH_START, FrameType.AUTH_RESPONSE],
    ("host", "logged out"): [FrameType.AUTH_RESPONSE, FrameType.LOGOUT],
    ("client", "idle"): [FrameType.AUTH_OK],
    ("client", "challenged"): [FrameType.AUTH_CHALLENGE],
    ("client", "logged in"): [FrameType.AUTH_CHALLENGE, FrameType.AUTH_OK, FrameType.AUTH_FAIL],
    ("client", "refused"): [FrameType.AUTH_CHALLENGE, FrameType.AUTH_OK],
}
# Bodies no AUTH frame may have (INVALID_DATA), LOGOUT's included: it may be empty, not these.
BAD_AUTH_BODIES = [
    b"[]",
    b"null",
    b'"x"',
    b"1",
    b"{",
    b"{}x",
    b"{}{}",
    b'{"message":NaN}',
    b'{"message":"\xff"}',
    b'{"\xc0\x80":1}',
    b"\xef\xbb\xbf{}",
]
NOT_A_STRING: list[object] = [None, 1, 1.5, True, [], {}, ["x"]]
MISSING = object()
foreign_bytes = st.sampled_from(
    [b"\x16\x03\x01\x02\x00", b"GET / HTTP/1.1\r\n", b"alvaro\x01"]
) | st.binary(min_size=1, max_size=10).filter(lambda b: not MAGIC.startswith(b[:6]))


class DecoderLife(RuleBasedStateMachine):
    """A peer that sends a preamble, a HELLO and then frames, some of them broken on purpose.

    Every rule appends bytes to the stream the peer sends and records what the decoder must make
    of them; ``deliver`` hands the decoder the next bytes of the stream, cut anywhere. The model
    then says exactly which events must have come out and whether an error must have been raised,
    until the first unpredictable bytes (a corrupted frame); from there on only the invariants
    that hold for any input are checked, and the events before the corruption must still have
    been delivered.

    The opening (preamble and HELLO, or a broken one) is drawn at the start, and with it whether
    each side offers feature ``auth``. When both do, the life has a login: the client logs in
    (``login_step``), a host's decoder has ``accept_login()`` called once it has received
    AUTH_RESPONSE, and DATA is kept out of the login's way (a host refuses it before the login,
    which the model expects; a client's peer sends none before AUTH_OK). Then the peer sends
    valid frames for a while (``calm``, counted in queued items) before ``break_or_close`` may
    end the connection, so that lives are long enough to interleave many frames. Meanwhile
    ``probe_an_ending`` tries endings on copies of the decoder, so that one life checks many.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stream = bytearray()
        self.items: list[Item] = []
        self.fed = 0
        self.received: list[Event] = []
        self.error: RemoteProtocolError | None = None
        self.version = VERSION
        self.role: Role = "client"
        self.peer: Role = "host"
        self.max_message_size = DEFAULT_MAX_MESSAGE_SIZE
        self.max_metadata_size = DEFAULT_MAX_METADATA_SIZE
        self.decoder = Decoder("client")
        self.calm = 0
        self.troubled = False  # an error, a corruption or a CLOSE is queued: the end is near
        self.login = "none"  # LOGINS: who offers feature "auth"
        self.stage = "idle"  # HOST_STAGES or CLIENT_STAGES, once "auth" is negotiated

    # Queueing -----------------------------------------------------------------------------

    def queue(self, data: bytes, kind: str, event: Event | None = None, code: int = 0) -> None:
        start = len(self.stream)
        self.stream += data
        self.items.append(Item(start, len(self.stream), kind, event, code or None))
        if kind in ("error", "garbage") or isinstance(event, Close):
            self.troubled = True

    @property
    def negotiated(self) -> bool:
        """Whether feature "auth" is negotiated: there is a login."""
        return self.login == "both"

    def before_login(self) -> bool:
        """Whether a login is negotiated and has not succeeded (yet, or any more)."""
        return self.negotiated and self.stage != "logged in"

    def gated(self) -> bool:
        """Whether the decoder is a host's that refuses DATA now (section 7.1, D0)."""
        return self.role == "host" and self.before_login()

    def data_error_code(self, data: bytes, content_code: int) -> int:
        """The code for a complete DATA frame whose content is invalid: the login gate, then
        the size and layout checks of section 7.1 come before the content is looked at."""
        if self.gated():
            return CloseCode.POLICY_VIOLATION
        length, _, flags = HEADER.unpack_from(data)
        code = content_code
        if length > self.max_message_size + 4:
            code = CloseCode.MESSAGE_TOO_BIG
        elif flags > Encoding.BYTES or length < 4:
            code = CloseCode.PROTOCOL_ERROR
        else:
            (meta_size,) = struct.unpack_from("!I", data, HEADER_SIZE)
            if meta_size > length - 4:
                code = CloseCode.PROTOCOL_ERROR
            elif meta_size > self.max_metadata_size:
                code = CloseCode.MESSAGE_TOO_BIG
        return code

    def calm_over(self) -> bool:
        """Whether the peer may now break the protocol, or close: until then, it sends only
        valid frames (and messages that fit the decoder's limits)."""
        return len(self.items) >= self.calm

    # The opening --------------------------------------------------------------------------

    @initialize(
        role=st.sampled_from(["host", "client"]),
        limits=st.sampled_from(LIMITS),
        opening=st.sampled_from(OPENINGS),
        calm=st.integers(0, 24),
        login=st.sampled_from(LOGINS),
        data=st.data(),
    )
    def start(
        self,
        role: Role,
        limits: tuple[int, int],
        opening: str,
        calm: int,
        login: str,
        data: st.DataObject,
    ) -> None:
        self.calm = calm
        self.role = role
        self.peer = other_role(role)
        self.login = login
        self.max_message_size, self.max_metadata_size = limits
        offers = login in ("this side", "both")
        self.decoder = Decoder(
            role,
            max_message_size=self.max_message_size,
            max_metadata_size=self.max_metadata_size,
            features=["auth"] if offers else [],
            # A host that offers "auth" requires login, as a version-1 host does (9.8), when
            # the client offers it too; the other case checks plain negotiation.
            login_required=offers and role == "host" and login == "both",
        )
        reserved = data.draw(st.just(0) | st.integers(0, 255), label="reserved")
        if opening == "wrong magic":
            foreign = data.draw(foreign_bytes, label="foreign")
            self.queue(foreign, "error", code=CloseCode.PROTOCOL_ERROR)
            return
        if opening == "version 0":
            self.queue(MAGIC + bytes((0, reserved)), "error", code=CloseCode.UNSUPPORTED)
            return
        self.version = data.draw(st.just(VERSION) | st.integers(1, 255), label="version")
        self.queue(MAGIC + bytes((self.version, reserved)), "silent")
        if opening == "HELLO":
            self.hello(data)
        elif opening == "CLOSE before HELLO":  # legal: every byte after it is dropped
            self.queue(*self.ending("CLOSE", data))
        elif opening == "frame before HELLO":
            # Only HELLO and CLOSE may come first: anything else is rejected from the header,
            # whatever its length and flags.
            early_types = [FrameType.DATA, FrameType.PING, FrameType.PONG, *RESERVED_TYPES]
            frame_type = data.draw(st.sampled_from(early_types), label="frame type")
            length = data.draw(st.integers(0, 2**32 - 1), label="length")
            flags = data.draw(st.integers(0, 255), label="flags")
            body = data.draw(st.binary(max_size=8), label="body")
            early = frame(frame_type, body, flags, length)
            self.queue(early, "error", code=CloseCode.PROTOCOL_ERROR)
        elif opening == "login refused":
            # The HELLO of a peer that cannot take part in the login this side offers (7.1 H8,
            # H9); a HELLO with this side's own role when this side offers no such login.
            self.bad_hello(data, "login refused")
        else:
            self.bad_hello(data)

    def hello(self, data: st.DataObject) -> None:
        message_size, metadata_size = data.draw(st.tuples(sizes, sizes), label="sizes")
        features = [name for name in data.draw(feature_lists, label="features") if name != "auth"]
        if self.login in ("peer", "both"):
            at = data.draw(st.integers(0, len(features)), label="where auth goes")
            features.insert(at, "auth")
        # A host that lists "auth" requires login and says so (9.8).
        auth_required = self.peer == "host" and "auth" in features
        if data.draw(st.booleans(), label="with encoder"):
            encoded = encode_hello(
                self.peer,
                max_message_size=message_size,
                max_metadata_size=metadata_size,
                features=features,
                auth_required=auth_required,
            )[len(PREAMBLE) :]
        else:
            fields = {
                **data.draw(extra_members, label="unknown members"),
                "role": self.peer,
                "max_message_size": message_size,
                "max_metadata_size": metadata_size,
                "features": features,
            }
            if auth_required:
                fields["auth_required"] = True
            elif data.draw(st.booleans(), label="auth_required where it is ignored"):
                fields["auth_required"] = data.draw(small_values, label="ignored value")
            style: dict[str, Any] = data.draw(json_styles, label="style")
            encoded = hello_frame(json.dumps(fields, **style).encode())
        event = Hello(
            self.version,
            self.peer,
            message_size,
            metadata_size,
            frozenset(features),
            auth_required=self.role == "client" and self.negotiated,
        )
        self.queue(encoded, "event", event)

    def bad_hello(self, data: st.DataObject, case: str = "") -> None:
        case = case or data.draw(st.sampled_from(BAD_HELLOS), label="bad HELLO")
        value = data.draw(small_values, label="value")
        fields: dict[str, Any] = {
            "role": self.peer,
            "max_message_size": 1000,
            "max_metadata_size": 100,
            "features": [],
        }
        raw: bytes | None = None
        flags = 0
        code: int = CloseCode.INVALID_DATA
        if case == "login refused" and self.role == "client" and "auth" in self.decoder.features:
            # A host that lists "auth" without "auth_required": true (9.8, 7.1 H8).
            fields["features"] = ["auth"]
            required = data.draw(
                st.sampled_from([MISSING, False, None, "true", 1, [True], {}]), label="required"
            )
            if required is not MISSING:
                fields["auth_required"] = required
        elif case == "login refused" and self.decoder.login_required:
            # A client that does not offer "auth" at a host that requires login (7.1 H9).
            features = data.draw(
                st.sampled_from([MISSING, [], ["x"], ["Auth"], ["request", "chunk"]]),
                label="features",
            )
            if features is MISSING:
                del fields["features"]
            else:
                fields["features"] = features
            code = CloseCode.POLICY_VIOLATION
        elif case in ("own role", "login refused"):
            fields["role"] = self.role  # two hosts or two clients
            code = CloseCode.PROTOCOL_ERROR
        elif case == "no role":
            del fields["role"]
            code = CloseCode.PROTOCOL_ERROR
        elif case == "role not a role":
            fields["role"] = value if value != self.peer else None
            code = CloseCode.PROTOCOL_ERROR
        elif case == "bad size":
            name = data.draw(st.sampled_from(["max_message_size", "max_metadata_size"]))
            fields[name] = data.draw(
                st.sampled_from(BAD_SIZES) | small_values.filter(lambda v: type(v) is not int)
            )
        elif case == "bad features":
            fields["features"] = value if not isinstance(value, list) else [*value, 1]
        elif case == "not an object":
            raw = json.dumps([fields]).encode()
        elif case == "trailing bytes":
            raw = json.dumps(fields).encode() + b"x"
        elif case == "NaN":
            raw = json.dumps(fields).encode().replace(b"1000", b"NaN")
        elif case == "invalid UTF-8":
            raw = json.dumps(fields).encode().replace(b"[]", b'["\xc0\x80"]')
        elif case == "reserved flags":
            raw = json.dumps(fields).encode()
            flags = data.draw(st.integers(1, 255), label="flags")
            code = CloseCode.PROTOCOL_ERROR
        else:  # too long, from the header alone
            oversized = frame(FrameType.HELLO, length=CONTROL_LIMIT + 1)
            self.queue(oversized, "error", code=CloseCode.MESSAGE_TOO_BIG)
            return
        if raw is None:
            raw = json.dumps(fields).encode()
        self.queue(hello_frame(raw, flags), "error", code=code)

    # Valid frames -------------------------------------------------------------------------

    @rule(data=json_values | deep_values | payloads, metadata=metadata_values, login=st.data())
    def message(self, data: Any, metadata: dict[str, Any], login: st.DataObject) -> None:
        if self.before_login():
            self.instead_of_a_message(encode_message(data, metadata), login)
            return
        try:
            encoded = encode_message(
                data,
                metadata,
                max_message_size=self.max_message_size,
                max_metadata_size=self.max_metadata_size,
            )
        except MessageTooLarge:
            if self.calm_over():
                too_large = encode_message(data, metadata)
                self.queue(too_large, "error", code=CloseCode.MESSAGE_TOO_BIG)
            else:  # still calm: a message that fits instead
                self.queue(encode_message(None), "event", Message(None, {}))
        else:
            self.queue(encoded, "event", Message(data, metadata))

    @rule(metadata_over=st.integers(0, 1), message_over=st.integers(0, 1), login=st.data())
    def message_at_the_limits(
        self, metadata_over: int, message_over: int, login: st.DataObject
    ) -> None:
        """Metadata and message exactly at the decoder's limits, or one byte over."""
        if not self.calm_over():
            metadata_over = message_over = 0
        meta_size = min(self.max_metadata_size, self.max_message_size) + metadata_over
        meta = b'{"k":"' + b"m" * (meta_size - 8) + b'"}'
        payload = b"p" * (max(0, self.max_message_size - meta_size) + message_over)
        data = data_frame(payload, meta, flags=Encoding.BYTES)
        if self.before_login():
            self.instead_of_a_message(data, login)
        elif metadata_over or message_over:
            self.queue(data, "error", code=CloseCode.MESSAGE_TOO_BIG)
        else:
            self.queue(data, "event", Message(payload, {"k": "m" * (meta_size - 8)}))

    @rule(payload=payloads, pong=st.booleans())
    def ping_or_pong(self, payload: bytes, pong: bool) -> None:
        if pong:
            self.queue(encode_pong(payload), "event", Pong(payload))
        else:
            self.queue(encode_ping(payload), "event", Ping(payload))

    # The login (feature "auth" negotiated) ------------------------------------------------

    def step_available(self) -> bool:
        """Whether the login can go on: the client logs in, a host's decoder accepts it (only
        while every queued byte is valid), a logged-in client logs out."""
        if not self.negotiated:
            return False
        if self.role == "client":
            return self.stage in ("idle", "challenged")
        if self.stage == "answered":
            return not self.troubled
        return self.stage in ("idle", "started", "logged in")

    @precondition(lambda self: self.step_available())
    @rule(data=st.data())
    def login_step(self, data: st.DataObject) -> None:
        self.advance_login(data)

    def advance_login(self, data: st.DataObject) -> None:
        draw = data.draw
        stage = self.stage
        if self.role == "host":
            if stage == "idle":
                mechanism = draw(st.just("SCRAM-SHA-256") | auth_texts, label="mechanism")
                fields = {"mechanism": mechanism, "message": draw(auth_texts, label="message")}
                self.queue_auth(FrameType.AUTH_START, fields, data)
                self.stage = "started"
            elif stage == "started":
                self.queue_auth(FrameType.AUTH_RESPONSE, {"message": draw(auth_texts)}, data)
                self.stage = "answered"
            elif stage == "answered":
                self.accept_login()
            elif draw(st.booleans(), label="log out"):
                self.queue_auth(FrameType.LOGOUT, {}, data)
                self.stage = "logged out"
            else:
                self.queue(encode_pong(b"logged in"), "event", Pong(b"logged in"))
            return
        if draw(st.integers(0, 4), label="refused") == 0:
            self.queue_auth(FrameType.AUTH_FAIL, {"reason": draw(auth_texts)}, data)
            self.stage = "refused"
        elif stage == "idle":
            self.queue_auth(FrameType.AUTH_CHALLENGE, {"message": draw(auth_texts)}, data)
            self.stage = "challenged"
        else:
            fields = {"message": draw(auth_texts), "user": draw(auth_texts, label="user")}
            self.queue_auth(FrameType.AUTH_OK, fields, data)
            self.stage = "logged in"

    def queue_auth(self, frame_type: int, fields: dict[str, str], data: st.DataObject) -> None:
        """Queue a valid AUTH frame, from the encoder or written another valid way."""
        event = AUTH_EVENT_OF[frame_type](**fields)
        if data.draw(st.booleans(), label="AUTH with encoder"):
            encoded = AUTH_ENCODER_OF[frame_type](**fields)
        elif frame_type == FrameType.LOGOUT and data.draw(st.booleans(), label="empty"):
            encoded = frame(frame_type)
        else:
            members = {**data.draw(extra_members, label="unknown members"), **fields}
            style: dict[str, Any] = data.draw(json_styles, label="style")
            encoded = frame(frame_type, json.dumps(members, **style).encode())
        self.queue(encoded, "event", event)

    def accept_login(self) -> None:
        """The host's decoder has received AUTH_RESPONSE; the host accepts the login as it
        sends AUTH_OK. Everything queued is delivered first, as a host calls accept_login()
        between two reads."""
        self.feed(len(self.stream))
        assert self.error is None
        self.decoder.accept_login()
        self.stage = "logged in"

    def instead_of_a_message(self, message: bytes, data: st.DataObject) -> None:
        """Before the login succeeds a peer sends no message: the login goes on instead, mostly.
        Otherwise a client's peer sends a PING, and a client sends the message for a host to
        refuse it (once the calm is over)."""
        if self.step_available() and data.draw(st.integers(0, 3), label="log in now") > 0:
            self.advance_login(data)
        elif self.role == "host" and self.calm_over():
            self.queue(message, "error", code=CloseCode.POLICY_VIOLATION)
        else:
            self.queue(encode_ping(b"no message yet"), "event", Ping(b"no message yet"))

    # The end: a CLOSE, an invalid frame, or unpredictable bytes ----------------------------

    def ending(self, kind: str, data: st.DataObject) -> tuple[bytes, str, Event | None, int]:
        """The bytes of one way to end the connection, and what the decoder must make of them:
        ``(bytes, "event", Close, 0)``, ``(bytes, "error", None, code)`` or
        ``(bytes, "garbage", None, 0)``."""
        draw = data.draw
        if kind in DATA_ENDINGS and self.role == "client" and self.before_login():
            kind = "AUTH frame out of order"  # a host sends no DATA before AUTH_OK
        # Once "auth" is negotiated, the AUTH types this side receives pass the type check.
        auth_types = AUTH_RECEIVED[self.role] if self.negotiated else []
        if kind == "CLOSE":
            code = draw(close_codes, label="close code")
            reason = draw(close_reasons, label="reason")
            return encode_close(code, reason), "event", Close(code, reason), 0
        if kind == "corrupted frame":
            ops = draw(byte_mutations, label="mutations")
            original = draw(VALID_FRAMES[self.role], label="frame")
            other = b""
            if any(op == "splice" for op, *_ in ops):
                other = draw(VALID_FRAMES[self.role], label="splice source")
            return mutate(original, other, ops), "garbage", None, 0
        if kind == "random bytes":
            return draw(st.binary(min_size=1, max_size=64), label="bytes"), "garbage", None, 0
        if kind == "unknown or reserved type":
            # The type is checked first, whatever the flags and the length (C2, C2a, C3).
            types = [t for t in UNKNOWN_TYPES + RESERVED_TYPES if t not in auth_types]
            frame_type = draw(st.sampled_from(types), label="type")
            flags = draw(st.integers(0, 255), label="flags")
            length = draw(st.none() | st.integers(0, 2**32 - 1), label="length")
            bad = frame(frame_type, draw(st.binary(max_size=8), label="body"), flags, length)
            return bad, "error", None, CloseCode.PROTOCOL_ERROR
        if kind == "control frame with reserved flags":
            frame_type = draw(st.sampled_from(CONTROL_TYPES + auth_types), label="type")
            body = struct.pack("!H", 1000) if frame_type == FrameType.CLOSE else b""
            if frame_type in auth_types:
                body = draw(AUTH_FRAME_OF[frame_type], label="AUTH frame")[HEADER_SIZE:]
            bad = frame(frame_type, body, draw(st.integers(1, 255), label="flags"))
            return bad, "error", None, CloseCode.PROTOCOL_ERROR
        if kind == "DATA with reserved flags":
            flags = draw(st.integers(2, 255), label="flags")
            bad = data_frame(draw(payloads, label="payload"), flags=flags)
            return bad, "error", None, self.data_error_code(bad, CloseCode.PROTOCOL_ERROR)
        if kind == "oversized header":
            types = [*CONTROL_TYPES, *auth_types]
            if not (self.role == "client" and self.before_login()):
                types.insert(0, FrameType.DATA)
            frame_type = draw(st.sampled_from(types), label="type")
            limit = self.max_message_size + 4 if frame_type == FrameType.DATA else CONTROL_LIMIT
            length = min(limit + draw(st.integers(1, 100) | st.just(2**32)), 2**32 - 1)
            bad = frame(frame_type, draw(st.binary(max_size=16), label="body"), length=length)
            if frame_type == FrameType.DATA and self.gated():
                return bad, "error", None, CloseCode.POLICY_VIOLATION  # the gate comes first
            return bad, "error", None, CloseCode.MESSAGE_TOO_BIG
        if kind == "DATA body too short":
            bad = frame(FrameType.DATA, draw(st.binary(max_size=3), label="body"))
            code = CloseCode.POLICY_VIOLATION if self.gated() else CloseCode.PROTOCOL_ERROR
            return bad, "error", None, code
        if kind == "metadata length past the body":
            meta = draw(st.binary(max_size=8), label="metadata")
            payload = draw(payloads, label="payload")
            overrun = len(meta) + len(payload) + draw(st.integers(1, 2**32 - 1), label="over")
            bad = data_frame(payload, meta, meta_length=min(overrun, 2**32 - 1))
            return bad, "error", None, self.data_error_code(bad, CloseCode.PROTOCOL_ERROR)
        if kind == "second HELLO":
            # A repeated preamble reads as a header of length 0x414c5641 and unknown type 0x52.
            hello = encode_hello(self.peer)
            bad = draw(st.sampled_from([hello, hello[len(PREAMBLE) :]]), label="HELLO")
            return bad, "error", None, CloseCode.PROTOCOL_ERROR
        if kind == "invalid JSON payload":
            meta = draw(st.sampled_from([b"", b'{"k":1}']), label="metadata")
            bad = data_frame(draw(st.sampled_from(BAD_JSON), label="payload"), meta)
            return bad, "error", None, self.data_error_code(bad, CloseCode.INVALID_DATA)
        if kind == "invalid metadata":
            flags = draw(st.sampled_from([Encoding.JSON, Encoding.BYTES]), label="flags")
            meta = draw(st.sampled_from(BAD_METADATA), label="metadata")
            bad = data_frame(b"1", meta, flags=flags)
            return bad, "error", None, self.data_error_code(bad, CloseCode.INVALID_DATA)
        if kind == "AUTH frame out of order":
            # Not negotiated, every AUTH type is an error (C2); negotiated, the login's order
            # decides (A1). The frame is valid otherwise.
            out_of_order = sorted(AUTH_MEMBERS)
            if self.negotiated:
                out_of_order = OUT_OF_ORDER[(self.role, self.stage)]
            frame_type = draw(st.sampled_from(out_of_order), label="type")
            bad = draw(AUTH_FRAME_OF[frame_type], label="AUTH frame")
            return bad, "error", None, CloseCode.PROTOCOL_ERROR
        if kind == "AUTH frame in the wrong direction":
            # Refused from the header, whatever the flags, the length and the body (C2a).
            frame_type = draw(st.sampled_from(AUTH_RECEIVED[self.peer]), label="type")
            bad = draw(AUTH_FRAME_OF[frame_type], label="AUTH frame")
            if draw(st.booleans(), label="broken header too"):
                flags = draw(st.integers(0, 255), label="flags")
                length = draw(st.integers(0, 2**32 - 1), label="length")
                bad = frame(frame_type, bad[HEADER_SIZE:], flags, length)
            return bad, "error", None, CloseCode.PROTOCOL_ERROR
        if kind == "AUTH frame with a bad body":
            in_order = IN_ORDER.get((self.role, self.stage), []) if self.negotiated else []
            if not in_order:
                return self.ending("AUTH frame out of order", data)
            frame_type = draw(st.sampled_from(in_order), label="type")
            members = AUTH_MEMBERS[frame_type]
            bad_member = draw(st.booleans(), label="bad member")
            if members and bad_member:
                fields: dict[str, object] = {name: draw(auth_texts) for name in members}
                name = draw(st.sampled_from(members), label="member")
                value = draw(st.sampled_from([MISSING, *NOT_A_STRING]), label="value")
                if value is MISSING:
                    del fields[name]
                else:
                    fields[name] = value
                body = json.dumps(fields).encode()
            else:
                body = draw(st.sampled_from(BAD_AUTH_BODIES), label="body")
            return frame(frame_type, body), "error", None, CloseCode.INVALID_DATA
        # An invalid CLOSE: too short for a code, or a reason that is not UTF-8.
        body = draw(st.binary(max_size=1) | st.just(b"\x03\xe8bad \xff"), label="body")
        code = CloseCode.PROTOCOL_ERROR if len(body) < 2 else CloseCode.INVALID_DATA
        return frame(FrameType.CLOSE, body), "error", None, code

    @precondition(lambda self: self.calm_over())
    @rule(kind=st.sampled_from(ENDINGS), data=st.data())
    def break_or_close(self, kind: str, data: st.DataObject) -> None:
        self.queue(*self.ending(kind, data))

    @precondition(lambda self: not self.troubled)
    @rule(kind=st.sampled_from(ENDINGS), data=st.data(), split=st.integers(0, 2**16))
    def probe_an_ending(self, kind: str, data: st.DataObject, split: int) -> None:
        """Try an ending on a copy of the decoder, and carry on with the original: many endings
        are checked in one life. The copy gets the bytes not delivered yet, then the ending, in
        two pieces cut anywhere."""
        ending, outcome, event, code = self.ending(kind, data)
        expected = [
            item.event for item in self.items if item.end > self.fed and item.event is not None
        ]
        copy = deepcopy(self.decoder)
        events, error = feed(copy, cut(bytes(self.stream[self.fed :]) + ending, [split]))
        check_events(copy, self.received + events, error)
        if outcome == "garbage":
            assert events[: len(expected)] == expected
        elif outcome == "event":
            assert error is None
            assert events == [*expected, event]
        else:
            assert events == expected
            assert error is not None, "the decoder accepted a bad frame"
            assert error.code == code, (error, code)
        check_the_end(copy, error)

    # Delivery -----------------------------------------------------------------------------

    @rule(size=st.integers(0, 40) | st.sampled_from([1, 2**20]))
    def deliver(self, size: int) -> None:
        self.feed(size)

    def feed(self, size: int) -> None:
        piece = bytes(self.stream[self.fed : self.fed + size])
        self.fed += len(piece)
        if self.error is not None:
            with pytest.raises(RemoteProtocolError, match="already"):
                self.decoder.receive_data(piece)
            assert self.decoder.events() == []
            return
        try:
            self.decoder.receive_data(piece)
        except RemoteProtocolError as exc:
            self.error = exc
        self.received += self.decoder.events()

    def teardown(self) -> None:
        self.feed(len(self.stream))
        self.check()
        check_the_end(self.decoder, self.error)

    # The model ----------------------------------------------------------------------------

    @invariant()
    def check(self) -> None:
        check_events(self.decoder, self.received, self.error)
        expected: list[Event] = []
        for item in self.items:
            if item.start >= self.fed:
                break
            if item.kind == "garbage":
                # Anything may follow, but what came before the corruption is delivered.
                assert self.received[: len(expected)] == expected
                return
            if item.end > self.fed:  # partly delivered: no event yet, maybe an early error
                assert self.received == expected
                if self.error is None:
                    assert self.decoder.buffered == self.fed - item.start
                else:
                    assert item.kind == "error"
                    assert self.error.code == item.code
                return
            if item.kind == "error":
                assert self.received == expected
                assert self.error is not None, "the decoder accepted a bad frame"
                assert self.error.code == item.code, (self.error, item)
                return
            if item.kind == "event":
                assert item.event is not None
                expected.append(item.event)
                if isinstance(item.event, Close):
                    break  # every later byte is dropped
        assert self.error is None
        assert self.received == expected
        if not self.decoder.closed:
            assert self.decoder.buffered == 0


def test_connection_life_state_machine() -> None:
    run_state_machine_as_test(DecoderLife, settings=MACHINE)


@pytest.mark.slow
@pytest.mark.timeout(LONG_TIMEOUT)
def test_connection_life_state_machine_long() -> None:
    run_state_machine_as_test(DecoderLife, settings=MACHINE_LONG)


# Logins, stage by stage: the valid frames that lead a decoder to one stage of a login, with
# PINGs and messages between them, delivered in arbitrary pieces; then, on copies of the decoder,
# every kind of frame that may or may not come next at that stage. Shorter lives than the state
# machine's, all of them logins, so that every stage meets every kind of AUTH frame.

#: The AUTH frames (and the host's accept_login() calls) that lead to each stage of a login.
PATHS: dict[tuple[Role, str], list[list[int | str]]] = {
    ("host", "idle"): [[]],
    ("host", "started"): [[FrameType.AUTH_START]],
    ("host", "answered"): [[FrameType.AUTH_START, FrameType.AUTH_RESPONSE]],
    ("host", "logged in"): [[FrameType.AUTH_START, FrameType.AUTH_RESPONSE, "accept"]],
    ("host", "logged out"): [
        [FrameType.AUTH_START, FrameType.AUTH_RESPONSE, "accept", FrameType.LOGOUT]
    ],
    ("client", "idle"): [[]],
    ("client", "challenged"): [[FrameType.AUTH_CHALLENGE]],
    ("client", "logged in"): [[FrameType.AUTH_CHALLENGE, FrameType.AUTH_OK]],
    ("client", "refused"): [[FrameType.AUTH_FAIL], [FrameType.AUTH_CHALLENGE, FrameType.AUTH_FAIL]],
}
script_cuts = st.lists(st.integers(0, 2**12), max_size=20)


@dataclass(frozen=True)
class Script:
    """What a peer sends to lead a decoder to a stage of a login, and what may come next."""

    role: Role  # the decoder's
    stage: str
    segments: list[bytes]  # a host's decoder is told accept_login() between two segments
    events: list[Event]
    # What may come next, each tried on its own copy of the decoder: the bytes, and the close
    # code of the error they must raise or the event they must make.
    nexts: list[tuple[bytes, int | None, Event | None]]


def auth_step(draw: st.DrawFn, frame_type: int) -> tuple[bytes, Event]:
    """A valid AUTH frame of ``frame_type`` and the event it makes."""
    fields = {name: draw(auth_texts) for name in AUTH_MEMBERS[frame_type]}
    return AUTH_ENCODER_OF[frame_type](**fields), AUTH_EVENT_OF[frame_type](**fields)


def bad_auth_body(draw: st.DrawFn, frame_type: int) -> bytes:
    """A body ``frame_type`` may not have: not a JSON object, or a member missing or not a
    string (INVALID_DATA)."""
    members = AUTH_MEMBERS[frame_type]
    bad_member = draw(st.booleans())
    if not (members and bad_member):
        return draw(st.sampled_from(BAD_AUTH_BODIES))
    fields: dict[str, object] = {name: draw(auth_texts) for name in members}
    name = draw(st.sampled_from(members))
    value = draw(st.sampled_from([MISSING, *NOT_A_STRING]))
    if value is MISSING:
        del fields[name]
    else:
        fields[name] = value
    return json.dumps(fields).encode()


@st.composite
def login_scripts(draw: st.DrawFn) -> Script:
    role, stage = draw(st.sampled_from(sorted(PATHS)))
    if role == "host":
        hello = encode_hello("client", features=["auth"])
        hello_event = Hello(
            VERSION,
            "client",
            DEFAULT_MAX_MESSAGE_SIZE,
            DEFAULT_MAX_METADATA_SIZE,
            frozenset({"auth"}),
        )
    else:
        hello, hello_event = LOGIN_HOST_HELLO, LOGIN_PEER_HELLO
    segments = [hello]
    events: list[Event] = [hello_event]
    logged_in = False

    def between() -> None:
        """PINGs and PONGs, and messages once the login has succeeded."""
        for _ in range(draw(st.integers(0, 2))):
            if logged_in and draw(st.booleans()):
                message = Message(draw(json_values | payloads), draw(metadata_values))
                segments[-1] += encode_message(*message)
                events.append(message)
            else:
                payload = draw(payloads)
                pong = draw(st.booleans())
                segments[-1] += encode_pong(payload) if pong else encode_ping(payload)
                events.append(Pong(payload) if pong else Ping(payload))

    between()
    for step in draw(st.sampled_from(PATHS[(role, stage)])):
        if step == "accept":
            segments.append(b"")
            logged_in = True
        else:
            assert isinstance(step, int)
            data, event = auth_step(draw, step)
            segments[-1] += data
            events.append(event)
            logged_in = step == FrameType.AUTH_OK
        between()

    protocol_error = CloseCode.PROTOCOL_ERROR
    nexts: list[tuple[bytes, int | None, Event | None]] = []
    for frame_type in IN_ORDER.get((role, stage), []):
        data, event = auth_step(draw, frame_type)
        nexts.append((data, None, event))
        nexts.append((frame(frame_type, bad_auth_body(draw, frame_type)), 1007, None))
    for frame_type in OUT_OF_ORDER[(role, stage)]:
        nexts.append((draw(AUTH_FRAME_OF[frame_type]), protocol_error, None))
    for frame_type in AUTH_RECEIVED[other_role(role)]:
        nexts.append((draw(AUTH_FRAME_OF[frame_type]), protocol_error, None))  # the wrong direction
    # The header checks come before the order: any type this side receives, any stage.
    frame_type = draw(st.sampled_from(AUTH_RECEIVED[role]))
    body = draw(AUTH_FRAME_OF[frame_type])[HEADER_SIZE:]
    nexts.append((frame(frame_type, body, draw(st.integers(1, 255))), protocol_error, None))
    length = draw(st.integers(CONTROL_LIMIT + 1, 2**32 - 1))
    nexts.append((frame(frame_type, body, length=length), CloseCode.MESSAGE_TOO_BIG, None))
    message = Message(draw(json_values | payloads), draw(metadata_values))
    if logged_in:
        nexts.append((encode_message(*message), None, message))
    elif role == "host":  # refused from the header before the login, and after LOGOUT
        nexts.append((encode_message(*message), CloseCode.POLICY_VIOLATION, None))
    nexts.append((encode_close(1000, "bye"), None, Close(1000, "bye")))
    return Script(role, stage, segments, events, nexts)


def check_login_script(script: Script, points: list[int]) -> None:
    decoder = Decoder(script.role, features=["auth"], login_required=script.role == "host")
    received: list[Event] = []
    for index, segment in enumerate(script.segments):
        if index:
            decoder.accept_login()
        events, error = feed(decoder, cut(segment, points))
        assert error is None, error
        received += events
    check_events(decoder, received, None)
    assert received == script.events
    assert decoder.buffered == 0
    assert decoder.logged_in == (script.stage == "logged in")
    for data, code, event in script.nexts:
        copy = deepcopy(decoder)
        events, error = feed(copy, cut(data, points))
        check_events(copy, received + events, error)
        if code is None:
            assert error is None, (error, data)
            assert events == [event]
        else:
            assert error is not None, f"the decoder accepted {data!r} at {script.stage}"
            assert error.code == code, (error, data)
            assert events == []
        check_the_end(copy, error)


@LOGIN_SCRIPTS
@given(login_scripts(), script_cuts)
def test_every_stage_of_a_login_in_any_segmentation(script: Script, points: list[int]) -> None:
    check_login_script(script, points)


@pytest.mark.slow
@pytest.mark.timeout(LONG_TIMEOUT)
@LONG
@given(login_scripts(), script_cuts)
def test_every_stage_of_a_login_in_any_segmentation_long(script: Script, points: list[int]) -> None:
    check_login_script(script, points)


# --- (b) Mutations of a corpus of valid frames --------------------------------------------------


def corpus_entry(data: object, metadata: dict[str, Any] | None = None) -> tuple[bytes, Event]:
    return encode_message(data, metadata), Message(data, metadata or {})


#: Valid frames after the host's preamble and HELLO, each with the event it must produce.
CORPUS: list[tuple[bytes, Event]] = [
    corpus_entry({"x": 1}, {"kind": "point"}),
    corpus_entry("héllo"),
    corpus_entry(b"\x00\x01\x02\xff"),
    corpus_entry(b"hi", {"id": 7}),
    corpus_entry([], {"nested": {"x": [{}]}}),
    corpus_entry(None),
    corpus_entry([2**70, -(10**25), 1e-300, -0.0, True, "😀\u2028"]),
    corpus_entry({"deep": [[[[[[{"a": None}]]]]]]}),
    corpus_entry("x" * 200, {"k": "v" * 20}),
    (
        data_frame(b' [ "\\u00e9" , 1e2 ] ', b' { "a" : 1 , "a" : 2 } '),
        Message(["é", 100.0], {"a": 2}),
    ),
    (data_frame(b"{}", b"{}"), Message({}, {})),
    (data_frame(b"", flags=Encoding.BYTES), Message(b"", {})),
    (encode_ping(), Ping()),
    (encode_ping(b"\x00" * 64), Ping(b"\x00" * 64)),
    (encode_pong(b"pong"), Pong(b"pong")),
    (encode_close(1000, "bye"), Close(1000, "bye")),
    (encode_close(4100, "é" * 10), Close(4100, "é" * 10)),
]
FRAME_MUTATIONS = ("flags", "type", "length", "meta-length")
frame_mutations = st.lists(
    st.tuples(st.sampled_from(FRAME_MUTATIONS), st.integers(0, 100), st.integers(0, 2**32 - 1)),
    max_size=2,
)


#: What a client that logs in receives between the HELLO of a host that requires login and the
#: corpus frames (RFC 7677's example login).
LOGIN: list[tuple[bytes, Event]] = [
    (
        encode_auth_challenge(
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        ),
        AuthChallenge(
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        ),
    ),
    (encode_ping(b"during the login"), Ping(b"during the login")),
    (
        encode_auth_ok("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", "user"),
        AuthOk("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", "user"),
    ),
]


def corpus_stream(
    indices: list[int], login: bool = False
) -> tuple[bytes, list[tuple[int, int, Event]]]:
    """The host's preamble and HELLO (and with ``login`` a login), then corpus frames; with
    each frame's span and event."""
    hello, hello_event = (LOGIN_HOST_HELLO, LOGIN_PEER_HELLO) if login else (HOST_HELLO, PEER_HELLO)
    stream = bytearray(hello)
    spans: list[tuple[int, int, Event]] = [(0, len(hello), hello_event)]
    for data, event in (LOGIN if login else []) + [CORPUS[index] for index in indices]:
        spans.append((len(stream), len(stream) + len(data), event))
        stream += data
    return bytes(stream), spans


def corpus_decoder(small: bool, login: bool) -> Decoder:
    # The small limits fit every frame of the corpus, but make lying lengths hit them sooner.
    features = ["auth"] if login else []
    if small:
        return Decoder("client", max_message_size=300, max_metadata_size=100, features=features)
    return Decoder("client", features=features)


def mutate_frames(
    stream: bytes, spans: list[tuple[int, int, Event]], ops: list[tuple[str, int, int]]
) -> bytes:
    """Mutations that know where the frames are: reserved flags, unknown types, lying lengths."""
    out = bytearray(stream)
    for op, which, value in ops:
        start = spans[1 + which % (len(spans) - 1)][0] if len(spans) > 1 else len(PREAMBLE)
        if op == "flags":
            out[start + 5] = max(2, value % 256)
        elif op == "type":
            out[start + 4] = UNKNOWN_TYPES[value % len(UNKNOWN_TYPES)]
        elif op == "length":
            out[start : start + 4] = struct.pack("!I", value)
        elif out[start + 4] == FrameType.DATA:
            out[start + 6 : start + 10] = struct.pack("!I", value)
    return bytes(out)


def check_corpus_mutation(
    indices: list[int],
    frame_ops: list[tuple[str, int, int]],
    ops: list[tuple[str, int, int, int, bytes]],
    splice: list[int],
    points: list[int],
    small: bool,
    login: bool,
) -> None:
    stream, spans = corpus_stream(indices, login)
    other, _ = corpus_stream(splice, login)
    mutated = mutate(mutate_frames(stream, spans, frame_ops), other, ops)
    changed = first_difference(stream, mutated)
    # Every frame that ends before the first changed byte is delivered, in order; a CLOSE ends
    # the stream.
    expected: list[Event] = []
    for _, end, event in spans:
        if end > changed:
            break
        expected.append(event)
        if isinstance(event, Close):
            break
    decoder = corpus_decoder(small, login)
    received, error = feed(decoder, cut(mutated, points))
    check_events(decoder, received, error)
    assert received[: len(expected)] == expected
    if expected and isinstance(expected[-1], Close):
        assert received == expected
        assert error is None
    elif stream.startswith(mutated):  # only truncated: nothing is wrong yet
        assert received == expected
        assert error is None
        consumed = spans[len(expected) - 1][1] if expected else 0
        if not expected and len(mutated) >= len(PREAMBLE):
            consumed = len(PREAMBLE)  # the preamble is consumed without an event
        assert decoder.buffered == len(mutated) - consumed
    check_the_end(decoder, error)


corpus_indices = st.lists(st.integers(0, len(CORPUS) - 1), max_size=12)
cut_points = st.lists(st.integers(0, 2**16), max_size=30)


@CORPUS_FUZZ
@given(
    corpus_indices,
    frame_mutations,
    byte_mutations | st.just([]),
    corpus_indices,
    cut_points,
    st.booleans(),
    st.booleans(),
)
def test_mutated_corpus(
    indices: list[int],
    frame_ops: list[tuple[str, int, int]],
    ops: list[tuple[str, int, int, int, bytes]],
    splice: list[int],
    points: list[int],
    small: bool,
    login: bool,
) -> None:
    check_corpus_mutation(indices, frame_ops, ops, splice, points, small, login)


@pytest.mark.slow
@pytest.mark.timeout(LONG_TIMEOUT)
@LONG
@given(
    corpus_indices,
    frame_mutations,
    byte_mutations | st.just([]),
    corpus_indices,
    cut_points,
    st.booleans(),
    st.booleans(),
)
def test_mutated_corpus_long(
    indices: list[int],
    frame_ops: list[tuple[str, int, int]],
    ops: list[tuple[str, int, int, int, bytes]],
    splice: list[int],
    points: list[int],
    small: bool,
    login: bool,
) -> None:
    check_corpus_mutation(indices, frame_ops, ops, splice, points, small, login)


@pytest.mark.parametrize("login", [False, True], ids=["plain", "login"])
def test_unmutated_corpus_is_delivered_whole(login: bool) -> None:
    stream, spans = corpus_stream(
        [i for i, (_, e) in enumerate(CORPUS) if not isinstance(e, Close)], login
    )
    decoder = corpus_decoder(small=False, login=login)
    decoder.receive_data(stream)
    assert decoder.events() == [event for _, _, event in spans]
    assert decoder.buffered == 0


# --- (c) The explicit malformed inputs of R03 ---------------------------------------------------
#
# tests/test_protocol.py already covers, with the JSON back end the environment has: invalid
# UTF-8 bytes 0xff and 0xfe, a truncated sequence and an encoded surrogate; payloads nested 10^5
# deep; a 5000-digit integer payload; NaN and Infinity payloads and a NaN in metadata; metadata
# that is not an object; duplicate metadata members; unknown frame types; reserved flags; "1 2";
# and a second HELLO right after the first. What follows adds the other classes of invalid
# UTF-8, the other places each input can appear (metadata, HELLO, CLOSE), the standard library
# back end for the inputs above, and properties that generate each kind of input.

INVALID_UTF8 = {
    "overlong-2": b"\xc0\x80",
    "overlong-3": b"\xe0\x80\xaf",
    "overlong-4": b"\xf0\x80\x80\xaf",
    "low-surrogate": b"\xed\xb0\x80",
    "above-max": b"\xf4\x90\x80\x80",
    "f5-lead": b"\xf5\x80\x80\x80",
    "stray-continuation": b"\xbf",
    "truncated-3": b"\xe2\x82",
    "truncated-4": b"\xf0\x9f\x98",
}


def utf8_case(place: str, bad: bytes) -> tuple[str, bytes]:
    """Where invalid UTF-8 goes: ``(stream kind, bytes)``; the kind says how to decode it."""
    text = b'"a' + bad + b'b"'
    if place == "data-string":
        return "open", data_frame(b'["ok",' + text + b"]")
    if place == "data-key":
        return "open", data_frame(b"{" + text + b":1}")
    if place == "metadata-key":
        return "open", data_frame(b"1", b"{" + text + b":1}")
    if place == "metadata-value":
        return "open", data_frame(b"1", b'{"k":' + text + b"}")
    if place == "hello-member":
        return "hello", hello_frame(host_hello_body()[:-1] + b',"x-note":' + text + b"}")
    if place == "auth-member":
        return "login", frame(FrameType.AUTH_CHALLENGE, b'{"message":' + text + b"}")
    if place == "auth-unknown-member":
        return "login", frame(FrameType.AUTH_CHALLENGE, b'{"message":"m","x":' + text + b"}")
    return "open", frame(FrameType.CLOSE, struct.pack("!H", 1000) + b"a" + bad + b"b")


UTF8_PLACES = [
    "data-string",
    "data-key",
    "metadata-key",
    "metadata-value",
    "hello-member",
    "auth-member",
    "auth-unknown-member",
    "close-reason",
]


DEEP = 100_000


def large_decoder(login: bool = False) -> Decoder:
    """A client decoder with limits that let inputs nested 10^5 deep through; with ``login``,
    one that offers feature "auth"."""
    return Decoder(
        "client",
        max_message_size=4 * DEEP * 8,
        max_metadata_size=2 * DEEP * 8,
        features=["auth"] if login else [],
    )


def decode_case(kind: str, data: bytes) -> RemoteProtocolError:
    """Feed ``data`` to a client decoder (before the host's HELLO, after it, or, for kind
    ``login``, after the HELLO of a host that requires login); it must raise."""
    decoder = large_decoder(login=kind == "login")
    if kind == "open":
        decoder.receive_data(HOST_HELLO)
        assert decoder.events() == [PEER_HELLO]
    elif kind == "login":
        decoder.receive_data(LOGIN_HOST_HELLO)
        assert decoder.events() == [LOGIN_PEER_HELLO]
    else:
        data = PREAMBLE + data
    with pytest.raises(RemoteProtocolError) as info:
        decoder.receive_data(data)
    check_error(info.value)
    check_refuses_more(decoder)
    return info.value


@pytest.mark.parametrize("place", UTF8_PLACES)
@pytest.mark.parametrize("bad", list(INVALID_UTF8.values()), ids=list(INVALID_UTF8))
def test_invalid_utf8_classes_everywhere(json_backend: str, place: str, bad: bytes) -> None:
    kind, data = utf8_case(place, bad)
    error = decode_case(kind, data)
    assert error.code == CloseCode.INVALID_DATA
    assert "UTF-8" in str(error)


def auth_challenge(value: bytes) -> bytes:
    """An AUTH_CHALLENGE whose body has an unknown member with the JSON text ``value``."""
    return frame(FrameType.AUTH_CHALLENGE, b'{"message":"m","x-extra":' + value + b"}")


def nested_hello(member: str, nested: bytes) -> bytes:
    fields: dict[str, object] = {
        "role": "host",
        "max_message_size": 1000,
        "max_metadata_size": 100,
        "features": [],
    }
    fields[member] = "@"
    return hello_frame(json.dumps(fields).encode().replace(b'"@"', nested))


# (id, stream kind, bytes, close code, True when tests/test_protocol.py has the same input and
# this module adds only the standard library back end).
R03_INPUTS: list[tuple[str, str, bytes, int, bool]] = [
    # JSON nested 10^5 deep
    ("deep-data-list", "open", data_frame(b"[" * DEEP + b"]" * DEEP), 1007, True),
    ("deep-data-dict", "open", data_frame(b'{"a":' * DEEP + b"1" + b"}" * DEEP), 1007, True),
    ("deep-data-mixed", "open", data_frame(b'[{"a":' * DEEP + b"1" + b"}]" * DEEP), 1007, False),
    ("deep-metadata", "open", data_frame(b"1", b'{"a":' * DEEP + b"1" + b"}" * DEEP), 1007, False),
    (
        "deep-metadata-array",
        "open",
        data_frame(b"1", b'{"a":' + b"[" * DEEP + b"]" * DEEP + b"}"),
        1007,
        False,
    ),
    # 2000 deep is as deep as fits in a HELLO; beyond orjson's limit and the interpreter's.
    ("deep-hello-role", "hello", nested_hello("role", b"[" * 2000 + b"]" * 2000), 1007, False),
    (
        "deep-hello-features",
        "hello",
        nested_hello("features", b"[" * 2000 + b"]" * 2000),
        1007,
        False,
    ),
    # NaN and Infinity
    ("nan-data", "open", data_frame(b"NaN"), 1007, True),
    ("infinity-data", "open", data_frame(b"Infinity"), 1007, True),
    ("-infinity-data", "open", data_frame(b"-Infinity"), 1007, True),
    ("nan-metadata", "open", data_frame(b"1", b'{"a":NaN}'), 1007, True),
    ("infinity-metadata", "open", data_frame(b"1", b'{"a":Infinity}'), 1007, False),
    (
        "-infinity-metadata-nested",
        "open",
        data_frame(b"1", b'{"a":[{"b":-Infinity}]}'),
        1007,
        False,
    ),
    ("nan-data-nested", "open", data_frame(b'{"a":{"b":[1,NaN]}}'), 1007, False),
    ("nan-hello", "hello", nested_hello("max_message_size", b"NaN"), 1007, False),
    ("infinity-hello", "hello", nested_hello("max_metadata_size", b"Infinity"), 1007, False),
    # metadata that is not an object
    ("metadata-array", "open", data_frame(b"1", b"[1]"), 1007, True),
    ("metadata-null", "open", data_frame(b"1", b"null"), 1007, True),
    ("metadata-false", "open", data_frame(b"1", b"false"), 1007, False),
    ("metadata-float", "open", data_frame(b"1", b"1.5"), 1007, False),
    ("metadata-string-of-object", "open", data_frame(b"1", b'"{}"'), 1007, False),
    ("metadata-spaced-array", "open", data_frame(b"1", b" [ ] "), 1007, False),
    ("metadata-not-object-raw-data", "open", data_frame(b"\xff", b"[]", flags=1), 1007, False),
    # trailing bytes after the JSON value
    ("trailing-data-1-2", "open", data_frame(b"1 2"), 1007, True),
    ("trailing-data-bracket", "open", data_frame(b"[1]]"), 1007, False),
    ("trailing-data-strings", "open", data_frame(b'"a""b"'), 1007, False),
    ("trailing-data-nul", "open", data_frame(b"null\x00"), 1007, False),
    ("trailing-data-objects", "open", data_frame(b"{} {}"), 1007, False),
    ("trailing-metadata-x", "open", data_frame(b"1", b"{}x"), 1007, False),
    ("trailing-metadata-object", "open", data_frame(b"1", b"{}{}"), 1007, False),
    ("trailing-metadata-number", "open", data_frame(b"1", b'{"a":1} 1'), 1007, False),
    ("trailing-hello-x", "hello", hello_frame(host_hello_body() + b"x"), 1007, False),
    ("trailing-hello-nul", "hello", hello_frame(host_hello_body() + b"\x00"), 1007, False),
    ("trailing-hello-object", "hello", hello_frame(host_hello_body() + b"{}"), 1007, False),
    # The JSON bodies of AUTH frames (docs/protocol.md, 9.8)
    ("deep-auth-member", "login", auth_challenge(b"[" * 2000 + b"]" * 2000), 1007, False),
    ("nan-auth-member", "login", auth_challenge(b"NaN"), 1007, False),
    ("infinity-auth-member", "login", auth_challenge(b"[-Infinity]"), 1007, False),
    ("auth-not-object", "login", frame(FrameType.AUTH_CHALLENGE, b'["m"]'), 1007, False),
    ("auth-null", "login", frame(FrameType.AUTH_CHALLENGE, b"null"), 1007, False),
    ("trailing-auth-x", "login", frame(FrameType.AUTH_CHALLENGE, b'{"message":"m"}x'), 1007, False),
    (
        "trailing-auth-object",
        "login",
        frame(FrameType.AUTH_CHALLENGE, b'{"message":"m"}{}'),
        1007,
        False,
    ),
    (
        "auth-message-number",
        "login",
        frame(FrameType.AUTH_CHALLENGE, b'{"message":1}'),
        1007,
        False,
    ),
]
if getattr(sys, "get_int_max_str_digits", lambda: 0)():
    # A 5000-digit integer is over CPython's default limit of 4300 digits for int().
    R03_INPUTS += [
        ("long-int-data", "open", data_frame(b"9" * 5000), 1007, True),
        ("long-negative-int-data", "open", data_frame(b"[-" + b"9" * 5000 + b"]"), 1007, False),
        ("long-int-metadata", "open", data_frame(b"1", b'{"n":' + b"9" * 5000 + b"}"), 1007, False),
    ]
# Within the HELLO limit, 4000 digits parse; the value is then out of range.
R03_INPUTS.append(
    ("long-int-hello", "hello", nested_hello("max_message_size", b"9" * 4000), 1007, False)
)


def r03_params() -> list[Any]:
    params = []
    for case_id, kind, data, code, covered in R03_INPUTS:
        for backend in ("orjson", "stdlib"):
            if backend == "orjson" and covered:
                continue  # tests/test_protocol.py decodes it with orjson already
            params.append(pytest.param(backend, kind, data, code, id=f"{case_id}-{backend}"))
    return params


@pytest.mark.parametrize(
    ("json_backend", "kind", "data", "code"), r03_params(), indirect=["json_backend"]
)
def test_r03_inputs(json_backend: str, kind: str, data: bytes, code: int) -> None:
    assert decode_case(kind, data).code == code


@pytest.mark.parametrize(
    ("payload", "meta", "expected"),
    [
        (b'{"a":1,"a":2}', b"", Message({"a": 2}, {})),
        (b'{"a":1,"b":2,"a":3}', b"", Message({"a": 3, "b": 2}, {})),
        (b'{"a":{"b":1,"b":[2]}}', b"", Message({"a": {"b": [2]}}, {})),
        (b"1", b'{"k":"x","k":{"k":1,"k":2}}', Message(1, {"k": {"k": 2}})),
        # Whitespace is not trailing garbage.
        (b"1\t", b'{"a":1} \n', Message(1, {"a": 1})),
    ],
)
def test_duplicate_members_keep_the_last_value(
    json_backend: str, payload: bytes, meta: bytes, expected: Message
) -> None:
    decoder = opened()
    decoder.receive_data(data_frame(payload, meta))
    assert decoder.events() == [expected]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"role":"client","role":"host","max_message_size":5,"max_metadata_size":6}', 5),
        (b'{"role":"host","max_message_size":1,"max_message_size":7,"max_metadata_size":6}', 7),
        (host_hello_body(max_message_size=9) + b"\r\n", 9),
    ],
    ids=["role", "size", "trailing-whitespace"],
)
def test_hello_duplicate_members_and_whitespace(
    json_backend: str, body: bytes, expected: int
) -> None:
    decoder = Decoder("client")
    decoder.receive_data(PREAMBLE + hello_frame(body))
    (hello,) = decoder.events()
    assert isinstance(hello, Hello)
    assert hello.max_message_size == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"message":1,"message":"m"}', AuthChallenge("m")),
        (b'{"message":"m","message":1}', CloseCode.INVALID_DATA),
        (b'{"message":"a","x":[1,2],"message":"b"} \r\n', AuthChallenge("b")),
    ],
    ids=["last-valid", "last-invalid", "whitespace"],
)
def test_auth_last_duplicate_member_is_the_one_taken(
    json_backend: str, body: bytes, expected: object
) -> None:
    decoder = large_decoder(login=True)
    decoder.receive_data(LOGIN_HOST_HELLO)
    assert decoder.events() == [LOGIN_PEER_HELLO]
    error = receive(decoder, frame(FrameType.AUTH_CHALLENGE, body))
    if isinstance(expected, CloseCode):
        assert error is not None
        assert error.code == expected
    else:
        assert error is None
        assert decoder.events() == [expected]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"role":"host","role":"client","max_message_size":5,"max_metadata_size":6}', 1002),
        (b'{"role":"host","max_message_size":5,"max_message_size":0,"max_metadata_size":6}', 1007),
        (
            b'{"role":"host","max_message_size":5,"max_metadata_size":6,"features":[],"features":1}',
            1007,
        ),
    ],
    ids=["role", "size", "features"],
)
def test_hello_last_duplicate_is_the_one_checked(json_backend: str, body: bytes, code: int) -> None:
    assert decode_case("hello", hello_frame(body)).code == code


# A second HELLO: tests/test_protocol.py sends one right after the first, in one piece.


def test_second_hello_after_messages_delivers_the_messages_first() -> None:
    decoder = opened()
    messages = encode_message(1) + encode_ping(b"p")
    with pytest.raises(RemoteProtocolError) as info:
        decoder.receive_data(messages + HOST_HELLO[len(PREAMBLE) :])
    assert info.value.code == CloseCode.PROTOCOL_ERROR
    assert decoder.events() == [Message(1, {}), Ping(b"p")]


@pytest.mark.parametrize("role", ["host", "client"])
def test_second_hello_one_byte_at_a_time_fails_on_its_last_byte(role: Role) -> None:
    peer = other_role(role)
    decoder = Decoder(role)
    decoder.receive_data(encode_hello(peer))
    assert len(decoder.events()) == 1
    again = encode_hello(peer)[len(PREAMBLE) :]
    for fed, byte in enumerate(again[:-1], start=1):
        decoder.receive_data(bytes([byte]))
        assert decoder.buffered == fed
    with pytest.raises(RemoteProtocolError, match="second HELLO") as info:
        decoder.receive_data(again[-1:])
    assert info.value.code == CloseCode.PROTOCOL_ERROR
    assert decoder.events() == []


def test_second_preamble_and_hello_is_rejected_from_the_header() -> None:
    # "ALVARO" read as a frame header: length 0x414c5641, type 0x52 ("R"): an unknown type.
    decoder = opened()
    with pytest.raises(RemoteProtocolError, match="unknown frame type 0x52") as info:
        decoder.receive_data(HOST_HELLO[:HEADER_SIZE])
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_second_hello_with_the_other_role_is_still_a_second_hello() -> None:
    decoder = opened()
    with pytest.raises(RemoteProtocolError, match="second HELLO"):
        decoder.receive_data(encode_hello("client")[len(PREAMBLE) :])


def test_hello_after_close_is_dropped() -> None:
    decoder = opened()
    decoder.receive_data(encode_close(1000) + HOST_HELLO[len(PREAMBLE) :])
    decoder.receive_data(HOST_HELLO)
    assert decoder.events() == [Close(1000)]
    assert decoder.buffered == 0


# A HELLO member nested about 1000 deep: orjson parses it (its limit is 1024 levels), so the
# decoder gets a value nested deeper than CPython before 3.12 can repr() (the recursion limit
# is 1000 by default). The error that rejects it must still be a RemoteProtocolError, not a
# RecursionError from formatting the value into the error message.
NEAR_ORJSON_DEPTH = 1020


@pytest.mark.parametrize("member", ["role", "max_message_size", "max_metadata_size"])
def test_hello_member_nested_near_orjsons_depth_limit(json_backend: str, member: str) -> None:
    nested = b"[" * NEAR_ORJSON_DEPTH + b"]" * NEAR_ORJSON_DEPTH
    error = decode_case("hello", nested_hello(member, nested))
    allowed = {CloseCode.INVALID_DATA}  # too deep for the standard library to parse
    if member == "role":
        allowed.add(CloseCode.PROTOCOL_ERROR)  # parsed, and not the expected role (2.2 check 3)
    assert error.code in allowed


# Properties: each kind of R03 input, generated. The decoder must reject the input with the
# expected code, or deliver exactly the expected message.

BACKENDS = ["stdlib"] if _json._orjson_loads is None else ["orjson", "stdlib"]


@contextmanager
def backend_in_use(name: str) -> Iterator[None]:
    saved = _json._orjson_loads
    if name == "stdlib":
        _json._orjson_loads = None
    try:
        yield
    finally:
        _json._orjson_loads = saved


@dataclass(frozen=True)
class Case:
    """An input and what the decoder must make of it."""

    label: str
    kind: str  # "open": after the host's HELLO; "hello": the HELLO itself
    data: bytes
    code: int | None = None  # the close code of the expected error...
    event: Message | Hello | None = None  # ...or the event expected instead
    either: bool = False  # the message, or INVALID_DATA: a receiver may limit nesting (1.5)
    text: str = ""  # a word the error message must contain


def as_place(text: bytes, place: str) -> bytes:
    """A DATA frame carrying the JSON ``text`` as payload, or as the value of a metadata member."""
    if place == "data":
        return data_frame(text)
    return data_frame(b"0", b'{"k":' + text + b"}")


def in_place(value: Any, place: str) -> Message:
    return Message(value, {}) if place == "data" else Message(0, {"k": value})


places = st.sampled_from(["data", "metadata"])
json_whitespace = st.text(" \t\r\n", max_size=3)


@st.composite
def invalid_utf8_cases(draw: st.DrawFn) -> Case:
    bad = draw(st.sampled_from(sorted(INVALID_UTF8.values())))
    if draw(st.booleans()):  # in a CLOSE reason
        text = draw(close_reasons).encode()
        at = draw(st.integers(0, len(text)))
        body = struct.pack("!H", draw(close_codes)) + text[:at] + bad + text[at:]
        data = frame(FrameType.CLOSE, body)
    else:  # anywhere in a JSON text: inside a string or not, it is never UTF-8
        text = json.dumps(draw(json_values), ensure_ascii=draw(st.booleans())).encode()
        at = draw(st.integers(0, len(text)))
        data = as_place(text[:at] + bad + text[at:], draw(places))
    return Case("invalid UTF-8", "open", data, CloseCode.INVALID_DATA, text="UTF-8")


@st.composite
def trailing_bytes_cases(draw: st.DrawFn) -> Case:
    text = json.dumps(draw(json_values)).encode()
    space = draw(json_whitespace).encode()
    junk = draw(st.binary(min_size=1, max_size=8).filter(lambda b: b[:1] not in b" \t\r\n"))
    if not space and text[-1:].isdigit() and junk[:1] in b"0123456789.eE":
        space = b" "  # the junk would carry on the number
    place = draw(st.sampled_from(["data", "metadata", "hello"]))
    if place == "hello":
        data = hello_frame(host_hello_body() + space + junk)
        return Case("trailing bytes", "hello", data, CloseCode.INVALID_DATA)
    if place == "metadata":
        text = b'{"k":' + text + b"}"
        return Case("trailing bytes", "open", data_frame(b"0", text + space + junk), 1007)
    return Case("trailing bytes", "open", data_frame(text + space + junk), 1007)


@st.composite
def duplicate_member_cases(draw: st.DrawFn) -> Case:
    members = draw(st.lists(st.tuples(st.sampled_from("abc"), small_values), max_size=8))
    space = draw(json_whitespace)
    text = "{" + ",".join(f"{json.dumps(k)}:{space}{json.dumps(v)}" for k, v in members) + "}"
    expected = dict(members)  # the last value of each name wins
    place = draw(places)
    return Case(
        "duplicates", "open", as_place(text.encode(), place), None, in_place(expected, place)
    )


@st.composite
def non_finite_cases(draw: st.DrawFn) -> Case:
    value = draw(json_values)
    bad = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    wrapped = draw(st.sampled_from([[value, bad], [bad, value], {"v": value, "x": bad}]))
    text = json.dumps(wrapped).encode()  # Python writes NaN, Infinity, -Infinity
    return Case("NaN or Infinity", "open", as_place(text, draw(places)), CloseCode.INVALID_DATA)


@st.composite
def nesting_cases(draw: st.DrawFn) -> Case:
    # Shallow; around orjson's limit (1024) and the interpreter's (1000); deeper than both.
    depth = draw(st.integers(1, 50) | st.integers(900, 1100) | st.integers(1100, 5000))
    pattern = draw(st.sampled_from(["[]", "{}", "[{}"]))
    opening = {"[]": b"[", "{}": b'{"a":', "[{}": b'[{"a":'}[pattern]
    closing = {"[]": b"]", "{}": b"}", "[{}": b"}]"}[pattern]
    text = opening * depth + b"1" + closing * depth
    place = draw(st.sampled_from(["data", "metadata", "hello-features", "hello-extra"]))
    if place == "hello-features" and len(text) < CONTROL_LIMIT - 100:
        # Never a list of strings: rejected, as too deep or as the wrong type.
        return Case("nesting", "hello", nested_hello("features", text), CloseCode.INVALID_DATA)
    if place == "hello-extra" and len(text) < CONTROL_LIMIT - 100:
        # An unknown member is ignored, however deep, unless the receiver limits nesting.
        hello = Hello(VERSION, "host", 1000, 100)
        return Case("nesting", "hello", nested_hello("x-extra", text), None, hello, either=True)
    value: Any = 1
    for _ in range(depth):
        value = [value] if pattern == "[]" else {"a": value} if pattern == "{}" else [{"a": value}]
    place = "data" if place.startswith("hello") else place
    return Case("nesting", "open", as_place(text, place), None, in_place(value, place), depth > 50)


r03_cases = st.one_of(
    invalid_utf8_cases(),
    trailing_bytes_cases(),
    duplicate_member_cases(),
    non_finite_cases(),
    nesting_cases(),
)


def same_value(a: object, b: object) -> bool:
    """Deep equality without recursion, for values nested deeper than the interpreter's stack."""
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, list):
            assert isinstance(y, list)
            if len(x) != len(y):
                return False
            pending += zip(x, y, strict=True)
        elif isinstance(x, dict):
            assert isinstance(y, dict)
            if x.keys() != y.keys():
                return False
            pending += ((x[k], y[k]) for k in x)
        elif x != y:
            return False
    return True


def receive(decoder: Decoder, data: bytes) -> RemoteProtocolError | None:
    try:
        decoder.receive_data(data)
    except RemoteProtocolError as exc:
        return exc
    return None


def check_r03_case(case: Case, backend: str) -> None:
    decoder = large_decoder()
    data = case.data
    if case.kind == "open":
        decoder.receive_data(HOST_HELLO)
        assert decoder.events() == [PEER_HELLO]
    else:
        data = PREAMBLE + data
    with backend_in_use(backend):
        error = receive(decoder, data)
    if error is not None:
        check_error(error)
        assert decoder.events() == []
        if case.code is None:
            assert case.either, f"{case.label}: rejected a valid input: {error}"
            assert error.code == CloseCode.INVALID_DATA
        else:
            assert error.code == case.code
            assert case.text in str(error)
        return
    assert case.code is None, f"{case.label}: the decoder accepted it"
    (event,) = decoder.events()
    assert case.event is not None
    if isinstance(case.event, Hello):
        assert event == case.event
    else:
        assert isinstance(event, Message)
        assert same_value(event.data, case.event.data)
        assert same_value(event.metadata, case.event.metadata)
    assert decoder.buffered == 0


@R03_PROPERTY
@given(r03_cases, st.sampled_from(BACKENDS))
def test_r03_generated_inputs(case: Case, backend: str) -> None:
    check_r03_case(case, backend)


@pytest.mark.slow
@pytest.mark.timeout(LONG_TIMEOUT)
@LONG
@given(r03_cases, st.sampled_from(BACKENDS))
def test_r03_generated_inputs_long(case: Case, backend: str) -> None:
    check_r03_case(case, backend)
