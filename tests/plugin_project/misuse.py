"""Mistakes a user makes with alvaro's async fixtures, each of which must fail with a message
that names the fix. Not a test module of the sample project (its name does not start with
``test_``): tests/test_pytest_plugin.py runs it on its own and expects every test to error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import alvaro


def test_plain_function_with_an_async_fixture(alvaro_host: alvaro.aio.Host) -> None:
    raise AssertionError("never reached: the fixture refuses to be set up")


async def test_async_function_not_marked(alvaro_client: alvaro.aio.Client) -> None:
    raise AssertionError("never reached: the fixture refuses to be set up")


def test_tls_fixture_in_a_plain_function(alvaro_tls_client: alvaro.aio.Client) -> None:
    raise AssertionError("never reached: the fixture refuses to be set up")
