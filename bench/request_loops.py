"""The two request workloads' client loops, shared by every stack that runs them.

A stack hands in ``ask``, a coroutine function that makes one request of the workload's payload
and returns the answer's data; the loops time it the same way for every stack. They use anyio,
so they run on asyncio and on trio alike (anyio is alvaro's own dependency, so always there).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
from common import ECHO_DATA, IN_FLIGHT

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from common import Params

    Ask = Callable[[], Awaitable[Any]]


async def one_at_a_time(ask: Ask, params: Params, echo: Ask | None = None) -> dict[str, Any]:
    """Time ``params["round_trips"]`` requests, one at a time, after the warm-up ones.

    With ``echo`` (a send-then-receive round trip of the same payload), each request is
    followed by one echo on the same connection, timed alike, so that the two are measured
    under the same load: ``echo_samples_ns`` in the result.
    """
    samples: list[int] = []
    echo_samples: list[int] = []
    for index in range(params["warmup"] + params["round_trips"]):
        timed = index >= params["warmup"]
        for function, into in ((ask, samples), (echo, echo_samples)):
            if function is None:
                continue
            start_ns = time.perf_counter_ns()
            answer = await function()
            elapsed = time.perf_counter_ns() - start_ns
            if timed:
                into.append(elapsed)
            assert answer == ECHO_DATA
    result: dict[str, Any] = {"samples_ns": samples}
    if echo is not None:
        result["echo_samples_ns"] = echo_samples
    return result


async def in_flight(ask: Ask, params: Params) -> dict[str, Any]:
    """Time ``params["requests"]`` requests made by ``IN_FLIGHT`` tasks, each asking in a loop.

    The warm-up requests go first, one at a time, before the clock starts.
    """
    for _ in range(params["warmup"]):
        assert await ask() == ECHO_DATA
    left = params["requests"]

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            assert await ask() == ECHO_DATA

    start = time.perf_counter()
    async with anyio.create_task_group() as tasks:
        for _ in range(IN_FLIGHT):
            tasks.start_soon(worker)
    return {"elapsed": time.perf_counter() - start}
