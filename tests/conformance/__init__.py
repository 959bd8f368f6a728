"""Protocol conformance suite (reliability case R27), in the style of the Autobahn test suite.

``cases.py`` is a table of byte-level cases derived from ``docs/protocol.md``: what a raw peer
sends (in one write or many, with pauses), and what the implementation must do about it.
``runner.py`` plays each case against a real :class:`alvaro.aio.Host` (the raw peer is the
client) and a real :class:`alvaro.aio.Client` (the raw peer is a fake host), watches the wire and
the API, and rates each run OK, NON-STRICT or FAILED.

``test_conformance.py`` is the CI gate (pytest, both anyio backends): a FAILED run fails its test,
and the report is printed at the end of the session. ``python -m tests.conformance`` runs the
whole table on asyncio and trio, prints the report, and exits non-zero if any run FAILED.
"""
