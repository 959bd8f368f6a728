"""User accounts for SCRAM-SHA-256 login, failed-login throttling and the login history.

:class:`Accounts` is the host's store of users, bans and login attempts. It does no network I/O
and no SCRAM exchange of its own: the host runs the exchange with :mod:`scramp` and asks this
store for each user's verifier (:meth:`Accounts.auth_info`), whether an address is banned
(:meth:`Accounts.is_banned`) and how long an account must wait (:meth:`Accounts.account_delay`),
and reports each outcome (:meth:`Accounts.record_failure`, :meth:`Accounts.record_success`).

Only the SCRAM verifier of each password is stored (salt, StoredKey, ServerKey and iteration
count, RFC 5802 section 3), never the password or anything it can be decrypted back to. The only
file access is :meth:`Accounts.save` and :meth:`Accounts.load`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

# scramp ships no type information; the two calls made into it are wrapped in typed functions.
import scramp  # type: ignore[import-untyped]
import scramp.core  # type: ignore[import-untyped]
import scramp.utils  # type: ignore[import-untyped]

from .exceptions import AccountsFileError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = (
    "DEFAULT_ITERATIONS",
    "FILE_FORMAT",
    "FILE_VERSION",
    "MAX_NAME_BYTES",
    "MAX_PASSWORD_BYTES",
    "MECHANISM",
    "Accounts",
    "LoginAttempt",
    "Verifier",
    "address_bucket",
    "make_verifier",
    "validate_name",
    "validate_password",
)

logger = logging.getLogger("alvaro.accounts")

MECHANISM = "SCRAM-SHA-256"
FILE_FORMAT = "alvaro-accounts"
FILE_VERSION = 1

MAX_NAME_BYTES = 64
MAX_PASSWORD_BYTES = 1024

# The SCRAM iteration count is the PBKDF2-HMAC-SHA256 work factor of the stored verifier. RFC 7677
# asks for at least 4096 (scramp's default and its minimum), but that is what an attacker who
# steals the store pays per guess, and OWASP's Password Storage Cheat Sheet asks for at least
# 600,000 iterations of PBKDF2-HMAC-SHA256. With SCRAM the host derives only when a user is added;
# the per-login cost (0.15-0.35 s on a small machine) falls on the client, so a flood of logins
# costs the host no key derivation at all. Hence the OWASP figure as the default.
DEFAULT_ITERATIONS = 600_000
_MIN_ITERATIONS = 4096  # scramp refuses fewer (RFC 7677's minimum)
_MAX_ITERATIONS = 10_000_000  # and more: an iteration count is also a denial-of-service knob

# The longest salt accepted: it travels, with both nonces, in the 4096-byte AUTH_CHALLENGE frame
# (docs/protocol.md, section 9.8). scramp and PostgreSQL make 16 to 32 bytes.
_MAX_SALT_BYTES = 1024
# The latest time a saved file may hold (the end of the year 9999, datetime's last year), so
# that every LoginAttempt.time can be shown as a date. Later bans are saved as "until removed".
_MAX_TIME = 253_402_300_799.0

_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_SALT_BYTES = 32  # what scramp makes (secrets.token_bytes()); fake salts must look the same
_KEY_BYTES = 32  # SHA-256
_MAX_SHAPES = 16  # distinct (iterations, salt length) pairs learnt from an authenticator
_SECRET_BYTES = 32
# Attacker-chosen names are kept in the history and the per-account counters: cut them so that a
# long name cannot make either use more memory than a valid one (all valid names fit).
_RECORDED_NAME_CHARS = 128


class Verifier(NamedTuple):
    """What a host stores to check one user's password: the SCRAM-SHA-256 verifier.

    Salt, StoredKey, ServerKey and iteration count (RFC 5802, section 3), in the order scramp's
    ``auth_fn`` returns them. Neither the password nor anything that can be turned back into it
    is here; finding the password from a verifier takes a dictionary attack at ``iterations``
    PBKDF2 rounds per guess.
    """

    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    def to_string(self) -> str:
        """The verifier in RFC 5803's text form, as PostgreSQL stores SCRAM passwords:
        ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64)."""
        return (
            f"{MECHANISM}${self.iterations}:{_b64(self.salt)}"
            f"${_b64(self.stored_key)}:{_b64(self.server_key)}"
        )

    @classmethod
    def from_string(cls, text: str) -> Verifier:
        """Read a verifier written by :meth:`to_string` (or PostgreSQL's ``rolpassword``).

        Raises:
            ValueError: ``text`` is not a SCRAM-SHA-256 verifier.
        """
        try:
            mechanism, rest = text.split("$", 1)
            head, keys = rest.split("$", 1)
            count, salt = head.split(":", 1)
            stored_key, server_key = keys.split(":", 1)
            verifier = cls(
                _unb64(salt), _unb64(stored_key), _unb64(server_key), _check_iterations(int(count))
            )
        except (ValueError, TypeError, binascii.Error):
            verifier = None
            mechanism = ""
        if (
            verifier is None
            or mechanism != MECHANISM
            or not 12 <= len(verifier.salt) <= _MAX_SALT_BYTES
            or len(verifier.stored_key) != _KEY_BYTES
            or len(verifier.server_key) != _KEY_BYTES
        ):
            raise ValueError("not a SCRAM-SHA-256 verifier (SCRAM-SHA-256$i:salt$stored:server)")
        return verifier


class LoginAttempt(NamedTuple):
    """One login attempt, as kept in the history."""

    time: float
    """Wall-clock time (seconds since the epoch, as :func:`time.time`)."""
    address: str
    """The peer's address, normalized (an IPv4-mapped IPv6 address is written as IPv4)."""
    username: str
    """The name the peer gave (cut to 128 characters), whether or not such a user exists."""
    success: bool


class _AddressState:
    """Failure times of one address bucket within the observation window."""

    __slots__ = ("failures",)

    def __init__(self) -> None:
        self.failures: deque[float] = deque()


class _AccountState:
    """Consecutive failures of one user name."""

    __slots__ = ("count", "last")

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0


def validate_name(name: object) -> str:
    """Return ``name`` if it is a valid user name, else raise :class:`ValueError`.

    A valid name is 1 to 64 characters from ``A-Z a-z 0-9 . _ -``. User names never become file
    paths, but the narrow alphabet also keeps them safe in logs and SCRAM messages (which escape
    ``,`` and ``=``).
    """
    if not isinstance(name, str):
        raise TypeError(f"a user name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("a user name must not be empty")
    if len(name) > MAX_NAME_BYTES:
        raise ValueError(f"a user name must be at most {MAX_NAME_BYTES} bytes long")
    if not _NAME_CHARS.issuperset(name):
        raise ValueError(
            "a user name may contain only the letters A-Z and a-z, digits, '.', '_' and '-'"
        )
    return name


def validate_password(password: object) -> str:
    """Return ``password`` if it can be a password, else raise :class:`ValueError`.

    A password is 1 to 1024 bytes of UTF-8 and must pass SASLprep (RFC 4013), which SCRAM applies
    on both sides: it maps compatibility forms together (NFKC), so the NFC and NFD spellings of
    the same text are the same password, and it forbids control characters and the like.
    """
    if not isinstance(password, str):
        raise TypeError(f"a password must be a str, not {type(password).__name__}")
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("a password must be valid Unicode text (no lone surrogates)") from None
    if size == 0:
        raise ValueError("a password must not be empty")
    if size > MAX_PASSWORD_BYTES:
        raise ValueError(f"a password must be at most {MAX_PASSWORD_BYTES} bytes long (UTF-8)")
    try:
        prepared = _saslprep(password)
    except scramp.ScramException as exc:
        raise ValueError(f"a password cannot contain these characters: {exc}") from None
    if not prepared:
        raise ValueError("a password must not consist only of characters SASLprep removes")
    return password


def address_bucket(address: str) -> str:
    """Return the key under which failures from ``address`` are counted and bans are kept.

    An IPv4 address is its own bucket; an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) is the
    IPv4 address; any other IPv6 address stands for its /64 network, because one subscriber
    usually gets a whole /64 and could otherwise rotate through it. Anything that is not an IP
    address is used as it is.
    """
    ip = _parse_ip(address)
    if ip is None:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((int(ip), 64), strict=False)
        return str(network)
    return str(ip)


def _parse_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        # Drop a zone ("%eth0"): the same host on another interface is the same peer.
        return ipaddress.IPv6Address(int(ip))
    return ip


def _normalize_address(address: str) -> str:
    ip = _parse_ip(address)
    return address if ip is None else str(ip)


def _recorded_name(username: str) -> str:
    return username[:_RECORDED_NAME_CHARS]


def _saslprep(password: str) -> str:
    # scramp 1.5 (Python 3.11+) has it in scramp.utils; 1.4, which pip picks on Python 3.10,
    # in scramp.core. Both prepare passwords the same way (RFC 4013).
    prepare = getattr(scramp.utils, "saslprep", None) or scramp.core.saslprep
    prepared = prepare(password)
    assert isinstance(prepared, str)
    return prepared


def _derive(password: str, iterations: int) -> Verifier:
    # Looked up at each call (not bound at import), so that tests can count derivations.
    mechanism = scramp.ScramMechanism(MECHANISM)
    salt, stored_key, server_key, count = mechanism.make_auth_info(
        password, iteration_count=iterations
    )
    return Verifier(bytes(salt), bytes(stored_key), bytes(server_key), int(count))


def _check_iterations(iterations: object) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        raise TypeError("iterations must be an int")
    if not _MIN_ITERATIONS <= iterations <= _MAX_ITERATIONS:
        raise ValueError(
            f"iterations must be between {_MIN_ITERATIONS} and {_MAX_ITERATIONS}, not {iterations}"
        )
    return iterations


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def make_verifier(password: str, iterations: int = DEFAULT_ITERATIONS) -> Verifier:
    """Derive the SCRAM-SHA-256 verifier of ``password`` with a new random salt.

    For hosts whose users live elsewhere (see ``Host(authenticator=...)``): store
    ``make_verifier(password).to_string()`` instead of the password. Takes ``iterations`` rounds
    of PBKDF2-HMAC-SHA256 (about 0.2 s at the default 600,000): call it from a worker thread in
    async code.

    Raises:
        ValueError: the password is empty, longer than 1024 UTF-8 bytes, or has characters
            SASLprep (RFC 4013) forbids; or ``iterations`` is out of range.
    """
    return _derive(validate_password(password), _check_iterations(iterations))


class Accounts:
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
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        for label, value in (
            ("failure_window", failure_window),
            ("ban_duration", ban_duration),
            ("delay_base", delay_base),
            ("delay_max", delay_max),
            ("forget_after", forget_after),
        ):
            if not value >= 0 or math.isinf(value):
                raise ValueError(f"{label} must be a finite number >= 0, not {value!r}")
        if max_attempts < 0 or max_tracked < 1:
            raise ValueError("max_attempts must be >= 0 and max_tracked >= 1")
        self._iterations = _check_iterations(iterations)
        self._max_failures = max_failures
        self._failure_window = float(failure_window)
        self._ban_duration = float(ban_duration)
        self._delay_base = float(delay_base)
        self._delay_max = float(delay_max)
        self._forget_after = float(forget_after)
        self._max_tracked = max_tracked
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        self._users: dict[str, Verifier] = {}
        # How many users' verifiers have each (iterations, salt length): made-up verifiers
        # copy these shapes. Those of verifiers from an authenticator are kept apart.
        self._shapes: dict[tuple[int, int], int] = {}
        self._external_shapes: dict[tuple[int, int], int] = {}
        # Keys the fake verifiers of unknown users (see auth_info); saved with the store so that
        # a restart does not change them, which would tell an observer that they are fake.
        self._secret = secrets.token_bytes(_SECRET_BYTES)
        # bucket -> monotonic expiry (math.inf: until unban()).
        self._bans: dict[str, float] = {}
        # Both ordered least recently failed first: expired entries are dropped from the front.
        self._addresses: OrderedDict[str, _AddressState] = OrderedDict()
        self._accounts: OrderedDict[str, _AccountState] = OrderedDict()
        self._attempts: deque[LoginAttempt] = deque(maxlen=max_attempts)

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
        info = _derive(password, self._iterations)
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
        return self._fake_info(secret, shapes, name)

    def fake_verifier(self, name: str) -> Verifier:
        """The made-up verifier :meth:`auth_info` gives a name that is not a user; for
        authenticators, so that a name unknown to them looks like any other."""
        with self._lock:
            secret, shapes = self._secret, self._fake_shapes()
        return self._fake_info(secret, shapes, name)

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
            return [((self._iterations, _SALT_BYTES), 1)]
        return sorted(shapes.items())

    def _fake_info(
        self, secret: bytes, shapes: list[tuple[tuple[int, int], int]], name: str
    ) -> Verifier:
        key = name.encode("utf-8", "surrogatepass")

        def part(label: bytes) -> bytes:
            # Length-prefixed so that no (label, name) pair can collide with another.
            message = len(label).to_bytes(1, "big") + label + key
            return hmac.new(secret, message, hashlib.sha256).digest()

        # The iteration count and salt length a real user's challenge would show: one of the
        # real verifiers' shapes, picked per name in proportion to how common it is, so that
        # a challenge's shape does not tell a made-up user from a real one (a store loaded
        # with older verifiers, or an authenticator's verifiers made elsewhere).
        pick = int.from_bytes(part(b"shape")[:8], "big") % sum(count for _, count in shapes)
        chosen = shapes[-1][0]
        for shape, count in shapes:
            if pick < count:
                chosen = shape
                break
            pick -= count
        iterations, salt_length = chosen
        salt = b"".join(part(b"salt" + bytes((block,))) for block in range(salt_length // 32 + 1))
        # The keys are random-looking values no password leads to: finding a password whose
        # verifier matches them is as hard as inverting SHA-256.
        return Verifier(
            salt=salt[:salt_length],
            stored_key=part(b"stored_key")[:_KEY_BYTES],
            server_key=part(b"server_key")[:_KEY_BYTES],
            iterations=iterations,
        )

    # ---------------------------------------------------------------------- bans and delays

    def is_banned(self, address: str) -> bool:
        """Return whether ``address`` (or its IPv6 /64) is banned now."""
        if not self._bans:
            # Every accepted connection asks: skip parsing the address when nothing is banned.
            return False
        bucket = address_bucket(address)
        with self._lock:
            return self._ban_left(bucket, self._clock()) > 0

    def ban(self, address: str, seconds: float | None = None) -> None:
        """Ban ``address`` (an IPv6 address: its /64) for ``seconds``, or until :meth:`unban`.

        A ban that already lasts longer is kept as it is.
        """
        if seconds is not None and not seconds > 0:
            raise ValueError(f"seconds must be > 0 or None, not {seconds!r}")
        bucket = address_bucket(address)
        with self._lock:
            now = self._clock()
            expiry = math.inf if seconds is None else now + float(seconds)
            if self._ban_left(bucket, now) < expiry - now:
                self._bans[bucket] = expiry
        logger.warning("address %s banned for %s", bucket, _describe_seconds(seconds))

    def unban(self, address: str) -> bool:
        """Lift the ban on ``address`` (its IPv6 /64), and forget its failures.

        Returns whether it was banned.
        """
        bucket = address_bucket(address)
        with self._lock:
            was_banned = self._ban_left(bucket, self._clock()) > 0
            self._bans.pop(bucket, None)
            self._addresses.pop(bucket, None)
        if was_banned:
            logger.info("ban on address %s lifted", bucket)
        return was_banned

    def clear_delay(self, username: str) -> bool:
        """Forget the failed logins of ``username``, so that its next login need not wait.

        For an administrator whose user is kept waiting by someone else's guesses (the
        per-name delay is the price of slowing guessing down). Returns whether there was
        anything to forget.
        """
        with self._lock:
            return self._accounts.pop(_recorded_name(username), None) is not None

    @property
    def blacklist(self) -> dict[str, float]:
        """The banned addresses (buckets), each with the seconds left (``math.inf``: no end)."""
        with self._lock:
            now = self._clock()
            self._drop_expired_bans(now)
            return {bucket: expiry - now for bucket, expiry in self._bans.items()}

    def account_delay(self, username: str) -> float:
        """Return how many seconds the next login attempt for ``username`` must wait.

        After ``n`` consecutive failures for a name, its next attempt may come ``delay_base *
        2 ** (n - 1)`` seconds (at most ``delay_max``) after the last failure; this returns what
        is left of that wait, 0.0 if none. Names that are not users are tracked the same way, so
        the delays do not reveal which names exist. A success resets the count.
        """
        key = _recorded_name(username)
        with self._lock:
            now = self._clock()
            self._drop_stale_accounts(now)
            state = self._accounts.get(key)
            if state is None or state.count == 0:
                return 0.0
            return max(0.0, state.last + self._delay_for(state.count) - now)

    def _delay_for(self, count: int) -> float:
        # 2 ** 60 is far past any cap; the min() keeps the power from overflowing a float.
        return min(self._delay_max, self._delay_base * 2.0 ** min(count - 1, 60))

    def record_failure(self, address: str, username: str) -> bool:
        """Record a failed login of ``username`` from ``address``; return whether it got banned.

        The failure is counted for the address (bucket) and for the user name, whether or not
        the user exists, and goes into the history. When the address reaches ``max_failures``
        failures within ``failure_window`` seconds it is banned for ``ban_duration`` seconds and
        this returns ``True`` (once per ban: the host's ``blacklisted`` event).
        """
        bucket = address_bucket(address)
        name = _recorded_name(username)
        banned = False
        with self._lock:
            now = self._clock()
            self._append_attempt(address, name, success=False)
            self._drop_stale_addresses(now)
            self._drop_stale_accounts(now)

            account = self._accounts.pop(name, None) or _AccountState()
            account.count += 1
            account.last = now
            self._accounts[name] = account
            self._trim(self._accounts)

            if self._ban_left(bucket, now) > 0:
                # Already banned (a login that was under way when the ban began): the failure
                # is in the history, but the count starts afresh after the ban.
                return False
            state = self._addresses.pop(bucket, None) or _AddressState()
            state.failures.append(now)
            while state.failures and state.failures[0] <= now - self._failure_window:
                state.failures.popleft()
            if len(state.failures) >= self._max_failures:
                self._bans[bucket] = now + self._ban_duration
                banned = True
            else:
                self._addresses[bucket] = state
                self._trim(self._addresses)
        if banned:
            logger.warning(
                "address %s banned for %s after %d failed logins",
                bucket,
                _describe_seconds(self._ban_duration),
                self._max_failures,
            )
        return banned

    def record_success(self, address: str, username: str) -> None:
        """Record a successful login: the user name's delay is reset, the history gets it.

        The address's failure count is left as it is: otherwise a peer that owns one account
        could wipe its count between guesses at other accounts.
        """
        name = _recorded_name(username)
        with self._lock:
            self._append_attempt(address, name, success=True)
            self._accounts.pop(name, None)

    def _append_attempt(self, address: str, name: str, *, success: bool) -> None:
        attempt = LoginAttempt(self._now(), _normalize_address(address), name, success)
        self._attempts.append(attempt)

    def _ban_left(self, bucket: str, now: float) -> float:
        expiry = self._bans.get(bucket)
        if expiry is None:
            return 0.0
        if expiry <= now:
            del self._bans[bucket]
            return 0.0
        return expiry - now

    def _drop_expired_bans(self, now: float) -> None:
        for bucket in [b for b, expiry in self._bans.items() if expiry <= now]:
            del self._bans[bucket]

    def _drop_stale_addresses(self, now: float) -> None:
        # Least recently failed first: stop at the first bucket with a failure in the window.
        while self._addresses:
            bucket, state = next(iter(self._addresses.items()))
            if state.failures and state.failures[-1] > now - self._failure_window:
                break
            del self._addresses[bucket]

    def _drop_stale_accounts(self, now: float) -> None:
        while self._accounts:
            name, state = next(iter(self._accounts.items()))
            if state.last > now - self._forget_after:
                break
            del self._accounts[name]

    def _trim(self, table: OrderedDict[str, Any]) -> None:
        while len(table) > self._max_tracked:
            table.popitem(last=False)

    # ---------------------------------------------------------------------------- history

    def login_attempts(
        self,
        username: str | None = None,
        address: str | None = None,
        start: float | None = None,
        end: float | None = None,
    ) -> list[LoginAttempt]:
        """Return the recorded login attempts that match every given criterion, oldest first.

        Args:
            username: only attempts with this user name.
            address: only attempts from this address (compared in normalized form, so
                ``::ffff:10.0.0.1`` matches ``10.0.0.1``).
            start: only attempts at or after this wall-clock time (seconds since the epoch).
            end: only attempts at or before this wall-clock time.
        """
        wanted_address = None if address is None else _normalize_address(address)
        with self._lock:
            attempts = list(self._attempts)
        return [
            attempt
            for attempt in attempts
            if (username is None or attempt.username == username)
            and (wanted_address is None or attempt.address == wanted_address)
            and (start is None or attempt.time >= start)
            and (end is None or attempt.time <= end)
        ]

    # ----------------------------------------------------------------------- save and load

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the users, the bans and the history to ``path``, atomically, owner-only.

        The data goes to a temporary file in the same directory (mode 0600), which is flushed
        to disk and then renamed over ``path``: a crash at any moment leaves either the old file
        or the new one, never a mix or a truncated file. Bans are written with their wall-clock
        expiry. The per-address failure counts and per-account delays are not saved.
        """
        target = Path(path)
        data = json.dumps(self._snapshot(), indent=1, allow_nan=False).encode("utf-8")
        _write_atomically(target, data)
        logger.debug("accounts saved to %s", target)

    def _snapshot(self) -> dict[str, Any]:
        with self._lock:
            clock = self._clock()
            wall = self._now()
            self._drop_expired_bans(clock)
            users = {
                name: {
                    "mechanism": MECHANISM,
                    "salt": _b64(info.salt),
                    "stored_key": _b64(info.stored_key),
                    "server_key": _b64(info.server_key),
                    "iterations": info.iterations,
                }
                for name, info in sorted(self._users.items())
            }
            blacklist = {
                bucket: _saved_end(wall + (expiry - clock)) for bucket, expiry in self._bans.items()
            }
            attempts = [
                {"time": a.time, "address": a.address, "username": a.username, "success": a.success}
                for a in self._attempts
            ]
            secret = self._secret
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "secret": _b64(secret),
            "users": users,
            "blacklist": blacklist,
            "attempts": attempts,
        }

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
        source = Path(path)
        raw = source.read_bytes()
        parsed = _parse(source, raw)
        with self._lock:
            clock = self._clock()
            wall = self._now()
            self._secret = parsed.secret
            self._users = dict(parsed.users)
            self._shapes = {}
            for verifier in self._users.values():
                shape = (verifier.iterations, len(verifier.salt))
                self._shapes[shape] = self._shapes.get(shape, 0) + 1
            self._bans = {}
            for bucket, end in parsed.bans.items():
                if end is None:
                    self._bans[bucket] = math.inf
                elif end > wall:
                    self._bans[bucket] = clock + (end - wall)
            self._attempts.clear()
            self._attempts.extend(parsed.attempts)
            self._addresses.clear()
            self._accounts.clear()
        logger.debug("accounts loaded from %s", source)


def _saved_end(end: float) -> float | None:
    """A ban's wall-clock end as saved: ``None`` (until removed) for no end, or one after any
    time a file may hold (a ban of ten thousand years is one until removed)."""
    return None if end > _MAX_TIME else end


def _describe_seconds(seconds: float | None) -> str:
    if seconds is None or math.isinf(seconds):
        return "an unlimited time"
    return f"{seconds:g} s"


# ------------------------------------------------------------------------------ file format


class _Parsed(NamedTuple):
    secret: bytes
    users: dict[str, Verifier]
    bans: dict[str, float | None]
    attempts: list[LoginAttempt]


class _FormatError(Exception):
    """A problem found while parsing; turned into a ValueError that names the file."""


def _parse(path: Path, raw: bytes) -> _Parsed:
    try:
        return _parse_document(raw)
    except _FormatError as exc:
        raise AccountsFileError(f"{path} is not a valid alvaro accounts file: {exc}") from None


def _parse_document(raw: bytes) -> _Parsed:
    try:
        document = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _FormatError(f"it is not JSON (corrupt or truncated?): {exc}") from None
    except ValueError:  # an integer of more digits than int() reads (sys.get_int_max_str_digits)
        raise _FormatError("it holds an integer too long to be any of its values") from None
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
        raise _FormatError(f'it does not say "format": "{FILE_FORMAT}"')
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _FormatError("its version is missing or not an integer")
    if FILE_VERSION < version < 2**31:
        raise _FormatError(
            f"it has version {version}, written by a newer alvaro; this one reads version "
            f"{FILE_VERSION}"
        )
    if version != FILE_VERSION:
        raise _FormatError(f"it has an unknown version {_shown(version)}")
    secret = _decode_b64(document.get("secret"), "secret", _SECRET_BYTES)
    return _Parsed(
        secret=secret,
        users=_parse_users(_expect(document, "users", dict)),
        bans=_parse_bans(_expect(document, "blacklist", dict)),
        attempts=_parse_attempts(_expect(document, "attempts", list)),
    )


def _shown(value: object) -> str:
    """``value`` for an error message, cut short: a hostile file may hold a 4000-digit number."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _time(value: object, what: str) -> float:
    """A time saved in the file (seconds since the epoch), checked for type and range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _FormatError(f"{what} is not a number: {_shown(value)}")
    # Compared before float(): an integer such as 10**400 is too large for a float.
    if not 0 <= value <= _MAX_TIME:  # NaN fails this too
        raise _FormatError(
            f"{what} is not a time from 1970 to 9999 (seconds since the epoch): {_shown(value)}"
        )
    return float(value)


def _refuse_constant(name: str) -> float:
    raise _FormatError(f"it contains {name}, which is not JSON")


def _expect(document: dict[str, Any], key: str, kind: type) -> Any:
    value = document.get(key)
    if not isinstance(value, kind):
        raise _FormatError(
            f"{key!r} is missing or not a JSON {'object' if kind is dict else 'list'}"
        )
    return value


def _decode_b64(value: object, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise _FormatError(f"{what} is not a base64 string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _FormatError(f"{what} is not valid base64") from None
    if size is not None and len(data) != size:
        raise _FormatError(f"{what} has {len(data)} bytes instead of {size}")
    return data


def _parse_users(users: dict[str, Any]) -> dict[str, Verifier]:
    result: dict[str, Verifier] = {}
    for name, record in users.items():
        try:
            validate_name(name)
        except ValueError as exc:
            raise _FormatError(f"user name {name!r} is not valid: {exc}") from None
        if not isinstance(record, dict):
            raise _FormatError(f"the record of user {name!r} is not a JSON object")
        if record.get("mechanism") != MECHANISM:
            raise _FormatError(f"user {name!r} has a mechanism other than {MECHANISM}")
        iterations = record.get("iterations")
        if (
            isinstance(iterations, bool)
            or not isinstance(iterations, int)
            or not _MIN_ITERATIONS <= iterations <= _MAX_ITERATIONS
        ):
            raise _FormatError(
                f"user {name!r}: iterations must be an integer from {_MIN_ITERATIONS} to "
                f"{_MAX_ITERATIONS}, not {_shown(iterations)}"
            )
        salt = _decode_b64(record.get("salt"), f"the salt of user {name!r}")
        # RFC 5802 sets no minimum; scramp refuses shorter salts.
        if not 12 <= len(salt) <= _MAX_SALT_BYTES:
            raise _FormatError(
                f"the salt of user {name!r} has {len(salt)} bytes, not 12 to {_MAX_SALT_BYTES}"
            )
        result[name] = Verifier(
            salt=salt,
            stored_key=_decode_b64(
                record.get("stored_key"), f"the stored_key of user {name!r}", _KEY_BYTES
            ),
            server_key=_decode_b64(
                record.get("server_key"), f"the server_key of user {name!r}", _KEY_BYTES
            ),
            iterations=iterations,
        )
    return result


def _parse_bans(bans: dict[str, Any]) -> dict[str, float | None]:
    result: dict[str, float | None] = {}
    for bucket, end in bans.items():
        result[bucket] = None if end is None else _time(end, f"the end of the ban of {bucket!r}")
    return result


def _parse_attempts(attempts: Iterable[Any]) -> list[LoginAttempt]:
    result: list[LoginAttempt] = []
    for index, item in enumerate(attempts):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("address"), str)
            or not isinstance(item.get("username"), str)
            or not isinstance(item.get("success"), bool)
        ):
            raise _FormatError(f"login attempt {index} is not a valid record")
        when = _time(item.get("time"), f"the time of login attempt {index}")
        result.append(LoginAttempt(when, item["address"], item["username"], item["success"]))
    return result


def _write_atomically(target: Path, data: bytes) -> None:
    directory = target.parent
    temp = directory / f".{target.name}.{secrets.token_hex(8)}.tmp"
    # O_EXCL: never write through a file (or link) someone else put there. Mode 0600 from the
    # start, so the data is never readable by others, not even for a moment.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        try:
            if hasattr(os, "fchmod"):  # the umask cannot widen 0600, but may narrow it: reset
                os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            # The data must be on disk before the rename makes it the file: otherwise a power
            # failure could leave the new name pointing at an empty file.
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        try:
            temp.unlink()
        except OSError:
            pass
        raise
    _fsync_directory(directory)
    _remove_stale_temp_files(target)


# A temporary file older than this was left by a save that was killed: no save takes so long.
_STALE_TEMP_AGE = 600.0


def _remove_stale_temp_files(target: Path) -> None:
    """Delete what saves killed mid-write left beside ``target``: verifiers in files nobody
    will read. Only this module's own names, and only old ones, in case another process is
    saving to the same file right now."""
    prefix, now = f".{target.name}.", time.time()
    try:
        candidates = [
            entry
            for entry in target.parent.iterdir()
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp")
        ]
    except OSError:
        return
    for entry in candidates:
        try:
            if now - entry.lstat().st_mtime > _STALE_TEMP_AGE:
                entry.unlink()
        except OSError:
            pass  # gone already, or not ours to delete


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable. Directories cannot be opened this way on Windows, where
    # os.replace is durable enough for this purpose.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
