"""Ready-made TLS contexts that are correct by default.

Pass what these return as ``ssl_context=`` to :class:`~alvaro.aio.Host` or
:class:`~alvaro.aio.Client` (or their :mod:`alvaro.sync` twins)::

    context = alvaro.tls.server_context("cert.pem", "key.pem")
    host = alvaro.Host("0.0.0.0", 8888, ssl_context=context)
    client = alvaro.Client(ssl_context=alvaro.tls.client_context("ca.pem"))

Every context requires TLS 1.2 or later. Client contexts verify the server's certificate and its
name (``check_hostname``), always. Mutual TLS is one argument on each side: ``client_ca=`` on the
server, ``certfile=`` on the client.

A missing or unreadable file raises :class:`~alvaro.TLSError` with ``kind == "configuration"``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import ssl
from typing import TYPE_CHECKING, Any

from .exceptions import TLSError

if TYPE_CHECKING:
    from ._types import StrPath

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = (
    "TLSInfo",
    "client_context",
    "new_client_context",
    "new_server_context",
    "server_context",
)


@dataclasses.dataclass(frozen=True)
class TLSInfo:
    """What a TLS connection negotiated: ``conn.tls`` (``None`` on a plaintext connection).

    Attributes:
        version: the TLS version, such as ``"TLSv1.3"``.
        cipher: the cipher suite's name.
        peer_certificate: the peer's verified certificate, decoded as by
            :meth:`ssl.SSLSocket.getpeercert`; on a host, the client's certificate under mutual
            TLS (``None`` if the client presented none); on a client, the host's.
    """

    version: str
    cipher: str
    peer_certificate: dict[str, Any] | None

    @property
    def peer_names(self) -> tuple[str, ...]:
        """The names the peer's certificate is issued for: its DNS and IP subject alternative
        names, then its common name; empty without a certificate."""
        cert = self.peer_certificate
        if not cert:
            return ()
        names = [
            _normal_address(value) if key == "IP Address" else value
            for key, value in cert.get("subjectAltName", ())
            if key in _NAME_KEYS
        ]
        for rdn in cert.get("subject", ()):
            names.extend(value for key, value in rdn if key == "commonName")
        return tuple(dict.fromkeys(names))  # in order, without repeats


_NAME_KEYS = frozenset({"DNS", "IP Address"})


def _normal_address(text: str) -> str:
    # ssl writes IPv6 addresses in full ("0:0:0:0:0:0:0:1"); give the usual short form ("::1").
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return text


def server_context(
    certfile: StrPath,
    keyfile: StrPath | None = None,
    *,
    password: str | bytes | None = None,
    client_ca: StrPath | None = None,
    require_client_cert: bool = True,
) -> ssl.SSLContext:
    """Build the TLS context of a host.

    Args:
        certfile: the host's certificate in PEM, followed by any intermediate certificates.
        keyfile: its private key in PEM; ``None`` if ``certfile`` contains the key too.
        password: the key's password, if it is encrypted.
        client_ca: a PEM file of the CA(s) whose client certificates are accepted: turns on
            mutual TLS. The peer's certificate is then available as ``conn.tls.peer_certificate``
            before ``new_client`` runs.
        require_client_cert: with ``client_ca``, whether a client without a certificate is
            refused (the default) or let in (and ``conn.tls.peer_certificate`` is ``None``).

    Raises:
        TLSError: a file is missing or unreadable, or the key does not match the certificate.
    """
    context = new_server_context()
    _load(
        "certificate and key",
        lambda: context.load_cert_chain(certfile, keyfile, password),
        certfile,
        keyfile,
    )
    if client_ca is not None:
        _load("client CA", lambda: context.load_verify_locations(client_ca), client_ca)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


def client_context(
    cafile: StrPath | None = None,
    *,
    certfile: StrPath | None = None,
    keyfile: StrPath | None = None,
    password: str | bytes | None = None,
) -> ssl.SSLContext:
    """Build the TLS context of a client.

    Args:
        cafile: a PEM file of the CA(s) to trust, for a host whose certificate comes from a
            private CA; ``None`` trusts the system's CA store, as a browser does.
        certfile: a client certificate in PEM, for hosts that require mutual TLS.
        keyfile: its private key; ``None`` if ``certfile`` contains the key too.
        password: the key's password, if it is encrypted.

    Raises:
        TLSError: a file is missing or unreadable.
    """
    context = new_client_context()
    if cafile is None:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        # Trust exactly this CA, not the system store as well: a private deployment should not
        # accept any public certificate for its host name.
        _load("CA", lambda: context.load_verify_locations(cafile), cafile)
    if certfile is not None:
        _load(
            "client certificate and key",
            lambda: context.load_cert_chain(certfile, keyfile, password),
            certfile,
            keyfile,
        )
    return context


def new_server_context() -> ssl.SSLContext:
    """alvaro's defaults for a host, with no certificate loaded yet (also used by
    :mod:`alvaro.testing`, so that tests run with the same settings as production)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # alvaro clients never resume sessions, so tickets would be wasted bytes; sending none also
    # avoids an OpenSSL bug where a client closing right after the handshake can hang the server
    # while it writes tickets (openssl#7967).
    context.num_tickets = 0
    return context


def new_client_context() -> ssl.SSLContext:
    """alvaro's defaults for a client, trusting no CA yet."""
    # PROTOCOL_TLS_CLIENT verifies the certificate and the host name; they cannot be turned off
    # here, only by building a context of one's own.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _load(what: str, load: Callable[[], None], *paths: StrPath | None) -> None:
    names = " / ".join(os.fspath(path) for path in paths if path is not None)
    try:
        load()
    except FileNotFoundError as exc:
        raise TLSError(f"TLS {what} file not found: {names}", TLSError.CONFIGURATION) from exc
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise TLSError(
            f"could not load the TLS {what} from {names}: {exc}", TLSError.CONFIGURATION
        ) from exc
