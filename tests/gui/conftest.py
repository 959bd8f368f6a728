"""A real X screen for the GUI tests: Xvfb, started once per session.

GUI programs run in processes of their own with ``DISPLAY`` pointing at it. Where no Xvfb can be
had the tests skip with that reason; ``.ci/run`` installs it, so CI is never such a place.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
from typing import TYPE_CHECKING, NoReturn

import pytest

from ..helpers import WAIT

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(scope="session")
def x_display() -> Iterator[str]:
    """The name of a running X display (``":N"``), for a GUI program's ``DISPLAY``."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        _unavailable("Xvfb is not installed (Debian: apt-get install xvfb)")
    read_end, write_end = os.pipe()
    # -displayfd: Xvfb picks a free display itself and writes its number once it is ready.
    process = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-nolisten", "tcp", "-screen", "0", "1024x768x24"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as ready:
            # Bounded: if Xvfb dies, the pipe closes and readline returns "".
            readable, _, _ = select.select([ready], [], [], WAIT)
            number = ready.readline().strip() if readable else ""
        if not number:
            process.wait(WAIT)
            error = process.stderr.read().decode(errors="replace") if process.stderr else ""
            _unavailable(f"Xvfb did not start: {error.strip()[-300:]}")
        yield f":{number}"
    finally:
        process.terminate()
        try:
            process.wait(WAIT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _unavailable(reason: str) -> NoReturn:
    """Skip for want of a screen; fail instead where one is required (``.ci/run`` sets
    ALVARO_REQUIRE_DISPLAY), so that CI never passes by skipping the GUI tests."""
    if os.environ.get("ALVARO_REQUIRE_DISPLAY"):
        pytest.fail(f"a display is required here: {reason}")
    pytest.skip(reason)


def gui_environment(display: str) -> dict[str, str]:
    """The environment for a GUI program on ``display``."""
    environment = dict(os.environ)
    environment["DISPLAY"] = display
    return environment
