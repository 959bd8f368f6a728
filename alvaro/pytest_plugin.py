"""alvaro's pytest plugin: fixtures for testing programs that use alvaro.

Registered through the ``pytest11`` entry point, so a project with alvaro installed gets these
fixtures with no conftest of its own (the TLS ones need trustme, which the ``testing`` extra
adds). Importing the plugin defines fixtures and nothing else: no hooks, no autouse fixtures,
no options; trustme is imported only by a test that uses a TLS fixture.

TLS fixtures (session-scoped, so the CA is made once):

* ``alvaro_ca``: a throwaway :class:`trustme.CA`;
* ``alvaro_server_ssl_context``: a host context with a certificate for ``localhost``,
  ``127.0.0.1`` and ``::1``;
* ``alvaro_client_ssl_context``: a client context that trusts ``alvaro_ca`` only;
* ``alvaro_tls_files``: the same as PEM files (:class:`alvaro.testing.TLSFiles`), for the
  original ``useSSL=True, sslCert=..., sslKey=...`` style.

Running fixtures (async: they run on the test's anyio backend, so use them from tests marked
``@pytest.mark.anyio``; parametrize ``anyio_backend`` to run on asyncio and trio):

* ``alvaro_host``: an :class:`alvaro.aio.Host` listening on a free loopback port;
* ``alvaro_client``: an :class:`alvaro.aio.Client` connected to ``alvaro_host``;
* ``alvaro_tls_host`` and ``alvaro_tls_client``: the same over TLS with the contexts above.

Set the host's callbacks in the test (``alvaro_host.got_data = ...``) before the client sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from . import testing

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator

    import trustme

    from .aio import Client, Host

__all__ = (
    "alvaro_ca",
    "alvaro_client",
    "alvaro_client_ssl_context",
    "alvaro_host",
    "alvaro_server_ssl_context",
    "alvaro_tls_client",
    "alvaro_tls_files",
    "alvaro_tls_host",
)


@pytest.fixture(scope="session")
def alvaro_ca() -> trustme.CA:
    """A throwaway certificate authority, made once per test session."""
    return testing.make_ca()


@pytest.fixture(scope="session")
def alvaro_server_ssl_context(alvaro_ca: trustme.CA) -> ssl.SSLContext:
    """A host TLS context with a certificate from ``alvaro_ca`` for the loopback names."""
    return testing.server_context(alvaro_ca)


@pytest.fixture(scope="session")
def alvaro_client_ssl_context(alvaro_ca: trustme.CA) -> ssl.SSLContext:
    """A client TLS context that trusts ``alvaro_ca`` only."""
    return testing.client_context(alvaro_ca)


@pytest.fixture(scope="session")
def alvaro_tls_files(
    alvaro_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> testing.TLSFiles:
    """PEM files of ``alvaro_ca``, a server certificate and key, and a client certificate."""
    return testing.write_tls_files(tmp_path_factory.mktemp("alvaro-tls"), alvaro_ca)


@pytest.fixture
async def alvaro_host() -> AsyncIterator[Host]:
    """A running plaintext host on a free loopback port, stopped after the test."""
    async with testing.running_host() as host:
        yield host


@pytest.fixture
async def alvaro_client(alvaro_host: Host) -> AsyncIterator[Client]:
    """A client connected to ``alvaro_host``, closed after the test."""
    async with testing.connected_client(alvaro_host) as client:
        yield client


@pytest.fixture
async def alvaro_tls_host(alvaro_server_ssl_context: ssl.SSLContext) -> AsyncIterator[Host]:
    """A running TLS host on a free loopback port, with ``alvaro_server_ssl_context``."""
    async with testing.running_host(ssl_context=alvaro_server_ssl_context) as host:
        yield host


@pytest.fixture
async def alvaro_tls_client(
    alvaro_tls_host: Host, alvaro_client_ssl_context: ssl.SSLContext
) -> AsyncIterator[Client]:
    """A client connected over TLS to ``alvaro_tls_host``, trusting ``alvaro_ca``."""
    async with testing.connected_client(
        alvaro_tls_host, ssl_context=alvaro_client_ssl_context
    ) as client:
        yield client
