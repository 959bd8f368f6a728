"""The receive queue: messages that no ``got_data`` callback took, waiting for ``receive()``.

It is bounded by count (``max_queue``) and by the bytes the messages took on the wire
(``max_queue_bytes``); when it is full the read loop stops reading, so that TCP pushes back on
the sender instead of the host's memory growing. Used by the loop thread only.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import anyio

from ..exceptions import ConcurrencyError

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._settings import Settings
    from ..exceptions import ConnectionClosed
    from ..protocol import Message

__all__ = ("ReceiveQueue",)


class ReceiveQueue:
    """What the read loop queued for :meth:`get`, and the bounds that pause the read loop."""

    __slots__ = (
        "_bytes",
        "_closed_error",
        "_ended",
        "_max_bytes",
        "_max_count",
        "_queue",
        "_receiving",
        "_room_waiter",
        "_waiter",
    )

    def __init__(self, settings: Settings, closed_error: Callable[[], ConnectionClosed]) -> None:
        self._max_count = settings.max_queue
        self._max_bytes = settings.max_queue_bytes
        # The exception get() raises once the queue is empty and no message can come.
        self._closed_error = closed_error
        # Each queued message with what it took on the wire. Made on the first message: a
        # connection whose messages all go to a callback never needs it, and an empty deque
        # costs 600 bytes, a lot for a host with many idle connections.
        self._queue: deque[tuple[Message, int]] | None = None
        self._bytes = 0  # what the queued messages took on the wire
        self._waiter: anyio.Event | None = None  # a get() waiting for a message
        self._room_waiter: anyio.Event | None = None  # the read loop waiting for room
        self._receiving = False
        self._ended = False

    def __len__(self) -> int:
        return 0 if self._queue is None else len(self._queue)

    @property
    def queued_bytes(self) -> int:
        """What the queued messages took on the wire."""
        return self._bytes

    def full(self) -> bool:
        """Whether the queue is at either of its bounds."""
        return len(self) >= self._max_count or self._bytes >= self._max_bytes

    async def get(self, timeout: float | None) -> Message:
        """The next message, waiting up to ``timeout`` seconds (``None``: as long as it takes).

        Raises:
            TimeoutError: none came in time.
            ConnectionClosed: the queue is empty and the read loop has ended.
            ConcurrencyError: another task is already waiting here.
        """
        if self._receiving:
            raise ConcurrencyError("another task is already receiving from this connection")
        if not self._queue:
            self._receiving = True
            try:
                # A cancel scope costs more than the rest of this call: only for a timeout.
                if timeout is None:
                    await self._wait_for_message()
                else:
                    with anyio.fail_after(timeout):
                        await self._wait_for_message()
            finally:
                self._receiving = False
        assert self._queue is not None
        message, size = self._queue.popleft()
        self._bytes -= size
        if self._room_waiter is not None and not self.full():
            self._room_waiter.set()
            self._room_waiter = None
        return message

    async def _wait_for_message(self) -> None:
        while not self._queue:
            if self._ended:
                raise self._closed_error()
            waiter = self._waiter = anyio.Event()
            await waiter.wait()

    async def put(self, message: Message, size: int) -> None:
        """Queue ``message``, which took ``size`` bytes on the wire; then wait while the queue
        is full, so that the read loop stops reading while the application is behind."""
        if self._queue is None:
            self._queue = deque()
        self._queue.append((message, size))
        self._bytes += size
        self._wake()
        while self.full():
            room = self._room_waiter = anyio.Event()
            await room.wait()

    def end(self) -> None:
        """No more messages will come: a waiting :meth:`get` raises once the queue is empty."""
        self._ended = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            self._waiter.set()
            self._waiter = None
