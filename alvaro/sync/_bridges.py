"""The bridges that hand the async object's callbacks over to the blocking object's dispatcher.

A blocking Host or Client sets, on the async object it runs, one bridge per row of
``alvaro._events`` for its side. Each bridge runs on the loop thread: it finds the user's
callback (:func:`~alvaro.sync._base.user_callback`), gives it the blocking objects in place of
the async ones (a :class:`~alvaro.sync.Connection` for ``conn``, the blocking Host for ``host``)
and schedules it on the dispatcher, waiting for room or not as the row says. A few callbacks do
more: ``got_data`` without a callback feeds the connection's inbox instead, the callback that
opens a connection makes its closing handshake wait for the callbacks already scheduled, and the
one that reports it lost ends the connection's inbox first. ``got_request`` is the one whose
return value matters: it runs on a worker thread (requests run concurrently), or through
``dispatch`` when there is one, and the bridge returns what it returns.
"""

from __future__ import annotations

import functools
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.to_thread

from .._events import REQUEST, events
from ..aio._core import core_of
from ..aio._loop import LoopHandle
from ..aio._requests import NoRequestHandler
from ..protocol import Message
from ._base import user_callback

if TYPE_CHECKING:
    from collections.abc import Callable

    from .. import aio
    from .._events import Event, Side
    from .._types import Metadata
    from ._base import Runner
    from .connection import Connection

__all__ = ("Peer", "install_bridges")

# Callbacks with more to do than scheduling the user's function (see the module's docstring).
_MESSAGE = "got_data"
_OPENED = frozenset({"new_client", "made_connection"})
_LOST = frozenset({"lost_client", "lost_connection"})

_Args = tuple[Any, ...]


class Peer(Protocol):
    """What a blocking Host or Client lends its bridges."""

    _runner: Runner

    @property
    def _aio(self) -> Any: ...

    def _connection_for(self, conn: aio.Connection) -> Connection:
        """The blocking facade of ``conn``, made on first use."""
        ...

    def _lost(self, conn: aio.Connection) -> Connection:
        """The facade of ``conn``, which has closed; a host forgets it."""
        ...

    def _call(
        self, conn: aio.Connection | None, callback: Callable[..., object], args: _Args
    ) -> None:
        """Run ``callback(*args)`` on the dispatcher; if it raises, log it and close ``conn``
        (unless ``None``) with INTERNAL_ERROR."""
        ...


def install_bridges(peer: Peer, side: Side, base: type) -> None:
    """Set a bridge for each of ``side``'s callbacks on ``peer._aio``.

    ``base`` is the blocking class whose callback attributes count as not set
    (:func:`~alvaro.sync._base.user_callback`).
    """
    for row in events(side):
        setattr(peer._aio, row.name, _bridge(peer, row, base))


def _bridge(peer: Peer, row: Event, base: type) -> Callable[..., object]:
    name = row.name
    if name == _MESSAGE:
        return _message_bridge(peer, row, base)
    if name == REQUEST:
        return _request_bridge(peer, row, base)
    dispatcher = peer._runner.dispatcher
    connection_for = peer._connection_for
    call = peer._call
    locate = _locate(peer, row)
    convert = _converter(peer, row)
    failing = row.closes_on_error

    if row.waits:

        async def schedule(*args: Any) -> None:
            conn = locate(args)
            facade = None
            if conn is not None:
                # Made now: the callback may use the connection before connect() returns.
                facade = connection_for(conn)
                if name in _OPENED:
                    # Callbacks run behind the loop: let those already scheduled reply before
                    # the peer's CLOSE is answered, as they could in alvaro.aio.
                    core_of(conn).before_echo = dispatcher.barrier
            callback = user_callback(peer, name, base)
            if callback is not None:
                user_args = convert(args, facade)
                target = conn if failing else None
                await dispatcher.submit(lambda: call(target, callback, user_args))

        return schedule

    def schedule_nowait(*args: Any) -> None:
        conn = locate(args)
        facade = None
        if conn is not None:
            if name in _LOST:
                facade = peer._lost(conn)
                facade._finished()
            else:
                facade = connection_for(conn)
        callback = user_callback(peer, name, base)
        if callback is not None:
            user_args = convert(args, facade)
            target = conn if failing else None
            dispatcher.submit_nowait(lambda: call(target, callback, user_args))

    return schedule_nowait


def _message_bridge(peer: Peer, row: Event, base: type) -> Callable[..., object]:
    """The bridge of ``got_data``, run once per message: it does only the work the message needs,
    hence one shape for the host's (the connection comes with each message) and one for the
    client's (its one connection)."""
    name = row.name
    submit = peer._runner.dispatcher.submit
    connection_for = peer._connection_for
    call = peer._call

    if row.args == ("conn", "data", "metadata"):

        async def deliver(conn: aio.Connection, data: Any, metadata: Metadata) -> None:
            facade = connection_for(conn)
            callback = user_callback(peer, name, base)
            closing = lambda: not conn.is_open  # noqa: E731 - then stop waiting for the consumer
            if callback is None:
                await facade._inbox.put(Message(data, metadata), closing)
            else:
                await submit(lambda: call(conn, callback, (facade, data, metadata)), closing)

        return deliver

    assert row.args == ("data", "metadata"), row
    client = peer._aio

    async def receive(data: Any, metadata: Metadata) -> None:
        conn = client.connection
        callback = user_callback(peer, name, base)
        closing = lambda: not conn.is_open  # noqa: E731 - then stop waiting for the consumer
        if callback is None:
            await connection_for(conn)._inbox.put(Message(data, metadata), closing)
        else:
            await submit(lambda: call(conn, callback, (data, metadata)), closing)

    return receive


def _request_bridge(peer: Peer, row: Event, base: type) -> Callable[..., object]:
    """The bridge of ``got_request``: the user's handler on a worker thread, or through
    ``dispatch``; its return value (or exception) is the bridge's."""
    dispatcher = peer._runner.dispatcher
    connection_for = peer._connection_for
    host_side = row.args[0] == "conn"

    async def answer(*args: Any) -> object:
        callback = user_callback(peer, REQUEST, base)
        if callback is None:
            raise NoRequestHandler
        user_args = (connection_for(args[0]), *args[1:]) if host_side else args
        handler = functools.partial(callback, *user_args)
        if not dispatcher.dispatching:
            # A thread cannot be interrupted: when the request is cancelled, its answer is
            # dropped and the thread finishes on its own.
            return await anyio.to_thread.run_sync(handler, abandon_on_cancel=True)
        return await _through_dispatch(dispatcher.submit_nowait, handler)

    return answer


async def _through_dispatch(
    submit: Callable[[Callable[[], None]], None], handler: Callable[[], object]
) -> object:
    """Run ``handler`` where the dispatcher hands callbacks (a GUI's thread) and wait, without
    blocking the loop, for what it returns or raises."""
    loop = LoopHandle()
    done = anyio.Event()
    outcome: list[tuple[bool, object]] = []

    def run() -> None:
        try:
            outcome.append((True, handler()))
        except Exception as exc:
            outcome.append((False, exc))
        loop.run_or_schedule(done.set)

    submit(run)
    await done.wait()
    succeeded, value = outcome[0]
    if not succeeded:
        assert isinstance(value, Exception)
        raise value
    return value


def _locate(peer: Peer, row: Event) -> Callable[[_Args], aio.Connection | None]:
    """How a bridge finds the connection a callback concerns from the async call's arguments."""
    if "conn" in row.args:
        locate: Callable[[_Args], aio.Connection | None] = itemgetter(row.args.index("conn"))
        return locate
    if row.side == "client":  # a client's callbacks all concern its one connection
        return lambda args: peer._aio.connection
    return lambda args: None


def _converter(peer: Peer, row: Event) -> Callable[[_Args, Connection | None], _Args]:
    """How a bridge turns the async call's arguments into the user's: the blocking facade for
    ``conn``, the blocking Host for ``host``, the rest as they are."""
    if "host" not in row.args:
        if "conn" not in row.args:
            return lambda args, facade: args
        if row.args.index("conn") == 0:
            return lambda args, facade: (facade, *args[1:])

    def convert(args: _Args, facade: Connection | None) -> _Args:
        return tuple(
            facade if n == "conn" else peer if n == "host" else a
            for n, a in zip(row.args, args, strict=True)
        )

    return convert
