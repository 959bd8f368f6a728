"""The event loop an alvaro object runs on, and how other threads reach it without blocking."""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ("Flag", "LoopHandle", "LoopLocalLimiter")


class LoopHandle:
    """Remembers the running event loop so that other threads can schedule work on it.

    Created inside the loop (from async code). ``call_soon`` never blocks the calling thread: it
    uses the loop's own thread-safe scheduling (``call_soon_threadsafe`` on asyncio,
    ``TrioToken.run_sync_soon`` on trio) rather than a blocking portal call, which costs a full
    cross-thread round trip per use.
    """

    __slots__ = ("_schedule", "is_trio", "thread_id", "time")

    def __init__(self) -> None:
        # The native token is an asyncio loop or a TrioToken; telling them apart by what they
        # offer keeps this module free of asyncio and trio imports.
        token = anyio.lowlevel.current_token()
        native: Any = token.native_token
        self.thread_id = threading.get_ident()
        # The loop's clock, usable in callbacks scheduled from other threads, where
        # anyio.current_time() cannot tell which backend runs (no task is current there).
        self.time: Callable[[], float] = token.backend_class.current_time
        schedule = getattr(native, "call_soon_threadsafe", None)
        self.is_trio = schedule is None
        self._schedule: Callable[[Callable[[], object]], object] = (
            native.run_sync_soon if schedule is None else schedule
        )

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on this loop's thread."""
        return threading.get_ident() == self.thread_id

    def call_soon(self, function: Callable[[], object]) -> bool:
        """Run ``function()`` on the loop thread soon; safe from any thread.

        Returns ``False`` if the loop has already finished, in which case nothing will run.
        """
        try:
            self._schedule(function)
        except RuntimeError:
            # asyncio: "Event loop is closed"; trio: RunFinishedError (a RuntimeError).
            return False
        return True

    def run_or_schedule(self, function: Callable[[], object]) -> None:
        """Run ``function()`` now if called on the loop thread, else schedule it there."""
        if threading.get_ident() == self.thread_id:
            function()
        else:
            self.call_soon(function)


class LoopLocalLimiter:
    """A capacity limiter per running event loop, made on first use in each.

    anyio's limiters belong to the loop they were made in (an asyncio one fails under trio, or
    under a second ``asyncio.run``), while what they bound here (CPU-heavy key derivations in
    worker threads) is shared per process; one limiter per loop is the closest fit.
    """

    __slots__ = ("_limiters", "_total")

    def __init__(self, total: int) -> None:
        self._total = total
        self._limiters: weakref.WeakKeyDictionary[Any, anyio.CapacityLimiter] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> anyio.CapacityLimiter:
        """The limiter of the running loop."""
        native = anyio.lowlevel.current_token().native_token
        limiter = self._limiters.get(native)
        if limiter is None:
            limiter = self._limiters[native] = anyio.CapacityLimiter(self._total)
        return limiter


class Flag:
    """A one-shot event whose anyio.Event exists only if someone waits for it; loop side only.

    Most connections never have a waiter for these, and an event costs about a kilobyte:
    at ten thousand connections that adds up.
    """

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: anyio.Event | None = None

    def set(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._set:
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()
