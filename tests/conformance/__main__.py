"""Run the conformance table on asyncio and trio and print the report.

Usage (from the repository's root)::

    python -m tests.conformance                   # every case, both roles, both backends
    python -m tests.conformance -k 7 -k 8.3       # group 7 and case 8.3
    python -m tests.conformance --backend trio -v # one backend; list every run

Exits with status 1 if any run FAILED (known bugs included: they are failures all the same),
0 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import anyio

from .cases import CASES, Case
from .runner import LOGGER, Result, format_report, run_case


async def _run_all(cases: list[Case], backend: str, verbose: bool) -> list[Result]:
    results = []
    for case in cases:
        for role in case.roles:
            result = await run_case(case, role, backend)
            results.append(result)
            if verbose:
                print(
                    f"{result.status:<10} {case.id:<6} {role:<6} {backend:<7} "
                    f"{result.seconds * 1000:6.0f} ms  {case.title}",
                    flush=True,
                )
    return results


def _selects(pattern: str, case_id: str) -> bool:
    pattern = pattern.rstrip(".")
    return case_id == pattern or case_id.startswith(pattern + ".")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.conformance", description=__doc__)
    parser.add_argument(
        "-k", action="append", default=[], help="a group (7) or a case (7.2) to run; repeatable"
    )
    parser.add_argument("--backend", choices=["asyncio", "trio"], action="append")
    parser.add_argument("-v", "--verbose", action="store_true", help="list every run")
    args = parser.parse_args(argv)
    # The implementation logs every fault the cases inject; that is expected, not news.
    LOGGER.addHandler(logging.NullHandler())
    LOGGER.propagate = False
    cases = [c for c in CASES if not args.k or any(_selects(k, c.id) for k in args.k)]
    started = time.monotonic()
    results: list[Result] = []
    for backend in args.backend or ["asyncio", "trio"]:
        results += anyio.run(_run_all, cases, backend, args.verbose, backend=backend)
    print(format_report(results))
    print(f"\n{len(results)} runs in {time.monotonic() - started:.1f} s")
    return 1 if any(r.status == "FAILED" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
