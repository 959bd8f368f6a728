"""alvaro: easy, event-based message passing over TCP.

A :class:`Host` accepts clients and a :class:`Client` connects; each message is JSON data (or raw
bytes) plus a metadata dict, and events such as ``new_client``, ``got_data`` and ``lost_client``
call your functions. ``alvaro.Host`` and ``alvaro.Client`` are the async classes of
:mod:`alvaro.aio`, which run on asyncio and on trio.
"""

from __future__ import annotations

from ._close_codes import CloseCode
from ._settings import Settings
from ._version import __version__
from .aio import Client, Connection, Host
from .exceptions import (
    AccountsFileError,
    AlvaroError,
    AuthenticationError,
    ConcurrencyError,
    ConnectError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    EncodeError,
    LocalProtocolError,
    MessageTooLarge,
    OutboxFull,
    ProtocolError,
    RemoteProtocolError,
    TLSError,
    WrongThreadError,
)
from .protocol import Message

__all__ = (
    "AccountsFileError",
    "AlvaroError",
    "AuthenticationError",
    "Client",
    "CloseCode",
    "ConcurrencyError",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Connection",
    "EncodeError",
    "Host",
    "LocalProtocolError",
    "Message",
    "MessageTooLarge",
    "OutboxFull",
    "ProtocolError",
    "RemoteProtocolError",
    "Settings",
    "TLSError",
    "WrongThreadError",
    "__version__",
)

# No handler, not even a NullHandler (websockets' choice too): until the application configures
# logging, Python's last-resort handler prints WARNING and above to stderr, so that a callback
# that raised, or a host refusing connections, is not silent. Configuring logging replaces it.
