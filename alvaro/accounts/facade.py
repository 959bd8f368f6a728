"""The accounts methods of a host, written once for ``alvaro.aio.Host`` and ``alvaro.sync.Host``.

Both hosts inherit :class:`AccountsFacade` (through ``alvaro._aliases.HostAliases``, whose seed
names call these methods). Each method works on the host's :attr:`~AccountsFacade.accounts`,
which is thread-safe, so each is safe from any thread and neither host adds anything to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._types import StrPath
    from .bans import LoginAttempt
    from .store import Accounts

__all__ = ("AccountsFacade",)


class AccountsFacade:
    """Users, bans and the login history of a host, kept in :attr:`accounts`."""

    __slots__ = ()

    accounts: Accounts
    """The store of users, bans and login history (thread-safe)."""

    def add_user(self, name: str, password: str, *, replace: bool = False) -> None:
        """Add a user who may log in, or with ``replace=True`` also change a user's password.

        Only the password's SCRAM verifier is kept. Deriving it takes about 0.2 s of CPU (the
        iteration count of :attr:`accounts`) in the calling thread: call it before the host
        starts, or from async code use ``alvaro.aio.Host.add_user_async``. Safe from any
        thread.

        Raises:
            ValueError: the name is not 1 to 64 characters of ``A-Z a-z 0-9 . _ -``, the
                password is empty, longer than 1024 UTF-8 bytes or has characters SASLprep
                forbids, or the user exists and ``replace`` is false. Checked before deriving.
        """
        self.accounts.add_user(name, password, replace=replace)

    def remove_user(self, name: str) -> None:
        """Remove a user; clients logged in as that user stay connected.

        Raises:
            KeyError: there is no such user.
        """
        self.accounts.remove_user(name)

    @property
    def users(self) -> list[str]:
        """The user names, sorted."""
        return self.accounts.users

    def ban_ip(self, addr: str, seconds: float | None = None) -> None:
        """Ban ``addr`` (an IPv6 address: its /64): refuse its connections for ``seconds``, or
        until :meth:`unban_ip` when ``None``. Refused at accept, before TLS.

        Connections already open are left alone, and ``ip_banned`` is not called (it is for
        bans that failed logins cause). A ban that already lasts longer is kept. Safe from any
        thread.
        """
        self.accounts.ban(addr, seconds)

    def unban_ip(self, addr: str) -> bool:
        """Lift a ban on ``addr`` and forget its failed logins; return whether it was banned."""
        return self.accounts.unban(addr)

    @property
    def bans(self) -> dict[str, float]:
        """The banned addresses, each with the seconds left (``math.inf`` for no end)."""
        return self.accounts.bans

    def get_login_attempts(
        self,
        username: str | None = None,
        address: str | None = None,
        start: float | None = None,
        end: float | None = None,
    ) -> list[LoginAttempt]:
        """The recorded login attempts matching every given criterion, oldest first.

        Each is a :class:`~alvaro.auth.LoginAttempt` (``time``, ``address``, ``username``,
        ``success``); ``start`` and ``end`` are :func:`time.time` values. Unknown user names
        are recorded too. The history keeps the latest 10,000 attempts by default.
        """
        return self.accounts.login_attempts(username, address, start, end)

    def save(self, path: StrPath) -> None:
        """Write the users, bans and login history to ``path``: atomically (a crash leaves
        the old file or the new one, never a broken one), readable by the owner only.

        Blocks for a disk write (with fsync); from async code you may prefer
        ``await anyio.to_thread.run_sync(host.save, path)``.
        """
        self.accounts.save(path)

    def load(self, path: StrPath) -> None:
        """Replace the users, bans and login history with those saved in ``path``.

        Raises:
            FileNotFoundError: there is no such file.
            AccountsFileError: the file is corrupt, truncated, or from a newer alvaro; nothing
                is changed then.
        """
        self.accounts.restore(path)
