"""The security cases of login, on asyncio and trio: R05, R15 (as adapted), R17, R18 and R19.

* R05: before a client has logged in, the host accepts nothing but the login: messages, large
  frames, unknown or misplaced frames and repeated HELLOs close the connection with their code,
  reach no callback, change no state of the host and cost it no key derivation. Plain and TLS.
* R15, adapted by DESIGN.md: SCRAM never sends the password, so login over plain TCP is allowed
  with a WARNING (once per host start, once per client). What crosses the wire, in both
  directions, never holds the password; under TLS not the user name either.
* R17: an unknown user and a wrong password get byte-identical failure frames and cost the host
  the same work; unknown users count towards the address's ban.
* R18: with a fake clock, failed logins ban one address (also as ``::ffff:a.b.c.d``), at accept
  and before TLS, for exactly the ban's length, reported once; other addresses and the legitimate
  user are not affected; concurrent guesses never get more proofs checked than the limit.
* R19: awkward passwords authenticate exactly, SASLprep's normalization is applied as documented,
  over-long passwords and invalid user names are refused before any derivation, on both sides,
  and no file is ever named after a user.

R16 (the saved store) is in ``tests/test_login_persistence.py``. The tools come from
``test_login.py``.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import secrets
import socket
import ssl
import unicodedata
from typing import TYPE_CHECKING, Any

import anyio
import pytest
import scramp  # type: ignore[import-untyped]  # scramp ships no type information

from alvaro import CloseCode
from alvaro.aio import Client, connect
from alvaro.auth import Accounts, Verifier
from alvaro.protocol import (
    CONTROL_LIMIT,
    PREAMBLE,
    AuthChallenge,
    AuthFail,
    AuthOk,
    FrameType,
    Hello,
    encode_auth_ok,
    encode_auth_response,
    encode_auth_start,
    encode_hello,
    encode_message,
)

from ..faultproxy import DIRECTIONS, fault_proxy
from ..helpers import WAIT, FakeClock, eventually
from ..rawpeer import RawPeer, frame_header, raw_server
from .test_login import (
    AUTH,
    FAST,
    LOOPBACK,
    MECHANISM,
    OPTIONS,
    PASSWORD,
    USER,
    WRONG,
    Attempt,
    LoginPeer,
    Recorder,
    Work,
    count_work,
    login_fails,
    login_host,
    new_accounts,
    raw_login,
    scram_fields,
    split_frames,
    tls_options,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import trustme

    from alvaro.aio import Host

pytestmark = pytest.mark.anyio

ATTACKER = "127.0.0.2"
BYSTANDER = "127.0.0.3"
BANNED = "this address is banned after too many failed logins; try again later"
#: The default policy: 5 failures from one address within 30 minutes ban it for 10 minutes.
MAX_FAILURES = 5
BAN = 600.0


@pytest.fixture(params=["plain", "tls"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def work(monkeypatch: pytest.MonkeyPatch) -> Work:
    return count_work(monkeypatch)


def state_of(host: Host) -> tuple[Any, ...]:
    """What unauthenticated input must never change on a host."""
    return (
        host.users,
        host.accounts.auth_info(USER),
        host.settings,
        host.bans,
        host.get_login_attempts(),
        host.login_required,
        host.max_connections,
        host.max_unauthenticated_per_address,
        host.ssl_context,
    )


def _frame(frame_type: int, body: bytes = b"", flags: int = 0) -> bytes:
    return frame_header(len(body), frame_type, flags) + body


def _auth_start_body(message: str) -> bytes:
    return f'{{"mechanism":"{MECHANISM}","message":"{message}"}}'.encode()


# --- R05: nothing but the login before the login -------------------------------------------------

_HUGE_AUTH_START = _frame(FrameType.AUTH_START, _auth_start_body("n,,n=alice,r=" + "x" * 2**20))

#: What a raw client sends after the HELLOs, and the code the host must close with.
R05_CASES: dict[str, tuple[bytes, int]] = {
    "data": (encode_message("let me in"), CloseCode.POLICY_VIOLATION),
    "data_of_1MiB": (
        frame_header(2**20 + 4, FrameType.DATA) + bytes(1000),
        CloseCode.POLICY_VIOLATION,
    ),
    "frame_of_4KiB_plus_1": (
        frame_header(CONTROL_LIMIT + 1, FrameType.AUTH_START) + bytes(1000),
        CloseCode.MESSAGE_TOO_BIG,
    ),
    # The header says 1 MiB; the host refuses it from the header, before reading the body.
    "auth_start_with_1MiB_message": (_HUGE_AUTH_START[:1000], CloseCode.MESSAGE_TOO_BIG),
    "unassigned_type": (_frame(0x30, b"{}"), CloseCode.PROTOCOL_ERROR),
    "reserved_type": (_frame(FrameType.REQUEST, b"{}"), CloseCode.PROTOCOL_ERROR),
    "auth_ok_from_a_client": (encode_auth_ok("v=AAAA", USER), CloseCode.PROTOCOL_ERROR),
    "auth_response_first": (encode_auth_response("c=biws,r=x,p=AAAA"), CloseCode.PROTOCOL_ERROR),
    "logout_first": (_frame(FrameType.LOGOUT), CloseCode.PROTOCOL_ERROR),
    "auth_start_with_flags": (
        _frame(FrameType.AUTH_START, _auth_start_body("n,,n=alice,r=abc"), flags=1),
        CloseCode.PROTOCOL_ERROR,
    ),
    "100_hellos": (
        encode_hello("client", features=AUTH)[len(PREAMBLE) :] * 99,
        CloseCode.PROTOCOL_ERROR,
    ),
    # After AUTH_START: the host has challenged, and still takes nothing but AUTH_RESPONSE.
    "data_during_login": (encode_message("let me in"), CloseCode.POLICY_VIOLATION),
    # Right behind an AUTH_RESPONSE with the right password, in the same write, before AUTH_OK.
    "data_right_after_the_proof": (encode_message("let me in"), CloseCode.POLICY_VIOLATION),
}


@pytest.mark.parametrize("case", list(R05_CASES))
async def test_r05_nothing_but_the_login_is_accepted_before_it(
    case: str,
    transport: str,
    alvaro_server_ssl_context: ssl.SSLContext,
    alvaro_client_ssl_context: ssl.SSLContext,
    work: Work,
) -> None:
    payload, code = R05_CASES[case]
    tls = transport == "tls"
    recorder = Recorder()
    host = login_host(recorder, ssl_context=alvaro_server_ssl_context if tls else None)
    state = state_of(host)
    before = work.snapshot()
    async with host:
        with anyio.fail_after(WAIT):
            peer = await LoginPeer.open(host.port, tls=alvaro_client_ssl_context if tls else None)
            assert isinstance(await peer.start(), Hello)
            expected: dict[str, int] = {"start_tls": 1} if tls else {}
            if case in ("data_during_login", "data_right_after_the_proof"):
                client = scramp.ScramClient([MECHANISM], USER, PASSWORD)
                await peer.send(encode_auth_start(client.get_client_first()))
                challenge = await peer.next_event()
                assert isinstance(challenge, AuthChallenge)
                expected.update(make_server=1, client_first=1, auth_info=1)
                if case == "data_right_after_the_proof":
                    client.set_server_first(challenge.message)
                    payload = encode_auth_response(client.get_client_final()) + payload
                    expected["pbkdf2"] = 1  # this raw client's own derivation
            await peer.send(payload)
            await peer.read_until_eof()
            await peer.aclose()
        done = work.since(before)
        assert state_of(host) == state
    assert [close.code for close in peer.closes()] == [code]
    # No verdict either way: the host closed without AUTH_OK or AUTH_FAIL.
    assert not [e for e in peer.events if isinstance(e, (AuthOk, AuthFail))]
    assert recorder.nothing_reached_the_application
    # No key derivation by the host, no proof checked, nothing counted as a login.
    assert done == expected


# --- R15 (adapted): login over plain TCP is allowed, and nothing secret crosses the wire ---------


def _base64_forms(secret: bytes) -> list[bytes]:
    """The parts of the base64 text of ``secret`` that do not depend on what surrounds it, at each
    of the three alignments it can have inside a longer base64 text."""
    forms = []
    for shift in range(3):
        text = base64.b64encode(bytes(shift) + secret)
        forms.append(text[4 if shift else 0 : -4])
    return forms


async def test_r15_plain_login_warns_once_per_host_start_and_once_per_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="alvaro")
    host = login_host()
    same = Client(**OPTIONS)
    for _ in range(2):  # two starts of one host
        async with host:
            for _ in range(2):  # two new clients
                with anyio.fail_after(WAIT):
                    async with connect(
                        LOOPBACK, host.port, login=(USER, PASSWORD), **OPTIONS
                    ) as client:
                        assert client.user == USER
            for _ in range(2):  # one client, twice
                with anyio.fail_after(WAIT):
                    async with anyio.create_task_group() as tasks:
                        await tasks.start(
                            functools.partial(
                                same.connect, LOOPBACK, host.port, login=(USER, PASSWORD)
                            )
                        )
                        assert same.user == USER
                        await same.aclose()
    host_warnings = [
        r for r in caplog.records if r.name == "alvaro.host" and "TLS is off" in r.getMessage()
    ]
    client_warnings = [
        r for r in caplog.records if r.name == "alvaro.client" and "without TLS" in r.getMessage()
    ]
    assert len(host_warnings) == 2  # once per start
    assert len(client_warnings) == 2 * 2 + 1  # once per client object
    assert all(r.levelno == logging.WARNING for r in host_warnings + client_warnings)


async def test_r15_the_password_never_crosses_the_wire(
    transport: str, alvaro_ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="alvaro")
    user = "alice_the_administrator"
    password = "correct horse battery staple \u2713 SECRET"
    recorder = Recorder()
    host_tls, client_tls = tls_options(transport, alvaro_ca)
    host = login_host(recorder, users={user: password}, **host_tls)
    async with host, fault_proxy(host.port) as proxy:
        with anyio.fail_after(WAIT):
            async with connect(
                LOOPBACK, proxy.port, login=(user, password), **OPTIONS, **client_tls
            ) as client:
                await client.send("a message")
                assert (await client.receive()).data == "a message"
        # A failed login (a longer password, which holds the real one) leaks nothing either.
        await login_fails(proxy.port, (user, password + "!"), **client_tls)
        with anyio.fail_after(WAIT):
            for link in proxy.connections:
                await link.closed.wait()
    wire = b"".join(
        link.captured(direction) for link in proxy.connections for direction in DIRECTIONS
    )
    assert len(proxy.connections) == 2
    assert len(wire) > 1000
    secret = password.encode()
    assert secret not in wire
    for form in _base64_forms(secret):
        assert form not in wire
    assert password.encode("utf-16-le") not in wire
    if transport == "plain":
        # Documented: without TLS the user name and the messages are readable.
        assert user.encode() in wire
        assert b"a message" in wire
    else:
        assert user.encode() not in wire
        assert b"a message" not in wire
    warned = [r for r in caplog.records if "TLS" in r.getMessage() and r.levelno == logging.WARNING]
    assert len(warned) == (2 + 1 if transport == "plain" else 0)  # host once, each client once


# --- R17: the same answer and the same work for an unknown user and a wrong password -------------


async def test_r17_unknown_user_and_wrong_password_cost_the_host_the_same_work(work: Work) -> None:
    accounts = new_accounts({USER: PASSWORD}, delay_base=0)
    work_done: dict[str, dict[str, int]] = {}
    async with login_host(accounts=accounts) as host:
        for case, login in {
            "wrong password": (USER, "not the password"),
            "unknown user": ("mallory", "not the password"),
        }.items():
            before = work.snapshot()
            assert WRONG in (await login_fails(host.port, login)).reason
            work_done[case] = work.since(before)
        raw = [
            await raw_login(host.port, USER, "not the password"),
            await raw_login(host.port, "mallory", "not the password"),
            await raw_login(host.port, "x", first=f"n,,n=al/ice,r={secrets.token_hex(16)}"),
        ]
    # One derivation, the client's; on the host the same steps, once each, for both.
    assert (
        work_done["wrong password"]
        == work_done["unknown user"]
        == {
            "pbkdf2": 1,
            "make_server": 1,
            "client_first": 1,
            "auth_info": 1,
            "proof": 1,
            "record_failure": 1,
        }
    )
    endings = []
    for attempt in raw:
        assert (attempt.outcome, attempt.reason) == ("fail", WRONG)
        frames = split_frames(attempt.received)
        assert [t for t, _ in frames] == [
            FrameType.HELLO,
            FrameType.AUTH_CHALLENGE,
            FrameType.AUTH_FAIL,
            FrameType.CLOSE,
        ]
        endings.append((frames[2][1], frames[3][1]))
    assert len(set(endings)) == 1  # AUTH_FAIL and CLOSE byte for byte
    assert [a.username for a in host.get_login_attempts()] == [
        USER,
        "mallory",
        USER,
        "mallory",
        "al/ice",
    ]


async def test_r17_unknown_users_count_towards_the_ban(work: Work) -> None:
    recorder = Recorder()
    async with login_host(recorder) as host:  # the default policy
        for n in range(MAX_FAILURES):
            assert WRONG in (await login_fails(host.port, (f"ghost{n}", "guess"))).reason
        await eventually(lambda: recorder.bans == [LOOPBACK])
        before = work.snapshot()
        refused = await login_fails(host.port, (USER, PASSWORD))
        assert work.since(before) == {}  # refused at accept: nothing derived, nothing checked
    assert BANNED in refused.reason
    assert list(host.bans) == [LOOPBACK]
    assert recorder.nothing_reached_the_application


def _store_with_another_iteration_count(tmp_path: Path) -> dict[str, Any]:
    """A host whose users were saved at 4096 rounds and loaded into a store whose policy is now
    8192 (a raised policy, or ``Host()``'s default loading an older file)."""
    path = tmp_path / "accounts.json"
    new_accounts({USER: PASSWORD}).save(path)
    accounts = Accounts(iterations=2 * FAST)
    accounts.restore(path)
    return {"accounts": accounts}


def _authenticator_with_postgres_verifiers(tmp_path: Path) -> dict[str, Any]:
    """Users kept elsewhere, with verifiers as PostgreSQL makes them (a 16-byte salt)."""
    salt, stored, server, count = scramp.ScramMechanism(MECHANISM).make_auth_info(
        PASSWORD, iteration_count=FAST, salt=secrets.token_bytes(16)
    )
    verifier = Verifier(salt, stored, server, count)
    return {
        "accounts": new_accounts({}),
        "authenticator": lambda name: verifier if name == USER else None,
    }


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(_store_with_another_iteration_count, id="loaded_store"),
        pytest.param(_authenticator_with_postgres_verifiers, id="authenticator"),
    ],
)
async def test_r17_challenge_of_an_unknown_user_looks_like_a_real_users(
    setup: Callable[[Path], dict[str, Any]], tmp_path: Path
) -> None:
    async with login_host(**setup(tmp_path)) as host:
        real = await raw_login(host.port, USER)
        ghost = await raw_login(host.port, "mallory")
    assert real.challenge is not None
    assert ghost.challenge is not None
    real_fields, ghost_fields = scram_fields(real.challenge), scram_fields(ghost.challenge)
    assert ghost_fields["i"] == real_fields["i"]
    assert len(ghost_fields["s"]) == len(real_fields["s"])


# --- R18: throttling and bans ------------------------------------------------------------------


def _client_hello(context: ssl.SSLContext) -> bytes:
    """The first flight of a TLS client: a ClientHello record."""
    tls = context.wrap_bio(ssl.MemoryBIO(), outgoing := ssl.MemoryBIO(), server_hostname=LOOPBACK)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16  # a handshake record
    return hello


async def refused_at_accept(port: int, local_host: str, tls: ssl.SSLContext | None) -> Attempt:
    """Connect from ``local_host`` and check that the host refuses before anything else: a CLOSE
    with POLICY_VIOLATION instead of its HELLO, or under TLS, not a byte (no ServerHello)."""
    if tls is None:
        attempt = await raw_login(port, USER, PASSWORD, local_host=local_host)
        assert (attempt.outcome, attempt.reason) == ("refused", BANNED)
        assert attempt.close is not None
        assert attempt.close.code == CloseCode.POLICY_VIOLATION
        return attempt
    received = bytearray()
    with anyio.fail_after(WAIT):
        stream = await anyio.connect_tcp(LOOPBACK, port, local_host=local_host)
        async with stream:
            try:
                await stream.send(_client_hello(tls))
                while True:
                    received += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                pass
    assert bytes(received) == b""
    return Attempt("refused", received=bytes(received))


async def test_r18_failed_logins_ban_one_address_until_the_ban_ends(
    transport: str,
    alvaro_server_ssl_context: ssl.SSLContext,
    alvaro_client_ssl_context: ssl.SSLContext,
    work: Work,
) -> None:
    clock = FakeClock()
    recorder = Recorder()
    accounts = new_accounts({USER: PASSWORD}, clock=clock.clock, now=clock.now, delay_base=0)
    tls = alvaro_client_ssl_context if transport == "tls" else None
    host = login_host(
        recorder, accounts=accounts, ssl_context=alvaro_server_ssl_context if tls else None
    )
    async with host:
        port = host.port

        async def legitimate_login() -> None:
            attempt = await raw_login(port, USER, PASSWORD, local_host=BYSTANDER, tls=tls)
            assert attempt.outcome == "ok"

        await legitimate_login()
        for _ in range(MAX_FAILURES):  # made-up proofs: guessing costs the attacker nothing
            attempt = await raw_login(port, USER, local_host=ATTACKER, tls=tls)
            assert (attempt.outcome, attempt.reason) == ("fail", WRONG)
            await legitimate_login()
        await eventually(lambda: recorder.bans == [ATTACKER])
        assert list(host.bans) == [ATTACKER]
        # Another address with a failure of its own is not banned.
        assert (await raw_login(port, USER, local_host=BYSTANDER, tls=tls)).outcome == "fail"
        await legitimate_login()
        # The sixth attempt and the next ones: refused at accept, before TLS and any SCRAM.
        before = work.snapshot()
        for _ in range(3):
            await refused_at_accept(port, ATTACKER, tls)
        assert work.since(before) == {}
        await legitimate_login()
        # Until the ban's end, exactly.
        clock.advance(BAN - 0.5)
        await refused_at_accept(port, ATTACKER, tls)
        clock.advance(0.5)
        assert (await raw_login(port, USER, PASSWORD, local_host=ATTACKER, tls=tls)).outcome == "ok"
        await legitimate_login()
        with anyio.fail_after(WAIT):  # a real client, from 127.0.0.1
            client_tls = {"ssl_context": tls} if tls else {}
            async with connect(LOOPBACK, port, login=(USER, PASSWORD), **OPTIONS, **client_tls):
                pass
        assert recorder.bans == [ATTACKER]  # once for the one ban
        # The count started afresh with the ban: five more failures, a second ban, reported.
        for _ in range(MAX_FAILURES):
            attempt = await raw_login(port, USER, local_host=ATTACKER, tls=tls)
            assert (attempt.outcome, attempt.reason) == ("fail", WRONG)
        await eventually(lambda: len(recorder.bans) == 2)
        await refused_at_accept(port, ATTACKER, tls)
        await legitimate_login()
    assert recorder.bans == [ATTACKER, ATTACKER]
    from_attacker = host.get_login_attempts(address=ATTACKER)
    assert [a.success for a in from_attacker] == [False] * MAX_FAILURES + [True] + [
        False
    ] * MAX_FAILURES
    assert [a.success for a in host.get_login_attempts(address=BYSTANDER)].count(False) == 1


def _dual_stack() -> bool:
    if not socket.has_dualstack_ipv6():
        return False
    try:
        with socket.create_server(("::", 0), family=socket.AF_INET6, dualstack_ipv6=True):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _dual_stack(), reason="no dual-stack IPv6 socket on this machine")
async def test_r18_the_ipv4_mapped_form_of_an_address_is_banned_too() -> None:
    clock = FakeClock()
    recorder = Recorder()
    accounts = new_accounts({USER: PASSWORD}, clock=clock.clock, now=clock.now, delay_base=0)
    # No address: anyio listens on one dual-stack socket on "::" (IPV6_V6ONLY off), where IPv4
    # clients appear as ::ffff:a.b.c.d. Every client here still connects over loopback.
    host = login_host(recorder, accounts=accounts, addr=None)
    async with host:
        port = host.port
        ok = await raw_login(port, USER, PASSWORD, local_host=BYSTANDER)
        assert ok.outcome == "ok"
        await eventually(lambda: bool(recorder.addrs))
        (seen,) = recorder.addrs.values()
        if seen != f"::ffff:{BYSTANDER}":
            pytest.skip(f"the listener is not dual-stack here (the host saw {seen})")
        for _ in range(MAX_FAILURES):
            attempt = await raw_login(port, USER, local_host=ATTACKER)
            assert (attempt.outcome, attempt.reason) == ("fail", WRONG)
        await eventually(lambda: bool(recorder.bans))
        await refused_at_accept(port, ATTACKER, None)
        assert (await raw_login(port, USER, PASSWORD, local_host=BYSTANDER)).outcome == "ok"
    # Counted, banned and reported under the IPv4 address.
    assert recorder.bans == [ATTACKER]
    assert list(host.bans) == [ATTACKER]
    assert len(host.get_login_attempts(address=ATTACKER)) == MAX_FAILURES
    assert len(host.get_login_attempts(address=f"::ffff:{ATTACKER}")) == MAX_FAILURES


async def test_r18_manual_bans_refuse_at_accept_and_are_not_reported() -> None:
    recorder = Recorder()
    async with login_host(recorder) as host:
        host.ban_ip("::ffff:127.0.0.4")  # the mapped form bans the IPv4 address
        assert "127.0.0.4" in host.bans
        await refused_at_accept(host.port, "127.0.0.4", None)
        host.ban_ip(LOOPBACK, 60)
        refused = await login_fails(host.port, (USER, PASSWORD))
        assert BANNED in refused.reason
        assert host.unban_ip(LOOPBACK)
        with anyio.fail_after(WAIT):
            async with connect(LOOPBACK, host.port, login=(USER, PASSWORD), **OPTIONS) as c:
                assert c.user == USER
    assert recorder.bans == []  # ip_banned is for bans that failed logins caused


async def test_r18_concurrent_guesses_never_get_more_proofs_checked_than_the_limit(
    work: Work,
) -> None:
    clock = FakeClock()
    recorder = Recorder()
    accounts = new_accounts({USER: PASSWORD}, clock=clock.clock, now=clock.now, delay_base=0)
    host = login_host(recorder, accounts=accounts, max_unauthenticated_per_address=64)
    attacker = "127.0.0.5"
    guesses: list[Attempt] = []
    legitimate: list[Attempt] = []
    async with host:
        port = host.port

        async def guess() -> None:
            guesses.append(await raw_login(port, USER, local_host=attacker))

        async def log_in() -> None:
            for _ in range(5):
                legitimate.append(await raw_login(port, USER, PASSWORD, local_host=BYSTANDER))

        before = work.snapshot()
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tasks:
                for _ in range(50):
                    tasks.start_soon(guess)
                tasks.start_soon(log_in)
        done = work.since(before)
    assert [a.outcome for a in legitimate] == ["ok"] * 5
    # Each legitimate login checked one proof; the 50 guesses, no more than the limit.
    assert done["proof"] - len(legitimate) == MAX_FAILURES
    outcomes = [(a.outcome, a.reason) for a in guesses]
    assert outcomes.count(("fail", WRONG)) == MAX_FAILURES
    # The others: stopped after the ban, at their proof or at accept. In a flood of refusals
    # most are closed without a word (the host lingers on only a few): not a byte came back.
    late = outcomes.count(("fail", BANNED)) + outcomes.count(("refused", BANNED))
    silent = [a for a in guesses if a.outcome == "eof" and not a.received]
    assert late + len(silent) == 50 - MAX_FAILURES, sorted(set(outcomes))
    assert recorder.bans == [attacker]


async def test_r18_unknown_user_attempts_are_counted(work: Work) -> None:
    clock = FakeClock()
    recorder = Recorder()
    limit = 100
    accounts = new_accounts(
        {USER: PASSWORD}, clock=clock.clock, now=clock.now, delay_base=0, max_failures=limit
    )
    host = login_host(recorder, accounts=accounts, max_unauthenticated_per_address=32)
    attacker = "127.0.0.6"
    async with host:
        port = host.port
        outcomes: list[tuple[str, str]] = []

        async def guess(n: int) -> None:
            attempt = await raw_login(port, f"ghost{n}", local_host=attacker)
            outcomes.append((attempt.outcome, attempt.reason))

        before = work.snapshot()
        for batch in range(0, limit - 1, 20):
            async with anyio.create_task_group() as tasks:
                for n in range(batch, min(batch + 20, limit - 1)):
                    tasks.start_soon(guess, n)
        assert outcomes == [("fail", WRONG)] * (limit - 1)
        assert recorder.bans == []
        attempts = host.get_login_attempts(address=attacker)
        assert sorted(a.username for a in attempts) == sorted(f"ghost{n}" for n in range(99))
        assert not any(a.success for a in attempts)
        await guess(limit - 1)  # the hundredth
        await eventually(lambda: recorder.bans == [attacker])
        await refused_at_accept(port, attacker, None)
        done = work.since(before)
    # Each unknown name had its (made-up) verifier looked up and its proof checked.
    assert done["auth_info"] == done["proof"] == limit


# --- R19: awkward credentials --------------------------------------------------------------------

VALID_PASSWORDS = {
    "pipe": "pipe|separated|fields|",
    "separator_word": "_SEPARATOR_ but no control characters",
    "ends_in_SECRET": "hunter2SECRET",
    "1024_ascii_bytes": "x" * 1024,
    "1024_bytes_of_e_acute": "\u00e9" * 512,
    # Four bytes each in UTF-8; assigned since Unicode 3.1 (see the emoji test below).
    "1024_bytes_of_cjk_extension_b": "\U00020000" * 256,
}


@pytest.mark.parametrize("case", list(VALID_PASSWORDS))
async def test_r19_awkward_passwords_authenticate_exactly(case: str) -> None:
    password = VALID_PASSWORDS[case]
    assert len(password.encode()) <= 1024
    near_miss = password[:-1] + ("y" if password[-1] != "y" else "z")
    async with login_host(users={USER: password}) as host:
        with anyio.fail_after(WAIT):
            async with connect(LOOPBACK, host.port, login=(USER, password), **OPTIONS) as c:
                assert c.user == USER
        assert WRONG in (await login_fails(host.port, (USER, near_miss))).reason


@pytest.mark.parametrize(
    "password",
    [
        "\n\t_SEPARATOR_\t\n",
        "tab\tinside",
        "nul\x00inside",
        "\u00ad",  # SOFT HYPHEN: mapped to nothing, an empty password
        # Unassigned in Unicode 3.2, the version of SASLprep's tables: every emoji, and every
        # character added since 2002, is refused.
        "key \U0001f511",
    ],
)
async def test_r19_passwords_saslprep_forbids_are_refused_on_both_sides(
    password: str, work: Work
) -> None:
    """SASLprep (RFC 4013) forbids control characters, and a password it maps to nothing is
    empty: such passwords are refused at enrolment and by the client, before anything else."""
    with pytest.raises(ValueError, match="password"):
        new_accounts().add_user(USER, password)
    await _client_refuses_before_connecting((USER, password))
    assert work["derive"] == work["pbkdf2"] == 0


async def _client_refuses_before_connecting(login: tuple[str, str]) -> None:
    accepted: list[RawPeer] = []

    async def count(peer: RawPeer) -> None:
        accepted.append(peer)

    async with raw_server(count) as port:
        with anyio.fail_after(WAIT), pytest.raises(ValueError, match=r"user name|password"):
            async with connect(LOOPBACK, port, login=login, **OPTIONS):
                pass
    assert accepted == []


async def test_r19_nfc_nfd_and_compatibility_forms_are_one_password() -> None:
    """SASLprep applies NFKC on both sides: the NFC and NFD spellings of a text, and its
    compatibility forms, are the same password (documented in validate_password)."""
    nfc = unicodedata.normalize("NFC", "\u00c5ngstr\u00f6m caf\u00e9")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    assert nfc.encode() != nfd.encode()
    users = {"nfc": nfc, "nfd": nfd, "ligature": "\ufb01ne print"}  # U+FB01 LATIN SMALL LIGATURE FI
    async with login_host(users=users) as host:
        for user, password in (("nfc", nfd), ("nfd", nfc), ("ligature", "fine print")):
            with anyio.fail_after(WAIT):
                async with connect(LOOPBACK, host.port, login=(user, password), **OPTIONS) as c:
                    assert c.user == user
        assert WRONG in (await login_fails(host.port, ("nfc", "Angstrom cafe"))).reason


@pytest.mark.parametrize("password", ["x" * 1025, "\u00e9" * 512 + "x", "\U00020000" * 257])
async def test_r19_passwords_over_1024_bytes_are_refused_before_anything(
    password: str, work: Work
) -> None:
    assert len(password.encode()) > 1024
    with pytest.raises(ValueError, match="1024"):
        login_host(users={USER: password})
    await _client_refuses_before_connecting((USER, password))
    assert work["derive"] == work["pbkdf2"] == 0


INVALID_NAMES = {
    "slash": "al/ice",
    "dotdot_path": "../etc/passwd",
    "nul": "al\x00ice",
    "65_chars": "a" * 65,
    "empty": "",
    "space": "al ice",
    "comma": "al,ice",
    "non_ascii": "\u00e9mile",
}


@pytest.mark.parametrize("case", list(INVALID_NAMES))
async def test_r19_invalid_user_names_are_refused_on_both_sides(case: str, work: Work) -> None:
    name = INVALID_NAMES[case]
    host = login_host()
    before = work.snapshot()
    with pytest.raises(ValueError, match="user name"):
        host.add_user(name, PASSWORD)
    await _client_refuses_before_connecting((name, PASSWORD))
    assert work.since(before) == {}
    # A raw client that sends the name anyway gets the generic failure, byte for byte.
    escaped = name.replace("=", "=3D").replace(",", "=2C")
    async with host:
        wrong = await raw_login(host.port, USER)
        odd = await raw_login(host.port, name, first=f"n,,n={escaped},r={secrets.token_hex(16)}")
    assert (odd.outcome, odd.reason) == (wrong.outcome, wrong.reason) == ("fail", WRONG)
    ending = [frame for t, frame in split_frames(wrong.received) if t >= FrameType.AUTH_FAIL]
    assert [frame for t, frame in split_frames(odd.received) if t >= FrameType.AUTH_FAIL] == ending
    assert work.since(before).get("derive", 0) == 0
    assert host.users == [USER]


async def test_r19_no_file_is_ever_named_after_a_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """User names never become paths. ``..`` is a valid name (only ``A-Z a-z 0-9 . _ -``), so it
    must be harmless: it logs in like any other, and only the file asked for is written."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.chdir(home)
    opened: list[str] = []
    real_open = os.open

    def recording_open(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(os.fsdecode(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", recording_open)
    names = ["..", ".", "-rf", "passwd", "accounts.json"]
    async with login_host(users=dict.fromkeys(names, PASSWORD)) as host:
        for name in names:
            with anyio.fail_after(WAIT):
                async with connect(LOOPBACK, host.port, login=(name, PASSWORD), **OPTIONS) as c:
                    assert c.user == name
        for odd in ("../../etc/passwd", "/tmp/x", "..\\x"):
            attempt = await raw_login(host.port, odd, first=f"n,,n={odd},r={secrets.token_hex(8)}")
            assert attempt.reason == WRONG
    host.save(tmp_path / "store.json")
    assert sorted(os.listdir(tmp_path)) == ["home", "store.json"]
    assert os.listdir(home) == []
    for path in opened:
        assert not any(name in os.path.basename(path) for name in ("passwd", "-rf")), path
