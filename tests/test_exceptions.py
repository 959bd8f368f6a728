"""The exception hierarchy drawn in ``alvaro/exceptions.py``, and what each exception carries."""

from __future__ import annotations

import inspect

import pytest

import alvaro
import alvaro.exceptions
from alvaro import CloseCode
from alvaro.exceptions import (
    AccountsFileError,
    AlvaroError,
    AuthenticationError,
    ConcurrencyError,
    ConnectError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    EncodeError,
    LocalProtocolError,
    MessageTooLarge,
    OutboxFull,
    ProtocolError,
    RemoteError,
    RemoteProtocolError,
    TLSError,
    TooManyRequests,
    WrongThreadError,
)

#: (class, its alvaro parent, the builtin it also derives from or None), as drawn in the docstring.
HIERARCHY = [
    (ConnectError, AlvaroError, OSError),
    (TLSError, ConnectError, OSError),
    (AuthenticationError, ConnectError, OSError),
    (AccountsFileError, AlvaroError, ValueError),
    (ConnectionClosed, AlvaroError, None),
    (ConnectionClosedOK, ConnectionClosed, None),
    (ConnectionClosedError, ConnectionClosed, None),
    (ProtocolError, AlvaroError, None),
    (RemoteProtocolError, ProtocolError, None),
    (LocalProtocolError, ProtocolError, None),
    (MessageTooLarge, AlvaroError, ValueError),
    (EncodeError, AlvaroError, TypeError),
    (OutboxFull, AlvaroError, None),
    (RemoteError, AlvaroError, None),
    (TooManyRequests, AlvaroError, None),
    (ConcurrencyError, AlvaroError, RuntimeError),
    (WrongThreadError, AlvaroError, RuntimeError),
]

ALL_CLASSES = [AlvaroError] + [row[0] for row in HIERARCHY]

BUILTINS = (OSError, ValueError, TypeError, RuntimeError)


def test_alvaro_error_is_an_exception() -> None:
    assert issubclass(AlvaroError, Exception)
    assert not issubclass(AlvaroError, BUILTINS)


@pytest.mark.parametrize(
    ("cls", "parent", "builtin"), HIERARCHY, ids=lambda v: getattr(v, "__name__", "-")
)
def test_hierarchy(cls: type, parent: type, builtin: type | None) -> None:
    assert issubclass(cls, parent)
    assert issubclass(cls, AlvaroError)
    assert issubclass(cls, Exception)
    if builtin is not None:
        assert issubclass(cls, builtin)
    # No builtin other than the one drawn sneaks in.
    for other in BUILTINS:
        if other is not builtin and not (builtin is not None and issubclass(builtin, other)):
            assert not issubclass(cls, other), f"{cls.__name__} is also a {other.__name__}"


def test_siblings_are_distinct() -> None:
    assert not issubclass(ConnectionClosedOK, ConnectionClosedError)
    assert not issubclass(ConnectionClosedError, ConnectionClosedOK)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(ConnectionClosed, ProtocolError)
    assert not issubclass(ProtocolError, ConnectionClosed)


def test_every_exception_class_is_listed_and_exported() -> None:
    defined = {
        name
        for name, value in vars(alvaro.exceptions).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == "alvaro.exceptions"
    }
    assert defined == {cls.__name__ for cls in ALL_CLASSES}
    for name in defined:
        assert name in alvaro.exceptions.__all__
        assert name in alvaro.__all__
        assert getattr(alvaro, name) is getattr(alvaro.exceptions, name)


def test_builtin_except_clauses_keep_working() -> None:
    with pytest.raises(OSError, match="refused"):
        raise ConnectError("could not connect: refused")
    with pytest.raises(ValueError, match="too large"):
        raise MessageTooLarge("too large", size=10, limit=5)
    with pytest.raises(TypeError, match="JSON"):
        raise EncodeError("not JSON")
    with pytest.raises(RuntimeError):
        raise ConcurrencyError("two receivers")
    with pytest.raises(RuntimeError):
        raise WrongThreadError("event-loop thread")


def test_protocol_error_cannot_be_instantiated_directly() -> None:
    with pytest.raises(TypeError, match="RemoteProtocolError or LocalProtocolError"):
        ProtocolError("who broke it?")
    with pytest.raises(TypeError):
        ProtocolError()


def test_protocol_error_subclasses_can_be_instantiated() -> None:
    remote = RemoteProtocolError("bad frame")
    local = LocalProtocolError("sending after close")
    assert str(remote) == "bad frame"
    assert str(local) == "sending after close"
    with pytest.raises(ProtocolError):
        raise remote
    with pytest.raises(ProtocolError):
        raise local

    # A user's own subclass is allowed too: only ProtocolError itself is abstract.
    class MyProtocolError(ProtocolError):
        pass

    assert str(MyProtocolError("mine")) == "mine"


def test_remote_protocol_error_code() -> None:
    assert RemoteProtocolError("bad frame").code == CloseCode.PROTOCOL_ERROR
    assert RemoteProtocolError("bad frame").code is CloseCode.PROTOCOL_ERROR
    error = RemoteProtocolError("too big", CloseCode.MESSAGE_TOO_BIG)
    assert error.code == CloseCode.MESSAGE_TOO_BIG
    assert RemoteProtocolError("bad json", code=CloseCode.INVALID_DATA).code == 1007


def test_connection_closed_attributes() -> None:
    closed = ConnectionClosedOK(CloseCode.NORMAL, "bye", by_peer=True)
    assert closed.code == CloseCode.NORMAL
    assert closed.reason == "bye"
    assert closed.by_peer is True
    default = ConnectionClosedError(CloseCode.ABNORMAL)
    assert default.reason == ""
    assert default.by_peer is False


def test_connection_closed_str() -> None:
    text = str(ConnectionClosedOK(CloseCode.NORMAL, "see you", by_peer=True))
    assert "NORMAL" in text
    assert "1000" in text
    assert "see you" in text
    assert "by the peer" in text

    text = str(ConnectionClosedError(CloseCode.INTERNAL_ERROR, "the application failed"))
    assert "INTERNAL_ERROR" in text
    assert "the application failed" in text
    assert "locally" in text
    assert "by the peer" not in text

    text = str(ConnectionClosed(4321, "", by_peer=True))
    assert "4321" in text
    assert "APPLICATION" in text
    assert "by the peer" in text
    assert not text.endswith(":")

    assert "UNKNOWN" in str(ConnectionClosedError(2999, "odd"))


def test_message_too_large() -> None:
    error = MessageTooLarge("message of 2000 bytes is over 1000", size=2000, limit=1000)
    assert error.size == 2000
    assert error.limit == 1000
    assert str(error) == "message of 2000 bytes is over 1000"
    with pytest.raises(TypeError):
        MessageTooLarge("size and limit are keyword-only", 2000, 1000)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (1000, "NORMAL"),
        (CloseCode.GOING_AWAY, "GOING_AWAY"),
        (1002, "PROTOCOL_ERROR"),
        (1006, "ABNORMAL"),
        (1009, "MESSAGE_TOO_BIG"),
        (1011, "INTERNAL_ERROR"),
        (4000, "TIMEOUT"),
        (4001, "SLOW_CONSUMER"),
        (4100, "APPLICATION"),
        (4500, "APPLICATION"),
        (4999, "APPLICATION"),
        (999, "UNKNOWN"),
        (1004, "UNKNOWN"),
        (4002, "TLS_REQUIRED"),
        (4003, "UNKNOWN"),
        (4099, "UNKNOWN"),
        (5000, "UNKNOWN"),
        (0, "UNKNOWN"),
        (-1, "UNKNOWN"),
    ],
)
def test_close_code_describe(code: int, name: str) -> None:
    assert CloseCode.describe(code) == name


def test_close_code_describe_of_a_connection_not_closing() -> None:
    # close_code is None until a close starts; describing it must not raise.
    assert CloseCode.describe(None) == "NONE"


def test_close_codes_are_ints() -> None:
    assert int(CloseCode.NORMAL) == 1000
    assert isinstance(CloseCode.PROTOCOL_ERROR, int)
    for code in CloseCode:
        assert CloseCode.describe(int(code)) == code.name


def test_tls_error_carries_its_kind_through_pickle() -> None:
    import pickle

    error = TLSError("the certificate has expired", TLSError.EXPIRED)
    assert error.kind == "expired"
    assert str(error) == "the certificate has expired"
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is TLSError
    assert (copy.kind, str(copy)) == ("expired", "the certificate has expired")
    # An except clause for connection failures catches TLS failures too.
    with pytest.raises(ConnectError):
        raise error
    assert TLSError("unclassified").kind == TLSError.HANDSHAKE


def test_authentication_error_carries_its_reason_through_pickle() -> None:
    import pickle

    error = AuthenticationError("login refused: wrong user name or password")
    assert error.reason == str(error) == "login refused: wrong user name or password"
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is AuthenticationError
    assert copy.reason == error.reason
    # A failed login is a failed connect: code written for ConnectError catches it.
    with pytest.raises(ConnectError):
        raise error


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (
            RemoteError("error", "bad input", "ValueError"),
            "the request failed on the peer: ValueError: bad input",
        ),
        (RemoteError("error", "bad input"), "the request failed on the peer: bad input"),
        (RemoteError("error"), "the request failed on the peer"),
        (
            RemoteError("no_handler", "nobody answers requests here"),
            "the peer does not answer requests: nobody answers requests here",
        ),
        (
            RemoteError("busy", "64 requests running"),
            "the peer is busy with other requests of this connection: 64 requests running",
        ),
        (
            RemoteError("cancelled", "shutting down"),
            "the peer cancelled the request: shutting down",
        ),
    ],
    ids=["error with type", "error", "bare", "no_handler", "busy", "cancelled"],
)
def test_remote_error_says_what_failed_where(error: RemoteError, text: str) -> None:
    assert str(error) == text


def test_remote_error_kinds_are_the_wire_names() -> None:
    # The constants are the strings an error REPLY carries (docs/protocol.md, 9.4).
    from alvaro.protocol import ERROR_KINDS

    kinds = (RemoteError.ERROR, RemoteError.NO_HANDLER, RemoteError.BUSY, RemoteError.CANCELLED)
    assert kinds == ERROR_KINDS


def test_remote_error_carries_everything_through_pickle() -> None:
    import pickle

    error = RemoteError("error", "bad input", "ValueError", "Traceback ...\nValueError")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is RemoteError
    assert (copy.kind, copy.message, copy.remote_type, copy.remote_traceback) == (
        "error",
        "bad input",
        "ValueError",
        "Traceback ...\nValueError",
    )
    assert str(copy) == str(error)
    bare = pickle.loads(pickle.dumps(RemoteError("busy")))
    assert (bare.kind, bare.message, bare.remote_type, bare.remote_traceback) == (
        "busy",
        "",
        None,
        None,
    )


# --- alvaro.Reply: what a request handler returns to send metadata --------------------------


def test_reply_holds_data_and_metadata() -> None:
    reply = alvaro.Reply({"sum": 3}, {"unit": "m"})
    assert (reply.data, reply.metadata) == ({"sum": 3}, {"unit": "m"})
    assert alvaro.Reply(b"raw").metadata is None
    assert alvaro.Reply(None, {}) == alvaro.Reply(None, {})
    with pytest.raises(AttributeError):
        reply.data = 4  # type: ignore[misc]  # frozen: a handler's answer cannot change later


@pytest.mark.parametrize("metadata", [[("unit", "m")], "unit=m", 1, ()], ids=repr)
def test_reply_refuses_metadata_that_is_not_a_dict(metadata: object) -> None:
    with pytest.raises(TypeError, match="metadata must be a dict or None, not"):
        alvaro.Reply(1, metadata)  # type: ignore[arg-type]
