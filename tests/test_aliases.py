"""The original library's camelCase names keep working as aliases of the PEP 8 API.

``alvaro._aliases.ALIASES`` is the single table of aliases; these tests walk it, so a new row is
checked without editing them.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings
from typing import TYPE_CHECKING, Any

import anyio
import pytest

import alvaro
import alvaro.aio
import alvaro.auth
import alvaro.sync
from alvaro import CloseCode
from alvaro._aliases import (
    ALIASES,
    DEPRECATED,
    KEYWORD_METHODS,
    SeedClientTLS,
    SeedServerTLS,
    seed_tls_options,
)
from tests.helpers import WAIT

if TYPE_CHECKING:
    from pathlib import Path

ATTRIBUTE_ROWS = [row for row in ALIASES if row[3] == "attribute"]
PROPERTY_ROWS = [row for row in ALIASES if row[3] == "property"]
METHOD_ROWS = [row for row in ALIASES if row[3] == "method"]
KEYWORD_ROWS = [row for row in ALIASES if row[3] == "keyword"]
CONSTRUCTOR_ROWS = [row for row in ALIASES if row[3] == "constructor keyword"]
SEED_NAMES = {row[1] for row in ALIASES}
APIS = ["aio", "sync"]

#: For each seed method: the call made with the seed's spelling, and the arguments the PEP 8
#: method must receive.
SEED_CALLS: dict[str, tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]] = {
    "sendData": (
        ("Hello, World!",),
        {"metaData": {"whoami": "client"}},
        {"data": "Hello, World!", "metadata": {"whoami": "client"}},
    ),
    "waitForConnection": ((), {"timeout": 6}, {"timeout": 6}),
    "waitForLogin": ((), {"timeout": 6}, {"timeout": 6}),
    "addUser": (
        (),
        {"username": "ann", "password": "pw"},
        {"name": "ann", "password": "pw", "replace": False},
    ),
    "blacklistIP": (("192.0.2.7",), {"bTime": 60}, {"addr": "192.0.2.7", "seconds": 60}),
    "getLoginAttempts": (
        (),
        {"username": "ann", "address": "192.0.2.7", "start_date": 1.0, "end_date": 2.0},
        {"username": "ann", "address": "192.0.2.7", "start": 1.0, "end": 2.0},
    ),
    "saveUsers": ((), {"customPath": "users.json"}, {"path": "users.json"}),
    "loadUsers": ((), {"customPath": "users.json"}, {"path": "users.json"}),
}

#: The seed's keyword names, which programs written for the original library pass.
SEED_KEYWORDS = {
    "sendData": ("data", "metaData"),
    "waitForConnection": ("timeout",),
    "waitForLogin": ("timeout",),
    "addUser": ("username", "password"),
    "blacklistIP": ("addr", "bTime"),
    "getLoginAttempts": ("username", "address", "start_date", "end_date"),
    "saveUsers": ("customPath",),
    "loadUsers": ("customPath",),
}

#: The seed methods that return what the PEP 8 method returns (the others return None).
SEED_RETURNS = {"waitForConnection", "waitForLogin", "getLoginAttempts"}


class _PatchableConnection(alvaro.aio.Connection):
    pass


def classes(api: str) -> dict[str, type]:
    """The class of each kind in ALIASES, in ``alvaro.aio`` or ``alvaro.sync``."""
    module: Any = alvaro.aio if api == "aio" else alvaro.sync
    return {"host": module.Host, "client": module.Client, "connection": module.Connection}


def make(kind: str, api: str = "aio") -> Any:
    """A real object of the given kind, without a network (a sync one starts no thread)."""
    if kind == "connection":
        # Users never build a Connection; the alias methods need none of its state. A subclass,
        # because the aio Connection has __slots__ and the test patches methods on the instance.
        cls = _PatchableConnection if api == "aio" else alvaro.sync.Connection
        return object.__new__(cls)
    if kind not in ("host", "client"):
        raise AssertionError(f"unknown kind {kind!r} in ALIASES")
    return classes(api)[kind]()


def row_id(row: tuple[str, str, str, str]) -> str:
    return f"{row[0]}.{row[1]}"


@pytest.mark.parametrize("api", APIS)
def test_table_is_well_formed(api: str) -> None:
    assert ALIASES, "ALIASES is empty"
    kinds = classes(api)
    for kind, seed, target, how in ALIASES:
        assert kind in kinds
        assert how in ("attribute", "property", "method", "keyword", "constructor keyword")
        assert seed != target
        if how in ("keyword", "constructor keyword"):
            continue  # checked by test_keyword_alias and test_constructor_keyword_alias
        assert hasattr(kinds[kind], seed), f"{api} {kind} has no {seed}"
        assert hasattr(kinds[kind], target), f"{api} {kind} has no {target}"
    assert len(set(ALIASES)) == len(ALIASES)


@pytest.mark.parametrize("row", ATTRIBUTE_ROWS, ids=row_id)
@pytest.mark.parametrize("api", APIS)
def test_attribute_alias(row: tuple[str, str, str, str], api: str) -> None:
    kind, seed, target, _ = row
    obj = make(kind, api)

    async def callback(*args: object) -> None:
        pass

    setattr(obj, seed, callback)
    assert obj.__dict__[target] is callback
    assert seed not in obj.__dict__
    assert getattr(obj, target) is callback
    assert getattr(obj, seed) is callback

    # And the other way: assigning the PEP 8 name is seen through the seed name.
    def other(*args: object) -> None:
        pass

    setattr(obj, target, other)
    assert getattr(obj, seed) is other


@pytest.mark.parametrize("row", ATTRIBUTE_ROWS, ids=row_id)
@pytest.mark.parametrize("api", APIS)
def test_attribute_alias_reads_the_default(row: tuple[str, str, str, str], api: str) -> None:
    kind, seed, target, _ = row
    obj = make(kind, api)
    # Before any assignment the seed name reads the PEP 8 default (None: not set).
    assert getattr(obj, seed) == getattr(obj, target)


@pytest.mark.parametrize("row", PROPERTY_ROWS, ids=row_id)
@pytest.mark.parametrize("api", APIS)
def test_property_alias(row: tuple[str, str, str, str], api: str) -> None:
    kind, seed, target, _ = row
    obj = make(kind, api)
    assert getattr(obj, seed) == getattr(obj, target)
    with pytest.raises(AttributeError):
        setattr(obj, seed, {})  # read-only, like the PEP 8 property


@pytest.mark.parametrize("row", METHOD_ROWS, ids=row_id)
@pytest.mark.parametrize("api", APIS)
def test_method_alias(
    row: tuple[str, str, str, str], api: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kind, seed, target, _ = row
    assert seed in SEED_CALLS, f"add how to call {seed} to SEED_CALLS"
    args, kwargs, expected = SEED_CALLS[seed]
    obj = make(kind, api)
    pep8_signature = inspect.signature(getattr(type(obj), target))
    calls: list[dict[str, Any]] = []
    result = object()

    def record(*call_args: Any, **call_kwargs: Any) -> Any:
        bound = pep8_signature.bind(obj, *call_args, **call_kwargs)
        bound.apply_defaults()
        arguments = dict(bound.arguments)
        del arguments["self"]
        calls.append(arguments)
        return result

    monkeypatch.setattr(obj, target, record)
    returned = getattr(obj, seed)(*args, **kwargs)
    assert calls == [expected]
    if seed in SEED_RETURNS:
        assert returned is result
    else:
        assert returned is None


@pytest.mark.parametrize("row", METHOD_ROWS, ids=row_id)
@pytest.mark.parametrize("api", APIS)
def test_method_alias_keeps_seed_keywords(row: tuple[str, str, str, str], api: str) -> None:
    kind, seed, _, _ = row
    parameters = list(inspect.signature(getattr(type(make(kind, api)), seed)).parameters)
    assert tuple(parameters[1:]) == SEED_KEYWORDS[seed]


def test_send_data_metadata_defaults_to_none(monkeypatch: pytest.MonkeyPatch) -> None:
    client = alvaro.Client()
    calls: list[tuple[Any, Any]] = []
    monkeypatch.setattr(
        client, "send_data", lambda data, metadata=None: calls.append((data, metadata))
    )
    client.sendData("Hello, World!")
    assert calls == [("Hello, World!", None)]


def test_wait_for_connection_times_out_unconnected() -> None:
    assert alvaro.Client().waitForConnection(timeout=0.01) is False
    assert alvaro.Client().waitForConnection(0.01) is False


@pytest.mark.parametrize("api", APIS)
def test_wait_for_login_times_out_unconnected(api: str) -> None:
    client = make("client", api)
    assert client.waitForLogin(timeout=0.01) is False
    assert client.waitForLogin(0) is False


@pytest.mark.parametrize("api", APIS)
def test_user_store_aliases_reach_the_store(api: str, tmp_path: Path) -> None:
    # Real calls, not patched ones: the seed's names change the host's Accounts.
    host = make("host", api)
    host.accounts = alvaro.auth.Accounts(iterations=4096)
    host.addUser("ann", "pw")
    host.addUser(username="bob", password="pw")
    assert host.users == ["ann", "bob"]
    host.blacklistIP("192.0.2.7", bTime=60)
    assert 0 < host.blacklist["192.0.2.7"] <= 60
    assert host.getLoginAttempts(username="ann", start_date=0) == []
    host.saveUsers(tmp_path / "users.json")
    again = make("host", api)
    again.loadUsers(customPath=tmp_path / "users.json")
    assert again.users == ["ann", "bob"]
    assert list(again.blacklist) == ["192.0.2.7"]


def deprecated_owner(kind: str, api: str) -> Any:
    """An object of the kind a DEPRECATED row names, with a ban on 192.0.2.7 for 60 s (on a
    stopped clock, so that the seconds left read the same twice)."""
    accounts = alvaro.auth.Accounts(iterations=4096, clock=lambda: 100.0)
    accounts.ban("192.0.2.7", 60)
    if kind == "accounts":
        return accounts
    host = make(kind, api)
    host.accounts = accounts
    return host


@pytest.mark.parametrize("row", DEPRECATED, ids=lambda row: f"{row[0]}.{row[1]}")
@pytest.mark.parametrize("api", APIS)
def test_deprecated_name_reaches_the_new_one(row: tuple[str, str, str, bool], api: str) -> None:
    kind, old, new, warns = row
    obj = deprecated_owner(kind, api)
    assert old != new
    assert hasattr(type(obj), new)
    if warns:
        with pytest.warns(DeprecationWarning, match=f"{old} is deprecated, use {new}") as record:
            value = getattr(obj, old)
        assert record[0].filename == __file__  # the warning points at the caller's line
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            value = getattr(obj, old)
    assert value == getattr(obj, new)


@pytest.mark.parametrize("api", APIS)
def test_deprecated_ban_methods_still_ban(api: str) -> None:
    host = make("host", api)
    host.accounts = alvaro.auth.Accounts(iterations=4096)
    with pytest.warns(DeprecationWarning, match="blacklist_ip is deprecated, use ban_ip"):
        host.blacklist_ip("192.0.2.9", 60)
    assert 0 < host.bans["192.0.2.9"] <= 60
    with pytest.warns(DeprecationWarning, match="unblacklist_ip is deprecated, use unban_ip"):
        assert host.unblacklist_ip("192.0.2.9") is True
    assert host.bans == {}


def test_deprecated_names_are_not_exported() -> None:
    old_names = {row[1] for row in DEPRECATED}
    for module_name in public_modules():
        exported = set(getattr(importlib.import_module(module_name), "__all__", ()))
        assert not exported & old_names, module_name


@pytest.mark.parametrize("row", CONSTRUCTOR_ROWS, ids=row_id)
@pytest.mark.parametrize("api", APIS)
def test_constructor_keyword_alias(row: tuple[str, str, str, str], api: str) -> None:
    # An explicit parameter of the class next to its PEP 8 name; the value lands on the
    # PEP 8 attribute. (The only such alias, loginRequired, is a flag: True and False are tried.)
    kind, seed, target, _ = row
    cls = classes(api)[kind]
    parameters = inspect.signature(cls).parameters
    assert seed in parameters
    assert target in parameters
    for value in (True, False):
        assert getattr(cls(**{seed: value}), target) is value
    assert getattr(cls(), target) is False
    with pytest.raises(TypeError, match="not both"):
        cls(**{seed: True, target: True})


def test_send_data_unconnected_raises() -> None:
    with pytest.raises(alvaro.LocalProtocolError):
        alvaro.Client().sendData("Hello, World!", metaData={"whoami": "client"})


def test_subclass_seed_callback_is_installed() -> None:
    def seed_got_data(self: Any, conn: Any, data: Any, metaData: Any) -> None:
        pass

    class SeedHost(alvaro.Host):
        gotData = seed_got_data

    class SeedClient(alvaro.Client):
        def gotData(self, data: Any, metaData: Any) -> None:
            pass

    assert SeedHost.__dict__["got_data"] is seed_got_data
    assert SeedHost.got_data is seed_got_data
    host: Any = SeedHost()
    assert host.gotData == host.got_data
    assert host.got_data.__func__ is seed_got_data
    assert SeedClient.got_data is not alvaro.Client.got_data
    assert SeedClient.got_data.__name__ == "gotData"
    # The seed name stays an alias, so assigning it on an instance still works.
    replacement = object()
    client: Any = SeedClient()
    client.gotData = replacement
    assert client.got_data is replacement
    # The base classes are untouched.
    assert alvaro.Host.got_data is not seed_got_data


@pytest.mark.parametrize("api", APIS)
def test_subclass_seed_login_callbacks_are_installed(api: str) -> None:
    kinds = classes(api)

    def host_logged_in(self: Any, client: Any, user: str) -> None:
        pass

    def host_blacklisted(self: Any, addr: str) -> None:
        pass

    def client_logged_in(self: Any) -> None:
        pass

    seed_host: Any = type(
        "SeedHost",
        (kinds["host"],),
        {"loggedIn": host_logged_in, "blacklisted": host_blacklisted},
    )
    seed_client: Any = type("SeedClient", (kinds["client"],), {"loggedIn": client_logged_in})
    assert seed_host.logged_in is host_logged_in
    assert seed_host.ip_banned is host_blacklisted
    assert seed_client.logged_in is client_logged_in
    host, client = seed_host(), seed_client()
    assert host.loggedIn == host.logged_in
    assert host.logged_in.__func__ is host_logged_in
    assert client.logged_in.__func__ is client_logged_in
    # The base classes are untouched.
    assert kinds["host"].logged_in is not host_logged_in
    assert kinds["client"].logged_in is not client_logged_in


@pytest.mark.parametrize(
    "base",
    [alvaro.Host, alvaro.Client, alvaro.sync.Host, alvaro.sync.Client],
    ids=["host", "client", "sync-host", "sync-client"],
)
def test_subclass_defining_both_names_is_an_error(base: type) -> None:
    with pytest.raises(TypeError, match="defines both 'gotData' and 'got_data'"):

        class Both(base):  # type: ignore[misc]
            def gotData(self, *args: object) -> None:
                pass

            def got_data(self, *args: object) -> None:
                pass


def public_modules() -> list[str]:
    names = ["alvaro"]
    for info in pkgutil.walk_packages(alvaro.__path__, "alvaro."):
        if info.name != "alvaro.__main__":  # importing it runs the command
            names.append(info.name)
    return names


@pytest.mark.parametrize("module_name", public_modules())
def test_aliases_are_not_exported(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = set(getattr(module, "__all__", ()))
    assert not exported & SEED_NAMES


def test_aliases_not_in_main_all() -> None:
    for module in (alvaro, alvaro.aio):
        assert not set(module.__all__) & SEED_NAMES


# --- The aliases on a live connection ------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.server_started = anyio.Event()
        self.host_got = anyio.Event()
        self.host_lost = anyio.Event()
        self.client_got = anyio.Event()

    def add(self, *event: Any) -> None:
        self.events.append(event)


def assigned_by_seed_names(rec: Recorder) -> tuple[alvaro.Host, alvaro.Client]:
    """The README's style: functions assigned to the seed names of instances."""
    host = alvaro.Host("127.0.0.1", 0)
    client = alvaro.Client()

    async def serverStarted(server: alvaro.Host) -> None:
        rec.add("serverStarted", server is host)
        rec.server_started.set()

    async def newClient(conn: alvaro.Connection) -> None:
        rec.add("newClient")
        conn.sendData("Hello, World!", metaData={"whoami": "server"})

    async def gotMessage(conn: alvaro.Connection, data: Any, metaData: Any) -> None:
        rec.add("host gotData", data, metaData)
        rec.host_got.set()

    def lostClient(conn: alvaro.Connection) -> None:
        rec.add("lostClient", conn.close_code, conn.closed_by_peer)
        rec.host_lost.set()

    def madeConnection() -> None:
        rec.add("madeConnection")

    async def gotData(data: Any, metaData: Any) -> None:
        rec.add("client gotData", data, metaData)
        rec.client_got.set()

    async def lostConnection() -> None:
        rec.add("lostConnection")

    host.serverStarted = serverStarted
    host.newClient = newClient
    host.gotData = gotMessage
    host.lostClient = lostClient
    client.madeConnection = madeConnection
    client.gotData = gotData
    client.lostConnection = lostConnection
    return host, client


def defined_in_subclasses(rec: Recorder) -> tuple[alvaro.Host, alvaro.Client]:
    """Subclasses that define the seed-named callbacks as methods."""

    class SeedHost(alvaro.Host):
        async def serverStarted(self, server: alvaro.Host) -> None:
            rec.add("serverStarted", server is self)
            rec.server_started.set()

        async def newClient(self, conn: alvaro.Connection) -> None:
            rec.add("newClient")
            conn.sendData("Hello, World!", metaData={"whoami": "server"})

        async def gotData(self, conn: alvaro.Connection, data: Any, metaData: Any) -> None:
            rec.add("host gotData", data, metaData)
            rec.host_got.set()

        def lostClient(self, conn: alvaro.Connection) -> None:
            rec.add("lostClient", conn.close_code, conn.closed_by_peer)
            rec.host_lost.set()

    class SeedClient(alvaro.Client):
        def madeConnection(self) -> None:
            rec.add("madeConnection")

        async def gotData(self, data: Any, metaData: Any) -> None:
            rec.add("client gotData", data, metaData)
            rec.client_got.set()

        async def lostConnection(self) -> None:
            rec.add("lostConnection")

    return SeedHost("127.0.0.1", 0), SeedClient()


@pytest.mark.anyio
@pytest.mark.parametrize("build", [assigned_by_seed_names, defined_in_subclasses])
async def test_seed_callbacks_on_a_live_connection(build: Any) -> None:
    rec = Recorder()
    host, client = build(rec)
    with anyio.fail_after(WAIT):
        async with host, anyio.create_task_group() as tasks:
            await rec.server_started.wait()
            await tasks.start(client.connect, "127.0.0.1", host.port)
            assert client.waitForConnection(timeout=0) is True
            await rec.client_got.wait()
            client.sendData("hi", metaData={"whoami": "client"})
            await rec.host_got.wait()
            await client.aclose()
            await rec.host_lost.wait()

    assert rec.events[0] == ("serverStarted", True)
    assert rec.events.index(("madeConnection",)) < rec.events.index(
        ("client gotData", "Hello, World!", {"whoami": "server"})
    )
    expected = [
        ("serverStarted", True),
        ("newClient",),
        ("madeConnection",),
        ("client gotData", "Hello, World!", {"whoami": "server"}),
        ("host gotData", "hi", {"whoami": "client"}),
        ("lostConnection",),
        ("lostClient", CloseCode.NORMAL, True),
    ]
    assert sorted(rec.events, key=repr) == sorted(expected, key=repr)


@pytest.mark.parametrize("row", KEYWORD_ROWS, ids=row_id)
@pytest.mark.parametrize("api", ["aio", "sync"])
def test_keyword_alias(row: tuple[str, str, str, str], api: str) -> None:
    # The seed's keyword is accepted (typed) next to the PEP 8 parameter of the same method.
    kind, seed, target, _ = row
    module = alvaro.aio if api == "aio" else importlib.import_module("alvaro.sync")
    cls = module.Host if kind == "host" else module.Client
    method = getattr(cls, KEYWORD_METHODS[kind])
    assert target in inspect.signature(method).parameters
    seed_names = SeedServerTLS if kind == "host" else SeedClientTLS
    assert seed in seed_names.__annotations__


def test_seed_tls_keywords_map_onto_pep8_names() -> None:
    assert seed_tls_options(
        {"useSSL": True, "sslCert": "c.pem", "sslKey": "k.pem"}, False, None
    ) == (
        True,
        "c.pem",
        "k.pem",
    )
    assert seed_tls_options({}, True, "ca.pem") == (True, "ca.pem", None)
    with pytest.raises(TypeError, match="not both"):
        seed_tls_options({"useSSL": True}, True, None)
    with pytest.raises(TypeError, match="unexpected keyword argument 'sslKeys'"):
        seed_tls_options({"sslKeys": "k.pem"}, False, None)  # type: ignore[typeddict-unknown-key]
