"""Hypothesis profiles for alvaro's property and fuzz tests.

Import this module from every test module that uses Hypothesis: importing it registers the
profiles and loads the one named by the environment variable ``ALVARO_HYPOTHESIS_PROFILE``
(``ci`` when it is not set).

``ci`` (the default)
    500 examples per property test, derandomized: every run, on every machine, tries the same
    examples, so a failure in CI reproduces locally with the same command. No deadline (a shared
    CI machine is too noisy for one).
``long``
    50 000 examples per property test, with a fresh random seed on every run, so that repeated
    runs explore new inputs. A failure prints a ``@reproduce_failure`` blob to replay it.
``smoke``
    10 derandomized examples: checks in seconds that every property test runs at all, the long
    ones included.

Tests that run in the default suite take their settings from :func:`default_settings`, that is
from the selected profile. The long runs are marked ``@pytest.mark.slow``, so that they only run
with ``python3 -m pytest -m slow``, and take theirs from :func:`long_settings`: always the
``long`` profile, except under ``smoke``.
"""

from __future__ import annotations

import os
from typing import Any, Final

from hypothesis import HealthCheck, settings

ENV_VARIABLE: Final = "ALVARO_HYPOTHESIS_PROFILE"
DEFAULT_PROFILE: Final = "ci"

settings.register_profile(
    "ci",
    max_examples=500,
    derandomize=True,
    deadline=None,
    print_blob=True,
)
settings.register_profile(
    "long",
    max_examples=50_000,
    derandomize=False,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "smoke",
    max_examples=10,
    derandomize=True,
    deadline=None,
    print_blob=True,
)

PROFILE: Final = os.environ.get(ENV_VARIABLE) or DEFAULT_PROFILE
settings.load_profile(PROFILE)  # an unknown name fails here, loudly, at collection

LONG_PROFILE: Final = "smoke" if PROFILE == "smoke" else "long"
"""The profile of the ``@pytest.mark.slow`` runs."""

LONG_TIMEOUT: Final = 4 * 60 * 60
"""pytest-timeout limit, in seconds, for one test of the long profile."""


def default_settings(fraction: float = 1.0, **changes: Any) -> settings:
    """Settings of the selected profile, for a test of the default (not slow) run.

    ``fraction`` scales the profile's number of examples, for tests that are costly and matter
    less than the round-trip and malformed-input properties; ``changes`` override other settings.
    """
    profile = settings.get_profile(PROFILE)
    examples = max(1, round(profile.max_examples * fraction))
    return settings(profile, max_examples=examples, **changes)


def long_settings(**changes: Any) -> settings:
    """Settings of a ``@pytest.mark.slow`` run: the ``long`` profile, or ``smoke`` under smoke."""
    return settings(settings.get_profile(LONG_PROFILE), **changes)
