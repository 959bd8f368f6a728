"""Shared fixtures: every async test runs once on asyncio and once on trio."""

from __future__ import annotations

import pytest


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The anyio plugin runs each ``@pytest.mark.anyio`` test on the backend returned here."""
    return str(request.param)
