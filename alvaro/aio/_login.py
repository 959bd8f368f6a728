"""The SCRAM-SHA-256 login exchange on one connection, host side and client side.

Both sides run it after the HELLOs and before the connection serves messages
(``docs/protocol.md``, section 9.8). The host never sees the password, and does no key
derivation at login: checking a SCRAM proof is a few HMACs. The client derives its key from the
password (``iterations`` rounds of PBKDF2) in a worker thread, never on the event loop.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING

import anyio

# scramp ships no type information; the calls into it stay in this module and alvaro.accounts.
import scramp  # type: ignore[import-untyped]

from .._close_codes import CloseCode
from ..accounts.verifiers import MECHANISM, Verifier, validate_name
from ..exceptions import (
    AuthenticationError,
    ConnectionClosed,
    ConnectionClosedError,
    RemoteProtocolError,
)
from ..protocol import (
    AuthChallenge,
    AuthFail,
    AuthOk,
    AuthResponse,
    AuthStart,
    Close,
    encode_auth_challenge,
    encode_auth_fail,
    encode_auth_ok,
    encode_auth_response,
    encode_auth_start,
)
from ..protocol.scram import MAX_ITERATIONS, MIN_ITERATIONS, challenge_iterations, client_first_user
from ..protocol.state import echo_code
from ._handshake import abort, next_handshake_event
from ._loop import LoopLocalLimiter

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

    from ..accounts.store import Accounts
    from ..auth import Authenticator
    from ._core import ConnectionCore

__all__ = ("WRONG_CREDENTIALS", "client_login", "host_login", "warn_about_host_login")

WRONG_CREDENTIALS = "wrong user name or password"
"""The one AUTH_FAIL reason for an unknown user and a wrong password alike."""
BANNED_REASON = "this address is banned after too many failed logins; try again later"

# At most this many clients of one process derive keys at once: each derivation holds a CPU
# core for a fraction of a second, and a program that opens many logged-in connections at once
# should not starve its event loop's threads.
_derivations = LoopLocalLimiter(2)


async def _verifier_for(
    name: str,
    accounts: Accounts,
    authenticator: Authenticator | None,
) -> Verifier:
    if authenticator is not None:
        try:
            validate_name(name)
        except ValueError:
            return accounts.fake_verifier(name)
        if inspect.iscoroutinefunction(authenticator):
            found = await authenticator(name)
        else:
            # A plain function may look the user up in a database: keep it off the loop.
            found = await anyio.to_thread.run_sync(authenticator, name)
            if inspect.isawaitable(found):
                found = await found
        if found is None:
            return accounts.fake_verifier(name)
        if not isinstance(found, Verifier):
            raise TypeError(
                f"the authenticator returned {type(found).__name__}, not a Verifier or None"
            )
        accounts.note_verifier(found)  # so that made-up verifiers look like these
        return found
    return accounts.auth_info(name)


async def host_login(
    core: ConnectionCore,
    accounts: Accounts,
    authenticator: Authenticator | None,
    on_ban: Callable[[str], None],
) -> str | None:
    """Run the host's side of the login; return the user name, or ``None`` after closing.

    The caller bounds it with the login deadline. Every failure of the peer's is answered with
    AUTH_FAIL and a close with POLICY_VIOLATION; a protocol error closes with its own code.

    Raises:
        RemoteProtocolError, ConnectionClosed: the peer broke the protocol or the connection;
            the caller closes the connection.
    """
    address = core.transport.peer_addr
    event = await next_handshake_event(core)
    if isinstance(event, Close):
        await abort(core, echo_code(event.code), "")
        return None
    # The decoder lets nothing but AUTH_START through before a login has begun.
    assert isinstance(event, AuthStart)
    name = client_first_user(event.message)
    if event.mechanism != MECHANISM:
        await _refuse(core, f"unsupported login mechanism; this host speaks {MECHANISM}")
        return None
    wait = accounts.account_delay(name)
    if wait > _time_left():
        await _refuse(core, _account_wait_reason(wait))
        return None

    verifier = await _verifier_for(name, accounts, authenticator)
    server = scramp.ScramMechanism(MECHANISM).make_server(lambda _: verifier)
    try:
        server.set_client_first(event.message)
        challenge = encode_auth_challenge(server.get_server_first())
    except scramp.ScramException:
        if accounts.record_failure(address, name):
            on_ban(address)
        await _refuse(core, WRONG_CREDENTIALS)
        return None
    except ValueError:
        # The challenge repeats the client's nonce: one near the frame limit leaves no room.
        await _refuse(core, "the login message is too long")
        return None
    await core.transport.send(challenge)

    event = await next_handshake_event(core)
    if isinstance(event, Close):
        await abort(core, echo_code(event.code), "")
        return None
    assert isinstance(event, AuthResponse)
    if core.early_error is not None:
        # Something after AUTH_RESPONSE broke the rules (DATA before AUTH_OK): the connection
        # closes for it, without a verdict, so no callback ever sees this client.
        raise core.early_error
    # Wait out the account's delay. Nothing is awaited between the last look at the delay and
    # the ban and the recording of the outcome below, so concurrent attempts at one account or
    # from one address cannot all slip through on one look (no check-then-act race).
    while (wait := accounts.account_delay(name)) > 0:
        if wait > _time_left():
            await _refuse(core, _account_wait_reason(wait))
            return None
        await anyio.sleep(wait)
    if accounts.is_banned(address):
        await _refuse(core, BANNED_REASON)
        return None
    try:
        server.set_client_final(event.message)
        final = server.get_server_final()
    except scramp.ScramException:
        if accounts.record_failure(address, name):
            on_ban(address)
        await _refuse(core, WRONG_CREDENTIALS)
        return None
    accounts.record_success(address, name)
    core.decoder.accept_login()
    core.user = name
    await core.transport.send(encode_auth_ok(final, name))
    return name


def _time_left() -> float:
    deadline = anyio.current_effective_deadline()
    return deadline - anyio.current_time() if deadline != math.inf else math.inf


def _account_wait_reason(wait: float) -> str:
    return f"too many failed logins for this user; try again in {math.ceil(wait)} s"


def warn_about_host_login(
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger], *, tls: bool, has_users: bool
) -> None:
    """What a host that requires login says when it starts, if it is set up badly."""
    if not tls:
        logger.warning(
            "login is required but TLS is off: passwords never cross the network (SCRAM), "
            "but user names and every message do, readable and changeable by anyone on "
            "the path, who can also take a connection over after its login; use TLS"
        )
    if not has_users:
        logger.warning("login is required and there are no users: no one can log in")


async def _refuse(core: ConnectionCore, reason: str) -> None:
    """Send AUTH_FAIL and close with POLICY_VIOLATION (one attempt per connection)."""
    try:
        await core.transport.send(encode_auth_fail(reason))
    except ConnectionClosed:
        pass
    await abort(core, CloseCode.POLICY_VIOLATION, "login failed")


async def client_login(core: ConnectionCore, user: str, password: str) -> None:
    """Run the client's side of the login; the caller bounds it with the login deadline.

    Raises:
        AuthenticationError: the host refused the login or could not prove it knows the
            password; the connection is closed.
        RemoteProtocolError, ConnectionClosed: the host broke the protocol or the connection;
            the caller closes the connection.
    """
    client = scramp.ScramClient([MECHANISM], user, password)
    await core.transport.send(encode_auth_start(client.get_client_first()))
    event = await next_handshake_event(core)
    if isinstance(event, AuthChallenge):
        # Checked before scramp reads the message: some scramp versions refuse some counts
        # themselves, and the client's answer must not depend on which one is installed.
        iterations = challenge_iterations(event.message)
        if iterations is not None and not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            await abort(core, CloseCode.POLICY_VIOLATION, "unacceptable iteration count")
            raise AuthenticationError(
                f"the host asked for {iterations} key-derivation rounds; a client accepts "
                f"{MIN_ITERATIONS} to {MAX_ITERATIONS}"
            )
        try:
            client.set_server_first(event.message)
        except scramp.ScramException as exc:
            raise RemoteProtocolError(
                f"the host's login challenge is not valid SCRAM: {exc}"
            ) from None
        # The expensive step (PBKDF2 over the password), in a worker thread.
        response = await anyio.to_thread.run_sync(
            client.get_client_final, limiter=_derivations.get()
        )
        await core.transport.send(encode_auth_response(response))
        event = await next_handshake_event(core)
    if isinstance(event, AuthOk):
        try:
            client.set_server_final(event.message)
        except scramp.ScramException:
            await abort(core, CloseCode.POLICY_VIOLATION, "the host's signature is wrong")
            raise AuthenticationError(
                "the host could not prove that it knows this user's password: it may be an "
                "impostor; the connection was closed"
            ) from None
        core.user = event.user
        return
    if isinstance(event, AuthFail):
        # The host closes the connection after AUTH_FAIL; answer its CLOSE if it comes soon.
        await _finish_refused(core)
        raise AuthenticationError(f"login refused: {event.reason}")
    if not isinstance(event, Close):
        # A message (or a PONG-less frame the decoder allows) before AUTH_OK: the host may
        # send nothing to a client that has not logged in.
        raise RemoteProtocolError(f"the host sent {type(event).__name__} before the login finished")
    await abort(core, echo_code(event.code), "")
    if event.code == CloseCode.POLICY_VIOLATION:
        raise AuthenticationError(f"login refused: {event.reason}")
    raise ConnectionClosedError(event.code, event.reason, by_peer=True)


async def _finish_refused(core: ConnectionCore) -> None:
    code: int | None = CloseCode.POLICY_VIOLATION
    with anyio.move_on_after(1):
        try:
            event = await next_handshake_event(core)
        except (RemoteProtocolError, ConnectionClosed):
            code = None
        else:
            if isinstance(event, Close):
                code = echo_code(event.code)
    await abort(core, code, "")
