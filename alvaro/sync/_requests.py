"""Requests asked from plain threads: each runs as a task on the connection's event loop.

The blocking form waits on a future; the non-blocking form (for GUIs) hands the answer to a
callback through the owner's dispatcher, so that it runs where every other callback runs. The
loop thread only starts the task and, when it ends, hands the outcome over: it never waits.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import TYPE_CHECKING, Any

import anyio

from ..exceptions import TooManyRequests

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._types import Metadata
    from ..aio._core import ConnectionCore
    from ..protocol import Message
    from ._base import Runner

__all__ = ("SyncRequests",)

_logger = logging.getLogger("alvaro.sync")


class SyncRequests:
    """The requests a blocking Connection asks.

    Args:
        core: the connection's internal side.
        runner: the owner's lease on the loop thread: its portal starts the requests' tasks,
            its dispatcher hands the outcomes of non-blocking ones over.
    """

    def __init__(self, core: ConnectionCore, runner: Runner) -> None:
        self._core = core
        self._runner = runner
        self._deliver = runner.dispatcher.submit_nowait
        self._lock = threading.Lock()
        self._outstanding = 0  # non-blocking requests not answered yet

    def ask(self, data: Any, metadata: Metadata | None, timeout: float | None) -> Message:
        """Ask and block the calling thread (never the loop's) until the answer or failure."""
        future: concurrent.futures.Future[Message] = concurrent.futures.Future()
        cancel = self._start(data, metadata, timeout, future.set_result, future.set_exception)
        try:
            # The request ends by its own deadline, or when the connection ends.
            return future.result()
        except BaseException:
            cancel()  # a KeyboardInterrupt here: the peer stops working on it too
            raise

    def ask_nowait(
        self,
        data: Any,
        metadata: Metadata | None,
        timeout: float | None,
        on_reply: Callable[[Message], object],
        on_error: Callable[[Exception], object] | None,
    ) -> None:
        """Ask and return at once; the outcome goes to a callback through the dispatcher."""
        with self._lock:
            if self._outstanding >= self._core.settings.max_pending_requests:
                raise TooManyRequests(
                    f"{self._outstanding} requests to {self._core.where} wait for their "
                    "answers (max_pending_requests); try again once some have come"
                )
            self._outstanding += 1

        def replied(message: Message) -> None:
            self._done()

            def call() -> None:
                on_reply(message)

            self._deliver(call)

        def failed(error: BaseException) -> None:
            self._done()
            if not isinstance(error, Exception):
                return  # cancelled with the loop: nobody waits any more
            if on_error is None:
                _logger.warning("a request to %s failed: %s", self._core.where, error)
                return
            report = on_error

            def call() -> None:
                assert isinstance(error, Exception)
                report(error)

            self._deliver(call)

        self._start(data, metadata, timeout, replied, failed)

    def _done(self) -> None:
        with self._lock:
            self._outstanding -= 1

    def _start(
        self,
        data: Any,
        metadata: Metadata | None,
        timeout: float | None,
        on_reply: Callable[[Message], object],
        on_failure: Callable[[BaseException], object],
    ) -> Callable[[], None]:
        """Start the request as a task of the connection; return what cancels it (from any
        thread). Exactly one of ``on_reply``/``on_failure`` is called, on the loop thread."""
        core = self._core
        scopes: list[anyio.CancelScope] = []  # the task's, once it runs (loop thread only)
        cancelled = False

        async def run() -> None:
            try:
                with anyio.CancelScope() as scope:
                    scopes.append(scope)
                    if cancelled:
                        scope.cancel()
                    requests, seconds = core.asking(timeout)
                    message = await requests.ask(data, metadata, seconds)
                if scope.cancelled_caught:
                    on_failure(core.closed_error() if core.outbox.closed else _cancelled())
                else:
                    on_reply(message)
            except Exception as exc:
                on_failure(exc)
            except BaseException:  # the connection's tasks cancelled: it is closing
                on_failure(core.closed_error())
                raise

        def cancel() -> None:
            nonlocal cancelled
            cancelled = True
            for scope in scopes:
                scope.cancel()

        portal = self._runner.portal
        if portal is None or core.outbox.closed:
            on_failure(core.closed_error())
        else:
            # A task of the loop thread's portal: started without waiting for the loop on
            # asyncio, after a short wait for it on trio (which runs it at once: the loop thread
            # never waits for this one).
            portal.start_task_soon(run)
        return lambda: core.loop.run_or_schedule(cancel)


def _cancelled() -> Exception:
    return TimeoutError("the request was cancelled before its answer came")
