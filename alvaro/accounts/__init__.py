"""The host's accounts: users, failed-login throttling, the login history, and their file.

The public names are in :mod:`alvaro.auth`, which imports them from here, where they are kept
by job:

- :mod:`.verifiers`: the SCRAM-SHA-256 verifier of a password (:class:`Verifier`,
  :func:`make_verifier`) and what a user name and a password may be.
- :mod:`.store`: :class:`Accounts`, the store of users (with made-up verifiers for unknown
  names), built on :mod:`.bans`.
- :mod:`.bans`: per-address bans and throttling, per-name delays, the login history.
- :mod:`.file`: the versioned file format, the checks of every value read, atomic saves.
- :mod:`.facade`: the accounts methods of ``alvaro.aio.Host`` and ``alvaro.sync.Host``.
"""

from __future__ import annotations

__all__ = ()
