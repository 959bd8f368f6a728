"""A real X screen for the GUI tests: Xvfb, started once per session, and the tools around it.

GUI programs run in processes of their own with ``DISPLAY`` pointing at it; xdotool types into
their windows and ImageMagick's ``import`` takes screenshots, written under ``test-artifacts/gui/``
(or ``$ALVARO_TEST_ARTIFACTS/gui/``) and listed at the end of the run. Where no Xvfb, tool or Qt
can be had the tests skip with that reason; ``.ci/run`` installs them and sets
ALVARO_REQUIRE_DISPLAY, so CI is never such a place: there the tests fail instead.

The dispatcher tests run in this process, on both loop backends, with the alvaro.sync tests'
fixtures (``sync_backend``, and the check that each test leaves no thread or lease behind).
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from ..helpers import ROOT, WAIT, checkout_env
from ..sync.conftest import _no_leftovers, sync_backend  # noqa: F401 - fixtures shared here

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
    """The environment for a GUI program on ``display``, importing this checkout's alvaro."""
    environment = checkout_env()
    environment["DISPLAY"] = display
    return environment


#: Where screenshots go; kept out of git (.gitignore).
ARTIFACTS = Path(os.environ.get("ALVARO_TEST_ARTIFACTS", ROOT / "test-artifacts")) / "gui"
_written: list[Path] = []


@pytest.fixture(scope="session")
def x_tools(x_display: str) -> str:
    """The display, once xdotool (typing into windows) and ``import`` (screenshots) are there."""
    for tool, package in (("xdotool", "xdotool"), ("import", "imagemagick")):
        if shutil.which(tool) is None:
            _unavailable(f"{tool} is not installed (Debian: apt-get install {package})")
    return x_display


@pytest.fixture(scope="session")
def qt_on_x(x_tools: str) -> str:
    """The display, once a Qt program can open a window on it (PySide6 and its X libraries)."""
    try:
        import PySide6  # noqa: F401 - only whether it is there
    except ImportError:
        _unavailable("PySide6 is not installed (pip install -e '.[test]')")
    environment = gui_environment(x_tools)
    environment["QT_QPA_PLATFORM"] = "xcb"
    probe = subprocess.run(
        [sys.executable, "-c", "from PySide6.QtWidgets import QApplication; QApplication([])"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=3 * WAIT,
        check=False,
    )
    if probe.returncode != 0:
        _unavailable(
            "Qt cannot open a window on the X display (missing X libraries? .ci/run lists "
            f"them): {probe.stderr.strip()[-400:]}"
        )
    return x_tools


def screenshot(display: str, window: str, name: str) -> Path:
    """Write a PNG of X window ``window`` to the artefacts folder; return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    subprocess.run(
        ["import", "-display", display, "-window", window, str(path)],
        capture_output=True,
        timeout=3 * WAIT,
        check=True,
    )
    _written.append(path)
    return path


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the screenshots the GUI tests wrote, so that a CI log says where to find them."""
    if _written:
        terminalreporter.section("GUI screenshots")
        for path in _written:
            terminalreporter.write_line(str(path))
