"""The conformance table: byte-level cases and the outcome ``docs/protocol.md`` requires for each.

A case is a script for a raw peer (what it sends, in which pieces, with which pauses) and the
outcome the implementation under test must produce, read from the wire (what the raw peer gets
back) and from the API (which messages reach the application, which close code it reports):

- :func:`DELIVER` / :func:`NO_RESPONSE` / :func:`PONG`: the connection stays open; the listed
  messages reach the application (and are echoed back by the runner's application), the listed
  PONGs come back, nothing else does;
- :func:`CLOSE`: the implementation closes with this code, after delivering the listed messages;
  :func:`REFUSE` is the same during the opening handshake, before the application sees anything;
- :func:`ECHO`: the raw peer closed; the implementation answers with a CLOSE echoing its code and
  reports the peer's code and reason;
- :func:`ABNORMAL`: the connection ends without a CLOSE frame; the implementation sends none
  and reports ABNORMAL (1006).

A case with ``login`` runs against a Host that requires login (and knows :data:`USER`) and a
Client that logs in as :data:`USER`; the raw peer's default HELLO then offers feature ``auth``
(a raw host's requires it). The raw peer plays its side of the SCRAM-SHA-256 exchange with
:class:`Scram` parts, computed as the case runs from what the implementation sent (section 9.8).

Every input is built here by hand from the layouts of the specification, never with the codec under
test. Each case names the sections it checks. A case may accept several outcomes (the
specification says MAY), and may list *lenient* outcomes: behaviour that breaks the letter of the
specification for a documented reason. A run that matches one of those is NON-STRICT, and the case
must say why in ``justification``.
"""

from __future__ import annotations

import base64
import functools
import json
import struct
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

# scramp ships no type information.
import scramp  # type: ignore[import-untyped]

from alvaro import AuthenticationError, CloseCode

from ..helpers import T

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = (
    "ABNORMAL",
    "ANY",
    "CASES",
    "CLOSE",
    "DELIVER",
    "ECHO",
    "GROUPS",
    "LIMIT_MESSAGE",
    "LIMIT_METADATA",
    "NO_RESPONSE",
    "PONG",
    "REFUSE",
    "AwaitClose",
    "AwaitFrame",
    "AwaitHello",
    "Case",
    "HalfClose",
    "Hello",
    "KnownBug",
    "Login",
    "Outcome",
    "Pause",
    "Reset",
    "Scram",
    "Send",
    "StaysOpen",
    "Step",
    "Unanswerable",
)

Role: TypeAlias = Literal["host", "client"]
ROLES: tuple[Role, ...] = ("host", "client")

#: The limits the implementation under test announces (small enough to test both edges quickly,
#: large enough for a JSON text nested 100 000 deep).
LIMIT_MESSAGE = 256 * 1024
LIMIT_METADATA = 1024
#: How long the implementation may take to react to a case's bytes (close, answer, ...).
WITHIN = 10 * T
#: The open timeout the implementation under test uses, unless a case sets another.
OPEN_TIMEOUT = 20 * T
#: A short pause between the writes of a segmented send: long enough for the receiver to read
#: each piece on its own most of the time (the outcome must not depend on it).
GAP = T / 100

PREAMBLE = b"ALVARO\x01\x00"
DATA, PING_, PONG_, CLOSE_, HELLO_ = 0x01, 0x10, 0x11, 0x12, 0x20
AUTH_START_, AUTH_CHALLENGE_, AUTH_RESPONSE_, AUTH_OK_, AUTH_FAIL_, LOGOUT_ = range(0x21, 0x27)
#: The AUTH frames each side sends (9.8).
AUTH_SENT_BY: dict[str, frozenset[int]] = {
    "client": frozenset((AUTH_START_, AUTH_RESPONSE_, LOGOUT_)),
    "host": frozenset((AUTH_CHALLENGE_, AUTH_OK_, AUTH_FAIL_)),
}
RESERVED_TYPES = {
    0x02: "REQUEST",
    0x03: "REPLY",
    0x04: "CHUNK",
    0x05: "CHUNK_ABORT",
    0x06: "ACK",
    0x07: "CANCEL",
    0x21: "AUTH_START",
    0x22: "AUTH_CHALLENGE",
    0x23: "AUTH_RESPONSE",
    0x24: "AUTH_OK",
    0x25: "AUTH_FAIL",
    0x26: "LOGOUT",
}

GROUPS = {
    "1": "echo and basic framing",
    "2": "ping and pong",
    "3": "reserved flag bits and frame types",
    "4": "invalid framing",
    "5": "segmentation",
    "6": "encoding (UTF-8 and JSON)",
    "7": "close handling and close codes",
    "8": "opening handshake",
    "9": "limits",
    "10": "auth/login",
    "11": "requests",
}

#: The login cases' account: the Host under test knows it, the Client under test logs in with it.
USER = "ann"
PASSWORD = "correct horse"
#: Its SCRAM iteration count: the least a client accepts (9.8), so that a login costs little.
ITERATIONS = 4096
MECHANISM = "SCRAM-SHA-256"
#: The one AUTH_FAIL reason for an unknown user and a wrong password (9.8).
WRONG_CREDENTIALS = "wrong user name or password"
#: The login timeout of the implementation under test, unless a case sets another.
LOGIN_TIMEOUT = OPEN_TIMEOUT

# --- Bytes, by hand ------------------------------------------------------------------------------


def compact(value: Any) -> bytes:
    """A JSON text as alvaro writes it: compact, UTF-8, no NaN."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def frame(frame_type: int, body: bytes = b"", flags: int = 0) -> bytes:
    """A frame: u32 body length, u8 type, u8 flags, body."""
    return struct.pack("!IBB", len(body), frame_type, flags) + body


def header(length: int, frame_type: int, flags: int = 0) -> bytes:
    """Only the 6-byte header of a frame."""
    return struct.pack("!IBB", length, frame_type, flags)


def data(
    payload: bytes, meta: bytes = b"", flags: int = 0, meta_length: int | None = None
) -> bytes:
    """A DATA frame from raw metadata and payload bytes (``meta_length`` if M must lie)."""
    m = len(meta) if meta_length is None else meta_length
    return frame(DATA, struct.pack("!I", m) + meta + payload, flags)


def jdata(value: Any, meta: dict[str, Any] | None = None) -> bytes:
    """A DATA frame carrying ``value`` as JSON, with ``meta`` (M = 0 when empty)."""
    return data(compact(value), compact(meta) if meta else b"")


def bdata(payload: bytes, meta: dict[str, Any] | None = None) -> bytes:
    """A DATA frame carrying raw bytes."""
    return data(payload, compact(meta) if meta else b"", flags=1)


def ping(payload: bytes = b"") -> bytes:
    return frame(PING_, payload)


def pong(payload: bytes = b"") -> bytes:
    return frame(PONG_, payload)


def close(code: int, reason: bytes = b"") -> bytes:
    return frame(CLOSE_, struct.pack("!H", code) + reason)


def request(request_id: int, value: Any, timeout_ms: int = 0) -> bytes:
    """A REQUEST carrying ``value`` as JSON, no metadata (9.3)."""
    return frame(0x02, struct.pack("!III", request_id, timeout_ms, 0) + compact(value))


def reply(request_id: int, value: Any, flags: int = 0) -> bytes:
    """A REPLY carrying ``value`` as JSON, no metadata (9.4)."""
    return frame(0x03, struct.pack("!II", request_id, 0) + compact(value), flags)


def cancel(request_id: int) -> bytes:
    """A CANCEL of ``request_id`` (9.3)."""
    return frame(0x07, struct.pack("!I", request_id))


def auth(frame_type: int, **fields: Any) -> bytes:
    """An AUTH frame whose body is the JSON object ``fields`` (9.8)."""
    return frame(frame_type, compact(fields))


# --- Scripts -------------------------------------------------------------------------------------


class _Marker:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: In :class:`Hello` fields: the raw peer's own role (the correct value).
OWN_ROLE: Any = _Marker("OWN_ROLE")
#: In :class:`Hello` fields: the role of the side under test (two hosts or two clients).
TESTED_ROLE: Any = _Marker("TESTED_ROLE")
#: In :class:`Hello` fields: leave the member out.
OMIT: Any = _Marker("OMIT")
#: In expected messages: any data (for values too large to write down or compare).
ANY: Any = _Marker("ANY")

_HELLO_MEMBERS: tuple[tuple[str, Any], ...] = (
    ("role", OWN_ROLE),
    ("max_message_size", 1048576),
    ("max_metadata_size", 65536),
    ("features", []),
)


@dataclass(frozen=True)
class Hello:
    """The raw peer's preamble and HELLO frame; its role is known only when the case runs.

    Args:
        fields: members to replace, add (at the end) or remove (value :data:`OMIT`).
        body: the whole body instead of JSON from ``fields``; ``$OWN`` and ``$TESTED`` in it
            become the two role names.
        preamble: the 8 bytes before the frame.
        flags: the header's flags.
        pad_to: add a member ``"pad"`` that makes the JSON body exactly this many bytes.
        login: offer feature ``auth``, and as a host require login (``"auth_required": true``),
            before ``fields`` apply (9.8).
    """

    fields: tuple[tuple[str, Any], ...] = ()
    body: bytes | None = None
    preamble: bytes = PREAMBLE
    flags: int = 0
    pad_to: int | None = None
    login: bool = False

    def build(self, own: Role) -> bytes:
        tested = "client" if own == "host" else "host"
        if self.body is not None:
            body = self.body.replace(b"$OWN", own.encode()).replace(b"$TESTED", tested.encode())
        else:
            members = dict(_HELLO_MEMBERS)
            if self.login:
                members["features"] = ["auth"]
                if own == "host":
                    members["auth_required"] = True
            members.update(self.fields)
            roles = {id(OWN_ROLE): own, id(TESTED_ROLE): tested}
            values = {k: roles.get(id(v), v) for k, v in members.items() if v is not OMIT}
            body = compact(values)
            if self.pad_to is not None:
                values["pad"] = ""
                values["pad"] = "p" * (self.pad_to - len(compact(values)))
                body = compact(values)
                assert len(body) == self.pad_to
        return self.preamble + frame(HELLO_, body, self.flags)

    def limits(self) -> tuple[int, int]:
        """The receive limits this HELLO announces (the defaults when they are not integers)."""
        members = dict(_HELLO_MEMBERS)
        members.update(self.fields)
        sizes = []
        for name, default in (("max_message_size", 1048576), ("max_metadata_size", 65536)):
            value = members[name]
            sizes.append(value if type(value) is int else default)
        return sizes[0], sizes[1]


HELLO = Hello()
#: The HELLO of a raw peer that takes part in a login.
LOGIN_HELLO = Hello(login=True)


# --- Login (feature auth, section 9.8) -------------------------------------------------------


@dataclass(frozen=True)
class Scram:
    """An AUTH frame carrying a SCRAM-SHA-256 message (RFC 5802), which the raw peer computes
    with scramp when it sends it, from what the implementation has sent so far (:class:`Login`).

    Kinds:
        ``"start"``: AUTH_START with a client-first-message for ``user``, whose password the
            raw client takes to be ``password`` (``nonce``: its client nonce, for a frame of an
            exact size);
        ``"response"``: AUTH_RESPONSE with the client-final-message answering the
            implementation's AUTH_CHALLENGE;
        ``"challenge"``: AUTH_CHALLENGE answering the implementation's AUTH_START for a user whose
            password is ``password``, asking for ``iterations`` rounds;
        ``"ok"``: AUTH_OK with the server-final-message for the implementation's AUTH_RESPONSE
            and the name ``user`` (a wrong server signature if ``forged``).
    """

    kind: Literal["start", "response", "challenge", "ok"]
    user: str = USER
    password: str = PASSWORD
    mechanism: str = MECHANISM
    iterations: int = ITERATIONS
    forged: bool = False
    nonce: str | None = None


Part: TypeAlias = bytes | Hello | Scram


class Unanswerable(Exception):
    """The raw peer cannot build a :class:`Scram` part from what the implementation sent."""


@functools.cache
def _verifier(password: str) -> tuple[bytes, bytes, bytes, int]:
    """A SCRAM verifier (salt, StoredKey, ServerKey, iterations) for ``password``."""
    info: tuple[bytes, bytes, bytes, int] = scramp.ScramMechanism(MECHANISM).make_auth_info(
        password, iteration_count=ITERATIONS
    )
    return info


class Login:
    """The raw peer's side of one run's SCRAM-SHA-256 exchange.

    Args:
        sent: the bodies of the frames of one type that the implementation has sent so far.
    """

    def __init__(self, sent: Callable[[int], list[bytes]]) -> None:
        self._sent = sent
        self._client: Any = None  # scramp.ScramClient, once AUTH_START is built
        self._server: Any = None  # scramp.ScramServer, once AUTH_CHALLENGE is built
        self._user = ""

    def build(self, part: Scram) -> bytes:
        try:
            return self._build(part)
        except scramp.ScramException as exc:
            raise Unanswerable(f"cannot answer the implementation's login: {exc}") from None

    def _build(self, part: Scram) -> bytes:
        if part.kind == "start":
            self._client = scramp.ScramClient(
                [MECHANISM], part.user, part.password, c_nonce=part.nonce
            )
            self._user = part.user
            first = self._client.get_client_first()
            return auth(AUTH_START_, mechanism=part.mechanism, message=first)
        if part.kind == "response":
            if self._client is None:
                raise Unanswerable("AUTH_RESPONSE without a Scram('start') before it")
            self._client.set_server_first(self._message(AUTH_CHALLENGE_))
            return auth(AUTH_RESPONSE_, message=self._client.get_client_final())
        if part.kind == "challenge":
            start = self._message(AUTH_START_)
            verifier = _verifier(part.password)
            self._server = scramp.ScramMechanism(MECHANISM).make_server(lambda _user: verifier)
            self._server.set_client_first(start)
            challenge: str = self._server.get_server_first()
            if part.iterations != ITERATIONS:
                # By hand: scramp refuses to state counts outside 4096..10,000,000.
                challenge = challenge.replace(f",i={ITERATIONS}", f",i={part.iterations}")
            return auth(AUTH_CHALLENGE_, message=challenge)
        if self._server is None:
            raise Unanswerable("AUTH_OK without a Scram('challenge') before it")
        self._server.set_client_final(self._message(AUTH_RESPONSE_))  # checks the proof
        final: str = self._server.get_server_final()
        if part.forged:
            final = "v=" + base64.b64encode(bytes(32)).decode()
        return auth(AUTH_OK_, message=final, user=part.user)

    def _message(self, frame_type: int) -> str:
        bodies = self._sent(frame_type)
        if not bodies:
            raise Unanswerable(f"the implementation sent no {RESERVED_TYPES[frame_type]}")
        try:
            message = json.loads(bodies[-1])["message"]
        except (ValueError, TypeError, KeyError):
            message = None
        if not isinstance(message, str):
            raise Unanswerable(f"{RESERVED_TYPES[frame_type]} without a string 'message'")
        return message

    def check_ok(self, body: bytes) -> list[str]:
        """What is wrong with the implementation's AUTH_OK, for the raw client's login."""
        if self._client is None:
            return []
        try:
            fields = json.loads(body)
            self._client.set_server_final(fields["message"])
        except (ValueError, TypeError, KeyError, scramp.ScramException) as exc:
            return [f"AUTH_OK does not prove that the host knows the password: {exc} (9.8)"]
        if fields.get("user") != self._user:
            return [f"AUTH_OK names user {fields.get('user')!r}, not {self._user!r} (9.8)"]
        return []


@dataclass(frozen=True)
class Send:
    """Send bytes: in one write, or cut at ``cuts`` (or every ``every`` bytes) into several
    writes with ``pause`` seconds between them."""

    parts: tuple[Part, ...]
    cuts: tuple[int, ...] = ()
    every: int = 0
    pause: float = 0.0


def send(*parts: Part, cuts: tuple[int, ...] = (), every: int = 0, pause: float = 0.0) -> Send:
    return Send(parts, cuts, every, pause)


def bytewise(*parts: Part) -> Send:
    """Send one byte per write, with a short pause between writes."""
    return Send(parts, every=1, pause=GAP)


@dataclass(frozen=True)
class Pause:
    """Wait, reading nothing."""

    seconds: float


@dataclass(frozen=True)
class StaysOpen:
    """Read for ``seconds``: the implementation must neither close nor send a CLOSE meanwhile."""

    seconds: float


@dataclass(frozen=True)
class HalfClose:
    """Close the raw peer's sending side (TCP FIN): EOF for the implementation."""


@dataclass(frozen=True)
class Reset:
    """Drop the connection with a TCP reset; the raw peer reads nothing more."""


@dataclass(frozen=True)
class AwaitClose:
    """Read until the implementation's CLOSE frame arrives."""


@dataclass(frozen=True)
class AwaitHello:
    """Read until the implementation's HELLO arrives, which must take less than ``seconds``."""

    seconds: float = WITHIN


@dataclass(frozen=True)
class AwaitFrame:
    """Read until the implementation has sent a frame of type ``frame_type``, which must take
    less than ``seconds`` (the answer a :class:`Scram` part needs, for one)."""

    frame_type: int
    seconds: float = WITHIN


Step: TypeAlias = (
    Send | Pause | StaysOpen | HalfClose | Reset | AwaitClose | AwaitHello | AwaitFrame
)

# --- Outcomes ------------------------------------------------------------------------------------

Kind: TypeAlias = Literal["open", "close", "echo", "abnormal"]
Msg: TypeAlias = "tuple[Any, dict[str, Any]]"


@dataclass(frozen=True)
class Outcome:
    """What the implementation must do. See the module docstring for the kinds."""

    kind: Kind
    messages: tuple[Msg, ...] = ()
    pongs: tuple[bytes, ...] = ()
    code: int | None = None
    reply: int | None = None
    reason: str | None = None
    opened: bool = True
    within: float = WITHIN
    wire_reason: str | None = None
    #: Whether the application sees the close as the peer's (None: as the kind says).
    by_peer: bool | None = None
    #: The reason of the AUTH_FAIL the implementation sends before its CLOSE (ANY: any reason;
    #: None: not checked).
    auth_fail: Any = None
    #: The exception a Client's connect() raises (None: ConnectError or TimeoutError, whose
    #: code must be the outcome's).
    error: type[Exception] | None = None
    #: The REPLY frames that come back, in order: (request id, "ok" or the error's kind).
    replies: tuple[tuple[int, str], ...] = ()

    def describe(self) -> str:
        parts = []
        if self.kind == "open":
            parts.append("stays open")
        elif self.kind == "close":
            verb = "closes" if self.opened else "refuses the handshake"
            parts.append(f"{verb} with {_code_name(self.code)}")
        elif self.kind == "echo":
            reply = self.code if self.reply is None else self.reply
            parts.append(f"reports the peer's {_code_name(self.code)}, answers {_code_name(reply)}")
        else:
            parts.append("ends without CLOSE, reports ABNORMAL (1006)")
        if self.auth_fail is not None:
            parts.append(f"after AUTH_FAIL {self.auth_fail!r}")
        if self.error is not None:
            parts.append(f"connect() raises {self.error.__name__}")
        if self.messages:
            parts.append(f"delivers {len(self.messages)} message(s)")
        if self.pongs:
            parts.append(f"{len(self.pongs)} PONG(s)")
        if self.replies:
            parts.append("REPLY " + ", ".join(f"{i} {kind}" for i, kind in self.replies))
        return ", ".join(parts)


def _code_name(code: int | None) -> str:
    if code is None:
        return "?"
    return f"{CloseCode.describe(code)} ({code})"


def _messages(items: tuple[Any, ...]) -> tuple[Msg, ...]:
    # A tuple is a (data, metadata) pair: JSON data never decodes to a tuple.
    return tuple(item if isinstance(item, tuple) else (item, {}) for item in items)


def m(value: Any, **metadata: Any) -> Msg:
    """An expected message with metadata."""
    return (value, metadata)


def DELIVER(*messages: Any, pongs: tuple[bytes, ...] = ()) -> Outcome:
    """The messages reach the application, in order; the connection stays open."""
    return Outcome("open", _messages(messages), pongs)


def NO_RESPONSE() -> Outcome:
    """Nothing is delivered, nothing comes back, the connection stays open."""
    return Outcome("open")


def PONG(*payloads: bytes, messages: tuple[Any, ...] = ()) -> Outcome:
    """PONGs with these payloads come back, in order; the connection stays open."""
    return Outcome("open", _messages(messages), payloads)


def REPLIES(*replies: tuple[int, str], messages: tuple[Any, ...] = ()) -> Outcome:
    """These REPLYs come back, in order, (id, "ok" or an error's kind); the connection stays
    open."""
    return Outcome("open", _messages(messages), replies=replies)


def CLOSE(
    code: int,
    *messages: Any,
    pongs: tuple[bytes, ...] = (),
    within: float = WITHIN,
    wire_reason: str | None = None,
    by_peer: bool = False,
) -> Outcome:
    """After delivering ``messages``, the implementation closes with ``code`` within ``within``
    seconds of the last byte sent (and with ``wire_reason`` as the CLOSE's reason, if given);
    the application sees the code, not from the peer (unless ``by_peer``: a close the peer
    asked for, as with LOGOUT)."""
    return Outcome(
        "close",
        _messages(messages),
        pongs,
        code=code,
        within=within,
        wire_reason=wire_reason,
        by_peer=by_peer,
    )


def REFUSE(
    code: int,
    within: float = WITHIN,
    pongs: tuple[bytes, ...] = (),
    auth_fail: Any = None,
    error: type[Exception] | None = None,
) -> Outcome:
    """The opening handshake (or the login) fails: CLOSE with ``code`` (after an AUTH_FAIL
    with reason ``auth_fail``, if given); the application never sees a connection (a Client's
    connect() raises with that code, or raises ``error``)."""
    return Outcome(
        "close",
        pongs=pongs,
        code=code,
        opened=False,
        within=within,
        auth_fail=auth_fail,
        error=error,
    )


def ECHO(
    code: int,
    *messages: Any,
    reason: str = "",
    reply: int | None = None,
    pongs: tuple[bytes, ...] = (),
    opened: bool = True,
    error: type[Exception] | None = None,
) -> Outcome:
    """The peer's CLOSE is accepted: answered with a CLOSE echoing ``code`` (or ``reply``), and
    ``code`` and ``reason`` are reported as the peer's (or connect() raises ``error``)."""
    return Outcome("echo", _messages(messages), pongs, code, reply, reason, opened, error=error)


def ABNORMAL(*messages: Any, opened: bool = True, error: type[Exception] | None = None) -> Outcome:
    """The connection ends without a CLOSE frame from either side: none is sent, ABNORMAL (1006)
    is reported (or connect() raises ``error``)."""
    return Outcome("abnormal", _messages(messages), opened=opened, error=error)


# --- Cases ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnownBug:
    """A case the implementation is known to fail: the test is an expected failure (strict)."""

    reason: str
    roles: tuple[Role, ...] = ROLES
    backends: tuple[str, ...] = ("asyncio", "trio")


@dataclass(frozen=True)
class Case:
    """One row of the table.

    Attributes:
        id: ``"group.number"``, given by the position in the table (see ``_numbered``).
        title: what the raw peer does, in a few words.
        steps: the raw peer's script. Unless ``handshake`` is false, the runner first sends the
            raw peer's preamble and a valid HELLO, in a write of its own.
        expect: the outcomes the specification allows; matching one is OK.
        spec: the sections of docs/protocol.md the expectation comes from.
        roles: the sides it runs against: ``"host"`` (a raw client talks to an alvaro Host)
            and/or ``"client"`` (an alvaro Client talks to a raw host).
        lenient: outcomes that are accepted as NON-STRICT, for the reason in ``justification``.
        settings: Host/Client settings to change for this case.
        answer_close: whether the raw peer answers the implementation's CLOSE (a peer that
            never answers tests the close timeout).
        known_bugs: the runs expected to fail, and why.
        login: the implementation takes part in a login: a Host that requires login and knows
            :data:`USER`, a Client that logs in as :data:`USER`; the raw peer's default HELLO is
            :data:`LOGIN_HELLO`.
    """

    id: str
    title: str
    steps: tuple[Step, ...]
    expect: tuple[Outcome, ...]
    spec: str
    roles: tuple[Role, ...] = ROLES
    handshake: bool = True
    lenient: tuple[Outcome, ...] = ()
    justification: str = ""
    settings: tuple[tuple[str, Any], ...] = ()
    answer_close: bool = True
    known_bugs: tuple[KnownBug, ...] = field(default=())
    login: bool = False

    @property
    def group(self) -> str:
        return self.id.split(".")[0]

    def known_bug(self, role: str, backend: str) -> KnownBug | None:
        for bug in self.known_bugs:
            if role in bug.roles and backend in bug.backends:
                return bug
        return None


def case(
    title: str,
    *steps: Step,
    expect: Outcome | tuple[Outcome, ...],
    spec: str,
    **options: Any,
) -> Case:
    expected = expect if isinstance(expect, tuple) else (expect,)
    lenient = options.pop("lenient", ())
    if isinstance(lenient, Outcome):
        lenient = (lenient,)
    return Case("", title, steps, expected, spec, lenient=lenient, **options)


# Spec examples, byte for byte (docs/protocol.md, section 5).
EXAMPLE_1 = bytes.fromhex("0000001b0100000000107b226b696e64223a22706f696e74227d7b2278223a317d")
EXAMPLE_2 = bytes.fromhex("0000000c0100000000002268c3a96c6c6f22")
EXAMPLE_3 = bytes.fromhex("00000008010100000000000102ff")
EXAMPLE_4 = bytes.fromhex("0000000e0101000000087b226964223a377d6869")
EXAMPLE_PING = bytes.fromhex("00000004100000000001")
EXAMPLE_CLOSE = bytes.fromhex("00000005120003e8627965")


def _every_offset(frame_bytes: bytes) -> Send:
    """``frame_bytes`` once per offset 1..len-1, each copy cut in two at that offset: with
    a pause between the two halves of each copy."""
    pieces = b""
    cuts = []
    for offset in range(1, len(frame_bytes)):
        cuts.append(len(pieces) + offset)
        pieces += frame_bytes
        cuts.append(len(pieces))
    return Send((pieces,), cuts=tuple(cuts[:-1]), pause=GAP)


def _group_1() -> list[Case]:
    many = [{"n": n, "text": "x" * (n % 7)} for n in range(50)]
    return [
        case(
            "spec example 2: JSON string with non-ASCII text, no metadata",
            send(EXAMPLE_2),
            expect=DELIVER("héllo"),
            spec="5.1 example 2",
        ),
        case(
            "spec example 1: JSON object with metadata",
            send(EXAMPLE_1),
            expect=DELIVER(m({"x": 1}, kind="point")),
            spec="5.1 example 1",
        ),
        case(
            "spec example 3: raw bytes, no metadata",
            send(EXAMPLE_3),
            expect=DELIVER(b"\x00\x01\x02\xff"),
            spec="5.1 example 3",
        ),
        case(
            "spec example 4: raw bytes with metadata",
            send(EXAMPLE_4),
            expect=DELIVER(m(b"hi", id=7)),
            spec="5.1 example 4",
        ),
        case(
            "50 messages in one segment",
            send(b"".join(jdata(v, {"i": v["n"]}) for v in many)),
            expect=DELIVER(*[m(v, i=v["n"]) for v in many]),
            spec="1.1",
        ),
        case(
            "empty raw bytes payload (P = 0)",
            send(data(b"", flags=1)),
            expect=DELIVER(b""),
            spec="5.1 flags table",
        ),
        case(
            "empty metadata written as {} (M = 2)",
            send(data(b"1", b"{}")),
            expect=DELIVER(1),
            spec="5.1 metadata",
        ),
        case(
            "JSON scalars and empty containers at the top level",
            send(
                b"".join(
                    data(p)
                    for p in (b"null", b"0", b"true", b"false", b'""', b"[]", b"{}", b"-1.5")
                )
            ),
            expect=DELIVER(None, 0, True, False, "", [], {}, -1.5),
            spec="1.5 top-level values",
        ),
        case(
            "JSON with insignificant whitespace and \\u escapes",
            send(data(b' \t{ "a" : [ 1 , "\\u00e9\\n" ] }\r\n', b' { "k" : "\\u0041" } ')),
            expect=DELIVER(m({"a": [1, "é\n"]}, k="A")),
            spec="1.5 compact output",
        ),
        case(
            "duplicate member names: the last one wins",
            send(data(b'{"a":1,"a":2}', b'{"k":1,"k":"last"}')),
            expect=DELIVER(m({"a": 2}, k="last")),
            spec="1.5 duplicate member names",
        ),
        case(
            "the same payload bytes as JSON and as raw bytes",
            send(data(b'"x"') + data(b'"x"', flags=1)),
            expect=DELIVER("x", b'"x"'),
            spec="5.1 flags",
        ),
        case(
            "raw bytes payload with JSON metadata and invalid UTF-8 bytes",
            send(bdata(b"\xff\xfe\x00\xc0\x80", {"m": "é"})),
            expect=DELIVER(m(b"\xff\xfe\x00\xc0\x80", m="é")),
            spec="1.4 (bytes are not text)",
        ),
        case(
            "nested JSON data and metadata of several types",
            send(jdata({"l": [1, 2.5, None, True, {"s": "ü"}]}, {"a": [1], "b": {"c": None}})),
            expect=DELIVER(m({"l": [1, 2.5, None, True, {"s": "ü"}]}, a=[1], b={"c": None})),
            spec="1.1, 5.1",
        ),
    ]


def _group_2() -> list[Case]:
    big = bytes(range(256)) * 16  # 4096 bytes
    return [
        case(
            "spec example PING: answered with the same payload",
            send(EXAMPLE_PING),
            expect=PONG(b"\x00\x00\x00\x01"),
            spec="5.2",
        ),
        case("PING with an empty payload", send(ping()), expect=PONG(b""), spec="5.2"),
        case(
            "PING with the largest payload (4096 bytes)",
            send(ping(big)),
            expect=PONG(big),
            spec="5.2, 8 control limit",
        ),
        case(
            "PING payload that is not UTF-8",
            send(ping(b"\xff\xfe\xc0\x80\xed\xa0\x80")),
            expect=PONG(b"\xff\xfe\xc0\x80\xed\xa0\x80"),
            spec="1.4, 5.2",
        ),
        case("unsolicited PONG", send(pong(b"unsolicited")), expect=NO_RESPONSE(), spec="5.3"),
        case(
            "unsolicited PONGs, empty and 4096 bytes",
            send(pong() + pong(big)),
            expect=NO_RESPONSE(),
            spec="5.3",
        ),
        case(
            "ten PINGs in one segment: ten PONGs, in order",
            send(b"".join(ping(b"p%d" % n) for n in range(10))),
            expect=PONG(*[b"p%d" % n for n in range(10)]),
            spec="5.2",
        ),
        case(
            "PINGs and PONGs between messages",
            send(jdata(1) + ping(b"a") + pong(b"z") + jdata(2) + ping(b"b") + jdata(3)),
            expect=PONG(b"a", b"b", messages=(1, 2, 3)),
            spec="5.2, 5.3",
        ),
    ]


def _group_3() -> list[Case]:
    cases = [
        case(
            "DATA with flags 0x02 (reserved encoding)",
            send(data(b"1", flags=0x02)),
            expect=CLOSE(1002),
            spec="5.1 flags, 7.1 D2",
        ),
        case(
            "DATA with flags 0x03 (reserved encoding)",
            send(data(b"1", flags=0x03)),
            expect=CLOSE(1002),
            spec="5.1 flags, 7.1 D2",
        ),
        case(
            "DATA with flags 0x04 (reserved bit)",
            send(data(b"1", flags=0x04)),
            expect=CLOSE(1002),
            spec="5.1 flags, 7.1 D2",
        ),
        case(
            "DATA with flags 0x81 (reserved bit and bytes)",
            send(data(b"1", flags=0x81)),
            expect=CLOSE(1002),
            spec="5.1 flags, 7.1 D2",
        ),
        case(
            "DATA header with reserved flags, body never sent: rejected from the header",
            send(header(100, DATA, 0x02)),
            expect=CLOSE(1002),
            spec="3 (check the header first), 7.1 D2",
        ),
        case(
            "PING with flags 0x01",
            send(frame(PING_, b"x", 0x01)),
            expect=CLOSE(1002),
            spec="7.1 C4",
        ),
        case(
            "PONG with flags 0x40",
            send(frame(PONG_, b"x", 0x40)),
            expect=CLOSE(1002),
            spec="7.1 C4",
        ),
        case(
            "CLOSE with flags 0x01",
            send(frame(CLOSE_, b"\x03\xe8", 0x01)),
            expect=CLOSE(1002),
            spec="7.1 C4",
        ),
        case(
            "REQUEST (feature 'request' negotiated) whose body is shorter than its prefix",
            send(Hello((("features", ["request"]),)), frame(0x02, b"\x00" * 8)),
            expect=CLOSE(1002),
            spec="9.2 (fixed-length fields), 9.3",
            handshake=False,
        ),
        case(
            "unassigned type with L = 2^32-1: the type decides before the length",
            send(header(2**32 - 1, 0x7F)),
            expect=CLOSE(1002),
            spec="7.1 C3 before C5",
        ),
        case(
            "DATA over the size limit with reserved flags: the size decides first",
            send(header(LIMIT_MESSAGE + 5, DATA, 0x02)),
            expect=CLOSE(1009),
            spec="7.1 D1 before D2",
        ),
        case(
            "PING with reserved flags over 4096 bytes: the flags decide first",
            send(header(4097, PING_, 0x01)),
            expect=CLOSE(1002),
            spec="7.1 C4 before C5",
        ),
        case(
            "reserved type REQUEST with L = 2^32-1: not negotiated decides before the length",
            send(header(2**32 - 1, 0x02)),
            expect=CLOSE(1002),
            spec="7.1 C2 before C5",
        ),
        case(
            "valid messages, then an unassigned type, in one segment",
            send(jdata("a") + jdata("b") + frame(0x7F)),
            expect=CLOSE(1002, "a", "b"),
            spec="6.3, 7.1 C3",
        ),
    ]
    for frame_type in (0x00, 0x08, 0x0F, 0x13, 0x1F, 0x27, 0x80, 0xFF):
        cases.append(
            case(
                f"unassigned frame type {frame_type:#04x}",
                send(frame(frame_type, b"\x00\x00\x00\x00")),
                expect=CLOSE(1002),
                spec="4, 7.1 C3, 10",
            )
        )
    for frame_type, name in RESERVED_TYPES.items():
        cases.append(
            case(
                f"reserved type {name} ({frame_type:#04x}), feature not negotiated",
                send(frame(frame_type, b"\x00" * 8)),
                expect=CLOSE(1002),
                spec="4, 9.1, 7.1 C2",
            )
        )
    return cases


def _group_4() -> list[Case]:
    return [
        case("DATA with L = 0", send(frame(DATA)), expect=CLOSE(1002), spec="7.1 D3"),
        case(
            "DATA with L = 3", send(frame(DATA, b"\x00\x00\x00")), expect=CLOSE(1002), spec="7.1 D3"
        ),
        case(
            "DATA with M larger than L - 4",
            send(data(b"123", meta_length=4)),
            expect=CLOSE(1002),
            spec="7.1 D4",
        ),
        case(
            "DATA with M = 2^32-1",
            send(data(b"1", meta_length=2**32 - 1)),
            expect=CLOSE(1002),
            spec="7.1 D4",
        ),
        case(
            "DATA header one byte over the limit, no body",
            send(header(LIMIT_MESSAGE + 5, DATA)),
            expect=CLOSE(1009),
            spec="3, 7.1 D1, 8",
        ),
        case(
            "DATA header with L = 2^32-1, no body",
            send(header(2**32 - 1, DATA)),
            expect=CLOSE(1009),
            spec="3, 7.1 D1",
        ),
        case(
            "PING header with L = 4097, no body",
            send(header(4097, PING_)),
            expect=CLOSE(1009),
            spec="7.1 C5, 8 control limit",
        ),
        case(
            "PONG with L = 4097",
            send(frame(PONG_, b"\x00" * 4097)),
            expect=CLOSE(1009),
            spec="7.1 C5",
        ),
        case(
            "CLOSE with L = 4097",
            send(close(1000, b"r" * 4095)),
            expect=CLOSE(1009),
            spec="5.4, 7.1 C5",
        ),
        case(
            "PING header with L = 2^32-1, no body",
            send(header(2**32 - 1, PING_)),
            expect=CLOSE(1009),
            spec="7.1 C5",
        ),
        case("CLOSE with L = 0", send(frame(CLOSE_)), expect=CLOSE(1002), spec="5.4, 7.1 X1"),
        case("CLOSE with L = 1", send(frame(CLOSE_, b"\x03")), expect=CLOSE(1002), spec="7.1 X1"),
        case(
            "three bytes of a header, then EOF",
            send(jdata("before"), header(10, DATA)[:3]),
            HalfClose(),
            expect=ABNORMAL("before"),
            spec="6.2 (connection ended without CLOSE)",
        ),
        case(
            "half a frame body, then EOF",
            send(jdata("before"), jdata("x" * 40)[:20]),
            HalfClose(),
            expect=ABNORMAL("before"),
            spec="6.2",
        ),
        case(
            "messages and a bad frame in one segment: the messages are delivered",
            send(jdata(1) + bdata(b"2") + jdata(3, {"k": 3}) + frame(DATA, b"\x00")),
            expect=CLOSE(1002, 1, b"2", m(3, k=3)),
            spec="6.3, 11.14",
        ),
        case(
            "a bad frame followed by valid ones: nothing after the bad frame is delivered",
            send(jdata(1) + frame(DATA) + jdata(2) + ping(b"after")),
            expect=CLOSE(1002, 1),
            spec="6.3",
        ),
    ]


def _group_5() -> list[Case]:
    big = "b" * 5000
    return [
        case(
            "a DATA frame one byte per write",
            bytewise(EXAMPLE_1),
            expect=DELIVER(m({"x": 1}, kind="point")),
            spec="1.1 (any segmentation)",
        ),
        case(
            "a DATA frame cut at every offset in turn",
            _every_offset(EXAMPLE_1),
            expect=DELIVER(*[m({"x": 1}, kind="point")] * (len(EXAMPLE_1) - 1)),
            spec="1.1",
        ),
        case(
            "a PING cut at every offset in turn",
            _every_offset(EXAMPLE_PING),
            expect=PONG(*[b"\x00\x00\x00\x01"] * (len(EXAMPLE_PING) - 1)),
            spec="1.1, 5.2",
        ),
        case(
            "a CLOSE one byte per write",
            bytewise(EXAMPLE_CLOSE),
            expect=ECHO(1000, reason="bye"),
            spec="1.1, 5.4",
        ),
        case(
            "preamble and HELLO one byte per write, then a message",
            bytewise(HELLO),
            send(jdata("after")),
            expect=DELIVER("after"),
            spec="1.1, 2.1",
            handshake=False,
        ),
        case(
            "a UTF-8 character split between writes",
            send(data('"é€😀"'.encode()), cuts=(12, 15, 19), pause=GAP),
            expect=DELIVER("é€😀"),
            spec="1.1, 1.4",
        ),
        case(
            "header, then a pause, then the body: the receiver waits",
            send(jdata("late")[:6]),
            StaysOpen(3 * T),
            send(jdata("late")[6:]),
            expect=DELIVER("late"),
            spec="1.1, 3",
        ),
        case(
            "two frames and a half in one write, the rest in the next",
            send(
                jdata(1) + ping(b"p") + jdata(2) + jdata(3),
                cuts=(len(jdata(1) + ping(b"p") + jdata(2)) + 5,),
                pause=GAP,
            ),
            expect=PONG(b"p", messages=(1, 2, 3)),
            spec="1.1",
        ),
        case(
            "a 5 kB message in 7-byte writes",
            send(jdata(big), every=7),
            expect=DELIVER(big),
            spec="1.1",
        ),
        case(
            "metadata length field split from the header",
            send(jdata(5, {"k": "v"}), cuts=(6, 8), pause=GAP),
            expect=DELIVER(m(5, k="v")),
            spec="1.1, 5.1",
        ),
    ]


def _bad_json(title: str, payload: bytes, spec: str = "1.5, 7.1 D8") -> Case:
    return case(title, send(jdata("ok"), data(payload)), expect=CLOSE(1007, "ok"), spec=spec)


def _group_6() -> list[Case]:
    return [
        _bad_json("payload with an invalid byte 0xff", b'"caf\xff"', "1.4, 7.1 D8"),
        _bad_json("payload with an overlong encoding (c0 80)", b'"a\xc0\x80"', "1.4, 7.1 D8"),
        _bad_json("payload with an encoded surrogate (ed a0 80)", b'"\xed\xa0\x80"', "1.4, 7.1 D8"),
        _bad_json("payload with a code point above U+10FFFF", b'"\xf4\x90\x80\x80"', "1.4, 7.1 D8"),
        _bad_json("payload with a truncated UTF-8 sequence", b'"\xe2\x82"', "1.4, 7.1 D8"),
        _bad_json("payload with a stray continuation byte", b'"\x80"', "1.4, 7.1 D8"),
        case(
            "metadata that is not UTF-8",
            send(data(b"1", b'{"a":"\xff"}')),
            expect=CLOSE(1007),
            spec="1.4, 7.1 D6",
        ),
        _bad_json("invalid JSON: a missing value", b'{"a":}'),
        _bad_json("JSON payload that is empty (P = 0)", b""),
        _bad_json("NaN", b"NaN", "1.5 (no NaN), 7.1 D8"),
        _bad_json("Infinity", b"[Infinity]", "1.5 (no Infinity), 7.1 D8"),
        _bad_json("-Infinity", b'{"a":-Infinity}', "1.5, 7.1 D8"),
        case(
            "NaN in metadata",
            send(data(b"1", b'{"a":NaN}')),
            expect=CLOSE(1007),
            spec="1.5, 7.1 D6",
        ),
        _bad_json("trailing bytes after the JSON value", b'{"a":1}x'),
        _bad_json("two JSON values", b"1 2"),
        _bad_json("a byte-order mark before the JSON text", b"\xef\xbb\xbf1", "1.4 (no BOM)"),
        _bad_json("trailing comma", b"[1,2,]"),
        _bad_json("single quotes", b"{'a':1}"),
        _bad_json("a comment", b"[1]/*c*/"),
        _bad_json("leading zeros", b"007"),
        _bad_json("an unescaped control character in a string", b'"a\x01b"'),
        _bad_json("whitespace only", b" \n"),
        case(
            "metadata that is a JSON array",
            send(data(b"1", b"[1,2]")),
            expect=CLOSE(1007),
            spec="5.1 metadata, 7.1 D7",
        ),
        case("metadata null", send(data(b"1", b"null")), expect=CLOSE(1007), spec="7.1 D7"),
        case("metadata a string", send(data(b"1", b'"m"')), expect=CLOSE(1007), spec="7.1 D7"),
        case("metadata a number", send(data(b"1", b"7")), expect=CLOSE(1007), spec="7.1 D7"),
        case(
            "metadata with trailing bytes",
            send(data(b"1", b"{}}")),
            expect=CLOSE(1007),
            spec="7.1 D6",
        ),
        case(
            "metadata that is whitespace only (M > 0)",
            send(data(b"1", b"  ")),
            expect=CLOSE(1007),
            spec="5.1 metadata, 7.1 D6",
        ),
        case(
            "JSON nested 100 000 deep",
            send(data(b"[" * 100_000 + b"]" * 100_000)),
            expect=(CLOSE(1007), DELIVER(ANY)),
            spec="1.5 receiver limits (MAY), 7.1 D8",
        ),
        case(
            "an integer of 5000 digits",
            send(data(b"9" * 5000)),
            expect=(CLOSE(1007), DELIVER(ANY)),
            spec="1.5 receiver limits (MAY)",
        ),
        case(
            "integers beyond 64 bits are delivered exactly",
            send(data(b"[18446744073709551617,-123456789012345678901234567890]")),
            expect=(DELIVER([2**64 + 1, -123456789012345678901234567890]), CLOSE(1007)),
            lenient=DELIVER([float(2**64 + 1), -1.2345678901234568e29]),
            justification=(
                "RFC 8259 section 6 lets a receiver approximate numbers as IEEE doubles; a "
                "receiver that does delivers a different value than was sent, which the "
                "specification (1.5) warns senders about but does not forbid."
            ),
            spec="1.5 receiver limits",
        ),
        case(
            "a number beyond the double range (1e400)",
            send(data(b"1e400")),
            expect=(CLOSE(1007), DELIVER(float("inf"))),
            spec="1.5 receiver limits (MAY deliver an infinity)",
        ),
        case(
            "a \\u escape of a lone surrogate",
            send(data(b'"\\ud800"')),
            expect=(DELIVER("\ud800"), CLOSE(1007)),
            spec="1.5 strings (MAY reject)",
        ),
        case(
            "an escaped surrogate pair and a raw 4-byte character",
            send(data('["\\ud83d\\ude00","😀"]'.encode())),
            expect=DELIVER(["😀", "😀"]),
            spec="1.4, 1.5",
        ),
        case(
            "the noncharacter U+FFFF is well-formed UTF-8",
            send(data(b'"\xef\xbf\xbf"', b'{"k":"\xef\xbf\xbe"}')),
            expect=DELIVER(m("\uffff", k="\ufffe")),
            spec="1.4",
        ),
        case(
            "numbers at the edges: -0, exponents, an underflow",
            send(data(b"[-0,1E2,1e-400,-0.0]")),
            expect=DELIVER([0, 100.0, 0.0, -0.0]),
            spec="1.5",
        ),
        case(
            "metadata with a BOM",
            send(data(b"1", b"\xef\xbb\xbf{}")),
            expect=CLOSE(1007),
            spec="1.4 (no BOM), 7.1 D6",
        ),
    ]


_SENDABLE_CODES = (
    1000,
    1001,
    1002,
    1003,
    1007,
    1008,
    1009,
    1011,
    1013,
    4000,
    4001,
    4100,
    4567,
    4999,
)
_RESERVED_CODES = (
    0,
    999,
    1004,
    1005,
    1006,
    1010,
    1012,
    1014,
    1015,
    2999,
    3000,
    4003,
    4099,
    5000,
    65535,
)


def _group_7() -> list[Case]:
    cases: list[Case] = []
    for code in _SENDABLE_CODES:
        cases.append(
            case(
                f"peer closes with {CloseCode.describe(code)} ({code})",
                send(close(code)),
                expect=ECHO(code),
                spec="5.4, 6.1, 6.2",
            )
        )
    cases.append(
        case(
            "host closes with TLS_REQUIRED (4002) after the handshake",
            send(close(4002)),
            expect=ECHO(4002),
            spec="5.4, 6.2 (4002 is sent by hosts only, so only a Client receives it)",
            roles=("client",),
        )
    )
    for code in _RESERVED_CODES:
        cases.append(
            case(
                f"peer closes with reserved code {code}",
                send(close(code, b"reserved")),
                # Reported to the application as received; answered with PROTOCOL_ERROR,
                # since 6.1 forbids sending a reserved code.
                expect=ECHO(code, reason="reserved", reply=1002),
                spec="5.4 (accept any code), 6.1, 6.2 step 3",
            )
        )
    long_reason = "é" * 2047  # 4094 bytes: the largest that fits in the control limit
    more = [
        (
            "close with reason 'bye' (spec example)",
            send(EXAMPLE_CLOSE),
            ECHO(1000, reason="bye"),
            "5.4",
        ),
        (
            "close with a non-ASCII reason",
            send(close(4100, "au revoir ✓ 😀".encode())),
            ECHO(4100, reason="au revoir ✓ 😀"),
            "5.4",
        ),
        (
            "close with a 1025-byte reason (receivers do not enforce 1024)",
            send(close(1000, b"r" * 1025)),
            ECHO(1000, reason="r" * 1025),
            "5.4",
        ),
        (
            "close with a 4094-byte reason, the most that fits",
            send(close(1001, long_reason.encode())),
            ECHO(1001, reason=long_reason),
            "5.4, 8",
        ),
        (
            "close with a reason starting with a BOM",
            send(close(1000, b"\xef\xbb\xbfbom")),
            ECHO(1000, reason="\ufeffbom"),
            "1.4 (a BOM in a reason is U+FEFF)",
        ),
        (
            "close with a reason that is not UTF-8",
            send(close(1000, b"bad \xff")),
            CLOSE(1007),
            "5.4, 7.1 X2",
        ),
        (
            "close with a reason holding an encoded surrogate",
            send(close(1000, b"\xed\xb0\x80")),
            CLOSE(1007),
            "1.4, 7.1 X2",
        ),
        (
            "close with a reason cut inside a character",
            send(close(1000, "ab€".encode()[:-1])),
            CLOSE(1007),
            "1.4, 7.1 X2",
        ),
        (
            "messages, then CLOSE, in one segment",
            send(jdata("one") + bdata(b"two") + close(1000)),
            ECHO(1000, "one", b"two"),
            "6.2 (deliver, then answer)",
        ),
        (
            "a message after CLOSE in the same segment is ignored",
            send(close(1000) + jdata("after")),
            ECHO(1000),
            "5.4 (nothing follows CLOSE)",
        ),
        (
            "garbage after CLOSE in the same segment is ignored",
            send(close(4100) + b"\xff" * 20),
            ECHO(4100),
            "5.4, 7.1 (bytes after CLOSE are never checked)",
        ),
        (
            "a PING after CLOSE is not answered",
            send(close(1000) + ping(b"late")),
            ECHO(1000),
            "5.2 (unless it has sent CLOSE), 5.4",
        ),
        (
            "a PING before CLOSE is answered first",
            send(ping(b"early") + close(1000)),
            ECHO(1000, pongs=(b"early",)),
            "6.2 (queued frames go first)",
        ),
        ("EOF without CLOSE", (HalfClose(),), ABNORMAL(), "6.2, 11.12"),
        (
            "messages, then EOF without CLOSE",
            (send(jdata(1) + jdata(2)), HalfClose()),
            ABNORMAL(1, 2),
            "6.2, 6.3",
        ),
        ("messages, then a TCP reset", (send(jdata(1)), Pause(T / 2), Reset()), ABNORMAL(1), "6.2"),
        (
            "the closer keeps delivering until the peer's CLOSE",
            (
                send(jdata("bye", {"conformance": "disconnect", "code": 4100})),
                AwaitClose(),
                send(jdata("late") + close(4100)),
            ),
            CLOSE(4100, m("bye", conformance="disconnect", code=4100), "late"),
            "6.2 closer step 3",
        ),
        (
            "the closer does not answer a PING",
            (
                send(jdata("bye", {"conformance": "disconnect", "code": 1000})),
                AwaitClose(),
                send(ping(b"unanswered") + close(1000)),
            ),
            CLOSE(1000, m("bye", conformance="disconnect", code=1000)),
            "5.2, 6.2",
        ),
        (
            "simultaneous close: no second CLOSE",
            send(jdata("bye", {"conformance": "disconnect", "code": 4100}) + close(1000)),
            CLOSE(4100, m("bye", conformance="disconnect", code=4100)),
            "6.2 simultaneous close",
        ),
        (
            "a bad frame after the implementation's CLOSE: no second CLOSE",
            (
                send(jdata("bye", {"conformance": "disconnect", "code": 4100})),
                AwaitClose(),
                send(frame(DATA)),
            ),
            CLOSE(4100, m("bye", conformance="disconnect", code=4100)),
            "5.4 (a side that has sent CLOSE sends nothing more), 6.3 step 1",
        ),
        (
            "the application closes with a 1500-byte reason: shortened on a character boundary",
            send(
                jdata(
                    "bye", {"conformance": "disconnect", "code": 4100, "reason": "é", "repeat": 750}
                )
            ),
            CLOSE(
                4100,
                m("bye", conformance="disconnect", code=4100, reason="é", repeat=750),
                wire_reason="é" * 512,
            ),
            "5.4 (at most 1024 bytes, cut on a character boundary)",
        ),
        (
            "CLOSE in the same segment as HELLO",
            send(Hello(), close(1001, b"gone")),
            ECHO(1001, reason="gone"),
            "2.3, 6.2",
        ),
        (
            "HELLO, messages and CLOSE in one segment",
            send(Hello(), jdata(1), bdata(b"2"), close(4100)),
            ECHO(4100, 1, b"2"),
            "2.3, 6.2",
        ),
        (
            "CLOSE instead of HELLO, then garbage, in one segment",
            send(PREAMBLE + close(1000) + b"\xff" * 10),
            ECHO(1000, opened=False),
            "2.3, 5.4",
        ),
        (
            "CLOSE instead of HELLO, with a reason that is not UTF-8",
            send(PREAMBLE + close(1000, b"\xc0\x80")),
            REFUSE(1007),
            "2.3, 7.1 X2",
        ),
    ]
    for title, steps, outcome, spec in more:
        steps_tuple = steps if isinstance(steps, tuple) else (steps,)
        first = steps_tuple[0] if steps_tuple else None
        own_hello = isinstance(first, Send) and (
            isinstance(first.parts[0], Hello)
            or (isinstance(first.parts[0], bytes) and first.parts[0].startswith(PREAMBLE))
        )
        cases.append(case(title, *steps_tuple, expect=outcome, spec=spec, handshake=not own_hello))
    cases.append(
        case(
            "the peer never answers the implementation's CLOSE: closed after the close timeout",
            send(jdata("bye", {"conformance": "disconnect", "code": 4100})),
            expect=CLOSE(4100, m("bye", conformance="disconnect", code=4100)),
            spec="6.2 closer steps 3-4",
            settings=(("close_timeout", 3 * T),),
            answer_close=False,
        )
    )
    return cases


def _refused(title: str, hello: Hello | bytes, code: int, spec: str, **options: Any) -> Case:
    return case(title, send(hello), expect=REFUSE(code), spec=spec, handshake=False, **options)


def _accepted(title: str, hello: Hello, spec: str) -> Case:
    return case(
        title,
        send(hello),
        send(jdata("accepted")),
        expect=DELIVER("accepted"),
        spec=spec,
        handshake=False,
    )


def _group_8() -> list[Case]:
    def fields(**values: Any) -> Hello:
        return Hello(tuple(values.items()))

    size_errors = [
        ("max_message_size 0", fields(max_message_size=0)),
        ("max_message_size 2^32-4 (one over the maximum)", fields(max_message_size=2**32 - 4)),
        ("max_message_size 1048576.0 (not an integer)", fields(max_message_size=1048576.0)),
        ("max_message_size as a string", fields(max_message_size="1048576")),
        ("max_message_size true", fields(max_message_size=True)),
        ("max_message_size -1", fields(max_message_size=-1)),
        ("max_message_size missing", fields(max_message_size=OMIT)),
        ("max_metadata_size 0", fields(max_metadata_size=0)),
        ("max_metadata_size null", fields(max_metadata_size=None)),
        ("max_metadata_size missing", fields(max_metadata_size=OMIT)),
        (
            "max_message_size written 1.048576e6",
            Hello(body=b'{"role":"$OWN","max_message_size":1.048576e6,"max_metadata_size":65536}'),
        ),
        ("features not an array", fields(features="request")),
        ("features with a number", fields(features=["request", 1])),
        ("features null", fields(features=None)),
        ("max_message_size 2^64", fields(max_message_size=2**64)),
        (
            "max_message_size 1e400",
            Hello(body=b'{"role":"$OWN","max_message_size":1e400,"max_metadata_size":65536}'),
        ),
    ]
    cases = [
        _refused(
            "bad magic",
            Hello(preamble=b"ALVARX\x01\x00"),
            1002,
            "2.1 step 1, 7.1 P1",
        ),
        _refused(
            "an HTTP request instead of the preamble",
            b"GET / HTTP/1.1\r\nHost: alvaro\r\n\r\n",
            1002,
            "2.1, 7.1 P1",
        ),
        _refused(
            "a TLS ClientHello instead of the preamble",
            bytes.fromhex("160301002a0100002603030000"),
            1002,
            "2.1, 2.4, 7.1 P1",
        ),
        case(
            "one wrong byte, then silence",
            send(b"B"),
            expect=(REFUSE(1002), REFUSE(4000, within=OPEN_TIMEOUT / 4 + WITHIN)),
            spec="2.1 step 1 (MAY reject at the first wrong byte)",
            handshake=False,
            settings=(("open_timeout", OPEN_TIMEOUT / 4),),
        ),
        _refused(
            "protocol version 0", Hello(preamble=b"ALVARO\x00\x00"), 1003, "2.1 step 2, 7.1 P2"
        ),
        _accepted("protocol version 2: speaks version 1", Hello(preamble=b"ALVARO\x02\x00"), "2.1"),
        _accepted("protocol version 255", Hello(preamble=b"ALVARO\xff\x00"), "2.1"),
        _accepted(
            "reserved preamble byte 0xff is ignored",
            Hello(preamble=b"ALVARO\x01\xff"),
            "2.1 step 3",
        ),
        _refused(
            "HELLO with the wrong role", fields(role=TESTED_ROLE), 1002, "2.2 check 3, 7.1 H4"
        ),
        _refused("HELLO without role", fields(role=OMIT), 1002, "2.2 check 3"),
        _refused("HELLO with role null", fields(role=None), 1002, "2.2 check 3"),
        _refused("HELLO with role 1", fields(role=1), 1002, "2.2 check 3"),
        _refused("HELLO with role 'server'", fields(role="server"), 1002, "2.2 check 3"),
        _refused(
            "wrong role and bad limits: the role decides first",
            fields(role=TESTED_ROLE, max_message_size=0),
            1002,
            "2.2 checks in order",
        ),
        _refused(
            "bad limits and bad features: max_message_size decides (1007 either way)",
            fields(max_message_size="x", features=7),
            1007,
            "2.2 checks in order",
        ),
        case(
            "a second HELLO",
            send(Hello()),
            expect=CLOSE(1002),
            spec="2.3, 7.1 H1",
        ),
        case(
            "a second HELLO over 4096 bytes: the size decides (from the header)",
            send(header(5000, HELLO_)),
            expect=CLOSE(1009),
            spec="7.1 C5 before H1",
        ),
        _refused("DATA before HELLO", PREAMBLE + jdata("early"), 1002, "2.3, 7.1 C1"),
        _refused("PING before HELLO", PREAMBLE + ping(b"early"), 1002, "2.3, 7.1 C1"),
        _refused("PONG before HELLO", PREAMBLE + pong(b"early"), 1002, "2.3, 7.1 C1"),
        _refused(
            "an oversized DATA header before HELLO: C1 decides",
            PREAMBLE + header(2**32 - 1, DATA),
            1002,
            "7.1 C1 first",
        ),
        _refused(
            "a reserved type before HELLO",
            PREAMBLE + frame(0x21, b"{}"),
            1002,
            "2.3, 7.1 C1",
        ),
        case(
            "CLOSE instead of HELLO",
            send(PREAMBLE + close(1013, b"busy")),
            expect=ECHO(1013, reason="busy", opened=False),
            spec="2.3 (CLOSE before HELLO), 6.2",
            handshake=False,
        ),
        _accepted(
            "HELLO with unknown features",
            fields(features=["request", "zzz-unknown", "request"]),
            "2.2 check 6, 9.1",
        ),
        _accepted(
            "HELLO with unknown members",
            fields(compression="zstd", extra={"a": [1, None]}, x=None),
            "2.2, 10",
        ),
        _accepted("HELLO without features", fields(features=OMIT), "2.2"),
        _accepted(
            "HELLO with reserved members of features not negotiated, invalid values",
            fields(max_transfer_size="huge", auth_required="maybe"),
            "2.2 (ignored unless negotiated)",
        ),
        _accepted(
            "HELLO with the largest limits (4294967291)",
            fields(max_message_size=4294967291, max_metadata_size=4294967291),
            "2.2",
        ),
        _accepted(
            "HELLO with members in another order, whitespace and escapes",
            Hello(
                body=b' { "features" : [ ] , "max_metadata_size" : 65536 ,\n'
                b' "max_message_size" : 1048576 , "role" : "$OWN" } '
            ),
            "2.2 (receivers MUST NOT depend on member order), 1.5",
        ),
        _accepted(
            "HELLO with a duplicate role: the last one wins",
            Hello(
                body=b'{"role":"$TESTED","role":"$OWN","max_message_size":1048576,'
                b'"max_metadata_size":65536}'
            ),
            "1.5 duplicate member names",
        ),
        _accepted(
            "HELLO body of exactly 4096 bytes",
            Hello(pad_to=4096),
            "2.2, 8",
        ),
        _refused("HELLO body over 4096 bytes", fields(pad="p" * 4096), 1009, "2.2, 7.1 C5"),
        _refused("HELLO with flags 0x01", Hello(flags=0x01), 1002, "7.1 C4"),
        _refused("HELLO body that is not JSON", Hello(body=b"role=client"), 1007, "2.2 check 1"),
        _refused(
            "HELLO body that is not UTF-8", Hello(body=b'{"role":"\xff"}'), 1007, "2.2 check 1"
        ),
        _refused("HELLO body that is a JSON array", Hello(body=b'["$OWN"]'), 1007, "2.2 check 2"),
        _refused("HELLO with an empty body", Hello(body=b""), 1007, "2.2 check 1"),
        case(
            "HELLO and a message in one segment",
            send(Hello(), jdata("together")),
            expect=DELIVER("together"),
            spec="2.3",
            handshake=False,
        ),
        case(
            "only the preamble, then silence: open timeout",
            send(PREAMBLE),
            expect=REFUSE(4000, within=OPEN_TIMEOUT / 4 + WITHIN),
            spec="2.3 open timeout",
            handshake=False,
            settings=(("open_timeout", OPEN_TIMEOUT / 4),),
        ),
        case(
            "the preamble, then EOF",
            send(PREAMBLE),
            HalfClose(),
            expect=ABNORMAL(opened=False),
            spec="6.2 (ended without CLOSE)",
            handshake=False,
        ),
        case(
            "half a preamble, then EOF",
            send(PREAMBLE[:3]),
            HalfClose(),
            expect=ABNORMAL(opened=False),
            spec="6.2",
            handshake=False,
        ),
    ]
    cases += [
        case(
            "the implementation sends preamble and HELLO without waiting for the peer's",
            AwaitHello(),
            send(HELLO, jdata("after")),
            expect=DELIVER("after"),
            spec="2.1 (neither side waits), 11.1",
            handshake=False,
        ),
        _refused(
            "bad magic and version 0: the magic decides",
            b"ALVARX\x00\x00",
            1002,
            "7.1 P1 before P2",
        ),
        _refused(
            "HELLO body starting with a BOM",
            Hello(body=b'\xef\xbb\xbf{"role":"$OWN","max_message_size":1,"max_metadata_size":1}'),
            1007,
            "1.4 (no BOM), 2.2 check 1",
        ),
        _refused(
            "CLOSE with reserved flags before HELLO",
            PREAMBLE + frame(CLOSE_, b"\x03\xe8", 0x02),
            1002,
            "7.1 C4",
        ),
        _refused(
            "HELLO header with L = 2^32-1, no body",
            PREAMBLE + header(2**32 - 1, HELLO_),
            1009,
            "3, 7.1 C5",
        ),
        case(
            "HELLO and a bad frame in one segment",
            send(Hello(), jdata("first"), frame(0x7F)),
            expect=CLOSE(1002, "first"),
            spec="6.3, 7.1 C3",
            handshake=False,
        ),
        case(
            "HELLO and a second HELLO in one segment",
            send(Hello(), Hello()),
            expect=CLOSE(1002),
            spec="2.3, 7.1 H1",
            handshake=False,
        ),
        case(
            "HELLO and the start of a frame in one segment, the rest later",
            send(Hello(), jdata("split")[:8], cuts=(), pause=0.0),
            StaysOpen(T),
            send(jdata("split")[8:]),
            expect=DELIVER("split"),
            spec="1.1, 2.3",
            handshake=False,
        ),
        case(
            "TLS-only host's answer: preamble and CLOSE TLS_REQUIRED (4002), no HELLO",
            send(PREAMBLE + close(4002, b"this host accepts only TLS connections")),
            expect=ECHO(4002, reason="this host accepts only TLS connections", opened=False),
            spec="2.4 (the client reports 4002), 6.2",
            handshake=False,
            roles=("client",),
        ),
    ]
    for title, hello in size_errors:
        cases.append(_refused(f"HELLO with {title}", hello, 1007, "2.2 checks 4-6, 7.1 H5-H7"))
    return cases


def _group_9() -> list[Case]:
    meta = {"k": "v"}
    meta_bytes = compact(meta)
    exact_text = "s" * (LIMIT_MESSAGE - len(meta_bytes) - 2)
    at_meta = {"k": "m" * (LIMIT_METADATA - 8)}
    over_meta = {"k": "m" * (LIMIT_METADATA - 7)}
    assert len(compact(at_meta)) == LIMIT_METADATA
    small = Hello((("max_message_size", 16), ("max_metadata_size", 8)))
    many = list(range(2000))
    return [
        case(
            "a raw message of exactly max_message_size",
            send(bdata(b"x" * LIMIT_MESSAGE)),
            expect=DELIVER(b"x" * LIMIT_MESSAGE),
            spec="5.1 message size, 8",
        ),
        case(
            "a JSON message with metadata of exactly max_message_size",
            send(jdata(exact_text, meta)),
            expect=DELIVER(m(exact_text, **meta)),
            spec="8 (max_message_size includes the metadata)",
        ),
        case(
            "one byte over max_message_size, body sent",
            send(jdata("before"), bdata(b"x" * (LIMIT_MESSAGE + 1))),
            expect=CLOSE(1009, "before"),
            spec="7.1 D1, 8",
        ),
        case(
            "one byte over max_message_size, header only",
            send(jdata("before"), header(LIMIT_MESSAGE + 5, DATA, 1)),
            expect=CLOSE(1009, "before"),
            spec="3, 7.1 D1 (from the header)",
        ),
        case(
            "metadata of exactly max_metadata_size",
            send(jdata(1, at_meta)),
            expect=DELIVER(m(1, **at_meta)),
            spec="8",
        ),
        case(
            "metadata one byte over max_metadata_size",
            send(jdata("before"), jdata(1, over_meta)),
            expect=CLOSE(1009, "before"),
            spec="7.1 D5, 8",
        ),
        case(
            "M over max_metadata_size and over L - 4: D4 decides",
            send(data(b"{}", meta_length=LIMIT_METADATA + 1)),
            expect=CLOSE(1002),
            spec="7.1 D4 before D5",
        ),
        case(
            "metadata over the limit and not JSON: D5 decides",
            send(data(b"1", b"!" * (LIMIT_METADATA + 1))),
            expect=CLOSE(1009),
            spec="7.1 D5 before D6",
        ),
        case(
            "the peer announces tiny limits: larger messages to it are refused locally",
            send(small),
            send(
                jdata("this is longer than sixteen bytes")
                + jdata(1, {"a": "long metadata"})
                + jdata(2)
            ),
            expect=DELIVER("this is longer than sixteen bytes", m(1, a="long metadata"), 2),
            spec="7.3, 8, 11.9 (local error, the connection stays open)",
            handshake=False,
        ),
        case(
            "2000 small messages in one segment",
            send(b"".join(jdata(n) for n in many)),
            expect=DELIVER(*many),
            spec="1.1",
        ),
        case(
            "120 kB of small messages in 997-byte writes",
            send(b"".join(jdata({"n": n, "pad": "p" * 20}) for n in range(3000)), every=997),
            expect=DELIVER(*[{"n": n, "pad": "p" * 20} for n in range(3000)]),
            spec="1.1",
        ),
        case(
            "the peer announces max_metadata_size larger than max_message_size",
            send(Hello((("max_message_size", 64), ("max_metadata_size", 4294967291)))),
            send(jdata("short", {"k": "v"}) + jdata("x" * 100)),
            expect=DELIVER(m("short", k="v"), "x" * 100),
            spec="8 (allowed; in effect max_message_size limits the metadata)",
            handshake=False,
        ),
        case(
            "a CLOSE reason of 4095 bytes (L = 4097) before HELLO",
            send(PREAMBLE + close(1000, b"r" * 4095)),
            expect=REFUSE(1009),
            spec="8 (the control limit applies from the first frame)",
            handshake=False,
        ),
    ]


#: The raw client's side of a login as USER: AUTH_START, the host's AUTH_CHALLENGE, AUTH_RESPONSE,
#: the host's AUTH_OK.
CLIENT_LOGIN: tuple[Step, ...] = (
    send(Scram("start")),
    AwaitFrame(AUTH_CHALLENGE_),
    send(Scram("response")),
    AwaitFrame(AUTH_OK_),
)
#: The raw host's side of a login: the client's AUTH_START, AUTH_CHALLENGE, the client's
#: AUTH_RESPONSE, AUTH_OK.
HOST_LOGIN: tuple[Step, ...] = (
    AwaitFrame(AUTH_START_),
    send(Scram("challenge")),
    AwaitFrame(AUTH_RESPONSE_),
    send(Scram("ok")),
)


def _as_host(
    title: str,
    *steps: Step,
    expect: Outcome | tuple[Outcome, ...],
    spec: str = "9.8",
    **options: Any,
) -> Case:
    """A login case against a Host that requires login (the raw peer is the client)."""
    options.setdefault("login", True)
    return case(title, *steps, expect=expect, spec=spec, roles=("host",), **options)


def _as_client(
    title: str,
    *steps: Step,
    expect: Outcome | tuple[Outcome, ...],
    spec: str = "9.8",
    **options: Any,
) -> Case:
    """A login case against a Client that logs in (the raw peer is the host)."""
    options.setdefault("login", True)
    return case(title, *steps, expect=expect, spec=spec, roles=("client",), **options)


def _group_10() -> list[Case]:
    start_without_nonce = compact({"mechanism": MECHANISM, "message": f"n,,n={USER},r="})
    long_nonce = "n" * (4096 - len(start_without_nonce))
    assert len(compact({"mechanism": MECHANISM, "message": f"n,,n={USER},r={long_nonce}"})) == 4096
    # Well-formed AUTH frames whose SCRAM content belongs to no exchange of the run.
    bogus_start = auth(
        AUTH_START_, mechanism=MECHANISM, message=f"n,,n={USER},r=fyko+d2lbbFgONRv9qkxdawL"
    )
    bogus_challenge = auth(AUTH_CHALLENGE_, message="r=abc,s=c2FsdHNhbHRzYWx0,i=4096")
    bogus_ok = auth(AUTH_OK_, message="v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", user=USER)
    timeout = LOGIN_TIMEOUT / 4
    short_login = (("login_timeout", timeout),)
    refused_login = AuthenticationError
    return [
        # --- A Host that requires login; the raw peer logs in as the client -------------------
        _as_host(
            "login, then messages both ways",
            *CLIENT_LOGIN,
            send(jdata("after login", {"k": 1}), bdata(b"raw")),
            expect=DELIVER(m("after login", k=1), b"raw"),
        ),
        _as_host(
            "AUTH_START and AUTH_RESPONSE one byte per write",
            bytewise(Scram("start")),
            AwaitFrame(AUTH_CHALLENGE_),
            bytewise(Scram("response")),
            AwaitFrame(AUTH_OK_),
            send(jdata("after")),
            expect=DELIVER("after"),
            spec="1.1, 9.8",
        ),
        _as_host(
            "PINGs before, between and after the AUTH frames are answered, a PONG ignored",
            send(ping(b"before"), Scram("start"), pong(b"unsolicited"), ping(b"between")),
            AwaitFrame(AUTH_CHALLENGE_),
            send(Scram("response")),
            AwaitFrame(AUTH_OK_),
            send(ping(b"after"), jdata("x")),
            expect=PONG(b"before", b"between", b"after", messages=("x",)),
            spec="5.2, 5.3, 9.8 (a PING during login is answered)",
        ),
        _as_host(
            "wrong password: AUTH_FAIL, then CLOSE POLICY_VIOLATION",
            send(Scram("start", password="wrong horse")),
            AwaitFrame(AUTH_CHALLENGE_),
            send(Scram("response")),
            expect=REFUSE(1008, auth_fail=WRONG_CREDENTIALS),
        ),
        _as_host(
            "unknown user: the same AUTH_FAIL reason as a wrong password",
            send(Scram("start", user="nobody")),
            AwaitFrame(AUTH_CHALLENGE_),
            send(Scram("response")),
            expect=REFUSE(1008, auth_fail=WRONG_CREDENTIALS),
        ),
        _as_host(
            "AUTH_RESPONSE that is not a SCRAM message: AUTH_FAIL, then CLOSE",
            send(Scram("start")),
            AwaitFrame(AUTH_CHALLENGE_),
            send(auth(AUTH_RESPONSE_, message="not SCRAM")),
            expect=REFUSE(1008, auth_fail=WRONG_CREDENTIALS),
        ),
        _as_host(
            "AUTH_START with mechanism SCRAM-SHA-1: AUTH_FAIL, then CLOSE",
            send(Scram("start", mechanism="SCRAM-SHA-1")),
            expect=REFUSE(1008, auth_fail=ANY),
            spec="9.8 (the mechanism is SCRAM-SHA-256)",
        ),
        _as_host(
            "client HELLO without feature auth",
            send(Hello()),
            expect=REFUSE(1008),
            spec="9.1, 9.8 (the client must offer auth)",
            handshake=False,
        ),
        _as_host(
            "DATA header with L = 2^32-1 before AUTH_START: refused from the header",
            send(header(2**32 - 1, DATA)),
            expect=REFUSE(1008),
            spec="3, 9.8 (no DATA before AUTH_OK)",
        ),
        _as_host(
            "DATA between AUTH_START and AUTH_RESPONSE",
            send(Scram("start")),
            AwaitFrame(AUTH_CHALLENGE_),
            send(jdata("early")),
            expect=REFUSE(1008),
        ),
        _as_host(
            "DATA in the write of AUTH_RESPONSE, before AUTH_OK",
            send(Scram("start")),
            AwaitFrame(AUTH_CHALLENGE_),
            send(Scram("response"), jdata("early")),
            # The host may take the login before it finds the DATA: it never delivers it.
            expect=(REFUSE(1008), CLOSE(1008)),
        ),
        _as_host(
            "AUTH_RESPONSE before AUTH_START",
            send(auth(AUTH_RESPONSE_, message="c=biws,r=abc,p=AAAA")),
            expect=REFUSE(1002),
            spec="9.8 (wrong order)",
        ),
        _as_host(
            "LOGOUT before the login",
            send(auth(LOGOUT_)),
            expect=REFUSE(1002),
            spec="9.8 (wrong order)",
        ),
        _as_host(
            "a second AUTH_START before AUTH_RESPONSE",
            send(Scram("start")),
            AwaitFrame(AUTH_CHALLENGE_),
            send(bogus_start),
            expect=REFUSE(1002),
            spec="9.8 (wrong order)",
        ),
        _as_host(
            "AUTH_START after the login",
            *CLIENT_LOGIN,
            send(jdata(1), bogus_start),
            expect=CLOSE(1002, 1),
            spec="9.8 (wrong order)",
        ),
        _as_host(
            "AUTH_OK from the client (a host's frame)",
            send(bogus_ok),
            expect=REFUSE(1002),
            spec="9.8 (wrong direction)",
        ),
        _as_host(
            "AUTH_START that is not JSON",
            send(frame(AUTH_START_, b"mechanism=SCRAM-SHA-256")),
            expect=REFUSE(1007),
            spec="9.2 JSON bodies, 9.8",
        ),
        _as_host(
            "AUTH_START whose message is a number",
            send(auth(AUTH_START_, mechanism=MECHANISM, message=7)),
            expect=REFUSE(1007),
            spec="9.8 (string fields)",
        ),
        _as_host(
            "AUTH_START header with L = 4097",
            send(header(4097, AUTH_START_)),
            expect=REFUSE(1009),
            spec="9.2 size limits, 9.8",
        ),
        _as_host(
            "AUTH_START with flags 0x01",
            send(frame(AUTH_START_, start_without_nonce, 0x01)),
            expect=REFUSE(1002),
            spec="9.2 flags, 9.8",
        ),
        _as_host(
            "AUTH_START of exactly 4096 bytes (a long client nonce)",
            send(Scram("start", nonce=long_nonce)),
            # Within the limit, but the AUTH_CHALLENGE repeats the nonce and cannot fit in
            # 4096 bytes: the host refuses the login instead of sending an oversized frame.
            expect=REFUSE(1008, auth_fail=ANY),
            spec="8, 9.8 (at most 4096 bytes)",
        ),
        _as_host(
            "login timeout: HELLO, then nothing",
            StaysOpen(timeout * 0.6),
            AwaitClose(),
            expect=REFUSE(4000),
            spec="7.2, 9.8 (login_timeout)",
            settings=short_login,
        ),
        _as_host(
            "login timeout after AUTH_START; a PING meanwhile is answered",
            send(Scram("start")),
            AwaitFrame(AUTH_CHALLENGE_),
            send(ping(b"waiting")),
            StaysOpen(timeout * 0.4),
            AwaitClose(),
            expect=REFUSE(4000, pongs=(b"waiting",)),
            spec="7.2, 9.8 (login_timeout; a PING during login is answered)",
            settings=short_login,
        ),
        _as_host(
            "LOGOUT after the login: the host closes with NORMAL, reason 'logged out'",
            *CLIENT_LOGIN,
            send(jdata("bye"), auth(LOGOUT_)),
            expect=CLOSE(1000, "bye", wire_reason="logged out", by_peer=True),
            spec="9.8 (LOGOUT)",
        ),
        _as_host(
            "LOGOUT with an empty body, one byte per write; a message after it is not delivered",
            *CLIENT_LOGIN,
            bytewise(frame(LOGOUT_)),
            send(jdata("late")),
            expect=CLOSE(1000, wire_reason="logged out", by_peer=True),
            spec="1.1, 9.8 (LOGOUT, L = 0 allowed)",
        ),
        _as_host(
            "LOGOUT whose body is a JSON array",
            *CLIENT_LOGIN,
            send(frame(LOGOUT_, b"[]")),
            expect=CLOSE(1007),
            spec="9.2 JSON bodies, 9.8",
        ),
        _as_host(
            "CLOSE during the login is echoed",
            send(Scram("start")),
            AwaitFrame(AUTH_CHALLENGE_),
            send(close(1001, b"gone")),
            expect=ECHO(1001, reason="gone", opened=False),
            spec="6.2, 9.8",
        ),
        # --- A Client that logs in; the raw peer is the host ---------------------------------
        _as_client(
            "login, then messages both ways",
            *HOST_LOGIN,
            send(jdata("after login", {"k": 1}), bdata(b"raw")),
            expect=DELIVER(m("after login", k=1), b"raw"),
        ),
        _as_client(
            "AUTH_CHALLENGE and AUTH_OK one byte per write",
            AwaitFrame(AUTH_START_),
            bytewise(Scram("challenge")),
            AwaitFrame(AUTH_RESPONSE_),
            bytewise(Scram("ok")),
            send(jdata("after")),
            expect=DELIVER("after"),
            spec="1.1, 9.8",
        ),
        _as_client(
            "PINGs before, between and after the AUTH frames are answered, a PONG ignored",
            send(ping(b"before")),
            AwaitFrame(AUTH_START_),
            send(Scram("challenge"), pong(b"unsolicited"), ping(b"between")),
            AwaitFrame(AUTH_RESPONSE_),
            send(Scram("ok"), ping(b"after"), jdata("x")),
            expect=PONG(b"before", b"between", b"after", messages=("x",)),
            spec="5.2, 5.3, 9.8 (a PING during login is answered)",
        ),
        _as_client(
            "AUTH_FAIL after AUTH_RESPONSE, then CLOSE POLICY_VIOLATION",
            AwaitFrame(AUTH_START_),
            send(Scram("challenge", password="another password")),
            AwaitFrame(AUTH_RESPONSE_),
            send(auth(AUTH_FAIL_, reason=WRONG_CREDENTIALS), close(1008, b"login failed")),
            expect=ECHO(1008, opened=False, error=refused_login),
        ),
        _as_client(
            "CLOSE POLICY_VIOLATION during the login, without AUTH_FAIL",
            AwaitFrame(AUTH_START_),
            send(close(1008, b"no")),
            expect=ECHO(1008, opened=False, error=refused_login),
            spec="6.2, 9.8",
        ),
        _as_client(
            "a challenge asking for 4095 iterations is refused",
            AwaitFrame(AUTH_START_),
            send(Scram("challenge", iterations=4095)),
            expect=REFUSE(1008, error=refused_login),
            spec="9.8 (iterations 4096 to 10,000,000)",
        ),
        _as_client(
            "a challenge asking for 10,000,001 iterations is refused",
            AwaitFrame(AUTH_START_),
            send(Scram("challenge", iterations=10_000_001)),
            expect=REFUSE(1008, error=refused_login),
            spec="9.8 (iterations 4096 to 10,000,000)",
        ),
        _as_client(
            "AUTH_OK with a wrong server signature",
            *HOST_LOGIN[:-1],
            send(Scram("ok", forged=True)),
            expect=REFUSE(1008, error=refused_login),
            spec="9.8 (the client verifies the server signature)",
        ),
        _as_client(
            "AUTH_OK without a challenge",
            AwaitFrame(AUTH_START_),
            send(bogus_ok),
            expect=REFUSE(1002),
            spec="9.8 (wrong order)",
        ),
        _as_client(
            "a second AUTH_CHALLENGE",
            AwaitFrame(AUTH_START_),
            send(Scram("challenge"), bogus_challenge),
            expect=REFUSE(1002),
            spec="9.8 (wrong order)",
        ),
        _as_client(
            "AUTH_OK again after the login",
            *HOST_LOGIN,
            send(jdata(1), bogus_ok),
            expect=CLOSE(1002, 1),
            spec="9.8 (wrong order)",
        ),
        _as_client(
            "AUTH_START from the host (a client's frame)",
            send(bogus_start),
            expect=REFUSE(1002),
            spec="9.8 (wrong direction)",
        ),
        _as_client(
            "AUTH_CHALLENGE that is not JSON",
            AwaitFrame(AUTH_START_),
            send(frame(AUTH_CHALLENGE_, b"r=abc,s=c2FsdA==,i=4096")),
            expect=REFUSE(1007),
            spec="9.2 JSON bodies, 9.8",
        ),
        _as_client(
            "AUTH_OK without a user",
            *HOST_LOGIN[:-1],
            send(auth(AUTH_OK_, message="v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")),
            expect=REFUSE(1007),
            spec="9.8 (string fields)",
        ),
        _as_client(
            "AUTH_CHALLENGE header with L = 4097",
            AwaitFrame(AUTH_START_),
            send(header(4097, AUTH_CHALLENGE_)),
            expect=REFUSE(1009),
            spec="9.2 size limits, 9.8",
        ),
        _as_client(
            "DATA from the host during the login",
            AwaitFrame(AUTH_START_),
            send(jdata("early")),
            # 9.8 says nothing of a host's DATA before AUTH_OK: refusing it either way is fine.
            expect=(REFUSE(1002), REFUSE(1008, error=refused_login)),
            spec="9.8",
        ),
        _as_client(
            "login timeout: the host never answers AUTH_START",
            AwaitFrame(AUTH_START_),
            StaysOpen(timeout * 0.6),
            AwaitClose(),
            expect=REFUSE(4000),
            spec="7.2, 9.8 (login_timeout)",
            settings=short_login,
        ),
        _as_client(
            "the host's HELLO lists auth without auth_required",
            send(Hello((("features", ["auth"]),))),
            expect=REFUSE(1007),
            spec="2.2, 9.8 (auth_required: true)",
            handshake=False,
        ),
        _as_client(
            "a host that requires login sends AUTH_CHALLENGE to a client without login",
            send(LOGIN_HELLO, bogus_challenge),
            expect=REFUSE(1008, error=refused_login),
            spec="9.8",
            handshake=False,
            login=False,
        ),
        _as_client(
            "AUTH_OK to a client without login, auth not negotiated",
            send(bogus_ok),
            expect=CLOSE(1002),
            spec="9.1, 9.8",
            login=False,
        ),
        _as_client(
            "the application logs out: LOGOUT, and the host's NORMAL close is echoed",
            *HOST_LOGIN,
            send(jdata("bye", {"conformance": "logout"})),
            AwaitFrame(LOGOUT_),
            send(close(1000, b"logged out")),
            expect=ECHO(1000, m("bye", conformance="logout"), reason="logged out"),
            spec="6.2, 9.8 (LOGOUT)",
        ),
    ]


def _group_11() -> list[Case]:
    """Feature ``request``, negotiated: the implementation under test answers no requests (it
    has no handler), drops what answers none of its own, and checks the frames' layout."""
    wants = Hello((("features", ["request"]),))
    return [
        case(
            "REQUEST with nobody to answer it: an ERROR REPLY 'no_handler' with its id",
            send(wants, request(7, "anyone?")),
            expect=REPLIES((7, "no_handler")),
            spec="9.3, 9.4",
            handshake=False,
        ),
        case(
            "REQUESTs and DATA interleaved: every REQUEST answered, the messages in order",
            send(wants, request(1, "a"), jdata("x"), request(2**32 - 1, "b"), jdata("y")),
            expect=REPLIES((1, "no_handler"), (2**32 - 1, "no_handler"), messages=("x", "y")),
            spec="9.3, 9.4, 5.1",
            handshake=False,
        ),
        case(
            "REQUEST with a deadline, cut at every offset",
            send(wants),
            _every_offset(request(3, [1, 2], 500)),
            expect=REPLIES(*[(3, "no_handler")] * (len(request(3, [1, 2], 500)) - 1)),
            spec="9.3, 1.2",
            handshake=False,
        ),
        case(
            "REPLY to no request of the implementation's: dropped, the connection stays open",
            send(wants, reply(9, "late")),
            expect=NO_RESPONSE(),
            spec="9.3 (late replies)",
            handshake=False,
        ),
        case(
            "CANCEL of no running request: ignored",
            send(wants, cancel(3)),
            expect=NO_RESPONSE(),
            spec="9.3",
            handshake=False,
        ),
        case(
            "CANCEL with a body of 3 bytes",
            send(wants, frame(0x07, b"\x00\x00\x03")),
            expect=CLOSE(1002),
            spec="9.3, 7.1",
            handshake=False,
        ),
        case(
            "REPLY with flags 0x05 (ERROR and raw bytes)",
            send(wants, reply(1, "x", flags=0x05)),
            expect=CLOSE(1002),
            spec="9.4",
            handshake=False,
        ),
        case(
            "REQUEST whose metadata length is larger than the rest of its body",
            send(wants, frame(0x02, struct.pack("!III", 1, 0, 99) + b"{}")),
            expect=CLOSE(1002),
            spec="9.2 (fixed-length fields)",
            handshake=False,
        ),
    ]


def _numbered(group: str, cases: list[Case]) -> list[Case]:
    """Give the cases of a group their ids, "group.1" onwards, in table order."""
    return [replace(c, id=f"{group}.{n}") for n, c in enumerate(cases, 1)]


CASES: list[Case] = [
    *_numbered("1", _group_1()),
    *_numbered("2", _group_2()),
    *_numbered("3", _group_3()),
    *_numbered("4", _group_4()),
    *_numbered("5", _group_5()),
    *_numbered("6", _group_6()),
    *_numbered("7", _group_7()),
    *_numbered("8", _group_8()),
    *_numbered("9", _group_9()),
    *_numbered("10", _group_10()),
    *_numbered("11", _group_11()),
]
