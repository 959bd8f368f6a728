"""Users, login and bans: the pieces a host's login is made of.

A host that requires login (``Host(login_required=True)``) checks each client with
SCRAM-SHA-256 (RFC 5802, RFC 7677): the client proves it knows the password without sending it,
and the host stores only a :class:`Verifier` per user, never the password.

Most programs need nothing from here: ``host.add_user()``, ``host.save()`` and friends cover
the common case. This module is for the rest:

- :class:`Accounts` is the host's store of users, bans and login history. Make one to change
  the throttling policy, or to share one store between hosts:
  ``Host(login_required=True, accounts=Accounts(max_failures=3, ban_duration=3600))``.
- :class:`Verifier` and :func:`make_verifier` for users kept elsewhere: store
  ``make_verifier(password).to_string()`` (the format PostgreSQL uses for SCRAM passwords), and
  give the host an :data:`Authenticator` that looks it up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeAlias

from .accounts.bans import LoginAttempt, address_bucket
from .accounts.store import Accounts
from .accounts.verifiers import (
    DEFAULT_ITERATIONS,
    MAX_NAME_BYTES,
    MAX_PASSWORD_BYTES,
    Verifier,
    make_verifier,
    validate_name,
    validate_password,
)

__all__ = (
    "DEFAULT_ITERATIONS",
    "MAX_NAME_BYTES",
    "MAX_PASSWORD_BYTES",
    "Accounts",
    "Authenticator",
    "LoginAttempt",
    "Verifier",
    "address_bucket",
    "make_verifier",
    "validate_name",
    "validate_password",
)

Authenticator: TypeAlias = Callable[[str], "Verifier | Awaitable[Verifier | None] | None"]
"""Looks a user up by name for a host: returns the user's :class:`Verifier`, or ``None`` if
there is no such user (the login then fails exactly like a wrong password).

A plain function runs in a worker thread, so it may block on a database; an ``async def`` runs
in the event loop. It is called only with valid user names (1 to 64 characters of
``A-Z a-z 0-9 . _ -``). The host still applies its bans and delays from its :class:`Accounts`.
"""
