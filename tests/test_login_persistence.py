"""R16: the saved accounts store, through the Host's API (``add_user``, ``save``, ``load``).

* A process killed (SIGKILL) at random moments while it saves again and again leaves a file that
  ``Host().load()`` always reads, with either the old or the new content, owner-only
  (``tests/process_peers/accounts_saver.py`` is that process; 10 kills by default, 50 under
  ``-m slow``; ``ALVARO_KILL_SEED`` replays a run).
* The file holds SCRAM verifiers only: no password, in any form; mode 0600 whatever the umask.
* A corrupt, truncated or foreign file raises :class:`alvaro.AccountsFileError` naming the file,
  and the host is left as it was.
* A host that loads a saved store lets its users log in again, end to end on asyncio and trio.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

import alvaro
from alvaro import AccountsFileError, AuthenticationError
from alvaro.aio import connect
from alvaro.auth import Accounts

from .helpers import WAIT, T
from .process_peers.accounts_saver import USERS, generation_password, generation_users

SAVER = Path(__file__).parent / "process_peers" / "accounts_saver.py"
POSIX = os.name == "posix"
FAST = 4096
OPTIONS: dict[str, Any] = {"open_timeout": 20 * T, "login_timeout": 20 * T, "close_timeout": 5 * T}
#: The seed of the moments of the kills; set ALVARO_KILL_SEED to replay a failed run.
KILL_SEED = int(os.environ.get("ALVARO_KILL_SEED", "16"))


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_no_password(data: bytes, passwords: list[str]) -> None:
    """``data`` holds none of ``passwords``: not as UTF-8, not as base64 at any alignment."""
    for password in passwords:
        secret = password.encode()
        assert secret not in data, password
        for shift in range(3):
            form = base64.b64encode(bytes(shift) + secret)[4 if shift else 0 : -4]
            assert form not in data, password


def run_saver_and_kill(path: Path, wait: float) -> int:
    """Start the saver on ``path``, SIGKILL it ``wait`` seconds after its first save; return
    how many generation users that first save held."""
    child = subprocess.Popen(
        [sys.executable, "-u", str(SAVER), str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    watchdog = threading.Timer(WAIT, child.kill)  # a saver that never gets ready fails the test
    watchdog.start()
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        threading.Event().wait(wait)
    finally:
        child.send_signal(signal.SIGKILL)
        watchdog.cancel()
        _, errors = child.communicate(timeout=WAIT)
    assert line.startswith("ready "), f"the saver did not start: {line!r} {errors}"
    assert child.returncode == -signal.SIGKILL, errors
    return int(line.split()[1])


@pytest.mark.skipif(not POSIX, reason="SIGKILL")
@pytest.mark.parametrize("runs", [10, pytest.param(50, marks=pytest.mark.slow)])
def test_r16_killed_while_saving_leaves_the_old_or_the_new_file(tmp_path: Path, runs: int) -> None:
    path = tmp_path / "accounts.json"
    rng = random.Random(f"{KILL_SEED}/{runs}")
    saved = 0
    for run in range(runs):
        where = f"run {run}, ALVARO_KILL_SEED={KILL_SEED}"
        ready = run_saver_and_kill(path, rng.uniform(0.0, 0.15))
        host = alvaro.Host()
        host.load(path)  # never a broken file
        generations = generation_users(host.users)
        # Each save holds one more user than the one before: whatever was read is one of them.
        assert generations == list(range(1, len(generations) + 1)), where
        assert set(host.users) == set(USERS) | {f"gen{k}" for k in generations}, where
        assert len(generations) >= max(ready, saved), where
        saved = len(generations)
        assert mode_of(path) == 0o600, where
        data = path.read_bytes()
        assert_no_password(
            data, [*USERS.values(), *(generation_password(k) for k in range(1, saved + 2))]
        )
        # A save cut short may leave its temporary file behind: owner-only too.
        for leftover in tmp_path.glob(".accounts.json.*.tmp"):
            assert mode_of(leftover) == 0o600, (where, leftover)
    assert saved > runs  # the saver did save between kills


def test_r16_saved_file_holds_verifiers_only_and_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    path.write_text("{}")
    path.chmod(0o644)
    host = alvaro.Host(login_required=True, accounts=Accounts(iterations=FAST))
    host.add_user("alice", USERS["alice"])
    host.add_user("bob", USERS["alice"])  # the same password: nothing in common in the file
    previous = os.umask(0)
    try:
        host.save(path)
    finally:
        os.umask(previous)
    assert mode_of(path) == 0o600
    data = path.read_bytes()
    assert_no_password(data, list(USERS.values()))
    users = json.loads(data)["users"]
    assert set(users) == {"alice", "bob"}
    for record in users.values():
        assert set(record) == {"mechanism", "salt", "stored_key", "server_key", "iterations"}
        assert record["mechanism"] == "SCRAM-SHA-256"
        assert record["iterations"] == FAST
    for field in ("salt", "stored_key", "server_key"):
        assert users["alice"][field] != users["bob"][field]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accounts.json"]  # no temporary left


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _newer(data: bytes) -> bytes:
    return data.replace(b'"version": 1', b'"version": 99')


def _bad_key(data: bytes) -> bytes:
    document = json.loads(data)
    document["users"]["alice"]["stored_key"] = "not base64!"
    return json.dumps(document).encode()


def _huge_ban_end(data: bytes) -> bytes:
    document = json.loads(data)
    document["blacklist"]["198.51.100.7"] = 10**400  # OverflowError, once
    return json.dumps(document).encode()


def _long_integer(data: bytes) -> bytes:
    # More digits than int() reads: a bare ValueError without the file's name, once.
    return data.replace(b'"version": 1', b'"version": ' + b"1" * 5000)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(_huge_ban_end, id="huge_ban_end"),
        pytest.param(_long_integer, id="long_integer"),
        pytest.param(_truncated, id="truncated"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: b"\xff\xfe garbage", id="not_utf8"),
        pytest.param(lambda data: b'{"format": "something else", "version": 1}', id="foreign"),
        pytest.param(_newer, id="newer_version"),
        pytest.param(_bad_key, id="bad_record"),
    ],
)
def test_r16_corrupt_file_raises_accounts_file_error_naming_it(tmp_path: Path, damage: Any) -> None:
    source = alvaro.Host(accounts=Accounts(iterations=FAST))
    source.add_user("alice", USERS["alice"])
    path = tmp_path / "damaged accounts.json"
    source.save(path)
    path.write_bytes(damage(path.read_bytes()))
    host = alvaro.Host(accounts=Accounts(iterations=FAST))
    host.add_user("bob", USERS["bob"])
    with pytest.raises(AccountsFileError) as info:
        host.load(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)
    assert host.users == ["bob"]  # left as it was


def test_r16_loading_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        alvaro.Host().load(tmp_path / "nothing here.json")


@pytest.mark.anyio
async def test_r16_a_loaded_store_lets_its_users_log_in_again(tmp_path: Path) -> None:
    path = tmp_path / "accounts.json"
    first = alvaro.Host(login_required=True, accounts=Accounts(iterations=FAST))
    for name, password in USERS.items():
        first.add_user(name, password)
    first.ban_ip("127.0.0.9")
    first.save(path)

    host = alvaro.Host("127.0.0.1", 0, login_required=True, **OPTIONS)
    host.load(path)
    assert host.users == sorted(USERS)
    assert "127.0.0.9" in host.bans
    async with host:
        for name, password in USERS.items():
            with anyio.fail_after(WAIT):
                async with connect("127.0.0.1", host.port, login=(name, password), **OPTIONS) as c:
                    assert c.user == name
        with anyio.fail_after(WAIT), pytest.raises(AuthenticationError):
            async with connect("127.0.0.1", host.port, login=("alice", "wrong"), **OPTIONS):
                pass
    assert [(a.username, a.success) for a in host.get_login_attempts()] == [
        *((name, True) for name in USERS),
        ("alice", False),
    ]
