"""The original README's programs, run unchanged as real processes on loopback.

Each program in ``tests/seed_programs/`` is the README's code, with only the ``Alvaro.Host`` typo
fixed. The tests copy it to a temporary directory with the hard-coded port 8888 replaced by a free
port, run it with ``python -u``, and check what it prints and what a client sees.

The "Using SSL" program (``ssl_server.py``) also hard-codes a host name and certificate paths: its
copy gets ``localhost`` for ``hostname.com`` and, for the two paths, the files ``alvaro certs``
writes.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

import anyio
import pytest

import alvaro
from alvaro import CloseCode, TLSError
from tests.helpers import WAIT, free_port, python_process, wait_for_port

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

SEED_PROGRAMS = Path(__file__).parent / "seed_programs"

BACKENDS = [pytest.param("asyncio", id="asyncio"), pytest.param("trio", id="trio")]

NEW_CONNECTION = ("New connection from 127.0.0.1", "New connection from ::1")

#: What the "Using SSL" program hard-codes besides the port: a host name and two PEM files.
SSL_HOSTNAME = '"hostname.com"'
SSL_CERT = '"path/to/cert.crt"'
SSL_KEY = '"path/to/key.key"'


class Program:
    """A seed program running as a subprocess, its output collected line by line by threads."""

    def __init__(self, script: Path) -> None:
        self.script = script
        self.process = python_process(str(script))
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._pumps = [
            threading.Thread(
                target=self._pump, args=(self.process.stdout, self.stdout), daemon=True
            ),
            threading.Thread(
                target=self._pump, args=(self.process.stderr, self.stderr), daemon=True
            ),
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, stream: IO[str], sink: list[str]) -> None:
        for line in stream:
            with self._changed:
                sink.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _ended(self) -> bool:
        return not any(pump.is_alive() for pump in self._pumps)

    def wait_for_line(self, matches: Callable[[str], bool], timeout: float = WAIT) -> str:
        """Wait until the program prints a line that ``matches``; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.stdout:
                    if matches(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._ended():
                    break
                self._changed.wait(min(remaining, 0.5))
        raise AssertionError(
            f"{self.script.name} did not print the expected line within {timeout} s "
            f"(exit code {self.process.poll()})\nstdout: {self.stdout}\nstderr: {self.stderr}"
        )

    def wait_for(self, text: str, timeout: float = WAIT) -> str:
        """Wait until the program prints exactly ``text`` on a line."""
        return self.wait_for_line(lambda line: line == text, timeout)

    def stop(self) -> None:
        """Terminate the program (kill it if it lingers) and collect the rest of its output."""
        process = self.process
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for pump in self._pumps:
            pump.join(timeout=5)
        if self._ended():
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()


class RunSeed(Protocol):
    def __call__(
        self, name: str, port: int, replacements: Mapping[str, str] | None = None, /
    ) -> Program: ...


@pytest.fixture
def run_seed(tmp_path: Path) -> Iterator[RunSeed]:
    """Start seed programs on a given port; every one is stopped at the end of the test.

    ``replacements`` are further substitutions in the copy, each of text that occurs once.
    """
    programs: list[Program] = []

    def run(name: str, port: int, replacements: Mapping[str, str] | None = None, /) -> Program:
        source = (SEED_PROGRAMS / name).read_text()
        assert source.count("8888") == 1, f"{name} should hard-code port 8888 once"
        source = source.replace("8888", str(port))
        for old, new in (replacements or {}).items():
            assert source.count(old) == 1, f"{name} should contain {old} once"
            source = source.replace(old, new)
        script = tmp_path / name
        script.write_text(source)
        program = Program(script)
        programs.append(program)
        return program

    try:
        yield run
    finally:
        for program in programs:
            program.stop()


def start_server(
    run_seed: RunSeed,
    name: str,
    replacements: Mapping[str, str] | None = None,
) -> tuple[Program, int]:
    port = free_port()
    server = run_seed(name, port, replacements)
    try:
        wait_for_port(port)
    except AssertionError:
        server.stop()
        raise AssertionError(
            f"{name} is not listening: exit code {server.process.poll()}, "
            f"stdout {server.stdout}, stderr {server.stderr}"
        ) from None
    return server, port


def test_seed_programs_are_the_readme_code() -> None:
    # The copies must stay the README's programs: only the Alvaro.Host typo is fixed.
    names = {path.name for path in SEED_PROGRAMS.glob("*.py")}
    assert names == {
        "basic_server.py",
        "basic_client.py",
        "builtin_functions.py",
        "metadata_server.py",
        "ssl_server.py",
    }
    for name in names - {"ssl_server.py"}:
        source = (SEED_PROGRAMS / name).read_text()
        assert "Alvaro." not in source
        assert source.count('"localhost", 8888') == 1
    # "Using SSL" names a host and certificate files of its own, which its test substitutes.
    source = (SEED_PROGRAMS / "ssl_server.py").read_text()
    assert "Alvaro." not in source
    assert "localhost" not in source
    assert source.count(f"{SSL_HOSTNAME}, 8888") == 1
    assert source.count(f"useSSL=True, sslCert={SSL_CERT}, sslKey={SSL_KEY}") == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_builtin_functions_with_seed_client(run_seed: RunSeed, backend: str) -> None:
    server, port = start_server(run_seed, "builtin_functions.py")

    # The README's client: connect in a thread, waitForConnection(timeout=6), print "Connected!".
    seed_client = run_seed("basic_client.py", port)
    seed_client.wait_for("Connected!")
    server.wait_for_line(lambda line: line in NEW_CONNECTION)

    async def talk() -> alvaro.Message:
        async with alvaro.aio.connect("localhost", port) as client:
            greeting = await client.receive(timeout=WAIT)
            client.send_data("hi")
            return greeting

    greeting = anyio.run(talk, backend=backend)
    assert greeting.data == "Hello, World!"
    assert greeting.metadata == {}
    server.wait_for("Message: hi")
    new_connections = [line for line in server.stdout if line in NEW_CONNECTION]
    assert len(new_connections) == 2, server.stdout
    # The seed client is still connected: its connect() runs until the connection ends.
    assert seed_client.process.poll() is None
    assert server.process.poll() is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_metadata_server(run_seed: RunSeed, backend: str) -> None:
    server, port = start_server(run_seed, "metadata_server.py")

    async def talk() -> tuple[alvaro.Message, int | None]:
        async with alvaro.aio.connect("localhost", port) as client:
            greeting = await client.receive(timeout=WAIT)
            # The README's spelling: "as easy as changing the metaData variable in sendData".
            client.sendData("Hi from the client", metaData={"whoami": "client"})
        assert client.connection is not None
        return greeting, client.connection.close_code

    greeting, close_code = anyio.run(talk, backend=backend)
    assert greeting.data == "Hello, World!"
    assert greeting.metadata == {"whoami": "server"}
    assert close_code == CloseCode.NORMAL

    server.wait_for("MetaData transferred successfully!")
    assert "Message: Hi from the client" in server.stdout
    assert server.stdout.index("Message: Hi from the client") < server.stdout.index(
        "MetaData transferred successfully!"
    )
    assert server.stdout[0] in NEW_CONNECTION
    assert server.process.poll() is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_basic_server_handshake(run_seed: RunSeed, backend: str) -> None:
    server, port = start_server(run_seed, "basic_server.py")

    async def visit() -> tuple[bool, int | None, bool | None]:
        async with alvaro.aio.connect("localhost", port) as client:
            assert client.connection is not None
            opened = client.connected and client.connection.is_open
        connection = client.connection
        return opened, connection.close_code, connection.closed_by_peer

    for _ in range(2):  # the server keeps serving after a client leaves
        opened, close_code, closed_by_peer = anyio.run(visit, backend=backend)
        assert opened
        assert close_code == CloseCode.NORMAL
        assert closed_by_peer is False

    assert server.process.poll() is None
    server.stop()
    # The minimal server prints nothing, and a clean visit logs no warning or error.
    assert server.stdout == []
    assert server.stderr == []


# --- "Using SSL" ---


@pytest.fixture(scope="module")
def seed_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files ``alvaro certs`` writes, made as a user makes them: ``python -m alvaro certs``."""
    folder = tmp_path_factory.mktemp("seed-tls") / "certs"
    result = subprocess.run(
        [sys.executable, "-m", "alvaro", "certs", str(folder)],
        capture_output=True,
        text=True,
        timeout=3 * WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return folder


def start_ssl_server(run_seed: RunSeed, certs: Path) -> tuple[Program, int]:
    """The README's SSL server on localhost, with the certificate and key ``alvaro certs`` wrote."""
    return start_server(
        run_seed,
        "ssl_server.py",
        {
            SSL_HOSTNAME: '"localhost"',
            SSL_CERT: f'"{(certs / "server.pem").as_posix()}"',
            SSL_KEY: f'"{(certs / "server.key").as_posix()}"',
        },
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_ssl_server(run_seed: RunSeed, seed_certs: Path, backend: str) -> None:
    server, port = start_ssl_server(run_seed, seed_certs)
    ca = str(seed_certs / "ca.pem")

    async def visit() -> tuple[bool, alvaro.aio.Connection | None]:
        # The client side of the README's style: use_ssl=True, ssl_cert=<the CA to trust>.
        with anyio.fail_after(WAIT):
            async with alvaro.aio.connect("localhost", port, use_ssl=True, ssl_cert=ca) as client:
                opened = client.connected
                # The seed server has no callbacks: the message waits in its queue.
                await client.send({"hello": "over TLS"}, metadata={"from": "seed test"})
        return opened, client.connection

    for _ in range(2):  # the server keeps serving after a client leaves
        opened, connection = anyio.run(visit, backend=backend)
        assert opened
        assert connection is not None
        info = connection.tls
        assert info is not None
        assert info.version in {"TLSv1.2", "TLSv1.3"}
        assert info.cipher
        assert "localhost" in info.peer_names  # the certificate alvaro certs made, verified
        assert connection.close_code == CloseCode.NORMAL
        assert connection.closed_by_peer is False

    assert server.process.poll() is None
    server.stop()
    assert server.stdout == []
    assert server.stderr == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_ssl_server_refuses_plaintext(run_seed: RunSeed, seed_certs: Path, backend: str) -> None:
    server, port = start_ssl_server(run_seed, seed_certs)

    async def plaintext_visit() -> None:
        with anyio.fail_after(WAIT):
            async with alvaro.aio.connect("localhost", port):
                pass

    with pytest.raises(TLSError) as error:
        anyio.run(plaintext_visit, backend=backend)
    assert error.value.kind == TLSError.TLS_REQUIRED
    assert server.process.poll() is None  # one plaintext client does not stop the server
