"""Login with SCRAM-SHA-256, end to end, on asyncio and trio.

A host started with ``login_required=True`` checks every client before any callback sees it; a
client gives ``login=(user, password)`` to :func:`alvaro.aio.connect`. These tests cover the
feature as an application sees it: a successful login and what follows it, the failures (wrong
password, unknown user, no login, a login a host does not expect), logout, the login deadline on
both sides, authenticators, ``add_user_async``, the per-account delay, and clients facing a fake
host (an absurd iteration count, a host that does not know the verifier).

The security cases R05 and R15 to R19 are in ``test_login_security.py``, which shares the tools
defined here: a raw login client (:class:`LoginPeer`), a recording host (:class:`Recorder`),
counters of the work a login costs (the ``work`` fixture) and a wire-frame splitter.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import secrets
import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
import scramp  # type: ignore[import-untyped]  # scramp ships no type information
import scramp.core  # type: ignore[import-untyped]
from anyio.streams.tls import TLSStream

import alvaro.accounts.verifiers
import alvaro.aio.host
import alvaro.testing
from alvaro import AuthenticationError, CloseCode, ConnectError
from alvaro.aio import Client, Connection, Host, connect
from alvaro.auth import Accounts, Verifier, make_verifier
from alvaro.protocol import (
    PREAMBLE,
    AuthChallenge,
    AuthFail,
    AuthOk,
    AuthResponse,
    AuthStart,
    Close,
    Decoder,
    Event,
    FrameType,
    Hello,
    encode_auth_challenge,
    encode_auth_ok,
    encode_auth_response,
    encode_auth_start,
    encode_close,
    encode_hello,
    encode_message,
)

from ..faultproxy import fault_proxy
from ..helpers import WAIT, FakeClock, T, eventually
from ..rawpeer import RawPeer, raw_server

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

    import trustme

pytestmark = pytest.mark.anyio

USER = "alice"
PASSWORD = "correct horse battery staple \u2713"
#: SCRAM's least iteration count: a login costs the client about a millisecond.
FAST = 4096
MECHANISM = "SCRAM-SHA-256"
#: The one AUTH_FAIL reason for an unknown user and a wrong password (docs/protocol.md, 9.8).
WRONG = "wrong user name or password"
AUTH = frozenset({"auth"})
#: Settings of the hosts and clients here: small, so that failures resolve fast.
OPTIONS: dict[str, Any] = {"open_timeout": 20 * T, "login_timeout": 20 * T, "close_timeout": 5 * T}
#: Extra time allowed on top of a deadline for the work around it, on a busy 2-core machine.
MARGIN = 10 * T
LOOPBACK = "127.0.0.1"
_HEADER = struct.Struct("!IBB")


@pytest.fixture(params=["plain", "tls"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- Tools shared with test_login_security.py ---------------------------------------------------


def new_accounts(users: dict[str, str] | None = None, **options: Any) -> Accounts:
    """A store with fast verifiers (4096 rounds) holding ``users`` (name: password)."""
    accounts = Accounts(iterations=FAST, **options)
    for name, password in (users or {}).items():
        accounts.add_user(name, password)
    return accounts


class Recorder:
    """A host's callbacks, recorded in the order they ran; ``got_data`` echoes each message."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.lost: dict[int, tuple[int | None, str | None]] = {}
        self.bans: list[str] = []
        #: The address of each client that reached new_client, by port.
        self.addrs: dict[int, str] = {}

    def logged_in(self, conn: Connection, user: str) -> None:
        self.events.append(("logged_in", conn.port, user, conn.user))

    def new_client(self, conn: Connection) -> None:
        self.events.append(("new_client", conn.port, conn.user))
        self.addrs[conn.port] = conn.addr

    def got_data(self, conn: Connection, data: Any, metadata: dict[str, Any]) -> None:
        self.events.append(("got_data", conn.port, data))
        conn.send_data(data, metadata)

    def lost_client(self, conn: Connection) -> None:
        self.lost[conn.port] = (conn.close_code, conn.close_reason)

    def ip_banned(self, addr: str) -> None:
        self.bans.append(addr)

    @property
    def nothing_reached_the_application(self) -> bool:
        return not self.events and not self.lost

    def install(self, host: Host) -> Host:
        host.logged_in = self.logged_in  # type: ignore[method-assign]
        host.new_client = self.new_client  # type: ignore[method-assign]
        host.got_data = self.got_data  # type: ignore[method-assign]
        host.lost_client = self.lost_client  # type: ignore[method-assign]
        host.ip_banned = self.ip_banned  # type: ignore[method-assign]
        return host


def login_host(
    recorder: Recorder | None = None,
    *,
    users: dict[str, str] | None = None,
    accounts: Accounts | None = None,
    addr: str | None = LOOPBACK,
    **options: Any,
) -> Host:
    """A host that requires login, with ``users`` (default: alice) in a fast store."""
    if accounts is None:
        accounts = new_accounts({USER: PASSWORD} if users is None else users)
    host = Host(
        addr,  # type: ignore[arg-type]  # None: every interface, dual-stack where possible
        0,
        login_required=True,
        accounts=accounts,
        **{**OPTIONS, **options},
    )
    if recorder is not None:
        recorder.install(host)
    return host


def split_frames(stream: bytes) -> list[tuple[int, bytes]]:
    """The complete frames of one direction of a plaintext stream, after the preamble, each as
    ``(type, the frame's exact bytes)``."""
    assert stream.startswith(PREAMBLE), stream[:16]
    frames = []
    pos = len(PREAMBLE)
    while pos + _HEADER.size <= len(stream):
        length, frame_type, _flags = _HEADER.unpack_from(stream, pos)
        end = pos + _HEADER.size + length
        if end > len(stream):
            break
        frames.append((frame_type, stream[pos:end]))
        pos = end
    return frames


def scram_fields(message: str) -> dict[str, str]:
    """The attributes of a SCRAM message: ``"r=abc,s=xyz,i=4096"`` -> ``{"r": "abc", ...}``."""
    return dict(part.split("=", 1) for part in message.split(","))


def junk_proof(challenge: str) -> str:
    """A client-final-message with a made-up proof: a guess that costs the guesser nothing."""
    nonce = scram_fields(challenge)["r"]
    return f"c=biws,r={nonce},p={base64.b64encode(bytes(32)).decode()}"


@dataclass
class Attempt:
    """How one raw login ended.

    ``outcome`` is "ok" (AUTH_OK), "fail" (AUTH_FAIL), "refused" (a CLOSE instead of the host's
    HELLO: refused at accept), "closed" (a CLOSE during the login) or "eof" (nothing said).
    """

    outcome: str
    reason: str = ""
    close: Close | None = None
    challenge: str | None = None
    received: bytes = b""


class LoginPeer(RawPeer):
    """A raw client that speaks the login by hand (feature ``auth``), over TCP or TLS."""

    def __init__(self, stream: anyio.abc.SocketStream) -> None:
        super().__init__(stream, "client")
        self.decoder = Decoder("client", features=AUTH)
        self._cursor = 0

    @classmethod
    async def open(
        cls, port: int, *, local_host: str = LOOPBACK, tls: ssl.SSLContext | None = None
    ) -> LoginPeer:
        """Connect from ``local_host`` to 127.0.0.1:port, with TLS if ``tls`` is given."""
        stream: Any = await anyio.connect_tcp(LOOPBACK, port, local_host=local_host)
        if tls is not None:
            try:
                stream = await TLSStream.wrap(
                    stream, hostname=LOOPBACK, ssl_context=tls, standard_compatible=False
                )
            except BaseException:
                await stream.aclose()
                raise
        return cls(stream)

    async def next_event(self) -> Event | None:
        """The next event the host sent, in order; ``None`` once the connection has ended."""
        while self._cursor >= len(self.events):
            if not await self.read_chunk():
                return None
        event = self.events[self._cursor]
        self._cursor += 1
        return event

    async def start(self) -> Hello | Close | None:
        """Send the preamble and a HELLO offering ``auth``; return the host's first answer."""
        await self.send(encode_hello("client", features=AUTH))
        event = await self.next_event()
        assert event is None or isinstance(event, (Hello, Close)), event
        return event

    async def finish(self, outcome: str, reason: str = "", **fields: Any) -> Attempt:
        """Read until the host closes; the attempt's record."""
        await self.read_until_eof()
        closes = self.closes()
        return Attempt(
            outcome,
            reason,
            closes[-1] if closes else None,
            received=bytes(self.received),
            **fields,
        )

    async def login(self, user: str, password: str | None, first: str | None = None) -> Attempt:
        """Log in: with the password's real proof, or a made-up one when ``password`` is None.

        ``first`` replaces the client-first-message (a user name scramp would not send).
        """
        hello = await self.start()
        if hello is None:
            return await self.finish("eof")
        if isinstance(hello, Close):
            # Refused at accept. The host waits (a little) for this side to close: do not wait
            # for it to close first.
            return Attempt("refused", hello.reason, hello, received=bytes(self.received))
        assert hello.auth_required
        client = None if password is None else scramp.ScramClient([MECHANISM], user, password)
        if first is None:
            nonce = secrets.token_hex(16)
            first = f"n,,n={user},r={nonce}" if client is None else client.get_client_first()
        await self.send(encode_auth_start(first))
        event = await self.next_event()
        challenge = None
        if isinstance(event, AuthChallenge):
            challenge = event.message
            if client is None:
                final = junk_proof(challenge)
            else:
                client.set_server_first(challenge)
                final = client.get_client_final()
            await self.send(encode_auth_response(final))
            event = await self.next_event()
        if isinstance(event, AuthOk):
            assert event.user == user
            await self.send(encode_close(CloseCode.NORMAL, "done"))
            return await self.finish("ok", challenge=challenge)
        if isinstance(event, AuthFail):
            return await self.finish("fail", event.reason, challenge=challenge)
        if isinstance(event, Close):
            return await self.finish("closed", event.reason, challenge=challenge)
        assert event is None, event
        return await self.finish("eof", challenge=challenge)


async def raw_login(
    port: int,
    user: str,
    password: str | None = None,
    *,
    local_host: str = LOOPBACK,
    tls: ssl.SSLContext | None = None,
    first: str | None = None,
) -> Attempt:
    """One whole login by hand from ``local_host``; see :meth:`LoginPeer.login`."""
    with anyio.fail_after(WAIT):
        peer = await LoginPeer.open(port, local_host=local_host, tls=tls)
        try:
            return await peer.login(user, password, first)
        finally:
            await peer.aclose()


async def login_fails(port: int, login: tuple[str, str], **options: Any) -> AuthenticationError:
    """Connect with ``login`` and expect an AuthenticationError; return it."""
    with anyio.fail_after(WAIT), pytest.raises(AuthenticationError) as info:
        async with connect(LOOPBACK, port, login=login, **{**OPTIONS, **options}):
            pass
    return info.value


class Work:
    """How often each telling step of a login ran, in any thread of this process.

    ``pbkdf2``: key derivations (a client's proof, or add_user); ``derive``: the store's
    derivations (add_user); ``make_server``/``client_first``/``proof``: the host's SCRAM steps
    (``proof`` checks a client's proof); ``auth_info``: verifier look-ups; ``record_failure``:
    failures counted; ``start_tls``: TLS handshakes the host began.
    """

    def __init__(self) -> None:
        self._calls: dict[str, list[int]] = defaultdict(list)

    def note(self, label: str) -> None:
        self._calls[label].append(threading.get_ident())

    def __getitem__(self, label: str) -> int:
        return len(self._calls[label])

    def threads(self, label: str, since: dict[str, int] | None = None) -> set[int]:
        """The threads ``label`` ran in (since the :meth:`snapshot` ``since``)."""
        return set(self._calls[label][(since or {}).get(label, 0) :])

    def snapshot(self) -> dict[str, int]:
        return {label: len(calls) for label, calls in self._calls.items()}

    def since(self, before: dict[str, int]) -> dict[str, int]:
        """What ran since ``before`` (a :meth:`snapshot`), leaving out what did not."""
        now = self.snapshot()
        return {
            label: n - before.get(label, 0) for label, n in now.items() if n != before.get(label)
        }


def count_work(monkeypatch: pytest.MonkeyPatch) -> Work:
    """Count the work of logins (see :class:`Work`) by wrapping the functions that do it."""
    counts = Work()

    def spy(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)

        def counting(*args: Any, **kwargs: Any) -> Any:
            counts.note(label)
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counting)

    spy(hashlib, "pbkdf2_hmac", "pbkdf2")
    spy(alvaro.accounts.verifiers, "derive", "derive")
    spy(scramp.ScramMechanism, "make_server", "make_server")
    spy(scramp.core.ScramServer, "set_client_first", "client_first")
    spy(scramp.core.ScramServer, "set_client_final", "proof")
    spy(Accounts, "auth_info", "auth_info")
    spy(Accounts, "record_failure", "record_failure")
    # The host's TLS handshakes (the client's, in this same process, go through the same
    # pipeline function but not through the host module's name for it).
    secure = alvaro.aio.host.secure

    async def counting_secure(*args: Any, **kwargs: Any) -> Any:
        counts.note("start_tls")
        return await secure(*args, **kwargs)

    monkeypatch.setattr(alvaro.aio.host, "secure", counting_secure)
    return counts


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Work:
    return count_work(monkeypatch)


def tls_options(transport: str, ca: trustme.CA) -> tuple[dict[str, Any], dict[str, Any]]:
    """The host's and the client's TLS options for ``transport`` ("plain" or "tls")."""
    if transport == "plain":
        return {}, {}
    return (
        {"ssl_context": alvaro.testing.server_context(ca)},
        {"ssl_context": alvaro.testing.client_context(ca)},
    )


def fake_host(iterations: int, closes: list[Close], *, answer: bool) -> Callable[[RawPeer], Any]:
    """A raw_server handler that plays a host requiring login without knowing any verifier: it
    challenges with ``iterations`` and, if ``answer``, accepts any proof with a made-up server
    signature. What the client closed with goes to ``closes``."""

    async def handler(peer: RawPeer) -> None:
        peer.decoder = Decoder("host", features=AUTH, login_required=True)
        await peer.handshake(encode_hello("host", features=AUTH, auth_required=True))
        start = await peer.expect(AuthStart)
        nonce = scram_fields(start.message.split(",", 2)[2])["r"] + secrets.token_hex(8)
        salt = base64.b64encode(secrets.token_bytes(16)).decode()
        await peer.send(encode_auth_challenge(f"r={nonce},s={salt},i={iterations}"))
        if answer:
            await peer.expect(AuthResponse)
            signature = base64.b64encode(secrets.token_bytes(32)).decode()
            await peer.send(encode_auth_ok(f"v={signature}", USER))
        await peer.read_until_eof()
        closes.extend(peer.closes())

    return handler


# --- A successful login --------------------------------------------------------------------------


async def test_login_succeeds_then_callbacks_run_and_messages_flow(
    transport: str, alvaro_ca: trustme.CA, work: Work
) -> None:
    recorder = Recorder()
    host_tls, client_tls = tls_options(transport, alvaro_ca)
    host = login_host(recorder, **host_tls)
    client = Client(**OPTIONS, **client_tls)
    seen: list[tuple[str, str | None]] = []
    client.logged_in = lambda: seen.append(("logged_in", client.user))  # type: ignore[method-assign]
    client.made_connection = lambda: seen.append(("made_connection", client.user))  # type: ignore[method-assign]
    before = work.snapshot()
    with anyio.fail_after(WAIT):
        async with host, anyio.create_task_group() as tasks:
            await tasks.start(
                functools.partial(client.connect, LOOPBACK, host.port, login=(USER, PASSWORD))
            )
            assert client.user == USER
            assert client.connection is not None
            assert client.connection.user == USER
            await client.send({"n": 1})
            assert (await client.receive()).data == {"n": 1}
            (conn,) = host.clients
            assert conn.user == USER
            assert (conn.tls is not None) is (transport == "tls")
            port = conn.port
            await client.aclose()
            await eventually(lambda: port in recorder.lost)
    # The host's callbacks: logged_in first, then new_client, both with conn.user set.
    assert recorder.events == [
        ("logged_in", port, USER, USER),
        ("new_client", port, USER),
        ("got_data", port, {"n": 1}),
    ]
    assert recorder.lost[port][0] == CloseCode.NORMAL
    assert seen == [("logged_in", USER), ("made_connection", USER)]
    (attempt,) = host.get_login_attempts()
    assert (attempt.username, attempt.address, attempt.success) == (USER, LOOPBACK, True)
    # One key derivation, the client's, in a worker thread; the host checked one proof.
    done = work.since(before)
    assert done["pbkdf2"] == 1
    assert threading.get_ident() not in work.threads("pbkdf2", since=before)
    assert done["proof"] == 1
    assert "derive" not in done


async def test_wait_for_login_from_another_thread() -> None:
    host = login_host()
    async with host:
        client = Client(**OPTIONS)
        results: list[bool] = []

        async def wait_in_a_thread() -> None:
            results.append(await anyio.to_thread.run_sync(client.wait_for_login, WAIT))

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(wait_in_a_thread)
                await tasks.start(
                    functools.partial(client.connect, LOOPBACK, host.port, login=(USER, PASSWORD))
                )
                await eventually(lambda: bool(results))
                await client.aclose()
        assert results == [True]

        refused = Client(**OPTIONS)
        with anyio.fail_after(WAIT), pytest.raises(AuthenticationError):
            await refused.connect(LOOPBACK, host.port, login=(USER, "not the password"))
        with pytest.raises(AuthenticationError, match=WRONG):
            refused.wait_for_login(0)


# --- Failures ------------------------------------------------------------------------------------


async def test_wrong_password_and_unknown_user_get_identical_frames_and_reason() -> None:
    """R17 through a real client: the host's frames, captured by a proxy, differ only in the
    random parts of the challenge; the AUTH_FAIL and CLOSE frames are byte-identical."""
    recorder = Recorder()
    host = login_host(recorder)
    reasons = []
    attempts = [(USER, "not the password"), ("mallory", "not the password"), ("trudy", PASSWORD)]
    async with host, fault_proxy(host.port) as proxy:
        for login in attempts:
            reasons.append((await login_fails(proxy.port, login)).reason)
        with anyio.fail_after(WAIT):
            for link in proxy.connections:
                await link.closed.wait()
    assert len(set(reasons)) == 1
    assert WRONG in reasons[0]
    streams = [split_frames(link.captured("downstream")) for link in proxy.connections]
    expected = [FrameType.HELLO, FrameType.AUTH_CHALLENGE, FrameType.AUTH_FAIL, FrameType.CLOSE]
    for frames in streams:
        assert [frame_type for frame_type, _ in frames] == expected
    for index in (0, 2, 3):  # HELLO, AUTH_FAIL, CLOSE
        assert len({frames[index][1] for frames in streams}) == 1, expected[index].name
    challenges = [scram_fields(json.loads(frames[1][1][6:])["message"]) for frames in streams]
    assert {c["i"] for c in challenges} == {str(FAST)}
    assert len({len(c["s"]) for c in challenges}) == 1
    assert len({len(c["r"]) for c in challenges}) == 1
    assert recorder.nothing_reached_the_application
    assert [(a.username, a.success) for a in host.get_login_attempts()] == [
        (name, False) for name, _ in attempts
    ]


async def test_unknown_user_gets_a_stable_challenge_like_a_real_users() -> None:
    accounts = new_accounts({USER: PASSWORD}, delay_base=0)
    async with login_host(accounts=accounts) as host:
        real = await raw_login(host.port, USER)
        ghost = await raw_login(host.port, "mallory")
        again = await raw_login(host.port, "mallory")
    for attempt in (real, ghost, again):
        assert (attempt.outcome, attempt.reason) == ("fail", WRONG)
    assert real.challenge is not None
    assert ghost.challenge is not None
    assert again.challenge is not None
    real_fields, ghost_fields = scram_fields(real.challenge), scram_fields(ghost.challenge)
    # A real user's salt never changes: neither does the made-up one of an unknown name.
    assert scram_fields(again.challenge)["s"] == ghost_fields["s"]
    assert ghost_fields["s"] != real_fields["s"]
    assert len(ghost_fields["s"]) == len(real_fields["s"])
    assert ghost_fields["i"] == real_fields["i"] == str(FAST)


async def test_client_without_login_is_refused_by_a_host_that_requires_it(work: Work) -> None:
    recorder = Recorder()
    async with login_host(recorder) as host:
        with anyio.fail_after(WAIT), pytest.raises(AuthenticationError, match="requires login"):
            async with connect(LOOPBACK, host.port, **OPTIONS):
                pass
    assert recorder.nothing_reached_the_application
    assert host.get_login_attempts() == []
    assert work["make_server"] == 0


async def test_login_to_a_host_without_login_fails_before_sending_anything_secret() -> None:
    new: list[Connection] = []
    host = Host(LOOPBACK, 0, **OPTIONS)
    host.new_client = new.append  # type: ignore[method-assign]
    user = "alice_the_administrator"
    async with host, fault_proxy(host.port) as proxy:
        with (
            anyio.fail_after(WAIT),
            pytest.raises(AuthenticationError, match="does not use logins"),
        ):
            async with connect(LOOPBACK, proxy.port, login=(user, PASSWORD), **OPTIONS):
                pass
        with anyio.fail_after(WAIT):
            await proxy.connections[0].closed.wait()
    upstream = proxy.connections[0].captured("upstream")
    assert upstream.startswith(PREAMBLE)
    assert user.encode() not in upstream
    assert PASSWORD.encode() not in upstream


# --- Logout --------------------------------------------------------------------------------------


async def test_logout_ends_the_session() -> None:
    recorder = Recorder()
    client = Client(**OPTIONS)
    async with login_host(recorder) as host, anyio.create_task_group() as tasks:
        with anyio.fail_after(WAIT):
            await tasks.start(
                functools.partial(client.connect, LOOPBACK, host.port, login=(USER, PASSWORD))
            )
            await client.send("before")
            assert (await client.receive()).data == "before"
            (conn,) = host.clients
            await client.logout()
            assert not client.connected
            await eventually(lambda: conn.port in recorder.lost)
            await client.logout()  # not logged in any more: nothing to do
    assert recorder.lost[conn.port] == (CloseCode.NORMAL, "logged out")
    assert client.user is None
    assert client.connection is not None
    assert client.connection.user == USER
    assert client.connection.close_code == CloseCode.NORMAL


async def test_nothing_sent_after_logout_reaches_the_application() -> None:
    recorder = Recorder()
    async with login_host(recorder) as host:
        with anyio.fail_after(WAIT):
            peer = await LoginPeer.open(host.port)
            client = scramp.ScramClient([MECHANISM], USER, PASSWORD)
            assert isinstance(await peer.start(), Hello)
            await peer.send(encode_auth_start(client.get_client_first()))
            challenge = await peer.next_event()
            assert isinstance(challenge, AuthChallenge)
            client.set_server_first(challenge.message)
            await peer.send(encode_auth_response(client.get_client_final()))
            assert isinstance(await peer.next_event(), AuthOk)
            await eventually(lambda: len(recorder.events) == 2)
            logout = _HEADER.pack(0, FrameType.LOGOUT, 0)
            await peer.send(logout + encode_message("after logout"))
            await peer.read_until_eof()
            await peer.aclose()
            await eventually(lambda: bool(recorder.lost))
    assert [event[0] for event in recorder.events] == ["logged_in", "new_client"]
    (lost,) = recorder.lost.values()
    assert lost == (CloseCode.NORMAL, "logged out")


# --- Deadlines -----------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["after_hello", "after_auth_start"])
async def test_login_timeout_closes_a_client_that_does_not_log_in(stage: str, work: Work) -> None:
    recorder = Recorder()
    login_timeout = 5 * T
    async with login_host(recorder, login_timeout=login_timeout) as host:
        with anyio.fail_after(WAIT):
            started = time.monotonic()
            peer = await LoginPeer.open(host.port)
            assert isinstance(await peer.start(), Hello)
            if stage == "after_auth_start":
                await peer.send(encode_auth_start(f"n,,n={USER},r={secrets.token_hex(16)}"))
                assert isinstance(await peer.next_event(), AuthChallenge)
            await peer.read_until_eof()
            elapsed = time.monotonic() - started
            await peer.aclose()
    assert [close.code for close in peer.closes()] == [CloseCode.TIMEOUT]
    assert login_timeout * 0.9 <= elapsed <= login_timeout + MARGIN
    assert recorder.nothing_reached_the_application
    assert work["proof"] == 0


async def test_client_gives_up_on_a_host_that_never_answers_the_login() -> None:
    closes: list[Close] = []

    async def silent_host(peer: RawPeer) -> None:
        peer.decoder = Decoder("host", features=AUTH, login_required=True)
        await peer.handshake(encode_hello("host", features=AUTH, auth_required=True))
        await peer.expect(AuthStart)
        await peer.read_until_eof()
        closes.extend(peer.closes())

    login_timeout = 5 * T
    async with raw_server(silent_host) as port:
        started = time.monotonic()
        with anyio.fail_after(WAIT), pytest.raises(TimeoutError):
            async with connect(
                LOOPBACK,
                port,
                login=(USER, PASSWORD),
                **{**OPTIONS, "login_timeout": login_timeout},
            ):
                pass
        elapsed = time.monotonic() - started
        await eventually(lambda: bool(closes))
    assert login_timeout * 0.9 <= elapsed <= login_timeout + MARGIN
    assert [close.code for close in closes] == [CloseCode.TIMEOUT]


# --- Users kept elsewhere: authenticators --------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_authenticator_looks_users_up_elsewhere(kind: str) -> None:
    stored = {USER: make_verifier(PASSWORD, FAST).to_string()}
    asked: list[tuple[str, int]] = []

    def lookup(name: str) -> Verifier | None:
        asked.append((name, threading.get_ident()))
        text = stored.get(name)
        return None if text is None else Verifier.from_string(text)

    async def lookup_async(name: str) -> Verifier | None:
        await anyio.lowlevel.checkpoint()
        return lookup(name)

    recorder = Recorder()
    host = login_host(
        recorder,
        accounts=new_accounts({}),
        authenticator=lookup if kind == "sync" else lookup_async,
    )
    async with host:
        with anyio.fail_after(WAIT):
            async with connect(LOOPBACK, host.port, login=(USER, PASSWORD), **OPTIONS) as client:
                assert client.user == USER
        unknown = await login_fails(host.port, ("bob", PASSWORD))
        wrong = await login_fails(host.port, (USER, "not the password"))
        # A name that is not valid never reaches the authenticator, and fails the same way.
        invalid = await raw_login(
            host.port, "al/ice", first=f"n,,n=al/ice,r={secrets.token_hex(8)}"
        )
    assert unknown.reason == wrong.reason
    assert WRONG in unknown.reason
    assert (invalid.outcome, invalid.reason) == ("fail", WRONG)
    assert [name for name, _ in asked] == [USER, "bob", USER]
    threads = {thread for _, thread in asked}
    if kind == "sync":  # a plain function may block: it runs in a worker thread
        assert threading.get_ident() not in threads
    else:
        assert threads == {threading.get_ident()}
    assert [event[0] for event in recorder.events] == ["logged_in", "new_client"]
    # Failures still count in the host's store.
    assert [(a.username, a.success) for a in host.get_login_attempts()] == [
        (USER, True),
        ("bob", False),
        (USER, False),
        ("al/ice", False),
    ]


async def test_authenticator_that_raises_costs_only_that_login(
    caplog: pytest.LogCaptureFixture,
) -> None:
    verifier = make_verifier(PASSWORD, FAST)
    broken = [True]

    def lookup(name: str) -> Verifier | None:
        if broken[0]:
            raise RuntimeError("the user database is down")
        return verifier if name == USER else None

    recorder = Recorder()
    caplog.set_level(logging.ERROR, logger="alvaro.host")
    async with login_host(recorder, accounts=new_accounts({}), authenticator=lookup) as host:
        with anyio.fail_after(WAIT), pytest.raises(ConnectError) as info:
            async with connect(LOOPBACK, host.port, login=(USER, PASSWORD), **OPTIONS):
                pass
        # Not the user's fault: not reported as a failed login.
        assert not isinstance(info.value, AuthenticationError)
        assert recorder.nothing_reached_the_application
        broken[0] = False
        with anyio.fail_after(WAIT):
            async with connect(LOOPBACK, host.port, login=(USER, PASSWORD), **OPTIONS) as client:
                assert client.user == USER
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], RuntimeError)]
    assert len(logged) == 1


async def test_add_user_async_derives_off_the_event_loop(work: Work) -> None:
    async with login_host(users={}) as host:
        with anyio.fail_after(WAIT):
            await host.add_user_async("carol", PASSWORD)
            assert work["derive"] == 1
            assert threading.get_ident() not in work.threads("derive")
            async with connect(LOOPBACK, host.port, login=("carol", PASSWORD), **OPTIONS) as c:
                assert c.user == "carol"
            with pytest.raises(ValueError, match="exists"):
                await host.add_user_async("carol", "another password")
            assert work["derive"] == 1  # refused before deriving
            await host.add_user_async("carol", "another password", replace=True)
            async with connect(
                LOOPBACK, host.port, login=("carol", "another password"), **OPTIONS
            ) as c:
                assert c.user == "carol"
        await login_fails(host.port, ("carol", PASSWORD))
    assert host.users == ["carol"]


# --- The per-account delay -----------------------------------------------------------------------


async def test_account_delay_refuses_early_attempts_for_that_name_only(work: Work) -> None:
    clock = FakeClock()
    accounts = new_accounts(
        {USER: PASSWORD, "bob": "bob's password"},
        clock=clock.clock,
        now=clock.now,
        delay_base=100,
        delay_max=1000,
    )
    async with login_host(accounts=accounts) as host:
        port = host.port
        assert WRONG in (await login_fails(port, (USER, "not the password"))).reason
        assert accounts.account_delay(USER) == 100
        proofs = work["proof"]
        # The right password, too early: refused before the challenge, nothing verified.
        early = await login_fails(port, (USER, PASSWORD))
        assert "try again in 100 s" in early.reason
        assert work["proof"] == proofs
        # Another account is not held up.
        with anyio.fail_after(WAIT):
            async with connect(LOOPBACK, port, login=("bob", "bob's password"), **OPTIONS) as c:
                assert c.user == "bob"
        # Names that are not users wait the same way: the delay tells nothing.
        assert WRONG in (await login_fails(port, ("mallory", "guess"))).reason
        assert "try again in 100 s" in (await login_fails(port, ("mallory", "guess"))).reason
        clock.advance(100)
        with anyio.fail_after(WAIT):
            async with connect(LOOPBACK, port, login=(USER, PASSWORD), **OPTIONS) as c:
                assert c.user == USER
        assert accounts.account_delay(USER) == 0  # a success resets the count
        await login_fails(port, (USER, "not the password"))
        clock.advance(100)
        await login_fails(port, (USER, "not the password"))
        assert accounts.account_delay(USER) == 200  # doubles with each consecutive failure


async def test_host_waits_out_a_short_account_delay() -> None:
    delay = 5 * T
    accounts = new_accounts({USER: PASSWORD}, delay_base=delay)
    async with login_host(accounts=accounts) as host:
        await login_fails(host.port, (USER, "not the password"))
        started = time.monotonic()
        with anyio.fail_after(WAIT):
            async with connect(LOOPBACK, host.port, login=(USER, PASSWORD), **OPTIONS) as c:
                assert c.user == USER
        waited = time.monotonic() - started
    assert waited >= delay / 2
    assert accounts.account_delay(USER) == 0


# --- Clients facing a fake host ------------------------------------------------------------------


@pytest.mark.parametrize("iterations", [100, 4095, 10_000_001, 100_000_000, 10**50])
async def test_client_refuses_an_absurd_iteration_count_without_deriving(
    iterations: int, work: Work
) -> None:
    closes: list[Close] = []
    async with raw_server(fake_host(iterations, closes, answer=False)) as port:
        with anyio.fail_after(WAIT), pytest.raises(AuthenticationError, match="rounds"):
            async with connect(LOOPBACK, port, login=(USER, PASSWORD), **OPTIONS):
                pass
        await eventually(lambda: bool(closes))
    assert work["pbkdf2"] == 0  # no CPU burned on the host's say-so
    assert [close.code for close in closes] == [CloseCode.POLICY_VIOLATION]


async def test_client_detects_a_host_that_does_not_know_the_verifier(work: Work) -> None:
    closes: list[Close] = []
    async with raw_server(fake_host(FAST, closes, answer=True)) as port:
        with anyio.fail_after(WAIT), pytest.raises(AuthenticationError, match="could not prove"):
            async with connect(LOOPBACK, port, login=(USER, PASSWORD), **OPTIONS):
                pass
        await eventually(lambda: bool(closes))
    assert [close.code for close in closes] == [CloseCode.POLICY_VIOLATION]
    assert work["pbkdf2"] == 1
