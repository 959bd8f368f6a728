"""Fixtures of the alvaro.sync tests: every test runs on both loop backends, and leaks nothing."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import pytest

from alvaro.sync._loop import Backend, shared_loop

from ..helpers import T, wait_until
from .support import alvaro_threads

if TYPE_CHECKING:
    from collections.abc import Iterator


BACKENDS: tuple[Backend, ...] = ("asyncio", "trio")


@pytest.fixture(params=[pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")])
def sync_backend(request: pytest.FixtureRequest) -> Backend:
    """The backend of the shared loop thread; pass it as ``backend=`` to every sync object."""
    return cast("Backend", request.param)


@pytest.fixture(autouse=True)
def _no_leftovers() -> Iterator[None]:
    """After each test every sync object it made is closed: no lease, no loop or dispatcher thread.

    Only what the test itself left is reported, so that one leak does not fail every later test.
    """
    threads_before = set(alvaro_threads())
    leases_before = {backend: shared_loop(backend).leases for backend in BACKENDS}
    yield
    wait_until(lambda: set(alvaro_threads()) <= threads_before, timeout=30 * T)
    assert {backend: shared_loop(backend).leases for backend in BACKENDS} == leases_before
