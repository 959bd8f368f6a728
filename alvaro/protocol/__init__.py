"""Sans-I/O implementation of the alvaro wire protocol, version 1.

This package turns messages into bytes and bytes into events. It does no I/O: no sockets, no
anyio, no threads, and it imports nothing but the standard library (``import alvaro.protocol``
loads neither anyio nor ssl). ``docs/protocol.md`` is the specification it implements.

Sending::

    frame = encode_message({"x": 1}, {"kind": "point"})      # bytes ready for the socket

Receiving::

    decoder = Decoder(role="client")
    try:
        decoder.receive_data(chunk)           # any number of bytes, any segmentation
    except RemoteProtocolError as exc:        # the peer broke the protocol: close with exc.code
        ...
    for event in decoder.events():            # Hello, Message, Ping, Pong, Close, Auth*,
        ...                                   # and with feature "request" Request, Reply*, Cancel

The modules, each re-exported here:

- :mod:`~alvaro.protocol.frames`: the preamble, header layouts, frame types, sizes and limits;
- :mod:`~alvaro.protocol.events`: what the decoder returns, one record per frame;
- :mod:`~alvaro.protocol.encoders`: messages and control frames as bytes;
- :mod:`~alvaro.protocol.decoder`: the :class:`Decoder`;
- :mod:`~alvaro.protocol.state`: the connection's rules: HELLO negotiation, login order, and
  how a close is answered and reported;
- :mod:`~alvaro.protocol.request`: feature ``request``'s rules: ids, deadlines, error replies.
"""

from __future__ import annotations

from .decoder import Decoder
from .encoders import (
    encode_auth_challenge,
    encode_auth_fail,
    encode_auth_ok,
    encode_auth_response,
    encode_auth_start,
    encode_cancel,
    encode_close,
    encode_hello,
    encode_logout,
    encode_message,
    encode_ping,
    encode_pong,
    encode_reply,
    encode_reply_error,
    encode_request,
)
from .events import (
    AuthChallenge,
    AuthFail,
    AuthOk,
    AuthResponse,
    AuthStart,
    Cancel,
    Close,
    Event,
    Hello,
    Logout,
    Message,
    Ping,
    Pong,
    ReplyError,
    ReplyOk,
    Request,
)
from .frames import (
    AUTH_MECHANISM,
    CONTROL_LIMIT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MAX_METADATA_SIZE,
    MAGIC,
    MAX_CLOSE_REASON as MAX_CLOSE_REASON,  # importable here as before, though not in __all__
    MAX_LIMIT,
    MAX_REQUEST_ID,
    MAX_TIMEOUT_MS,
    PREAMBLE,
    SUPPORTED_FEATURES,
    VERSION,
    Encoding,
    FrameType,
    Role,
)
from .request import ERROR_KINDS

__all__ = (
    "AUTH_MECHANISM",
    "CONTROL_LIMIT",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DEFAULT_MAX_METADATA_SIZE",
    "ERROR_KINDS",
    "MAGIC",
    "MAX_LIMIT",
    "MAX_REQUEST_ID",
    "MAX_TIMEOUT_MS",
    "PREAMBLE",
    "SUPPORTED_FEATURES",
    "VERSION",
    "AuthChallenge",
    "AuthFail",
    "AuthOk",
    "AuthResponse",
    "AuthStart",
    "Cancel",
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
    "ReplyError",
    "ReplyOk",
    "Request",
    "Role",
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
    "encode_reply",
    "encode_reply_error",
    "encode_request",
)
