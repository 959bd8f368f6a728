"""Without any logging configuration, alvaro's warnings and errors reach stderr.

alvaro adds no handler to its loggers, not even a NullHandler, so Python's last-resort handler
prints WARNING and above: a callback that raises is never silent in a program that did not set up
logging. These run real programs, as a user would.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from .helpers import WAIT, checkout_env

AIO_PROGRAM = """
import sys

import anyio

import alvaro


class Failure(Exception):
    pass


def got_data(conn, data, metadata):
    raise Failure("got_data failed on purpose")


async def main():
    async with alvaro.Host("127.0.0.1", 0) as host:
        host.got_data = got_data
        async with alvaro.aio.connect("127.0.0.1", host.port) as client:
            client.send_data("hello")
            try:
                await client.receive(timeout=float(sys.argv[2]))
            except alvaro.ConnectionClosedError as exc:
                print("closed with", int(exc.code))


anyio.run(main, backend=sys.argv[1])
"""

SYNC_PROGRAM = """
import sys

import alvaro.sync


class Failure(Exception):
    pass


def got_data(conn, data, metadata):
    raise Failure("got_data failed on purpose")


with alvaro.sync.Host("127.0.0.1", 0, backend=sys.argv[1]) as host:
    host.got_data = got_data
    with alvaro.sync.connect("127.0.0.1", host.port, backend=sys.argv[1]) as client:
        client.send_data("hello")
        try:
            client.receive(timeout=float(sys.argv[2]))
        except alvaro.ConnectionClosedError as exc:
            print("closed with", int(exc.code))
"""


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("api", ["aio", "sync"])
def test_a_callback_that_raises_is_shown_without_logging_configured(api: str, backend: str) -> None:
    program = AIO_PROGRAM if api == "aio" else SYNC_PROGRAM
    result = subprocess.run(
        [sys.executable, "-c", program, backend, str(WAIT)],
        capture_output=True,
        text=True,
        timeout=3 * WAIT,
        env=checkout_env(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["closed with 1011"]  # INTERNAL_ERROR
    # The error, with its traceback, on stderr: the log message, then the exception.
    assert "raised" in result.stderr
    assert "Traceback (most recent call last):" in result.stderr
    assert "Failure: got_data failed on purpose" in result.stderr
    # Only WARNING and above: the life-cycle records (INFO) stay out of the way.
    assert "listening on" not in result.stderr
