"""The blocking Client: the async client run on alvaro's shared background loop thread."""

from __future__ import annotations

import functools
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .. import aio
from .._aliases import ClientAliases, SeedClientTLS
from .._close_codes import CloseCode
from ..aio._core import core_of
from ..aio._io import check_port
from ..aio.client import ClientOptions as AioClientOptions
from ..exceptions import LocalProtocolError
from ._base import Runner
from ._bridges import install_bridges
from ._loop import Backend, check_not_loop_thread
from .connection import Connection

if TYPE_CHECKING:
    import logging
    import ssl
    from collections.abc import Callable, Iterator
    from concurrent.futures import Future
    from types import TracebackType

    from typing_extensions import Self, Unpack

    from .._settings import SettingsOptions
    from .._types import Metadata, StrPath
    from ..protocol import Message

__all__ = ("Client", "connect")


class ClientOptions(AioClientOptions, total=False):
    """The keyword arguments of :class:`Client`, which :func:`connect` passes on to it."""

    backend: Backend
    dispatch: Callable[[Callable[[], None]], object] | None


class Client(ClientAliases):
    """Connects to a Host from blocking code: scripts, GUIs, threads. No asyncio needed.

    ``connect()`` returns once connected (and logged in, with ``login=``); the connection then
    lives on alvaro's background event-loop thread (one per process, shared by every
    alvaro.sync object).

    Callbacks (``logged_in()``, ``made_connection()``, ``got_data(data, metadata)``,
    ``lost_connection()``, in that order) are plain functions, set as attributes or overridden
    in a subclass. They never run on the event-loop thread: they run in order on this client's
    dispatcher thread, or through ``dispatch`` if given. Any alvaro.sync method may be called
    from inside them.

    Args:
        backend: the event loop the shared thread runs, ``"asyncio"`` (default) or ``"trio"``.
        dispatch: a function that runs a zero-argument callable where you want callbacks to run,
            such as ``lambda f: root.after(0, f)`` for Tk. It must run each one once, in order.
            The client's dispatcher thread calls it, never the event-loop thread, so it may
            block; :meth:`close` called on the thread it hands callbacks to returns promptly.
        logger: as for :class:`alvaro.aio.Client`.
        **options: the limits and timeouts of :class:`alvaro.Settings`, as for
            :class:`alvaro.aio.Client`.

    Example::

        with alvaro.sync.connect("localhost", 8888) as client:
            client.send_data("hello", metadata={"kind": "greeting"})
            reply = client.receive(timeout=5)
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        backend: Backend = "asyncio",
        dispatch: Callable[[Callable[[], None]], object] | None = None,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        **options: Unpack[SettingsOptions],
    ) -> None:
        self._aio = aio.Client(
            ssl_context=ssl_context,
            logger=logger,
            **options,
        )
        self.logger = self._aio.logger  # the aio object applies the default logger
        self.settings = self._aio.settings
        self._runner = Runner(
            backend=backend,
            dispatch=dispatch,
            settings=self.settings,
            name="alvaro-client-callbacks",
            logger=self.logger,
        )
        self._connection: Connection | None = None
        self._connection_lock = threading.Lock()
        # The async client's callbacks hand everything over to this object.
        install_bridges(self, "client", Client)

    # --- Callbacks: assign on the instance or override in a subclass ----------------------------
    # Attributes rather than methods, so that ``client.got_data = f`` type-checks; a method of a
    # subclass overrides them all the same. ``None`` means not set. Return values are ignored.

    logged_in: Callable[[], object] | None = None
    """Called as ``logged_in()`` once the login given to :meth:`connect` has succeeded, just
    before ``made_connection``; on the dispatcher thread (or through ``dispatch``).
    :attr:`user` is the user's name."""

    made_connection: Callable[[], object] | None = None
    """Called as ``made_connection()`` once connected, on the dispatcher thread (or through
    ``dispatch``)."""

    got_data: Callable[[Any, Metadata], object] | None = None
    """Called as ``got_data(data, metadata)`` for each message, in order, on the dispatcher
    thread (or through ``dispatch``).

    While this is not set, messages wait for :meth:`receive` instead. A callback that raises
    is logged and closes the connection with INTERNAL_ERROR.
    """

    got_request: Callable[[Any, Metadata], object] | None = None
    """Called as ``got_request(data, metadata)`` for each request the host sends; what it
    returns is the reply (:class:`alvaro.Reply` to give it metadata too).

    Runs on a worker thread, several at once (at most ``max_concurrent_requests``), or, with
    ``dispatch``, through it one at a time. If it raises, the host gets
    :class:`~alvaro.RemoteError` and the exception is logged here. Past the request's deadline
    its answer is simply not sent. While this is not set, requests are answered "no_handler".
    """

    lost_connection: Callable[[], object] | None = None
    """Called as ``lost_connection()`` once when the connection has closed, on the dispatcher
    thread (or through ``dispatch``). :attr:`connection` tells ``close_code`` and
    ``close_reason``."""

    # --- Information ---------------------------------------------------------------------------

    @property
    def connection(self) -> Connection | None:
        """The current (or last) connection, or ``None`` before the first connect."""
        return self._connection

    @property
    def connected(self) -> bool:
        """Whether the client is connected and the connection is open."""
        return self._aio.connected

    @property
    def user(self) -> str | None:
        """The user this client is logged in as, or ``None``."""
        return self._aio.user

    @property
    def backend(self) -> Backend:
        """The event loop the background thread runs."""
        return self._runner.loop.backend

    def __repr__(self) -> str:
        return repr(self._aio).replace("<Client", "<alvaro.sync.Client", 1)

    # --- Connecting ----------------------------------------------------------------------------

    def connect(
        self,
        host: str,
        port: int,
        *,
        use_ssl: bool = False,
        ssl_cert: StrPath | None = None,
        server_hostname: str | None = None,
        login: tuple[str, str] | None = None,
        **seed_options: Unpack[SeedClientTLS],
    ) -> None:
        """Connect to a host; returns once connected, while the connection lives on in the
        background.

        ``use_ssl``, ``ssl_cert`` (or the original ``useSSL``, ``sslCert``) and
        ``server_hostname`` connect with TLS, as in :meth:`alvaro.aio.Client.connect`.
        ``login=(user, password)`` logs in to a host that requires it (SCRAM-SHA-256; the
        password never crosses the network); then this returns only once logged in.

        Raises:
            AuthenticationError: the login failed (the same reason for an unknown user and a
                wrong password), the host requires login and none was given, or this address
                is banned after too many failed logins.
            ValueError: ``port`` is not a port number from 1 to 65535, or ``login`` is not a
                ``(user, password)`` pair of a valid user name and password (checked before
                connecting).
            TLSError: TLS could not be set up; ``kind`` says why. Never falls back to plaintext.
            ConnectError: the host could not be reached, refused, or failed the handshake.
            TimeoutError: connecting took longer than ``open_timeout``.
            RuntimeError: the client is already connected.
            WrongThreadError: called on the event-loop thread.
        """
        check_not_loop_thread("connect()")
        check_port(port, listening=False)  # before the loop thread is started for nothing
        connect = functools.partial(
            self._aio.connect,
            host,
            port,
            use_ssl=use_ssl,
            ssl_cert=ssl_cert,
            server_hostname=server_hostname,
            login=login,
            **seed_options,
        )
        name = f"alvaro client to {host}:{port}"
        self._runner.launch(
            lambda portal: portal.start_task(connect, name=name)[0],
            "this Client is already connected or connecting",
        )
        conn = self._aio.connection
        assert conn is not None  # set before the async connect() reports that it is connected
        self._connection_for(conn)

    @property
    def _task(self) -> Future[None] | None:
        return self._runner.task

    def wait_for_connection(self, timeout: float | None = None) -> bool:
        """Block until connected; return whether it is. Sleeps, using no CPU while it waits."""
        check_not_loop_thread("wait_for_connection()")
        return self._aio.wait_for_connection(timeout)

    def wait_for_login(self, timeout: float | None = None) -> bool:
        """Block until logged in; return whether it is (``False`` when the time runs out).

        For a thread other than the one calling :meth:`connect`, as :meth:`wait_for_connection`.
        Sleeps, using no CPU while it waits; ``timeout=0`` only looks.

        Raises:
            AuthenticationError: the login attempt of the current :meth:`connect` failed.
            WrongThreadError: a waiting call on the event-loop thread.
        """
        if timeout != 0:
            check_not_loop_thread("wait_for_login()")
        return self._aio.wait_for_login(timeout)

    def logout(self) -> None:
        """End the login: the host closes the connection (code NORMAL, reason "logged out").

        Returns once the connection is closed (at most about ``close_timeout`` later), having
        let go of the loop thread, as :meth:`close`. A new login needs a new :meth:`connect`.
        Does nothing when not logged in. Safe from any thread but the event loop's, including
        from inside callbacks.

        Raises:
            WrongThreadError: called on the event-loop thread.
        """
        check_not_loop_thread("logout()")
        conn = self._aio.connection
        portal = self._runner.portal
        if conn is None or portal is None or self._aio.user is None:
            return
        # The host accepts no message after LOGOUT, so its CLOSE is answered without first
        # letting the callbacks already scheduled reply (this very thread may be one of them).
        core_of(conn).before_echo = None
        self._runner.dispatcher.unblock()
        self._connection_for(conn)._inbox.unblock()
        portal.call(self._aio.logout)
        self.close("logged out")

    def _connection_for(self, conn: aio.Connection) -> Connection:
        with self._connection_lock:
            if self._connection is None or self._connection._aio is not conn:
                self._connection = Connection(conn, self._runner)
            return self._connection

    # --- Bridges, run on the loop thread by the async client (alvaro.sync._bridges) --------------

    def _lost(self, conn: aio.Connection) -> Connection:
        return self._connection_for(conn)  # kept: ``connection`` still tells how it closed

    def _call(
        self, conn: aio.Connection | None, callback: Callable[..., object], args: tuple[Any, ...]
    ) -> None:
        try:
            callback(*args)
        except Exception:
            self.logger.exception("an alvaro.sync client callback raised; closing the connection")
            if conn is not None:
                self._aio.disconnect("the application failed", CloseCode.INTERNAL_ERROR)

    # --- Using the connection ------------------------------------------------------------------

    def _require_connection(self) -> Connection:
        conn = self._connection
        if conn is None:
            raise LocalProtocolError("the client is not connected; call connect() first")
        return conn

    def send_data(self, data: Any, metadata: Metadata | None = None) -> None:
        """Queue a message for the host and return at once; safe from any thread.

        See :meth:`alvaro.sync.Connection.send_data`.
        """
        self._require_connection().send_data(data, metadata)

    def send(
        self, data: Any, metadata: Metadata | None = None, timeout: float | None = None
    ) -> None:
        """Queue a message, first blocking while the outbox is over ``write_limit``."""
        self._require_connection().send(data, metadata, timeout)

    def request(
        self, data: Any, metadata: Metadata | None = None, *, timeout: float | None = None
    ) -> Message:
        """Ask the host and block until its answer comes.

        See :meth:`alvaro.sync.Connection.request`.
        """
        return self._require_connection().request(data, metadata, timeout=timeout)

    def request_nowait(
        self,
        data: Any,
        metadata: Metadata | None = None,
        *,
        on_reply: Callable[[Message], object],
        on_error: Callable[[Exception], object] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Ask the host and return at once; the answer goes to ``on_reply`` through the
        dispatcher (a GUI's thread with ``dispatch``). See
        :meth:`alvaro.sync.Connection.request_nowait`.
        """
        self._require_connection().request_nowait(
            data, metadata, on_reply=on_reply, on_error=on_error, timeout=timeout
        )

    def receive(self, timeout: float | None = None) -> Message:
        """Return the next message (``None`` waits, ``0`` polls); see
        :meth:`alvaro.sync.Connection.receive`."""
        return self._require_connection().receive(timeout)

    def __iter__(self) -> Iterator[Message]:
        """Iterate over messages until the connection closes normally."""
        return iter(self._require_connection())

    def disconnect(self, reason: str | None = None, code: int = CloseCode.NORMAL) -> None:
        """Close the connection and return at once; safe from any thread, idempotent."""
        self._aio.disconnect(reason, code)

    def close(self, reason: str | None = None, code: int = CloseCode.NORMAL) -> None:
        """Close the connection, wait until it is closed, and let go of the loop thread.

        Idempotent. Callbacks already scheduled still run before this returns (unless it is
        called from inside one). The last alvaro.sync object to close stops the loop thread.

        Raises:
            WrongThreadError: called on the event-loop thread.
        """
        check_not_loop_thread("close()")
        task = self._task
        if task is not None:
            # Whoever would make room for waiting messages may be this very thread.
            self._runner.dispatcher.unblock()
            if self._connection is not None:
                self._connection._inbox.unblock()
            self._aio.disconnect(reason, code)
            # The async client gives up after close_timeout; allow for that and some slack.
            task.exception(timeout=2 * self.settings.close_timeout + 1)
        self._runner.release(2 * self.settings.close_timeout + 1, task)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


@contextmanager
def connect(
    host: str,
    port: int,
    *,
    use_ssl: bool = False,
    ssl_cert: StrPath | None = None,
    server_hostname: str | None = None,
    login: tuple[str, str] | None = None,
    **options: Unpack[ClientOptions],
) -> Iterator[Client]:
    """Connect to a host for the duration of a ``with`` block, then close gracefully.

    ``use_ssl``, ``ssl_cert``, ``server_hostname`` and ``login`` are :meth:`Client.connect`'s;
    ``options`` are :class:`Client`'s keyword arguments (``ssl_context=``, ``backend=``,
    settings).

    Raises:
        AuthenticationError: the login failed.
        ValueError: ``port`` is not a port number, or ``login`` is not a valid
            ``(user, password)`` pair.
        ConnectError: the host could not be reached or failed the handshake.
        TimeoutError: connecting took longer than ``open_timeout``.
    """
    client = Client(**options)
    client.connect(
        host,
        port,
        use_ssl=use_ssl,
        ssl_cert=ssl_cert,
        server_hostname=server_hostname,
        login=login,
    )
    try:
        yield client
    finally:
        client.close()
