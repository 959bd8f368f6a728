"""R02, measured: a declared length is refused before any memory is spent on it.

Sans-I/O: the decoder is fed headers that promise up to 4 GiB, and ``tracemalloc`` records the
peak memory allocated while it reads them.
"""

from __future__ import annotations

import tracemalloc

import pytest

from alvaro import CloseCode
from alvaro.exceptions import RemoteProtocolError
from alvaro.protocol import MAX_LIMIT, PREAMBLE, Decoder, FrameType, encode_hello

from .rawpeer import frame_header

#: The most the decoder may allocate while refusing a frame, in bytes.
BUDGET = 64 * 1024


def open_decoder(max_message_size: int = 1024 * 1024) -> Decoder:
    """A host-side decoder whose handshake with a client is done."""
    decoder = Decoder("host", max_message_size=max_message_size)
    decoder.receive_data(encode_hello("client"))
    assert decoder.handshake_complete
    decoder.events()
    return decoder


@pytest.mark.parametrize("declared", [MAX_LIMIT + 4, 2**31, 1024 * 1024 + 4 + 1])
def test_oversized_data_header_is_refused_before_allocation(declared: int) -> None:
    decoder = open_decoder()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with pytest.raises(RemoteProtocolError) as info:
            decoder.receive_data(frame_header(declared, FrameType.DATA))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG
    assert peak < BUDGET, f"{peak} bytes allocated to refuse a {declared}-byte frame"
    assert decoder.buffered <= 6  # the header at most, never a body


def test_oversized_frame_before_the_handshake_is_refused_before_allocation() -> None:
    decoder = Decoder("host")
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        with pytest.raises(RemoteProtocolError) as info:
            decoder.receive_data(PREAMBLE + frame_header(MAX_LIMIT + 4, FrameType.HELLO))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG
    assert peak < BUDGET


def test_a_slow_drip_never_buffers_more_than_one_frame() -> None:
    """A frame at the limit, fed a kilobyte at a time: the decoder holds at most that frame."""
    limit = 256 * 1024
    decoder = open_decoder(max_message_size=limit)
    body = b"\0" * (limit - 4)
    frame = frame_header(limit, FrameType.DATA, 1) + (0).to_bytes(4, "big") + body
    most = 0
    for start in range(0, len(frame), 1024):
        decoder.receive_data(frame[start : start + 1024])
        most = max(most, decoder.buffered)
    (message,) = decoder.events()
    assert message.data == body
    assert most <= 6 + limit
    assert decoder.buffered == 0
