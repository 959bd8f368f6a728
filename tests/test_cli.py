"""The ``alvaro`` command: ``alvaro demo``, ``--version`` and the help, as a user runs them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import alvaro
from alvaro.cli import main
from tests.helpers import WAIT

RAW_BYTES = r"8 raw bytes b'\x00\x01\x02\x03\x04\x05\x06\x07'"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (bounded) and capture its output as text."""
    return subprocess.run(args, capture_output=True, text=True, timeout=3 * WAIT, check=False)


@pytest.mark.parametrize("backend", [None, "asyncio", "trio"])
def test_demo(backend: str | None) -> None:
    args = ["demo"] if backend is None else ["demo", "--backend", backend]
    result = run(sys.executable, "-m", "alvaro", *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()

    assert lines[0] == (
        f"alvaro {alvaro.__version__} demo: a host and two clients on 127.0.0.1, "
        f"on {backend or 'asyncio'}"
    )
    assert any(line.startswith("  [host ] listening on 127.0.0.1:") for line in lines)
    assert sum(line.startswith("  [host ] new client from 127.0.0.1:") for line in lines) == 2
    assert any(
        line.startswith('  [alice] got "welcome" with metadata {"from": "host"') for line in lines
    )
    # Bob got Alice's greeting, with her metadata, relayed by the host.
    assert (
        '  [bob  ] got "Hello, Bob!" with metadata '
        '{"from": "alice", "kind": "chat", "relayed_by": "host"}'
    ) in lines
    # A JSON object went the other way.
    assert (
        '  [alice] got {"reply": "Hi Alice!", "mood": ["happy", 3]} with metadata '
        '{"from": "bob", "relayed_by": "host"}'
    ) in lines
    # Raw bytes travelled unchanged.
    assert (
        f"  [bob  ] got {RAW_BYTES} with metadata "
        '{"from": "alice", "kind": "raw", "relayed_by": "host"}'
    ) in lines
    # Bob's close reason reached the host; Alice left without one.
    assert "  [host ] lost bob: close code 1000 (see you)" in lines
    assert "  [host ] lost alice: close code 1000 (no reason)" in lines
    assert lines[-1] == "done: 16 events, messages went both ways with metadata."


def test_demo_verbose_logs_to_stderr() -> None:
    result = run(sys.executable, "-m", "alvaro", "-v", "demo")
    assert result.returncode == 0, result.stderr
    assert "alvaro.host INFO listening on 127.0.0.1:" in result.stderr
    assert result.stdout.splitlines()[-1].startswith("done:")


def test_demo_rejects_unknown_backend() -> None:
    result = run(sys.executable, "-m", "alvaro", "demo", "--backend", "twisted")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert result.stdout == ""


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"alvaro {alvaro.__version__}\n"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: alvaro")
    assert "demo" in out
    assert "--version" in out


def test_console_script() -> None:
    bin_dir = Path(sys.executable).parent
    script = shutil.which("alvaro", path=str(bin_dir))
    assert script is not None, f"no 'alvaro' console script in {bin_dir}"
    result = run(script, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"alvaro {alvaro.__version__}\n"
