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

A test that uses one of these without anyio running it (a plain ``def`` test, or an
``async def`` one not marked ``@pytest.mark.anyio``) fails at set-up with a message that says
so, instead of pytest's error about an unhandled coroutine.

Blocking fixtures (no event loop in the test; the objects run on alvaro.sync's background
loop thread, and their callbacks on their dispatcher threads):

* ``alvaro_sync_host``: a started :class:`alvaro.sync.Host` on a free loopback port;
* ``alvaro_sync_client``: an :class:`alvaro.sync.Client` connected to ``alvaro_sync_host``;
* ``alvaro_sync_tls_host`` and ``alvaro_sync_tls_client``: the same over TLS;
* ``alvaro_sync_backend``: the loop the sync objects run on, ``"asyncio"``; override it (with
  ``params=["asyncio", "trio"]`` to run on both) as ``anyio_backend`` is overridden.

Both kinds are stopped after the test, within ``2 * close_timeout + 1`` seconds whatever the
peers do. Set the host's callbacks in the test (``alvaro_host.got_data = ...``) before the
client sends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from . import testing

if TYPE_CHECKING:
    import ssl
    from collections.abc import AsyncIterator, Iterator

    import trustme

    import alvaro.sync

    from .aio import Client, Host

__all__ = (
    "alvaro_ca",
    "alvaro_client",
    "alvaro_client_ssl_context",
    "alvaro_host",
    "alvaro_server_ssl_context",
    "alvaro_sync_backend",
    "alvaro_sync_client",
    "alvaro_sync_host",
    "alvaro_sync_tls_client",
    "alvaro_sync_tls_host",
    "alvaro_tls_client",
    "alvaro_tls_files",
    "alvaro_tls_host",
)

#: The fixtures that need an event loop from anyio's pytest plugin.
ASYNC_FIXTURES = ("alvaro_host", "alvaro_client", "alvaro_tls_host", "alvaro_tls_client")


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
def _alvaro_needs_anyio(request: pytest.FixtureRequest) -> None:
    """Fail a test that uses an async fixture without anyio running it, saying what to do.

    Without it pytest reports an unhandled coroutine (or, before pytest 8.4, passes the test
    a coroutine object and warns). anyio's plugin adds ``anyio_backend`` to every test it runs.
    """
    if "anyio_backend" in request.fixturenames:
        return
    used = ", ".join(name for name in ASYNC_FIXTURES if name in request.fixturenames)
    if not request.config.pluginmanager.has_plugin("anyio"):
        why = "anyio's pytest plugin is not loaded (remove -p no:anyio)"
    else:
        why = "anyio does not run this test"
    pytest.fail(
        f"{request.node.name} uses alvaro's async fixture(s) {used}, but {why}: make the test "
        "'async def' and mark it with @pytest.mark.anyio (an anyio_backend fixture chooses "
        "asyncio or trio), or use the blocking fixtures alvaro_sync_host and "
        "alvaro_sync_client in a plain test",
        pytrace=False,
    )


@pytest.fixture
async def alvaro_host(_alvaro_needs_anyio: None) -> AsyncIterator[Host]:
    """A running plaintext host on a free loopback port, stopped after the test."""
    async with testing.running_host() as host:
        yield host


@pytest.fixture
async def alvaro_client(alvaro_host: Host) -> AsyncIterator[Client]:
    """A client connected to ``alvaro_host``, closed after the test."""
    async with testing.connected_client(alvaro_host) as client:
        yield client


@pytest.fixture
async def alvaro_tls_host(
    _alvaro_needs_anyio: None, alvaro_server_ssl_context: ssl.SSLContext
) -> AsyncIterator[Host]:
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


@pytest.fixture
def alvaro_sync_backend() -> str:
    """The event loop alvaro.sync's fixtures run on: ``"asyncio"``.

    Override it to choose, as ``anyio_backend`` is; to run each test on both loops::

        @pytest.fixture(params=["asyncio", "trio"])
        def alvaro_sync_backend(request):
            return request.param
    """
    return "asyncio"


@pytest.fixture
def alvaro_sync_host(alvaro_sync_backend: str) -> Iterator[alvaro.sync.Host]:
    """A started :class:`alvaro.sync.Host` on a free loopback port, stopped after the test.

    Its callbacks run on its dispatcher thread.
    """
    with testing.running_sync_host(backend=alvaro_sync_backend) as host:
        yield host


@pytest.fixture
def alvaro_sync_client(alvaro_sync_host: alvaro.sync.Host) -> Iterator[alvaro.sync.Client]:
    """An :class:`alvaro.sync.Client` connected to ``alvaro_sync_host``, closed after the test."""
    with testing.connected_sync_client(alvaro_sync_host) as client:
        yield client


@pytest.fixture
def alvaro_sync_tls_host(
    alvaro_server_ssl_context: ssl.SSLContext, alvaro_sync_backend: str
) -> Iterator[alvaro.sync.Host]:
    """A started TLS :class:`alvaro.sync.Host` with ``alvaro_server_ssl_context``."""
    with testing.running_sync_host(
        backend=alvaro_sync_backend, ssl_context=alvaro_server_ssl_context
    ) as host:
        yield host


@pytest.fixture
def alvaro_sync_tls_client(
    alvaro_sync_tls_host: alvaro.sync.Host, alvaro_client_ssl_context: ssl.SSLContext
) -> Iterator[alvaro.sync.Client]:
    """An :class:`alvaro.sync.Client` connected over TLS to ``alvaro_sync_tls_host``."""
    with testing.connected_sync_client(
        alvaro_sync_tls_host, ssl_context=alvaro_client_ssl_context
    ) as client:
        yield client
