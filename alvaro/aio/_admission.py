"""Which connections a host takes, and how it turns the others away.

A connection is admitted or refused at accept, before any TLS byte: banned addresses, more
connections than ``max_connections`` (lowered to what the file-descriptor limit allows), and more
connections from one address still in their handshakes than ``max_unauthenticated_per_address``
(slowloris). A refused plaintext client is told why in a CLOSE frame; nothing can be said to a
TLS client before TLS, so it sees the connection close. Refusals are logged at most a few times a
minute, and in a flood they are not held open, or they would use up the very descriptors the
limit is there to save.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from .._close_codes import CloseCode
from .._throttle import LogThrottle
from ..exceptions import ConnectionClosedError
from ..protocol.encoders import encode_refusal
from ._io import ACCEPT_CAPACITY_ERRNOS

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Coroutine

    from ._io import Listener, Transport

__all__ = ("FD_RESERVE", "Admission")

#: File descriptors kept free for everything but client connections (logs, files, the listener).
FD_RESERVE = 64
# How long a refused connection is held open after its CLOSE, reading and discarding what the
# client sends: closing a socket with unread data resets it, which could destroy the CLOSE
# before the client reads it.
_REFUSE_LINGER = 1.0
# At most this many refused connections linger at once; the rest are closed at once. They use
# descriptors from FD_RESERVE, so they take only part of it.
_MAX_LINGERING = FD_RESERVE // 4


class Admission:
    """A host's count of its connections, and its decisions on new ones; on the loop thread.

    Args:
        banned_reason: the reason given to a banned address (the refusal's code depends on it).
        logger: where refusals are logged.
    """

    __slots__ = (
        "_ban_refusals",
        "_banned_reason",
        "_lingering",
        "_logger",
        "_refusals",
        "active",
        "handshaking",
        "limit",
        "max_connections",
        "max_per_address",
    )

    def __init__(
        self, *, banned_reason: str, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]
    ) -> None:
        self._banned_reason = banned_reason
        self._logger = logger
        self.max_connections = 0
        self.max_per_address = 0
        self.limit = 0
        """The connections served at once: max_connections, or fewer (:meth:`plan`)."""
        self.active = 0
        """Connections admitted and not yet finished."""
        self.handshaking: dict[str, int] = {}
        """Per address, the connections admitted and not yet through their handshakes."""
        self._lingering = 0  # refused connections being closed
        self._refusals = LogThrottle()
        self._ban_refusals = LogThrottle()

    def plan(self, max_connections: int, max_per_address: int) -> None:
        """Set the limits for a new run: at most ``max_connections`` connections (lowered, with
        a WARNING, if the file-descriptor limit would run out first), at most
        ``max_per_address`` from one address in their handshakes."""
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.limit = max_connections
        try:
            import resource
        except ImportError:  # pragma: no cover - not on Windows
            return
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY or soft - FD_RESERVE >= self.max_connections:
            return
        self.limit = max(1, soft - FD_RESERVE)
        self._logger.warning(
            "serving at most %d connections, not max_connections=%d: the file-descriptor limit "
            "is %d (raise it with 'ulimit -n')",
            self.limit,
            self.max_connections,
            soft,
        )

    def admit(self, address: str, *, banned: bool) -> str | None:
        """Count a new connection from ``address`` in, or return why it is refused."""
        if banned:
            return self._banned_reason
        if self.active >= self.limit:
            return f"too many connections (the host serves at most {self.limit})"
        pending = self.handshaking.get(address, 0)
        if pending >= self.max_per_address:
            return (
                f"too many connections from {address} in their handshakes "
                f"(at most {self.max_per_address})"
            )
        self.active += 1
        self.handshaking[address] = pending + 1
        return None

    def handshakes_done(self, address: str) -> None:
        """A connection from ``address`` is through its handshakes (or failed them)."""
        left = self.handshaking[address] - 1
        if left:
            self.handshaking[address] = left
        else:
            del self.handshaking[address]

    async def accept_loop(
        self,
        socket_listener: anyio.abc.SocketListener,
        listener: Listener,
        handlers: anyio.abc.TaskGroup,
        *,
        handle: Callable[[Transport], Coroutine[Any, Any, None]],
        is_banned: Callable[[str], bool],
        tls: bool,
        on_capacity_error: Callable[[OSError], None],
    ) -> None:
        """Accept connections until the listener closes: each admitted one runs
        ``handle(transport)`` in a task of ``handlers``, each other is refused in one."""
        while True:
            try:
                transport = await listener.accept(socket_listener)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as exc:
                if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                    raise
                # Out of file descriptors or memory: keep serving the clients we have, and retry.
                on_capacity_error(exc)
                await anyio.sleep(0.1)
                continue
            address = transport.peer_addr
            refusal = self.admit(address, banned=is_banned(address))
            if refusal is None:
                handlers.start_soon(handle, transport)
            else:
                handlers.start_soon(functools.partial(self.refuse, transport, refusal, tls=tls))

    def finished(self) -> None:
        """An admitted connection has ended."""
        self.active -= 1

    async def refuse(self, transport: Transport, reason: str, *, tls: bool) -> None:
        """Turn a connection away with TRY_AGAIN_LATER (POLICY_VIOLATION for a banned
        address); bounded by ``_REFUSE_LINGER``. ``tls``: the host serves TLS only."""
        banned = reason is self._banned_reason
        allowed, suppressed = (self._ban_refusals if banned else self._refusals).allow()
        if allowed:
            more = f" ({suppressed} more not logged)" if suppressed else ""
            log = self._logger.info if banned else self._logger.warning
            log("refused %s:%s: %s%s", transport.peer_addr, transport.peer_port, reason, more)
        code = CloseCode.POLICY_VIOLATION if banned else CloseCode.TRY_AGAIN_LATER
        # Before TLS nothing can be said to a TLS client: it sees the connection close. In a
        # flood, refused connections are not held open either, or they would use up the
        # file descriptors the limit is there to save.
        linger = not tls and self._lingering < _MAX_LINGERING
        self._lingering += linger
        try:
            if linger:
                transport.send_now(encode_refusal(code, reason))
                with anyio.move_on_after(_REFUSE_LINGER):
                    while await transport.receive():
                        pass
        except ConnectionClosedError:
            pass
        finally:
            self._lingering -= linger
            await transport.aclose(0)
