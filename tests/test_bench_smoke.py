"""Smoke test of the benchmark suite (bench/run.py): it runs and writes positive figures.

It needs none of the bench extra: it measures only alvaro.aio and the asyncio-streams baseline,
and draws no chart. It asserts nothing about speed: timings on a shared CI machine say nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

RUNNER = Path(__file__).resolve().parent.parent / "bench" / "run.py"


def run_bench(tmp_path: Path, *args: str) -> tuple[dict[str, Any], str]:
    """Run the runner with ``args``, check that it succeeded; its JSON document and output."""
    results_file = tmp_path / "bench.json"
    command = [sys.executable, str(RUNNER), *args, "--timeout", "30", "--no-chart"]
    command += ["--json", str(results_file)]
    # Below pytest's own 60 s limit, so that a hang shows the runner's output.
    done = subprocess.run(command, capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(results_file.read_text(encoding="utf-8")), done.stdout


def test_quick_oneway_run_writes_positive_figures(tmp_path: Path) -> None:
    document, output = run_bench(
        tmp_path,
        "--quick",
        "--only",
        "alvaro-aio",
        "asyncio-streams",
        "oneway",
        "--messages",
        "2000",
    )
    figures = {
        result["stack"]: result for result in document["results"] if result["workload"] == "oneway"
    }
    assert set(figures) == {"alvaro-aio", "asyncio-streams"}, output
    for stack, result in figures.items():
        assert result["status"] == "ok", (stack, result["reason"])
        assert result["figure"] > 0, stack
    assert document["environment"]["cpu_count"] >= 1


def test_quick_request_run_writes_figures_and_targets(tmp_path: Path) -> None:
    # The request workloads on alvaro.aio alone (its peers are in the bench extra, not here):
    # latency with the send-then-receive echo timed beside it, throughput with 100 in flight,
    # and the latency target computed from the two.
    document, output = run_bench(
        tmp_path,
        *("--only", "alvaro-aio", "request", "request-100", "--repeat", "1"),
        *("--round-trips", "50", "--warmup", "10", "--requests", "500"),
    )
    figures = {result["workload"]: result for result in document["results"]}
    assert set(figures) == {"request", "request-100"}, output
    for workload, result in figures.items():
        assert result["stack"] == "alvaro-aio"
        assert result["status"] == "ok", (workload, result["reason"])
        assert result["figure"] > 0, workload
    assert figures["request"]["send_receive"] > 0
    assert figures["request"]["p99"] >= figures["request"]["figure"]
    assert document["baselines"]["request-100"] == "grpcio"
    (latency,) = document["targets"]
    assert latency["stack"] == "alvaro-aio"
    assert latency["ratio"] > 0
    assert latency["met"] == (latency["ratio"] <= latency["limit"])
