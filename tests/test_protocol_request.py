"""Feature ``request`` of the sans-I/O codec (docs/protocol.md, 9.3 and 9.4): REQUEST, REPLY and
CANCEL round trip in any segmentation, in both directions, and every malformed frame closes with
the code section 7.1 gives it."""

from __future__ import annotations

import itertools
import json
import math
import struct
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, strategies as st

from alvaro import CloseCode, EncodeError, MessageTooLarge, RemoteProtocolError
from alvaro.protocol import (
    CONTROL_LIMIT,
    ERROR_KINDS,
    MAX_REQUEST_ID,
    MAX_TIMEOUT_MS,
    SUPPORTED_FEATURES,
    Cancel,
    Decoder,
    Event,
    FrameType,
    Message,
    Ping,
    ReplyError,
    ReplyOk,
    Request,
    Role,
    encode_auth_challenge,
    encode_auth_ok,
    encode_auth_response,
    encode_auth_start,
    encode_cancel,
    encode_hello,
    encode_logout,
    encode_message,
    encode_ping,
    encode_reply,
    encode_reply_error,
    encode_request,
)
from alvaro.protocol.request import (
    MAX_ERROR_MESSAGE,
    MAX_ERROR_TRACEBACK,
    MAX_ERROR_TYPE,
    timeout_ms,
    timeout_seconds,
)
from tests.hypothesis_profiles import default_settings

FAST = default_settings()

#: The limits of the decoders under test: small, so that both edges of each check are cheap.
LIMIT = 1000
META_LIMIT = 100


# --- Helpers ----------------------------------------------------------------------------------


def other(role: Role) -> Role:
    return "client" if role == "host" else "host"


def frame(frame_type: int, body: bytes = b"", flags: int = 0, length: int | None = None) -> bytes:
    """A raw frame, built by hand from the layout; ``length`` overrides the stated length."""
    stated = len(body) if length is None else length
    return struct.pack("!IBB", stated, frame_type, flags) + body


def request_frame(
    payload: bytes = b"1",
    meta: bytes = b"",
    *,
    request_id: int = 1,
    ms: int = 0,
    flags: int = 0,
    meta_length: int | None = None,
) -> bytes:
    stated = len(meta) if meta_length is None else meta_length
    body = struct.pack("!III", request_id, ms, stated) + meta + payload
    return frame(FrameType.REQUEST, body, flags)


def reply_frame(
    payload: bytes = b"1",
    meta: bytes = b"",
    *,
    request_id: int = 1,
    flags: int = 0,
    meta_length: int | None = None,
) -> bytes:
    stated = len(meta) if meta_length is None else meta_length
    body = struct.pack("!II", request_id, stated) + meta + payload
    return frame(FrameType.REPLY, body, flags)


def error_frame(fields: object, request_id: int = 1) -> bytes:
    raw = fields if isinstance(fields, bytes) else json.dumps(fields).encode()
    return reply_frame(raw, request_id=request_id, flags=0x04)


def opened(
    role: Role = "client",
    *,
    own: tuple[str, ...] = ("request",),
    peer: tuple[str, ...] = ("request",),
) -> Decoder:
    """A ``role`` decoder offering ``own`` that has received a HELLO offering ``peer``."""
    decoder = Decoder(role, max_message_size=LIMIT, max_metadata_size=META_LIMIT, features=own)
    decoder.receive_data(encode_hello(other(role), features=peer))
    decoder.events()
    return decoder


def expect_error(decoder: Decoder, data: bytes, code: CloseCode) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decoder.receive_data(data)
    assert info.value.code == code
    return info.value


def decode(data: bytes, role: Role = "client") -> list[Event]:
    decoder = opened(role)
    decoder.receive_data(data)
    return decoder.events()


# --- Round trips ------------------------------------------------------------------------------

keys = st.text(max_size=6)
json_leaves = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
json_values = json_leaves | st.lists(json_leaves, max_size=3) | st.dictionaries(keys, json_leaves)
metadata_values = st.dictionaries(keys, json_leaves, max_size=3)
payloads = json_values | st.binary(max_size=40)
request_ids = st.integers(0, MAX_REQUEST_ID)
# Whole milliseconds, as the field carries them, so that the round trip is exact.
timeouts = st.none() | st.integers(1, MAX_TIMEOUT_MS).map(lambda ms: ms / 1000)
optional_text = st.none() | st.text(max_size=30)
request_events = (
    st.builds(Request, request_ids, payloads, metadata_values, timeouts)
    | st.builds(ReplyOk, request_ids, payloads, metadata_values)
    | st.builds(
        ReplyError,
        request_ids,
        st.sampled_from(ERROR_KINDS),
        st.text(max_size=30),
        optional_text,
        optional_text,
    )
    | st.builds(Cancel, request_ids)
    | st.builds(Message, payloads, metadata_values)
    | st.builds(Ping, st.binary(max_size=8))
)


def encode_event(event: Event) -> bytes:
    if isinstance(event, Request):
        return encode_request(event.request_id, event.data, event.metadata, timeout=event.timeout)
    if isinstance(event, ReplyOk):
        return encode_reply(event.request_id, event.data, event.metadata)
    if isinstance(event, ReplyError):
        return encode_reply_error(
            event.request_id,
            event.kind,
            event.message,
            remote_type=event.remote_type,
            traceback=event.traceback,
        )
    if isinstance(event, Cancel):
        return encode_cancel(event.request_id)
    if isinstance(event, Message):
        return encode_message(event.data, event.metadata)
    assert isinstance(event, Ping)
    return encode_ping(event.payload)


def carries_a_message(event: Event) -> bool:
    return type(event) in (Message, Request, ReplyOk, ReplyError)


@FAST
@given(
    st.sampled_from(["host", "client"]),
    st.lists(request_events, min_size=1, max_size=30),
    st.lists(st.integers(min_value=0, max_value=2**16), max_size=60),
)
def test_request_frames_round_trip_in_any_segmentation(
    role: Role, sent: list[Event], points: list[int]
) -> None:
    """Either side may ask and answer: each frame comes out as the event it was made from, and
    message_sizes gives each message-carrying frame its own size, whatever the reads."""
    frames = [encode_event(event) for event in sent]
    stream = b"".join(frames)
    bounds = [0, *sorted(p % (len(stream) + 1) for p in points), len(stream)]
    decoder = Decoder(role, features=["request"])
    decoder.receive_data(encode_hello(other(role), features=["request"]))
    assert decoder.events()[0].features == {"request"}  # type: ignore[union-attr]
    received: list[Event] = []
    sizes: list[int] = []
    for start, end in itertools.pairwise(bounds):
        decoder.receive_data(stream[start:end])
        received += decoder.events()
        sizes += decoder.message_sizes
    assert received == sent
    expected_sizes = [len(f) for f, e in zip(frames, sent, strict=True) if carries_a_message(e)]
    assert sizes == expected_sizes
    assert decoder.buffered == 0


def test_the_feature_is_implemented_and_negotiated_only_when_both_sides_list_it() -> None:
    assert "request" in SUPPORTED_FEATURES
    assert opened().negotiated == {"request"}
    assert opened(own=()).negotiated == frozenset()
    assert opened(peer=("auth",)).negotiated == frozenset()


# --- The examples of docs/protocol.md, 9.3, 9.4 and 9.6 -----------------------------------------

SPEC_REQUEST = "0000001d020000000001000013880000000c7b226f70223a22616464227d5b312c325d"
SPEC_REPLY = "000000090300000000010000000033"
SPEC_ERROR = (
    "00000050030400000002000000007b226b696e64223a226572726f72222c226d657373616765223a2264697669"
    "73696f6e206279207a65726f222c2274797065223a225a65726f4469766973696f6e4572726f72227d"
)
SPEC_CANCEL = "00000004070000000002"


@pytest.mark.parametrize(
    ("encoded", "spec_hex", "event"),
    [
        (
            encode_request(1, [1, 2], {"op": "add"}, timeout=5),
            SPEC_REQUEST,
            Request(1, [1, 2], {"op": "add"}, 5.0),
        ),
        (encode_reply(1, 3), SPEC_REPLY, ReplyOk(1, 3, {})),
        (
            encode_reply_error(2, "error", "division by zero", remote_type="ZeroDivisionError"),
            SPEC_ERROR,
            ReplyError(2, "error", "division by zero", "ZeroDivisionError"),
        ),
        (encode_cancel(2), SPEC_CANCEL, Cancel(2)),
    ],
    ids=["REQUEST", "REPLY", "error REPLY", "CANCEL"],
)
def test_spec_examples(encoded: bytes, spec_hex: str, event: Event) -> None:
    assert encoded == bytes.fromhex(spec_hex)
    assert decode(encoded) == [event]
    assert decode(encoded, "host") == [event]


# --- The deadline: a relative time in whole milliseconds ----------------------------------------


@pytest.mark.parametrize(
    ("timeout", "ms"),
    [
        (None, 0),
        (0.1, 100),  # 100.00000000000001 ms as a float: not rounded up to 101
        (1.5, 1500),
        (0.0015, 2),  # up: the answering side must never give up first
        (1e-9, 1),  # the shortest deadline there is, never 0 (which means none)
        (MAX_TIMEOUT_MS / 1000, MAX_TIMEOUT_MS),
        (MAX_TIMEOUT_MS / 1000 + 0.001, 0),  # too far for the field: no deadline, not a shorter one
        (math.inf, 0),
    ],
)
def test_timeout_travels_as_whole_milliseconds_rounded_up(timeout: float | None, ms: int) -> None:
    assert timeout_ms(timeout) == ms
    (event,) = decode(encode_request(1, None, timeout=timeout))
    assert isinstance(event, Request)
    assert event.timeout == timeout_seconds(ms)
    assert event.timeout == (ms / 1000 if ms else None)


@pytest.mark.parametrize("timeout", [0, 0.0, -1, -math.inf, math.nan])
def test_a_timeout_that_is_not_positive_is_a_value_error(timeout: float) -> None:
    with pytest.raises(ValueError, match="timeout must be positive"):
        encode_request(1, None, timeout=timeout)


# --- Encoders: ids, limits, errors -------------------------------------------------------------


@pytest.mark.parametrize("request_id", [-1, MAX_REQUEST_ID + 1, True, 1.0, "1", None], ids=repr)
def test_request_ids_outside_the_u32_field_are_value_errors(request_id: Any) -> None:
    for encode in (
        lambda: encode_request(request_id, 1),
        lambda: encode_reply(request_id, 1),
        lambda: encode_reply_error(request_id, "busy", "busy"),
        lambda: encode_cancel(request_id),
    ):
        with pytest.raises(ValueError, match="request_id must be an int from 0 to 4294967295"):
            encode()


def test_request_ids_at_both_ends_of_the_field() -> None:
    stream = b"".join(
        encode(request_id)
        for request_id in (0, MAX_REQUEST_ID)
        for encode in (
            lambda i: encode_request(i, 1),
            lambda i: encode_reply(i, 1),
            lambda i: encode_reply_error(i, "busy", ""),
            encode_cancel,
        )
    )
    ids = [event.request_id for event in decode(stream)]  # type: ignore[union-attr]
    assert ids == [0] * 4 + [MAX_REQUEST_ID] * 4


@pytest.mark.parametrize("encode", [encode_request, encode_reply], ids=["REQUEST", "REPLY"])
def test_request_and_reply_encoders_check_limits_as_encode_message_does(encode: Any) -> None:
    # The message part is limited like a DATA frame's, whatever the prefix.
    frame_bytes = encode(1, "x" * 8, {"k": 1}, max_message_size=17, max_metadata_size=7)
    assert len(frame_bytes) - len(encode_message("x" * 8, {"k": 1})) in (4, 8)
    with pytest.raises(MessageTooLarge) as info:
        encode(1, "x" * 9, {"k": 1}, max_message_size=17)
    assert (info.value.size, info.value.limit) == (18, 17)
    with pytest.raises(MessageTooLarge) as info:
        encode(1, 1, {"k": 1}, max_metadata_size=6)
    assert (info.value.size, info.value.limit) == (7, 6)
    with pytest.raises(EncodeError, match="metadata must be a dict"):
        encode(1, 1, ["k"])
    with pytest.raises(EncodeError):
        encode(1, math.nan)


def test_an_unknown_error_kind_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="kind must be one of error, no_handler, busy, cancelled"):
        encode_reply_error(1, "deadline", "too late")


def error_event(encoded: bytes) -> ReplyError:
    (event,) = decode(encoded)
    assert isinstance(event, ReplyError)
    return event


def test_error_texts_are_shortened_on_character_boundaries() -> None:
    # "é" is two bytes: the cut falls inside one, which is dropped, never split.
    event = error_event(
        encode_reply_error(
            1,
            "error",
            "é" * 1000,
            remote_type="T" + "é" * 200,
            traceback="start\n" + "é" * 2000 + "\nthe end",
        )
    )
    assert event.message == "é" * (MAX_ERROR_MESSAGE // 2)
    assert event.remote_type == "T" + "é" * ((MAX_ERROR_TYPE - 1) // 2)
    # A traceback keeps its end, where the exception is.
    assert event.traceback is not None
    assert event.traceback.endswith("é\nthe end")
    assert len(event.traceback.encode()) <= MAX_ERROR_TRACEBACK
    assert not event.traceback.startswith("start")


def test_an_error_reply_always_fits_in_the_control_limit() -> None:
    # Control characters take six bytes each in JSON: the traceback goes, then the message
    # shrinks, until the frame fits.
    encoded = encode_reply_error(
        1, "error", "\x00" * 5000, remote_type="\x01" * 300, traceback="\x02" * 9000
    )
    assert len(encoded) - 6 <= CONTROL_LIMIT
    event = error_event(encoded)
    assert event.traceback is None
    assert event.remote_type == "\x01" * MAX_ERROR_TYPE
    assert 0 < len(event.message) < MAX_ERROR_MESSAGE
    assert set(event.message) == {"\x00"}
    # Texts that fit are left whole, escapes and all.
    assert error_event(encode_reply_error(1, "busy", "\x00" * 100)).message == "\x00" * 100


def test_lone_surrogates_in_error_texts_are_replaced_so_the_reply_can_be_sent() -> None:
    event = error_event(
        encode_reply_error(1, "error", "bad \ud800", remote_type="E\udc80", traceback="\ud83d")
    )
    assert (event.message, event.remote_type, event.traceback) == ("bad ?", "E?", "?")


# --- What the decoder accepts ------------------------------------------------------------------


def test_replies_and_cancels_for_any_id_are_reported_not_refused() -> None:
    """Whether an id is waiting is the connection's business: a late reply is not an error."""
    events = decode(
        encode_reply(77, "late") + encode_cancel(78) + encode_reply_error(79, "busy", "")
    )
    assert events == [ReplyOk(77, "late", {}), Cancel(78), ReplyError(79, "busy", "")]


def test_exact_limits_are_accepted() -> None:
    meta = b'{"k":"' + b"m" * (META_LIMIT - 8) + b'"}'
    payload = b'"' + b"p" * (LIMIT - len(meta) - 2) + b'"'
    assert len(meta) + len(payload) == LIMIT
    assert len(meta) == META_LIMIT
    for made in (request_frame, reply_frame):
        (event,) = decode(made(payload, meta))
        assert event.metadata == {"k": "m" * (META_LIMIT - 8)}  # type: ignore[union-attr]
    # An error REPLY may use the whole control limit, even over a smaller message limit.
    body = b'{"kind":"busy","message":"' + b"m" * (CONTROL_LIMIT - 8 - 28) + b'"}'
    assert len(body) + 8 == CONTROL_LIMIT > LIMIT
    assert error_event(error_frame(body)).message == "m" * (CONTROL_LIMIT - 8 - 28)


def test_raw_bytes_and_empty_payloads() -> None:
    events = decode(request_frame(b"", flags=0x01) + reply_frame(b"\x00\xff", flags=0x01))
    assert events == [Request(1, b"", {}, None), ReplyOk(1, b"\x00\xff", {})]


def test_error_reply_reads_forward_compatibly() -> None:
    # A kind added later reads as "error"; members this version does not know are ignored; the
    # metadata an error REPLY may carry is checked, then not used.
    fields = {"kind": "quota", "message": "over quota", "retry_after": 3}
    assert error_event(error_frame(fields)) == ReplyError(1, "error", "over quota")
    raw = json.dumps({"kind": "busy", "message": "m", "type": "X", "traceback": "t"}).encode()
    with_meta = reply_frame(raw, b'{"a":1}', flags=0x04)
    assert error_event(with_meta) == ReplyError(1, "busy", "m", "X", "t")


def test_the_frames_before_a_bad_one_are_kept() -> None:
    decoder = opened()
    good = encode_request(5, "q") + encode_cancel(5)
    with pytest.raises(RemoteProtocolError):
        decoder.receive_data(good + frame(FrameType.CANCEL, b"\x00" * 3))
    assert decoder.events() == [Request(5, "q", {}, None), Cancel(5)]
    assert decoder.message_sizes == [len(encode_request(5, "q"))]


# --- Malformed frames: the codes of docs/protocol.md, 7.1 ---------------------------------------

NOT_AN_OBJECT = CloseCode.INVALID_DATA
MALFORMED = [
    # Header: the flags first (R1), then the length against the limit the flags choose (R2).
    ("REQUEST flags 0x02", request_frame(flags=0x02), CloseCode.PROTOCOL_ERROR),
    ("REQUEST flags 0x04", request_frame(flags=0x04), CloseCode.PROTOCOL_ERROR),
    ("REQUEST flags 0x80", request_frame(flags=0x80), CloseCode.PROTOCOL_ERROR),
    ("REPLY flags 0x02", reply_frame(flags=0x02), CloseCode.PROTOCOL_ERROR),
    ("REPLY flags 0x05 (ERROR with raw bytes)", reply_frame(flags=0x05), CloseCode.PROTOCOL_ERROR),
    ("REPLY flags 0x08", reply_frame(flags=0x08), CloseCode.PROTOCOL_ERROR),
    ("CANCEL flags 0x01", frame(FrameType.CANCEL, b"\x00" * 4, 0x01), CloseCode.PROTOCOL_ERROR),
    (
        "REQUEST flags and size both wrong: the flags decide",
        frame(FrameType.REQUEST, flags=0x02, length=2**32 - 1),
        CloseCode.PROTOCOL_ERROR,
    ),
    (
        "REQUEST over the limit, from the header",
        frame(FrameType.REQUEST, length=LIMIT + 13),
        CloseCode.MESSAGE_TOO_BIG,
    ),
    (
        "REPLY over the limit, from the header",
        frame(FrameType.REPLY, length=LIMIT + 9),
        CloseCode.MESSAGE_TOO_BIG,
    ),
    (
        "error REPLY over the control limit, from the header",
        frame(FrameType.REPLY, flags=0x04, length=CONTROL_LIMIT + 1),
        CloseCode.MESSAGE_TOO_BIG,
    ),
    (
        "CANCEL over the control limit, from the header",
        frame(FrameType.CANCEL, length=CONTROL_LIMIT + 1),
        CloseCode.MESSAGE_TOO_BIG,
    ),
    # Body: the fixed prefix (R3), then the message as in a DATA frame (R4 to R8).
    ("REQUEST with L = 0", frame(FrameType.REQUEST), CloseCode.PROTOCOL_ERROR),
    ("REQUEST with L = 11", frame(FrameType.REQUEST, b"\x00" * 11), CloseCode.PROTOCOL_ERROR),
    ("REPLY with L = 7", frame(FrameType.REPLY, b"\x00" * 7), CloseCode.PROTOCOL_ERROR),
    ("error REPLY with L = 7", frame(FrameType.REPLY, b"\x00" * 7, 0x04), CloseCode.PROTOCOL_ERROR),
    ("REQUEST with M > L - 12", request_frame(b"", meta_length=1), CloseCode.PROTOCOL_ERROR),
    ("REPLY with M > L - 8", reply_frame(b"12", meta_length=3), CloseCode.PROTOCOL_ERROR),
    (
        "REQUEST metadata over its limit",
        request_frame(b"1", b"{" + b" " * META_LIMIT + b"}"),
        CloseCode.MESSAGE_TOO_BIG,
    ),
    ("REQUEST metadata not JSON", request_frame(b"1", b"{x}"), CloseCode.INVALID_DATA),
    ("REPLY metadata not an object", reply_frame(b"1", b"[]"), NOT_AN_OBJECT),
    ("REQUEST payload not JSON", request_frame(b"{"), CloseCode.INVALID_DATA),
    ("REQUEST empty JSON payload", request_frame(b""), CloseCode.INVALID_DATA),
    ("REPLY payload not UTF-8", reply_frame(b'"\xff"'), CloseCode.INVALID_DATA),
    ("REPLY payload NaN", reply_frame(b"NaN"), CloseCode.INVALID_DATA),
    # The JSON object of an error REPLY (R9).
    ("error REPLY not JSON", error_frame(b"boom"), CloseCode.INVALID_DATA),
    ("error REPLY empty", error_frame(b""), CloseCode.INVALID_DATA),
    ("error REPLY a string", error_frame("boom"), NOT_AN_OBJECT),
    ("error REPLY without kind", error_frame({"message": "m"}), CloseCode.INVALID_DATA),
    ("error REPLY kind a number", error_frame({"kind": 1, "message": "m"}), CloseCode.INVALID_DATA),
    ("error REPLY without message", error_frame({"kind": "busy"}), CloseCode.INVALID_DATA),
    (
        "error REPLY message null",
        error_frame({"kind": "busy", "message": None}),
        CloseCode.INVALID_DATA,
    ),
    (
        "error REPLY type null",
        error_frame({"kind": "error", "message": "m", "type": None}),
        CloseCode.INVALID_DATA,
    ),
    (
        "error REPLY traceback a list",
        error_frame({"kind": "error", "message": "m", "traceback": ["t"]}),
        CloseCode.INVALID_DATA,
    ),
    # CANCEL: exactly a request id.
    ("CANCEL with L = 0", frame(FrameType.CANCEL), CloseCode.PROTOCOL_ERROR),
    ("CANCEL with L = 3", frame(FrameType.CANCEL, b"\x00" * 3), CloseCode.PROTOCOL_ERROR),
    ("CANCEL with L = 5", frame(FrameType.CANCEL, b"\x00" * 5), CloseCode.PROTOCOL_ERROR),
]


@pytest.mark.parametrize("role", ["host", "client"])
@pytest.mark.parametrize(
    ("data", "code"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_malformed_request_frames_close_with_their_code(
    role: Role, data: bytes, code: CloseCode
) -> None:
    expect_error(opened(role), data, code)


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (frame(FrameType.REQUEST, length=LIMIT + 13), CloseCode.MESSAGE_TOO_BIG),
        (frame(FrameType.REPLY, flags=0x04, length=CONTROL_LIMIT + 1), CloseCode.MESSAGE_TOO_BIG),
        (frame(FrameType.REPLY, flags=0x05, length=10), CloseCode.PROTOCOL_ERROR),
    ],
    ids=["REQUEST size", "error REPLY size", "REPLY flags"],
)
def test_header_errors_need_no_body(header: bytes, code: CloseCode) -> None:
    """Checked from the six header bytes alone: no body byte is waited for."""
    assert len(header) == 6
    expect_error(opened(), header, code)


REQUEST_FRAMES = {
    "REQUEST": encode_request(1, "q"),
    "REPLY": encode_reply(1, "a"),
    "error REPLY": encode_reply_error(1, "busy", "b"),
    "CANCEL": encode_cancel(1),
}


@pytest.mark.parametrize("name", REQUEST_FRAMES)
@pytest.mark.parametrize(
    ("own", "peer"), [((), ("request",)), (("request",), ()), ((), ())], ids=["own", "peer", "both"]
)
def test_request_frames_without_the_feature_are_protocol_errors(
    name: str, own: tuple[str, ...], peer: tuple[str, ...]
) -> None:
    # As before the feature existed: a connection that does not list it is unchanged.
    error = expect_error(opened(own=own, peer=peer), REQUEST_FRAMES[name], CloseCode.PROTOCOL_ERROR)
    assert "needs feature 'request', which was not negotiated" in str(error)


@pytest.mark.parametrize("name", REQUEST_FRAMES)
def test_request_frames_before_the_peers_hello_are_protocol_errors(name: str) -> None:
    decoder = Decoder("host", features=["request"])
    error = expect_error(decoder, encode_hello("client")[:8] + REQUEST_FRAMES[name], 1002)
    assert "before the peer's HELLO" in str(error)


# --- With a login: requests are messages, none before it (docs/protocol.md, 9.8.4) ---------------

BOTH = ("auth", "request")


def login_host() -> Decoder:
    decoder = Decoder("host", features=BOTH, login_required=True)
    decoder.receive_data(encode_hello("client", features=BOTH))
    decoder.events()
    return decoder


def login_client() -> Decoder:
    decoder = Decoder("client", features=BOTH)
    decoder.receive_data(encode_hello("host", features=BOTH, auth_required=True))
    decoder.events()
    return decoder


@pytest.mark.parametrize("name", REQUEST_FRAMES)
def test_a_host_that_requires_login_refuses_request_frames_before_it(name: str) -> None:
    expect_error(login_host(), REQUEST_FRAMES[name], CloseCode.POLICY_VIOLATION)
    # Also right behind AUTH_RESPONSE, and after LOGOUT.
    decoder = login_host()
    decoder.receive_data(encode_auth_start("n,,n=user,r=abc") + encode_auth_response("c=biws"))
    expect_error(decoder, REQUEST_FRAMES[name], CloseCode.POLICY_VIOLATION)
    decoder = login_host()
    decoder.receive_data(encode_auth_start("n,,n=user,r=abc") + encode_auth_response("c=biws"))
    decoder.accept_login()
    decoder.receive_data(REQUEST_FRAMES[name] + encode_logout())
    assert len(decoder.events()) == 4
    expect_error(decoder, REQUEST_FRAMES[name], CloseCode.POLICY_VIOLATION)


@pytest.mark.parametrize("name", REQUEST_FRAMES)
def test_a_client_refuses_request_frames_before_auth_ok(name: str) -> None:
    expect_error(login_client(), REQUEST_FRAMES[name], CloseCode.PROTOCOL_ERROR)
    decoder = login_client()
    decoder.receive_data(encode_auth_challenge("r=abcdef,s=c2FsdA==,i=4096"))
    decoder.receive_data(encode_auth_ok("v=x", "user") + REQUEST_FRAMES[name])
    assert len(decoder.events()) == 3


def test_a_feature_not_negotiated_is_refused_before_the_login_gate() -> None:
    # 7.1: C2 (not negotiated, 1002) comes before L1 (before the login, 1008).
    decoder = Decoder("host", features=BOTH, login_required=True)
    decoder.receive_data(encode_hello("client", features=["auth"]))
    decoder.events()
    expect_error(decoder, REQUEST_FRAMES["REQUEST"], CloseCode.PROTOCOL_ERROR)


def test_the_spec_shows_the_same_bytes() -> None:
    """docs/protocol.md prints each example frame whole, 16 bytes a line, as these tests
    build it."""
    spec = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text("utf-8")
    for example in (SPEC_REQUEST, SPEC_REPLY, SPEC_ERROR, SPEC_CANCEL):
        raw = bytes.fromhex(example)
        lines = [" ".join(f"{b:02x}" for b in raw[i : i + 16]) for i in range(0, len(raw), 16)]
        assert "```\n" + "\n".join(lines) + "\n```" in spec
