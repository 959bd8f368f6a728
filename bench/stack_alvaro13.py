"""The original Alvaro 1.3.0 from PyPI, in a virtual environment of its own.

Its package is also called ``alvaro``, so it cannot live beside the new library: the runner makes
``bench/.venv-alvaro13`` on first use (``python3 -m venv``, then ``pip install Alvaro==1.3.0``
and pycryptodome, which it imports) and runs ``alvaro13_driver.py`` there, as separate server
and client processes. Later runs reuse the environment.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
VENV_DIR = BENCH_DIR / ".venv-alvaro13"
DRIVER = BENCH_DIR / "alvaro13_driver.py"
REQUIREMENTS = ("Alvaro==1.3.0", "pycryptodome")
# Written last, so that a half-made environment (an interrupted install) is made again.
READY_MARK = VENV_DIR / "bench-ready"
SETUP_TIMEOUT = 300.0


class Unavailable(Exception):
    """Alvaro 1.3.0 cannot be run here; the message says why."""


def venv_python() -> Path:
    """The environment's interpreter (it may not exist yet)."""
    if sys.platform == "win32":
        return VENV_DIR / "Scripts" / "python.exe"
    return VENV_DIR / "bin" / "python"


def ensure_venv() -> tuple[Path, str]:
    """Make the environment if needed; return its interpreter and the installed version.

    Raises:
        Unavailable: making the environment or installing into it failed (offline, no venv
            module, a build failure, ...); the message has the last line of the error.
    """
    python = venv_python()
    if not READY_MARK.exists():
        print("  setting up Alvaro 1.3.0 in its own environment (once) ...", flush=True)
        _run([sys.executable, "-m", "venv", "--clear", str(VENV_DIR)], "python3 -m venv")
        _run(
            [
                str(python),
                *("-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
                *REQUIREMENTS,
            ],
            "pip install " + " ".join(REQUIREMENTS),
        )
    version = _run(
        # -I: only the environment's own packages, never the project's alvaro from the cwd.
        [str(python), "-I", "-c", "import Crypto, alvaro.__version__ as v; print(v.__version__)"],
        "import alvaro",
    ).strip()
    if version != "1.3.0":
        raise Unavailable(f"the environment has Alvaro {version!r}, not 1.3.0")
    READY_MARK.write_text("1.3.0\n", encoding="ascii")
    return python, version


def _run(command: list[str], what: str) -> str:
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT,
            check=False,
            cwd=tempfile.gettempdir(),  # nothing there can pass for a package
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{what}: {exc}") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise Unavailable(f"{what} failed: {lines[-1] if lines else f'exit {done.returncode}'}")
    return done.stdout


def command(role: str, workload: str, params_json: str, port: int | None = None) -> list[str]:
    """The command line that runs one side of a workload in the environment."""
    args = [str(venv_python()), str(DRIVER), role, workload, params_json]
    return args if port is None else [*args, str(port)]
