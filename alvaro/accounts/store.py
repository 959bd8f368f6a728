"""The accounts store: the users' SCRAM verifiers, made-up verifiers for unknown names, and the
throttling and history of :mod:`.bans`, saved to and loaded from a file of :mod:`.file`.

:class:`Accounts` is the host's store of users, bans and login attempts. It does no network I/O
and no SCRAM exchange of its own: the host runs the exchange with :mod:`scramp` and asks this
store for each user's verifier (:meth:`Accounts.auth_info`), whether an address is banned
(:meth:`Accounts.is_banned`) and how long an account must wait (:meth:`Accounts.account_delay`),
and reports each outcome (:meth:`Accounts.record_failure`, :meth:`Accounts.record_success`).
The only file access is :meth:`Accounts.save` and :meth:`Accounts.load`.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from . import file, verifiers
from .bans import LoginThrottle, ThrottlePolicy
from .verifiers import (
    DEFAULT_ITERATIONS,
    SALT_BYTES,
    Verifier,
    check_iterations,
    fake_verifier,
    validate_name,
    validate_password,
)

if TYPE_CHECKING:
    import os
    from collections.abc import Callable

__all__ = ("Accounts",)

logger = logging.getLogger("alvaro.accounts")

_MAX_SHAPES = 16  # distinct (iterations, salt length) pairs learnt from an authenticator


class Accounts(LoginThrottle):
    """Users, address bans, per-account delays and the login history of one host.

    Thread-safe: every method may be called from any thread. Key derivation (:meth:`add_user`)
    runs outside the lock, so a slow derivation does not hold up logins.

    Args:
        iterations: SCRAM iteration count for new passwords (4096 to 10,000,000). The default,
            600,000, follows OWASP's figure for PBKDF2-HMAC-SHA256; the client pays it at each
            login, the host only when a user is added.
        max_failures: failed logins from one address (bucket, see :func:`address_bucket`) within
            ``failure_window`` seconds that get the address banned.
        failure_window: the observation window, in seconds.
        ban_duration: how long an automatic ban lasts, in seconds.
        delay_base: the delay after the first failure for a user name, in seconds; it doubles
            with each further consecutive failure.
        delay_max: the cap on that delay, in seconds.
        forget_after: a user name's failure count is forgotten after this many seconds without
            a failure (besides being reset by a success).
        max_attempts: how many login attempts the history keeps (the oldest go first).
        max_tracked: how many addresses and how many user names are tracked at most; the least
            recently failed are forgotten first, so that memory stays bounded under a flood.
        clock: a monotonic clock in seconds, for throttling and bans (tests pass a fake one).
        now: a wall clock in seconds since the epoch, for the history and the saved file.
    """

    def __init__(
        self,
        *,
        iterations: int = DEFAULT_ITERATIONS,
        max_failures: int = 5,
        failure_window: float = 30 * 60.0,
        ban_duration: float = 10 * 60.0,
        delay_base: float = 1.0,
        delay_max: float = 15 * 60.0,
        forget_after: float = 24 * 3600.0,
        max_attempts: int = 10_000,
        max_tracked: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], float] = time.time,
    ) -> None:
        policy = ThrottlePolicy(
            max_failures,
            failure_window,
            ban_duration,
            delay_base,
            delay_max,
            forget_after,
            max_attempts,
            max_tracked,
        )
        super().__init__(policy, clock, now)
        self._iterations = check_iterations(iterations)
        self._users: dict[str, Verifier] = {}
        # How many users' verifiers have each (iterations, salt length): made-up verifiers
        # copy these shapes. Those of verifiers from an authenticator are kept apart.
        self._shapes: dict[tuple[int, int], int] = {}
        self._external_shapes: dict[tuple[int, int], int] = {}
        # Keys the fake verifiers of unknown users (see auth_info); saved with the store so that
        # a restart does not change them, which would tell an observer that they are fake.
        self._secret = secrets.token_bytes(file.SECRET_BYTES)

    # ------------------------------------------------------------------------------- users

    @property
    def iterations(self) -> int:
        """The SCRAM iteration count given to new passwords (and to fake verifiers)."""
        return self._iterations

    @property
    def users(self) -> list[str]:
        """The user names, sorted."""
        with self._lock:
            return sorted(self._users)

    def has_user(self, name: str) -> bool:
        """Return whether a user called ``name`` exists."""
        with self._lock:
            return name in self._users

    def add_user(self, name: str, password: str, *, replace: bool = False) -> None:
        """Add a user, or with ``replace=True`` also set a new password for an existing one.

        The name and the password are checked before the (slow, on purpose) key derivation, and
        only the SCRAM verifier is kept.

        Raises:
            ValueError: the name or the password is not allowed (see :func:`validate_name` and
                :func:`validate_password`), or the user exists and ``replace`` is false.
        """
        validate_name(name)
        validate_password(password)
        if not replace and self.has_user(name):
            raise ValueError(f"user {name!r} exists already")
        info = verifiers.derive(password, self._iterations)
        with self._lock:
            # Checked again: another thread may have added the name during the derivation.
            if not replace and name in self._users:
                raise ValueError(f"user {name!r} exists already")
            self._forget_shape(self._users.get(name))
            self._users[name] = info
            shape = (info.iterations, len(info.salt))
            self._shapes[shape] = self._shapes.get(shape, 0) + 1
        logger.info("user %r %s", name, "added" if not replace else "added or updated")

    def remove_user(self, name: str) -> None:
        """Remove a user.

        Raises:
            KeyError: there is no such user.
        """
        with self._lock:
            try:
                removed = self._users.pop(name)
            except KeyError:
                raise KeyError(f"no user {name!r}") from None
            self._forget_shape(removed)
        logger.info("user %r removed", name)

    def _forget_shape(self, verifier: Verifier | None) -> None:
        if verifier is not None:
            shape = (verifier.iterations, len(verifier.salt))
            left = self._shapes[shape] - 1
            if left:
                self._shapes[shape] = left
            else:
                del self._shapes[shape]

    def auth_info(self, name: str) -> Verifier:
        """Return the SCRAM verifier of user ``name``, or a fake one if there is no such user.

        The result can be returned as is from scramp's ``auth_fn``. For a name that is not a
        user (or not even a valid name) the verifier is made up, deterministically, from a
        secret of this store and the name: the same name always gets the same salt, with the
        iteration count and salt length of real users' verifiers, and no password matches it. A
        login with an unknown name therefore goes exactly like one with a wrong password - same
        messages, same work, same failure (RFC 5802 section 9; OWASP "generic error and equal
        work") - so the exchange does not reveal which names exist. Use :meth:`has_user` to
        tell them apart.
        """
        with self._lock:
            info = self._users.get(name)
            if info is not None:
                return info
            secret, shapes = self._secret, self._fake_shapes()
        return fake_verifier(secret, shapes, name)

    def fake_verifier(self, name: str) -> Verifier:
        """The made-up verifier :meth:`auth_info` gives a name that is not a user; for
        authenticators, so that a name unknown to them looks like any other."""
        with self._lock:
            secret, shapes = self._secret, self._fake_shapes()
        return fake_verifier(secret, shapes, name)

    def note_verifier(self, verifier: Verifier) -> None:
        """Learn the iteration count and salt length of a verifier kept elsewhere (the host
        calls this with what its authenticator returns), so that made-up verifiers look like
        such verifiers rather than like this store's own."""
        shape = (verifier.iterations, len(verifier.salt))
        with self._lock:
            if shape in self._external_shapes or len(self._external_shapes) < _MAX_SHAPES:
                self._external_shapes[shape] = self._external_shapes.get(shape, 0) + 1

    def _fake_shapes(self) -> list[tuple[tuple[int, int], int]]:
        """The (iterations, salt length) pairs real verifiers have, with their counts; the
        caller holds the lock."""
        shapes = self._external_shapes or self._shapes
        if not shapes:
            return [((self._iterations, SALT_BYTES), 1)]
        return sorted(shapes.items())

    # ----------------------------------------------------------------------- save and load

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the users, the bans and the history to ``path``, atomically, owner-only.

        The data goes to a temporary file in the same directory (mode 0600), which is flushed
        to disk and then renamed over ``path``: a crash at any moment leaves either the old file
        or the new one, never a mix or a truncated file. Bans are written with their wall-clock
        expiry. The per-address failure counts and per-account delays are not saved.
        """
        with self._lock:
            contents = file.Contents(
                secret=self._secret,
                users=dict(self._users),
                bans=self._ban_ends(),
                attempts=list(self._attempts),
            )
        file.write(path, contents)

    @classmethod
    def load(cls, path: str | os.PathLike[str], **options: Any) -> Accounts:
        """Read a store written by :meth:`save`; ``options`` are the constructor's arguments.

        Bans that have expired since the save are dropped; the rest keep their wall-clock end.

        Raises:
            FileNotFoundError: there is no file at ``path``.
            AccountsFileError: (a ``ValueError``) the file is not a valid accounts file:
                corrupt, truncated, another format, written by a newer version, or with a
                value of the wrong type or out of range (an iteration count, a salt's length,
                a time); the message names the file and the problem.
        """
        accounts = cls(**options)
        accounts.restore(path)
        return accounts

    def restore(self, path: str | os.PathLike[str]) -> None:
        """Replace this store's users, bans and history with those saved in ``path``.

        The file is read and checked completely before anything is replaced, so on an error
        this store is left as it was. Raises as :meth:`load` does.
        """
        contents = file.read(path)
        with self._lock:
            self._secret = contents.secret
            self._users = dict(contents.users)
            self._shapes = {}
            for verifier in self._users.values():
                shape = (verifier.iterations, len(verifier.salt))
                self._shapes[shape] = self._shapes.get(shape, 0) + 1
            self._restore_throttle(contents.bans, contents.attempts)
