"""R20(b): a real half-open link, made by bringing loopback down in a network namespace.

Needs root, ``unshare`` and ``ip`` (Linux); skipped elsewhere. The fault proxy's black hole
(tests/aio/test_proxy_faults.py) covers the same case everywhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from alvaro import CloseCode

from .helpers import WAIT, T

SCRIPT = Path(__file__).parent / "process_peers" / "half_open.py"


def _can_unshare() -> bool:
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, check=False)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _can_unshare(), reason="needs root, unshare and ip on Linux")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_r20b_both_sides_report_timeout_on_a_half_open_link(backend: str) -> None:
    interval = timeout = 3 * T
    result = subprocess.run(
        ["unshare", "-n", sys.executable, str(SCRIPT), backend, str(interval), str(timeout)],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lost = json.loads(result.stdout)
    for side in ("host", "client"):
        code, after = lost[side]
        assert code == CloseCode.TIMEOUT, (side, lost)
        # A ping goes out within one interval of the cut and waits ping_timeout for its answer.
        assert after <= interval + timeout + 10 * T, (side, lost)
