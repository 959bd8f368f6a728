"""Helpers for testing programs that use alvaro: throwaway CAs, TLS contexts, running hosts.

Needs trustme (``pip install trustme``; the ``testing`` extra of this project adds it, as in
``pip install ".[testing]"`` from a checkout). Under pytest the same helpers are fixtures
(``alvaro_ca``, ``alvaro_host``, ``alvaro_sync_host``, ...; see :mod:`alvaro.pytest_plugin`),
with no conftest needed. For unittest or plain scripts, call these functions::

    ca = alvaro.testing.make_ca()
    host = alvaro.Host("127.0.0.1", 0, ssl_context=alvaro.testing.server_context(ca))
    client = alvaro.Client(ssl_context=alvaro.testing.client_context(ca))

For login, :func:`fast_accounts` gives a host users whose logins cost microseconds instead of
a fraction of a second::

    host = alvaro.Host(login_required=True, accounts=alvaro.testing.fast_accounts({"ann": "pw"}))

The certificates are real (verification stays on) but made for tests: never use them for
anything else. trustme is imported only when a CA is made.
"""

from __future__ import annotations

import dataclasses
import os
import ssl
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .accounts.store import Accounts
from .aio import Client, Host, connect
from .tls import new_client_context, new_server_context

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Mapping, Sequence

    import trustme

    import alvaro.sync

__all__ = (
    "FAST_ITERATIONS",
    "LOOPBACK_NAMES",
    "TLSFiles",
    "client_context",
    "connected_client",
    "connected_sync_client",
    "fast_accounts",
    "make_ca",
    "running_host",
    "running_sync_host",
    "server_context",
    "write_tls_files",
)

#: The names a test server certificate is issued for: every way to reach this machine.
LOOPBACK_NAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")


def make_ca() -> trustme.CA:
    """Make a throwaway certificate authority (a :class:`trustme.CA`).

    Raises:
        ModuleNotFoundError: trustme is not installed (``pip install trustme``).
    """
    try:
        # Imported only when needed: trustme loads cryptography, which takes a while.
        import trustme
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(
            "alvaro.testing needs trustme: pip install trustme", name="trustme"
        ) from exc
    return trustme.CA()


def server_context(
    ca: trustme.CA,
    *,
    names: Sequence[str] = LOOPBACK_NAMES,
    client_ca: trustme.CA | None = None,
) -> ssl.SSLContext:
    """A host's TLS context with a certificate from ``ca`` for ``names``.

    ``client_ca`` turns on mutual TLS: clients must present a certificate issued by it.
    """
    context = new_server_context()
    ca.issue_cert(*names).configure_cert(context)
    if client_ca is not None:
        client_ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(ca: trustme.CA, *, client_name: str | None = None) -> ssl.SSLContext:
    """A client's TLS context that trusts ``ca`` only.

    ``client_name`` adds a client certificate from ``ca`` for that name, for mutual TLS.
    """
    context = new_client_context()
    ca.configure_trust(context)
    if client_name is not None:
        ca.issue_cert(client_name).configure_cert(context)
    return context


@dataclasses.dataclass(frozen=True)
class TLSFiles:
    """Paths of PEM files for the original ``useSSL`` style, made by :func:`write_tls_files`.

    Attributes:
        ca: the CA certificate (give it to clients: ``sslCert=files.ca``).
        cert, key: the server certificate and its key (``sslCert=files.cert, sslKey=files.key``).
        client_cert, client_key: a client certificate and its key, for mutual TLS.
    """

    ca: Path
    cert: Path
    key: Path
    client_cert: Path
    client_key: Path


def write_tls_files(
    directory: str | os.PathLike[str],
    ca: trustme.CA | None = None,
    *,
    names: Sequence[str] = LOOPBACK_NAMES,
    client_name: str = "alvaro-client",
) -> TLSFiles:
    """Write a CA, a server certificate for ``names`` and a client certificate to ``directory``.

    Keys are written readable by the owner only. A new CA is made unless ``ca`` is given.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    ca = ca if ca is not None else make_ca()
    server = ca.issue_cert(*names)
    client = ca.issue_cert(client_name)
    files = TLSFiles(
        ca=folder / "ca.pem",
        cert=folder / "server.pem",
        key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.cert))
    for pem in server.cert_chain_pems[1:]:
        pem.write_to_path(str(files.cert), append=True)
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    for pem in client.cert_chain_pems[1:]:
        pem.write_to_path(str(files.client_cert), append=True)
    for key, path in (
        (server.private_key_pem, files.key),
        (client.private_key_pem, files.client_key),
    ):
        _write_private(path, key.bytes())
    return files


def _write_private(path: Path, data: bytes) -> None:
    # A new file is created owner-only (no moment of wider access); an existing one, whose mode
    # os.open leaves as it was, is made owner-only before the key is written into it.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        if hasattr(os, "fchmod"):  # not on Windows, where the mode bits mean little
            os.fchmod(fd, 0o600)
        file.write(data)


#: The SCRAM iteration count of :func:`fast_accounts`: the least the protocol allows.
FAST_ITERATIONS = 4096


def fast_accounts(users: Mapping[str, str] | None = None, **options: Any) -> Accounts:
    """An :class:`alvaro.auth.Accounts` store for tests, holding ``users`` (name: password).

    Its passwords use 4096 key-derivation rounds, the least SCRAM allows, instead of 600,000:
    a login then costs the client about a millisecond instead of about 0.2 s. Never use it for
    real accounts, whose stolen file would then be cheap to attack. ``options`` are the
    :class:`~alvaro.auth.Accounts` arguments (the throttling policy, a fake ``clock``).
    """
    accounts = Accounts(iterations=FAST_ITERATIONS, **options)
    for name, password in (users or {}).items():
        accounts.add_user(name, password)
    return accounts


@asynccontextmanager
async def running_host(
    addr: str = "127.0.0.1", port: int = 0, **options: Any
) -> AsyncIterator[Host]:
    """Run an :class:`alvaro.aio.Host` on a free loopback port for an ``async with`` block.

    ``options`` are the Host's keyword arguments (``ssl_context=``, ``sock=``, settings). Works
    on asyncio and trio; the host is stopped gracefully when the block ends.
    """
    async with Host(addr, port, **options) as host:
        yield host


@asynccontextmanager
async def connected_client(host: Host, **options: Any) -> AsyncIterator[Client]:
    """Connect an :class:`alvaro.aio.Client` to ``host`` for an ``async with`` block.

    With a TLS host, pass ``ssl_context=client_context(ca)``; the client connects to the host's
    loopback address, which test certificates carry (:data:`LOOPBACK_NAMES`).
    """
    async with connect(_dial_address(host.addr), host.port, **options) as client:
        yield client


@contextmanager
def running_sync_host(
    addr: str = "127.0.0.1", port: int = 0, **options: Any
) -> Iterator[alvaro.sync.Host]:
    """Run an :class:`alvaro.sync.Host` on a free loopback port for a ``with`` block.

    ``options`` are the Host's keyword arguments (``backend=``, ``ssl_context=``,
    ``dispatch=``, settings). When the block ends the host is stopped, within
    ``2 * close_timeout + 1`` seconds whatever its clients do.
    """
    # Imported here: the plugin imports this module, and tests without sync fixtures need not
    # load alvaro.sync.
    from .sync import Host as SyncHost

    with SyncHost(addr, port, **options) as host:
        yield host


@contextmanager
def connected_sync_client(host: alvaro.sync.Host, **options: Any) -> Iterator[alvaro.sync.Client]:
    """Connect an :class:`alvaro.sync.Client` to ``host`` for a ``with`` block.

    The client runs on the host's backend unless ``backend=`` says otherwise; ``options`` are
    :func:`alvaro.sync.connect`'s (``ssl_context=``, ``login=``, settings). Closed, within
    ``2 * close_timeout + 1`` seconds, when the block ends.
    """
    from .sync import connect as sync_connect

    options.setdefault("backend", host.backend)
    with sync_connect(_dial_address(host.addr), host.port, **options) as client:
        yield client


def _dial_address(addr: str) -> str:
    # A host on a wildcard address is reached through loopback.
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(addr, addr)
