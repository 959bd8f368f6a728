"""The blocking Host: the async host run on alvaro's shared background loop thread."""

from __future__ import annotations

import functools
import signal
import threading
from concurrent.futures import CancelledError
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .. import aio
from .._aliases import HostAliases, SeedServerTLS
from .._close_codes import CloseCode
from ._base import Runner
from ._bridges import install_bridges
from ._loop import Backend, check_not_loop_thread
from .connection import Connection

if TYPE_CHECKING:
    import logging
    import socket
    import ssl
    from collections.abc import Callable, Collection, Iterator
    from concurrent.futures import Future
    from types import FrameType, TracebackType

    from typing_extensions import Self, Unpack

    from .._settings import SettingsOptions
    from .._types import Metadata, StrPath
    from ..accounts.store import Accounts
    from ..auth import Authenticator

__all__ = ("Host",)


class Host(HostAliases):
    """Accepts clients from blocking code: scripts, GUIs, threads. No asyncio needed.

    ``start()`` returns once listening; the host then runs on alvaro's background event-loop
    thread (one per process, shared by every alvaro.sync object). ``serve_forever()`` blocks
    until ``stop()``, Ctrl+C or SIGTERM, which stop it gracefully.

    Callbacks (``new_client(conn)``, ``got_data(conn, data, metadata)``, ``lost_client(conn)``,
    ``server_started(host)``, and with login ``logged_in(conn, user)`` and
    ``ip_banned(addr)``) are plain functions, set as attributes or overridden in a subclass.
    They never run on the event-loop thread: they run in order on this host's dispatcher thread,
    or through ``dispatch`` if given. Any alvaro.sync method may be called from inside them.
    For each connection the order is ``logged_in`` (with login), ``new_client``,
    ``got_data``..., ``lost_client``.

    Args:
        addr: the address to listen on, as for :class:`alvaro.aio.Host`.
        port: the port to listen on; 0 picks a free port (read :attr:`port` after start).
        reuse_port: let several processes listen on the same port (``SO_REUSEPORT``; Linux
            spreads connections among them); ``ValueError`` where the system lacks it.
        sock: listen on this bound TCP socket instead of ``addr`` and ``port`` (left out;
            others than the defaults are a ``ValueError``), such as one a supervisor hands its
            workers; the host closes it when it stops.
        ssl_context: accept only TLS connections, with this context
            (:func:`alvaro.tls.server_context`); see also :meth:`start`'s ``use_ssl``.
        backend: the event loop the shared thread runs, ``"asyncio"`` (default) or ``"trio"``.
        dispatch: a function that runs a zero-argument callable where you want callbacks to
            run, such as ``lambda f: root.after(0, f)`` for Tk. It must run each one once, in
            order. The host's dispatcher thread calls it, never the event-loop thread, so it
            may block.
        login_required: every client must log in before it reaches any callback; add users
            with :meth:`add_user`. The original ``loginRequired`` spelling works too.
        accounts: the store of users, bans and login history (:class:`alvaro.auth.Accounts`).
        authenticator: looks users up elsewhere than ``accounts``; a plain function runs in a
            worker thread (see :data:`alvaro.auth.Authenticator`).
        logger: as for :class:`alvaro.aio.Host`.
        max_connections: as for :class:`alvaro.aio.Host`.
        max_unauthenticated_per_address: as for :class:`alvaro.aio.Host`.
        **options: the limits and timeouts of :class:`alvaro.Settings`, as for
            :class:`alvaro.aio.Host`.

    Example::

        host = alvaro.sync.Host("localhost", 8888)
        host.got_data = lambda conn, data, metadata: conn.send_data(data)   # echo
        host.serve_forever()
    """

    def __init__(
        self,
        addr: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        sock: socket.socket | None = None,
        backend: Backend = "asyncio",
        dispatch: Callable[[Callable[[], None]], object] | None = None,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        max_connections: int = 1024,
        max_unauthenticated_per_address: int = 16,
        login_required: bool = False,
        accounts: Accounts | None = None,
        authenticator: Authenticator | None = None,
        loginRequired: bool | None = None,
        **options: Unpack[SettingsOptions],
    ) -> None:
        self._aio = aio.Host(
            addr,
            port,
            ssl_context=ssl_context,
            reuse_port=reuse_port,
            sock=sock,
            logger=logger,
            max_connections=max_connections,
            max_unauthenticated_per_address=max_unauthenticated_per_address,
            login_required=login_required,
            accounts=accounts,
            authenticator=authenticator,
            loginRequired=loginRequired,
            **options,
        )
        self.logger = self._aio.logger  # the aio object applies the default logger
        self.settings = self._aio.settings
        self._runner = Runner(
            backend=backend,
            dispatch=dispatch,
            settings=self.settings,
            name="alvaro-host-callbacks",
            logger=self.logger,
        )
        self._connections: dict[aio.Connection, Connection] = {}
        self._connections_lock = threading.Lock()
        install_bridges(self, "host", Host)

    # --- Callbacks: assign on the instance or override in a subclass ----------------------------
    # Attributes rather than methods, so that ``host.got_data = f`` type-checks; a method of a
    # subclass overrides them all the same. ``None`` means not set. Return values are ignored.

    new_client: Callable[[Connection], object] | None = None
    """Called as ``new_client(conn)`` when a client has connected, before its messages; on the
    dispatcher thread (or through ``dispatch``)."""

    got_data: Callable[[Connection, Any, Metadata], object] | None = None
    """Called as ``got_data(conn, data, metadata)`` for each message a client sends, in order,
    on the dispatcher thread (or through ``dispatch``).

    While this is not set, messages wait for ``conn.receive()`` instead. A callback that
    raises is logged and closes only that client's connection, with INTERNAL_ERROR.
    """

    got_request: Callable[[Connection, Any, Metadata], object] | None = None
    """Called as ``got_request(conn, data, metadata)`` for each request a client sends; what it
    returns is the reply (:class:`alvaro.Reply` to give it metadata too).

    Runs on a worker thread, several at once (at most ``max_concurrent_requests`` per
    connection), or, with ``dispatch``, through it one at a time. If it raises, the client gets
    :class:`~alvaro.RemoteError` and the exception is logged here. A thread cannot be
    interrupted: past the request's deadline its answer is simply not sent. While this is not
    set, requests are answered "no_handler".
    """

    lost_client: Callable[[Connection], object] | None = None
    """Called as ``lost_client(conn)`` once when a client's connection has closed, on the
    dispatcher thread (or through ``dispatch``)."""

    server_started: Callable[[Host], object] | None = None
    """Called as ``server_started(host)`` once the host is listening, on the dispatcher thread
    (or through ``dispatch``)."""

    logged_in: Callable[[Connection, str], object] | None = None
    """Called as ``logged_in(conn, user)`` when a client has logged in, just before
    ``new_client``, on the dispatcher thread (or through ``dispatch``). ``conn.user`` is
    ``user``."""

    ip_banned: Callable[[str], object] | None = None
    """Called as ``ip_banned(addr)`` once each time failed logins get an address banned, on
    the dispatcher thread (or through ``dispatch``).

    ``addr`` is the address as bans count it (an IPv6 address as its /64 network). Bans set
    by :meth:`ban_ip` do not call it.
    """

    # --- Information ---------------------------------------------------------------------------

    @property
    def addr(self) -> str:
        """The address the host listens on."""
        return self._aio.addr

    @property
    def port(self) -> int:
        """The TCP port; the bound one once started (port 0 picks a free one)."""
        return self._aio.port

    @property
    def running(self) -> bool:
        """Whether the host is listening."""
        return self._aio.running

    @property
    def max_connections(self) -> int:
        """The most connections served at once (before lowering to the open-file limit)."""
        return self._aio.max_connections

    @property
    def max_unauthenticated_per_address(self) -> int:
        """The most connections from one address still in their handshakes."""
        return self._aio.max_unauthenticated_per_address

    @property
    def login_required(self) -> bool:
        """Whether clients must log in; takes effect for connections accepted after a change."""
        return self._aio.login_required

    @login_required.setter
    def login_required(self, value: bool) -> None:
        self._aio.login_required = bool(value)

    @property
    def accounts(self) -> Accounts:
        """The store of users, bans and login history (thread-safe)."""
        return self._aio.accounts

    @accounts.setter
    def accounts(self, value: Accounts) -> None:
        self._aio.accounts = value

    @property
    def authenticator(self) -> Authenticator | None:
        """Looks users up elsewhere than :attr:`accounts`, or ``None``."""
        return self._aio.authenticator

    @authenticator.setter
    def authenticator(self, value: Authenticator | None) -> None:
        self._aio.authenticator = value

    @property
    def clients(self) -> list[Connection]:
        """The connected clients, oldest first."""
        return [self._connection_for(conn) for conn in self._aio.clients]

    @property
    def backend(self) -> Backend:
        """The event loop the background thread runs."""
        return self._runner.loop.backend

    def __repr__(self) -> str:
        return repr(self._aio).replace("<Host", "<alvaro.sync.Host", 1)

    def _connection_for(self, conn: aio.Connection) -> Connection:
        with self._connections_lock:
            facade = self._connections.get(conn)
            if facade is None:
                facade = self._connections[conn] = Connection(conn, self._runner)
            return facade

    # --- Sending to many -------------------------------------------------------------------------

    def broadcast(
        self,
        data: Any,
        metadata: Metadata | None = None,
        *,
        exclude: Connection | Collection[Connection] | None = None,
        where: Callable[[Connection], bool] | None = None,
    ) -> int:
        """Queue one message for every connected client and return at once; any thread.

        As :meth:`alvaro.aio.Host.broadcast`: a client whose outbox is full is dropped as a
        slow consumer instead of holding the others back. ``where`` runs on the calling thread.
        Returns how many clients the message was queued for.
        """
        if exclude is None:
            excluded: Collection[aio.Connection] = ()
        elif isinstance(exclude, Connection):
            excluded = (exclude._aio,)
        else:
            excluded = [facade._aio for facade in exclude]
        keep = None
        if where is not None:
            test = where

            def keep(conn: aio.Connection) -> bool:
                return test(self._connection_for(conn))

        return self._aio.broadcast(data, metadata, exclude=excluded, where=keep)

    # --- Running -------------------------------------------------------------------------------

    def start(
        self,
        *,
        use_ssl: bool = False,
        ssl_cert: StrPath | None = None,
        ssl_key: StrPath | None = None,
        **seed_options: Unpack[SeedServerTLS],
    ) -> None:
        """Start listening; returns once listening, while the host serves in the background.

        ``use_ssl``, ``ssl_cert`` and ``ssl_key`` (or the original ``useSSL``, ``sslCert``,
        ``sslKey``) serve TLS with a certificate and key from PEM files, as in
        :meth:`alvaro.aio.Host.start`.

        Raises:
            OSError: the address could not be listened on (in use, not local, ...).
            TLSError: ``use_ssl`` without a certificate, or an unreadable certificate or key.
            RuntimeError: the host is already running.
            WrongThreadError: called on the event-loop thread.
        """
        check_not_loop_thread("start()")
        start = functools.partial(
            self._aio.start,
            use_ssl=use_ssl,
            ssl_cert=ssl_cert,
            ssl_key=ssl_key,
            **seed_options,
        )
        name = f"alvaro host on {self._aio.addr}:{self._aio.port}"
        self._runner.launch(
            lambda portal: portal.start_task(start, name=name)[0], "this Host is already running"
        )

    @property
    def _task(self) -> Future[None] | None:
        return self._runner.task

    def serve_forever(self) -> signal.Signals | None:
        """Serve until :meth:`stop` is called (from another thread or a callback), or until
        SIGINT (Ctrl+C) or SIGTERM.

        Starts the host first if needed. On the main thread it handles SIGINT and SIGTERM while
        it serves: the first one shuts the host down gracefully, as :meth:`stop` does (every
        client gets GOING_AWAY after what was queued for it), and a second one during that
        shutdown drops the clients still connected at once. Nothing is printed and nothing is
        raised; the previous handlers are back when this returns. A signal that was ignored
        (``SIG_IGN``, as for SIGINT in a background job) stays ignored.

        On any other thread no signal can be handled (Python runs signal handlers on the main
        thread only): stop the host with :meth:`stop` from elsewhere.

        Returns:
            The signal that stopped the host (``signal.SIGINT`` or ``signal.SIGTERM``), or
            ``None`` when :meth:`stop` did. A script that ends with ``serve_forever()`` exits
            with status 0 either way; ``sys.exit(128 + signum)`` follows the shell's custom.
        """
        check_not_loop_thread("serve_forever()")
        if self._task is None or self._task.done():
            self.start()
        task = self._task
        assert task is not None
        loop = self._aio._loop
        received: list[signal.Signals] = []

        def on_signal(signum: int, frame: FrameType | None) -> None:
            # Runs on the main thread, wherever it is waiting: only hands work to the loop
            # thread, without taking any lock the waiting thread might hold.
            received.append(signal.Signals(signum))
            if loop is not None:
                # On the loop thread stop() only asks for the shutdown; a cancelled start()
                # closes every connection at once.
                loop.call_soon(self.stop if len(received) == 1 else task.cancel)

        with _handling_signals(on_signal):
            try:
                task.result()
            except CancelledError:
                if not received:
                    raise
            except KeyboardInterrupt:  # SIGINT left to Python (its handler was set in C)
                self.close()
                raise
            finally:
                # Still under the handlers: a signal now must not end in a traceback either.
                self._runner.release(self._shutdown_bound(), task)
        return received[0] if received else None

    def stop(self) -> None:
        """Shut down: stop accepting, close every client (GOING_AWAY) after what was queued for
        it, wait until that is done, and let go of the loop thread (as :meth:`close`), so a
        script that ends with ``stop()`` exits. Returns within ``2 * close_timeout + 1``
        seconds, whatever the clients do. Safe from any thread and from inside callbacks;
        idempotent. On the event-loop thread it only asks for the shutdown, without waiting.
        """
        # The task this stops, taken before asking: a start() racing this one either ran
        # first (then this stops its task) or comes after (then its task is left alone).
        task = self._task
        # Whoever would make room for waiting messages may be this very thread.
        self._runner.dispatcher.unblock()
        with self._connections_lock:
            facades = list(self._connections.values())
        for facade in facades:
            facade._inbox.unblock()
        self._aio.stop()
        if self._runner.loop.thread_id == threading.get_ident():
            return
        if task is not None:
            task.exception(timeout=self._shutdown_bound())
        self._runner.release(self._shutdown_bound(), task)

    def close(self) -> None:
        """Stop the host, run the callbacks already scheduled, and let go of the loop thread.

        Idempotent. The last alvaro.sync object to close stops the loop thread.
        """
        check_not_loop_thread("close()")
        self.stop()

    def _shutdown_bound(self) -> float:
        # Shutdown closes clients within close_timeout; the rest is slack for a busy machine.
        return 2 * self.settings.close_timeout + 1

    def __enter__(self) -> Self:
        """Start the host (if not started) for the duration of a ``with`` block."""
        if self._task is None or self._task.done():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- Bridges, run on the loop thread by the async host (alvaro.sync._bridges) ----------------

    def _lost(self, conn: aio.Connection) -> Connection:
        facade = self._connection_for(conn)
        with self._connections_lock:
            self._connections.pop(conn, None)
        return facade

    def _call(
        self, conn: aio.Connection | None, callback: Callable[..., object], args: tuple[Any, ...]
    ) -> None:
        try:
            callback(*args)
        except Exception:
            self.logger.exception("an alvaro.sync host callback raised")
            if conn is not None:
                conn.disconnect("the application failed", CloseCode.INTERNAL_ERROR)


@contextmanager
def _handling_signals(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """Handle SIGINT and SIGTERM with ``handler`` for the block, then put the previous
    handlers back.

    Only on the main thread, the one Python runs handlers on and lets set them. A signal that
    is ignored stays so, and one whose handler was set outside Python (which Python could not
    put back) is left alone.
    """
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(signum)
            if current is not None and current is not signal.SIG_IGN:
                previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, current in previous.items():
            signal.signal(signum, current)
