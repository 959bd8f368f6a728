"""The async API of alvaro, on anyio: it runs unchanged on asyncio and on trio.

:class:`Host` accepts clients, :class:`Client` connects to a host, and each side talks through a
:class:`Connection`. :func:`connect` is the ``async with`` way to open a client connection.
``alvaro.Host`` and ``alvaro.Client`` are these same classes.
"""

from __future__ import annotations

from .client import Client, connect
from .connection import Connection, State
from .host import Host

__all__ = ("Client", "Connection", "Host", "State", "connect")
