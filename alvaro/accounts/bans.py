"""Failed-login throttling: per-address bans, per-name delays, and the login history.

:class:`LoginThrottle` is the part of :class:`~alvaro.accounts.store.Accounts` that a host asks,
for each connection and each login, whether an address is banned (:meth:`~LoginThrottle.is_banned`)
and how long a user name must wait (:meth:`~LoginThrottle.account_delay`), and that it tells each
outcome (:meth:`~LoginThrottle.record_failure`, :meth:`~LoginThrottle.record_success`).
"""

from __future__ import annotations

import ipaddress
import logging
import math
import threading
import warnings
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = ("LoginAttempt", "LoginThrottle", "ThrottlePolicy", "address_bucket")

logger = logging.getLogger("alvaro.accounts")

# Attacker-chosen names are kept in the history and the per-account counters: cut them so that a
# long name cannot make either use more memory than a valid one (all valid names fit).
_RECORDED_NAME_CHARS = 128


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


def normalize_address(address: str) -> str:
    """``address`` as the history keeps it: an IPv4-mapped IPv6 address as IPv4, no zone."""
    ip = _parse_ip(address)
    return address if ip is None else str(ip)


def recorded_name(username: str) -> str:
    """``username`` as the history and the per-name counters keep it: cut short."""
    return username[:_RECORDED_NAME_CHARS]


def describe_seconds(seconds: float | None) -> str:
    """A ban's length for the log."""
    if seconds is None or math.isinf(seconds):
        return "an unlimited time"
    return f"{seconds:g} s"


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


class _NameState:
    """Consecutive failures of one user name."""

    __slots__ = ("count", "last")

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0


class ThrottlePolicy(NamedTuple):
    """The throttling arguments of ``Accounts(...)``, whose docstring describes them."""

    max_failures: int
    failure_window: float
    ban_duration: float
    delay_base: float
    delay_max: float
    forget_after: float
    max_attempts: int
    max_tracked: int


class LoginThrottle:
    """Address bans, per-name delays and the login history: the throttling part of
    :class:`~alvaro.accounts.store.Accounts`.

    Thread-safe: every method takes :attr:`_lock`, which the store's user part shares, so that
    a save sees users, bans and history at one moment.
    """

    def __init__(
        self, policy: ThrottlePolicy, clock: Callable[[], float], now: Callable[[], float]
    ) -> None:
        if policy.max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        for label in ("failure_window", "ban_duration", "delay_base", "delay_max", "forget_after"):
            value = getattr(policy, label)
            if not value >= 0 or math.isinf(value):
                raise ValueError(f"{label} must be a finite number >= 0, not {value!r}")
        if policy.max_attempts < 0 or policy.max_tracked < 1:
            raise ValueError("max_attempts must be >= 0 and max_tracked >= 1")
        self._max_failures = policy.max_failures
        self._failure_window = float(policy.failure_window)
        self._ban_duration = float(policy.ban_duration)
        self._delay_base = float(policy.delay_base)
        self._delay_max = float(policy.delay_max)
        self._forget_after = float(policy.forget_after)
        self._max_tracked = policy.max_tracked
        self._clock = clock
        self._now = now
        self._lock = threading.Lock()
        # bucket -> monotonic expiry (math.inf: until unban()).
        self._bans: dict[str, float] = {}
        # Both ordered least recently failed first: expired entries are dropped from the front.
        self._addresses: OrderedDict[str, _AddressState] = OrderedDict()
        self._names: OrderedDict[str, _NameState] = OrderedDict()
        self._attempts: deque[LoginAttempt] = deque(maxlen=policy.max_attempts)

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
        logger.warning("address %s banned for %s", bucket, describe_seconds(seconds))

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
            return self._names.pop(recorded_name(username), None) is not None

    @property
    def bans(self) -> dict[str, float]:
        """The banned addresses (buckets), each with the seconds left (``math.inf``: no end)."""
        with self._lock:
            now = self._clock()
            self._drop_expired_bans(now)
            return {bucket: expiry - now for bucket, expiry in self._bans.items()}

    @property
    def blacklist(self) -> dict[str, float]:
        """Deprecated name of :attr:`bans` (see ``DEPRECATED`` in ``alvaro._aliases``)."""
        warnings.warn("blacklist is deprecated, use bans", DeprecationWarning, stacklevel=2)
        return self.bans

    def account_delay(self, username: str) -> float:
        """Return how many seconds the next login attempt for ``username`` must wait.

        After ``n`` consecutive failures for a name, its next attempt may come ``delay_base *
        2 ** (n - 1)`` seconds (at most ``delay_max``) after the last failure; this returns what
        is left of that wait, 0.0 if none. Names that are not users are tracked the same way, so
        the delays do not reveal which names exist. A success resets the count.
        """
        key = recorded_name(username)
        with self._lock:
            now = self._clock()
            self._drop_stale_names(now)
            state = self._names.get(key)
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
        this returns ``True`` (once per ban: the host's ``ip_banned`` event).
        """
        bucket = address_bucket(address)
        name = recorded_name(username)
        banned = False
        with self._lock:
            now = self._clock()
            self._append_attempt(address, name, success=False)
            self._drop_stale_addresses(now)
            self._drop_stale_names(now)

            account = self._names.pop(name, None) or _NameState()
            account.count += 1
            account.last = now
            self._names[name] = account
            self._trim(self._names)

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
                describe_seconds(self._ban_duration),
                self._max_failures,
            )
        return banned

    def record_success(self, address: str, username: str) -> None:
        """Record a successful login: the user name's delay is reset, the history gets it.

        The address's failure count is left as it is: otherwise a peer that owns one account
        could wipe its count between guesses at other accounts.
        """
        name = recorded_name(username)
        with self._lock:
            self._append_attempt(address, name, success=True)
            self._names.pop(name, None)

    def _append_attempt(self, address: str, name: str, *, success: bool) -> None:
        attempt = LoginAttempt(self._now(), normalize_address(address), name, success)
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

    def _drop_stale_names(self, now: float) -> None:
        while self._names:
            name, state = next(iter(self._names.items()))
            if state.last > now - self._forget_after:
                break
            del self._names[name]

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
        wanted_address = None if address is None else normalize_address(address)
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

    def _ban_ends(self) -> dict[str, float]:
        """The bans' wall-clock ends (``math.inf``: none), for a file; the caller holds the lock."""
        clock, wall = self._clock(), self._now()
        self._drop_expired_bans(clock)
        return {bucket: wall + (expiry - clock) for bucket, expiry in self._bans.items()}

    def _restore_throttle(
        self, bans: Mapping[str, float | None], attempts: Iterable[LoginAttempt]
    ) -> None:
        """Replace the bans (wall-clock ends, ``None``: none) and the history with those of a
        file, and forget the failure counts; the caller holds the lock."""
        clock, wall = self._clock(), self._now()
        self._bans = {}
        for bucket, end in bans.items():
            if end is None:
                self._bans[bucket] = math.inf
            elif end > wall:
                self._bans[bucket] = clock + (end - wall)
        self._attempts.clear()
        self._attempts.extend(attempts)
        self._addresses.clear()
        self._names.clear()
