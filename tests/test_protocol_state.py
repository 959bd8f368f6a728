"""Sans-I/O tests of the connection rules in ``alvaro.protocol.state`` and the frame helpers in
``alvaro.protocol.frames`` and ``alvaro.protocol.encoders`` that the aio layer builds on: how a
close is answered and reported, the login order, a refusal before HELLO, and DATA frame sizes."""

from __future__ import annotations

import pytest

from alvaro import CloseCode, ConnectionClosedError, ConnectionClosedOK, RemoteProtocolError
from alvaro.protocol import Close, Decoder, FrameType, Message, encode_hello, encode_message
from alvaro.protocol.encoders import encode_refusal
from alvaro.protocol.frames import HEADER_SIZE, META_LENGTH_SIZE, data_frame_sizes
from alvaro.protocol.state import Login, closed_error, echo_code, known_code, next_login

SENDABLE = [code for code in CloseCode if code != CloseCode.ABNORMAL]


@pytest.mark.parametrize("code", [*SENDABLE, 4100, 4567, 4999])
def test_a_close_is_answered_with_its_own_code(code: int) -> None:
    # docs/protocol.md, section 6: the answer echoes the received code...
    assert echo_code(code) == code


@pytest.mark.parametrize("code", [CloseCode.ABNORMAL, 0, 999, 1004, 1005, 3000, 4003, 4099, 5000])
def test_a_code_that_may_not_be_sent_is_answered_with_protocol_error(code: int) -> None:
    # ...unless echoing it would send a code that never travels on the wire.
    assert echo_code(code) == CloseCode.PROTOCOL_ERROR


def test_known_codes_are_reported_by_name_and_others_as_numbers() -> None:
    code = known_code(1009)
    assert code is CloseCode.MESSAGE_TOO_BIG
    assert known_code(4100) == 4100
    assert not isinstance(known_code(4100), CloseCode)


@pytest.mark.parametrize("code", [CloseCode.NORMAL, CloseCode.GOING_AWAY])
def test_a_normal_close_is_reported_as_closed_ok(code: int) -> None:
    error = closed_error(int(code), "bye", by_peer=True)
    assert type(error) is ConnectionClosedOK
    assert error.code is code
    assert (error.reason, error.by_peer) == ("bye", True)


@pytest.mark.parametrize("code", [CloseCode.PROTOCOL_ERROR, CloseCode.ABNORMAL, 4100, 1004])
def test_any_other_close_is_reported_as_an_error(code: int) -> None:
    error = closed_error(int(code), "", by_peer=False)
    assert type(error) is ConnectionClosedError
    assert error.code == code
    assert error.by_peer is False
    assert isinstance(error.code, CloseCode) == (code in set(CloseCode))


def test_the_login_frames_follow_their_order() -> None:
    # Host side: AUTH_START, AUTH_RESPONSE, then (after acceptance) LOGOUT.
    login = next_login(Login.IDLE, FrameType.AUTH_START)
    assert login is Login.STARTED
    assert next_login(login, FrameType.AUTH_RESPONSE) is Login.ANSWERED
    assert next_login(Login.DONE, FrameType.LOGOUT) is Login.LOGGED_OUT
    # Client side: AUTH_CHALLENGE, then AUTH_OK or AUTH_FAIL.
    assert next_login(Login.IDLE, FrameType.AUTH_CHALLENGE) is Login.STARTED
    assert next_login(Login.STARTED, FrameType.AUTH_OK) is Login.DONE
    assert next_login(Login.STARTED, FrameType.AUTH_FAIL) is Login.ANSWERED


@pytest.mark.parametrize(
    ("login", "frame_type"),
    [
        (Login.STARTED, FrameType.AUTH_START),
        (Login.IDLE, FrameType.AUTH_RESPONSE),
        (Login.IDLE, FrameType.LOGOUT),
        (Login.DONE, FrameType.AUTH_OK),
        (Login.ANSWERED, FrameType.AUTH_FAIL),
    ],
)
def test_a_login_frame_out_of_order_is_a_protocol_error(login: Login, frame_type: int) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        next_login(login, frame_type)
    assert info.value.code == CloseCode.PROTOCOL_ERROR
    assert FrameType(frame_type).name in str(info.value)


def test_a_refusal_is_a_preamble_and_a_close_before_any_hello() -> None:
    decoder = Decoder("client")
    decoder.receive_data(encode_refusal(CloseCode.TRY_AGAIN_LATER, "too many connections"))
    assert decoder.events() == [Close(CloseCode.TRY_AGAIN_LATER, "too many connections")]
    assert decoder.closed
    assert not decoder.handshake_complete


def _opened_host(max_message_size: int, max_metadata_size: int) -> Decoder:
    decoder = Decoder(
        "host", max_message_size=max_message_size, max_metadata_size=max_metadata_size
    )
    decoder.receive_data(encode_hello("client"))
    decoder.events()
    return decoder


@pytest.mark.parametrize(
    ("data", "metadata"),
    [(b"xyz", None), ({"x": [1, 2]}, {"kind": "point"}), ("é" * 300, {"k": 1})],
)
def test_data_frame_sizes_are_what_the_receivers_limits_apply_to(
    data: object, metadata: dict[str, object] | None
) -> None:
    frame = encode_message(data, metadata)
    size, meta_size = data_frame_sizes(frame)
    assert size == len(frame) - HEADER_SIZE - META_LENGTH_SIZE
    # A receiver whose limits are exactly these sizes takes the message...
    decoder = _opened_host(size, max(meta_size, 1))
    decoder.receive_data(frame)
    assert decoder.events() == [Message(data, metadata or {})]
    # ...and one byte less refuses it.
    for limits in ((size - 1, max(meta_size, 1)), (size, meta_size - 1)):
        if min(limits) < 1:
            continue  # no metadata: no metadata limit to be under
        with pytest.raises(RemoteProtocolError) as info:
            _opened_host(*limits).receive_data(frame)
        assert info.value.code == CloseCode.MESSAGE_TOO_BIG
