"""Login on the blocking API: alvaro.sync Host and Client with ``login_required`` and ``login=``.

Every host uses ``Accounts(iterations=4096)``, the least SCRAM allows, so a login costs about a
millisecond, and no per-account delay (``delay_base=0``) unless a test is about the throttling.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

import alvaro.sync
from alvaro import AccountsFileError, AuthenticationError, CloseCode, WrongThreadError
from alvaro.auth import Accounts
from alvaro.sync import Client, Connection, Host
from alvaro.sync._loop import shared_loop

from ..helpers import WAIT, T, wait_until
from .support import LOOPBACK, GuiLoop, call_in_thread, echo, on_loop

if TYPE_CHECKING:
    from pathlib import Path

    from alvaro.sync._loop import Backend

ANN = ("ann", "correct horse battery staple")
BOB = ("bob", "hunter2")


def fast_accounts(**policy: Any) -> Accounts:
    """A store whose logins cost about a millisecond, with no wait after a failed login."""
    policy.setdefault("delay_base", 0.0)
    return Accounts(iterations=4096, **policy)


def login_host(backend: Backend, **options: Any) -> Host:
    """A (not yet started) echo host on loopback that requires login and knows ann and bob."""
    options.setdefault("accounts", fast_accounts())
    host = Host(LOOPBACK, 0, backend=backend, login_required=True, **options)
    host.got_data = echo  # type: ignore[method-assign]
    host.add_user(*ANN)
    host.add_user(*BOB)
    return host


def where() -> str:
    return threading.current_thread().name


# --- Logging in -----------------------------------------------------------------------------


def test_connect_with_login_returns_logged_in_and_messages_flow(sync_backend: Backend) -> None:
    with login_host(sync_backend) as host, Client(backend=sync_backend) as client:
        assert client.user is None
        assert client.wait_for_login(timeout=0) is False
        client.connect(LOOPBACK, host.port, login=ANN)
        # connect() returned: logged in, and the connection is usable at once.
        assert client.user == "ann"
        assert client.connected
        assert client.connection is not None
        assert client.connection.user == "ann"
        assert client.wait_for_login(timeout=0) is True
        assert client.wait_for_login(timeout=WAIT) is True
        client.send_data("hello", {"n": 1})
        message = client.receive(timeout=WAIT)
        assert (message.data, message.metadata) == ("hello", {"n": 1})
        [conn] = host.clients
        assert conn.user == "ann"
        [attempt] = host.get_login_attempts(username="ann")
        assert (attempt.address, attempt.success) == (LOOPBACK, True)


def test_wrong_password_and_unknown_user_fail_alike(sync_backend: Backend) -> None:
    host = login_host(sync_backend)
    seen: list[str | None] = []
    host.new_client = lambda conn: seen.append(conn.user)  # type: ignore[method-assign]
    host.logged_in = lambda conn, user: seen.append(user)  # type: ignore[method-assign]
    reasons = []
    with host:
        for login in [("ann", "not the password"), ("nobody", "not the password")]:
            with Client(backend=sync_backend) as client:
                with pytest.raises(AuthenticationError) as info:
                    client.connect(LOOPBACK, host.port, login=login)
                assert not client.connected
                assert client.user is None
                with pytest.raises(AuthenticationError):
                    client.wait_for_login(timeout=0)
                reasons.append(info.value.reason)
        # No callback ran for a client that failed: the next one to log in is the first seen.
        with Client(backend=sync_backend) as client:
            client.connect(LOOPBACK, host.port, login=BOB)
            wait_until(lambda: len(seen) == 2)
        attempts = host.get_login_attempts(address=LOOPBACK)
    # The reason cannot tell which user names exist.
    assert reasons[0] == reasons[1]
    assert "wrong user name or password" in reasons[0]
    assert seen == ["bob", "bob"]
    assert [(a.username, a.success) for a in attempts] == [
        ("ann", False),
        ("nobody", False),
        ("bob", True),
    ]


def test_no_login_given_to_a_host_that_requires_one(sync_backend: Backend) -> None:
    with login_host(sync_backend) as host, Client(backend=sync_backend) as client:
        with pytest.raises(AuthenticationError, match="requires login"):
            client.connect(LOOPBACK, host.port)
        assert not client.connected
        assert client.connection is None


def test_login_given_to_a_host_without_logins(sync_backend: Backend) -> None:
    host = Host(LOOPBACK, 0, backend=sync_backend)
    with host, Client(backend=sync_backend) as client:
        with pytest.raises(AuthenticationError, match="does not use logins"):
            client.connect(LOOPBACK, host.port, login=ANN)
        # Without login= the same client connects; it is simply not logged in.
        client.connect(LOOPBACK, host.port)
        assert client.connected
        assert client.user is None
        assert client.wait_for_login(timeout=WAIT) is False


@pytest.mark.parametrize(
    ("login", "error"),
    [
        (("bad name!", "pw"), "user name may contain only"),
        (("ann", ""), "password must not be empty"),
        (("ann",), "must be a .user, password. tuple"),
        (["ann", "pw"], "must be a .user, password. tuple"),
    ],
    ids=repr,
)
def test_an_invalid_login_is_refused_before_connecting(
    sync_backend: Backend, login: Any, error: str
) -> None:
    leases = shared_loop(sync_backend).leases
    with login_host(sync_backend) as host:
        with Client(backend=sync_backend) as client, pytest.raises(ValueError, match=error):
            client.connect(LOOPBACK, host.port, login=login)
        assert host.get_login_attempts() == []
    assert shared_loop(sync_backend).leases == leases


def test_the_connect_context_manager_logs_in(sync_backend: Backend) -> None:
    with login_host(sync_backend) as host:
        with alvaro.sync.connect(LOOPBACK, host.port, login=ANN, backend=sync_backend) as client:
            assert client.user == "ann"
            client.send_data("via connect()")
            assert client.receive(timeout=WAIT).data == "via connect()"
        with (
            pytest.raises(AuthenticationError),
            alvaro.sync.connect(LOOPBACK, host.port, login=("ann", "wrong"), backend=sync_backend),
        ):
            pytest.fail("entered the block after a failed login")


# --- Callbacks --------------------------------------------------------------------------------


def test_login_callbacks_run_in_order_on_the_dispatcher_threads(sync_backend: Backend) -> None:
    host_events: list[tuple[Any, ...]] = []
    client_events: list[tuple[Any, ...]] = []
    host = login_host(sync_backend)
    host.logged_in = lambda conn, user: host_events.append(  # type: ignore[method-assign]
        ("logged_in", user, conn.user, isinstance(conn, Connection), where())
    )
    host.new_client = lambda conn: host_events.append(("new_client", conn.user, where()))  # type: ignore[method-assign]
    client = Client(backend=sync_backend)

    def client_logged_in() -> None:
        client_events.append(("logged_in", client.user, where()))
        client.send_data("sent from logged_in")  # the connection is usable already

    client.logged_in = client_logged_in  # type: ignore[method-assign]
    client.made_connection = lambda: client_events.append(("made_connection", where()))  # type: ignore[method-assign]
    client.got_data = lambda data, metadata: client_events.append(("got_data", data, where()))  # type: ignore[method-assign]
    with host, client:
        client.connect(LOOPBACK, host.port, login=ANN)
        wait_until(lambda: len(host_events) == 2 and len(client_events) == 3)
    assert host_events == [
        ("logged_in", "ann", "ann", True, "alvaro-host-callbacks"),
        ("new_client", "ann", "alvaro-host-callbacks"),
    ]
    assert client_events == [
        ("logged_in", "ann", "alvaro-client-callbacks"),
        ("made_connection", "alvaro-client-callbacks"),
        ("got_data", "sent from logged_in", "alvaro-client-callbacks"),
    ]


def test_dispatch_runs_the_login_callbacks_where_the_dispatcher_runs_them(
    sync_backend: Backend,
) -> None:
    events: list[tuple[str, str]] = []
    with GuiLoop() as gui:
        host = login_host(sync_backend, dispatch=gui.dispatch)
        host.logged_in = lambda conn, user: events.append(("host logged_in", where()))  # type: ignore[method-assign]
        host.new_client = lambda conn: events.append(("new_client", where()))  # type: ignore[method-assign]
        client = Client(backend=sync_backend, dispatch=gui.dispatch)
        client.logged_in = lambda: events.append(("client logged_in", where()))  # type: ignore[method-assign]
        client.made_connection = lambda: events.append(("made_connection", where()))  # type: ignore[method-assign]
        with host, client:
            client.connect(LOOPBACK, host.port, login=ANN)
            wait_until(lambda: len(events) == 4)
    assert {name for _, name in events} == {gui.name}
    names = [event for event, _ in events]
    assert names.index("host logged_in") < names.index("new_client")
    assert names.index("client logged_in") < names.index("made_connection")


def test_a_subclass_with_seed_names_logs_in(sync_backend: Backend, tmp_path: Path) -> None:
    """A program written for the original library: loginRequired, addUser, loggedIn,
    waitForLogin, getLoginAttempts, saveUsers, loadUsers."""
    events: list[Any] = []

    class SeedHost(Host):
        def loggedIn(self, client: Connection, user: str) -> None:
            events.append(("loggedIn", user))

        def newClient(self, client: Connection) -> None:
            events.append(("newClient", client.user))

    host = SeedHost(LOOPBACK, 0, backend=sync_backend, loginRequired=True, accounts=fast_accounts())
    assert host.login_required is True
    host.addUser(*ANN)
    client = Client(backend=sync_backend)
    client_logged_in = threading.Event()
    client.loggedIn = client_logged_in.set
    with host, client:
        connector = threading.Thread(
            target=client.connect, args=(LOOPBACK, host.port), kwargs={"login": ANN}
        )
        connector.start()
        try:
            assert client.waitForLogin(timeout=WAIT) is True
        finally:
            connector.join(WAIT)
        assert not connector.is_alive()
        assert client_logged_in.wait(WAIT)
        wait_until(lambda: len(events) == 2)
        [attempt] = host.getLoginAttempts(username="ann", start_date=0, end_date=time.time() + 60)
        assert attempt.success
        host.saveUsers(tmp_path / "users.json")
    assert events == [("loggedIn", "ann"), ("newClient", "ann")]
    again = Host(LOOPBACK, 0, backend=sync_backend, loginRequired=True, accounts=fast_accounts())
    again.loadUsers(tmp_path / "users.json")
    assert again.users == ["ann"]


# --- wait_for_login from another thread ----------------------------------------------------


def test_wait_for_login_from_another_thread(sync_backend: Backend) -> None:
    with login_host(sync_backend) as host, Client(backend=sync_backend) as client:
        # The original library's pattern: one thread connects, another waits for the login.
        connector = threading.Thread(
            target=client.connect, args=(LOOPBACK, host.port), kwargs={"login": ANN}
        )
        connector.start()
        try:
            assert client.wait_for_login(timeout=WAIT) is True
        finally:
            connector.join(WAIT)
        assert not connector.is_alive()
        assert client.user == "ann"


def test_wait_for_login_from_another_thread_raises_when_the_login_fails(
    sync_backend: Backend,
) -> None:
    errors: list[BaseException] = []

    def connect_wrongly() -> None:
        try:
            client.connect(LOOPBACK, host.port, login=("ann", "wrong"))
        except AuthenticationError as exc:
            errors.append(exc)

    with login_host(sync_backend) as host, Client(backend=sync_backend) as client:
        connector = threading.Thread(target=connect_wrongly)
        connector.start()
        try:
            with pytest.raises(AuthenticationError) as info:
                client.wait_for_login(timeout=WAIT)
        finally:
            connector.join(WAIT)
        assert not connector.is_alive()
        assert [str(error) for error in errors] == [str(info.value)]


def test_wait_for_login_without_a_connect_sleeps_then_returns_false(
    sync_backend: Backend,
) -> None:
    with Client(backend=sync_backend) as client:
        start = time.monotonic()
        assert client.wait_for_login(timeout=2 * T) is False
        assert 2 * T - 0.02 <= time.monotonic() - start < WAIT


def test_blocking_login_calls_on_the_loop_thread_raise_wrong_thread_error(
    sync_backend: Backend,
) -> None:
    with login_host(sync_backend) as host, Client(backend=sync_backend) as client:
        client.connect(LOOPBACK, host.port, login=ANN)
        with pytest.raises(WrongThreadError):
            on_loop(client, lambda: client.wait_for_login(timeout=1))
        with pytest.raises(WrongThreadError):
            on_loop(client, client.logout)
        with pytest.raises(WrongThreadError):
            on_loop(client, lambda: client.waitForLogin(timeout=1))
        # Only looking does not block, and works anywhere.
        assert on_loop(client, lambda: client.wait_for_login(timeout=0)) is True
        # Still logged in and connected.
        client.send_data("still here")
        assert client.receive(timeout=WAIT).data == "still here"


# --- Logging out ------------------------------------------------------------------------------


def test_logout_closes_normally_and_lets_go_of_the_loop(sync_backend: Backend) -> None:
    host_saw: list[tuple[Any, ...]] = []
    host_lost = threading.Event()
    client_lost = threading.Event()
    host = login_host(sync_backend)

    def lost_client(conn: Connection) -> None:
        host_saw.append((conn.user, conn.close_code, conn.close_reason))
        host_lost.set()

    host.lost_client = lost_client  # type: ignore[method-assign]
    with host:
        client = Client(backend=sync_backend)
        client.lost_connection = client_lost.set  # type: ignore[method-assign]
        try:
            client.connect(LOOPBACK, host.port, login=ANN)
            leases = shared_loop(sync_backend).leases
            client.logout()
            # Returned once closed, with the callbacks run and the loop thread let go of.
            assert client_lost.is_set()
            assert shared_loop(sync_backend).leases == leases - 1
            conn = client.connection
            assert conn is not None
            assert conn.close_code == CloseCode.NORMAL == 1000
            assert conn.close_reason == "logged out"
            assert conn.closed_by_peer is True
            assert not client.connected
            assert client.wait_for_login(timeout=0) is False
            assert host_lost.wait(WAIT)
            assert host_saw == [("ann", CloseCode.NORMAL, "logged out")]
            assert host.clients == []
            # Idempotent, and a new connect() logs in again.
            client.logout()
            client.connect(LOOPBACK, host.port, login=BOB)
            assert client.user == "bob"
        finally:
            client.close()


def test_logout_does_nothing_when_not_logged_in(sync_backend: Backend) -> None:
    with Host(LOOPBACK, 0, backend=sync_backend) as host, Client(backend=sync_backend) as client:
        client.logout()  # never connected
        client.connect(LOOPBACK, host.port)
        client.logout()  # connected without login
        assert client.connected


def test_logout_from_inside_a_callback_returns_promptly(sync_backend: Backend) -> None:
    close_timeout = 50 * T
    host = login_host(sync_backend, close_timeout=close_timeout)
    client = Client(backend=sync_backend, close_timeout=close_timeout)
    took: list[float] = []
    done = threading.Event()

    def got_data(data: Any, metadata: dict[str, Any]) -> None:
        if data == "bye":
            start = time.monotonic()
            client.logout()
            took.append(time.monotonic() - start)
            done.set()

    client.got_data = got_data  # type: ignore[method-assign]
    with host, client:
        client.connect(LOOPBACK, host.port, login=ANN)
        for i in range(10):
            client.send_data(i)
        client.send_data("bye")
        assert done.wait(WAIT)
        conn = client.connection
        assert conn is not None
        assert (conn.close_code, conn.close_reason) == (CloseCode.NORMAL, "logged out")
    # Not held up by close_timeout waiting for the very callback that logged out.
    assert took[0] < close_timeout / 2


# --- Bans -----------------------------------------------------------------------------------


def test_five_failed_logins_ban_the_address_once(sync_backend: Backend) -> None:
    bans: list[tuple[str, str]] = []
    accounts = fast_accounts(max_failures=5, failure_window=60.0, ban_duration=60.0)
    host = login_host(sync_backend, accounts=accounts)
    host.ip_banned = lambda addr: bans.append((addr, where()))  # type: ignore[method-assign]
    with host:
        for _ in range(5):
            with Client(backend=sync_backend) as client:
                with pytest.raises(AuthenticationError, match="wrong user name or password"):
                    client.connect(LOOPBACK, host.port, login=("ann", "guess"))
        wait_until(lambda: bans != [])
        assert LOOPBACK in host.bans
        # Now even the right password is refused, at once.
        with Client(backend=sync_backend) as client:
            with pytest.raises(AuthenticationError, match="banned"):
                client.connect(LOOPBACK, host.port, login=ANN)
        assert [a.success for a in host.get_login_attempts(address=LOOPBACK)] == [False] * 5
        # Lifting the ban lets the address in again.
        assert host.unban_ip(LOOPBACK) is True
        assert host.bans == {}
        with Client(backend=sync_backend) as client:
            client.connect(LOOPBACK, host.port, login=ANN)
            assert client.user == "ann"
    assert bans == [(LOOPBACK, "alvaro-host-callbacks")]


def test_an_address_banned_by_hand_is_refused(sync_backend: Backend) -> None:
    bans: list[str] = []
    host = login_host(sync_backend)
    host.ip_banned = bans.append  # type: ignore[method-assign]
    with host:
        # From another thread than the caller of start(), while the host runs.
        call_in_thread(lambda: host.ban_ip(LOOPBACK, 60.0))
        assert 0 < host.bans[LOOPBACK] <= 60.0
        with Client(backend=sync_backend) as client:
            with pytest.raises(AuthenticationError, match="banned"):
                client.connect(LOOPBACK, host.port, login=ANN)
        assert host.get_login_attempts() == []  # refused before any login
        host.unban_ip(LOOPBACK)
        with Client(backend=sync_backend) as client:
            client.connect(LOOPBACK, host.port, login=ANN)
    assert bans == []  # only failed logins call ip_banned


# --- The user store -------------------------------------------------------------------------


def test_users_added_from_a_callback_can_log_in(sync_backend: Backend) -> None:
    host = login_host(sync_backend)

    def logged_in(conn: Connection, user: str) -> None:
        if user == "ann":
            host.add_user("carol", "s3cret")  # on the dispatcher thread, while running

    host.logged_in = logged_in  # type: ignore[method-assign]
    with host:
        with Client(backend=sync_backend) as client:
            client.connect(LOOPBACK, host.port, login=ANN)
        wait_until(lambda: "carol" in host.users)
        assert host.users == ["ann", "bob", "carol"]
        with Client(backend=sync_backend) as client:
            client.connect(LOOPBACK, host.port, login=("carol", "s3cret"))
            assert client.user == "carol"
        with pytest.raises(ValueError, match="exists"):
            host.add_user("carol", "other")
        host.add_user("carol", "other", replace=True)
        host.remove_user("bob")
        assert host.users == ["ann", "carol"]
        with Client(backend=sync_backend) as client, pytest.raises(AuthenticationError):
            client.connect(LOOPBACK, host.port, login=BOB)


def test_save_and_load_carry_users_bans_and_history(sync_backend: Backend, tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    with login_host(sync_backend) as host:
        with Client(backend=sync_backend) as client:
            client.connect(LOOPBACK, host.port, login=ANN)
        host.ban_ip("192.0.2.7")
        host.save(path)
    again = Host(LOOPBACK, 0, backend=sync_backend, login_required=True, accounts=fast_accounts())
    again.got_data = echo  # type: ignore[method-assign]
    again.load(path)
    assert again.users == ["ann", "bob"]
    assert list(again.bans) == ["192.0.2.7"]
    assert [(a.username, a.success) for a in again.get_login_attempts()] == [("ann", True)]
    with again, Client(backend=sync_backend) as client:
        client.connect(LOOPBACK, again.port, login=ANN)
        assert client.user == "ann"
    path.write_text("{not json")
    with pytest.raises(AccountsFileError):
        again.load(path)
    assert again.users == ["ann", "bob"]  # unchanged


def test_login_attributes_forward_to_the_async_host(sync_backend: Backend) -> None:
    accounts = fast_accounts()
    host = Host(LOOPBACK, 0, backend=sync_backend, accounts=accounts)
    assert host.login_required is False
    assert host.accounts is accounts
    assert host.authenticator is None
    host.login_required = True
    assert host._aio.login_required is True
    with pytest.raises(TypeError, match="not both"):
        Host(LOOPBACK, 0, backend=sync_backend, login_required=True, loginRequired=True)


# --- Bugs of alvaro.aio, seen through alvaro.sync ------------------------------------------------


class _SlowToSet(threading.Event):
    """An event whose set() takes a while, to widen a race window deterministically."""

    def set(self) -> None:
        time.sleep(5 * T)
        super().set()


def test_wait_for_login_never_reports_a_successful_login_as_failed() -> None:
    with login_host("asyncio") as host, Client() as client:
        client._aio._connected = _SlowToSet()
        connector = threading.Thread(
            target=client.connect, args=(LOOPBACK, host.port), kwargs={"login": ANN}
        )
        connector.start()
        try:
            result = client.wait_for_login(timeout=WAIT)
        finally:
            connector.join(WAIT)
        assert client.user == "ann"
        assert result is True


def test_wait_for_login_reports_a_banned_address_promptly() -> None:
    outcome: list[object] = []
    with login_host("asyncio") as host, Client() as client:
        host.ban_ip(LOOPBACK, 60.0)

        def wait() -> None:
            # No timeout: only the failed connect() can end this wait.
            try:
                outcome.append(client.wait_for_login(timeout=None))
            except AuthenticationError as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=wait)
        waiter.start()
        try:
            with pytest.raises(AuthenticationError, match="banned"):
                client.connect(LOOPBACK, host.port, login=ANN)
        finally:
            waiter.join(WAIT)
        assert not waiter.is_alive()
    [result] = outcome
    assert isinstance(result, AuthenticationError)
    assert "banned" in result.reason


def test_user_is_none_after_logout() -> None:
    with login_host("asyncio") as host, Client() as client:
        client.connect(LOOPBACK, host.port, login=ANN)
        client.logout()
        assert client.wait_for_login(timeout=0) is False
        assert client.user is None


def test_the_original_default_login_none_none_means_no_login() -> None:
    # The original library's Client.connect(login=(None, None)) default, passed explicitly.
    with Host(LOOPBACK, 0) as host, Client() as client:
        client.connect(LOOPBACK, host.port, login=(None, None))  # type: ignore[arg-type]
        assert client.connected
        assert client.user is None
