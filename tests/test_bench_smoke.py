"""Smoke test of the benchmark suite (bench/run.py): it runs and writes positive figures.

It needs none of the bench extra: it measures only alvaro.aio and the asyncio-streams baseline,
and draws no chart. It asserts nothing about speed: timings on a shared CI machine say nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def test_quick_oneway_run_writes_positive_figures(tmp_path: Path) -> None:
    results_file = tmp_path / "bench.json"
    command = [
        sys.executable,
        str(RUNNER),
        "--quick",
        "--only",
        "alvaro-aio",
        "asyncio-streams",
        "oneway",
        "--messages",
        "2000",
        "--timeout",
        "30",
        "--no-chart",
        "--json",
        str(results_file),
    ]
    # Below pytest's own 60 s limit, so that a hang shows the runner's output.
    done = subprocess.run(command, capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == 0, done.stdout + done.stderr

    document = json.loads(results_file.read_text(encoding="utf-8"))
    figures = {
        result["stack"]: result for result in document["results"] if result["workload"] == "oneway"
    }
    assert set(figures) == {"alvaro-aio", "asyncio-streams"}, done.stdout
    for stack, result in figures.items():
        assert result["status"] == "ok", (stack, result["reason"])
        assert result["figure"] > 0, stack
    assert document["environment"]["cpu_count"] >= 1
