"""Rate limits for log messages that a peer can trigger at will (failed handshakes, ...)."""

from __future__ import annotations

import time

__all__ = ("LogThrottle",)


class LogThrottle:
    """Lets at most ``burst`` messages through per ``interval`` seconds and counts the rest.

    A peer that fails its handshake a thousand times a second must not fill the host's log: the
    first ``burst`` failures of each interval are logged, the rest only counted, and the next
    message logged says how many were left out.
    """

    __slots__ = ("_burst", "_interval", "_logged", "_suppressed", "_window_start")

    def __init__(self, burst: int = 5, interval: float = 60.0) -> None:
        self._burst = burst
        self._interval = interval
        self._window_start = -float("inf")
        self._logged = 0
        self._suppressed = 0

    def allow(self) -> tuple[bool, int]:
        """Return whether to log this message, and how many were dropped since the last one."""
        now = time.monotonic()
        if now - self._window_start >= self._interval:
            self._window_start = now
            self._logged = 0
        if self._logged >= self._burst:
            self._suppressed += 1
            return False, 0
        self._logged += 1
        suppressed, self._suppressed = self._suppressed, 0
        return True, suppressed
