"""What a host logs about what its peers do, each kind rate-limited.

A peer can fail its TLS handshake, its alvaro handshake or its login a thousand times a second,
on purpose: each kind of failure has its own :class:`~alvaro._throttle.LogThrottle`, so that the
first few of each minute are logged and the rest only counted.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .._throttle import LogThrottle
from ..exceptions import ConnectionClosed, TLSError

if TYPE_CHECKING:
    import logging

    from ._io import Transport

__all__ = ("PeerLog",)


class PeerLog:
    """The rate-limited log lines of one host about its peers."""

    __slots__ = ("_accept_error_logged", "_logger", "_login_failures", "_tls_failures", "protocol")

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
        self._logger = logger
        self._tls_failures = LogThrottle()
        self._login_failures = LogThrottle()
        self.protocol = LogThrottle()
        """Broken handshakes, logins and frames; shared with every connection of the host."""
        self._accept_error_logged = -float("inf")

    def tls_failure(self, transport: Transport, exc: Exception) -> None:
        """A TLS handshake failed with ``exc``."""
        allowed, suppressed = self._tls_failures.allow()
        if not allowed:
            return
        more = f" ({suppressed} more not logged)" if suppressed else ""
        # A client gone before its first byte (a port probe, a health check) is no TLS
        # failure: INFO, as web servers log it.
        log = self._logger.info if isinstance(exc, ConnectionClosed) else self._logger.warning
        if isinstance(exc, TimeoutError):
            what = "timed out"
        elif isinstance(exc, (TLSError, ConnectionClosed)):
            what = f"failed: {exc}"
        else:  # a context that cannot serve (for example, a client's context)
            what = f"failed with an unexpected error: {exc!r}"
        log("TLS handshake with %s:%s %s%s", transport.peer_addr, transport.peer_port, what, more)

    def protocol_failure(self, step: str, where: str, exc: BaseException) -> None:
        """The ``step`` ("handshake", "login") with the peer at ``where`` failed with ``exc``:
        INFO, since a peer can cause it at will."""
        allowed, suppressed = self.protocol.allow()
        if allowed:
            more = f" ({suppressed} more not logged)" if suppressed else ""
            self._logger.info("%s with %s failed: %s%s", step, where, exc, more)

    def failed_login(self, where: str) -> None:
        """The peer at ``where`` gave a wrong user name or password, or was refused."""
        allowed, suppressed = self._login_failures.allow()
        if allowed:
            more = f" ({suppressed} more not logged)" if suppressed else ""
            self._logger.info("failed login from %s%s", where, more)

    def accept_error(self, exc: OSError) -> None:
        """Accepting failed for want of file descriptors or memory (at most once a second)."""
        now = time.monotonic()
        if now - self._accept_error_logged > 1.0:
            self._accept_error_logged = now
            self._logger.warning("cannot accept connections: %s; retrying", exc)
