"""alvaro's benchmark suite: alvaro and its peers, measured in the same run, compared as ratios.

Stacks: alvaro.aio on asyncio, uvloop and trio, alvaro.sync, the original Alvaro 1.3.0 from
PyPI (in a virtual environment of its own), and as baselines hand-written asyncio streams,
hand-written anyio streams (asyncio and trio), websockets and pyzmq.

Workloads: one-way small messages (msgs/s), request/response round trip (median and p99 µs),
bulk 16 MiB messages (MB/s), one-way over TLS (msgs/s), server memory per idle connection
(KiB), and requests (alvaro, grpcio, pyzmq DEALER/ROUTER): one at a time (µs) and 100 in
flight (req/s), with the targets of issue 16 checked after the table. Every measurement runs
the server and the client in separate processes; each is repeated, the median is reported, and
each figure is divided by the baseline's figure (asyncio streams; grpcio for requests) of the
same workload from the same run, since absolute numbers move with the machine and its load.

Run:  python3 bench/run.py [--quick] [--only NAME ...] [--repeat N] [--pin] [--json PATH]
See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import (
    BASELINE,
    STACKS,
    TLS_WORKLOADS,
    WORKLOADS,
    WORKLOADS_BY_NAME,
    MeasurementError,
    NotRunnable,
    Stack,
    Workload,
    check_runnable,
    cpu_info,
    figures,
    measure,
    versions,
)
from report import chart, format_targets, format_value, table, targets

if TYPE_CHECKING:
    from collections.abc import Iterator

    from common import Params, TlsFiles

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
DEFAULT_JSON = BENCH_DIR / "results" / "latest.json"
OFFICIAL_CHART = ROOT / "docs" / "performance.png"
# Partial and quick runs draw here (git-ignored), so they never replace the published chart.
SCRATCH_CHART = BENCH_DIR / "results" / "performance.png"

# name: (default, --quick)
SIZES: dict[str, tuple[int, int]] = {
    "messages": (200_000, 20_000),
    "round_trips": (5_000, 1_000),
    "warmup": (500, 100),
    "requests": (50_000, 2_000),
    "bulk_messages": (40, 5),
    "connections": (10_000, 500),
}
DEFAULT_REPEAT = (3, 1)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [stack.name for stack in STACKS] + [workload.name for workload in WORKLOADS]
    parser = argparse.ArgumentParser(
        description="Benchmark alvaro against its peers (see bench/README.md).",
        epilog="Stacks and workloads for --only: " + ", ".join(names),
    )
    parser.add_argument("--quick", action="store_true", help="small counts, one run: a smoke test")
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        help="run only these stacks and/or workloads (shell wildcards allowed, e.g. 'alvaro-*')",
    )
    parser.add_argument("--repeat", type=int, help="runs of each measurement (default 3, quick 1)")
    parser.add_argument("--messages", type=int, help="one-way and TLS messages (default 200,000)")
    parser.add_argument("--round-trips", type=int, help="timed round trips (default 5,000)")
    parser.add_argument(
        "--warmup", type=int, help="untimed round trips (and requests) first (default 500)"
    )
    parser.add_argument(
        "--requests", type=int, help="timed requests with 100 in flight (default 50,000)"
    )
    parser.add_argument("--bulk-messages", type=int, help="16 MiB messages (default 40)")
    parser.add_argument("--connections", type=int, help="idle connections (default 10,000)")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin both processes of the round-trip workload to one CPU (default: unpinned)",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="limit for one measurement, s (default 60)"
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help="where to write the results"
    )
    parser.add_argument(
        "--chart",
        type=Path,
        help="where to draw the chart (default: docs/performance.png for a full default run, "
        "bench/results/performance.png otherwise)",
    )
    parser.add_argument("--no-chart", action="store_true", help="draw no chart")
    args = parser.parse_args(argv)
    for name in ("repeat", *SIZES):
        value = getattr(args, name)
        if value is not None and value < (0 if name == "warmup" else 1):
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.only:
        unknown = [pattern for pattern in args.only if not fnmatch.filter(names, pattern)]
        if unknown:
            parser.error(f"unknown stack or workload: {', '.join(unknown)}")
    return args


def select(patterns: list[str] | None) -> tuple[list[Stack], list[Workload]]:
    """The stacks and workloads ``--only`` names (all of a kind when it names none of it)."""

    def matches(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns or ())

    stacks = [stack for stack in STACKS if matches(stack.name)] or list(STACKS)
    workloads = [workload for workload in WORKLOADS if matches(workload.name)] or list(WORKLOADS)
    return stacks, workloads


def make_tls_files(directory: Path) -> TlsFiles:
    """A throwaway CA and a certificate for 127.0.0.1 and localhost, made with trustme."""
    import trustme

    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1", "localhost")
    ca_path, server_path = directory / "ca.pem", directory / "server.pem"
    authority.cert_pem.write_to_path(str(ca_path))
    server.private_key_and_cert_chain_pem.write_to_path(str(server_path))
    return {"ca": str(ca_path), "server": str(server_path)}


def shown_path(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (no machine paths printed)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return path.name


def rotated(items: list[Stack], by: int) -> Iterator[Stack]:
    """``items`` starting at a different one each run, so no stack always goes first."""
    for index in range(len(items)):
        yield items[(index + by) % len(items)]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    quick = 1 if args.quick else 0
    sizes = {
        name: getattr(args, name) if getattr(args, name) is not None else SIZES[name][quick]
        for name in SIZES
    }
    params: Params = {
        "messages": sizes["messages"],
        "round_trips": sizes["round_trips"],
        "warmup": sizes["warmup"],
        "requests": sizes["requests"],
        "bulk_messages": sizes["bulk_messages"],
        "connections": sizes["connections"],
        "pin": args.pin,
        "tls": None,
    }
    repeat = args.repeat if args.repeat is not None else DEFAULT_REPEAT[quick]
    stacks, workloads = select(args.only)
    overridden = any(getattr(args, name) is not None for name in SIZES)
    official = not (args.quick or args.only or overridden)
    chart_path = args.chart or (OFFICIAL_CHART if official else SCRATCH_CHART)

    # One entry per (workload, stack), in table order; measured runs accumulate in "runs".
    entries: dict[tuple[str, str], dict[str, Any]] = {}
    print("checking what can run here ...", flush=True)
    for workload in workloads:
        for stack in stacks:
            if stack.name not in workload.stacks:
                continue
            entry: dict[str, Any] = {
                "workload": workload.name,
                "stack": stack.name,
                "label": stack.label,
                "unit": workload.unit,
                "status": "pending",
                "reason": "",
                "note": stack.note(workload.name),
                "runs": [],
            }
            try:
                check_runnable(stack, workload, params)
            except NotRunnable as exc:
                entry["status"], _, entry["reason"] = str(exc).partition(": ")
            entries[workload.name, stack.name] = entry

    if not entries:
        print("nothing to run: none of the selected stacks runs the selected workloads")
        return 2

    with tempfile.TemporaryDirectory(prefix="alvaro-bench-tls-") as scratch:
        tls_needed = any(
            key[0] in TLS_WORKLOADS and entry["status"] == "pending"
            for key, entry in entries.items()
        )
        tls = make_tls_files(Path(scratch)) if tls_needed else None
        for run in range(repeat):
            for workload in workloads:
                pending = [
                    stack
                    for stack in stacks
                    if entries.get((workload.name, stack.name), {}).get("status") == "pending"
                ]
                these: Params = {
                    **params,
                    "pin": params["pin"] and workload.name == "roundtrip",
                    "tls": tls if workload.name in TLS_WORKLOADS else None,
                }
                for stack in rotated(pending, run):
                    _measure_once(
                        entries[workload.name, stack.name],
                        stack,
                        workload,
                        these,
                        args.timeout,
                        f"run {run + 1}/{repeat}",
                    )

    results = _summarise(list(entries.values()))
    cpus = cpu_info()
    pinned = "pinned to one CPU" if args.pin else "unpinned"
    header = (
        f"alvaro benchmarks: Python {platform.python_version()}, {cpus['cpu_count']} CPUs, "
        f"median of {repeat} run{'s' if repeat != 1 else ''}{', quick' if args.quick else ''}; "
        f"round trip {pinned}\n"
        f"one-way {params['messages']:,} msgs; round trip {params['round_trips']:,} "
        f"(+{params['warmup']:,} warm-up); bulk {params['bulk_messages']} x 16 MiB; "
        f"idle {params['connections']:,} connections; requests {params['round_trips']:,} one "
        f"at a time, {params['requests']:,} with 100 in flight"
    )
    goals = targets(results)
    print()
    print(table(results, header))
    if goals:
        print()
        print(format_targets(goals))

    document = {
        "schema": 1,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "system": f"{platform.system()} {platform.release()} {platform.machine()}",
            **cpus,
            "versions": versions(),
        },
        "settings": {
            **{key: value for key, value in params.items() if key not in ("tls", "pin")},
            "repeat": repeat,
            "quick": args.quick,
            "round_trip_pinned": args.pin,
            "timeout_s": args.timeout,
            "only": args.only,
        },
        "workloads": {
            workload.name: {
                "title": workload.title,
                "unit": workload.unit,
                "higher_is_better": workload.higher_is_better,
            }
            for workload in workloads
        },
        "baseline": BASELINE,
        "baselines": {workload.name: workload.baseline for workload in workloads},
        "results": results,
        "targets": goals,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
    print(f"\nresults: {shown_path(args.json)}")
    if not args.no_chart:
        subtitle = header.splitlines()[0].removeprefix("alvaro benchmarks: ")
        try:
            chart(results, subtitle, chart_path)
            print(f"chart:   {shown_path(chart_path)}")
        except ImportError:
            print('chart:   not drawn: matplotlib is not installed (pip install -e ".[bench]")')
    print(f"took {time.monotonic() - started:.0f} s")
    return 0 if any(result["figure"] is not None for result in results) else 1


def _measure_once(
    entry: dict[str, Any],
    stack: Stack,
    workload: Workload,
    params: Params,
    timeout: float,
    label: str,
) -> None:
    start = time.monotonic()
    params = stack.params(workload.name, params)
    try:
        raw = measure(stack, workload, params, timeout)
        values = figures(workload, params, raw)
    except MeasurementError as exc:
        # A stack that failed once is not tried again in this run: it would likely fail (and
        # use up its time limit) again. Runs that succeeded before still count.
        entry["status"], entry["reason"] = "failed", str(exc)
        outcome = f"failed: {exc}"
    else:
        entry["runs"].append(values)
        outcome = format_value(values["value"], workload.unit)
        if "p99" in values:
            outcome += f" (p99 {format_value(values['p99'], workload.unit)})"
    elapsed = time.monotonic() - start
    print(
        f"  {label}  {workload.name:<10}  {stack.label:<25}  {outcome}  [{elapsed:.1f} s]",
        flush=True,
    )


def _summarise(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians of each entry's runs, and ratios to the baseline of the same workload."""
    for entry in entries:
        runs = entry["runs"]
        entry["figure"] = statistics.median(r["value"] for r in runs) if runs else None
        for key in ("p99", "send_receive", "send_receive_p99"):
            if runs and key in runs[0]:
                entry[key] = statistics.median(r[key] for r in runs)
        if entry["status"] == "pending":
            entry["status"] = "ok"
        elif entry["status"] == "failed" and runs:
            # Some runs succeeded before one failed: report them, and say what happened.
            entry["status"] = "ok"
            entry["reason"] = f"a later run failed: {entry['reason']}"
    baselines = {
        entry["workload"]: entry["figure"]
        for entry in entries
        if entry["stack"] == WORKLOADS_BY_NAME[entry["workload"]].baseline and entry["figure"]
    }
    for entry in entries:
        baseline = baselines.get(entry["workload"])
        entry["ratio"] = (
            entry["figure"] / baseline if entry["figure"] is not None and baseline else None
        )
    return entries


if __name__ == "__main__":
    sys.exit(main())
