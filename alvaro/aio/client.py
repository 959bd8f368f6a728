"""The async Client: connects to a Host, calls the user's callbacks, and sends and receives."""

from __future__ import annotations

import functools
import logging
import ssl
import threading
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.abc
import anyio.lowlevel

from .._aliases import ClientAliases, SeedClientTLS, seed_tls_options
from .._close_codes import CloseCode
from .._errors import unwrap_group
from .._settings import Settings, SettingsOptions
from ..accounts.verifiers import validate_name, validate_password
from ..exceptions import (
    AuthenticationError,
    ConnectError,
    ConnectionClosed,
    LocalProtocolError,
    RemoteProtocolError,
    TLSError,
    WrongThreadError,
)
from ..protocol import encode_logout
from ._core import ConnectionCore, core_of
from ._handshake import abort
from ._io import check_context, check_port, open_transport
from ._login import client_login
from ._loop import LoopHandle
from ._pipeline import open_connection, run_step, secure, serve_until_lost
from ._reader import Handlers
from ._tls_options import client_tls_context
from .connection import Connection, call_callback

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from typing_extensions import Unpack

    from .._types import Metadata, StrPath
    from ..protocol import Message

__all__ = ("Client", "connect")

_FEATURES = frozenset({"auth", "request"})


class ClientOptions(SettingsOptions, total=False):
    """The keyword arguments of :class:`Client`, which :func:`connect` passes on to it."""

    ssl_context: ssl.SSLContext | None
    logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None


class Client(ClientAliases):
    """Connects to a Host, sends messages, and calls your functions as events happen.

    Set the callbacks as attributes (``client.got_data = f``) or override them in a subclass. Each
    may be a plain function or an ``async def``. They run in the event loop, in the connection's
    task, in this order: ``made_connection``, then ``got_data`` once per message, then
    ``lost_connection``. A callback that raises is logged on the ``alvaro.client`` logger with its
    traceback and closes the connection with code INTERNAL_ERROR.

    Two styles::

        # The original style: connect() runs until the connection ends.
        client = alvaro.Client()
        await client.connect("localhost", 8888)

        # The context-manager style: the connection runs in the background of the block.
        async with alvaro.aio.connect("localhost", 8888) as client:
            client.send_data("hello", metadata={"kind": "greeting"})
            message = await client.receive()

    Args:
        ssl_context: connect with TLS, using this context; build one with
            :func:`alvaro.tls.client_context` (a private CA, the system's CAs, a client
            certificate). ``None`` (the default) connects in plaintext, unless :meth:`connect`
            is given ``use_ssl=True``.
        logger: where to log; the ``alvaro.client`` logger by default.
        options: limits and timeouts, the fields of :class:`~alvaro.Settings`, as for
            :class:`Host`.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        **options: Unpack[SettingsOptions],
    ) -> None:
        self.ssl_context = check_context(ssl_context, server_side=False)
        self.settings = Settings(**options)
        self.logger = logger if logger is not None else logging.getLogger("alvaro.client")
        if ssl_context is not None and (
            ssl_context.verify_mode == ssl.CERT_NONE or not ssl_context.check_hostname
        ):
            # A context of the user's own making; alvaro's helpers never turn verification off.
            self.logger.warning(
                "this client's ssl_context does not verify the host's certificate and name: "
                "anyone between the client and the host can read and change the traffic"
            )
        self._connection: Connection | None = None
        self._connecting = False
        # A threading.Event, so that wait_for_connection() works from any thread without polling.
        self._connected = threading.Event()
        self._loop: LoopHandle | None = None
        self._finished: anyio.Event | None = None
        # Threading events, like _connected: wait_for_login() works from any thread.
        self._logged_in = threading.Event()
        self._login_done = threading.Event()  # the last login attempt ended, either way
        self._login_error: AuthenticationError | None = None
        self._warned_plain_login = False

    # --- Callbacks: assign on the instance or override in a subclass ----------------------------
    # Attributes rather than methods, so that ``client.got_data = f`` type-checks; a method of a
    # subclass overrides them all the same. ``None`` means not set. Whatever a callback returns
    # is ignored, except a coroutine (an ``async def``'s), which is awaited.

    made_connection: Callable[[], object] | None = None
    """Called as ``made_connection()`` once connected (handshake done), before any message is
    delivered.

    Runs in the event loop, in the connection's task; :meth:`send_data` may be used here.
    """

    logged_in: Callable[[], object] | None = None
    """Called as ``logged_in()`` once the login given to :meth:`connect` has succeeded, just
    before ``made_connection``.

    Runs in the event loop, in the connection's task; :attr:`user` is the user's name.
    """

    got_data: Callable[[Any, Metadata], object] | None = None
    """Called as ``got_data(data, metadata)`` for each message the host sends, in order.

    Runs in the event loop, in the connection's task: the next message is not read until it
    returns. While this is not set, messages wait for :meth:`receive` instead.
    """

    got_request: Callable[[Any, Metadata], object] | None = None
    """Called as ``got_request(data, metadata)`` for each request the host sends; what it
    returns is the reply (:class:`alvaro.Reply` to give it metadata too).

    Runs in the event loop. An ``async def`` runs in a task of its own, so requests run
    concurrently (at most ``max_concurrent_requests``), and is cancelled when the deadline
    passes or the host gives up. A plain function runs at once in the connection's task, as it
    would block the loop anywhere. If it raises, the host gets :class:`~alvaro.RemoteError`
    and the exception is logged here. While this is not set, requests are answered
    "no_handler".
    """

    lost_connection: Callable[[], object] | None = None
    """Called as ``lost_connection()`` once when the connection has closed, whatever the cause.

    Runs in the event loop, in the connection's task. :attr:`connection` still tells
    ``close_code``, ``close_reason`` and ``closed_by_peer``.
    """

    # --- Information ---------------------------------------------------------------------------

    @property
    def connection(self) -> Connection | None:
        """The current (or last) connection, or ``None`` before the first connect."""
        return self._connection

    @property
    def connected(self) -> bool:
        """Whether the client is connected and the connection is open."""
        return (
            self._connected.is_set() and self._connection is not None and (self._connection.is_open)
        )

    @property
    def user(self) -> str | None:
        """The user this client is logged in as, or ``None`` (also once the connection has
        closed, after :meth:`logout` for example; ``connection.user`` still tells)."""
        conn = self._connection
        return conn.user if self._logged_in.is_set() and self.connected and conn else None

    def __repr__(self) -> str:
        conn = self._connection
        if conn is None:
            return "<Client not connected>"
        return f"<Client to {conn.addr}:{conn.port} {conn.state.value}>"

    # --- Connecting ----------------------------------------------------------------------------

    async def connect(
        self,
        host: str,
        port: int,
        *,
        use_ssl: bool = False,
        ssl_cert: StrPath | None = None,
        server_hostname: str | None = None,
        login: tuple[str, str] | None = None,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
        **seed_options: Unpack[SeedClientTLS],
    ) -> None:
        """Connect to a host and run the connection until it ends.

        This returns only when the connection has closed (by either side, or because the network
        failed); ``lost_connection`` has then been called. To go on with other work meanwhile,
        use :func:`alvaro.aio.connect`, ``await task_group.start(client.connect, host, port)``
        (which returns once connected), or run this in its own task or thread.

        Args:
            host: the host's name or IP address.
            port: the port it listens on, an ``int`` from 1 to 65535.
            use_ssl: connect with TLS, trusting the CA certificate(s) in the PEM file
                ``ssl_cert``, or the system's CAs when ``ssl_cert`` is ``None``. The original
                library's ``useSSL`` and ``sslCert`` spellings work too. Same as
                ``ssl_context=alvaro.tls.client_context(ssl_cert)`` on the constructor.
            server_hostname: the name the host's certificate must carry, when it differs from
                ``host`` (for example when connecting by IP address to a certificate for a
                name). The name is always checked.
            login: ``(user, password)`` for a host that requires login. The password never
                crosses the network (SCRAM-SHA-256): the client proves it knows it, and checks
                that the host knows the user's verifier too. Deriving the proof takes a
                fraction of a second of CPU, in a worker thread. Connecting counts as done
                (``made_connection``, ``task_status.started()``) only once logged in; all of it
                within ``login_timeout``.

        Raises:
            AuthenticationError: the login failed; its ``reason`` says why (the same words for
                an unknown user and a wrong password). Also when the host requires login and
                none was given, when it does not use logins and one was, and when this address
                is banned after too many failed logins.
            ValueError: ``port`` is not a port number, or ``login`` is not a ``(user,
                password)`` pair of a valid user name and password (checked before connecting).
            TLSError: TLS could not be set up; its ``kind`` says why (untrusted CA, name
                mismatch, expired certificate, a plaintext host, ...). Never falls back to
                plaintext.
            ConnectError: the host could not be reached, refused the connection, or failed the
                handshake (for example because it is not an alvaro host).
            TimeoutError: connecting took longer than ``open_timeout``.
            RuntimeError: the client is already connected or connecting.
        """
        if self._connecting:
            raise RuntimeError("this Client is already connected or connecting")
        check_port(port, listening=False)
        if "sslKey" in seed_options:
            raise TypeError("a client takes no sslKey: its sslCert is the CA file it trusts")
        context = client_tls_context(
            self.ssl_context, *seed_tls_options(seed_options, use_ssl, ssl_cert)[:2]
        )
        if cast("object", login) == (None, None):
            login = None  # the original library's default, spelt out
        if login is not None:
            if not isinstance(login, tuple) or len(login) != 2:
                raise ValueError("login must be a (user, password) tuple")
            validate_name(login[0])
            validate_password(login[1])
        self._connecting = True
        self._connected.clear()
        self._logged_in.clear()
        self._login_done.clear()
        self._login_error = None
        self._loop = LoopHandle()
        self._finished = anyio.Event()
        try:
            # One clock for connecting, the TLS handshake and the alvaro handshake together.
            deadline = anyio.current_time() + self.settings.open_timeout
            transport = await open_transport(
                host, port, timeout=self.settings.open_timeout, trio=self._loop.is_trio
            )
            if context is not None:
                transport = await secure(
                    transport,
                    context,
                    server_side=False,
                    hostname=server_hostname or host,
                    deadline=deadline,
                    timeout=self.settings.open_timeout,
                )
            core = ConnectionCore(
                transport,
                role="client",
                settings=self.settings,
                logger=self.logger,
                features=_FEATURES,
            )
            try:
                await open_connection(core, deadline)
            except (RemoteProtocolError, ConnectionClosed) as exc:
                error = _handshake_error(exc, host, port)
                # A TLSError found in the chain keeps its own cause, the ssl error.
                raise error from (error.__cause__ if error.__cause__ is not None else exc)
            except TimeoutError:
                raise TimeoutError(
                    f"the handshake with {host}:{port} took longer than "
                    f"{self.settings.open_timeout:g} s"
                ) from None
            await self._login(
                core, login, host, port, deadline - self.settings.open_timeout, context
            )
            conn = self._connection = core.connection
            self._connected.set()
            if conn.user is not None:
                self._logged_in.set()
            # Only now: a thread in wait_for_login() then sees the client connected too.
            self._login_done.set()
            self.logger.info("connected to %s:%s", host, port)
            task_status.started()

            async def lost() -> None:
                self._connected.clear()
                await call_callback(self.lost_connection)

            await serve_until_lost(
                core,
                lambda: self._opened(core),
                # Looked up as each message or request arrives: one set meanwhile takes over.
                Handlers(lambda: self.got_data, lambda: self.got_request),
                lost,
            )
        except AuthenticationError as exc:
            # For wait_for_login() in another thread, whether the login itself failed or
            # the host refused this address before it could begin.
            self._login_error = exc
            raise
        finally:
            self._connecting = False
            self._login_done.set()
            self._finished.set()

    async def _login(
        self,
        core: ConnectionCore,
        login: tuple[str, str] | None,
        host: str,
        port: int,
        started: float,
        context: ssl.SSLContext | None,
    ) -> None:
        """Log in if the host requires it, by ``login_timeout`` after ``started``."""
        peer = core.peer
        assert peer is not None
        if not peer.auth_required:
            if login is not None:
                await abort(core, CloseCode.NORMAL, "this client expected to log in")
                raise AuthenticationError(
                    f"{host}:{port} does not use logins (it was not started with "
                    "login_required=True); connect without login="
                )
            return
        if login is None:
            await abort(core, CloseCode.POLICY_VIOLATION, "no login was given to this client")
            raise AuthenticationError(
                f"{host}:{port} requires login; connect with login=(user, password)"
            )
        if context is None and not self._warned_plain_login:
            self._warned_plain_login = True
            self.logger.warning(
                "logging in to %s:%s without TLS: the password never crosses the network "
                "(SCRAM), but the user name and every message do, readable and changeable by "
                "anyone on the path; use TLS",
                host,
                port,
            )
        timeout_reason = f"the login took longer than {self.settings.login_timeout:g} s"
        try:
            await run_step(
                core,
                lambda: client_login(core, *login),
                started + self.settings.login_timeout,
                timeout_reason=timeout_reason,
            )
        except TimeoutError:
            raise TimeoutError(
                f"the login to {host}:{port} took longer than {self.settings.login_timeout:g} s"
            ) from None
        except (RemoteProtocolError, ConnectionClosed) as exc:
            raise ConnectError(f"the login to {host}:{port} failed: {exc}") from exc
        except AuthenticationError as exc:
            raise AuthenticationError(f"{exc.reason} ({host}:{port})") from None
        self.logger.info("logged in to %s:%s as %s", host, port, core.user)

    async def _opened(self, core: ConnectionCore) -> None:
        try:
            if self._logged_in.is_set():
                await call_callback(self.logged_in)
            await call_callback(self.made_connection)
        except Exception:
            self.logger.exception("logged_in or made_connection raised; closing the connection")
            core.fail(CloseCode.INTERNAL_ERROR, "the application failed")

    def wait_for_connection(self, timeout: float | None = None) -> bool:
        """Block the calling thread until connected; return whether it is connected.

        Meant for another thread than the event loop's (the original library's pattern: the loop
        runs in a thread, the main thread waits). It sleeps on a condition, using no CPU.

        ``timeout=0`` only looks, and is allowed anywhere.

        Raises:
            WrongThreadError: called, while not connected, on a thread that runs an event loop,
                which it would block.
        """
        if self._connected.is_set() or timeout == 0:
            return self._connected.is_set()
        if _event_loop_running_here():
            raise WrongThreadError(
                "wait_for_connection() blocks, and was called on the event-loop thread that "
                "runs the connection; in async code use 'async with alvaro.aio.connect(...)' or "
                "'await task_group.start(client.connect, host, port)'"
            )
        return self._connected.wait(timeout)

    def wait_for_login(self, timeout: float | None = None) -> bool:
        """Block the calling thread until logged in; return whether it is logged in.

        Like :meth:`wait_for_connection`: for another thread than the event loop's, and
        ``timeout=0`` only looks. Returns ``False`` when the time runs out.

        Raises:
            AuthenticationError: the login attempt of the current :meth:`connect` failed.
            WrongThreadError: called, while not logged in, on the event-loop thread.
        """
        if not self._logged_in.is_set() and timeout != 0:
            if _event_loop_running_here():
                raise WrongThreadError(
                    "wait_for_login() blocks, and was called on the event-loop thread; in async "
                    "code 'await client.connect(..., login=...)' returns once logged in"
                )
            self._login_done.wait(timeout)
        if self._login_error is not None:
            raise self._login_error
        return self._logged_in.is_set() and self.connected

    async def logout(self) -> None:
        """End the login: the host closes the connection (code NORMAL, reason "logged out").

        Waits, at most about ``close_timeout``, until the connection is closed. A new login
        needs a new :meth:`connect`. Does nothing when not logged in.
        """
        conn = self._connection
        if conn is None or not self._logged_in.is_set() or not conn.is_open:
            return
        try:
            core_of(conn).enqueue(encode_logout(), limit=None)
        except ConnectionClosed:
            return
        with anyio.move_on_after(self.settings.close_timeout):
            await conn.wait_closed()
        await self.aclose("logged out")

    # --- Using the connection ------------------------------------------------------------------

    def _require_connection(self) -> Connection:
        conn = self._connection
        if conn is None:
            raise LocalProtocolError("the client is not connected; call connect() first")
        return conn

    def send_data(self, data: Any, metadata: Metadata | None = None) -> None:
        """Queue a message for the host and return at once; safe from any thread.

        See :meth:`Connection.send_data <alvaro.aio.Connection.send_data>` for the errors.
        """
        self._require_connection().send_data(data, metadata)

    async def send(self, data: Any, metadata: Metadata | None = None) -> None:
        """Queue a message, first waiting while the outbox is over ``write_limit``."""
        await self._require_connection().send(data, metadata)

    async def receive(self, timeout: float | None = None) -> Message:
        """Return the next message from the host (when no ``got_data`` callback takes them).

        See :meth:`Connection.receive <alvaro.aio.Connection.receive>`.
        """
        return await self._require_connection().receive(timeout)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._require_connection().__aiter__()

    async def request(
        self, data: Any, metadata: Metadata | None = None, *, timeout: float | None = None
    ) -> Message:
        """Ask the host and wait for its answer.

        See :meth:`Connection.request <alvaro.aio.Connection.request>`.
        """
        requests, seconds = core_of(self._require_connection()).asking(timeout)
        return await requests.ask(data, metadata, seconds)

    def disconnect(self, reason: str | None = None, code: int = CloseCode.NORMAL) -> None:
        """Close the connection and return at once; safe from any thread, idempotent."""
        conn = self._connection
        if conn is not None:
            conn.disconnect(reason, code)

    async def aclose(self, reason: str | None = None, code: int = CloseCode.NORMAL) -> None:
        """Close the connection and wait until :meth:`connect` has finished."""
        self.disconnect(reason, code)
        if self._finished is not None:
            await self._finished.wait()


@asynccontextmanager
async def connect(
    host: str,
    port: int,
    *,
    use_ssl: bool = False,
    ssl_cert: StrPath | None = None,
    server_hostname: str | None = None,
    login: tuple[str, str] | None = None,
    **options: Unpack[ClientOptions],
) -> AsyncIterator[Client]:
    """Connect to a host for the duration of an ``async with`` block.

    The connection runs in the background; on leaving the block it is closed gracefully (code
    NORMAL) and the block waits for the close to finish. ``use_ssl``, ``ssl_cert``,
    ``server_hostname`` and ``login`` are :meth:`Client.connect`'s; ``options`` are
    :class:`Client`'s keyword arguments (``ssl_context=``, settings).

    Raises:
        AuthenticationError: the login failed.
        ValueError: ``port`` is not a port number from 1 to 65535, or ``login`` is not valid.
        ConnectError: the host could not be reached or failed the handshake.
        TimeoutError: connecting took longer than ``open_timeout``.
    """
    check_port(port, listening=False)
    client = Client(**options)
    with unwrap_group():
        async with anyio.create_task_group() as tasks:
            await tasks.start(
                functools.partial(
                    client.connect,
                    host,
                    port,
                    use_ssl=use_ssl,
                    ssl_cert=ssl_cert,
                    server_hostname=server_hostname,
                    login=login,
                )
            )
            try:
                yield client
            finally:
                with anyio.CancelScope(shield=True):
                    await client.aclose()


def _handshake_error(
    exc: RemoteProtocolError | ConnectionClosed, host: str, port: int
) -> ConnectError:
    """The error connect() raises when the alvaro handshake fails."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, TLSError):
            # TLS 1.3 reports a refused client certificate only at the first read.
            return cause
        cause = cause.__cause__
    if isinstance(exc, ConnectionClosed) and exc.code == CloseCode.POLICY_VIOLATION:
        # Refused before the HELLO: this address is banned after failed logins.
        return AuthenticationError(f"{host}:{port} refused the connection: {exc.reason}")
    if isinstance(exc, ConnectionClosed) and exc.code == CloseCode.TLS_REQUIRED:
        return TLSError(
            f"{host}:{port} accepts only TLS connections; connect with use_ssl=True or "
            "ssl_context=alvaro.tls.client_context(...)",
            TLSError.TLS_REQUIRED,
        )
    return ConnectError(f"the handshake with {host}:{port} failed: {exc}")


def _event_loop_running_here() -> bool:
    """Whether an event loop runs in the calling thread (where blocking would freeze it)."""
    try:
        anyio.lowlevel.current_token()
    except RuntimeError:  # anyio.NoEventLoopError
        return False
    return True
