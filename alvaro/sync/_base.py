"""What the blocking Host and Client share: a lease on the loop thread and a callback dispatcher."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ._handoff import HANDOFF_FACTOR, Dispatcher
from ._loop import Backend, shared_loop

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable

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
    """A sync object's lease on the shared loop thread, and the dispatcher of its callbacks."""

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
        # close() in one thread and serve_forever()'s own clean-up in another may race here.
        self._lock = threading.Lock()

    def acquire(self) -> BlockingPortal:
        """Take a lease on the loop thread (starting it if needed)."""
        with self._lock:
            if self.portal is None:
                self.portal = self.loop.acquire()
            return self.portal

    def release(self, timeout: float | None) -> None:
        """Run the callbacks already scheduled, then give the loop thread back; idempotent."""
        self.dispatcher.stop(timeout)
        with self._lock:
            held, self.portal = self.portal is not None, None
        if held:
            self.loop.release()
