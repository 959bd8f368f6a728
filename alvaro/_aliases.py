"""The original Alvaro's camelCase names, kept working as aliases of the PEP 8 API.

Programs written for the original library (``server.gotData = f``, ``client.sendData(x,
metaData=m)``, ``client.waitForConnection(timeout=6)``) run unchanged. The aliases live only here,
are not in any ``__all__``, and are listed once in ``docs/reference/compat.md``; ``ALIASES`` is
the table the tests walk. The callbacks' aliases come from the table of callbacks,
``alvaro._events``, and so does their table in the docs.

Two mechanisms:

* :class:`Alias`, a descriptor, forwards an attribute: ``host.gotData = f`` sets ``host.got_data``.
* Thin methods keep the seed's keyword names: ``sendData(data, metaData=None)``.
* Keyword arguments: ``Host(loginRequired=True)`` is an explicit parameter of each ``Host``
  constructor; ``useSSL``, ``sslCert`` and ``sslKey`` are merged by :func:`seed_tls_options`.

A subclass may also define a seed-named callback (``def gotData(self, conn, data, metaData)``);
``__init_subclass__`` installs it under the PEP 8 name.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, ClassVar, TypedDict

from ._events import EVENTS, events
from .accounts.facade import AccountsFacade

if TYPE_CHECKING:
    from ._events import Side
    from ._types import Metadata, StrPath
    from .accounts.bans import LoginAttempt

__all__ = (
    "ALIASES",
    "DEPRECATED",
    "Alias",
    "ClientAliases",
    "ConnectionAliases",
    "DeprecatedAlias",
    "HostAliases",
    "KEYWORD_METHODS",
    "SeedClientTLS",
    "SeedServerTLS",
    "seed_tls_options",
)


class Alias:
    """An attribute that reads and writes another attribute of the same object."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return getattr(instance, self.target)

    def __set__(self, instance: object, value: Any) -> None:
        setattr(instance, self.target, value)


class DeprecatedAlias(Alias):
    """An old PEP 8 name of this library: forwards like :class:`Alias`, and each use warns."""

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        self._warn()
        return getattr(instance, self.target)

    def __set__(self, instance: object, value: Any) -> None:
        self._warn()
        setattr(instance, self.target, value)

    def _warn(self) -> None:
        warnings.warn(
            f"{self.name} is deprecated, use {self.target}", DeprecationWarning, stacklevel=3
        )


class _SeedNames:
    """Maps seed-named callbacks defined by subclasses onto their PEP 8 names."""

    __slots__ = ()

    _seed_callbacks: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for seed_name, target in cls._seed_callbacks.items():
            function = cls.__dict__.get(seed_name)
            if function is None or isinstance(function, Alias):
                continue
            if target in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} defines both {seed_name!r} and {target!r}; "
                    f"define only {target!r}"
                )
            setattr(cls, target, function)
            setattr(cls, seed_name, Alias(target))


class ConnectionAliases(_SeedNames):
    """Seed names of a connection (the ``client`` object a Host's callbacks receive)."""

    __slots__ = ()

    def send_data(self, data: Any, metadata: Metadata | None = None) -> None:
        raise NotImplementedError

    def sendData(self, data: Any, metaData: Metadata | None = None) -> None:
        """Seed name of :meth:`send_data`."""
        self.send_data(data, metaData)


class HostAliases(_SeedNames, AccountsFacade):
    """Seed names of a Host, and the accounts methods they call (:class:`AccountsFacade`)."""

    # The callbacks' aliases are installed from alvaro._events below; declared for type checkers.
    newClient: Any
    lostClient: Any
    gotData: Any
    serverStarted: Any
    loggedIn: Any
    blacklisted: Any
    blacklist = Alias("bans")

    blacklist_ip = DeprecatedAlias("ban_ip")
    unblacklist_ip = DeprecatedAlias("unban_ip")

    def addUser(self, username: str, password: str) -> None:
        """Seed name of :meth:`add_user`."""
        self.add_user(username, password)

    def blacklistIP(self, addr: str, bTime: float | None = None) -> None:
        """Seed name of :meth:`ban_ip` (``bTime=None`` bans until unbanned)."""
        self.ban_ip(addr, bTime)

    def getLoginAttempts(
        self,
        username: str | None = None,
        address: str | None = None,
        start_date: float | None = None,
        end_date: float | None = None,
    ) -> list[LoginAttempt]:
        """Seed name of :meth:`get_login_attempts`."""
        return self.get_login_attempts(username, address, start_date, end_date)

    def saveUsers(self, customPath: StrPath) -> None:
        """Seed name of :meth:`save` (which saves the bans and login history too)."""
        self.save(customPath)

    def loadUsers(self, customPath: StrPath) -> None:
        """Seed name of :meth:`load`."""
        self.load(customPath)


class ClientAliases(_SeedNames):
    """Seed names of a Client."""

    # The callbacks' aliases are installed from alvaro._events below; declared for type checkers.
    madeConnection: Any
    lostConnection: Any
    gotData: Any
    loggedIn: Any

    def send_data(self, data: Any, metadata: Metadata | None = None) -> None:
        raise NotImplementedError

    def wait_for_connection(self, timeout: float | None = None) -> bool:
        raise NotImplementedError

    def sendData(self, data: Any, metaData: Metadata | None = None) -> None:
        """Seed name of :meth:`send_data`."""
        self.send_data(data, metaData)

    def wait_for_login(self, timeout: float | None = None) -> bool:
        raise NotImplementedError

    def waitForConnection(self, timeout: float | None = None) -> bool:
        """Seed name of :meth:`wait_for_connection`."""
        return self.wait_for_connection(timeout)

    def waitForLogin(self, timeout: float | None = None) -> bool:
        """Seed name of :meth:`wait_for_login`."""
        return self.wait_for_login(timeout)


def _install_seed_callbacks(cls: type[_SeedNames], side: Side) -> None:
    """Give ``cls`` an :class:`Alias` for each of the side's callbacks the seed had a name for."""
    cls._seed_callbacks = {row.seed: row.name for row in events(side) if row.seed is not None}
    for seed_name, target in cls._seed_callbacks.items():
        alias = Alias(target)
        alias.__set_name__(cls, seed_name)
        setattr(cls, seed_name, alias)


_install_seed_callbacks(HostAliases, "host")
_install_seed_callbacks(ClientAliases, "client")


class SeedClientTLS(TypedDict, total=False):
    """The seed's keyword names for TLS in ``Client.connect()``."""

    useSSL: bool
    sslCert: StrPath


class SeedServerTLS(SeedClientTLS, total=False):
    """The seed's keyword names for TLS in ``Host.start()``."""

    sslKey: StrPath


_SEED_TLS_NAMES = {"useSSL": "use_ssl", "sslCert": "ssl_cert", "sslKey": "ssl_key"}


def seed_tls_options(
    seed_options: SeedClientTLS | SeedServerTLS,
    use_ssl: bool,
    ssl_cert: StrPath | None,
    ssl_key: StrPath | None = None,
) -> tuple[bool, StrPath | None, StrPath | None]:
    """Merge the seed's ``useSSL``/``sslCert``/``sslKey`` into their PEP 8 names.

    Raises:
        TypeError: an unknown keyword, or both spellings of one option.
    """
    values: dict[str, Any] = {"use_ssl": use_ssl, "ssl_cert": ssl_cert, "ssl_key": ssl_key}
    defaults: dict[str, Any] = {"use_ssl": False, "ssl_cert": None, "ssl_key": None}
    for seed_name, value in seed_options.items():
        name = _SEED_TLS_NAMES.get(seed_name)
        if name is None:
            raise TypeError(f"unexpected keyword argument {seed_name!r}")
        if values[name] != defaults[name]:
            raise TypeError(f"give {name!r} or {seed_name!r}, not both")
        values[name] = value
    return bool(values["use_ssl"]), values["ssl_cert"], values["ssl_key"]


#: Every alias: (class kind, seed name, PEP 8 name, how); the callbacks' rows come from
#: ``alvaro._events.EVENTS``. ``how`` is "attribute", "property" (an
#: attribute that can only be read), "method", "keyword" (an argument of the method named in
#: KEYWORD_METHODS) or "constructor keyword" (an argument of the class itself,
#: ``Host(loginRequired=True)``).
ALIASES: tuple[tuple[str, str, str, str], ...] = (
    *((row.side, row.seed, row.name, "attribute") for row in EVENTS if row.seed is not None),
    ("host", "blacklist", "bans", "property"),
    ("host", "addUser", "add_user", "method"),
    ("host", "blacklistIP", "ban_ip", "method"),
    ("host", "getLoginAttempts", "get_login_attempts", "method"),
    ("host", "saveUsers", "save", "method"),
    ("host", "loadUsers", "load", "method"),
    ("client", "sendData", "send_data", "method"),
    ("client", "waitForConnection", "wait_for_connection", "method"),
    ("client", "waitForLogin", "wait_for_login", "method"),
    ("connection", "sendData", "send_data", "method"),
    ("host", "loginRequired", "login_required", "constructor keyword"),
    ("host", "useSSL", "use_ssl", "keyword"),
    ("host", "sslCert", "ssl_cert", "keyword"),
    ("host", "sslKey", "ssl_key", "keyword"),
    ("client", "useSSL", "use_ssl", "keyword"),
    ("client", "sslCert", "ssl_cert", "keyword"),
)

#: Old PEP 8 names of this library, kept working for now: (class kind, old name, new name,
#: whether each use warns with DeprecationWarning). They are :class:`DeprecatedAlias` attributes
#: of HostAliases, except ``Accounts.blacklist``, a property of alvaro.accounts.bans.
DEPRECATED: tuple[tuple[str, str, str, bool], ...] = (
    ("host", "blacklist_ip", "ban_ip", True),
    ("host", "unblacklist_ip", "unban_ip", True),
    ("accounts", "blacklist", "bans", True),
)

#: The method that takes each kind's keyword aliases.
KEYWORD_METHODS = {"host": "start", "client": "connect"}
