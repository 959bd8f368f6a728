"""Requests on one connection, both ways: asking and waiting for the reply, and answering.

Asking (:meth:`Requests.ask`): each REQUEST gets an id not in use, carries its deadline as a
relative time, and waits for its REPLY within that time. A request that times out or is
cancelled sends CANCEL and forgets its id, so that a reply arriving later is dropped and counted
(:attr:`Requests.late_replies`), never handed to another request. At most
``max_pending_requests`` wait at once; beyond that ``ask`` waits for room (within its timeout).
When the connection ends, every waiting request fails with its ``ConnectionClosed``.

Answering (:meth:`Requests.received`): an ``async def`` handler runs in a task of its own, so
that a slow one holds up neither the others nor the messages (``got_data`` keeps its order in
the read loop); a plain function is called at once in the read loop, where it would block the
event loop just the same, without a task's cost. At most ``max_concurrent_requests`` tasks run
at once; beyond that the asker gets a "busy" answer at once, never a silent queue. A task is
cancelled when the REQUEST's deadline passes or a CANCEL for it arrives (then no reply is sent:
the asker has given up), and when the connection ends. A handler that raises is logged with its
traceback; the asker gets an "error" answer with the exception's type name and message, and its
traceback only with ``reply_tracebacks=True``.
"""

from __future__ import annotations

import heapq
import inspect
import math
import traceback
from typing import TYPE_CHECKING, Any

import anyio

from .._close_codes import CloseCode
from .._reply import Reply
from ..exceptions import (
    ConnectionClosed,
    EncodeError,
    MessageTooLarge,
    RemoteError,
    RemoteProtocolError,
)
from ..protocol import (
    Message,
    ReplyError,
    ReplyOk,
    encode_cancel,
    encode_reply,
    encode_reply_error,
    encode_request,
)
from ..protocol.frames import MAX_REQUEST_ID

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from .._types import Metadata
    from ..exceptions import AlvaroError
    from ..protocol import Cancel, Request
    from ._core import ConnectionCore

__all__ = ("NoRequestHandler", "Requests")


class NoRequestHandler(Exception):
    """Raised by a handler to say that nobody answers requests here (the sync layer's bridge,
    which is always set, raises it when the user set no ``got_request``)."""


class _TimedOut:
    """The outcome of a request whose deadline passed before its reply."""


_TIMED_OUT = _TimedOut()


class _Pending:
    """One request this side sent, waiting for its reply."""

    __slots__ = ("deadline", "done", "outcome")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.done = anyio.Event()
        self.outcome: ReplyOk | ReplyError | ConnectionClosed | _TimedOut | None = None


class Requests:
    """The requests of one connection, made on its first request either way.

    Everything here runs on the connection's event loop.
    """

    __slots__ = (
        "_core",
        "_deadlines",
        "_next_id",
        "_pending",
        "_room",
        "_running",
        "_timer_at",
        "_timer_wake",
        "_watched",
        "late_replies",
    )

    def __init__(self, core: ConnectionCore) -> None:
        self._core = core
        self._pending: dict[int, _Pending] = {}
        self._next_id = 1
        self._room: anyio.Event | None = None  # askers waiting for a free slot
        # The waiting requests' deadlines, earliest first, watched by one timer task rather
        # than a cancel scope per request, which would cost a tenth of a request's time. It
        # may hold requests that have ended: they are skipped, and swept when they pile up.
        self._deadlines: list[tuple[float, int, _Pending]] = []
        self._watched = 0  # a sequence number for each deadline, so that ties never compare
        self._timer_at = math.inf  # when the timer task wakes next; -inf: not started
        self._timer_wake: anyio.Event | None = None
        self._running: dict[int, anyio.CancelScope] = {}  # handlers, by the peer's request id
        self.late_replies = 0
        """Replies that came after their request had ended (timed out or cancelled)."""

    # --- Asking ----------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Requests sent and waiting for their replies."""
        return len(self._pending)

    async def ask(self, data: Any, metadata: Metadata | None, timeout: float | None) -> Message:
        """Send a request and wait for its reply, at most ``timeout`` seconds (``None``: no
        deadline), the wait for a free slot included.

        Raises:
            TimeoutError: no reply in time (CANCEL is sent).
            RemoteError: the peer answered with an error.
            ConnectionClosed: the connection ended first.
            EncodeError, MessageTooLarge: as for any message.
        """
        core = self._core
        peer = core.peer
        assert peer is not None
        now = anyio.current_time()
        deadline = math.inf if timeout is None else now + timeout
        pending = _Pending(deadline)
        request_id = 0
        try:
            if len(self._pending) >= core.settings.max_pending_requests:
                with anyio.fail_at(deadline):
                    await self._wait_for_room()
            request_id = self._new_id()
            # Encoded within the peer's limits before it is counted as waiting.
            frame = encode_request(
                request_id,
                data,
                metadata,
                timeout=timeout,
                max_message_size=peer.max_message_size,
                max_metadata_size=peer.max_metadata_size,
            )
            self._pending[request_id] = pending
            outbox = core.outbox
            if outbox.pending > core.settings.write_limit:
                with anyio.fail_at(deadline):
                    await outbox.wait_for_room()
            core.enqueue(frame, limit=None)
            if deadline < math.inf:
                self._watch(pending)
            await pending.done.wait()
        except TimeoutError:
            pending.outcome = _TIMED_OUT
        except BaseException:
            self._give_up(request_id, pending)
            raise
        if pending.outcome is _TIMED_OUT:
            self._give_up(request_id, pending)
            raise TimeoutError(
                f"no reply from {core.where} within {timeout:g} s; the request was cancelled"
            )
        return _result(pending.outcome)

    async def _wait_for_room(self) -> None:
        """Wait while ``max_pending_requests`` wait for their replies."""
        core = self._core
        while len(self._pending) >= core.settings.max_pending_requests:
            if core.outbox.closed:
                raise core.closed_error()
            room = self._room = self._room or anyio.Event()
            await room.wait()

    def _watch(self, pending: _Pending) -> None:
        """Have the timer end ``pending`` at its deadline."""
        self._watched += 1
        heapq.heappush(self._deadlines, (pending.deadline, self._watched, pending))
        if len(self._deadlines) > 64 and len(self._deadlines) > 2 * len(self._pending):
            # Most are of requests that have ended: keep the waiting ones only.
            self._deadlines = [e for e in self._deadlines if e[2].outcome is None]
            heapq.heapify(self._deadlines)
        if self._timer_at == -math.inf:
            return  # the timer is starting, and will see it
        if self._timer_wake is None:
            assert self._core.tasks is not None
            self._timer_at = -math.inf
            self._core.tasks.start_soon(self._time_out)
        elif pending.deadline < self._timer_at:
            self._timer_wake.set()

    async def _time_out(self) -> None:
        """The timer task: end each waiting request whose deadline has passed."""
        deadlines = self._deadlines
        while True:
            now = anyio.current_time()
            while deadlines and (deadlines[0][2].outcome is not None or deadlines[0][0] <= now):
                _, _, pending = heapq.heappop(deadlines)
                if pending.outcome is None:
                    pending.outcome = _TIMED_OUT
                    pending.done.set()
            wake = self._timer_wake = anyio.Event()
            self._timer_at = deadlines[0][0] if deadlines else math.inf
            with anyio.move_on_at(self._timer_at):
                await wake.wait()
            deadlines = self._deadlines

    def _new_id(self) -> int:
        """The next request id not in use (u32, wrapping, never 0)."""
        request_id = self._next_id
        while request_id in self._pending:
            request_id = request_id % MAX_REQUEST_ID + 1
        self._next_id = request_id % MAX_REQUEST_ID + 1
        return request_id

    def _give_up(self, request_id: int, pending: _Pending) -> None:
        """A request ended without its reply (timeout, cancellation, a send that failed): tell
        the peer, so that its handler stops, and forget the id, so that a late reply is
        dropped."""
        if self._pending.get(request_id) is pending:
            del self._pending[request_id]
            self._wake_askers()
            unanswered = pending.outcome is None or pending.outcome is _TIMED_OUT
            if unanswered and not self._core.outbox.closed:
                try:
                    self._core.enqueue(encode_cancel(request_id), limit=None)
                except ConnectionClosed:
                    pass

    def _wake_askers(self) -> None:
        if self._room is not None:
            self._room.set()
            self._room = None

    def replied(self, event: ReplyOk | ReplyError) -> None:
        """A REPLY arrived: it goes to the request that waits for its id, or is dropped."""
        pending = self._pending.pop(event.request_id, None)
        if pending is None:
            self.late_replies += 1
            self._core.logger.debug(
                "dropped a reply from %s to request %d, which had ended",
                self._core.where,
                event.request_id,
            )
            return
        pending.outcome = event
        pending.done.set()
        self._wake_askers()

    def connection_ended(self, error: ConnectionClosed) -> None:
        """The connection closed: every waiting request fails with ``error``."""
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            waiter.outcome = error
            waiter.done.set()
        self._wake_askers()

    # --- Answering -------------------------------------------------------------------------------

    def received(self, event: Request, handler: Callable[[Any, Metadata], object] | None) -> None:
        """A REQUEST arrived: answer "no_handler" or "busy" at once, or start its handler."""
        core = self._core
        if handler is None:
            self._send_error(event.request_id, RemoteError.NO_HANDLER, "no got_request here")
            return
        if len(self._running) >= core.settings.max_concurrent_requests:
            self._send_error(
                event.request_id,
                RemoteError.BUSY,
                f"{len(self._running)} requests of this connection are running already",
            )
            return
        if event.request_id in self._running:
            # Two requests with one id could not be told apart by their replies
            # (docs/protocol.md, 9.3): the peer broke the protocol.
            error = RemoteProtocolError(
                f"request id {event.request_id} is already in use", CloseCode.PROTOCOL_ERROR
            )
            core.log_protocol_error(error)
            core.fail(error.code, str(error))
            return
        # The handler is called here, in the read loop: a plain function runs to its end
        # wherever it is called (no deadline can interrupt it), and a task for it would cost a
        # third of a request's time. A coroutine gets a task of its own, and its deadline.
        try:
            result = handler(event.data, event.metadata)
        except Exception as exc:
            self._handler_failed(event.request_id, exc)
            return
        if not inspect.iscoroutine(result):
            self._send_reply(event.request_id, result)
            return
        deadline = math.inf if event.timeout is None else anyio.current_time() + event.timeout
        scope = anyio.CancelScope(deadline=deadline)
        self._running[event.request_id] = scope
        assert core.tasks is not None
        core.tasks.start_soon(self._await_answer, event.request_id, result, scope)

    def cancelled(self, event: Cancel) -> None:
        """The peer gave up on a request: cancel its handler (a CANCEL for an id not running,
        already answered, is nothing)."""
        scope = self._running.get(event.request_id)
        if scope is not None:
            scope.cancel()

    async def _await_answer(
        self, request_id: int, answer: Coroutine[Any, Any, object], scope: anyio.CancelScope
    ) -> None:
        """Await an ``async def`` handler's answer within the request's deadline, and send it;
        nothing is sent once the request is cancelled (deadline or CANCEL)."""
        started = False
        try:
            with scope:
                try:
                    started = True
                    result = await answer
                except Exception as exc:
                    self._handler_failed(request_id, exc)
                    return
            if scope.cancel_called:
                # The asker no longer waits for an answer, so none is sent (even by a handler
                # that finished regardless).
                self._core.logger.debug("a request from %s was cancelled", self._core.where)
                return
            self._send_reply(request_id, result)
        finally:
            if not started:
                answer.close()  # cancelled before it could start: no "never awaited" warning
            if self._running.get(request_id) is scope:
                del self._running[request_id]

    def _handler_failed(self, request_id: int, exc: Exception) -> None:
        """The handler raised: log it here with its traceback, and tell the asker (its type
        name and message; the traceback only with reply_tracebacks)."""
        core = self._core
        if isinstance(exc, NoRequestHandler):
            self._send_error(request_id, RemoteError.NO_HANDLER, "no got_request here")
            return
        core.logger.error(
            "got_request raised for a request from %s; answering with an error",
            core.where,
            exc_info=exc,
        )
        trace = None
        if core.settings.reply_tracebacks:
            trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self._send_error(request_id, RemoteError.ERROR, str(exc), type(exc).__name__, trace)

    def _send_reply(self, request_id: int, result: object) -> None:
        core = self._core
        peer = core.peer
        assert peer is not None
        data, metadata = (
            (result.data, result.metadata) if isinstance(result, Reply) else (result, None)
        )
        try:
            frame = encode_reply(
                request_id,
                data,
                metadata,
                max_message_size=peer.max_message_size,
                max_metadata_size=peer.max_metadata_size,
            )
        except (EncodeError, MessageTooLarge) as exc:
            core.logger.error("the reply to a request from %s cannot be sent: %s", core.where, exc)
            self._send_error(request_id, RemoteError.ERROR, str(exc), type(exc).__name__)
            return
        self._enqueue(frame)

    def _send_error(
        self,
        request_id: int,
        kind: str,
        message: str,
        remote_type: str | None = None,
        remote_traceback: str | None = None,
    ) -> None:
        self._enqueue(
            encode_reply_error(
                request_id, kind, message, remote_type=remote_type, traceback=remote_traceback
            )
        )

    def _enqueue(self, frame: bytes) -> None:
        try:
            self._core.enqueue(frame, limit=None)
        except ConnectionClosed:
            pass  # the connection is closing: the asker's request fails with it


def _result(outcome: ReplyOk | ReplyError | ConnectionClosed | _TimedOut | None) -> Message:
    """What a finished request returns, or raises."""
    if type(outcome) is ReplyOk:
        return Message(outcome.data, outcome.metadata)
    if isinstance(outcome, ConnectionClosed):
        raise outcome
    assert isinstance(outcome, ReplyError)
    error: AlvaroError = RemoteError(
        outcome.kind, outcome.message, outcome.remote_type, outcome.traceback
    )
    raise error
