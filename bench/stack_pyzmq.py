"""Peer: pyzmq's blocking API, json per message.

One-way and bulk: PUSH/PULL (client PUSH to the server's PULL), plus a second PUSH/PULL pair
the other way for the server's "hello" and "done" answers, since PUSH/PULL carries one direction
only. Round trip: REQ/REP. Small messages are ``json.dumps({"data": ..., "metadata": ...})``;
bulk messages are the raw 16 MiB bytes, sent with ``copy=False`` as pyzmq advises for large
messages.

libzmq connects in the background, so the client first exchanges a "hello" with the server and
starts the clock only once both sockets are connected.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import zmq
from common import (
    DONE,
    ECHO_DATA,
    ECHO_METADATA,
    SMALL_DATA,
    bulk_payload,
    json_body,
    tick_metadata,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from common import Params

    Report = Callable[[dict[str, Any]], None]

HELLO = json_body("hello", {})
ENDPOINT = "tcp://127.0.0.1"


def serve(variant: str, workload: str, params: Params, report: Report) -> None:
    """Run the server of ``workload`` until the process is terminated."""
    context = zmq.Context()
    if workload == "roundtrip":
        rep = context.socket(zmq.REP)
        report({"port": rep.bind_to_random_port(ENDPOINT)})
        while True:
            message = json.loads(rep.recv())
            rep.send(json_body(message["data"], message["metadata"]))
    pull = context.socket(zmq.PULL)
    push = context.socket(zmq.PUSH)
    report(
        {"port": pull.bind_to_random_port(ENDPOINT), "port2": push.bind_to_random_port(ENDPOINT)}
    )
    expected = params["bulk_messages"] if workload == "bulk" else params["messages"]
    while True:  # one client per server process; loop anyway so a stray hello cannot hang it
        pull.recv()  # the client's hello: both directions are connected
        push.send(HELLO)
        for _ in range(expected):
            message = pull.recv()
            if workload != "bulk":
                json.loads(message)  # decode every message, as a real receiver would
        push.send(json_body(DONE, {}))


def run_client(
    variant: str, workload: str, params: Params, address: dict[str, Any], report: Report
) -> dict[str, Any]:
    """Run the client side of ``workload`` against the server at ``address``."""
    context = zmq.Context()
    try:
        if workload == "roundtrip":
            req = context.socket(zmq.REQ)
            req.connect(f"{ENDPOINT}:{address['port']}")
            samples = []
            for index in range(params["warmup"] + params["round_trips"]):
                start_ns = time.perf_counter_ns()
                req.send(json_body(ECHO_DATA, ECHO_METADATA))
                reply = json.loads(req.recv())
                if index >= params["warmup"]:
                    samples.append(time.perf_counter_ns() - start_ns)
            assert reply["data"] == ECHO_DATA
            return {"samples_ns": samples}
        push = context.socket(zmq.PUSH)
        push.connect(f"{ENDPOINT}:{address['port']}")
        pull = context.socket(zmq.PULL)
        pull.connect(f"{ENDPOINT}:{address['port2']}")
        push.send(HELLO)
        pull.recv()
        if workload == "oneway":
            start = time.perf_counter()
            for seq in range(params["messages"]):
                push.send(json_body(SMALL_DATA, tick_metadata(seq)))
        elif workload == "bulk":
            payload = bulk_payload()
            start = time.perf_counter()
            for _ in range(params["bulk_messages"]):
                push.send(payload, copy=False)
        else:
            raise ValueError(f"unknown workload {workload!r}")
        reply = json.loads(pull.recv())
        elapsed = time.perf_counter() - start
        assert reply["data"] == DONE
        return {"elapsed": elapsed}
    finally:
        context.destroy(linger=0)
