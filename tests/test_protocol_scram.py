"""The two fields the protocol reads of SCRAM messages (alvaro.protocol.scram), sans I/O."""

from __future__ import annotations

import pytest

from alvaro.protocol.scram import (
    MAX_ITERATIONS,
    MIN_ITERATIONS,
    challenge_iterations,
    client_first_user,
)

# RFC 7677's example exchange (user "user", password "pencil").
CLIENT_FIRST = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SERVER_FIRST = (
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)


def test_the_user_name_of_a_client_first_message() -> None:
    assert client_first_user(CLIENT_FIRST) == "user"
    assert client_first_user("n,a=admin,n=alice,r=abc") == "alice"


@pytest.mark.parametrize("message", ["", "n,,", "n,,r=abc", "n,,x=alice,r=abc", "nonsense"])
def test_no_user_name_is_an_empty_one(message: str) -> None:
    assert client_first_user(message) == ""


def test_the_iteration_count_of_a_server_first_message() -> None:
    assert challenge_iterations(SERVER_FIRST) == 4096


@pytest.mark.parametrize(
    "message", ["", "r=abc,s=c2FsdA==", "r=abc,i=,s=x", "i=12a", "i=-5", "i=٣"]
)
def test_an_unreadable_count_is_none(message: str) -> None:
    assert challenge_iterations(message) is None


def test_a_count_too_long_to_read_is_too_many_without_being_converted() -> None:
    assert challenge_iterations("r=abc,i=" + "9" * 5000) == MAX_ITERATIONS + 1
    assert challenge_iterations("i=" + "1" * 37) == int("1" * 37)


def test_the_bounds_are_rfc_7677s_minimum_and_a_denial_of_service_cap() -> None:
    assert MIN_ITERATIONS == 4096
    assert MAX_ITERATIONS == 10_000_000
