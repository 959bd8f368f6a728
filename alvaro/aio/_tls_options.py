"""Which TLS context a host serves with and a client connects with, from the two ways to ask:
a context given to the constructor, or ``use_ssl=True`` with certificate files (the original
library's way) given to ``start()``/``connect()``. Asking both ways is refused, not guessed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import tls
from ..exceptions import TLSError

if TYPE_CHECKING:
    import ssl

    from .._types import StrPath

__all__ = ("client_tls_context", "host_tls_context")


def host_tls_context(
    given: ssl.SSLContext | None, use_ssl: bool, cert: StrPath | None, key: StrPath | None
) -> ssl.SSLContext | None:
    """The context a host serves with (``None``: plaintext).

    Raises:
        TLSError: both ways were used, or ``use_ssl`` without a certificate.
    """
    if not use_ssl:
        return given
    if given is not None:
        raise TLSError(
            "give either ssl_context= to Host() or use_ssl=True to start(), not both",
            TLSError.CONFIGURATION,
        )
    if cert is None:
        raise TLSError(
            "use_ssl=True needs ssl_cert= (and ssl_key= unless the key is in that file)",
            TLSError.CONFIGURATION,
        )
    return tls.server_context(cert, key)


def client_tls_context(
    given: ssl.SSLContext | None, use_ssl: bool, cert: StrPath | None
) -> ssl.SSLContext | None:
    """The context a client connects with (``None``: plaintext); ``cert`` is the CA to trust.

    Raises:
        TLSError: both ways were used, or a certificate without ``use_ssl``.
    """
    if not use_ssl:
        if cert is not None:
            # The original library silently connected in plaintext here; refuse instead.
            raise TLSError(
                "ssl_cert= was given without use_ssl=True; pass use_ssl=True to connect with TLS",
                TLSError.CONFIGURATION,
            )
        return given
    if given is not None:
        raise TLSError(
            "give either ssl_context= to Client() or use_ssl=True to connect(), not both",
            TLSError.CONFIGURATION,
        )
    return tls.client_context(cert)
