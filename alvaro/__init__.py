"""alvaro: easy, event-based message passing over TCP.

A :class:`Host` accepts clients and a :class:`Client` connects; each message is JSON data (or raw
bytes) plus a metadata dict, and events such as ``new_client``, ``got_data`` and ``lost_client``
call your functions. ``alvaro.Host`` and ``alvaro.Client`` are the async classes of
:mod:`alvaro.aio`, which run on asyncio and on trio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._close_codes import CloseCode
from ._reply import Reply
from ._version import __version__
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
    RemoteError,
    RemoteProtocolError,
    TLSError,
    TooManyRequests,
    WrongThreadError,
)

if TYPE_CHECKING:
    from ._settings import Settings
    from .aio import Client, Connection, Host
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
    "RemoteError",
    "RemoteProtocolError",
    "Reply",
    "Settings",
    "TLSError",
    "TooManyRequests",
    "WrongThreadError",
    "__version__",
)

# No handler, not even a NullHandler (websockets' choice too): until the application configures
# logging, Python's last-resort handler prints WARNING and above to stderr, so that a callback
# that raised, or a host refusing connections, is not silent. Configuring logging replaces it.

# The exceptions, close codes and Reply (standard library only) are imported above; the rest on
# first use (PEP 562), so that "import alvaro.protocol", or any other stdlib-only part, loads
# neither anyio nor ssl: only alvaro.Host, Client and Connection do. Type checkers read the imports
# under TYPE_CHECKING instead, and (not seeing __getattr__) still report a misspelt name.
_HOMES: dict[str, str] = {
    "Settings": "._settings",
    "Client": ".aio",
    "Connection": ".aio",
    "Host": ".aio",
    "Message": ".protocol",
}

# The public modules, which "import alvaro; alvaro.aio.connect(...)" reaches without importing
# them first, as when this package imported alvaro.aio itself.
_MODULES = frozenset(("aio", "auth", "exceptions", "protocol", "sync", "tls"))

if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        if name in _MODULES:
            return importlib.import_module(f".{name}", __name__)
        if name in _HOMES:
            module = importlib.import_module(_HOMES[name], __name__)
            value = getattr(module, name)
            globals()[name] = value  # found directly from now on
            return value
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_MODULES})
