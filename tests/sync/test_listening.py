"""alvaro.sync.Host with ``sock=`` and ``reuse_port=``, on both loop backends: the blocking host
passes them to the async one (tests/aio/test_listening.py tests them in depth)."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

import pytest

import alvaro.sync
from alvaro.sync import Host

from ..helpers import WAIT
from .support import LOOPBACK, echo

if TYPE_CHECKING:
    from alvaro.sync._loop import Backend


def test_a_sync_host_serves_on_the_socket_it_is_given(sync_backend: Backend) -> None:
    sock = socket.socket()
    sock.bind((LOOPBACK, 0))
    port = sock.getsockname()[1]
    with Host(sock=sock, backend=sync_backend) as host:
        host.got_data = echo
        assert host.port == port
        with alvaro.sync.connect(LOOPBACK, port, backend=sync_backend) as client:
            client.send_data("hi")
            assert client.receive(timeout=WAIT).data == "hi"
    assert sock.fileno() == -1  # the host closed it when it stopped


def test_a_sync_host_refuses_a_socket_with_an_address(sync_backend: Backend) -> None:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        with pytest.raises(ValueError, match="either sock= or addr and port"):
            Host(LOOPBACK, sock.getsockname()[1], sock=sock, backend=sync_backend)


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="this system has no SO_REUSEPORT")
def test_sync_hosts_with_reuse_port_share_a_port(sync_backend: Backend) -> None:
    with Host(reuse_port=True, backend=sync_backend) as first:
        with Host(LOOPBACK, first.port, reuse_port=True, backend=sync_backend) as second:
            second.got_data = echo
            first.got_data = echo
            assert second.port == first.port
            with alvaro.sync.connect(LOOPBACK, first.port, backend=sync_backend) as client:
                client.send_data(1)
                assert client.receive(timeout=WAIT).data == 1
