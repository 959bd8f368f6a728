"""The async Host: listens, runs one task per connection, and calls the user's callbacks."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .._aliases import HostAliases, SeedServerTLS, seed_tls_options
from .._close_codes import CloseCode
from .._errors import unwrap_group
from .._settings import Settings
from ..accounts.bans import address_bucket
from ..accounts.store import Accounts
from ..exceptions import ConnectionClosed, RemoteProtocolError
from ._admission import Admission
from ._broadcast import broadcast
from ._core import ConnectionCore
from ._handshake import abort
from ._io import (
    Listener,
    Transport,
    check_context,
    listen_on,
    open_listener,
)
from ._login import BANNED_REASON, host_login, warn_about_host_login
from ._loop import LoopHandle, LoopLocalLimiter
from ._peer_log import PeerLog
from ._pipeline import open_connection, run_step, secure, serve_until_lost
from ._reader import Handlers
from ._tls_options import host_tls_context
from .connection import Connection, call_callback

if TYPE_CHECKING:
    import socket
    import ssl
    from collections.abc import Awaitable, Callable, Collection
    from types import TracebackType

    from typing_extensions import Self, Unpack

    from .._settings import SettingsOptions
    from .._types import Metadata, StrPath
    from ..auth import Authenticator

__all__ = ("Host",)

_FEATURES = frozenset({"request"})
_LOGIN_FEATURES = _FEATURES | {"auth"}
# Key derivations for add_user_async(): one at a time per process, so that a burst of new
# users does not take every core from the event loop and the other worker threads.
_add_user_derivations = LoopLocalLimiter(1)


class Host(HostAliases):
    """Accepts clients and calls your functions when they connect, send data and leave.

    Set the callbacks as attributes (``host.got_data = f``) or override them in a subclass. Each
    may be a plain function or an ``async def``. They run in the event loop, in the task of the
    connection concerned, in this order for each connection: ``new_client``, then ``got_data``
    once per message, then ``lost_client``. A callback that raises is logged on the
    ``alvaro.host`` logger with its traceback and closes only its own connection, with code
    INTERNAL_ERROR.

    Args:
        addr: the address to listen on; ``"localhost"`` or ``"127.0.0.1"`` stay on this machine,
            ``"0.0.0.0"`` or ``"::"`` accept from the network.
        port: the TCP port, an ``int`` from 0 to 65535; 0 picks a free one (read it from
            :attr:`port` once started). Anything else raises ``ValueError``.
        reuse_port: let several processes listen on the same ``addr`` and ``port``, each with
            ``reuse_port=True``; on Linux the kernel spreads new connections among them
            (``SO_REUSEPORT``). ``ValueError`` where the system lacks it (Windows).
        sock: listen on this socket instead of ``addr`` and ``port``, which are then left out
            (others than the defaults are a ``ValueError``): a bound TCP socket, listening or
            not, such as one a supervisor hands to its worker processes. The host takes it
            over and closes it when it stops.
        ssl_context: accept only TLS connections, with this context; build one with
            :func:`alvaro.tls.server_context` (which also sets up mutual TLS). ``None`` (the
            default) accepts plaintext connections only. See also :meth:`start`'s ``use_ssl``.
        logger: where to log; the ``alvaro.host`` logger by default.
        max_connections: the most connections served at once (open or still in their
            handshakes), and never more than the process's file-descriptor limit allows
            (``RLIMIT_NOFILE`` minus 64). Connections over the limit are closed at once with
            code TRY_AGAIN_LATER, before any TLS handshake.
        max_unauthenticated_per_address: the most connections from one IP address that may be
            in their handshakes (and, with ``login_required``, not logged in yet) at once; more
            are refused the same way. Bounds what one address can hold by connecting and then
            saying nothing (slowloris).
        login_required: every client must log in (SCRAM-SHA-256, see ``docs/security.md``)
            before it reaches any callback: ``logged_in`` and ``new_client`` run only after a
            successful login, and a client that fails is told so and closed (code
            POLICY_VIOLATION). Add users with :meth:`add_user`. The original library's
            ``loginRequired`` spelling works too.
        accounts: the store of users, bans and login history
            (:class:`alvaro.auth.Accounts`); pass your own to change the throttling policy
            (5 failed logins from one address in 30 minutes ban it for 10 minutes; each
            failure for one user name doubles that name's wait, from 1 s to 15 minutes) or to
            share users between hosts. A new, empty store by default.
        authenticator: look users up somewhere else than ``accounts`` (see
            :data:`alvaro.auth.Authenticator`): a function of a user name that returns its
            :class:`~alvaro.auth.Verifier` or ``None``, plain (run in a worker thread) or
            ``async def``. Bans, delays and the history still live in ``accounts``.
        options: limits and timeouts, the fields of :class:`~alvaro.Settings`:
            ``max_message_size`` (1 MiB), ``max_metadata_size`` (64 KiB), ``max_queue`` (16),
            ``max_queue_bytes`` (4 MiB), ``write_limit`` (64 KiB), ``outbox_limit`` (8 MiB),
            ``open_timeout`` (10 s), ``login_timeout`` (10 s, from the TCP accept to the end
            of the login), ``close_timeout`` (10 s), ``ping_interval`` (20 s),
            ``ping_timeout`` (20 s), ``frame_timeout`` (30 s), ``write_timeout`` (10 s). An
            unknown name raises ``TypeError``, a bad value ``ValueError``.

    Example::

        host = alvaro.Host("localhost", 8888)
        host.got_data = lambda conn, data, metadata: conn.send_data(data)   # echo
        asyncio.run(host.start())                                           # or trio.run(...)
    """

    def __init__(
        self,
        addr: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        sock: socket.socket | None = None,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        max_connections: int = 1024,
        max_unauthenticated_per_address: int = 16,
        login_required: bool = False,
        accounts: Accounts | None = None,
        authenticator: Authenticator | None = None,
        loginRequired: bool | None = None,
        **options: Unpack[SettingsOptions],
    ) -> None:
        if loginRequired is not None:
            if login_required:
                raise TypeError("give 'login_required' or 'loginRequired', not both")
            login_required = loginRequired
        for name, value in (
            ("max_connections", max_connections),
            ("max_unauthenticated_per_address", max_unauthenticated_per_address),
        ):
            if type(value) is not int or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self.max_connections = max_connections
        self.max_unauthenticated_per_address = max_unauthenticated_per_address
        # What to listen on at each start; port 0 picks a new free port each time.
        self._listen_on = listen_on(addr, port, reuse_port=reuse_port, sock=sock)
        self.addr, self.port = self._listen_on.addr, self._listen_on.port
        self.ssl_context = check_context(ssl_context, server_side=True)
        self.settings = Settings(**options)
        self.logger = logger if logger is not None else logging.getLogger("alvaro.host")
        # The open clients, in the order they came, each with its internal side.
        self._clients: dict[Connection, ConnectionCore] = {}
        self._loop: LoopHandle | None = None
        self._stop_event: anyio.Event | None = None
        self._stopped: anyio.Event | None = None
        self._stopping = False
        self._listening = False
        self._task_group: anyio.abc.TaskGroup | None = None
        self._peer_log = PeerLog(self.logger)
        # Counts connections and decides on new ones (caps, bans), from start() on.
        self._admission = Admission(banned_reason=BANNED_REASON, logger=self.logger)
        self._serving_tls: ssl.SSLContext | None = None  # the context of the current run
        self.login_required = bool(login_required)
        self.accounts = accounts if accounts is not None else Accounts()
        self.authenticator = authenticator

    # --- Callbacks: assign on the instance or override in a subclass ----------------------------
    # Attributes rather than methods, so that ``host.got_data = f`` type-checks; a method of a
    # subclass overrides them all the same. ``None`` means not set. Whatever a callback returns
    # is ignored, except a coroutine (an ``async def``'s), which is awaited.

    new_client: Callable[[Connection], object] | None = None
    """Called as ``new_client(conn)`` when a client has connected, before any of its messages
    is delivered.

    Runs in the event loop, in the connection's task. ``conn.send_data`` may be used here;
    ``conn.disconnect()`` refuses the client.
    """

    got_data: Callable[[Connection, Any, Metadata], object] | None = None
    """Called as ``got_data(conn, data, metadata)`` for each message a client sends, in order.

    Runs in the event loop, in the connection's task: the next message of this connection is
    not read until it returns. While this is not set, messages wait in the connection's queue
    for ``await conn.receive()`` instead.
    """

    got_request: Callable[[Connection, Any, Metadata], object] | None = None
    """Called as ``got_request(conn, data, metadata)`` for each request a client sends; what it
    returns is the reply (:class:`alvaro.Reply` to give it metadata too).

    Runs in the event loop: an ``async def`` in a task of its own (requests run concurrently,
    at most ``max_concurrent_requests`` per connection; cancelled at the deadline or when the
    client gives up), a plain function at once in the connection's task. If it raises, the
    client gets :class:`~alvaro.RemoteError` and it is logged here. Unset: "no_handler".
    """

    lost_client: Callable[[Connection], object] | None = None
    """Called as ``lost_client(conn)`` once when a client's connection has closed, whatever the
    cause.

    Runs in the event loop, in the connection's task. ``conn.close_code`` and
    ``conn.close_reason`` say why; ``conn.closed_by_peer`` says which side ended it.
    """

    logged_in: Callable[[Connection, str], object] | None = None
    """Called as ``logged_in(conn, user)`` when a client has logged in, just before
    ``new_client``.

    Runs in the event loop, in the connection's task. ``conn.user`` is ``user``.
    """

    ip_banned: Callable[[str], object] | None = None
    """Called as ``ip_banned(addr)`` once each time failed logins get an address banned.

    ``addr`` is the address as bans count it (an IPv6 address as its /64 network). Runs in
    the event loop, in a task of its own. Bans set by :meth:`ban_ip` do not call it.
    """

    server_started: Callable[[Host], object] | None = None
    """Called as ``server_started(host)`` once the host is listening; ``host.port`` is the
    bound port.

    Runs in the event loop, in the task that called :meth:`start`.
    """

    # --- Information ---------------------------------------------------------------------------

    @property
    def clients(self) -> list[Connection]:
        """The connected clients (handshake done, connection not yet closed), oldest first."""
        return list(self._clients)

    @property
    def running(self) -> bool:
        """Whether the host is listening."""
        return self._listening and not self._stopping

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Host {self.addr}:{self.port} {state}, {len(self._clients)} client(s)>"

    # --- Sending to many -------------------------------------------------------------------------

    def broadcast(
        self,
        data: Any,
        metadata: Metadata | None = None,
        *,
        exclude: Connection | Collection[Connection] | None = None,
        where: Callable[[Connection], bool] | None = None,
    ) -> int:
        """Queue one message for every connected client and return at once; safe from any thread.

        The message is encoded once. A client that is not keeping up does not hold the others
        back: one whose outbox is already over ``outbox_limit`` is dropped as a slow consumer
        (close code SLOW_CONSUMER, reported to ``lost_client``, its unsent messages counted in
        ``conn.unsent``) instead of being waited for, and a client that then takes nothing for
        ``write_timeout`` is dropped the same way.

        Args:
            data: the message's data, as for :meth:`Connection.send_data`.
            metadata: its metadata, as for :meth:`Connection.send_data`.
            exclude: a client, or clients, to leave out (often the sender of the message).
            where: called with each client, on the calling thread; only those for which it
                returns true get the message.

        Returns:
            How many clients the message was queued for.

        Raises:
            EncodeError: ``data`` or ``metadata`` cannot be encoded.
            MessageTooLarge: the message is over the ``max_message_size`` (or the metadata over
                the ``max_metadata_size``) of one of the clients it is for; then it is sent to
                none of them.
        """
        if exclude is None:
            excluded: Collection[Connection] = ()
        elif isinstance(exclude, Connection):
            excluded = (exclude,)
        else:
            excluded = exclude
        targets = [
            core
            for conn, core in list(self._clients.items())  # a copy: clients come and go
            if conn not in excluded and (where is None or where(conn))
        ]
        return broadcast(targets, data, metadata, outbox_limit=self.settings.outbox_limit)

    # --- Users, bans and the login history -----------------------------------------------------

    # The others (add_user, remove_user, users, ban_ip, ..., save, load) are those of
    # alvaro.accounts.facade.AccountsFacade, shared with alvaro.sync.Host.

    async def add_user_async(self, name: str, password: str, *, replace: bool = False) -> None:
        """:meth:`add_user`, with the key derivation in a worker thread (one at a time)."""
        await anyio.to_thread.run_sync(
            lambda: self.accounts.add_user(name, password, replace=replace),
            limiter=_add_user_derivations.get(),
        )

    # --- Running -------------------------------------------------------------------------------

    async def start(
        self,
        *,
        use_ssl: bool = False,
        ssl_cert: StrPath | None = None,
        ssl_key: StrPath | None = None,
        task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
        **seed_options: Unpack[SeedServerTLS],
    ) -> None:
        """Listen and serve clients until :meth:`stop` is called, then shut down gracefully.

        Works under ``asyncio.run(host.start())``, ``trio.run(host.start)`` and ``anyio.run``.
        With ``await task_group.start(host.start)`` it returns the bound port once listening.

        Shutting down stops accepting, closes every client with code GOING_AWAY after what was
        queued for it, and drops clients that do not answer within ``close_timeout``.

        Args:
            use_ssl: accept only TLS connections, with the certificate ``ssl_cert`` and the key
                ``ssl_key`` (PEM files). The original library's ``useSSL``, ``sslCert`` and
                ``sslKey`` spellings work too. Same as ``ssl_context=alvaro.tls.server_context(
                ssl_cert, ssl_key)`` on the constructor.

        Raises:
            OSError: the address could not be listened on (in use, not local, ...).
            TLSError: ``use_ssl`` without a certificate, or an unreadable certificate or key.
            RuntimeError: the host is already running.
        """
        if self._stop_event is not None:
            raise RuntimeError("this Host is already running")
        use_ssl, ssl_cert, ssl_key = seed_tls_options(seed_options, use_ssl, ssl_cert, ssl_key)
        self._serving_tls = host_tls_context(self.ssl_context, use_ssl, ssl_cert, ssl_key)
        self._stop_event = anyio.Event()
        self._stopped = anyio.Event()
        self._stopping = False
        self._loop = LoopHandle()
        self._admission.plan(self.max_connections, self.max_unauthenticated_per_address)
        if self.login_required:
            warn_about_host_login(
                self.logger,
                tls=self._serving_tls is not None,
                has_users=self.authenticator is not None or bool(self.accounts.users),
            )
        try:
            listener = await open_listener(self._listen_on, trio=self._loop.is_trio)
        except BaseException:
            self._stop_event = None
            raise
        self.port = listener.port
        self._listening = True
        try:
            with unwrap_group():
                await self._serve(listener, task_status)
        finally:
            self._listening = False
            self._stop_event = None
            self._stopped.set()

    async def _serve(self, listener: Listener, task_status: anyio.abc.TaskStatus[int]) -> None:
        assert self._stop_event is not None
        self.logger.info("listening on %s", ", ".join(f"{h}:{p}" for h, p in listener.addresses))
        async with anyio.create_task_group() as handlers:
            self._task_group = handlers
            try:
                async with anyio.create_task_group() as acceptors:
                    for socket_listener in listener.sockets:
                        acceptors.start_soon(
                            functools.partial(
                                self._admission.accept_loop,
                                socket_listener,
                                listener,
                                handlers,
                                handle=self._handle,
                                is_banned=lambda address: self.accounts.is_banned(address),
                                tls=self._serving_tls is not None,
                                on_capacity_error=self._peer_log.accept_error,
                            )
                        )
                    try:
                        await call_callback(self.server_started, self)
                    except Exception:
                        self.logger.exception("server_started raised; the host keeps serving")
                    task_status.started(self.port)
                    await self._stop_event.wait()
                    acceptors.cancel_scope.cancel()
            finally:
                self._stopping = True
                await listener.aclose()
                await self._close_connections()
                handlers.cancel_scope.cancel()
        self._task_group = None
        self.logger.info("stopped listening on port %s", self.port)

    async def _close_connections(self) -> None:
        # Close every connection gracefully; those that do not finish in time are cancelled by
        # the caller. If start() itself is being cancelled, the connection tasks are cancelled
        # with it and their sockets are closed at once, without the closing handshake.
        # Connections still in their opening handshake are cancelled by the caller.
        with anyio.CancelScope(shield=True):
            clients = list(self._clients)
            for conn in clients:
                conn.disconnect("the host is shutting down", CloseCode.GOING_AWAY)
            with anyio.move_on_after(self.settings.close_timeout):
                for conn in clients:
                    await conn.wait_closed()

    def stop(self) -> None:
        """Ask the host to shut down; returns at once. Safe from any thread; idempotent.

        ``await host.start()`` returns once the shutdown is complete; :meth:`aclose` waits for it.
        """
        loop, event = self._loop, self._stop_event
        if loop is None or event is None:
            return
        loop.run_or_schedule(event.set)

    async def aclose(self) -> None:
        """Stop the host and wait until it has shut down."""
        stopped = self._stopped
        self.stop()
        if stopped is not None:
            await stopped.wait()

    async def __aenter__(self) -> Self:
        """Start serving in the background of an ``async with`` block; returns once listening."""
        self._outer = anyio.create_task_group()
        await self._outer.__aenter__()
        try:
            await self._outer.start(self.start)
        except BaseException as exc:
            with unwrap_group():
                await self._outer.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        if exc is not None and self._stopped is not None:
            # Shut down gracefully before the error cancels the host's tasks: clients still get
            # what was queued for them and a GOING_AWAY close.
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(2 * self.settings.close_timeout),
            ):
                await self._stopped.wait()
        with unwrap_group():
            await self._outer.__aexit__(exc_type, exc, traceback)

    # --- Connections ---------------------------------------------------------------------------

    async def _handle(self, transport: Transport) -> None:
        """Run one connection from handshake to close; never raises except cancellation.

        The connection was counted in by the admission at accept; this counts it out.
        """
        address = transport.peer_addr
        counted_as_unauthenticated = True
        try:
            # One clock for the TLS and the alvaro handshakes and the login together.
            accepted = anyio.current_time()
            deadline = accepted + self.settings.open_timeout
            if self._serving_tls is not None:
                try:
                    transport = await secure(
                        transport,
                        self._serving_tls,
                        server_side=True,
                        hostname=None,
                        deadline=deadline,
                        timeout=self.settings.open_timeout,
                        on_failure=functools.partial(self._peer_log.tls_failure, transport),
                    )
                except Exception:
                    return  # logged (rate-limited) and closed by secure()
            core = ConnectionCore(
                transport,
                role="host",
                settings=self.settings,
                logger=self.logger,
                features=_LOGIN_FEATURES if self.login_required else _FEATURES,
                login_required=self.login_required,
                protocol_errors=self._peer_log.protocol,
            )
            try:
                await open_connection(core, deadline)
            except (RemoteProtocolError, ConnectionClosed, TimeoutError) as exc:
                self._peer_log.protocol_failure("handshake", core.where, exc)
                return
            if self.login_required and not await self._login(
                core, accepted + self.settings.login_timeout
            ):
                return
            counted_as_unauthenticated = False
            self._admission.handshakes_done(address)
            if self._stopping:
                await abort(core, CloseCode.GOING_AWAY, "the host is shutting down")
                return
            await serve_until_lost(core, *self._serving(core))
        except Exception:
            # A bug in alvaro: it must cost this connection only, never the host.
            self.logger.exception(
                "internal error while serving %s:%s", address, transport.peer_port
            )
        finally:
            self._admission.finished()
            if counted_as_unauthenticated:
                self._admission.handshakes_done(address)

    async def _login(self, core: ConnectionCore, deadline: float) -> bool:
        """Run the login by ``deadline``; return whether it succeeded (else it is closed)."""
        timeout_reason = f"the login took longer than {self.settings.login_timeout:g} s"
        try:
            user = await run_step(
                core,
                lambda: host_login(core, self.accounts, self.authenticator, self._banned),
                deadline,
                timeout_reason=timeout_reason,
                error_reason="the host could not check the login",
            )
        except TimeoutError:
            self.logger.info("closing %s: %s", core.where, timeout_reason)
            return False
        except (RemoteProtocolError, ConnectionClosed) as exc:
            self._peer_log.protocol_failure("login", core.where, exc)
            return False
        except Exception:
            # An authenticator that raised, or a bug: it costs this connection only.
            self.logger.exception("checking the login of %s failed", core.where)
            return False
        if user is None:
            self._peer_log.failed_login(core.where)
            return False
        self.logger.info("%s logged in from %s", user, core.where)
        return True

    def _banned(self, address: str) -> None:
        """Failed logins got ``address`` banned: tell the application, in a task of its own."""
        if self._task_group is not None:
            self._task_group.start_soon(self._report_ban, address_bucket(address))

    async def _report_ban(self, bucket: str) -> None:
        try:
            await call_callback(self.ip_banned, bucket)
        except Exception:
            self.logger.exception("ip_banned raised for %s", bucket)

    def _serving(
        self, core: ConnectionCore
    ) -> tuple[Callable[[], Awaitable[None]], Handlers, Callable[[], Awaitable[None]]]:
        """List an opened connection; return what serving it calls (not a coroutine of its
        own, whose frame each connection would hold while it lives)."""
        conn = core.connection
        self._clients[conn] = core

        async def lost() -> None:
            self._clients.pop(conn, None)
            await call_callback(self.lost_client, conn)

        return lambda: self._opened(core), self._handlers(conn), lost

    async def _opened(self, core: ConnectionCore) -> None:
        conn = core.connection
        try:
            if conn.user is not None:
                await call_callback(self.logged_in, conn, conn.user)
            await call_callback(self.new_client, conn)
        except Exception:
            self.logger.exception(
                "logged_in or new_client raised for %r; closing that connection", conn
            )
            core.fail(CloseCode.INTERNAL_ERROR, "the application failed")

    def _handlers(self, conn: Connection) -> Handlers:
        """Where ``conn``'s messages and requests go, looked up as each arrives."""

        def deliver(data: Any, metadata: Metadata) -> object:
            callback = self.got_data
            assert callback is not None  # the lookup has just checked, in this same task
            return callback(conn, data, metadata)

        def answerer() -> Callable[[Any, Metadata], object] | None:
            callback = self.got_request
            return None if callback is None else functools.partial(callback, conn)

        return Handlers(lambda: None if self.got_data is None else deliver, answerer)
