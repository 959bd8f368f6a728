"""Tests of the sans-I/O codec in ``alvaro.protocol``: round trips, malformed input and fuzzing."""

from __future__ import annotations

import itertools
import json
import math
import struct
import sys
from typing import Any

import pytest
from hypothesis import given, strategies as st

from alvaro import CloseCode, EncodeError, MessageTooLarge, RemoteProtocolError
from alvaro.protocol import (
    AUTH_MECHANISM,
    CONTROL_LIMIT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_METADATA_SIZE,
    MAGIC,
    MAX_CLOSE_REASON,
    MAX_LIMIT,
    PREAMBLE,
    SUPPORTED_FEATURES,
    VERSION,
    AuthChallenge,
    AuthFail,
    AuthOk,
    AuthResponse,
    AuthStart,
    Close,
    Decoder,
    Encoding,
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

EVENT_TYPES = (Hello, Message, Ping, Pong, Close)
RESERVED_TYPES = [
    FrameType.REQUEST,
    FrameType.REPLY,
    FrameType.CHUNK,
    FrameType.CHUNK_ABORT,
    FrameType.ACK,
    FrameType.CANCEL,
    FrameType.AUTH_START,
    FrameType.AUTH_CHALLENGE,
    FrameType.AUTH_RESPONSE,
    FrameType.AUTH_OK,
    FrameType.AUTH_FAIL,
    FrameType.LOGOUT,
]

HOST_HELLO = encode_hello("host")
PEER_HELLO = Hello(VERSION, "host", DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_METADATA_SIZE)

# The selected Hypothesis profile (tests/hypothesis_profiles.py): in CI, 500 derandomized examples
# for the round-trip (R01) and malformed-input (R03) properties.
FAST = default_settings()
# Costly properties get a share of the profile's examples, to keep the default suite fast:
# tests/test_protocol_fuzz.py fuzzes the same ground with the whole profile.
SHARE = default_settings(0.6)
LIGHT = default_settings(0.35)
# The long runs, behind the slow marker: python3 -m pytest -m slow
SLOW = long_settings()


# --- Helpers ----------------------------------------------------------------------------------


def frame(frame_type: int, body: bytes = b"", flags: int = 0, length: int | None = None) -> bytes:
    """A raw frame; ``length`` overrides the body length the header states."""
    stated = len(body) if length is None else length
    return struct.pack("!IBB", stated, frame_type, flags) + body


def data_frame(
    payload: bytes,
    meta: bytes = b"",
    *,
    flags: int = Encoding.JSON,
    meta_length: int | None = None,
) -> bytes:
    stated = len(meta) if meta_length is None else meta_length
    return frame(FrameType.DATA, struct.pack("!I", stated) + meta + payload, flags)


def hello_frame(body: object) -> bytes:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return PREAMBLE + frame(FrameType.HELLO, raw)


def host_hello_fields(**changes: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "role": "host",
        "max_message_size": 1000,
        "max_metadata_size": 100,
        "features": [],
    }
    fields.update(changes)
    return fields


def opened(**kwargs: Any) -> Decoder:
    """A client-side decoder that has received the host's preamble and HELLO."""
    decoder = Decoder("client", **kwargs)
    decoder.receive_data(HOST_HELLO)
    assert decoder.events() == [PEER_HELLO]
    assert decoder.handshake_complete
    return decoder


# Feature "auth" (docs/protocol.md, 9.8): the HELLOs of a host that requires login and of a
# client that can log in, and the SCRAM-SHA-256 messages of RFC 7677's example (user "user",
# password "pencil").
AUTH_HOST_HELLO = encode_hello("host", features=["auth"], auth_required=True)
AUTH_CLIENT_HELLO = encode_hello("client", features=["auth"])
AUTH_PEER_HELLO = Hello(
    VERSION,
    "host",
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_METADATA_SIZE,
    frozenset({"auth"}),
    auth_required=True,
)
CLIENT_FIRST = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = (
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
CLIENT_FINAL = (
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def auth_client(**kwargs: Any) -> Decoder:
    """A client-side decoder offering "auth" that has received the HELLO of a host that
    requires login."""
    decoder = Decoder("client", features=["auth"], **kwargs)
    decoder.receive_data(AUTH_HOST_HELLO)
    assert decoder.events() == [AUTH_PEER_HELLO]
    assert decoder.negotiated == {"auth"}
    return decoder


def login_host(**kwargs: Any) -> Decoder:
    """A host-side decoder that requires login and has received the HELLO of a client that
    offers "auth"."""
    decoder = Decoder("host", features=["auth"], login_required=True, **kwargs)
    decoder.receive_data(AUTH_CLIENT_HELLO)
    (hello,) = decoder.events()
    assert hello == Hello(
        VERSION, "client", DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_METADATA_SIZE, frozenset({"auth"})
    )
    assert decoder.negotiated == {"auth"}
    return decoder


HOST_STAGES = ("idle", "started", "answered", "logged in", "logged out")
CLIENT_STAGES = ("idle", "challenged", "logged in", "refused", "refused at once")


def host_at(stage: str) -> Decoder:
    """A login host's decoder at ``stage`` of the login, as seen from what it received."""
    decoder = login_host()
    steps = HOST_STAGES.index(stage)
    if steps >= 1:
        decoder.receive_data(encode_auth_start(CLIENT_FIRST))
    if steps >= 2:
        decoder.receive_data(encode_auth_response(CLIENT_FINAL))
    if steps >= 3:
        decoder.accept_login()
    if steps >= 4:
        decoder.receive_data(encode_logout())
    assert len(decoder.events()) == min(steps, 2) + (steps >= 4)
    return decoder


def client_at(stage: str) -> Decoder:
    """A client's decoder at ``stage`` of the login, as seen from what it received."""
    challenge = encode_auth_challenge(SERVER_FIRST)
    received = {
        "idle": [],
        "challenged": [challenge],
        "logged in": [challenge, encode_auth_ok(SERVER_FINAL, "user")],
        "refused": [challenge, encode_auth_fail("no")],
        "refused at once": [encode_auth_fail("no")],
    }[stage]
    decoder = auth_client()
    decoder.receive_data(b"".join(received))
    assert len(decoder.events()) == len(received)
    return decoder


def expect_error(decoder: Decoder, data: bytes, code: CloseCode) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decoder.receive_data(data)
    assert info.value.code == code
    assert isinstance(info.value.code, CloseCode)
    return info.value


def same(a: object, b: object) -> bool:
    """Equality that also tells True from 1, 1 from 1.0, -0.0 from 0.0 and key order apart."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        assert isinstance(b, list)
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, dict):
        assert isinstance(b, dict)
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float):
        assert isinstance(b, float)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return a == b


def cut(stream: bytes, points: list[int]) -> list[bytes]:
    """Cut ``stream`` at ``points``; repeated points make empty pieces."""
    bounds = [0, *sorted(p % (len(stream) + 1) for p in points), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


# --- Strategies -------------------------------------------------------------------------------

keys = st.text(max_size=8)
json_leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)


def json_nested(depth: int) -> st.SearchStrategy[Any]:
    """JSON values nested at most ``depth`` containers deep (st.recursive retries too often)."""
    if depth == 0:
        return json_leaves
    children = json_nested(depth - 1)
    return (
        json_leaves | st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)
    )


json_values = json_nested(3)
metadata_values = st.dictionaries(keys, json_values, max_size=4)
messages = st.builds(Message, data=json_values | st.binary(), metadata=metadata_values)
message_lists = st.lists(messages, min_size=1, max_size=50)
cut_points = st.lists(st.integers(min_value=0, max_value=2**20), max_size=100)


def encode_stream(msgs: list[Message]) -> bytes:
    return HOST_HELLO + b"".join(encode_message(m.data, m.metadata) for m in msgs)


# --- Round trips (R01) ------------------------------------------------------------------------


def check_round_trip(msgs: list[Message], points: list[int]) -> None:
    decoder = Decoder("client")
    received = []
    for piece in cut(encode_stream(msgs), points):
        decoder.receive_data(piece)
        received += decoder.events()
    assert received == [PEER_HELLO, *msgs]
    for event, sent in zip(received[1:], msgs, strict=True):
        assert isinstance(event, Message)
        assert same(event.data, sent.data)
        assert same(event.metadata, sent.metadata)
    assert decoder.buffered == 0


@FAST
@given(message_lists, cut_points)
def test_messages_round_trip_in_any_segmentation(msgs: list[Message], points: list[int]) -> None:
    check_round_trip(msgs, points)


@pytest.mark.slow
@pytest.mark.timeout(LONG_TIMEOUT)
@SLOW
@given(message_lists, cut_points)
def test_messages_round_trip_in_any_segmentation_soak(
    msgs: list[Message], points: list[int]
) -> None:
    check_round_trip(msgs, points)


@LIGHT
@given(st.lists(messages, min_size=1, max_size=5))
def test_one_byte_at_a_time_emits_each_event_when_its_last_byte_arrives(
    msgs: list[Message],
) -> None:
    frames = [
        PREAMBLE,
        HOST_HELLO[len(PREAMBLE) :],
        *(encode_message(m.data, m.metadata) for m in msgs),
        encode_ping(b"p"),
        encode_pong(b"q"),
        encode_close(CloseCode.NORMAL, "bye"),
    ]
    # The preamble is consumed without an event; each frame yields one.
    expected = [[], [PEER_HELLO], *([m] for m in msgs), [Ping(b"p")], [Pong(b"q")]]
    expected.append([Close(CloseCode.NORMAL, "bye")])
    decoder = Decoder("client")
    for frame_bytes, events in zip(frames, expected, strict=True):
        for fed in range(1, len(frame_bytes)):
            decoder.receive_data(frame_bytes[fed - 1 : fed])
            assert decoder.buffered == fed
        assert decoder.events() == []
        decoder.receive_data(frame_bytes[-1:])
        assert decoder.buffered == 0
        assert decoder.events() == events


def test_one_byte_at_a_time_fixed_stream() -> None:
    msgs = [
        Message({"a": [1, 2.5, None, True, "é"]}, {"kind": "point"}),
        Message(b"\x00\xff raw", {}),
        Message([], {"nested": {"x": [{}]}}),
        Message("", {}),
    ]
    stream = encode_stream(msgs) + encode_ping(b"hi")
    decoder = Decoder("client")
    received = []
    for byte in stream:
        decoder.receive_data(bytes([byte]))
        received += decoder.events()
    assert received == [PEER_HELLO, *msgs, Ping(b"hi")]
    assert decoder.buffered == 0


def test_max_limit_is_the_largest_size_a_u32_body_length_can_carry() -> None:
    assert MAX_LIMIT == 4294967291 == 2**32 - 1 - 4  # docs/protocol.md, section 2.2


def test_host_decodes_client_hello_with_limits_and_version() -> None:
    decoder = Decoder("host")
    decoder.receive_data(encode_hello("client", max_message_size=MAX_LIMIT, max_metadata_size=1))
    assert decoder.events() == [Hello(VERSION, "client", MAX_LIMIT, 1, frozenset())]
    assert decoder.handshake_complete


def test_hello_features_and_missing_features_field() -> None:
    decoder = Decoder("client")
    decoder.receive_data(hello_frame(host_hello_fields(features=["zeta", "alpha"])))
    assert decoder.events() == [Hello(1, "host", 1000, 100, frozenset({"alpha", "zeta"}))]
    fields = host_hello_fields()
    del fields["features"]
    decoder = Decoder("client")
    decoder.receive_data(hello_frame(fields))
    assert decoder.events() == [Hello(1, "host", 1000, 100, frozenset())]


def test_newer_peer_version_is_accepted_and_reported() -> None:
    decoder = Decoder("client")
    decoder.receive_data(MAGIC + bytes((7, 0)) + HOST_HELLO[len(PREAMBLE) :])
    assert decoder.events() == [
        Hello(7, "host", DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_METADATA_SIZE)
    ]


def test_control_frames_round_trip() -> None:
    decoder = opened()
    decoder.receive_data(encode_ping() + encode_ping(b"x" * CONTROL_LIMIT) + encode_pong(b"\x00"))
    assert decoder.events() == [Ping(b""), Ping(b"x" * CONTROL_LIMIT), Pong(b"\x00")]
    decoder.receive_data(encode_close(4123, "done ✓"))
    assert decoder.events() == [Close(4123, "done ✓")]


def test_close_before_hello_is_accepted_but_is_not_a_handshake() -> None:
    decoder = Decoder("client")
    decoder.receive_data(PREAMBLE + encode_close(CloseCode.TRY_AGAIN_LATER, "busy"))
    assert decoder.events() == [Close(CloseCode.TRY_AGAIN_LATER, "busy")]
    assert not decoder.handshake_complete
    assert decoder.closed


def test_handshake_complete_tracks_the_hello() -> None:
    decoder = Decoder("client")
    seen = [decoder.handshake_complete]
    decoder.receive_data(HOST_HELLO[:-1])
    seen.append(decoder.handshake_complete)
    decoder.receive_data(HOST_HELLO[-1:])
    seen.append(decoder.handshake_complete)
    expect_error(decoder, frame(0x7F), CloseCode.PROTOCOL_ERROR)
    seen.append(decoder.handshake_complete)  # a later error does not undo the received HELLO
    assert seen == [False, False, True, True]
    assert not decoder.closed  # an error is not the peer's CLOSE


def test_exact_limits_are_accepted() -> None:
    meta = json.dumps({"k": "v" * 10}, separators=(",", ":")).encode()
    decoder = opened(max_message_size=len(meta) + 3, max_metadata_size=len(meta))
    decoder.receive_data(data_frame(b"123", meta))
    assert decoder.events() == [Message(123, {"k": "v" * 10})]


def test_large_buffer_is_compacted_without_losing_the_partial_frame() -> None:
    msgs = [Message("x" * 1000, {"i": i}) for i in range(80)]
    body = b"".join(encode_message(m.data, m.metadata) for m in msgs)
    last = encode_message(b"tail", {"last": True})
    decoder = opened()
    decoder.receive_data(body + last[:7])  # over 64 KiB consumed, 7 bytes of a frame left
    assert decoder.events() == msgs
    assert decoder.buffered == 7
    decoder.receive_data(last[7:])
    assert decoder.events() == [Message(b"tail", {"last": True})]
    assert decoder.buffered == 0


def test_receive_data_accepts_bytearray_and_memoryview() -> None:
    decoder = Decoder("client")
    decoder.receive_data(bytearray(HOST_HELLO))
    decoder.receive_data(memoryview(encode_message([1], {"a": 1})))
    assert decoder.events() == [PEER_HELLO, Message([1], {"a": 1})]


def test_empty_chunk_is_ignored() -> None:
    decoder = Decoder("client")
    decoder.receive_data(b"")
    decoder.receive_data(HOST_HELLO[:3])
    decoder.receive_data(b"")
    assert decoder.events() == []
    assert decoder.buffered == 3
    decoder.receive_data(HOST_HELLO[3:])
    assert decoder.events() == [PEER_HELLO]


def test_events_are_returned_once() -> None:
    decoder = opened()
    decoder.receive_data(encode_ping())
    assert decoder.events() == [Ping()]
    assert decoder.events() == []


def test_message_sizes_give_each_message_its_own_wire_size() -> None:
    """What a receive queue counts: each message's own frame, not a read's bytes shared out
    over the frames in it (control frames included), so PINGs cannot shrink a message."""
    decoder = opened()
    big = encode_message(b"x" * 300_000)
    small = encode_message({"n": 1}, {"kind": "k"})
    decoder.receive_data(big + encode_ping() * 1000 + small + encode_pong(b"p"))
    events = decoder.events()
    assert len(events) == 1003
    assert decoder.message_sizes == [len(big), len(small)]
    # A message cut across reads counts once, with the read in which it completes.
    decoder.receive_data(small[:5])
    assert decoder.events() == []
    assert decoder.message_sizes == []
    decoder.receive_data(small[5:] + encode_ping())
    assert decoder.events() == [Message({"n": 1}, {"kind": "k"}), Ping()]
    assert decoder.message_sizes == [len(small)]


def test_a_released_memoryview_is_an_encode_error() -> None:
    view = memoryview(b"abc")
    view.release()
    with pytest.raises(EncodeError, match="released"):
        encode_message(view)


# --- The examples and rules of docs/protocol.md ----------------------------------------------

SPEC_CLIENT_HELLO = bytes.fromhex(
    "414c5641524f0100000000542000"
    "7b22726f6c65223a22636c69656e74222c226d61785f6d6573736167655f73697a65223a31303438353736"
    "2c226d61785f6d657461646174615f73697a65223a36353533362c226665617475726573223a5b5d7d"
)


@pytest.mark.parametrize(
    ("encoded", "spec_hex", "event"),
    [
        (
            encode_message({"x": 1}, {"kind": "point"}),
            "0000001b0100000000107b226b696e64223a22706f696e74227d7b2278223a317d",
            Message({"x": 1}, {"kind": "point"}),
        ),
        (
            encode_message("héllo"),
            "0000000c010000000000" + "2268c3a96c6c6f22",
            Message("héllo", {}),
        ),
        (
            encode_message(b"\x00\x01\x02\xff"),
            "0000000801010000000000" + "0102ff",
            Message(b"\x00\x01\x02\xff", {}),
        ),
        (
            encode_message(b"hi", {"id": 7}),
            "0000000e0101000000087b226964223a377d6869",
            Message(b"hi", {"id": 7}),
        ),
        (encode_ping(b"\x00\x00\x00\x01"), "00000004100000000001", Ping(b"\x00\x00\x00\x01")),
        (encode_pong(b"\x00\x00\x00\x01"), "00000004110000000001", Pong(b"\x00\x00\x00\x01")),
        (encode_close(1000, "bye"), "0000000512" + "0003e8627965", Close(1000, "bye")),
        (encode_close(1000), "00000002120003e8", Close(1000, "")),
    ],
    ids=["data-1", "data-2", "data-3", "data-4", "ping", "pong", "close", "close-empty"],
)
def test_spec_frame_examples(encoded: bytes, spec_hex: str, event: object) -> None:
    assert encoded == bytes.fromhex(spec_hex)
    decoder = opened()
    decoder.receive_data(encoded)
    assert decoder.events() == [event]


def test_spec_hello_examples() -> None:
    assert encode_hello("client") == SPEC_CLIENT_HELLO
    assert len(SPEC_CLIENT_HELLO) == 98
    host_hello = SPEC_CLIENT_HELLO.replace(b'"client"', b'"host"').replace(b"\x00\x54", b"\x00\x52")
    assert encode_hello("host") == host_hello
    # alvaro's client lists "auth": six bytes longer (docs/protocol.md, 2.2).
    auth_hello = SPEC_CLIENT_HELLO.replace(b"[]", b'["auth"]').replace(b"\x00\x54", b"\x00\x5a")
    assert encode_hello("client", features=["auth"]) == auth_hello
    decoder = Decoder("host")
    decoder.receive_data(SPEC_CLIENT_HELLO)
    assert decoder.events() == [
        Hello(1, "client", DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MAX_METADATA_SIZE)
    ]


def test_preamble_reserved_byte_is_ignored() -> None:
    decoder = Decoder("client")
    decoder.receive_data(MAGIC + b"\x01\xff" + HOST_HELLO[len(PREAMBLE) :])
    assert decoder.events() == [PEER_HELLO]


def test_unknown_hello_members_are_ignored_and_repeated_features_count_once() -> None:
    fields = host_hello_fields(
        features=["ack", "ack", "x"], max_transfer_size=2**64 - 1, auth_required=True, v2={}
    )
    decoder = Decoder("client")
    decoder.receive_data(hello_frame(fields))
    assert decoder.events() == [Hello(1, "host", 1000, 100, frozenset({"ack", "x"}))]


def test_receiver_accepts_any_valid_json_text() -> None:
    decoder = opened()
    decoder.receive_data(
        data_frame(b' \t\r\n[ "\\u00e9\\ud83d\\ude00" , 1e2 ,-0 ] \n', b' { "a" : 1 , "a" : 2 } ')
        + data_frame(b"null", b"{}")
        + data_frame(b"", flags=Encoding.BYTES)
    )
    assert decoder.events() == [
        Message(["é😀", 100.0, 0], {"a": 2}),  # the last duplicate member wins
        Message(None, {}),
        Message(b"", {}),
    ]


def test_byte_order_mark_is_a_json_error_but_part_of_a_close_reason() -> None:
    expect_error(opened(), data_frame(b"\xef\xbb\xbf1"), CloseCode.INVALID_DATA)
    decoder = opened()
    decoder.receive_data(frame(FrameType.CLOSE, b"\x03\xe8\xef\xbb\xbfhi"))
    assert decoder.events() == [Close(1000, "\ufeffhi")]


def test_receiver_accepts_close_reasons_up_to_the_control_limit() -> None:
    reason = "r" * (CONTROL_LIMIT - 2)
    decoder = opened()
    decoder.receive_data(frame(FrameType.CLOSE, b"\xff\xff" + reason.encode()))
    assert decoder.events() == [Close(0xFFFF, reason)]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        # D1 before D2: the size is checked before the flags.
        (frame(FrameType.DATA, flags=0xFF, length=2**32 - 1), CloseCode.MESSAGE_TOO_BIG),
        # C2/C3 before C4 before C5: type, then flags, then length.
        (frame(0x7F, flags=1, length=2**32 - 1), CloseCode.PROTOCOL_ERROR),
        (frame(FrameType.ACK, flags=1, length=2**32 - 1), CloseCode.PROTOCOL_ERROR),
        (frame(FrameType.PING, flags=1, length=2**32 - 1), CloseCode.PROTOCOL_ERROR),
        # D4 before D5, D5 before D6.
        (data_frame(b"", b"x" * 20, meta_length=21), CloseCode.PROTOCOL_ERROR),
        (data_frame(b"{", b"[" * 20), CloseCode.MESSAGE_TOO_BIG),
    ],
)
def test_checks_are_made_in_the_specified_order(data: bytes, code: CloseCode) -> None:
    expect_error(opened(max_metadata_size=19), data, code)


def test_metadata_is_checked_before_the_payload() -> None:
    exc = expect_error(opened(), data_frame(b"{", b"[]"), CloseCode.INVALID_DATA)
    assert "metadata" in str(exc)


def test_hello_role_is_checked_before_the_sizes() -> None:
    fields = host_hello_fields(role="client", max_message_size=0)
    expect_error(Decoder("client"), hello_frame(fields), CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize(
    ("data", "metadata", "expected"),
    [
        ({1: "a", "1": "b"}, None, ({"1": "b"}, {})),
        (1, {None: 1, "null": 2}, (1, {"null": 2})),
        ([{True: 1, "true": 2}], None, ([{"true": 2}], {})),
    ],
)
def test_converted_keys_that_collide_keep_the_last_value(
    data: object, metadata: Any, expected: tuple[object, dict[str, Any]]
) -> None:
    # Keys are converted as json.dumps does; a collision yields a duplicate member, and the
    # receiver keeps the last one (docs/protocol.md, 1.5).
    decoder = opened()
    decoder.receive_data(encode_message(data, metadata))
    (message,) = decoder.events()
    assert isinstance(message, Message)
    assert (message.data, message.metadata) == expected


# --- Malformed input (R02/R03) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01", "TLS"),
        (b"GET / HTTP/1.1\r\n", "HTTP"),
        (b"\x00\x00\x00\x01", "not speaking the alvaro protocol"),
        (b"ALVARX\x01\x00", "not speaking the alvaro protocol"),
        (b"alvaro\x01\x00", "not speaking the alvaro protocol"),
    ],
)
def test_wrong_magic(data: bytes, hint: str) -> None:
    exc = expect_error(Decoder("host"), data, CloseCode.PROTOCOL_ERROR)
    assert hint in str(exc)


def test_wrong_magic_is_detected_from_the_first_wrong_byte() -> None:
    decoder = Decoder("host")
    decoder.receive_data(b"ALV")
    expect_error(decoder, b"x", CloseCode.PROTOCOL_ERROR)


def test_tls_is_recognised_from_its_first_byte() -> None:
    exc = expect_error(Decoder("host"), b"\x16", CloseCode.PROTOCOL_ERROR)
    assert "TLS" in str(exc)


def test_version_zero_is_unsupported() -> None:
    expect_error(Decoder("client"), MAGIC + b"\x00\x00", CloseCode.UNSUPPORTED)


def test_data_before_hello() -> None:
    decoder = Decoder("client")
    exc = expect_error(decoder, PREAMBLE + data_frame(b"1"), CloseCode.PROTOCOL_ERROR)
    assert "before the peer's HELLO" in str(exc)


@pytest.mark.parametrize("frame_type", [FrameType.PING, FrameType.PONG, 0x00, 0xFF])
def test_other_frames_before_hello(frame_type: int) -> None:
    expect_error(Decoder("client"), PREAMBLE + frame(frame_type), CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("frame_type", [0x00, 0x08, 0x0F, 0x13, 0x1F, 0x27, 0x80, 0xFF])
def test_unknown_frame_type(frame_type: int) -> None:
    exc = expect_error(opened(), frame(frame_type), CloseCode.PROTOCOL_ERROR)
    assert "unknown frame type" in str(exc)


@pytest.mark.parametrize("frame_type", RESERVED_TYPES)
def test_reserved_frame_type_not_negotiated(frame_type: FrameType) -> None:
    exc = expect_error(opened(), frame(frame_type, b"{}"), CloseCode.PROTOCOL_ERROR)
    assert "not negotiated" in str(exc)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(FrameType.AUTH_CHALLENGE, b"{}", 1), CloseCode.PROTOCOL_ERROR),
        (frame(FrameType.AUTH_CHALLENGE, length=CONTROL_LIMIT + 1), CloseCode.MESSAGE_TOO_BIG),
        # Negotiating one feature does not open the types of another.
        (frame(FrameType.REQUEST), CloseCode.PROTOCOL_ERROR),
        (frame(FrameType.ACK, b"\x00" * 8), CloseCode.PROTOCOL_ERROR),
    ],
    ids=["flags", "length", "request", "ack"],
)
def test_negotiated_reserved_frame_header_is_still_checked(data: bytes, code: CloseCode) -> None:
    expect_error(auth_client(), data[:6], code)  # the header alone decides


@pytest.mark.parametrize("flags", [2, 3, 4, 0x80, 0xFF])
def test_data_frame_with_reserved_flags(flags: int) -> None:
    expect_error(opened(), data_frame(b"1", flags=flags), CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize(
    "frame_type", [FrameType.PING, FrameType.PONG, FrameType.CLOSE, FrameType.HELLO]
)
@pytest.mark.parametrize("flags", [1, 0x80])
def test_control_frame_with_reserved_flags(frame_type: FrameType, flags: int) -> None:
    body = struct.pack("!H", 1000) if frame_type == FrameType.CLOSE else b""
    expect_error(opened(), frame(frame_type, body, flags), CloseCode.PROTOCOL_ERROR)


def test_hello_with_reserved_flags() -> None:
    data = PREAMBLE + frame(FrameType.HELLO, json.dumps(host_hello_fields()).encode(), 1)
    expect_error(Decoder("client"), data, CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("limit", [1, 100, DEFAULT_MAX_MESSAGE_SIZE])
@pytest.mark.parametrize("over", ["max+1", "u32 max"])
def test_oversize_data_is_rejected_from_the_header_alone(limit: int, over: str) -> None:
    decoder = opened(max_message_size=limit)
    length = 2**32 - 1 if over == "u32 max" else limit + 4 + 1
    header = frame(FrameType.DATA, length=length)
    assert len(header) == 6
    decoder.receive_data(header[:5])
    expect_error(decoder, header[5:], CloseCode.MESSAGE_TOO_BIG)


@pytest.mark.parametrize("frame_type", [FrameType.PING, FrameType.PONG, FrameType.CLOSE])
@pytest.mark.parametrize("length", [CONTROL_LIMIT + 1, 2**32 - 1])
def test_oversize_control_frame_is_rejected_from_the_header_alone(
    frame_type: FrameType, length: int
) -> None:
    expect_error(opened(), frame(frame_type, length=length), CloseCode.MESSAGE_TOO_BIG)


def test_oversize_hello_is_rejected_from_the_header_alone() -> None:
    data = PREAMBLE + frame(FrameType.HELLO, length=CONTROL_LIMIT + 1)
    expect_error(Decoder("client"), data, CloseCode.MESSAGE_TOO_BIG)


def test_metadata_over_limit() -> None:
    decoder = opened(max_metadata_size=10)
    expect_error(decoder, data_frame(b"1", b'{"k":"0123456"}'), CloseCode.MESSAGE_TOO_BIG)


def test_metadata_length_longer_than_body() -> None:
    decoder = opened()
    expect_error(decoder, data_frame(b"1", b"{}", meta_length=4), CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("length", [0, 1, 3])
def test_data_body_shorter_than_metadata_length_field(length: int) -> None:
    decoder = opened()
    expect_error(decoder, frame(FrameType.DATA, b"\x00" * length), CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize(
    "data",
    [
        data_frame(b'"\xff"'),
        data_frame(b'"\xc3"'),
        data_frame(b'"\xed\xa0\x80"'),  # an encoded surrogate is not UTF-8
        data_frame(b"1", b'{"\xfe":1}'),
        frame(FrameType.CLOSE, struct.pack("!H", 1000) + b"bad \xff reason"),
    ],
    ids=["data", "data-truncated", "data-surrogate", "metadata", "close-reason"],
)
def test_invalid_utf8(data: bytes) -> None:
    exc = expect_error(opened(), data, CloseCode.INVALID_DATA)
    assert "UTF-8" in str(exc)


@pytest.mark.parametrize(
    "payload",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        b"{",
        b"",
        b"1 2",
        b"'single'",
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"[1, NaN]",
    ],
    ids=[
        "deep-list",
        "deep-dict",
        "syntax",
        "empty",
        "extra",
        "quotes",
        "nan",
        "inf",
        "-inf",
        "nested-nan",
    ],
)
def test_invalid_json_data(payload: bytes) -> None:
    expect_error(opened(), data_frame(payload), CloseCode.INVALID_DATA)


@pytest.mark.skipif(
    not hasattr(sys, "get_int_max_str_digits") or sys.get_int_max_str_digits() == 0,
    reason="this interpreter parses integers of any length",
)
def test_huge_integer_is_invalid_data() -> None:
    expect_error(opened(), data_frame(b"9" * 5000), CloseCode.INVALID_DATA)


@pytest.mark.parametrize("meta", [b"[1]", b"[]", b"1", b'"x"', b"null", b'{"a":NaN}', b"{"])
def test_metadata_that_is_not_a_valid_json_object(meta: bytes) -> None:
    expect_error(opened(), data_frame(b"1", meta), CloseCode.INVALID_DATA)


def test_second_hello() -> None:
    expect_error(opened(), HOST_HELLO[len(PREAMBLE) :], CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("role", ["client", "server", None, 1, ["host"]])
def test_hello_with_wrong_role(role: object) -> None:
    expect_error(
        Decoder("client"), hello_frame(host_hello_fields(role=role)), CloseCode.PROTOCOL_ERROR
    )


def test_hello_without_role() -> None:
    fields = host_hello_fields()
    del fields["role"]
    expect_error(Decoder("client"), hello_frame(fields), CloseCode.PROTOCOL_ERROR)


def test_host_rejects_a_host_hello() -> None:
    expect_error(Decoder("host"), HOST_HELLO, CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("name", ["max_message_size", "max_metadata_size"])
@pytest.mark.parametrize("value", [None, True, False, 0, -1, MAX_LIMIT + 1, 1.0, "10", [10]])
def test_hello_with_bad_size(name: str, value: object) -> None:
    fields = host_hello_fields(**{name: value})
    if value is None:
        del fields[name]
    expect_error(Decoder("client"), hello_frame(fields), CloseCode.INVALID_DATA)


@pytest.mark.parametrize("features", ["chunk", [1], ["ack", None], {"ack": True}, None])
def test_hello_with_bad_features(features: object) -> None:
    fields = host_hello_fields(features=features)
    expect_error(Decoder("client"), hello_frame(fields), CloseCode.INVALID_DATA)


@pytest.mark.parametrize("body", [b"[]", b'"host"', b"{", b"", b'{"role":"host"\xff}'])
def test_hello_that_is_not_a_json_object(body: bytes) -> None:
    expect_error(Decoder("client"), hello_frame(body), CloseCode.INVALID_DATA)


@pytest.mark.parametrize("body", [b"", b"\x03"])
def test_close_without_a_code(body: bytes) -> None:
    expect_error(opened(), frame(FrameType.CLOSE, body), CloseCode.PROTOCOL_ERROR)


def test_decoder_refuses_data_after_an_error() -> None:
    decoder = opened()
    expect_error(decoder, frame(0x7F), CloseCode.PROTOCOL_ERROR)
    with pytest.raises(RemoteProtocolError, match="already"):
        decoder.receive_data(encode_ping())
    with pytest.raises(RemoteProtocolError, match="already"):
        decoder.receive_data(b"")
    assert decoder.events() == []


def test_decoder_refuses_data_after_a_preamble_error() -> None:
    decoder = Decoder("client")
    expect_error(decoder, b"GET /", CloseCode.PROTOCOL_ERROR)
    with pytest.raises(RemoteProtocolError):
        decoder.receive_data(HOST_HELLO)
    assert decoder.events() == []


def test_bytes_after_close_are_dropped() -> None:
    decoder = opened()
    decoder.receive_data(encode_ping() + encode_close(1000, "bye")[:-1])
    closed = [decoder.closed]
    decoder.receive_data(b"e" + b"garbage \xff" * 10)
    closed.append(decoder.closed)
    assert closed == [False, True]
    assert decoder.events() == [Ping(), Close(1000, "bye")]
    assert decoder.buffered == 0
    decoder.receive_data(b"more garbage" + encode_ping())
    assert decoder.buffered == 0
    assert decoder.events() == []


def test_bytes_after_a_split_close_are_dropped() -> None:
    close = encode_close(1001)
    decoder = opened()
    decoder.receive_data(close[:4])
    assert decoder.buffered == 4
    decoder.receive_data(close[4:] + frame(0x7F, length=2**32 - 1))
    assert decoder.events() == [Close(1001, "")]
    assert decoder.buffered == 0


def test_events_before_a_bad_frame_survive_the_error() -> None:
    decoder = Decoder("client")
    good = encode_message({"n": 1}, {"m": 2}) + encode_ping(b"!")
    expect_error(decoder, HOST_HELLO + good + data_frame(b"{"), CloseCode.INVALID_DATA)
    assert decoder.events() == [PEER_HELLO, Message({"n": 1}, {"m": 2}), Ping(b"!")]


def test_events_before_an_oversize_header_survive_the_error() -> None:
    decoder = opened(max_message_size=10)
    data = encode_message(1) + frame(FrameType.DATA, length=100)
    expect_error(decoder, data, CloseCode.MESSAGE_TOO_BIG)
    assert decoder.events() == [Message(1, {})]


# --- Fuzzing ----------------------------------------------------------------------------------


def feed_fuzz(decoder: Decoder, pieces: list[bytes]) -> list[object]:
    """Feed ``pieces``; only events or a RemoteProtocolError with a CloseCode may come out."""
    limit = 8 + 6 + max(decoder.max_message_size + 4, CONTROL_LIMIT)
    received: list[object] = []
    error: RemoteProtocolError | None = None
    for piece in pieces:
        try:
            decoder.receive_data(piece)
        except RemoteProtocolError as exc:
            error = exc
        received += decoder.events()  # after an error: the events before the bad frame
        if error is not None:
            break
        assert decoder.buffered <= limit  # at most one partial frame is kept
    assert all(isinstance(event, EVENT_TYPES) for event in received)
    if error is not None:
        assert isinstance(error.code, CloseCode)
        with pytest.raises(RemoteProtocolError):
            decoder.receive_data(b"\x00")
    return received


def fuzz_decoder(small: bool) -> Decoder:
    if small:
        return Decoder("client", max_message_size=64, max_metadata_size=16)
    return Decoder("client")


frame_types = st.sampled_from([*FrameType, 0x00, 0x7F]) | st.integers(0, 255)
json_bodies = json_values.map(lambda v: json.dumps(v).encode())
frame_bodies = (
    st.binary(max_size=80) | json_bodies | metadata_values.map(lambda m: json.dumps(m).encode())
)
random_frames = st.builds(
    frame,
    frame_types,
    frame_bodies,
    st.sampled_from([0, 1, 2]) | st.integers(0, 255),
    st.none() | st.integers(0, 100) | st.integers(0, 2**32 - 1),
)
random_data_frames = st.builds(
    lambda payload, meta, flags, meta_length: data_frame(
        payload, meta, flags=flags, meta_length=meta_length
    ),
    frame_bodies,
    st.just(b"") | json_bodies,
    st.sampled_from([0, 1]) | st.integers(0, 255),
    st.none() | st.integers(0, 100) | st.integers(0, 2**32 - 1),
)
hello_bodies = st.fixed_dictionaries(
    {},
    optional={
        "role": st.sampled_from(["host", "client"]) | json_values,
        "max_message_size": st.integers(-1, MAX_LIMIT + 1) | json_values,
        "max_metadata_size": st.integers(-1, MAX_LIMIT + 1) | json_values,
        "features": st.lists(st.text(max_size=5), max_size=3) | json_values,
    },
).map(lambda fields: json.dumps(fields).encode())


@FAST
@given(st.binary(max_size=2000), cut_points, st.booleans())
def test_fuzz_arbitrary_bytes(data: bytes, points: list[int], small: bool) -> None:
    feed_fuzz(fuzz_decoder(small), cut(data, points))


@FAST
@given(st.binary(max_size=2000), cut_points, st.booleans())
def test_fuzz_arbitrary_bytes_after_handshake(data: bytes, points: list[int], small: bool) -> None:
    received = feed_fuzz(fuzz_decoder(small), cut(HOST_HELLO + data, points))
    assert received[:1] == [PEER_HELLO]


@LIGHT
@given(
    st.lists(random_frames | random_data_frames, max_size=10),
    hello_bodies,
    cut_points,
    st.booleans(),
)
def test_fuzz_random_frames(
    frames: list[bytes], hello: bytes, points: list[int], small: bool
) -> None:
    stream = PREAMBLE + frame(FrameType.HELLO, hello) + b"".join(frames)
    feed_fuzz(fuzz_decoder(small), cut(stream, points))


mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "truncate", "splice", "insert", "delete", "duplicate"]),
        st.integers(0, 2**16),
        st.integers(0, 7),
        st.binary(max_size=16),
    ),
    min_size=1,
    max_size=5,
)


def mutate(stream: bytes, other: bytes, ops: list[tuple[str, int, int, bytes]]) -> bytes:
    data = bytearray(stream)
    for op, position, bit, blob in ops:
        i = position % (len(data) + 1)
        if op == "flip" and data:
            data[position % len(data)] ^= 1 << bit
        elif op == "truncate":
            del data[i:]
        elif op == "splice":
            data[i:] = other[position % (len(other) + 1) :]
        elif op == "insert":
            data[i:i] = blob
        elif op == "delete":
            del data[i : i + len(blob) + 1]
        elif op == "duplicate":
            data[i:i] = data[i : i + len(blob) + 1]
    return bytes(data)


@SHARE
@given(
    st.lists(messages, min_size=1, max_size=5),
    st.lists(messages, max_size=3),
    mutations,
    cut_points,
    st.booleans(),
)
def test_fuzz_mutated_valid_streams(
    msgs: list[Message],
    others: list[Message],
    ops: list[tuple[str, int, int, bytes]],
    points: list[int],
    small: bool,
) -> None:
    stream = encode_stream(msgs) + encode_ping(b"x") + encode_close(1000, "ok")
    other = encode_stream(others)[len(PREAMBLE) :]
    feed_fuzz(fuzz_decoder(small), cut(mutate(stream, other, ops), points))


@pytest.mark.slow
@pytest.mark.timeout(LONG_TIMEOUT)
@SLOW
@given(
    st.lists(random_frames | random_data_frames, max_size=20),
    hello_bodies,
    mutations,
    cut_points,
    st.booleans(),
)
def test_fuzz_soak(
    frames: list[bytes],
    hello: bytes,
    ops: list[tuple[str, int, int, bytes]],
    points: list[int],
    small: bool,
) -> None:
    stream = HOST_HELLO + b"".join(frames)
    other = PREAMBLE + frame(FrameType.HELLO, hello) + b"".join(reversed(frames))
    feed_fuzz(fuzz_decoder(small), cut(mutate(stream, other, ops), points))


# --- Encoder ----------------------------------------------------------------------------------


def decode_one(frame_bytes: bytes) -> object:
    decoder = opened()
    decoder.receive_data(frame_bytes)
    (event,) = decoder.events()
    assert decoder.buffered == 0
    return event


class Unserialisable:
    pass


def circular_list() -> list[object]:
    items: list[object] = []
    items.append(items)
    return items


def circular_dict() -> dict[str, object]:
    items: dict[str, object] = {}
    items["self"] = items
    return items


@pytest.mark.parametrize(
    "data",
    [
        Unserialisable(),
        {1, 2},
        1j,
        {"a": Unserialisable()},
        {("tuple", "key"): 1},
        float("nan"),
        float("inf"),
        -float("inf"),
        [1.0, float("nan")],
        circular_list(),
        circular_dict(),
        "lone \ud800 surrogate",
        {"\udfff": 1},
    ],
    ids=[
        "object",
        "set",
        "complex",
        "nested-object",
        "tuple-key",
        "nan",
        "inf",
        "-inf",
        "nested-nan",
        "circular-list",
        "circular-dict",
        "surrogate",
        "surrogate-key",
    ],
)
def test_encode_error_for_data(data: object) -> None:
    with pytest.raises(EncodeError, match="data") as info:
        encode_message(data)
    assert isinstance(info.value, TypeError)
    assert info.value.__cause__ is not None


def test_encode_error_for_data_nested_too_deeply() -> None:
    data: list[object] = []
    for _ in range(100_000):
        data = [data]
    with pytest.raises(EncodeError):
        encode_message(data)


@pytest.mark.parametrize(
    "metadata",
    [
        {"a": Unserialisable()},
        {"a": float("nan")},
        {"a": circular_list()},
        {"a": "\ud800"},
        {"\ud800": 1},
        {("x",): 1},
    ],
)
def test_encode_error_for_metadata(metadata: dict[Any, Any]) -> None:
    with pytest.raises(EncodeError, match="metadata"):
        encode_message(1, metadata)


@pytest.mark.parametrize(
    "metadata", [[], 0, "", False, (), b"", [("a", 1)], 1, "x", (("a", 1),), True]
)
def test_encode_error_for_metadata_that_is_not_a_dict(metadata: Any) -> None:
    with pytest.raises(EncodeError, match="metadata must be a dict"):
        encode_message(1, metadata)


def test_message_too_large() -> None:
    with pytest.raises(MessageTooLarge) as info:
        encode_message("x" * 100, {"k": 1}, max_message_size=50)
    assert (info.value.size, info.value.limit) == (102 + len(b'{"k":1}'), 50)
    assert isinstance(info.value, ValueError)
    with pytest.raises(MessageTooLarge) as info:
        encode_message(b"\x00" * 51, max_message_size=50)
    assert (info.value.size, info.value.limit) == (51, 50)


def test_message_at_the_limit_is_encoded_and_accepted() -> None:
    encoded = encode_message(b"\x00" * 50, max_message_size=50, max_metadata_size=0)
    decoder = opened(max_message_size=50)
    decoder.receive_data(encoded)
    assert decoder.events() == [Message(b"\x00" * 50, {})]


def test_metadata_too_large() -> None:
    metadata = {"k": "v" * 20}
    size = len(json.dumps(metadata, separators=(",", ":")))
    with pytest.raises(MessageTooLarge) as info:
        encode_message(1, metadata, max_metadata_size=size - 1)
    assert (info.value.size, info.value.limit) == (size, size - 1)
    assert decode_one(encode_message(1, metadata, max_metadata_size=size)) == Message(1, metadata)


@pytest.mark.parametrize(
    "data", [b"\x00\xffraw", bytearray(b"\x00\xffraw"), memoryview(b"\x00\xffraw")]
)
def test_binary_data_travels_raw(data: bytes | bytearray | memoryview) -> None:
    encoded = encode_message(data, {"k": "v"})
    assert encoded.endswith(b"\x00\xffraw")
    assert encoded[5] == Encoding.BYTES
    event = decode_one(encoded)
    assert event == Message(b"\x00\xffraw", {"k": "v"})
    assert isinstance(event, Message)
    assert type(event.data) is bytes


def test_binary_data_from_a_non_byte_memoryview() -> None:
    view = memoryview(bytes(range(8))).cast("H")
    assert decode_one(encode_message(view)) == Message(bytes(range(8)), {})


def test_json_data_is_compact_utf8() -> None:
    payload = '{"a":["é",1]}'.encode()
    encoded = encode_message({"a": ["é", 1]})
    assert encoded == struct.pack("!IBBI", 4 + len(payload), 1, 0, 0) + payload


@pytest.mark.parametrize("metadata", [None, {}])
def test_empty_metadata_costs_zero_bytes(metadata: dict[str, Any] | None) -> None:
    encoded = encode_message([1], metadata)
    assert encoded == struct.pack("!IBBI", 4 + 3, FrameType.DATA, Encoding.JSON, 0) + b"[1]"
    assert decode_one(encoded) == Message([1], {})


def test_tuples_travel_as_lists() -> None:
    event = decode_one(encode_message((1, (2, 3)), {"t": (4,)}))
    assert event == Message([1, [2, 3]], {"t": [4]})
    assert isinstance(event, Message)
    assert type(event.data) is list


def test_close_reason_is_shortened_at_a_character_boundary() -> None:
    reason = "a" + "é" * 600  # 1201 bytes; byte 1024 falls inside an "é"
    event = decode_one(encode_close(CloseCode.GOING_AWAY, reason))
    assert event == Close(CloseCode.GOING_AWAY, "a" + "é" * 511)
    emoji = decode_one(encode_close(1000, "😀" * 300))  # 4-byte characters
    assert emoji == Close(1000, "😀" * 256)
    long_ascii = decode_one(encode_close(1000, "x" * 5000))
    assert long_ascii == Close(1000, "x" * MAX_CLOSE_REASON)


def test_close_reason_at_the_limit_is_kept() -> None:
    reason = "é" * (MAX_CLOSE_REASON // 2)
    assert decode_one(encode_close(1000, reason)) == Close(1000, reason)


def test_close_reason_with_lone_surrogate_is_replaced() -> None:
    assert decode_one(encode_close(1000, "a\ud800b")) == Close(1000, "a?b")


@pytest.mark.parametrize("code", [0, 1000, 0xFFFF])
def test_close_code_range_accepted(code: int) -> None:
    assert decode_one(encode_close(code)) == Close(code, "")


@pytest.mark.parametrize("code", [-1, 0x10000, 2**32])
def test_close_code_outside_16_bits(code: int) -> None:
    with pytest.raises(ValueError, match="16 bits"):
        encode_close(code)


@pytest.mark.parametrize("encode", [encode_ping, encode_pong])
def test_control_frame_over_limit(encode: Any) -> None:
    assert len(encode(b"x" * CONTROL_LIMIT)) == 6 + CONTROL_LIMIT
    with pytest.raises(ValueError, match="over 4096"):
        encode(b"x" * (CONTROL_LIMIT + 1))


def test_hello_over_control_limit() -> None:
    with pytest.raises(ValueError, match="HELLO"):
        encode_hello("client", features=[f"feature-{i}" for i in range(1000)])


@pytest.mark.parametrize("name", ["max_message_size", "max_metadata_size"])
@pytest.mark.parametrize("value", [0, -1, MAX_LIMIT + 1, 2**64])
def test_encode_hello_rejects_out_of_range_sizes(name: str, value: int) -> None:
    sizes: dict[str, Any] = {name: value}
    with pytest.raises(ValueError, match=name):
        encode_hello("client", **sizes)


def test_encode_hello_layout() -> None:
    encoded = encode_hello("client", max_message_size=5, max_metadata_size=2, features=["b", "a"])
    assert encoded.startswith(b"ALVARO\x01\x00")
    body = encoded[len(PREAMBLE) + 6 :]
    assert encoded[len(PREAMBLE) :] == frame(FrameType.HELLO, body)
    assert json.loads(body) == {
        "role": "client",
        "max_message_size": 5,
        "max_metadata_size": 2,
        "features": ["a", "b"],
    }


@pytest.mark.parametrize("role", ["server", "HOST", "", None])
def test_decoder_rejects_an_unknown_role(role: Any) -> None:
    with pytest.raises(ValueError, match="role"):
        Decoder(role)


@pytest.mark.parametrize(
    "features", [["auth", "chunk"], ["request", "chunk"], ["ack"], ["nope"], ["AUTH"]]
)
def test_decoder_rejects_unsupported_features(features: list[str]) -> None:
    assert not SUPPORTED_FEATURES.issuperset(features)
    with pytest.raises(ValueError, match="does not implement"):
        Decoder("host", features=features)


# --- Feature "auth": login with SCRAM-SHA-256 (docs/protocol.md, 9.8) -------------------------

#: A valid frame of each AUTH type, carrying the messages of RFC 7677's example.
AUTH_FRAMES: dict[FrameType, bytes] = {
    FrameType.AUTH_START: encode_auth_start(CLIENT_FIRST),
    FrameType.AUTH_CHALLENGE: encode_auth_challenge(SERVER_FIRST),
    FrameType.AUTH_RESPONSE: encode_auth_response(CLIENT_FINAL),
    FrameType.AUTH_OK: encode_auth_ok(SERVER_FINAL, "user"),
    FrameType.AUTH_FAIL: encode_auth_fail("wrong user name or password"),
    FrameType.LOGOUT: encode_logout(),
}
#: The AUTH types each role receives, and the ones it never does (the peer's direction).
RECEIVED_BY = {
    "host": [FrameType.AUTH_START, FrameType.AUTH_RESPONSE, FrameType.LOGOUT],
    "client": [FrameType.AUTH_CHALLENGE, FrameType.AUTH_OK, FrameType.AUTH_FAIL],
}
RECEIVED_PAIRS = [(role, t) for role, types in RECEIVED_BY.items() for t in types]
WRONG_DIRECTION_PAIRS = [
    (role, t)
    for role in ("host", "client")
    for t in RECEIVED_BY["client" if role == "host" else "host"]
]
#: Each AUTH type with a JSON body to check, at a stage where it is in order, with its members.
AUTH_BODIES = [
    ("host", "idle", FrameType.AUTH_START, ("mechanism", "message")),
    ("host", "started", FrameType.AUTH_RESPONSE, ("message",)),
    ("client", "idle", FrameType.AUTH_CHALLENGE, ("message",)),
    ("client", "challenged", FrameType.AUTH_OK, ("message", "user")),
    ("client", "idle", FrameType.AUTH_FAIL, ("reason",)),
]
AUTH_BODY_IDS = [case[2].name for case in AUTH_BODIES]
MISSING = object()
#: Text that needs JSON escapes, control characters and characters beyond the BMP.
TRICKY = 'é "quoted" back\\slash\nline\u2028 😀 \x00 \x7f'


def decoder_at(role: str, stage: str) -> Decoder:
    return host_at(stage) if role == "host" else client_at(stage)


def test_auth_and_request_are_the_features_this_version_implements() -> None:
    assert SUPPORTED_FEATURES == {"auth", "request"}
    assert AUTH_MECHANISM == "SCRAM-SHA-256"


# Encoding.


@pytest.mark.parametrize(
    ("encoded", "frame_type", "body"),
    [
        (
            AUTH_FRAMES[FrameType.AUTH_START],
            FrameType.AUTH_START,
            b'{"mechanism":"SCRAM-SHA-256","message":"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"}',
        ),
        (
            AUTH_FRAMES[FrameType.AUTH_CHALLENGE],
            FrameType.AUTH_CHALLENGE,
            b'{"message":"' + SERVER_FIRST.encode() + b'"}',
        ),
        (
            AUTH_FRAMES[FrameType.AUTH_RESPONSE],
            FrameType.AUTH_RESPONSE,
            b'{"message":"' + CLIENT_FINAL.encode() + b'"}',
        ),
        (
            AUTH_FRAMES[FrameType.AUTH_OK],
            FrameType.AUTH_OK,
            b'{"message":"' + SERVER_FINAL.encode() + b'","user":"user"}',
        ),
        (
            AUTH_FRAMES[FrameType.AUTH_FAIL],
            FrameType.AUTH_FAIL,
            b'{"reason":"wrong user name or password"}',
        ),
        (AUTH_FRAMES[FrameType.LOGOUT], FrameType.LOGOUT, b"{}"),
        (
            encode_auth_fail("é\n"),
            FrameType.AUTH_FAIL,
            b'{"reason":"\xc3\xa9\\n"}',  # raw UTF-8, escapes only where JSON needs them
        ),
    ],
    ids=[*(t.name for t in AUTH_FRAMES), "utf-8"],
)
def test_auth_encoders_write_flags_zero_and_a_compact_json_object(
    encoded: bytes, frame_type: FrameType, body: bytes
) -> None:
    assert encoded == frame(frame_type, body)


SPEC_AUTH_START = bytes.fromhex(
    "0000004a2100"
    "7b226d656368616e69736d223a22534352414d2d5348412d323536222c226d657373616765223a"
    "226e2c2c6e3d757365722c723d724f70724e476677456265525767624e456b714f227d"
)


def test_spec_auth_examples() -> None:
    # docs/protocol.md, 9.8.1: the AUTH_START of RFC 7677's example, 80 bytes, and LOGOUT.
    assert encode_auth_start(CLIENT_FIRST) == SPEC_AUTH_START
    assert len(SPEC_AUTH_START) == 80
    assert encode_logout() == bytes.fromhex("0000000226007b7d")
    decoder = host_at("idle")
    decoder.receive_data(SPEC_AUTH_START)
    assert decoder.events() == [AuthStart("SCRAM-SHA-256", CLIENT_FIRST)]


@pytest.mark.parametrize(
    ("role", "stage", "encoded", "event"),
    [
        ("host", "idle", encode_auth_start(TRICKY), AuthStart(AUTH_MECHANISM, TRICKY)),
        ("host", "idle", encode_auth_start("m", mechanism=TRICKY), AuthStart(TRICKY, "m")),
        ("host", "idle", encode_auth_start(""), AuthStart(AUTH_MECHANISM, "")),
        ("host", "started", encode_auth_response(TRICKY), AuthResponse(TRICKY)),
        ("host", "logged in", encode_logout(), Logout()),
        ("client", "idle", encode_auth_challenge(TRICKY), AuthChallenge(TRICKY)),
        ("client", "challenged", encode_auth_ok(TRICKY, "user"), AuthOk(TRICKY, "user")),
        ("client", "challenged", encode_auth_ok("v=x", TRICKY), AuthOk("v=x", TRICKY)),
        ("client", "idle", encode_auth_fail(TRICKY), AuthFail(TRICKY)),
        ("client", "challenged", encode_auth_fail(""), AuthFail("")),
    ],
    ids=[
        "start",
        "start-mechanism",
        "start-empty",
        "response",
        "logout",
        "challenge",
        "ok-message",
        "ok-user",
        "fail-at-once",
        "fail-after-challenge",
    ],
)
def test_auth_frames_round_trip(role: str, stage: str, encoded: bytes, event: object) -> None:
    decoder = decoder_at(role, stage)
    decoder.receive_data(encoded)
    assert decoder.events() == [event]
    assert decoder.buffered == 0


AUTH_ENCODERS = {
    "AUTH_START": encode_auth_start,
    "AUTH_CHALLENGE": encode_auth_challenge,
    "AUTH_RESPONSE": encode_auth_response,
    "AUTH_OK": lambda text: encode_auth_ok(text, "user"),
    "AUTH_FAIL": encode_auth_fail,
}


@pytest.mark.parametrize("name", list(AUTH_ENCODERS))
def test_auth_encoders_refuse_a_body_over_the_control_limit(name: str) -> None:
    encode = AUTH_ENCODERS[name]
    room = CONTROL_LIMIT - (len(encode("")) - 6)
    assert len(encode("x" * room)) == 6 + CONTROL_LIMIT
    assert len(encode("é" * (room // 2))) <= 6 + CONTROL_LIMIT  # bytes count, not characters
    with pytest.raises(ValueError, match=f"{name} body of 4097 bytes is over 4096"):
        encode("x" * (room + 1))
    with pytest.raises(ValueError, match="over 4096"):
        encode("é" * (room // 2 + 1))


def test_auth_frame_at_the_control_limit_is_accepted() -> None:
    message = "x" * (CONTROL_LIMIT - len(b'{"message":""}'))
    encoded = encode_auth_challenge(message)
    assert len(encoded) == 6 + CONTROL_LIMIT
    decoder = client_at("idle")
    decoder.receive_data(encoded)
    assert decoder.events() == [AuthChallenge(message)]


@pytest.mark.parametrize("name", list(AUTH_ENCODERS))
def test_auth_text_that_is_not_unicode_is_an_encode_error(name: str) -> None:
    with pytest.raises(EncodeError, match=name):
        AUTH_ENCODERS[name]("lone \ud800 surrogate")


def test_encode_hello_of_a_host_that_requires_login() -> None:
    encoded = encode_hello("host", features=["auth", "auth"], auth_required=True)
    assert encoded == AUTH_HOST_HELLO
    body = encoded[len(PREAMBLE) + 6 :]
    assert body == (
        b'{"role":"host","max_message_size":1048576,"max_metadata_size":65536,'
        b'"features":["auth"],"auth_required":true}'
    )
    assert encoded[len(PREAMBLE) :] == frame(FrameType.HELLO, body)
    assert len(body) == 109  # docs/protocol.md, 9.8.2


@pytest.mark.parametrize("role", ["host", "client"])
def test_encode_hello_sends_auth_required_only_when_asked(role: Any) -> None:
    body = json.loads(encode_hello(role, features=["auth"])[len(PREAMBLE) + 6 :])
    assert body == {
        "role": role,
        "max_message_size": DEFAULT_MAX_MESSAGE_SIZE,
        "max_metadata_size": DEFAULT_MAX_METADATA_SIZE,
        "features": ["auth"],
    }


@pytest.mark.parametrize(
    ("role", "features"), [("client", ["auth"]), ("host", []), ("host", ["chunk"])]
)
def test_only_a_host_listing_auth_can_require_login(role: Any, features: list[str]) -> None:
    with pytest.raises(ValueError, match="auth"):
        encode_hello(role, features=features, auth_required=True)


# The decoder's options.


def test_decoder_that_offers_auth_starts_with_nothing_negotiated() -> None:
    decoder = Decoder("host", features=["auth"], login_required=True)
    assert decoder.features == {"auth"}
    assert decoder.negotiated == frozenset()
    assert decoder.login_required
    assert not decoder.logged_in


@pytest.mark.parametrize(("role", "features"), [("client", ["auth"]), ("client", []), ("host", [])])
def test_login_required_needs_a_host_that_offers_auth(role: Any, features: list[str]) -> None:
    with pytest.raises(ValueError, match="login_required"):
        Decoder(role, features=features, login_required=True)


# Negotiation and the HELLO.


def other_role(role: str) -> Any:
    return "client" if role == "host" else "host"


@pytest.mark.parametrize(
    ("own", "peer", "negotiated"),
    [
        ([], [], set()),
        (["auth"], [], set()),
        ([], ["auth"], set()),
        (["auth"], ["auth"], {"auth"}),
        (["auth"], ["x", "auth", "chunk", "auth"], {"auth"}),
    ],
    ids=["neither", "this-side-only", "peer-only", "both", "both-among-others"],
)
@pytest.mark.parametrize("role", ["host", "client"])
def test_negotiated_features_are_the_intersection(
    role: Any, own: list[str], peer: list[str], negotiated: set[str]
) -> None:
    fields = host_hello_fields(role=other_role(role), features=peer)
    if role == "client" and "auth" in peer:
        fields["auth_required"] = True
    decoder = Decoder(role, features=own)
    decoder.receive_data(hello_frame(fields)[:-1])
    assert decoder.negotiated == frozenset()  # nothing before the peer's HELLO
    decoder.receive_data(hello_frame(fields)[-1:])
    (hello,) = decoder.events()
    assert isinstance(hello, Hello)
    assert hello.features == frozenset(peer)
    assert decoder.negotiated == negotiated
    # A client learns that it must log in only when "auth" is negotiated.
    assert hello.auth_required == (role == "client" and negotiated == {"auth"})


@pytest.mark.parametrize("side", ["this side", "the peer"])
@pytest.mark.parametrize(("role", "frame_type"), RECEIVED_PAIRS)
def test_auth_frames_are_protocol_errors_unless_both_sides_offer_auth(
    side: str, role: Any, frame_type: FrameType
) -> None:
    peer_features = [] if side == "this side" else ["auth"]
    decoder = Decoder(role, features=["auth"] if side == "this side" else [])
    decoder.receive_data(
        encode_hello(
            other_role(role),
            features=peer_features,
            auth_required=role == "client" and side == "the peer",
        )
    )
    assert len(decoder.events()) == 1
    assert decoder.negotiated == frozenset()
    exc = expect_error(decoder, AUTH_FRAMES[frame_type], CloseCode.PROTOCOL_ERROR)
    assert "not negotiated" in str(exc)


def test_auth_required_is_ignored_unless_auth_is_negotiated() -> None:
    # A host that says it requires login without listing "auth"; a client that says it too.
    decoder = Decoder("client", features=["auth"])
    decoder.receive_data(hello_frame(host_hello_fields(auth_required=True)))
    assert decoder.events() == [Hello(1, "host", 1000, 100, frozenset(), auth_required=False)]
    decoder = Decoder("host", features=["auth"], login_required=True)
    fields = host_hello_fields(role="client", features=["auth"], auth_required=True)
    decoder.receive_data(hello_frame(fields))
    assert decoder.events() == [Hello(1, "client", 1000, 100, frozenset({"auth"}))]


@pytest.mark.parametrize(
    "value", [MISSING, False, None, "true", 1, [True], {}], ids=lambda v: repr(v)[:12]
)
def test_client_refuses_a_host_that_lists_auth_without_requiring_login(value: object) -> None:
    fields = host_hello_fields(features=["auth"])
    if value is not MISSING:
        fields["auth_required"] = value
    exc = expect_error(
        Decoder("client", features=["auth"]), hello_frame(fields), CloseCode.INVALID_DATA
    )
    assert "auth_required" in str(exc)


@pytest.mark.parametrize("features", [MISSING, [], ["request", "x"], ["Auth"]], ids=repr)
def test_login_host_refuses_a_client_that_does_not_offer_auth(features: object) -> None:
    fields = host_hello_fields(role="client", features=features)
    if features is MISSING:
        del fields["features"]
    decoder = Decoder("host", features=["auth"], login_required=True)
    exc = expect_error(decoder, hello_frame(fields), CloseCode.POLICY_VIOLATION)
    assert "login" in str(exc)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"role": "host"}, CloseCode.PROTOCOL_ERROR),
        ({"max_message_size": 0}, CloseCode.INVALID_DATA),
        ({"features": "auth"}, CloseCode.INVALID_DATA),
    ],
    ids=["role", "size", "features"],
)
def test_login_host_checks_the_hello_before_the_login_policy(
    changes: dict[str, object], code: CloseCode
) -> None:
    fields = host_hello_fields(role="client", features=[])
    fields.update(changes)
    decoder = Decoder("host", features=["auth"], login_required=True)
    expect_error(decoder, hello_frame(fields), code)


# The gate: no message reaches a host that requires login before the login succeeds.


@pytest.mark.parametrize("stage", ["idle", "started", "answered", "logged out"])
def test_login_host_refuses_data_from_its_header_before_the_login(stage: str) -> None:
    # The gate comes before the size and flags checks (D1, D2): the header alone decides.
    header = frame(FrameType.DATA, flags=0xFF, length=2**32 - 1)
    decoder = host_at(stage)
    decoder.receive_data(header[:5])
    exc = expect_error(decoder, header[5:], CloseCode.POLICY_VIOLATION)
    assert "login" in str(exc)
    expect_error(host_at(stage), encode_message({"x": 1}), CloseCode.POLICY_VIOLATION)


def test_login_host_takes_messages_after_accept_login() -> None:
    decoder = login_host(max_message_size=20, max_metadata_size=10)
    decoder.receive_data(AUTH_FRAMES[FrameType.AUTH_START] + AUTH_FRAMES[FrameType.AUTH_RESPONSE])
    assert len(decoder.events()) == 2
    decoder.accept_login()
    decoder.receive_data(encode_message([1, "é"], {"k": 1}) + encode_message(b"x" * 20))
    assert decoder.events() == [Message([1, "é"], {"k": 1}), Message(b"x" * 20, {})]
    # From then on, the limits it announced apply as usual.
    expect_error(decoder, frame(FrameType.DATA, length=25), CloseCode.MESSAGE_TOO_BIG)


def test_data_with_the_auth_response_is_refused() -> None:
    # The client must wait for AUTH_OK: a message right behind its proof is refused.
    decoder = host_at("started")
    data = AUTH_FRAMES[FrameType.AUTH_RESPONSE] + encode_message(1)
    expect_error(decoder, data, CloseCode.POLICY_VIOLATION)
    assert decoder.events() == [AuthResponse(CLIENT_FINAL)]


def test_events_before_refused_data_survive() -> None:
    decoder = Decoder("host", features=["auth"], login_required=True)
    data = AUTH_CLIENT_HELLO + encode_ping(b"p") + AUTH_FRAMES[FrameType.AUTH_START]
    expect_error(decoder, data + encode_message(1), CloseCode.POLICY_VIOLATION)
    events = decoder.events()
    assert events[1:] == [Ping(b"p"), AuthStart(AUTH_MECHANISM, CLIENT_FIRST)]


def test_data_before_the_hello_is_a_protocol_error_at_a_login_host() -> None:
    decoder = Decoder("host", features=["auth"], login_required=True)
    exc = expect_error(decoder, PREAMBLE + encode_message(1), CloseCode.PROTOCOL_ERROR)
    assert "before the peer's HELLO" in str(exc)


def test_login_host_takes_control_frames_before_the_login() -> None:
    decoder = host_at("idle")
    decoder.receive_data(encode_ping(b"1") + encode_pong(b"2"))
    assert decoder.events() == [Ping(b"1"), Pong(b"2")]
    decoder.receive_data(encode_close(CloseCode.NORMAL, "never mind") + encode_message(1))
    assert decoder.events() == [Close(CloseCode.NORMAL, "never mind")]
    assert decoder.closed


def test_host_that_does_not_require_login_takes_messages_at_once() -> None:
    decoder = Decoder("host", features=["auth"])
    decoder.receive_data(AUTH_CLIENT_HELLO + encode_message(1) + AUTH_FRAMES[FrameType.AUTH_START])
    decoder.receive_data(AUTH_FRAMES[FrameType.AUTH_RESPONSE] + encode_message(2))
    assert decoder.events()[1:] == [
        Message(1, {}),
        AuthStart(AUTH_MECHANISM, CLIENT_FIRST),
        AuthResponse(CLIENT_FINAL),
        Message(2, {}),
    ]
    decoder.accept_login()
    assert decoder.logged_in
    decoder.receive_data(encode_message(3))
    assert decoder.events() == [Message(3, {})]


# accept_login() and logged_in.


def test_logged_in_follows_the_host_login() -> None:
    seen = {stage: host_at(stage).logged_in for stage in HOST_STAGES}
    assert seen == {
        "idle": False,
        "started": False,
        "answered": False,
        "logged in": True,
        "logged out": False,
    }


def test_logged_in_follows_the_client_login() -> None:
    seen = {stage: client_at(stage).logged_in for stage in CLIENT_STAGES}
    assert seen == {
        "idle": False,
        "challenged": False,
        "logged in": True,
        "refused": False,
        "refused at once": False,
    }


@pytest.mark.parametrize("stage", ["idle", "started", "logged in", "logged out"])
def test_accept_login_needs_an_auth_response(stage: str) -> None:
    decoder = host_at(stage)
    logged_in = decoder.logged_in
    with pytest.raises(RuntimeError, match="AUTH_RESPONSE"):
        decoder.accept_login()
    assert decoder.logged_in == logged_in


def test_accept_login_before_the_hello() -> None:
    decoder = Decoder("host", features=["auth"], login_required=True)
    with pytest.raises(RuntimeError, match="AUTH_RESPONSE"):
        decoder.accept_login()


@pytest.mark.parametrize("stage", CLIENT_STAGES)
def test_accept_login_is_for_hosts(stage: str) -> None:
    with pytest.raises(RuntimeError, match="host"):
        client_at(stage).accept_login()


# LOGOUT.


def test_logout_returns_the_host_to_the_gate() -> None:
    decoder = host_at("logged in")
    decoder.receive_data(encode_message(1) + encode_logout())
    assert decoder.events() == [Message(1, {}), Logout()]
    assert not decoder.logged_in
    expect_error(decoder, encode_message(2)[:6], CloseCode.POLICY_VIOLATION)


def test_message_behind_a_logout_is_refused() -> None:
    decoder = host_at("logged in")
    expect_error(decoder, encode_logout() + encode_message(2), CloseCode.POLICY_VIOLATION)
    assert decoder.events() == [Logout()]


@pytest.mark.parametrize("body", [b"", b"{}", b" { } ", b'{"note":"bye","n":[1,{}]}'])
def test_logout_body_is_an_object_or_nothing(body: bytes) -> None:
    decoder = host_at("logged in")
    decoder.receive_data(frame(FrameType.LOGOUT, body))
    assert decoder.events() == [Logout()]


@pytest.mark.parametrize("body", [b"[]", b"null", b'"bye"', b"{", b" ", b"{}{}", b'{"\xff":1}'])
def test_logout_body_that_is_not_an_object(body: bytes) -> None:
    expect_error(host_at("logged in"), frame(FrameType.LOGOUT, body), CloseCode.INVALID_DATA)


# Headers of AUTH frames.


@pytest.mark.parametrize(("role", "frame_type"), WRONG_DIRECTION_PAIRS)
def test_auth_frame_in_the_wrong_direction_is_refused_from_its_header(
    role: str, frame_type: FrameType
) -> None:
    # Before the flags and the length (C4, C5) are looked at.
    decoder = decoder_at(role, "idle")
    header = frame(frame_type, flags=0xFF, length=2**32 - 1)
    exc = expect_error(decoder, header, CloseCode.PROTOCOL_ERROR)
    assert f"{frame_type.name} is not sent by a {other_role(role)}" in str(exc)
    expect_error(decoder_at(role, "idle"), AUTH_FRAMES[frame_type], CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize(("role", "frame_type"), RECEIVED_PAIRS)
@pytest.mark.parametrize(
    ("flags", "length", "code"),
    [
        (1, 2, CloseCode.PROTOCOL_ERROR),
        (0x80, 2, CloseCode.PROTOCOL_ERROR),
        (1, 2**32 - 1, CloseCode.PROTOCOL_ERROR),  # flags (C4) before length (C5)
        (0, CONTROL_LIMIT + 1, CloseCode.MESSAGE_TOO_BIG),
        (0, 2**32 - 1, CloseCode.MESSAGE_TOO_BIG),
    ],
)
def test_auth_frame_header_checks(
    role: str, frame_type: FrameType, flags: int, length: int, code: CloseCode
) -> None:
    decoder = decoder_at(role, "idle")
    expect_error(decoder, frame(frame_type, flags=flags, length=length), code)


@pytest.mark.parametrize(("role", "frame_type"), RECEIVED_PAIRS)
def test_auth_frames_before_the_hello(role: Role, frame_type: FrameType) -> None:
    decoder = Decoder(role, features=["auth"], login_required=role == "host")
    exc = expect_error(decoder, PREAMBLE + AUTH_FRAMES[frame_type], CloseCode.PROTOCOL_ERROR)
    assert "before the peer's HELLO" in str(exc)


# Bodies of AUTH frames.


@pytest.mark.parametrize(("role", "stage", "frame_type", "members"), AUTH_BODIES, ids=AUTH_BODY_IDS)
@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b'"x"',
        b"null",
        b"1",
        b"{",
        b'{"a":NaN}',
        b"{}x",
        b"\xef\xbb\xbf{}",
        b'{"\xff":1}',
    ],
    ids=["empty", "array", "string", "null", "number", "syntax", "nan", "trailing", "bom", "utf8"],
)
def test_auth_body_that_is_not_a_json_object(
    role: str, stage: str, frame_type: FrameType, members: tuple[str, ...], body: bytes
) -> None:
    expect_error(decoder_at(role, stage), frame(frame_type, body), CloseCode.INVALID_DATA)


@pytest.mark.parametrize(("role", "stage", "frame_type", "members"), AUTH_BODIES, ids=AUTH_BODY_IDS)
@pytest.mark.parametrize(
    "value", [MISSING, None, 1, True, [], {}, ["x"]], ids=lambda v: repr(v)[:12]
)
def test_auth_member_missing_or_not_a_string(
    role: str, stage: str, frame_type: FrameType, members: tuple[str, ...], value: object
) -> None:
    for member in members:
        fields: dict[str, object] = dict.fromkeys(members, "x")
        if value is MISSING:
            del fields[member]
        else:
            fields[member] = value
        decoder = decoder_at(role, stage)
        body = json.dumps(fields).encode()
        exc = expect_error(decoder, frame(frame_type, body), CloseCode.INVALID_DATA)
        assert repr(member) in str(exc)


def test_auth_bodies_accept_any_valid_json_object() -> None:
    # Whitespace, escapes, unknown members (ignored) and duplicates (the last one wins).
    body = (
        b' {\n "message" : "old" , "x-extra" : [1, {"deep": null}],'
        b' "mechanism":"SCRAM-SHA-256", "message" : "n,,n=\\u0075ser,r=\\u00e9" } '
    )
    decoder = host_at("idle")
    decoder.receive_data(frame(FrameType.AUTH_START, body))
    assert decoder.events() == [AuthStart("SCRAM-SHA-256", "n,,n=user,r=é")]
    decoder = client_at("challenged")
    decoder.receive_data(frame(FrameType.AUTH_OK, b'{"user":"a","message":"v=1","v2":{}}'))
    assert decoder.events() == [AuthOk("v=1", "a")]


# The order of the login exchange.

HOST_OUT_OF_ORDER = [
    ("started", FrameType.AUTH_START),
    ("answered", FrameType.AUTH_START),
    ("logged in", FrameType.AUTH_START),
    ("idle", FrameType.AUTH_RESPONSE),
    ("answered", FrameType.AUTH_RESPONSE),
    ("logged in", FrameType.AUTH_RESPONSE),
    ("logged out", FrameType.AUTH_RESPONSE),
    ("idle", FrameType.LOGOUT),
    ("started", FrameType.LOGOUT),
    ("answered", FrameType.LOGOUT),
    ("logged out", FrameType.LOGOUT),
]
CLIENT_OUT_OF_ORDER = [
    ("challenged", FrameType.AUTH_CHALLENGE),
    ("logged in", FrameType.AUTH_CHALLENGE),
    ("refused", FrameType.AUTH_CHALLENGE),
    ("refused at once", FrameType.AUTH_CHALLENGE),
    ("idle", FrameType.AUTH_OK),
    ("logged in", FrameType.AUTH_OK),
    ("refused", FrameType.AUTH_OK),
    ("refused at once", FrameType.AUTH_OK),
    ("logged in", FrameType.AUTH_FAIL),
]


@pytest.mark.parametrize(("stage", "frame_type"), HOST_OUT_OF_ORDER)
def test_host_refuses_auth_frames_out_of_order(stage: str, frame_type: FrameType) -> None:
    expect_error(host_at(stage), AUTH_FRAMES[frame_type], CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize(("stage", "frame_type"), CLIENT_OUT_OF_ORDER)
def test_client_refuses_auth_frames_out_of_order(stage: str, frame_type: FrameType) -> None:
    expect_error(client_at(stage), AUTH_FRAMES[frame_type], CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("stage", ["idle", "challenged"])
def test_host_may_refuse_with_or_without_a_challenge(stage: str) -> None:
    decoder = client_at(stage)
    decoder.receive_data(encode_auth_fail("too many failed logins for this user; try again in 3 s"))
    assert decoder.events() == [AuthFail("too many failed logins for this user; try again in 3 s")]
    assert not decoder.logged_in


def test_auth_start_after_logout_is_a_protocol_error() -> None:
    decoder = host_at("logged out")
    expect_error(decoder, AUTH_FRAMES[FrameType.AUTH_START], CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("stage", ["refused", "refused at once"])
def test_second_auth_fail_is_a_protocol_error(stage: str) -> None:
    expect_error(client_at(stage), AUTH_FRAMES[FrameType.AUTH_FAIL], CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize("stage", ["idle", "challenged"])
def test_client_refuses_data_before_auth_ok(stage: str) -> None:
    header = encode_message(1)[:6]  # refused from the header, like a host's gate
    expect_error(client_at(stage), header, CloseCode.PROTOCOL_ERROR)


@pytest.mark.parametrize(
    ("role", "stage", "frame_type"),
    [
        ("host", "started", FrameType.AUTH_START),
        ("host", "idle", FrameType.AUTH_RESPONSE),
        ("host", "idle", FrameType.LOGOUT),
        ("client", "challenged", FrameType.AUTH_CHALLENGE),
        ("client", "idle", FrameType.AUTH_OK),
        ("client", "logged in", FrameType.AUTH_FAIL),
    ],
    ids=lambda v: v.name if isinstance(v, FrameType) else v,
)
def test_auth_order_is_checked_before_the_body(role: str, stage: str, frame_type: int) -> None:
    # docs/protocol.md 7.1: A1 (the order) before A2 to A4 (the body).
    expect_error(decoder_at(role, stage), frame(frame_type, b"["), CloseCode.PROTOCOL_ERROR)


def test_an_invalid_auth_ok_does_not_log_the_client_in() -> None:
    decoder = client_at("challenged")
    body = json.dumps({"message": SERVER_FINAL}).encode()  # no "user"
    expect_error(decoder, frame(FrameType.AUTH_OK, body), CloseCode.INVALID_DATA)
    assert not decoder.logged_in


def test_an_invalid_auth_response_cannot_be_accepted() -> None:
    decoder = host_at("started")
    expect_error(decoder, frame(FrameType.AUTH_RESPONSE, b"{}"), CloseCode.INVALID_DATA)
    with pytest.raises(RuntimeError, match="AUTH_RESPONSE"):
        decoder.accept_login()


# Segmentation.


def test_host_login_one_byte_at_a_time() -> None:
    parts: list[tuple[bytes, list[object]]] = [
        (PREAMBLE, []),
        (
            AUTH_CLIENT_HELLO[len(PREAMBLE) :],
            [
                Hello(
                    1,
                    "client",
                    DEFAULT_MAX_MESSAGE_SIZE,
                    DEFAULT_MAX_METADATA_SIZE,
                    frozenset({"auth"}),
                )
            ],
        ),
        (encode_ping(b"1"), [Ping(b"1")]),
        (AUTH_FRAMES[FrameType.AUTH_START], [AuthStart(AUTH_MECHANISM, CLIENT_FIRST)]),
        (AUTH_FRAMES[FrameType.AUTH_RESPONSE], [AuthResponse(CLIENT_FINAL)]),
        (encode_message({"n": 1}, {"m": 2}), [Message({"n": 1}, {"m": 2})]),
        (AUTH_FRAMES[FrameType.LOGOUT], [Logout()]),
        (encode_close(1000, "bye"), [Close(1000, "bye")]),
    ]
    decoder = Decoder("host", features=["auth"], login_required=True)
    for data, events in parts:
        for fed in range(1, len(data)):
            decoder.receive_data(data[fed - 1 : fed])
            assert decoder.buffered == fed
        assert decoder.events() == []
        decoder.receive_data(data[-1:])
        assert decoder.buffered == 0
        assert decoder.events() == events
        if events and isinstance(events[0], AuthResponse):
            decoder.accept_login()  # as the host sends AUTH_OK
    # In one piece before accept_login() and one after, the same events.
    whole = Decoder("host", features=["auth"], login_required=True)
    whole.receive_data(b"".join(data for data, _ in parts[:5]))
    whole.accept_login()
    whole.receive_data(b"".join(data for data, _ in parts[5:]))
    assert whole.events() == [event for _, events in parts for event in events]


def test_client_login_one_byte_at_a_time() -> None:
    parts: list[tuple[bytes, list[object]]] = [
        (PREAMBLE, []),
        (AUTH_HOST_HELLO[len(PREAMBLE) :], [AUTH_PEER_HELLO]),
        (AUTH_FRAMES[FrameType.AUTH_CHALLENGE], [AuthChallenge(SERVER_FIRST)]),
        (encode_pong(b"2"), [Pong(b"2")]),
        (AUTH_FRAMES[FrameType.AUTH_OK], [AuthOk(SERVER_FINAL, "user")]),
        (encode_message(b"raw", {"id": 7}), [Message(b"raw", {"id": 7})]),
        (encode_close(1001), [Close(1001, "")]),
    ]
    decoder = Decoder("client", features=["auth"])
    for data, events in parts:
        for byte in data[:-1]:
            decoder.receive_data(bytes([byte]))
        assert decoder.events() == []
        decoder.receive_data(data[-1:])
        assert decoder.events() == events
    whole = Decoder("client", features=["auth"])
    whole.receive_data(b"".join(data for data, _ in parts))
    assert whole.events() == [event for _, events in parts for event in events]


@LIGHT
@given(st.lists(messages, max_size=5), cut_points, cut_points)
def test_login_in_any_segmentation(
    msgs: list[Message], before: list[int], after: list[int]
) -> None:
    sent = b"".join(encode_message(m.data, m.metadata) for m in msgs)
    # The host's side: the login, accept_login() as AUTH_OK goes out, messages, LOGOUT.
    host = Decoder("host", features=["auth"], login_required=True)
    login = AUTH_CLIENT_HELLO + AUTH_FRAMES[FrameType.AUTH_START] + encode_ping()
    login += AUTH_FRAMES[FrameType.AUTH_RESPONSE]
    received = []
    for piece in cut(login, before):
        host.receive_data(piece)
        received += host.events()
    host.accept_login()
    for piece in cut(sent + encode_logout(), after):
        host.receive_data(piece)
        received += host.events()
    assert received[1:] == [
        AuthStart(AUTH_MECHANISM, CLIENT_FIRST),
        Ping(),
        AuthResponse(CLIENT_FINAL),
        *msgs,
        Logout(),
    ]
    # The client's side, in one stream.
    client = Decoder("client", features=["auth"])
    stream = AUTH_HOST_HELLO + AUTH_FRAMES[FrameType.AUTH_CHALLENGE] + encode_pong()
    stream += AUTH_FRAMES[FrameType.AUTH_OK] + sent
    received = []
    for piece in cut(stream, before + after):
        client.receive_data(piece)
        received += client.events()
    assert received == [
        AUTH_PEER_HELLO,
        AuthChallenge(SERVER_FIRST),
        Pong(),
        AuthOk(SERVER_FINAL, "user"),
        *msgs,
    ]
    assert client.buffered == host.buffered == 0


def test_events_before_a_bad_auth_frame_survive_the_error() -> None:
    decoder = Decoder("client", features=["auth"])
    good = AUTH_HOST_HELLO + AUTH_FRAMES[FrameType.AUTH_CHALLENGE] + encode_ping(b"!")
    expect_error(decoder, good + frame(FrameType.AUTH_OK, b"[]"), CloseCode.INVALID_DATA)
    assert decoder.events() == [AUTH_PEER_HELLO, AuthChallenge(SERVER_FIRST), Ping(b"!")]


# --- Optional orjson decoding -----------------------------------------------------------------

needs_orjson = pytest.mark.skipif(
    _json._orjson_loads is None, reason="orjson (the speedups extra) is not installed"
)

#: JSON texts that stress where orjson and the standard library differ: long integers, huge
#: exponents, escapes (lone surrogates included), whitespace, and plain garbage.
json_texts = st.one_of(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12,
    ).map(lambda value: json.dumps(value, ensure_ascii=False)),
    st.sampled_from(
        [
            "1e400",
            "-1e400",
            '"\\ud800"',
            "123456789012345678901234567890",
            " [1] ",
            "[1,]",
            "NaN",
            '{"a":1,"a":2}',
            "\ufeff[1]",
            '"\t"',
            "[" * 2000 + "]" * 2000,
        ]
    ),
    st.text(alphabet='0123456789-+.eE[]{}":, ntrufals\\u', max_size=30),
).map(lambda text: text.encode("utf-8", "surrogatepass"))


def decode_outcome(raw: bytes) -> tuple[str, object]:
    try:
        return ("value", _json.loads(memoryview(raw), "data"))
    except RemoteProtocolError as exc:
        return ("error", (exc.code, str(exc)))


@needs_orjson
@SHARE
@given(raw=json_texts)
def test_orjson_decoding_gives_the_standard_librarys_result(raw: bytes) -> None:
    with_orjson = decode_outcome(raw)
    saved = _json._orjson_loads
    _json._orjson_loads = None
    try:
        without = decode_outcome(raw)
    finally:
        _json._orjson_loads = saved
    assert repr(with_orjson) == repr(without)  # repr: equal also for -0.0 and type of numbers


@needs_orjson
def test_long_integers_keep_every_digit_with_orjson_installed() -> None:
    decoder = opened()
    decoder.receive_data(encode_message([2**70, -(10**25)], {"id": 12345678901234567890123}))
    (message,) = decoder.events()
    assert isinstance(message, Message)
    assert message.data == [2**70, -(10**25)]
    assert message.metadata == {"id": 12345678901234567890123}


def test_without_orjson_the_standard_library_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "orjson", None)  # makes "import orjson" fail
    assert _json._load_orjson() is None
    monkeypatch.setattr(_json, "_orjson_loads", None)
    decoder = opened()
    decoder.receive_data(encode_message({"x": [1, 2.5, None]}, {"k": "v"}))
    assert decoder.events() == [Message({"x": [1, 2.5, None]}, {"k": "v"})]
