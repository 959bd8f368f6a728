"""``alvaro serve``, ``alvaro send`` and ``alvaro connect``, each a real process.

``serve`` runs as :class:`tests.processes.Peer`; ``send`` runs to completion; ``connect`` runs
on a real pseudo-terminal (:mod:`tests.terminal`), typed into and read as a screen.
"""

from __future__ import annotations

import base64
import json
import shlex
import signal
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

import alvaro
from alvaro.cli import main
from alvaro.cli.parser import build_parser

from .helpers import ROOT, WAIT, checkout_env
from .processes import Peer
from .terminal import TerminalProgram

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

BACKENDS = ("asyncio", "trio")
PASSWORD = "correct horse battery staple"


def run(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m alvaro ARGS`` to completion (bounded), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "alvaro", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=3 * WAIT,
        check=False,
        env={**checkout_env(), **env},
    )


class Served:
    """An ``alvaro serve`` process and the port it printed on its first line."""

    def __init__(self, *args: str) -> None:
        self.peer = Peer("alvaro", "serve", "--port", "0", *args)
        first = self.peer.wait_for("listening on ")
        self.port = int(first.rsplit(":", 1)[1])
        self.first_line = first

    def stop(self) -> int:
        self.peer.signal(signal.SIGINT)
        return self.peer.finish()


@pytest.fixture
def serve() -> Iterator[type[Served]]:
    started: list[Served] = []

    def start(*args: str) -> Served:
        served = Served(*args)
        started.append(served)
        return served

    yield start  # type: ignore[misc]
    for served in started:
        served.peer.close()


def send_json(port: int, *args: str, **env: str) -> tuple[int, list[dict[str, Any]], str]:
    """``alvaro send 127.0.0.1 PORT ARGS --json``: its status, its JSON lines, its stderr."""
    result = run("send", "127.0.0.1", str(port), *args, "--json", **env)
    return (
        result.returncode,
        [json.loads(line) for line in result.stdout.splitlines()],
        result.stderr,
    )


# --- alvaro serve and alvaro send ---


@pytest.mark.parametrize("backend", BACKENDS)
def test_serve_echoes_what_send_sends(serve: Any, backend: str) -> None:
    host = serve("--backend", backend)
    assert host.first_line == f"listening on 127.0.0.1:{host.port}"
    result = run(
        "send", "127.0.0.1", str(host.port), '{"a": [1, 2]}', "--meta", '{"k": "v"}',
        "--wait-reply", "--backend", backend,
    )  # fmt: skip
    assert (result.returncode, result.stdout, result.stderr) == (0, '{"a": [1, 2]}\n', "")
    # The host said who came, what they sent, and that they left.
    host.peer.wait_for("- 127.0.0.1:")
    assert host.peer.lines("< 127.0.0.1:")[0].endswith(': {"a": [1, 2]} {"k": "v"}')
    assert host.stop() == 128 + signal.SIGINT
    assert host.peer.errors("stopping (SIGINT)")


def test_send_json_lines_and_what_data_means(serve: Any) -> None:
    host = serve()
    status, records, stderr = send_json(host.port, "hello", "--meta", '{"n": 1}', "--wait-reply")
    assert (status, stderr) == (0, "")
    assert records == [
        {"event": "connected", "host": "127.0.0.1", "port": host.port, "tls": None, "user": None},
        {"event": "sent", "data": "hello", "metadata": {"n": 1}},
        {"event": "reply", "data": "hello", "metadata": {"n": 1}},
    ]
    # JSON is sent as JSON, anything else as a string; "-" reads standard input.
    for typed, sent in (("42", 42), ('"42"', "42"), ("[1, true]", [1, True]), ("a b", "a b")):
        status, records, _ = send_json(host.port, typed, "--wait-reply")
        assert status == 0
        assert records[2] == {"event": "reply", "data": sent, "metadata": {}}
    result = run("send", "127.0.0.1", str(host.port), "-", "--wait-reply", stdin="line\n")
    assert (result.returncode, result.stdout) == (0, '"line"\n')


def test_send_exit_codes_and_one_line_errors(serve: Any, tmp_path: Path) -> None:
    host = serve()
    # Nothing listens there: 1, one line, no traceback; with --json also an error record.
    closed = host.port
    host.stop()
    status, records, stderr = send_json(closed, "hello")
    assert status == 1
    assert len(stderr.splitlines()) == 1
    assert stderr.startswith(f"alvaro send: could not connect to 127.0.0.1:{closed}")
    assert records == [{"event": "error", "message": stderr[13:].rstrip("\n"), "status": 1}]
    # Wrong usage: 2.
    for args in (("x", "hello"), ("70000", "hello"), ("1", "hi", "--meta", "[1]")):
        result = run("send", "127.0.0.1", *args)
        assert result.returncode == 2, result
        assert "Traceback" not in result.stderr
    # A reply that never comes: 1 after --timeout.
    quiet = serve("--mode", "relay")  # nobody else is there to relay to
    result = run("send", "127.0.0.1", str(quiet.port), "hi", "--wait-reply", "--timeout", "0.5")
    assert (result.returncode, result.stderr) == (1, "alvaro send: no reply within 0.5 s\n")
    # A missing CA file: 1, one line.
    missing = tmp_path / "none.pem"
    result = run("send", "127.0.0.1", str(quiet.port), "hi", "--cafile", str(missing))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert str(missing) in result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_send_raw_bytes_reply(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    # A host that answers with raw bytes: --json carries them as base64, which JSON lacks.
    with alvaro.sync.Host("127.0.0.1", 0, backend=backend) as host:
        host.got_data = lambda conn, data, metadata: conn.send_data(bytes([0, 1, 255]))
        args = ["send", "127.0.0.1", str(host.port), "hi", "--wait-reply", "--backend", backend]
        assert main([*args, "--json"]) == 0
        records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert records[2] == {"event": "reply", "data_base64": "AAH/", "metadata": {}}
        assert base64.b64decode(records[2]["data_base64"]) == bytes([0, 1, 255])


def test_send_verbose_logs_to_stderr(serve: Any) -> None:
    host = serve()
    result = run("-v", "send", "127.0.0.1", str(host.port), "hi")
    assert result.returncode == 0
    assert "alvaro.client INFO" in result.stderr or "alvaro.client DEBUG" in result.stderr
    assert run("send", "127.0.0.1", str(host.port), "hi").stderr == ""


def test_serve_relays_to_the_others_and_adds_from(serve: Any) -> None:
    host = serve("--mode", "relay")
    with TerminalProgram("connect", "127.0.0.1", str(host.port)) as listener:
        connected(listener)
        # The sender's "from" is kept; without one, the host names the sender.
        assert send_json(host.port, "signed", "--meta", '{"from": "script"}')[0] == 0
        listener.wait_for_line('< "signed"  {"from": "script"}')
        assert send_json(host.port, "unsigned")[0] == 0
        lines = listener.wait_until(
            "the relayed message", lambda lines: any('< "unsigned"' in x for x in lines)
        )
        (shown,) = [line for line in lines if line.startswith('< "unsigned"')]
        assert shown.startswith('< "unsigned"  {"from": "127.0.0.1:')
        listener.type("/quit\r")
        assert listener.finish() == (0, "")
    # The sender never got its own messages back: relay is not echo.
    status, records, _ = send_json(host.port, "alone", "--wait-reply", "--timeout", "0.3")
    assert status == 1
    assert records[-1]["message"] == "no reply within 0.3 s"


# --- TLS and login ---


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    """A folder written by ``alvaro certs --quiet``."""
    folder = tmp_path / "certs"
    result = run("certs", "--dir", str(folder), "--quiet")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    return folder


@pytest.mark.parametrize("backend", BACKENDS)
def test_mutual_tls_with_certs_from_alvaro_certs(serve: Any, certs: Path, backend: str) -> None:
    host = serve(
        "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key"),
        "--client-ca", str(certs / "ca.pem"), "--backend", backend,
    )  # fmt: skip
    client_cert = ("--cert", str(certs / "client.pem"), "--key", str(certs / "client.key"))
    status, records, stderr = send_json(
        host.port, "secret", "--cafile", str(certs / "ca.pem"), *client_cert, "--wait-reply"
    )
    assert (status, stderr) == (0, "")
    assert records[0]["tls"] in ("TLSv1.2", "TLSv1.3")
    assert records[2]["data"] == "secret"
    assert host.peer.wait_for("+ 127.0.0.1:").endswith(f" over {records[0]['tls']}")
    # Without a client certificate the host refuses; without the CA the host is not trusted.
    status, _, stderr = send_json(host.port, "x", "--cafile", str(certs / "ca.pem"))
    assert status == 1
    assert len(stderr.splitlines()) == 1
    status, _, stderr = send_json(host.port, "x", "--tls", *client_cert)
    assert status == 1
    assert "certificate" in stderr
    assert len(stderr.splitlines()) == 1
    # --insecure connects, and says loudly that nothing is checked.
    status, records, stderr = send_json(host.port, "x", "--insecure", *client_cert)
    assert status == 0
    assert stderr.startswith("alvaro send: WARNING: --insecure: the host's certificate is NOT")


def test_serve_users_requires_login(serve: Any, tmp_path: Path) -> None:
    accounts = tmp_path / "users.json"
    result = run("users", "add", "alice", "--file", str(accounts), "--password-stdin",
                    stdin=PASSWORD + "\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    host = serve("--users", str(accounts))
    host.peer.wait_for("login required: 1 user(s)")
    status, records, stderr = send_json(
        host.port, "hi", "--user", "alice", "--wait-reply", ALVARO_PASSWORD=PASSWORD
    )
    assert status == 0, stderr
    assert records[0]["user"] == "alice"
    assert records[2]["data"] == "hi"
    host.peer.wait_for("+ alice@127.0.0.1:")
    # A wrong password and no login at all are refused, in one line, status 1.
    status, _, stderr = send_json(host.port, "hi", "--user", "alice", ALVARO_PASSWORD="wrong")
    assert status == 1
    assert "login refused" in stderr
    assert len(stderr.splitlines()) == 1
    status, _, stderr = send_json(host.port, "hi")
    assert status == 1
    assert len(stderr.splitlines()) == 1


def test_serve_refuses_a_missing_users_file_and_a_busy_port(serve: Any, tmp_path: Path) -> None:
    result = run("serve", "--port", "0", "--users", str(tmp_path / "none"))
    assert result.returncode == 1
    assert result.stderr.startswith("alvaro serve: ")
    assert result.stderr.count("\n") == 1
    host = serve()
    result = run("serve", "--port", str(host.port))
    assert result.returncode == 1
    assert result.stderr.startswith(f"alvaro serve: cannot listen on 127.0.0.1:{host.port}")


# --- alvaro connect, on a real terminal ---


def connected(program: TerminalProgram) -> list[str]:
    """Wait until ``connect`` has said it is connected and shows its prompt: from then on
    readline reads the keys (typed earlier, they would be the terminal's to echo and drop)."""
    return program.wait_until(
        "the connected line and the prompt",
        lambda lines: len(lines) >= 2 and lines[0].startswith("connected to ") and lines[-1] == ">",
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_connect_sends_typed_lines_and_shows_the_echo(serve: Any, backend: str) -> None:
    host = serve("--backend", backend)
    with TerminalProgram("connect", "127.0.0.1", str(host.port), "--backend", backend) as term:
        lines = connected(term)
        assert lines[0] == (
            f"connected to 127.0.0.1:{host.port}; /help for commands, Ctrl-D to leave"
        )
        term.type("hello\r")
        term.wait_for_line('< "hello"')
        term.type('{"n": [1, 2]}\r')
        lines = term.wait_for_line('< {"n": [1, 2]}')
        assert lines == [
            lines[0], "> hello", '< "hello"', '> {"n": [1, 2]}', '< {"n": [1, 2]}', ">"
        ]  # fmt: skip
        term.type("/quit\r")
        assert term.finish() == (0, "")


def test_connect_meta_sets_the_metadata_of_what_is_sent_next(serve: Any) -> None:
    host = serve()
    with TerminalProgram("connect", "127.0.0.1", str(host.port)) as term:
        connected(term)
        term.type('/meta {"from": "me"}\r')
        term.wait_for_line('metadata: {"from": "me"}')
        term.type("hi\r")
        term.wait_for_line('< "hi"  {"from": "me"}')
        term.type("/meta [1]\r")
        term.wait_for_line('! /meta takes a JSON object, such as {"from": "me"}')
        term.type("/meta {}\r")
        term.wait_for_line("metadata: {}")
        term.type("//slash\r")
        term.wait_for_line('< "/slash"')
        term.type("/help\r")
        # The help's last line says what is not there yet; its other lines are above it.
        # (/ask is among them.)
        lines = term.wait_until(
            "the help", lambda x: any("not in this version" in line for line in x)
        )
        assert any(line.startswith("  /meta {JSON}") for line in lines)
        assert any(line.startswith("  /quit") for line in lines)
        term.type("\x04")  # Ctrl-D
        assert term.finish() == (0, "")


def test_send_ask_prints_the_answer_or_fails_in_one_line(serve: Any) -> None:
    host = serve()
    status, records, stderr = send_json(host.port, "[4, 2]", "--ask", "--meta", '{"op": "x"}')
    assert (status, stderr) == (0, "")
    assert records[-1] == {"event": "answer", "data": [4, 2], "metadata": {"op": "x"}}
    plain = run("send", "127.0.0.1", str(host.port), "hello", "--ask")
    assert (plain.returncode, plain.stdout) == (0, '"hello"\n')


def test_connect_ask_shows_the_answer_to_a_request(serve: Any) -> None:
    host = serve()
    with TerminalProgram("connect", "127.0.0.1", str(host.port)) as term:
        connected(term)
        term.type('/meta {"op": "sum"}\r')
        term.wait_for_line('metadata: {"op": "sum"}')
        term.type("/ask [1, 2, 3]\r")
        # alvaro serve answers a request with its own data and metadata.
        term.wait_for_line('<< [1, 2, 3]  {"op": "sum"}')
        term.type("/ask\r")
        term.wait_for_line("! /ask takes the data to send, such as /ask [1, 2]")
        term.type("\x04")
        assert term.finish() == (0, "")
    # The host said who asked what.
    assert host.peer.wait_for("? 127.0.0.1:").endswith('asks: [1, 2, 3] {"op": "sum"}')


def test_connect_message_arriving_while_typing_leaves_the_line_intact(serve: Any) -> None:
    host = serve("--mode", "relay")
    with TerminalProgram("connect", "127.0.0.1", str(host.port)) as term:
        connected(term)
        term.type("half a sen")
        term.wait_until("the typed text", lambda lines: lines[-1] == "> half a sen")
        row, column = term.cursor()
        for number in range(3):  # three messages arrive while the line is half typed
            assert send_json(host.port, f"news {number}", "--meta", '{"from": "bob"}')[0] == 0
            term.wait_for_line(f'< "news {number}"  {{"from": "bob"}}')
        lines = term.display()
        # Each message went above the line being typed, which is still there, cursor included.
        assert lines[-4:] == [
            '< "news 0"  {"from": "bob"}',
            '< "news 1"  {"from": "bob"}',
            '< "news 2"  {"from": "bob"}',
            "> half a sen",
        ]
        assert term.cursor() == (row + 3, column)
        # Typing goes on where it was, and the whole line is what gets sent.
        term.type("tence\r")
        term.wait_until("the next prompt", lambda lines: lines[-2:] == ["> half a sentence", ">"])
        term.type("/quit\r")
        assert term.finish() == (0, "")
    host.stop()
    assert host.peer.lines("< 127.0.0.1:")[-1].endswith(': "half a sentence" {}')


def test_connect_ctrl_c_leaves_cleanly(serve: Any) -> None:
    host = serve()
    with TerminalProgram("connect", "127.0.0.1", str(host.port)) as term:
        connected(term)
        term.type("typed but not sent")
        term.wait_until("the typed text", lambda lines: lines[-1] == "> typed but not sent")
        term.type("\x03")
        assert term.finish() == (0, "")
    host.peer.wait_for("- 127.0.0.1:")
    assert not host.peer.lines("< ")


def test_connect_ends_with_one_line_and_status_1_when_the_host_goes(serve: Any) -> None:
    host = serve()
    with TerminalProgram("connect", "127.0.0.1", str(host.port)) as term:
        connected(term)
        term.type("half typed")
        term.wait_until("the typed text", lambda lines: lines[-1] == "> half typed")
        host.peer.kill()
        status, stderr = term.finish()
    assert status == 1
    assert stderr.startswith(f"alvaro connect: connection to 127.0.0.1:{host.port} lost: ")
    assert stderr.count("\n") == 1, stderr


def test_connect_to_nothing_is_one_line(serve: Any) -> None:
    host = serve()
    port = host.port
    host.stop()
    result = run("connect", "127.0.0.1", str(port))
    assert result.returncode == 1
    assert result.stderr.startswith(f"alvaro connect: could not connect to 127.0.0.1:{port}")
    assert result.stderr.count("\n") == 1


# --- docs/cli.md ---

CLI_DOCS = ROOT / "docs" / "cli.md"


def documented_command_lines() -> list[str]:
    """The ``alvaro`` command lines of docs/cli.md's shell sessions (``$ ...`` lines)."""
    lines = []
    for line in CLI_DOCS.read_text(encoding="utf-8").splitlines():
        if line.startswith("$ "):
            command = line[2:].split(" #", 1)[0].removesuffix("&").strip()
            lines.append(command.rsplit("| ", 1)[-1])  # "date | alvaro send ..." -> alvaro ...
    return lines


def test_docs_blocks_are_fragments_and_their_commands_parse() -> None:
    text = CLI_DOCS.read_text(encoding="utf-8").splitlines()
    fences = [
        number for number, line in enumerate(text) if line.startswith("```") and line != "```"
    ]
    assert fences, "docs/cli.md has no code blocks: the check below would check nothing"
    for number in fences:
        assert text[number - 1] == "<!-- fragment -->", f"docs/cli.md line {number + 1}"
    commands = documented_command_lines()
    assert len(commands) >= 10
    parser = build_parser()
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "alvaro", command
        args = parser.parse_args(words[1:])  # a wrong option exits with SystemExit(2)
        assert args.run is not None, command
