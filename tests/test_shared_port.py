"""Several host processes on one machine and one port, in real processes, on asyncio and trio.

Two ways, as docs/hosts-and-clients.md ("Several processes on one machine") describes them:

* each process binds the port itself with ``reuse_port=True``, and the kernel spreads new
  connections among them (Linux);
* a supervisor binds one socket and hands it to its workers, which each pass it as ``sock=``.

Each process (``process_peers/shared_port_host.py``) greets a client with its process id, so a
client sees which process took its connection. In each pair one process runs an
``alvaro.aio.Host`` and the other an ``alvaro.sync.Host``, on the test's backend.
"""

from __future__ import annotations

import socket
import sys
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from alvaro.aio import connect

from .helpers import WAIT
from .processes import Peer

if TYPE_CHECKING:
    from alvaro.testing import TLSFiles

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="the host processes are POSIX-only here"),
]

#: The most connections a test opens before it expects each process to have taken some. Linux
#: hashes each connection's addresses to pick a process; with two, the chance that 64
#: connections all go to one is 2**-63.
ATTEMPTS = 64


def start(stack: ExitStack, backend: str, *args: str, pass_fds: tuple[int, ...] = ()) -> Peer:
    peer = stack.enter_context(
        Peer("tests.process_peers.shared_port_host", "--backend", backend, *args, pass_fds=pass_fds)
    )
    peer.wait_for("listening ")
    return peer


async def greeted_by(port: int, **options: Any) -> int:
    """Connect, check that the host answers, and return the id of the process that did."""
    async with connect("127.0.0.1", port, **options) as client:
        greeting = await client.receive(timeout=WAIT)
        client.send_data("ping")
        assert (await client.receive(timeout=WAIT)).data == "ping"
    return int(greeting.data["pid"])


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="this system has no SO_REUSEPORT")
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="only Linux balances the port")
async def test_two_processes_with_reuse_port_both_take_clients(anyio_backend: str) -> None:
    with ExitStack() as stack:
        first = start(stack, anyio_backend, "--port", "0")
        port = int(first.wait_for("listening ").split()[1])
        second = start(stack, anyio_backend, "--port", str(port), "--sync")
        assert second.wait_for("listening ") == f"listening {port}"

        seen: dict[int, int] = {}
        with anyio.fail_after(4 * WAIT):
            for _ in range(ATTEMPTS):
                pid = await greeted_by(port)
                seen[pid] = seen.get(pid, 0) + 1
                if len(seen) == 2:
                    break
        assert set(seen) == {first.pid, second.pid}, seen

        # One process stops (a rolling restart): the other takes every new client.
        first.kill()
        first.finish()
        with anyio.fail_after(2 * WAIT):
            for _ in range(8):
                assert await greeted_by(port) == second.pid


async def test_two_processes_serve_tls_on_a_socket_their_supervisor_bound(
    anyio_backend: str, alvaro_tls_files: TLSFiles, alvaro_client_ssl_context: Any
) -> None:
    # The supervisor (this test) binds and listens, and hands the socket to both workers.
    supervisor_socket = socket.socket()
    tls = ("--cert", str(alvaro_tls_files.cert), "--key", str(alvaro_tls_files.key))
    with ExitStack() as stack:
        stack.callback(supervisor_socket.close)
        supervisor_socket.bind(("127.0.0.1", 0))
        supervisor_socket.listen()
        port = supervisor_socket.getsockname()[1]
        fd = str(supervisor_socket.fileno())
        fds = (supervisor_socket.fileno(),)
        workers = {
            peer.pid: peer
            for peer in (
                start(stack, anyio_backend, "--fd", fd, *tls, pass_fds=fds),
                start(stack, anyio_backend, "--fd", fd, "--sync", *tls, pass_fds=fds),
            )
        }
        for peer in workers.values():
            assert peer.wait_for("listening ") == f"listening {port}"
        # Only the workers hold the socket now.
        supervisor_socket.close()

        # Each worker serves: whichever takes a client, the other takes the next ones once
        # it is gone.
        with anyio.fail_after(3 * WAIT):
            taker = await greeted_by(port, ssl_context=alvaro_client_ssl_context)
            assert taker in workers
            workers[taker].kill()
            workers[taker].finish()
            (other,) = set(workers) - {taker}
            for _ in range(4):
                assert await greeted_by(port, ssl_context=alvaro_client_ssl_context) == other
