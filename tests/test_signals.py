"""Stopping a service with SIGINT (Ctrl+C) and SIGTERM, in real processes.

* ``alvaro.sync.Host.serve_forever()`` (``tests/process_peers/sync_host.py``) and ``alvaro demo``
  (``tests/process_peers/stalled_demo.py``, which holds the demo halfway) stop gracefully on
  either signal: the clients get GOING_AWAY after what was queued for them, and nothing is
  printed (the demo prints one line), no traceback.
* A second signal during a slow shutdown (a client that never answers the close, with a
  close_timeout of ten minutes) stops the process at once, still without a traceback.
* Exit status: a script that ends with ``serve_forever()`` exits with 0 (it returns the
  signal); ``alvaro demo`` exits with 128 plus the first signal's number (130, 143).
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import TypeVar

import pytest

import alvaro.sync
from alvaro import CloseCode, ConnectionClosedOK
from alvaro.protocol import Close, Decoder, Event, Hello, encode_hello

from .helpers import WAIT
from .processes import Peer

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

E = TypeVar("E", bound=Event)
ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ["asyncio", "trio"]
SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]


def read_until(sock: socket.socket, decoder: Decoder, kind: type[E]) -> E:
    """Read from a blocking socket (with a timeout) until the decoder yields a ``kind``."""
    while True:
        for event in decoder.events():
            if isinstance(event, kind):
                return event
        chunk = sock.recv(65536)
        assert chunk, f"EOF before a {kind.__name__}"
        decoder.receive_data(chunk)


# --- alvaro.sync.Host.serve_forever() -------------------------------------------------------


@pytest.mark.parametrize("signum", SIGNALS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_serve_forever_stops_gracefully_and_quietly_on_a_signal(
    backend: str, signum: signal.Signals
) -> None:
    """BUG: Ctrl+C printed an 8-line traceback, and SIGTERM killed the process: its clients
    saw close code 1006 (ABNORMAL) instead of GOING_AWAY."""
    with Peer("tests.process_peers.sync_host", "--backend", backend) as host:
        port = int(host.wait_for("listening ").split()[1])
        with alvaro.sync.connect("127.0.0.1", port, backend=backend) as client:
            host.wait_for("new client")
            client.send_data("a burst, please", metadata={"burst": 500})
            host.wait_for("queued 500")
            host.signal(signum)
            # What was queued comes first, then the host's GOING_AWAY.
            assert [client.receive(timeout=WAIT).data for _ in range(500)] == list(range(500))
            with pytest.raises(ConnectionClosedOK) as closed:
                client.receive(timeout=WAIT)
            assert closed.value.code == CloseCode.GOING_AWAY
            assert closed.value.by_peer
        status = host.finish()
    assert host.stderr == []  # no traceback, nothing at all
    assert status == 0
    assert host.stdout[-1] == f"returned {signum.name}"


@pytest.mark.parametrize(
    ("first", "second"),
    [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM, signal.SIGINT)],
    ids=["SIGINT-SIGINT", "SIGTERM-SIGINT"],
)
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_second_signal_drops_a_client_that_never_answers_the_close(
    backend: str, first: signal.Signals, second: signal.Signals
) -> None:
    """BUG: the second Ctrl+C added a second, chained traceback."""
    args = ("--backend", backend, "--close-timeout", "600")
    with Peer("tests.process_peers.sync_host", *args) as host:
        port = int(host.wait_for("listening ").split()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
            decoder = Decoder("client")
            sock.sendall(encode_hello("client"))
            read_until(sock, decoder, Hello)
            host.wait_for("new client")
            host.signal(first)
            # The host says GOING_AWAY, then would wait ten minutes for an answer.
            assert read_until(sock, decoder, Close).code == CloseCode.GOING_AWAY
            host.signal(second)
            status = host.finish()
            assert sock.recv(65536) == b""  # dropped
    assert host.stderr == []
    assert status == 0
    assert host.stdout[-1] == f"returned {first.name}"


# --- alvaro demo ----------------------------------------------------------------------------


@pytest.mark.parametrize("signum", SIGNALS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_stops_gracefully_on_a_signal_with_one_line(
    backend: str, signum: signal.Signals
) -> None:
    with Peer("tests.process_peers.stalled_demo", "--backend", backend) as demo:
        demo.wait_for("stalled")
        demo.signal(signum)
        status = demo.finish()
    assert demo.stderr == [f"alvaro demo: stopping ({signum.name})"]
    assert status == 128 + signum
    # Both clients got the host's GOING_AWAY; the transcript said nothing of the stop.
    closes = [line for line in demo.stdout if line.startswith("closed")]
    assert closes == [f"closed {CloseCode.GOING_AWAY}"] * 2
    assert not [line for line in demo.stdout if "lost" in line or "stopping" in line]
    assert not [line for line in demo.stdout if line.startswith("done")]


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_a_second_signal_stops_it_at_once(backend: str) -> None:
    with Peer("tests.process_peers.stalled_demo", "--slow-close", "--backend", backend) as demo:
        demo.wait_for("stalled")
        demo.signal(signal.SIGINT)
        demo.wait_for("close received")  # the graceful stop has begun, and would take 600 s
        demo.signal(signal.SIGTERM)
        status = demo.finish()
    assert demo.stderr == ["alvaro demo: stopping (SIGINT)"]
    assert status == 128 + signal.SIGINT
