"""The callbacks of a Host and a Client, declared once.

Each row of :data:`EVENTS` is one callback: its name, the side it belongs to, the names of its
arguments, the original Alvaro's name for it, where it runs in ``alvaro.aio`` and in
``alvaro.sync``, and whether the sync bridge may hold the event loop back while the callback
waits for its turn. From this table come the seed's camelCase aliases (``alvaro._aliases``) and
the bridges that hand the async callbacks over to the blocking API (``alvaro.sync._bridges``).
The four classes keep a typed attribute per callback (for type checkers and IDEs), whose
docstring the API reference shows; the reference's callback tables are written from this table
when the documentation is built (``docs/_hooks/callbacks.py``), and ``tests/test_events.py``
checks both. Adding a callback means a row here, where alvaro.aio calls it, and its typed
attributes; the sync side and the docs follow from the row.

Standard library only: ``alvaro._aliases`` imports it before anything async is loaded.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

__all__ = ("EVENTS", "REQUEST", "SYNC_THREAD", "Event", "Side", "event", "events")

Side = Literal["host", "client"]

#: Where every alvaro.sync callback runs, but request handlers.
SYNC_THREAD = "the dispatcher thread (or through `dispatch`)"
#: Where alvaro.sync runs a request handler: several at once, unless ``dispatch`` serialises them.
SYNC_REQUEST_THREAD = "a worker thread, several at once (or through `dispatch`)"


class Event(NamedTuple):
    """One callback of a Host or a Client."""

    #: The attribute users set: ``host.got_data = f``.
    name: str
    #: Whose callback it is.
    side: Side
    #: The callback's parameters, in order (the same in alvaro.aio and alvaro.sync; ``conn`` is
    #: the side's Connection, ``host`` the side's Host).
    args: tuple[str, ...]
    #: The original Alvaro's name (an attribute alias), or ``None`` for a callback it lacked.
    seed: str | None
    #: The task that runs it in alvaro.aio.
    aio_task: str
    #: Whether a callback that raises closes its connection (with INTERNAL_ERROR); after the
    #: others the host, or the connection, carries on.
    closes_on_error: bool
    #: Whether the sync bridge waits for room in the dispatcher (holding that connection's loop
    #: task back while callbacks pile up) rather than never being held back.
    waits: bool
    #: When it is called, in one line.
    summary: str
    #: The thread that runs it in alvaro.sync.
    sync_thread: str = SYNC_THREAD

    @property
    def signature(self) -> str:
        """How the callback is called: ``got_data(conn, data, metadata)``."""
        return f"{self.name}({', '.join(self.args)})"


_CONN_TASK = "the connection's task"
_REQUEST_TASK = "a task of its own per request (`async def`); a plain function, the connection's"
#: The callback whose return value answers a request (not a notification like the others).
REQUEST = "got_request"
_CONNECT_TASK = "the task running `connect()`"

#: Every callback, host's first, each side's in the order they are called.
EVENTS: tuple[Event, ...] = (
    Event("server_started", "host", ("host",), "serverStarted",
          "the task running `start()`", False, False,
          "once the host is listening"),
    Event("logged_in", "host", ("conn", "user"), "loggedIn",
          _CONN_TASK, True, True,
          "when a client has logged in, just before `new_client`"),
    Event("new_client", "host", ("conn",), "newClient",
          _CONN_TASK, True, True,
          "when a client has connected, before any of its messages"),
    Event("got_data", "host", ("conn", "data", "metadata"), "gotData",
          _CONN_TASK, True, True,
          "for each message a client sends, in order"),
    Event("got_request", "host", ("conn", "data", "metadata"), None,
          _REQUEST_TASK, False, False,
          "for each request a client sends; what it returns is the reply",
          SYNC_REQUEST_THREAD),
    Event("lost_client", "host", ("conn",), "lostClient",
          _CONN_TASK, False, False,
          "once when a client's connection has closed"),
    Event("ip_banned", "host", ("addr",), "blacklisted",
          "a task of its own", False, False,
          "each time failed logins get an address banned"),
    Event("logged_in", "client", (), "loggedIn",
          _CONNECT_TASK, True, True,
          "once the login has succeeded, just before `made_connection`"),
    Event("made_connection", "client", (), "madeConnection",
          _CONNECT_TASK, True, True,
          "once connected, before any message"),
    Event("got_data", "client", ("data", "metadata"), "gotData",
          _CONNECT_TASK, True, True,
          "for each message the host sends, in order"),
    Event("got_request", "client", ("data", "metadata"), None,
          _REQUEST_TASK, False, False,
          "for each request the host sends; what it returns is the reply",
          SYNC_REQUEST_THREAD),
    Event("lost_connection", "client", (), "lostConnection",
          _CONNECT_TASK, False, False,
          "once when the connection has closed"),
)  # fmt: skip


def events(side: Side) -> tuple[Event, ...]:
    """The callbacks of one side, in the order they are called."""
    return tuple(row for row in EVENTS if row.side == side)


def event(side: Side, name: str) -> Event:
    """The row of one callback.

    Raises:
        KeyError: the side has no such callback.
    """
    for row in EVENTS:
        if row.side == side and row.name == name:
            return row
    raise KeyError(f"{side} has no callback {name!r}")
