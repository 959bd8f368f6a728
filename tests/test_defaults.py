"""The default limits and timeouts, pinned: changing one must be a reviewed decision.

Every figure here is documented in docs/limits.md with the reason for its value; a change to a
default must change this test, that page and the CHANGELOG together.
"""

from __future__ import annotations

import inspect
import math

import pytest

import alvaro
import alvaro.sync
from alvaro import Settings
from alvaro.aio._admission import FD_RESERVE
from alvaro.protocol import CONTROL_LIMIT

KIB = 1024
MIB = 1024 * KIB

SETTINGS_DEFAULTS = {
    "max_message_size": 1 * MIB,
    "max_metadata_size": 64 * KIB,
    "max_queue": 16,
    "max_queue_bytes": 4 * MIB,
    "write_limit": 64 * KIB,
    "outbox_limit": 8 * MIB,
    "open_timeout": 10.0,
    "login_timeout": 10.0,
    "close_timeout": 10.0,
    "ping_interval": 20.0,
    "ping_timeout": 20.0,
    "frame_timeout": 30.0,
    "write_timeout": 10.0,
    "request_timeout": 30.0,
    "max_pending_requests": 1024,
    "max_concurrent_requests": 128,
    "reply_tracebacks": False,
}

HOST_DEFAULTS = {"max_connections": 1024, "max_unauthenticated_per_address": 16}


def test_settings_defaults() -> None:
    settings = Settings()
    assert {name: getattr(settings, name) for name in SETTINGS_DEFAULTS} == SETTINGS_DEFAULTS
    # Nothing new without a pinned default.
    assert set(Settings.__dataclass_fields__) == set(SETTINGS_DEFAULTS)


@pytest.mark.parametrize("host_class", [alvaro.aio.Host, alvaro.sync.Host])
def test_host_defaults(host_class: type) -> None:
    parameters = inspect.signature(host_class).parameters
    assert {name: parameters[name].default for name in HOST_DEFAULTS} == HOST_DEFAULTS
    host = host_class()
    assert {name: getattr(host, name) for name in HOST_DEFAULTS} == HOST_DEFAULTS


def test_host_and_client_use_the_settings_defaults() -> None:
    assert alvaro.aio.Host().settings == Settings()
    assert alvaro.aio.Client().settings == Settings()


def test_protocol_limits() -> None:
    # Every frame before a connection is open (HELLO, and CLOSE, PING, PONG at any time) is a
    # control frame of at most 4 KiB: what an unauthenticated peer can make the host buffer.
    assert CONTROL_LIMIT == 4 * KIB
    # File descriptors kept back from max_connections for everything else.
    assert FD_RESERVE == 64


@pytest.mark.parametrize("name", ["frame_timeout", "write_timeout", "request_timeout"])
def test_new_timeouts_take_seconds_or_none(name: str) -> None:
    assert getattr(Settings(**{name: None}), name) is None
    assert getattr(Settings(**{name: 0.5}), name) == 0.5
    for bad in (0, -1, math.nan, math.inf, True, "1"):
        with pytest.raises(ValueError, match=name):
            Settings(**{name: bad})


@pytest.mark.parametrize(
    "name", ["max_queue_bytes", "max_pending_requests", "max_concurrent_requests"]
)
def test_counts_are_positive_integers(name: str) -> None:
    assert getattr(Settings(**{name: 1}), name) == 1
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=name):
            Settings(**{name: bad})


def test_reply_tracebacks_is_a_bool() -> None:
    assert Settings(reply_tracebacks=True).reply_tracebacks is True
    for bad in (1, "yes", None):
        with pytest.raises(ValueError, match="reply_tracebacks"):
            Settings(reply_tracebacks=bad)  # type: ignore[arg-type]


#: The login policy of reliability.md section 9: OWASP's PBKDF2 iteration count, 5 failures in
#: 30 minutes ban an address for 10 minutes, per-name delays from 1 s doubling to 15 minutes.
ACCOUNTS_DEFAULTS = {
    "iterations": 600_000,
    "max_failures": 5,
    "failure_window": 1800.0,
    "ban_duration": 600.0,
    "delay_base": 1.0,
    "delay_max": 900.0,
}


def test_login_defaults() -> None:
    from alvaro.auth import Accounts

    parameters = inspect.signature(Accounts).parameters
    assert {name: parameters[name].default for name in ACCOUNTS_DEFAULTS} == ACCOUNTS_DEFAULTS
    host = alvaro.aio.Host()
    assert host.login_required is False
    assert host.accounts.iterations == 600_000
    assert inspect.signature(alvaro.aio.Host).parameters["login_required"].default is False
