"""The background event-loop thread that every blocking alvaro object of a process shares.

One loop thread per backend ("asyncio" or "trio"), started by the first object that needs it and
stopped (its thread joined) when the last one closes. Objects call into it through an anyio
blocking portal only for rare operations (connect, start, close); the per-message paths hand work
over without a portal round trip.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Literal, TypeAlias

from anyio.from_thread import start_blocking_portal

from ..exceptions import WrongThreadError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from anyio.from_thread import BlockingPortal

__all__ = ("Backend", "SharedLoop", "check_not_loop_thread", "shared_loop")

Backend: TypeAlias = Literal["asyncio", "trio"]


class SharedLoop:
    """A reference-counted loop thread for one backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._lock = threading.Lock()
        self._leases = 0
        self._context: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self.thread_id: int | None = None

    @property
    def leases(self) -> int:
        """How many objects use the loop now."""
        return self._leases

    def acquire(self) -> BlockingPortal:
        """Start the loop thread if needed and take a lease on it."""
        with self._lock:
            if self._portal is None:
                context = start_blocking_portal(self.backend, name=f"alvaro-{self.backend}-loop")
                portal = context.__enter__()
                self._context, self._portal = context, portal
                self.thread_id = portal.call(threading.get_ident)
                _set_loop_thread(self.thread_id, running=True)
            self._leases += 1
            return self._portal

    def release(self) -> None:
        """Give back a lease; the last one stops the loop and joins its thread."""
        context = None
        with self._lock:
            if self._leases == 0:
                return
            self._leases -= 1
            if self._leases == 0:
                context, self._context, self._portal = self._context, None, None
                if self.thread_id is not None:
                    _set_loop_thread(self.thread_id, running=False)
                self.thread_id = None
        if context is not None:
            context.__exit__(None, None, None)


_loops: dict[str, SharedLoop] = {}
_loops_lock = threading.Lock()
# Read on every blocking call, so kept as an immutable set that is replaced, never mutated.
_loop_thread_ids: frozenset[int] = frozenset()


def _set_loop_thread(thread_id: int, *, running: bool) -> None:
    global _loop_thread_ids
    with _loops_lock:
        if running:
            _loop_thread_ids = _loop_thread_ids | {thread_id}
        else:
            _loop_thread_ids = _loop_thread_ids - {thread_id}


def shared_loop(backend: Backend) -> SharedLoop:
    """The process's shared loop for ``backend``."""
    if backend not in ("asyncio", "trio"):
        raise ValueError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
    with _loops_lock:
        loop = _loops.get(backend)
        if loop is None:
            loop = _loops[backend] = SharedLoop(backend)
        return loop


def check_not_loop_thread(what: str) -> None:
    """Raise WrongThreadError if called on any alvaro loop thread, where blocking deadlocks."""
    if threading.get_ident() in _loop_thread_ids:
        raise WrongThreadError(
            f"{what} blocks, and was called on alvaro's event-loop thread, which it would "
            "freeze. Blocking calls belong in your own threads and in alvaro.sync callbacks "
            "(which never run on the loop thread); async code should use alvaro.aio."
        )
