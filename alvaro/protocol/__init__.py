"""The sans-I/O codec of the alvaro wire protocol (``docs/protocol.md``)."""

from .codec import *  # noqa: F403
from .codec import _DATA_HEADER, MAX_CLOSE_REASON, __all__  # noqa: F401
