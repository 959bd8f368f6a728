"""``alvaro demo --plain`` that stalls halfway, for tests that stop it with signals.

Run it as ``python -m tests.process_peers.stalled_demo [--slow-close] [DEMO OPTIONS...]`` from
the repository's root. The demo's clients wait without end for their third message (after
printing ``stalled`` on stdout), and print ``closed CODE`` when their connection closes.

With ``--slow-close`` the clients never answer the host's CLOSE (each prints ``close received``
instead) and every ``close_timeout`` is 600 s: a graceful stop would take ten minutes.

The process ends with the demo's exit status.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import anyio

import alvaro.aio
from alvaro.aio._core import core_of
from alvaro.cli import main

_receives = 0


def stall_the_third_receive() -> None:
    original = alvaro.aio.Client.receive

    @functools.wraps(original)
    async def receive(self: alvaro.aio.Client, timeout: float | None = None) -> alvaro.Message:
        global _receives
        _receives += 1
        if _receives == 3:
            print("stalled", flush=True)
            await anyio.sleep_forever()
        return await original(self, timeout)

    alvaro.aio.Client.receive = receive  # type: ignore[method-assign]


def report_closes() -> None:
    def lost_connection(self: alvaro.aio.Client) -> None:
        assert self.connection is not None
        print("closed", self.connection.close_code, flush=True)

    alvaro.aio.Client.lost_connection = lost_connection  # type: ignore[method-assign]


def never_answer_a_close() -> None:
    async def never() -> None:
        print("close received", flush=True)
        await anyio.sleep_forever()

    def made_connection(self: alvaro.aio.Client) -> None:
        assert self.connection is not None
        # Awaited before the CLOSE is answered, within close_timeout.
        core_of(self.connection).before_echo = never

    alvaro.aio.Client.made_connection = made_connection  # type: ignore[method-assign]
    for cls in (alvaro.aio.Host, alvaro.aio.Client):
        original = cls.__init__

        def init(self: Any, *args: Any, __original: Any = original, **options: Any) -> None:
            __original(self, *args, **{**options, "close_timeout": 600.0})

        cls.__init__ = init  # type: ignore[method-assign]


if __name__ == "__main__":
    arguments = sys.argv[1:]
    stall_the_third_receive()
    report_closes()
    if "--slow-close" in arguments:
        arguments.remove("--slow-close")
        never_answer_a_close()
    sys.exit(main(["demo", "--plain", *arguments]))
