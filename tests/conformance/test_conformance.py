"""The conformance table as pytest tests: one test per case and role, on asyncio and on trio.

A FAILED run fails its test; a NON-STRICT run passes only if its case justifies the leniency. A
run that ``cases.py`` lists as a known bug is an expected failure (strict: it fails the suite
once the bug is fixed, so that the entry is removed). At the end of the session the OK /
NON-STRICT / FAILED report is written to the terminal.
"""

from __future__ import annotations

import logging
import re
from contextlib import nullcontext
from typing import TYPE_CHECKING

import pytest

from .cases import CASES, GROUPS, ROLES, Case
from .runner import LOGGER, Result, format_report, run_case

if TYPE_CHECKING:
    from collections.abc import Iterator


PARAMS = [pytest.param(case, role, id=f"{case.id}-{role}") for case in CASES for role in case.roles]


@pytest.fixture(scope="session")
def conformance_report(request: pytest.FixtureRequest) -> Iterator[list[Result]]:
    """Collects every run's result; writes the report when the session's tests are done."""
    results: list[Result] = []
    yield results
    report = format_report(results)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:  # pragma: no cover - pytest without its terminal (-p no:terminal)
        logging.getLogger(__name__).warning("%s", report)
        return
    # Teardown output is captured like a test's; the report is for the terminal.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else nullcontext():
        reporter.write_line("")
        reporter.write_sep("=", "alvaro protocol conformance report")
        for line in report.splitlines():
            reporter.write_line(line)


@pytest.fixture
def known_bug(request: pytest.FixtureRequest, anyio_backend: str) -> None:
    """Mark the runs that ``cases.py`` lists as known bugs as strict expected failures."""
    case, role = request.node.callspec.params["case"], request.node.callspec.params["role"]
    bug = case.known_bug(role, anyio_backend)
    if bug is not None:
        request.node.add_marker(pytest.mark.xfail(strict=True, reason=bug.reason))


@pytest.mark.anyio
@pytest.mark.usefixtures("known_bug")
@pytest.mark.parametrize(("case", "role"), PARAMS)
async def test_conformance(
    case: Case,
    role: str,
    anyio_backend: str,
    conformance_report: list[Result],
    caplog: pytest.LogCaptureFixture,
) -> None:
    result = await run_case(case, role, anyio_backend)
    conformance_report.append(result)
    if result.status == "FAILED":
        pytest.fail(result.describe(), pytrace=False)
    if result.status == "NON-STRICT":
        assert case.justification, f"{case.id} is NON-STRICT without a written justification"
    # The implementation logs the faults the cases inject, at WARNING at most: an ERROR means a
    # traceback (a callback or the implementation itself failed).
    errors = [r for r in caplog.records if r.name == LOGGER.name and r.levelno >= logging.ERROR]
    assert not errors, f"the implementation logged errors: {[r.getMessage() for r in errors]}"


# --- The table itself ----------------------------------------------------------------------------


def test_every_non_strict_outcome_is_justified() -> None:
    """As websockets does for its Autobahn deviations: every leniency is explained in writing."""
    for case in CASES:
        if case.lenient:
            assert len(case.justification) > 40, f"{case.id}: lenient outcomes need a reason"
        else:
            assert not case.justification, f"{case.id}: a justification without a lenient outcome"


def test_table_is_well_formed() -> None:
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    for case in CASES:
        assert re.fullmatch(r"\d+\.\d+", case.id), case.id
        assert case.group in GROUPS, case.id
        assert all((case.title, case.spec, case.expect, case.roles)), case.id
        assert set(case.roles) <= set(ROLES), case.id
        for bug in case.known_bugs:
            assert bug.reason, case.id
            assert set(bug.roles) <= set(case.roles), case.id
    assert {case.group for case in CASES} == set(GROUPS), "every group has cases"
