"""What the blocking Host and Client share: a lease on the loop thread and a callback dispatcher."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ._handoff import HANDOFF_FACTOR, Dispatcher
from ._loop import Backend, shared_loop

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable
    from concurrent.futures import Future

    from anyio.from_thread import BlockingPortal

    from .._settings import Settings

__all__ = ("Runner", "user_callback")

_MISSING: Any = object()


def user_callback(obj: object, name: str, base: type) -> Callable[..., object] | None:
    """The callback the user set for ``name`` on ``obj``, or ``None`` if they set none.

    A callback is set when assigned on the instance (to something other than ``None``) or
    overridden in a subclass of ``base``.
    """
    assigned = vars(obj).get(name, _MISSING)
    if assigned is not _MISSING:
        return assigned if callable(assigned) else None
    if getattr(type(obj), name) is getattr(base, name):
        return None
    function: Callable[..., object] = getattr(obj, name)
    return function


class Runner:
    """A sync object's lease on the shared loop thread, the task it runs there, and the
    dispatcher of its callbacks.

    Starting (:meth:`launch`) and letting go (:meth:`release`) may race from any threads: the
    lease is taken and given back under one lock, together with the task it is for, so that a
    losing ``start()`` never gives back a lease it did not take and a ``stop()`` never gives back
    the lease of a task started after the one it stopped.
    """

    def __init__(
        self,
        *,
        backend: Backend,
        dispatch: Callable[[Callable[[], None]], object] | None,
        settings: Settings,
        name: str,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        self.loop = shared_loop(backend)
        self.dispatcher = Dispatcher(
            dispatch=dispatch,
            limit=HANDOFF_FACTOR * settings.max_queue,
            name=name,
            logger=logger,
        )
        self.portal: BlockingPortal | None = None
        self.task: Future[None] | None = None
        # Held only for bookkeeping and the start of a task (until it reports that it runs),
        # never while waiting for a task to end, nor for the dispatcher thread.
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether a task was launched and has not finished."""
        task = self.task
        return task is not None and not task.done()

    def launch(
        self,
        start: Callable[[BlockingPortal], Future[None]],
        busy: str,
    ) -> Future[None]:
        """Take a lease on the loop thread (starting it if needed) and run ``start(portal)``,
        which starts the task and returns once it runs; all as one step.

        Raises:
            RuntimeError: with ``busy``, if a task launched earlier still runs.
        """
        with self._lock:
            if self.running:
                raise RuntimeError(busy)
            portal = self.portal
            took = portal is None
            if portal is None:
                portal = self.portal = self.loop.acquire()
            self.dispatcher.bound()
            try:
                self.task = start(portal)
            except BaseException:
                if took:
                    self.portal = None
                    self.loop.release()
                raise
            return self.task

    def release(self, timeout: float | None, ended: Future[None] | None = None) -> None:
        """Run the callbacks already scheduled, then give the loop thread back; idempotent.

        ``ended`` is the task the caller waited for (perhaps in vain). Does nothing while
        another task runs: the caller lost a race with a new start, whose task needs the lease.
        """
        with self._lock:
            if self.running and self.task is not ended:
                return
            held, self.portal, self.task = self.portal is not None, None, None
        if held:
            self.dispatcher.stop(timeout)
            self.loop.release()
