"""alvaro.sync with Tk's ``root.after`` as ``dispatch=``, in a real Tk program on a real X screen.

The event loop thread never calls the dispatch function (which on a threaded Tcl waits for Tk's
thread), so a Tk thread busy in a callback or in ``close()`` holds back nothing but its own
callbacks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ..helpers import WAIT
from .conftest import gui_environment

pytest.importorskip("tkinter", reason="this Python has no tkinter")

PROGRAM = Path(__file__).parent / "programs" / "tk_dispatch.py"
# Short, so that the hang this guards against (close() waiting out its whole bound, then
# TimeoutError) shows well before the program's own time limit.
CLOSE_TIMEOUT = 3.0


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_tk_dispatch_never_blocks_the_loop(x_display: str, backend: str) -> None:
    done = subprocess.run(
        [sys.executable, str(PROGRAM), backend, str(CLOSE_TIMEOUT)],
        env=gui_environment(x_display),
        capture_output=True,
        text=True,
        timeout=3 * WAIT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    # Another client of the process kept working while a Tk callback held Tk's thread.
    assert results["others_ok"] is True, results
    assert results["released"] is True
    # close() on Tk's thread returned without error, and well inside its own bound.
    assert results["close_error"] is None, results
    assert results["close_seconds"] < CLOSE_TIMEOUT, results
    # The lost_connection callback still ran, on Tk's thread, after close() returned.
    assert results["lost_connection_ran"] is True
    assert "Traceback" not in done.stderr, done.stderr
