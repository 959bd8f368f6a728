"""The stream seam: the only part of ``alvaro.aio`` that touches sockets, ssl and asyncio.

Everything above it sees a :class:`~.base.Transport` (``receive``/``send``/``send_now``/
``aclose``) that raises alvaro's own exceptions. ``base`` declares that shape; ``anyio_tcp``
(trio) and ``asyncio_tcp`` (asyncio) are the TCP transports, ``tcp`` opens and accepts
connections with the right one, ``listening`` checks and opens what a host listens on (an
address, a shared port, a given socket), and ``tls`` runs TLS over either.
"""

from __future__ import annotations

from .base import Transport, check_port, split_address
from .listening import ListenOn, listen_on, open_listener
from .tcp import ACCEPT_CAPACITY_ERRNOS, Listener, listen, open_transport
from .tls import TLSTransport, check_context, classify_ssl_error, start_tls

__all__ = (
    "ACCEPT_CAPACITY_ERRNOS",
    "ListenOn",
    "Listener",
    "TLSTransport",
    "Transport",
    "check_context",
    "check_port",
    "classify_ssl_error",
    "listen",
    "listen_on",
    "open_listener",
    "open_transport",
    "split_address",
    "start_tls",
)
