"""The blocking API of alvaro, for scripts, GUIs and threads: no asyncio, no threading code.

:class:`Host` and :class:`Client` have the same names, callbacks and methods as in
:mod:`alvaro.aio`, as plain blocking calls. They run the async objects on one background
event-loop thread shared by the whole process; your callbacks run on a dispatcher thread (or
where ``dispatch=`` puts them, such as a GUI's main thread), never on the loop thread.
"""

from __future__ import annotations

from .client import Client, connect
from .connection import Connection
from .host import Host

__all__ = ("Client", "Connection", "Host", "connect")
