"""What the protocol itself reads of the SCRAM-SHA-256 messages that login frames carry.

The SCRAM computation is the ``scramp`` package's, on the aio side; the protocol only needs two
fields, read before or instead of ``scramp``: the user name of a client-first-message (a host's
authenticator may look users up asynchronously, which ``scramp`` cannot wait for) and the
iteration count of a server-first-message (a client refuses counts outside
:data:`MIN_ITERATIONS` to :data:`MAX_ITERATIONS` before it spends any CPU on them).
"""

from __future__ import annotations

from typing import Final

__all__ = ("MAX_ITERATIONS", "MIN_ITERATIONS", "challenge_iterations", "client_first_user")

MIN_ITERATIONS: Final = 4096
"""The fewest PBKDF2 rounds a login may ask for: RFC 7677's minimum, and scramp's."""
MAX_ITERATIONS: Final = 10_000_000
"""The most rounds a client derives at a host's request: beyond, a hostile host could make each
login burn CPU for minutes."""


def client_first_user(message: str) -> str:
    """The user name (``n=``) of a client-first-message, or ``""`` if there is none to be found.

    A message this cannot read, ``scramp`` refuses too.
    """
    parts = message.split(",", 3)
    if len(parts) < 3 or not parts[2].startswith("n="):
        return ""
    return parts[2][2:]


def challenge_iterations(message: str) -> int | None:
    """The iteration count (``i=``) of a server-first-message, if it has a readable one.

    A count of 40 digits or more is returned as ``MAX_ITERATIONS + 1`` (too many) without
    turning it into an integer.
    """
    for attribute in message.split(","):
        value = attribute[2:]
        if attribute.startswith("i=") and value.isascii() and value.isdigit():
            return int(value) if len(attribute) < 40 else MAX_ITERATIONS + 1
    return None
