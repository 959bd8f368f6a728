"""What a user's program may write, and what the type checker must refuse, under mypy --strict.

``tests/test_readme.py`` type-checks this file together with the README's code blocks. Each line
that must be refused carries ``# type: ignore[code]``: ``--strict`` reports an ignore that is not
needed, so each one proves that the line is refused, and for that reason. Nothing here runs.
"""

from __future__ import annotations

from typing import Any

import alvaro
import alvaro.aio
import alvaro.sync
from alvaro import CloseCode

# --- Callbacks set on the instance, as the documentation shows ------------------------------------


async def aio_echo(conn: alvaro.Connection, data: Any, metadata: dict[str, Any]) -> None:
    await conn.send(data, metadata)


def sync_echo(conn: alvaro.sync.Connection, data: Any, metadata: dict[str, Any]) -> None:
    conn.send_data(data, metadata)


def set_aio_callbacks(host: alvaro.Host, client: alvaro.Client) -> None:
    host.got_data = aio_echo
    host.got_data = lambda conn, data, metadata: conn.send_data(data, metadata)
    host.got_data = lambda conn, data, metadata: conn.send(data)  # the coroutine is awaited
    host.got_data = None  # not set: messages wait for receive()
    host.new_client = lambda conn: print("new client from", conn.addr)
    host.lost_client = lambda conn: print("lost:", CloseCode.describe(conn.close_code))
    host.logged_in = lambda conn, user: print(user, "logged in")
    host.ip_banned = lambda addr: print(addr, "banned")
    host.server_started = lambda host: print("listening on", host.port)
    client.made_connection = lambda: client.send_data("hello")
    client.logged_in = lambda: print("logged in as", client.user)
    client.got_data = lambda data, metadata: print(data, metadata)
    client.lost_connection = lambda: print("lost")
    host.gotData = aio_echo  # the original library's names are aliases


def set_sync_callbacks(host: alvaro.sync.Host, client: alvaro.sync.Client) -> None:
    host.got_data = sync_echo
    host.got_data = lambda conn, data, metadata: conn.send_data(data, metadata)
    host.new_client = lambda conn: print("new client from", conn.addr)
    host.lost_client = lambda conn: print("lost:", CloseCode.describe(conn.close_code))
    host.logged_in = lambda conn, user: print(user, "logged in")
    host.ip_banned = lambda addr: print(addr, "banned")
    host.server_started = lambda host: print("listening on", host.port)
    client.made_connection = lambda: client.send_data("hello")
    client.logged_in = lambda: print("logged in as", client.user)
    client.got_data = lambda data, metadata: {"shown": data}  # what it returns is ignored
    client.lost_connection = lambda: None
    client.gotData = lambda data, metaData: None


def refused(
    host: alvaro.Host,
    client: alvaro.Client,
    sync_host: alvaro.sync.Host,
    sync_client: alvaro.sync.Client,
) -> None:
    host.got_data = lambda conn, data: None  # type: ignore[assignment]
    host.new_client = lambda: None  # type: ignore[assignment]
    host.new_client = "welcome"  # type: ignore[assignment]
    client.got_data = aio_echo  # type: ignore[assignment]
    client.lost_connection = lambda conn: None  # type: ignore[assignment]
    host.got_data = sync_echo  # type: ignore[assignment]
    sync_host.got_data = aio_echo  # type: ignore[assignment]
    sync_host.lost_client = lambda: None  # type: ignore[assignment]
    sync_client.got_data = lambda data: None  # type: ignore[assignment]


# --- Callbacks overridden in a subclass ---------------------------------------------------------


class EchoHost(alvaro.Host):
    async def got_data(self, conn: alvaro.Connection, data: Any, metadata: dict[str, Any]) -> None:
        await conn.send(data, metadata)

    def new_client(self, conn: alvaro.Connection) -> None:
        conn.send_data("welcome")


class Greeter(alvaro.Client):
    async def made_connection(self) -> None:
        await self.send("hello")

    def lost_connection(self) -> None:
        print("lost")


class SyncEchoHost(alvaro.sync.Host):
    def got_data(self, conn: alvaro.sync.Connection, data: Any, metadata: dict[str, Any]) -> None:
        conn.send_data(data, metadata)


class SyncGreeter(alvaro.sync.Client):
    def made_connection(self) -> None:
        self.send_data("hello")


class WrongArguments(alvaro.sync.Host):
    def got_data(self, data: Any) -> None:  # type: ignore[override]
        pass


# --- connect() takes the Client constructor's keywords, and no others ---------------------------


async def aio_connect_options() -> None:
    async with alvaro.aio.connect("localhost", 8888, max_queue=4, open_timeout=2.5) as client:
        client.send_data("hello")
    async with alvaro.aio.connect("localhost", 8888, max_queu=4):  # type: ignore[call-arg]
        pass
    async with alvaro.aio.connect("localhost", 8888, backend="trio"):  # type: ignore[call-arg]
        pass


def sync_connect_options() -> None:
    with alvaro.sync.connect("localhost", 8888, backend="trio", dispatch=None, max_queue=4):
        pass
    with alvaro.sync.connect("localhost", 8888, max_queue="4"):  # type: ignore[arg-type]
        pass


# --- CloseCode.describe() takes a close_code, None included --------------------------------------


def describe(conn: alvaro.sync.Connection, client: alvaro.Client) -> list[str]:
    names = [CloseCode.describe(conn.close_code)]
    if client.connection is not None:
        names.append(CloseCode.describe(client.connection.close_code))
    return names
