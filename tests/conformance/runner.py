"""Runs the cases of ``cases.py`` against alvaro and rates each run OK, NON-STRICT or FAILED.

For the role ``"host"`` a real :class:`alvaro.aio.Host` listens and a raw client (``RawPeer``)
connects to it; for the role ``"client"`` a raw fake host (``raw_server``) accepts a real
:class:`alvaro.aio.Client`. The raw peer plays the case's script, then finds out what state the
connection is in without assuming the expected outcome:

- if its own stream is complete and it has sent a valid HELLO, it sends a probe PING: a PONG for
  it proves that the implementation processed everything before it and kept the connection open.
  The raw peer then closes with NORMAL, which must be echoed;
- if the implementation sent CLOSE, the raw peer answers it like a well-behaved peer and waits
  for EOF;
- otherwise it waits, at most as long as the case allows, for a CLOSE or EOF.

The application side of the implementation records every message, echoes it back (within the
peer's announced limits) and records the close code it reports. A message whose metadata holds
``{"conformance": "disconnect", "code": C}`` makes the application close with code C instead (with
the reason ``"reason"`` repeated ``"repeat"`` times, if given); on a Client,
``{"conformance": "logout"}`` makes it log out.

For a login case the Host requires login and knows the user ``USER`` (its verifier uses
``ITERATIONS`` rounds), and the Client connects with ``login=(USER, PASSWORD)``.

Everything the implementation sends is also checked against the sender's rules of the
specification (preamble, HELLO, frame layout, nothing after CLOSE, ...), whatever the case.
"""

from __future__ import annotations

import json
import logging
import math
import reprlib
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import anyio

import alvaro
from alvaro import (
    CloseCode,
    ConnectionClosed,
    EncodeError,
    MessageTooLarge,
    OutboxFull,
)
from alvaro.aio import Client
from alvaro.auth import Accounts

from ..helpers import T
from ..rawpeer import RawPeer, raw_server
from .cases import (
    ANY,
    AUTH_CHALLENGE_,
    AUTH_FAIL_,
    AUTH_OK_,
    AUTH_RESPONSE_,
    AUTH_SENT_BY,
    AUTH_START_,
    CLOSE_,
    DATA,
    GROUPS,
    HELLO_,
    ITERATIONS,
    LIMIT_MESSAGE,
    LIMIT_METADATA,
    LOGIN_HELLO,
    LOGIN_TIMEOUT,
    LOGOUT_,
    MECHANISM,
    OPEN_TIMEOUT,
    PASSWORD,
    PING_,
    PONG_,
    PREAMBLE,
    RESERVED_TYPES,
    USER,
    AwaitClose,
    AwaitFrame,
    AwaitHello,
    Case,
    HalfClose,
    Hello,
    Login,
    Outcome,
    Part,
    Pause,
    Reset,
    Scram,
    Send,
    StaysOpen,
    Unanswerable,
    close,
    compact,
    ping,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ("Result", "Status", "format_report", "run_case")

Status = Literal["OK", "NON-STRICT", "FAILED"]

#: The implementation's settings in every case (a case may change some).
SETTINGS: dict[str, Any] = {
    "max_message_size": LIMIT_MESSAGE,
    "max_metadata_size": LIMIT_METADATA,
    "open_timeout": OPEN_TIMEOUT,
    "login_timeout": LOGIN_TIMEOUT,
    "close_timeout": 10 * T,
    "ping_interval": None,
}
PROBE = b"conformance probe"
FINISH_REASON = "conformance: done"
#: How long the runner waits for anything that should be immediate once the case is decided.
SETTLE = 20 * T

#: The Host's and Client's logger: their warnings about the faults the cases inject are expected.
LOGGER = logging.getLogger("tests.conformance.alvaro")

_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60
_short.maxlist = 8
_short.maxdict = 8


def short(value: Any) -> str:
    return _short.repr(value)


# --- Reading a byte stream -----------------------------------------------------------------------


@dataclass(frozen=True)
class Frame:
    type: int
    flags: int
    body: bytes


@dataclass
class Stream:
    """A byte stream cut into preamble and frames; ``rest`` is an incomplete last frame."""

    preamble: bytes
    frames: list[Frame]
    rest: bytes


def parse(buffer: bytes) -> Stream:
    """Cut a stream as the specification lays it out, without judging it."""
    parser = Parser()
    parser.feed(buffer)
    return parser.stream


class Parser:
    """Cuts a stream into frames as it arrives, in time linear in its length."""

    def __init__(self) -> None:
        self.stream = Stream(b"", [], b"")
        self._buffer = bytearray()
        self._pos = 0
        self._foreign = False
        #: Flags kept up to date as frames arrive, for the waits of the raw peer.
        self.closed = False
        self.probe_answered = False

    def feed(self, data: bytes) -> None:
        self._buffer += data
        buffer = self._buffer
        if self._pos == 0:
            if len(buffer) < 8:
                self.stream.preamble = bytes(buffer)
                return
            self.stream.preamble = bytes(buffer[:8])
            self._foreign = not self.stream.preamble.startswith(b"ALVARO")
            self._pos = 8
        if self._foreign:
            self.stream.rest = bytes(buffer[8:])
            return
        pos = self._pos
        frames = self.stream.frames
        while len(buffer) - pos >= 6:
            length, frame_type, flags = struct.unpack_from("!IBB", buffer, pos)
            if len(buffer) - pos - 6 < length:
                break
            body = bytes(buffer[pos + 6 : pos + 6 + length])
            frames.append(Frame(frame_type, flags, body))
            self.closed = self.closed or frame_type == CLOSE_
            self.probe_answered = self.probe_answered or (frame_type == PONG_ and body == PROBE)
            pos += 6 + length
        self._pos = pos
        self.stream.rest = bytes(buffer[pos:])


def close_code(body: bytes) -> int | None:
    return struct.unpack_from("!H", body)[0] if len(body) >= 2 else None


def strict_json(raw: bytes) -> Any:
    """Decode JSON the way the specification defines it (UTF-8, no NaN or Infinity)."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(raw.decode("utf-8"), parse_constant=no_constant)


def decode_data(body: bytes, flags: int) -> tuple[Any, Any]:
    (meta_size,) = struct.unpack_from("!I", body)
    meta = strict_json(body[4 : 4 + meta_size]) if meta_size else {}
    payload = body[4 + meta_size :]
    return (payload if flags == 1 else strict_json(payload)), meta


# --- The raw peer's side -------------------------------------------------------------------------


@dataclass
class Wire:
    """What the raw peer sent and received, and how the connection ended."""

    sent: bytearray = field(default_factory=bytearray)
    received: bytes = b""
    #: How many of the implementation's frames (preamble excluded) came before the runner's own
    #: finishing exchange.
    mark: int = 0
    probed: bool = False
    alive: bool = False
    eof: bool = False
    dropped: bool = False
    send_failed: bool = False
    #: Seconds from the end of the script until the implementation's CLOSE arrived.
    close_delay: float | None = None
    problems: list[str] = field(default_factory=list)
    peer_limits: tuple[int, int] = (1048576, 65536)


class Driver:
    """Plays a case's script on a raw peer and finds out how the connection ended."""

    def __init__(self, peer: RawPeer, case: Case, tested: str) -> None:
        self.peer = peer
        self.case = case
        self.tested = tested
        self.own: Literal["host", "client"] = "client" if tested == "host" else "host"
        self.wire = Wire()
        self.login = Login(self.sent_bodies)
        self._close_at: float | None = None
        self._parser = Parser()
        self._parsed = 0
        # The limits the raw peer announces: its first HELLO's (the default HELLO's otherwise).
        hellos = [
            part
            for step in case.steps
            if isinstance(step, Send)
            for part in step.parts
            if isinstance(part, Hello)
        ]
        if hellos:
            self.wire.peer_limits = hellos[0].limits()

    # Reading

    def stream(self) -> Stream:
        received = self.peer.received
        if len(received) > self._parsed:
            self._parser.feed(bytes(received[self._parsed :]))
            self._parsed = len(received)
        return self._parser.stream

    def closed(self) -> bool:
        self.stream()
        return self._parser.closed

    def closes(self) -> list[Frame]:
        return [f for f in self.stream().frames if f.type == CLOSE_] if self.closed() else []

    def sent_bodies(self, frame_type: int) -> list[bytes]:
        """The bodies of the implementation's frames of one type, so far."""
        return [f.body for f in self.stream().frames if f.type == frame_type]

    def _note_close(self) -> None:
        if self._close_at is None and self.closed():
            self._close_at = anyio.current_time()

    async def read_until(self, predicate: Callable[[], bool], deadline: float) -> bool:
        """Read until ``predicate()``; False at EOF or at the deadline."""
        while not predicate():
            if self.peer.eof or self.wire.dropped:
                return False
            with anyio.move_on_at(deadline):
                await self.peer.read_chunk()
                self._note_close()
                continue
            return False
        return True

    def _hello_first(self) -> bool:
        frames = self.stream().frames
        return bool(frames) and frames[0].type == HELLO_

    def _hello_or_close(self) -> bool:
        frames = self.stream().frames
        return bool(frames) and (frames[0].type == HELLO_ or self.closed())

    def _probe_or_close(self) -> bool:
        return self.closed() or self._parser.probe_answered

    # Writing

    async def send(self, data: bytes) -> bool:
        if self.wire.send_failed or self.wire.dropped:
            return False
        try:
            await self.peer.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.wire.send_failed = True
            return False
        self.wire.sent += data
        return True

    async def half_close(self) -> None:
        """Send EOF; the implementation may have dropped the connection already."""
        try:
            await self.peer.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            self.wire.send_failed = True

    def _own_stream(self) -> tuple[bool, bool, bool]:
        """(handshake sent, CLOSE sent, stream ends on a frame boundary)."""
        own = parse(bytes(self.wire.sent))
        valid = own.preamble.startswith(b"ALVARO") and len(own.preamble) == 8
        hello = valid and bool(own.frames) and own.frames[0].type == HELLO_
        sent_close = any(f.type == CLOSE_ for f in own.frames)
        return hello, sent_close, valid and not own.rest

    async def run(self) -> Wire:
        wire = self.wire
        hello = LOGIN_HELLO if self.case.login else Hello()
        steps = ((Send((hello,)),) if self.case.handshake else ()) + self.case.steps
        half_closed = False
        for step in steps:
            if wire.send_failed or wire.dropped:
                break
            if isinstance(step, Send):
                if not await self._send_step(step):
                    break  # a Scram part could not be built: the script cannot go on
            elif isinstance(step, AwaitFrame):
                await self._await_frame(step)
            elif isinstance(step, Pause):
                await anyio.sleep(step.seconds)
            elif isinstance(step, StaysOpen):
                await self.read_until(self.closed, anyio.current_time() + step.seconds)
                if self.closed() or self.peer.eof:
                    wire.problems.append(
                        f"closed during a {step.seconds:g} s pause in which it had to wait for "
                        "more bytes"
                    )
            elif isinstance(step, HalfClose):
                await self.half_close()
                half_closed = True
            elif isinstance(step, Reset):
                await self.peer.reset_close()
                wire.dropped = True
            elif isinstance(step, AwaitHello):
                await self.read_until(
                    lambda: bool(self.stream().frames), anyio.current_time() + step.seconds
                )
                if not self._hello_first():
                    wire.problems.append(
                        f"no HELLO within {step.seconds:g} s of connecting, before the peer "
                        "sent anything (2.1: neither side waits)"
                    )
            elif isinstance(step, AwaitClose):
                if not await self.read_until(self.closed, anyio.current_time() + SETTLE):
                    wire.problems.append(f"no CLOSE came within {SETTLE:g} s (AwaitClose step)")
        steps_done = anyio.current_time()
        within = max(o.within for o in (*self.case.expect, *self.case.lenient))
        deadline = steps_done + within
        if not wire.dropped:
            await self._verdict(deadline, half_closed)
        if self._close_at is not None:
            wire.close_delay = max(0.0, self._close_at - steps_done)
        if self.tested == "host":
            for body in self.sent_bodies(AUTH_OK_)[:1]:
                wire.problems += self.login.check_ok(body)
        wire.received = bytes(self.peer.received)
        wire.eof = self.peer.eof
        return wire

    async def _await_frame(self, step: AwaitFrame) -> None:
        def arrived() -> bool:
            return bool(self.sent_bodies(step.frame_type))

        await self.read_until(
            lambda: arrived() or self.closed(), anyio.current_time() + step.seconds
        )
        if not arrived():
            name = RESERVED_TYPES.get(step.frame_type, f"type {step.frame_type:#04x}")
            self.wire.problems.append(f"no {name} came within {step.seconds:g} s (9.8)")

    def _build(self, part: Part) -> bytes:
        if isinstance(part, Hello):
            return part.build(self.own)
        if isinstance(part, Scram):
            return self.login.build(part)
        return part

    async def _send_step(self, step: Send) -> bool:
        """Send a step's bytes; False if they could not be built."""
        try:
            raw = b"".join(self._build(p) for p in step.parts)
        except Unanswerable as exc:
            self.wire.problems.append(str(exc))
            return False
        cuts = list(step.cuts)
        if step.every:
            cuts = list(range(step.every, len(raw), step.every))
        bounds = [0, *cuts, len(raw)]
        for index in range(len(bounds) - 1):
            if index and step.pause:
                await anyio.sleep(step.pause)
            if not await self.send(raw[bounds[index] : bounds[index + 1]]):
                break
        return True

    async def _verdict(self, deadline: float, half_closed: bool) -> None:
        wire = self.wire
        hello_sent, sent_close, complete = self._own_stream()
        if sent_close or half_closed or wire.send_failed:
            await self.read_until(lambda: False, deadline)  # until EOF
        elif hello_sent and complete:
            await self.read_until(self._hello_or_close, deadline)
            if self.stream().frames and not self.closed() and not self.peer.eof:
                wire.probed = await self.send(ping(PROBE))
                if wire.probed:
                    await self.read_until(self._probe_or_close, deadline)
        else:
            await self.read_until(self.closed, deadline)
        wire.mark = len(self.stream().frames)
        closes = self.closes()
        settle = anyio.current_time() + SETTLE
        if closes and not self.case.answer_close:
            # A peer that never answers: the implementation must give up after its close
            # timeout.
            timeout = float(_settings(self.case)["close_timeout"])
            await self.read_until(lambda: False, anyio.current_time() + timeout + SETTLE)
        elif closes:
            if not sent_close:
                # Answer like a well-behaved peer: echo the code (or PROTOCOL_ERROR for a code
                # that may not be sent), then end our side.
                code = close_code(closes[0].body)
                echo = code if code is not None and CloseCode.can_send(code) else 1002
                await self.send(close(echo))
                if not wire.send_failed:
                    await self.half_close()
            await self.read_until(lambda: False, settle)
        elif self._parser.probe_answered:
            wire.alive = True
            await self.send(close(1000, FINISH_REASON.encode()))
            await self.read_until(lambda: False, settle)
        elif not self.peer.eof:
            wire.dropped = True  # nothing happened: the runner drops the connection


# --- The implementation's side -------------------------------------------------------------------


class Api:
    """What the application of the implementation under test saw."""

    def __init__(self) -> None:
        self.opened = False
        self.messages: list[tuple[Any, dict[str, Any]]] = []
        self.lost: tuple[int | None, str, bool | None] | None = None
        self.error: BaseException | None = None
        self.local_errors: list[Exception] = []
        self.done = anyio.Event()
        #: Called for a message asking the application to log out (a Client's only).
        self.logout: Callable[[], object] | None = None

    def on_message(
        self,
        data: Any,
        metadata: dict[str, Any],
        send: Callable[[Any, dict[str, Any]], None],
        disconnect: Callable[[str, int], None],
        is_open: bool,
    ) -> None:
        self.messages.append((data, metadata))
        if metadata.get("conformance") == "logout" and self.logout is not None:
            self.logout()
            return
        if metadata.get("conformance") == "disconnect":
            reason = str(metadata.get("reason", "conformance: asked to close"))
            reason *= int(metadata.get("repeat", 1))
            disconnect(reason, int(metadata.get("code", 1000)))
            return
        if not is_open:
            return
        try:
            send(data, metadata)
        except (EncodeError, MessageTooLarge, OutboxFull) as exc:
            self.local_errors.append(exc)  # a local error: nothing sent, the connection stays open
        except ConnectionClosed:
            pass


def _settings(case: Case) -> dict[str, Any]:
    return {**SETTINGS, **dict(case.settings)}


def _budget(case: Case) -> float:
    pauses = 0.0
    for step in case.steps:
        if isinstance(step, (Pause, StaysOpen)):
            pauses += step.seconds
        elif isinstance(step, Send) and step.pause:
            pieces = len(step.cuts) or 200
            pauses += step.pause * pieces * 3
    within = max(o.within for o in (*case.expect, *case.lenient))
    return pauses + within + 3 * SETTLE + 2 * float(_settings(case)["close_timeout"])


def _accounts() -> Accounts:
    """A login case's users: USER alone, with a cheap verifier."""
    accounts = Accounts(iterations=ITERATIONS)
    accounts.add_user(USER, PASSWORD)
    return accounts


async def _run_against_host(case: Case) -> tuple[Wire, Api]:
    api = Api()
    login: dict[str, Any] = {"login_required": True, "accounts": _accounts()} if case.login else {}
    host = alvaro.Host("127.0.0.1", 0, logger=LOGGER, **login, **_settings(case))

    def new_client(conn: alvaro.Connection) -> None:
        api.opened = True

    def got_data(conn: alvaro.Connection, data: Any, metadata: dict[str, Any]) -> None:
        api.on_message(data, metadata, conn.send_data, conn.disconnect, conn.is_open)

    def lost_client(conn: alvaro.Connection) -> None:
        api.lost = (conn.close_code, conn.close_reason, conn.closed_by_peer)
        api.done.set()

    host.new_client = new_client  # type: ignore[method-assign]
    host.got_data = got_data  # type: ignore[method-assign]
    host.lost_client = lost_client  # type: ignore[method-assign]
    async with host:
        peer = await RawPeer.connect(host.port)
        try:
            wire = await Driver(peer, case, "host").run()
        finally:
            await peer.aclose()
        if api.opened:
            with anyio.move_on_after(SETTLE + _settings(case)["close_timeout"]):
                await api.done.wait()
    return wire, api


async def _run_against_client(case: Case) -> tuple[Wire, Api]:
    api = Api()
    settings = _settings(case)
    client = Client(logger=LOGGER, **settings)
    outcome: dict[str, Any] = {}
    handled = anyio.Event()

    def made_connection() -> None:
        api.opened = True

    def got_data(data: Any, metadata: dict[str, Any]) -> None:
        conn = client.connection
        api.on_message(
            data, metadata, client.send_data, client.disconnect, conn is not None and conn.is_open
        )

    def lost_connection() -> None:
        conn = client.connection
        assert conn is not None
        api.lost = (conn.close_code, conn.close_reason, conn.closed_by_peer)

    client.made_connection = made_connection  # type: ignore[method-assign]
    client.got_data = got_data  # type: ignore[method-assign]
    client.lost_connection = lost_connection  # type: ignore[method-assign]

    async def handler(peer: RawPeer) -> None:
        if "wire" in outcome or "error" in outcome:
            return  # one connection per case
        try:
            outcome["wire"] = await Driver(peer, case, "client").run()
        except Exception as exc:
            outcome["error"] = exc
        finally:
            handled.set()

    async def connect(port: int) -> None:
        try:
            await client.connect("127.0.0.1", port, login=(USER, PASSWORD) if case.login else None)
        except Exception as exc:  # not only ConnectError: an unexpected one is judged too
            api.error = exc
        finally:
            api.done.set()

    async with raw_server(handler) as port, anyio.create_task_group() as tasks:
        api.logout = lambda: tasks.start_soon(client.logout)
        tasks.start_soon(connect, port)
        await handled.wait()
        with anyio.move_on_after(SETTLE + settings["close_timeout"]):
            await api.done.wait()
        tasks.cancel_scope.cancel()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["wire"], api


# --- Judging -------------------------------------------------------------------------------------


def same(a: Any, b: Any) -> bool:
    """Equal JSON values of equal types (1, 1.0 and True differ), ANY matching anything."""
    if a is ANY or b is ANY:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def same_messages(a: Iterable[tuple[Any, Any]], b: Iterable[tuple[Any, Any]]) -> bool:
    a, b = list(a), list(b)
    return len(a) == len(b) and all(
        same(x[0], y[0]) and same(x[1], y[1]) for x, y in zip(a, b, strict=True)
    )


REPLY_ = 0x03


def reply_outcome(f: Frame) -> tuple[int, str]:
    """A REPLY frame as (request id, "ok" or its error's kind); ("?", ...) parts if malformed."""
    try:
        request_id, meta_length = struct.unpack_from("!II", f.body)
        if not f.flags & 0x04:
            return request_id, "ok"
        error = json.loads(f.body[8 + meta_length :])
        return request_id, str(error["kind"])
    except (struct.error, ValueError, KeyError, TypeError):
        return -1, f"malformed REPLY {short(f.body)}"


@dataclass
class Observation:
    """A run's facts, gathered once and matched against each allowed outcome."""

    role: str
    wire: Wire
    api: Api
    frames: list[Frame]
    sender_problems: list[str]
    echoes: list[tuple[Any, dict[str, Any]]]
    pongs: list[bytes]
    replies: list[tuple[int, str]]
    closes: list[int | None]
    finish_closes: list[int | None]

    @classmethod
    def gather(cls, role: str, wire: Wire, api: Api, login: bool = False) -> Observation:
        stream = parse(wire.received)
        frames = stream.frames
        case_frames = frames[: wire.mark]
        echoes = []
        for f in case_frames:
            if f.type == DATA:
                try:
                    echoes.append(decode_data(f.body, f.flags))
                except (ValueError, struct.error):
                    pass  # reported by the sender checks
        return cls(
            role=role,
            wire=wire,
            api=api,
            frames=frames,
            sender_problems=sender_problems(stream, role, wire, login),
            echoes=echoes,
            pongs=[f.body for f in frames if f.type == PONG_ and f.body != PROBE],
            replies=[reply_outcome(f) for f in case_frames if f.type == REPLY_],
            closes=[close_code(f.body) for f in case_frames if f.type == CLOSE_],
            finish_closes=[close_code(f.body) for f in frames[wire.mark :] if f.type == CLOSE_],
        )

    @property
    def all_closes(self) -> list[int | None]:
        return self.closes + self.finish_closes

    def summary(self) -> str:
        wire = self.wire
        names = {DATA: "DATA", PING_: "PING", PONG_: "PONG", CLOSE_: "CLOSE", HELLO_: "HELLO"}
        names.update((t, RESERVED_TYPES[t]) for t in _AUTH_FIELDS)
        seen: list[tuple[str, int]] = []
        for f in self.frames:
            name = names.get(f.type, f"type {f.type:#04x}")
            if f.type == CLOSE_:
                name += f" {close_code(f.body)}"
            if seen and seen[-1][0] == name:
                seen[-1] = (name, seen[-1][1] + 1)
            else:
                seen.append((name, 1))
        parts = [n if c == 1 else f"{n} x{c}" for n, c in seen]
        if wire.close_delay is not None:
            parts.append(f"(CLOSE after {wire.close_delay * 1000:.0f} ms)")
        if wire.alive:
            parts.append("[probe answered]")
        if wire.eof:
            parts.append("EOF")
        elif wire.dropped:
            parts.append("[dropped by the runner]")
        api = self.api
        if self.role == "client" and api.error is not None:
            state = f"connect() raised {type(api.error).__name__} (code {error_code(api.error)})"
        elif api.opened:
            state = f"opened, {len(api.messages)} delivered"
            if api.lost is not None:
                code, _, by_peer = api.lost
                state += f", closed {code} ({'by peer' if by_peer else 'by this side'})"
        else:
            state = "never opened"
        return f"wire: {' '.join(parts) or 'nothing'}; api: {state}"


def error_code(exc: BaseException) -> int | None:
    """The close code a failed Client.connect() reports."""
    if isinstance(exc, TimeoutError):
        return int(CloseCode.TIMEOUT)
    cause = exc.__cause__
    code = getattr(cause, "code", None)
    return int(code) if code is not None else None


def hello_features(stream: Stream) -> list[Any]:
    """The ``features`` a stream's HELLO lists ([] when it has no valid one)."""
    if not stream.frames or stream.frames[0].type != HELLO_:
        return []
    try:
        body = strict_json(stream.frames[0].body)
    except ValueError:
        return []
    features = body.get("features", []) if isinstance(body, dict) else []
    return features if isinstance(features, list) else []


def sender_problems(stream: Stream, tested: str, wire: Wire, login: bool = False) -> list[str]:
    """Every way the implementation's own bytes break the sender's rules of the specification.

    ``login``: a host under test requires login (a client under test always offers ``auth``).
    """
    if wire.dropped and not wire.received:
        return []
    problems = []
    if stream.preamble != PREAMBLE:
        problems.append(f"sent preamble {stream.preamble.hex(' ')}, not {PREAMBLE.hex(' ')} (2.1)")
        return problems
    frames = stream.frames
    if not frames:
        if wire.eof:
            problems.append("closed without sending HELLO (2.1)")
        return problems
    hello = frames[0]
    if hello.type != HELLO_ or hello.flags or len(hello.body) > 4096:
        problems.append("the first frame is not a valid HELLO (2.2)")
    else:
        try:
            body = strict_json(hello.body)
        except ValueError:
            body = None
        # 9.8: an alvaro Client always offers auth; a Host only when it requires login. Both
        # always offer request (9.3).
        offers_auth = tested == "client" or login
        wanted: dict[str, Any] = {
            "role": tested,
            "max_message_size": LIMIT_MESSAGE,
            "max_metadata_size": LIMIT_METADATA,
            "features": ["auth", "request"] if offers_auth else ["request"],
        }
        if tested == "host" and login:
            wanted["auth_required"] = True
        if not isinstance(body, dict) or any(not same(body.get(k), v) for k, v in wanted.items()):
            problems.append(f"HELLO body {short(hello.body)} does not announce {wanted} (2.2)")
        elif hello.body != compact(wanted):
            # 2.2: alvaro sends the members in the table's order, compact (the example's bytes).
            problems.append(f"HELLO body {short(hello.body)} is not {short(compact(wanted))} (2.2)")
    closed = False
    peer_message, peer_metadata = wire.peer_limits
    auth = _AuthSender(
        tested,
        "auth" in hello_features(stream) and "auth" in hello_features(parse(bytes(wire.sent))),
    )
    requests = "request" in hello_features(stream) and "request" in hello_features(
        parse(bytes(wire.sent))
    )
    for index, f in enumerate(frames[1:], 1):
        if closed:
            problems.append(f"frame {index} sent after CLOSE (5.4)")
            break
        problems += auth.check(f, index)
        if f.type == DATA:
            problems += _data_problems(f, index, peer_message, peer_metadata)
        elif f.type in _AUTH_FIELDS:
            pass  # checked above
        elif f.type in (PING_, PONG_, CLOSE_):
            if f.flags or len(f.body) > 4096:
                problems.append(f"control frame {index} with flags {f.flags} and L={len(f.body)}")
            if f.type == CLOSE_:
                closed = True
                problems += _close_problems(f)
        elif f.type == REPLY_ and requests:
            # 9.4: flags 0x00, 0x01 or 0x04; an error REPLY fits in 4096 bytes.
            if f.flags not in (0x00, 0x01, 0x04) or (f.flags == 0x04 and len(f.body) > 4096):
                problems.append(f"REPLY {index} with flags {f.flags} and L={len(f.body)} (9.4)")
            elif reply_outcome(f)[0] < 0:
                problems.append(f"REPLY {index} is malformed (9.4)")
        else:
            problems.append(f"frame {index} of type {f.type:#04x} (4)")
    if closed and stream.rest:
        problems.append(f"{len(stream.rest)} bytes sent after CLOSE (5.4)")
    elif stream.rest and wire.eof:
        problems.append(f"EOF inside a frame, {len(stream.rest)} bytes into it")
    if auth.failed_at is not None and wire.eof and auth.failed_at == len(frames) - 1:
        problems.append("AUTH_FAIL not followed by CLOSE POLICY_VIOLATION (1008) (9.8)")
    return problems


#: The members each AUTH frame's JSON object carries as strings (9.8).
_AUTH_FIELDS = {
    AUTH_START_: ("mechanism", "message"),
    AUTH_CHALLENGE_: ("message",),
    AUTH_RESPONSE_: ("message",),
    AUTH_OK_: ("message", "user"),
    AUTH_FAIL_: ("reason",),
    LOGOUT_: (),
}


class _AuthSender:
    """The sender's rules of feature auth (9.8), frame by frame in the implementation's
    stream: AUTH frames only when negotiated and in the sender's direction, well-formed, in the
    exchange's order; no DATA before the login; AUTH_FAIL followed by CLOSE 1008."""

    def __init__(self, tested: str, negotiated: bool) -> None:
        self.tested = tested
        self.negotiated = negotiated
        self.sent: list[int] = []
        #: The index of an AUTH_FAIL whose CLOSE has not been seen yet.
        self.failed_at: int | None = None

    def check(self, f: Frame, index: int) -> list[str]:
        problems = []
        if self.failed_at is not None:
            if f.type != CLOSE_ or close_code(f.body) != CloseCode.POLICY_VIOLATION:
                problems.append(
                    f"AUTH_FAIL (frame {self.failed_at}) not followed by CLOSE "
                    "POLICY_VIOLATION (1008) (9.8)"
                )
            self.failed_at = None
        if f.type == DATA and self.negotiated:
            last_step = AUTH_RESPONSE_ if self.tested == "client" else AUTH_OK_
            if last_step not in self.sent:
                problems.append(f"DATA frame {index} sent before the login succeeded (9.8)")
        if f.type not in _AUTH_FIELDS:
            return problems
        name = RESERVED_TYPES[f.type]
        if not self.negotiated:
            return [*problems, f"{name} (frame {index}) sent without feature auth (9.1)"]
        if f.type not in AUTH_SENT_BY[self.tested]:
            return [*problems, f"{name} (frame {index}) sent by a {self.tested} (9.8)"]
        problems += self._order(f.type, name, index)
        self.sent.append(f.type)
        if f.type == AUTH_FAIL_:
            self.failed_at = index
        if f.flags or len(f.body) > 4096:
            problems.append(f"{name} (frame {index}) with flags {f.flags} and L={len(f.body)}")
        if f.type == LOGOUT_ and not f.body:
            return problems
        try:
            body = strict_json(f.body)
        except ValueError:
            body = None
        if not isinstance(body, dict) or any(
            not isinstance(body.get(key), str) for key in _AUTH_FIELDS[f.type]
        ):
            problems.append(f"{name} body {short(f.body)} is not its JSON object (9.8)")
        elif f.type == AUTH_START_ and body["mechanism"] != MECHANISM:
            problems.append(f"AUTH_START with mechanism {short(body['mechanism'])} (9.8)")
        return problems

    def _order(self, frame_type: int, name: str, index: int) -> list[str]:
        sent = self.sent
        if frame_type in sent:
            return [f"a second {name} (frame {index}) (9.8)"]
        before = {
            AUTH_START_: (),
            AUTH_RESPONSE_: (AUTH_START_,),
            LOGOUT_: (AUTH_RESPONSE_,),
            AUTH_CHALLENGE_: (),
            AUTH_OK_: (AUTH_CHALLENGE_,),
            AUTH_FAIL_: (),
        }[frame_type]
        if any(t not in sent for t in before) or (
            frame_type in (AUTH_CHALLENGE_, AUTH_OK_, AUTH_FAIL_)
            and (AUTH_OK_ in sent or AUTH_FAIL_ in sent)
        ):
            return [f"{name} (frame {index}) out of the exchange's order (9.8)"]
        return []


def _data_problems(f: Frame, index: int, peer_message: int, peer_metadata: int) -> list[str]:
    if f.flags not in (0, 1) or len(f.body) < 4:
        return [f"DATA frame {index} with flags {f.flags} and L={len(f.body)} (5.1)"]
    (meta_size,) = struct.unpack_from("!I", f.body)
    if meta_size > len(f.body) - 4:
        return [f"DATA frame {index} with M larger than L - 4 (5.1)"]
    problems = []
    if len(f.body) - 4 > peer_message or meta_size > peer_metadata:
        problems.append(f"DATA frame {index} over the limits the peer announced (8)")
    try:
        data, meta = decode_data(f.body, f.flags)
    except ValueError as exc:
        return [*problems, f"DATA frame {index} is not valid UTF-8 JSON: {exc} (1.4, 1.5)"]
    raw_meta = f.body[4 : 4 + meta_size]
    if not isinstance(meta, dict):
        problems.append(f"DATA frame {index}: metadata is not an object (5.1)")
    elif meta_size and not meta:
        problems.append(f"DATA frame {index}: empty metadata not sent as M = 0 (5.1, alvaro)")
    elif meta_size and raw_meta != compact(meta):
        problems.append(f"DATA frame {index}: metadata not in compact form (1.5, alvaro)")
    if f.flags == 0 and f.body[4 + meta_size :] != compact(data):
        problems.append(f"DATA frame {index}: payload not in compact form (1.5, alvaro)")
    return problems


def _close_problems(f: Frame) -> list[str]:
    if len(f.body) < 2:
        return ["CLOSE without a code (5.4)"]
    problems = []
    code = close_code(f.body)
    if code == CloseCode.ABNORMAL:
        problems.append("sent ABNORMAL (1006), a local-only code (6.1)")
    reason = f.body[2:]
    if len(reason) > 1024:
        problems.append(f"CLOSE reason of {len(reason)} bytes, over 1024 (5.4)")
    try:
        reason.decode("utf-8")
    except UnicodeDecodeError:
        problems.append("CLOSE reason that is not UTF-8 (5.4)")
    return problems


def expected_echoes(outcome: Outcome, limits: tuple[int, int]) -> list[Any] | None:
    """The messages the application echoes back: those delivered before it was asked to close,
    that can be encoded within the peer's limits. None when a message is ANY."""
    echoes = []
    for data, meta in outcome.messages:
        if "conformance" in meta:
            break
        if data is ANY:
            return None
        try:
            payload = data if isinstance(data, bytes) else compact(data)
            raw_meta = compact(meta) if meta else b""
        except ValueError:  # NaN, Infinity, lone surrogates: the application's send fails
            continue
        if len(raw_meta) > limits[1] or len(raw_meta) + len(payload) > limits[0]:
            continue
        echoes.append((data, meta))
    return echoes


def mismatches(outcome: Outcome, obs: Observation) -> list[str]:
    """How the observed run differs from ``outcome``; empty when it matches."""
    wire = obs.wire
    problems = list(obs.sender_problems) + list(wire.problems)
    echoes = expected_echoes(outcome, wire.peer_limits)

    if outcome.kind == "open":
        if wire.probed and not wire.alive:
            problems.append("did not answer the probe PING: the connection did not stay open")
        elif not wire.probed and (wire.eof or obs.closes):
            problems.append("did not keep the connection open")
        if obs.closes:
            problems.append(f"sent CLOSE {obs.closes}")
    else:
        wanted = {"close": outcome.code, "echo": _reply(outcome), "abnormal": None}[outcome.kind]
        got = obs.all_closes
        if outcome.kind == "abnormal":
            if got:
                problems.append(f"sent CLOSE {got}; expected no CLOSE (the peer sent none)")
        elif got != [wanted]:
            what = f"sent CLOSE {got}" if got else "sent no CLOSE"
            problems.append(f"{what}; expected CLOSE {wanted}")
        elif outcome.kind == "close" and (wire.close_delay or 0) > outcome.within:
            problems.append(f"CLOSE came after {wire.close_delay:.2f} s, over {outcome.within:g} s")
        if outcome.wire_reason is not None:
            reasons = [f.body[2:] for f in obs.frames if f.type == CLOSE_]
            if reasons[:1] != [outcome.wire_reason.encode()]:
                problems.append(
                    f"CLOSE reason {short(reasons[:1])}; expected {short(outcome.wire_reason)}"
                )
        if not wire.eof and not wire.dropped:
            problems.append("did not close the TCP connection")
    if outcome.auth_fail is not None:
        reasons = [_auth_fail_reason(f.body) for f in obs.frames if f.type == AUTH_FAIL_]
        if not reasons:
            problems.append("sent no AUTH_FAIL before closing")
        elif outcome.auth_fail is not ANY and reasons != [outcome.auth_fail]:
            problems.append(f"AUTH_FAIL reason {short(reasons)}; expected {outcome.auth_fail!r}")

    if list(outcome.pongs) != obs.pongs:
        problems.append(f"PONGs {short(obs.pongs)}; expected {short(list(outcome.pongs))}")
    if list(outcome.replies) != obs.replies:
        problems.append(f"REPLYs {short(obs.replies)}; expected {short(list(outcome.replies))}")
    if echoes is not None:
        got_echoes = obs.echoes
        if outcome.kind == "abnormal":
            got_echoes = got_echoes[: len(echoes)]
            ok = same_messages(got_echoes, echoes[: len(got_echoes)]) and len(obs.echoes) <= len(
                echoes
            )
        else:
            ok = same_messages(got_echoes, echoes)
        if not ok:
            problems.append(f"echoed {short(obs.echoes)}; expected {short(echoes)}")

    problems += _api_mismatches(outcome, obs)
    return problems


def _auth_fail_reason(body: bytes) -> Any:
    try:
        fields = strict_json(body)
    except ValueError:
        return None
    return fields.get("reason") if isinstance(fields, dict) else None


def _reply(outcome: Outcome) -> int | None:
    return outcome.code if outcome.reply is None else outcome.reply


def _api_mismatches(outcome: Outcome, obs: Observation) -> list[str]:
    api, wire = obs.api, obs.wire
    problems = []
    if not outcome.opened:
        if api.opened:
            problems.append("the application saw the connection open")
        if obs.role == "client":
            expected = int(CloseCode.ABNORMAL) if outcome.kind == "abnormal" else outcome.code
            if api.error is None:
                problems.append("connect() did not fail")
            elif outcome.error is not None:
                if not isinstance(api.error, outcome.error):
                    problems.append(
                        f"connect() raised {type(api.error).__name__}, not {outcome.error.__name__}"
                    )
            elif error_code(api.error) != expected:
                problems.append(
                    f"connect() raised {type(api.error).__name__} with code "
                    f"{error_code(api.error)}, not {expected}"
                )
        return problems
    if not api.opened:
        return [*problems, "the application never saw the connection open"]
    if not same_messages(api.messages, outcome.messages):
        problems.append(
            f"delivered {short(api.messages)}; expected {short(list(outcome.messages))}"
        )
    wanted: tuple[Any, ...]
    if outcome.kind == "open":
        if wire.alive:
            wanted = (1000, FINISH_REASON, True)
            if obs.finish_closes != [1000]:
                problems.append(f"answered the runner's NORMAL close with {obs.finish_closes}")
        elif wire.dropped and not wire.probed:
            wanted = (int(CloseCode.ABNORMAL), None, True)  # the runner dropped it
        else:
            return problems  # it did not stay open: already said
    elif outcome.kind == "close":
        wanted = (outcome.code, None, bool(outcome.by_peer))
    elif outcome.kind == "echo":
        wanted = (outcome.code, outcome.reason, True)
    else:
        wanted = (int(CloseCode.ABNORMAL), None, True)
    if api.lost is None:
        problems.append("the application was not told that the connection closed")
    else:
        code, reason, by_peer = api.lost
        if code != wanted[0] or by_peer is not wanted[2] or wanted[1] not in (None, reason):
            problems.append(
                f"the application saw close {code} {short(reason)} by_peer={by_peer}; expected "
                f"{wanted[0]}{'' if wanted[1] is None else ' ' + short(wanted[1])} "
                f"by_peer={wanted[2]}"
            )
    return problems


# --- Results -------------------------------------------------------------------------------------


@dataclass
class Result:
    case: Case
    role: str
    backend: str
    status: Status
    problems: list[str]
    observed: str
    seconds: float

    def describe(self) -> str:
        lines = [
            f"{self.case.id} [{self.role}, {self.backend}] {self.case.title}: {self.status}",
            f"  expected: {' | '.join(o.describe() for o in self.case.expect)} "
            f"(docs/protocol.md {self.case.spec})",
            f"  observed: {self.observed}",
        ]
        lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)


async def run_case(case: Case, role: str, backend: str = "") -> Result:
    """Run one case against one role, on the running event loop, within a time budget."""
    started = time.monotonic()
    budget = _budget(case)
    run = _run_against_host if role == "host" else _run_against_client
    try:
        with anyio.fail_after(budget):
            wire, api = await run(case)
    except TimeoutError:
        return Result(
            case,
            role,
            backend,
            "FAILED",
            [f"the run did not finish within {budget:g} s"],
            "hung",
            time.monotonic() - started,
        )
    obs = Observation.gather(role, wire, api, case.login)
    strict = [mismatches(o, obs) for o in case.expect]
    if any(not p for p in strict):
        status: Status = "OK"
        problems: list[str] = []
    elif any(not mismatches(o, obs) for o in case.lenient):
        status, problems = "NON-STRICT", []
    else:
        status = "FAILED"
        problems = (
            strict[0]
            if len(strict) == 1
            else [f"(outcome {n + 1}) {p}" for n, ps in enumerate(strict) for p in ps]
        )
    return Result(case, role, backend, status, problems, obs.summary(), time.monotonic() - started)


# --- Report --------------------------------------------------------------------------------------


def format_report(results: list[Result]) -> str:
    """The OK / NON-STRICT / FAILED report, by group, with every NON-STRICT and FAILED run."""
    if not results:
        return "alvaro protocol conformance: no case ran"
    cases = {r.case.id for r in results}
    backends = sorted({r.backend for r in results if r.backend})
    lines = [
        f"alvaro protocol conformance (docs/protocol.md): {len(cases)} cases, {len(results)} runs"
        + (f" on {', '.join(backends)}" if backends else ""),
        "",
        f"  {'group':<42}{'cases':>6}{'OK':>7}{'NON-STRICT':>12}{'FAILED':>8}",
    ]
    totals = {"OK": 0, "NON-STRICT": 0, "FAILED": 0}
    for group, name in GROUPS.items():
        runs = [r for r in results if r.case.group == group]
        if not runs:
            continue
        counts = {s: sum(r.status == s for r in runs) for s in totals}
        for s in totals:
            totals[s] += counts[s]
        n_cases = len({r.case.id for r in runs})
        lines.append(
            f"  {group + ' ' + name:<42}{n_cases:>6}{counts['OK']:>7}"
            f"{counts['NON-STRICT']:>12}{counts['FAILED']:>8}"
        )
    lines.append(
        f"  {'total':<42}{len(cases):>6}{totals['OK']:>7}{totals['NON-STRICT']:>12}"
        f"{totals['FAILED']:>8}"
    )
    lenient: dict[str, list[Result]] = {}
    for r in results:
        if r.status == "NON-STRICT":
            lenient.setdefault(r.case.id, []).append(r)
    if lenient:
        lines += ["", "NON-STRICT (accepted, with the table's justification):"]
        by_reason: dict[str, list[str]] = {}
        for case_id, runs in lenient.items():
            where = ", ".join(f"{r.role}/{r.backend}" if r.backend else r.role for r in runs)
            by_reason.setdefault(runs[0].case.justification, []).append(
                f"{case_id} {runs[0].case.title} [{where}]"
            )
        for reason, entries in by_reason.items():
            lines += [f"  {e}" for e in entries]
            lines.append(f"    why: {reason}")
    failed = [r for r in results if r.status == "FAILED"]
    if failed:
        lines += ["", "FAILED:"]
        for r in failed:
            bug = r.case.known_bug(r.role, r.backend)
            lines.append("  " + r.describe().replace("\n", "\n  "))
            if bug is not None:
                lines.append(f"    known bug: {bug.reason}")
    return "\n".join(lines)
