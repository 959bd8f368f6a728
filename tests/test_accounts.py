"""The accounts store: verifiers only, fake ones for unknown users, throttling, history, files."""

from __future__ import annotations

import base64
import json
import math
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import scramp  # type: ignore[import-untyped]  # scramp ships no type information
from hypothesis import given, strategies as st

from alvaro import AccountsFileError
from alvaro.auth import (
    DEFAULT_ITERATIONS,
    Accounts,
    LoginAttempt,
    Verifier,
    address_bucket,
)
from tests.helpers import FakeClock
from tests.hypothesis_profiles import default_settings

# scramp's minimum (RFC 7677): a derivation takes a few milliseconds.
FAST = 4096
PASSWORD = "correct horse battery staple \u00e9\u00e8"
POSIX = os.name == "posix"


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def accounts(fake_clock: FakeClock) -> Accounts:
    return Accounts(iterations=FAST, clock=fake_clock.clock, now=fake_clock.now)


@pytest.fixture
def derivations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts scramp's key derivations (one entry per call)."""
    calls: list[int] = []
    original = scramp.ScramMechanism.make_auth_info

    def counting(self, password, iteration_count=None, salt=None):
        calls.append(1)
        return original(self, password, iteration_count=iteration_count, salt=salt)

    monkeypatch.setattr(scramp.ScramMechanism, "make_auth_info", counting)
    return calls


def scram_login(info: Verifier, username: str, password: str) -> None:
    """Run a whole SCRAM-SHA-256 exchange; raises scramp.ScramException when it fails."""
    server = scramp.ScramMechanism("SCRAM-SHA-256").make_server(lambda _name: info)
    client = scramp.ScramClient(["SCRAM-SHA-256"], username, password)
    server.set_client_first(client.get_client_first())
    client.set_server_first(server.get_server_first())
    server.set_client_final(client.get_client_final())
    client.set_server_final(server.get_server_final())


def failed_login_error(info: Verifier, username: str, password: str) -> str:
    """Run the exchange as a host would; return what the host would put into its final message."""
    server = scramp.ScramMechanism("SCRAM-SHA-256").make_server(lambda _name: info)
    client = scramp.ScramClient(["SCRAM-SHA-256"], username, password)
    server.set_client_first(client.get_client_first())
    client.set_server_first(server.get_server_first())
    with pytest.raises(scramp.ScramException):
        server.set_client_final(client.get_client_final())
    final: str = server.get_server_final()
    return final


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("name", "password"),
    [
        ("", "pw"),
        ("a" * 65, "pw"),
        ("al/ice", "pw"),
        ("..\u0000", "pw"),
        ("al ice", "pw"),
        ("\u00e9mile", "pw"),
        ("alice", ""),
        ("alice", "x" * 1025),
        ("alice", "\u00e9" * 513),  # 1026 bytes in UTF-8, 513 characters
        ("alice", "bad\ud800"),
        ("alice", "tab\tcontrol"),
        ("alice", "\u00ad"),  # SASLprep maps it to nothing: an empty password
    ],
)
def test_invalid_input_is_refused_before_any_derivation(
    accounts: Accounts, derivations: list[int], name: str, password: str
) -> None:
    with pytest.raises(ValueError, match=r"user name|password"):
        accounts.add_user(name, password)
    assert derivations == []
    assert accounts.users == []


def test_non_str_input_is_a_type_error(accounts: Accounts, derivations: list[int]) -> None:
    with pytest.raises(TypeError):
        accounts.add_user("alice", b"secret")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        accounts.add_user(None, "secret")  # type: ignore[arg-type]
    assert derivations == []


def test_limits_are_inclusive(accounts: Accounts, derivations: list[int]) -> None:
    accounts.add_user("a" * 64, "x" * 1024)
    accounts.add_user("A.b_c-9", "\u00e9" * 512)  # exactly 1024 bytes
    assert len(derivations) == 2
    assert accounts.users == ["A.b_c-9", "a" * 64]


def test_duplicate_user_is_refused_before_derivation(
    accounts: Accounts, derivations: list[int]
) -> None:
    accounts.add_user("alice", PASSWORD)
    with pytest.raises(ValueError, match="exists"):
        accounts.add_user("alice", "other")
    assert len(derivations) == 1
    accounts.add_user("alice", "new password", replace=True)
    scram_login(accounts.auth_info("alice"), "alice", "new password")


def test_iteration_count_bounds() -> None:
    assert DEFAULT_ITERATIONS == 600_000
    assert Accounts().iterations == DEFAULT_ITERATIONS
    with pytest.raises(ValueError, match="iterations"):
        Accounts(iterations=4095)
    with pytest.raises(ValueError, match="iterations"):
        Accounts(iterations=10_000_001)


# ------------------------------------------------------------------------------ users


def test_user_management(accounts: Accounts) -> None:
    accounts.add_user("bob", "pw-bob")
    accounts.add_user("alice", PASSWORD)
    assert accounts.users == ["alice", "bob"]
    assert accounts.has_user("alice")
    assert not accounts.has_user("carol")
    accounts.remove_user("bob")
    assert accounts.users == ["alice"]
    with pytest.raises(KeyError):
        accounts.remove_user("bob")


def test_stored_info_is_a_scram_verifier(accounts: Accounts) -> None:
    accounts.add_user("alice", PASSWORD)
    info = accounts.auth_info("alice")
    assert isinstance(info, Verifier)
    assert info.iterations == FAST
    assert len(info.salt) == 32
    assert len(info.stored_key) == len(info.server_key) == 32
    # The same password for another user gives another salt and other keys.
    accounts.add_user("bob", PASSWORD)
    other = accounts.auth_info("bob")
    assert other.salt != info.salt
    assert other.stored_key != info.stored_key


def test_password_is_nowhere_in_memory_or_file(accounts: Accounts, tmp_path: Path) -> None:
    accounts.add_user("alice", PASSWORD)
    accounts.record_success("10.0.0.1", "alice")
    state = repr(vars(accounts)) + repr(accounts.auth_info("alice"))
    for form in (PASSWORD, PASSWORD.encode(), PASSWORD.encode().hex()):
        assert str(form) not in state
    path = tmp_path / "accounts.json"
    accounts.save(path)
    saved = path.read_bytes()
    assert PASSWORD.encode("utf-8") not in saved
    assert PASSWORD.encode("ascii", "backslashreplace") not in saved
    assert json.dumps(PASSWORD).encode() not in saved
    assert b"correct horse" not in saved


# ----------------------------------------------------------------- SCRAM interoperability


def test_scram_login_with_the_stored_verifier(accounts: Accounts) -> None:
    accounts.add_user("alice", PASSWORD)
    info = accounts.auth_info("alice")
    scram_login(info, "alice", PASSWORD)
    with pytest.raises(scramp.ScramException):
        scram_login(info, "alice", PASSWORD + "!")


def test_normalization_forms_are_the_same_password(accounts: Accounts) -> None:
    accounts.add_user("alice", "caf\u00e9")  # NFC
    scram_login(accounts.auth_info("alice"), "alice", "cafe\u0301")  # NFD


def test_unknown_user_fails_like_a_wrong_password(accounts: Accounts) -> None:
    accounts.add_user("alice", PASSWORD)
    wrong = failed_login_error(accounts.auth_info("alice"), "alice", "wrong")
    unknown = failed_login_error(accounts.auth_info("mallory"), "mallory", PASSWORD)
    assert wrong == unknown == "e=invalid-proof"
    # The challenge looks the same too: a salt of the same size and the same iteration count.
    fake = accounts.auth_info("mallory")
    real = accounts.auth_info("alice")
    assert len(fake.salt) == len(real.salt)
    assert fake.iterations == real.iterations
    assert not accounts.has_user("mallory")


def test_fake_info_is_stable_per_name_and_store(fake_clock: FakeClock, tmp_path: Path) -> None:
    one = Accounts(iterations=FAST, clock=fake_clock.clock, now=fake_clock.now)
    two = Accounts(iterations=FAST, clock=fake_clock.clock, now=fake_clock.now)
    assert one.auth_info("mallory") == one.auth_info("mallory")
    assert one.auth_info("mallory") != one.auth_info("trudy")
    assert one.auth_info("mallory").salt != one.auth_info("trudy").salt
    assert one.auth_info("mallory") != two.auth_info("mallory")
    # Even names that are not valid get a verifier, and it survives a save and a load.
    assert one.auth_info("x" * 500 + "\ud800").iterations == FAST
    path = tmp_path / "a.json"
    one.save(path)
    again = Accounts.load(path, iterations=FAST)
    assert again.auth_info("mallory") == one.auth_info("mallory")


def test_removed_user_gets_a_fake_verifier(accounts: Accounts) -> None:
    accounts.add_user("alice", PASSWORD)
    accounts.remove_user("alice")
    with pytest.raises(scramp.ScramException):
        scram_login(accounts.auth_info("alice"), "alice", PASSWORD)


# ------------------------------------------------------------------------- address bans


def test_ban_after_five_failures_within_the_window(
    accounts: Accounts, fake_clock: FakeClock
) -> None:
    for _ in range(4):
        assert accounts.record_failure("192.0.2.7", "alice") is False
        fake_clock.advance(60)
    assert not accounts.is_banned("192.0.2.7")
    assert accounts.record_failure("192.0.2.7", "nobody") is True
    assert accounts.is_banned("192.0.2.7")
    assert accounts.is_banned("::ffff:192.0.2.7")
    assert not accounts.is_banned("192.0.2.8")  # the original banned everyone (S8)
    assert accounts.bans == {"192.0.2.7": 600.0}
    # A failure during the ban is recorded but does not report a second ban.
    assert accounts.record_failure("192.0.2.7", "alice") is False
    assert len(accounts.login_attempts(address="192.0.2.7")) == 6


def test_failures_spread_over_more_than_the_window_do_not_ban(
    accounts: Accounts, fake_clock: FakeClock
) -> None:
    for _ in range(20):
        assert accounts.record_failure("192.0.2.7", "alice") is False
        fake_clock.advance(30 * 60 / 4 + 1)  # only four fit into any 30 minutes
    assert not accounts.is_banned("192.0.2.7")


def test_successes_do_not_reset_the_address_count(accounts: Accounts) -> None:
    for _ in range(4):
        accounts.record_failure("192.0.2.7", "alice")
        accounts.record_success("192.0.2.7", "bob")
    assert accounts.record_failure("192.0.2.7", "alice") is True


def test_ban_expires(accounts: Accounts, fake_clock: FakeClock) -> None:
    for _ in range(5):
        accounts.record_failure("192.0.2.7", "alice")
    fake_clock.advance(599.0)
    assert accounts.is_banned("192.0.2.7")
    assert accounts.bans == {"192.0.2.7": pytest.approx(1.0)}
    fake_clock.advance(1.0)
    assert not accounts.is_banned("192.0.2.7")
    assert accounts.bans == {}
    # The count started afresh: one more failure does not ban again.
    assert accounts.record_failure("192.0.2.7", "alice") is False


def test_ipv6_is_grouped_by_64(accounts: Accounts) -> None:
    assert address_bucket("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert address_bucket("2001:db8:1:2:aaaa::1%eth0") == "2001:db8:1:2::/64"
    assert address_bucket("::ffff:10.1.2.3") == "10.1.2.3"
    assert address_bucket("10.1.2.3") == "10.1.2.3"
    assert address_bucket("not an address") == "not an address"
    for host in range(5):
        accounts.record_failure(f"2001:db8:1:2::{host + 1:x}", "alice")
    assert accounts.is_banned("2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert not accounts.is_banned("2001:db8:1:3::1")
    assert list(accounts.bans) == ["2001:db8:1:2::/64"]


def test_manual_ban_and_unban(accounts: Accounts, fake_clock: FakeClock) -> None:
    accounts.ban("198.51.100.1", 30)
    accounts.ban("198.51.100.2")  # until unbanned
    assert accounts.bans == {"198.51.100.1": 30.0, "198.51.100.2": math.inf}
    fake_clock.advance(10_000)
    assert not accounts.is_banned("198.51.100.1")
    assert accounts.is_banned("198.51.100.2")
    assert accounts.unban("198.51.100.2") is True
    assert accounts.unban("198.51.100.2") is False
    assert accounts.bans == {}
    accounts.ban("198.51.100.3", 100)
    accounts.ban("198.51.100.3", 10)  # a shorter ban does not shorten the longer one
    assert accounts.bans == {"198.51.100.3": 100.0}
    with pytest.raises(ValueError, match="seconds"):
        accounts.ban("198.51.100.4", 0)


def test_unban_forgets_the_failures(accounts: Accounts) -> None:
    for _ in range(4):
        accounts.record_failure("192.0.2.7", "alice")
    accounts.unban("192.0.2.7")
    assert accounts.record_failure("192.0.2.7", "alice") is False


def test_configurable_policy(fake_clock: FakeClock) -> None:
    accounts = Accounts(
        iterations=FAST,
        max_failures=2,
        failure_window=10,
        ban_duration=5,
        clock=fake_clock.clock,
        now=fake_clock.now,
    )
    assert accounts.record_failure("192.0.2.1", "a") is False
    fake_clock.advance(11)
    assert accounts.record_failure("192.0.2.1", "a") is False
    assert accounts.record_failure("192.0.2.1", "a") is True
    assert accounts.bans == {"192.0.2.1": 5.0}


def test_concurrent_failures_ban_exactly_once(accounts: Accounts) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        results.extend(accounts.record_failure("192.0.2.9", "alice") for _ in range(10))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    assert len(accounts.login_attempts()) == 80


def test_tracked_addresses_stay_bounded(fake_clock: FakeClock) -> None:
    accounts = Accounts(iterations=FAST, max_tracked=10, clock=fake_clock.clock, now=fake_clock.now)
    for host in range(1000):
        accounts.record_failure(f"10.0.{host // 256}.{host % 256}", f"user{host}")
    assert len(accounts._addresses) <= 10
    assert len(accounts._names) <= 10
    fake_clock.advance(24 * 3600 + 1)
    accounts.record_failure("10.9.9.9", "someone")
    assert len(accounts._addresses) == 1
    assert len(accounts._names) == 1


# ------------------------------------------------------------------------ account delays


def test_account_delay_doubles_and_is_capped(accounts: Accounts) -> None:
    assert accounts.account_delay("alice") == 0.0
    expected = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 900.0, 900.0]
    for index, want in enumerate(expected):
        # Another address each time: the delay belongs to the account, not the address.
        accounts.record_failure(f"10.0.0.{index}", "alice")
        assert accounts.account_delay("alice") == want
    for _ in range(200):
        accounts.record_failure("10.0.1.1", "alice")
    assert accounts.account_delay("alice") == 900.0
    assert accounts.account_delay("bob") == 0.0


def test_account_delay_counts_down_and_resets_on_success(
    accounts: Accounts, fake_clock: FakeClock
) -> None:
    for _ in range(3):
        accounts.record_failure("10.0.0.1", "alice")
    assert accounts.account_delay("alice") == 4.0
    fake_clock.advance(3.0)
    assert accounts.account_delay("alice") == 1.0
    fake_clock.advance(5.0)
    assert accounts.account_delay("alice") == 0.0
    accounts.record_failure("10.0.0.2", "alice")
    assert accounts.account_delay("alice") == 8.0
    accounts.record_success("10.0.0.3", "alice")
    assert accounts.account_delay("alice") == 0.0
    accounts.record_failure("10.0.0.2", "alice")
    assert accounts.account_delay("alice") == 1.0


def test_an_administrator_can_clear_a_name_s_delay(accounts: Accounts) -> None:
    # Someone else's guesses keep alice waiting; clearing her delay does not touch the
    # address counts that lead to bans.
    for index in range(4):
        accounts.record_failure("10.0.0.1", "alice")
        accounts.record_failure("10.0.0.9", f"other{index}")
    assert accounts.account_delay("alice") == 8.0
    assert accounts.clear_delay("alice") is True
    assert accounts.account_delay("alice") == 0.0
    assert accounts.clear_delay("alice") is False
    assert not accounts.is_banned("10.0.0.1")
    assert accounts.record_failure("10.0.0.1", "alice") is True  # the fifth from there


def test_unknown_names_get_delays_too(accounts: Accounts) -> None:
    accounts.add_user("alice", PASSWORD)
    for _ in range(3):
        accounts.record_failure("10.0.0.1", "alice")
        accounts.record_failure("10.0.0.2", "mallory")
    assert accounts.account_delay("alice") == accounts.account_delay("mallory") == 4.0


# ------------------------------------------------------------------------------- history


def test_login_attempts_filters(accounts: Accounts, fake_clock: FakeClock) -> None:
    start = fake_clock.wall
    accounts.record_failure("10.0.0.1", "alice")
    fake_clock.advance(10)
    accounts.record_success("::ffff:10.0.0.2", "alice")
    fake_clock.advance(10)
    accounts.record_failure("10.0.0.2", "bob")
    fake_clock.advance(10)
    accounts.record_failure("2001:db8::1", "bob")

    everything = accounts.login_attempts()
    assert everything == [
        LoginAttempt(start, "10.0.0.1", "alice", False),
        LoginAttempt(start + 10, "10.0.0.2", "alice", True),
        LoginAttempt(start + 20, "10.0.0.2", "bob", False),
        LoginAttempt(start + 30, "2001:db8::1", "bob", False),
    ]
    assert accounts.login_attempts(username="alice") == everything[:2]
    assert accounts.login_attempts(address="10.0.0.2") == everything[1:3]
    assert accounts.login_attempts(address="::ffff:10.0.0.2") == everything[1:3]
    assert accounts.login_attempts(address="2001:0db8::0001") == everything[3:]
    assert accounts.login_attempts(start=start + 10) == everything[1:]
    assert accounts.login_attempts(end=start + 10) == everything[:2]
    assert accounts.login_attempts(username="bob", start=start + 25) == everything[3:]
    assert accounts.login_attempts(username="carol") == []


def test_history_is_bounded(fake_clock: FakeClock) -> None:
    accounts = Accounts(iterations=FAST, max_attempts=3, clock=fake_clock.clock, now=fake_clock.now)
    for index in range(10):
        accounts.record_success("10.0.0.1", f"u{index}")
    assert [a.username for a in accounts.login_attempts()] == ["u7", "u8", "u9"]
    accounts.record_failure("10.0.0.1", "x" * 10_000)
    assert len(accounts.login_attempts()[-1].username) == 128


# ------------------------------------------------------------------------- save and load


def test_save_and_load_round_trip(accounts: Accounts, fake_clock: FakeClock, tmp_path: Path):
    accounts.add_user("alice", PASSWORD)
    accounts.add_user("bob", "pw-bob")
    accounts.ban("198.51.100.1", 100)
    accounts.ban("198.51.100.2")
    accounts.ban("198.51.100.3", 5)
    accounts.record_failure("10.0.0.1", "alice")
    accounts.record_success("10.0.0.1", "bob")
    path = tmp_path / "accounts.json"
    accounts.save(path)

    document = json.loads(path.read_text("utf-8"))
    assert document["format"] == "alvaro-accounts"
    assert document["version"] == 1
    assert set(document["users"]["alice"]) == {
        "mechanism",
        "salt",
        "stored_key",
        "server_key",
        "iterations",
    }

    fake_clock.advance(10)  # both clocks: the 5 s ban is over, 90 s are left of the 100 s one
    later = FakeClock()
    later.mono = 5.0  # a new process: its monotonic clock has another origin
    later.wall = fake_clock.wall
    loaded = Accounts.load(path, iterations=FAST, clock=later.clock, now=later.now)
    assert loaded.users == ["alice", "bob"]
    assert loaded.auth_info("alice") == accounts.auth_info("alice")
    scram_login(loaded.auth_info("bob"), "bob", "pw-bob")
    assert loaded.bans == {"198.51.100.1": pytest.approx(90.0), "198.51.100.2": math.inf}
    assert loaded.login_attempts() == accounts.login_attempts()
    assert loaded.auth_info("nobody") == accounts.auth_info("nobody")


def test_a_ban_longer_than_a_file_holds_is_saved_without_end(
    accounts: Accounts, tmp_path: Path
) -> None:
    """A file holds times up to the year 9999: a longer ban is saved as one until removed, so
    that every file save() writes loads again."""
    accounts.ban("198.51.100.1", 1e12)  # some 30,000 years
    path = tmp_path / "accounts.json"
    accounts.save(path)
    assert json.loads(path.read_text("utf-8"))["blacklist"] == {"198.51.100.1": None}
    assert Accounts.load(path, iterations=FAST).bans == {"198.51.100.1": math.inf}


def test_restore_replaces_the_state(accounts: Accounts, tmp_path: Path) -> None:
    accounts.add_user("alice", PASSWORD)
    path = tmp_path / "accounts.json"
    accounts.save(path)
    accounts.add_user("bob", "pw")
    accounts.ban("198.51.100.1")
    accounts.restore(path)
    assert accounts.users == ["alice"]
    assert accounts.bans == {}


@pytest.mark.skipif(not POSIX, reason="POSIX permission bits")
def test_saved_file_is_owner_only(accounts: Accounts, tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text("old")
    path.chmod(0o644)
    old_umask = os.umask(0)
    try:
        accounts.save(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["accounts.json"]  # no temporary file left


def test_failed_save_leaves_the_old_file(
    accounts: Accounts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "accounts.json"
    accounts.save(path)
    before = path.read_bytes()
    accounts.add_user("alice", PASSWORD)

    def broken_fsync(fd: int) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk on fire"):
        accounts.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["accounts.json"]


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Accounts.load(tmp_path / "missing.json")


def _valid_document(accounts: Accounts, tmp_path: Path) -> dict[str, object]:
    accounts.add_user("alice", PASSWORD)
    accounts.record_failure("10.0.0.1", "bob")
    accounts.ban("10.0.0.9", 60)
    path = tmp_path / "source.json"
    accounts.save(path)
    document: dict[str, object] = json.loads(path.read_text("utf-8"))
    return document


def _corrupt_documents(document: dict[str, object]):
    def changed(**members: object) -> bytes:
        return json.dumps({**document, **members}).encode()

    alice = document["users"]["alice"]  # type: ignore[index]
    text = json.dumps(document).encode()
    yield "truncated", text[: len(text) // 2], "not JSON"
    yield "empty", b"", "not JSON"
    yield "binary", b"\xff\xfe\x00garbage", "not JSON"
    yield "not an object", b"[1, 2]", "format"
    yield "other format", changed(format="something-else"), "format"
    yield "future version", changed(version=2), "newer alvaro"
    yield "version text", changed(version="1"), "version"
    yield "no users", changed(users=None), "'users'"
    yield "bad secret", changed(secret="!!!"), "secret"
    yield "bad name", changed(users={"../etc": alice}), "user name"
    yield "bad base64", changed(users={"alice": {**alice, "stored_key": "@@"}}), "stored_key"
    yield "short key", changed(users={"alice": {**alice, "server_key": "AAAA"}}), "server_key"
    yield "few iterations", changed(users={"alice": {**alice, "iterations": 1}}), "iterations"
    yield "bad ban", changed(blacklist={"10.0.0.1": "soon"}), "ban"
    yield "bad attempt", changed(attempts=[{"time": 1}]), "attempt 0"
    yield "NaN", text.replace(b'"version": 1', b'"version": NaN'), "NaN"
    # Numbers of the right kind out of range, and of the wrong kind: each is named.
    attempt = document["attempts"][0]  # type: ignore[index]
    for label, count in (("float", 4096.0), ("bool", True), ("huge", 10**400), ("text", "4096")):
        iterations = {"alice": {**alice, "iterations": count}}
        yield f"{label} iterations", changed(users=iterations), "iterations must be an integer"
    long_salt = base64.b64encode(bytes(1025)).decode()
    yield "long salt", changed(users={"alice": {**alice, "salt": long_salt}}), "salt"
    short_salt = base64.b64encode(bytes(11)).decode()
    yield "short salt", changed(users={"alice": {**alice, "salt": short_salt}}), "salt"
    yield "huge ban end", changed(blacklist={"10.0.0.1": 10**400}), "ban of '10.0.0.1'"
    yield "negative ban end", changed(blacklist={"10.0.0.1": -1}), "ban of '10.0.0.1'"
    yield "bool ban end", changed(blacklist={"10.0.0.1": True}), "ban of '10.0.0.1'"
    yield "ban end past 9999", changed(blacklist={"10.0.0.1": 1e12}), "ban of '10.0.0.1'"
    yield "infinite ban end", text.replace(b'"10.0.0.9": ', b'"10.0.0.9": 1e400, "x": '), "ban"
    yield "huge attempt time", changed(attempts=[{**attempt, "time": 10**400}]), "attempt 0"
    yield "negative attempt time", changed(attempts=[{**attempt, "time": -5.0}]), "attempt 0"
    yield "string attempt time", changed(attempts=[{**attempt, "time": "now"}]), "attempt 0"
    yield "bool attempt time", changed(attempts=[{**attempt, "time": False}]), "attempt 0"
    yield "float version", changed(version=1.0), "version"
    yield "huge version", changed(version=10**400), f"unknown version {'1' + '0' * 36}..."
    yield "negative version", changed(version=-1), "unknown version -1"
    digits = b"9" * 5000  # more than int() reads: ValueError, not JSONDecodeError
    yield "long integer", text.replace(b'"version": 1', b'"version": ' + digits), "too long"


def test_corrupt_files_give_a_clear_error(accounts: Accounts, tmp_path: Path) -> None:
    """BUG: a ban end or attempt time of 10**400 raised OverflowError, a 5000-digit integer a
    bare ValueError without the file's name, and 1e12 or 1e400 as an end was taken."""
    document = _valid_document(accounts, tmp_path)
    for label, content, words in _corrupt_documents(document):
        path = tmp_path / f"{label.replace(' ', '-')}.json"
        path.write_bytes(content)
        with pytest.raises(AccountsFileError, match="not a valid alvaro accounts file") as caught:
            Accounts.load(path, iterations=FAST)
        assert str(path) in str(caught.value), label
        assert words in str(caught.value), (label, str(caught.value))
        assert len(str(caught.value)) < 400, label  # no 4000-digit number in the message


def test_failed_restore_leaves_the_store_as_it_was(accounts: Accounts, tmp_path: Path) -> None:
    accounts.add_user("alice", PASSWORD)
    path = tmp_path / "broken.json"
    path.write_bytes(b'{"format": "alvaro-accounts", "version": 1, "users": {')
    with pytest.raises(ValueError, match=r"broken\.json"):
        accounts.restore(path)
    assert accounts.users == ["alice"]


# --------------------------------------------------- numbers of a saved file, damaged at random

#: Where a saved file holds numbers (or null, for a ban without an end).
_NUMBER_PATHS: tuple[tuple[str | int, ...], ...] = (
    ("version",),
    ("users", "alice", "iterations"),
    ("blacklist", "198.51.100.1"),
    ("blacklist", "198.51.100.2"),
    ("attempts", 0, "time"),
    ("attempts", 1, "time"),
)
# What json.dumps cannot write: put into the text afterwards, in place of these strings.
_RAW_NUMBERS = {'"<5000 digits>"': "9" * 5000, '"<1e400>"': "1e400", '"<-1e400>"': "-1e400"}

_ODD_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([10**400, -(10**400), 2**63, 253_402_300_800, 253_402_300_799]),
    st.floats(),  # NaN and the infinities included: written as NaN, Infinity, -Infinity
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.sampled_from([[], {}, *_RAW_NUMBERS]),
)


@pytest.fixture(scope="module")
def saved_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, object], Accounts]:
    """A saved document with a user, a timed and an endless ban and two login attempts, and a
    store to restore damaged copies into."""
    source = Accounts(iterations=FAST)
    source.add_user("alice", PASSWORD)
    source.ban("198.51.100.1", 3600)
    source.ban("198.51.100.2")
    source.record_failure("10.0.0.1", "bob")
    source.record_success("10.0.0.1", "alice")
    path = tmp_path_factory.mktemp("saved") / "accounts.json"
    source.save(path)
    document: dict[str, object] = json.loads(path.read_bytes())
    return document, source


@default_settings()
@given(changes=st.lists(st.tuples(st.sampled_from(_NUMBER_PATHS), _ODD_VALUES), min_size=1))
def test_damaged_numbers_raise_accounts_file_error_or_load_in_range(
    saved_store: tuple[dict[str, object], Accounts],
    tmp_path_factory: pytest.TempPathFactory,
    changes: list[tuple[tuple[str | int, ...], object]],
) -> None:
    """Whatever number (or other value) replaces the numbers of a saved file, loading it either
    raises AccountsFileError, naming the file and changing nothing, or gives values in range
    that save and load again: never OverflowError, a bare ValueError or a TypeError."""
    document, store = saved_store
    damaged = json.loads(json.dumps(document))
    for path, value in changes:
        target = damaged
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    text = json.dumps(damaged, allow_nan=True)
    for placeholder, raw in _RAW_NUMBERS.items():
        text = text.replace(placeholder, raw)
    folder = tmp_path_factory.mktemp("damaged", numbered=True)
    path = folder / "accounts.json"
    path.write_text(text, "utf-8")

    def state() -> tuple[object, ...]:
        return store.users, store.bans.keys(), store.login_attempts(), store._secret

    before = state()
    try:
        loaded = Accounts.load(path, iterations=FAST)
    except AccountsFileError as exc:
        error: str | None = str(exc)
    else:
        error = None
    if error is not None:
        assert str(path) in error
        with pytest.raises(AccountsFileError):
            store.restore(path)
        assert state() == before
        return
    for attempt in loaded.login_attempts():
        assert 0 <= attempt.time <= 253_402_300_799
    assert all(left > 0 for left in loaded.bans.values())
    assert loaded.auth_info("alice").iterations == damaged["users"]["alice"]["iterations"]
    loaded.save(folder / "again.json")
    assert Accounts.load(folder / "again.json", iterations=FAST).users == ["alice"]


_SAVER = textwrap.dedent(
    """
    import sys
    from alvaro.auth import Accounts

    path = sys.argv[1]
    accounts = Accounts.load(path, iterations=4096, max_attempts=100_000)
    generation = len(accounts.login_attempts())
    sys.stdout.write("ready\\n")
    sys.stdout.flush()
    while True:
        accounts.record_success("10.0.0.1", f"u{generation}")
        generation += 1
        accounts.save(path)
    """
)


@pytest.mark.skipif(not POSIX, reason="SIGKILL")
def test_killed_during_saves_leaves_a_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    first = Accounts(iterations=FAST, max_attempts=100_000)
    first.add_user("alice", PASSWORD)
    first.save(path)
    script = tmp_path / "saver.py"
    script.write_text(_SAVER)
    rng = random.Random()
    generations = 0
    for _ in range(5):
        child = subprocess.Popen(
            [sys.executable, str(script), str(path)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == b"ready\n"
            threading.Event().wait(rng.uniform(0.05, 0.25))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        loaded = Accounts.load(path, iterations=FAST, max_attempts=100_000)
        names = [attempt.username for attempt in loaded.login_attempts()]
        # Old or new content: every generation up to the last one saved, in order, no gaps.
        assert names == [f"u{index}" for index in range(len(names))]
        assert len(names) >= generations
        generations = len(names)
        assert loaded.users == ["alice"]
    assert generations > 0


def test_save_removes_temporary_files_left_by_killed_saves(tmp_path: Path) -> None:
    accounts = Accounts(iterations=FAST)
    accounts.add_user("alice", PASSWORD)
    target = tmp_path / "accounts.json"
    stale = tmp_path / ".accounts.json.0123456789abcdef.tmp"  # a save killed long ago
    fresh = tmp_path / ".accounts.json.fedcba9876543210.tmp"  # perhaps another save right now
    unrelated = tmp_path / ".other.json.0123456789abcdef.tmp"
    for path in (stale, fresh, unrelated):
        path.write_bytes(b"{")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(unrelated, (old, old))
    accounts.save(target)
    assert not stale.exists()
    assert fresh.exists()
    assert unrelated.exists()
    assert Accounts.load(target, iterations=FAST).users == ["alice"]
