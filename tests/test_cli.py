"""The ``alvaro`` command: ``alvaro demo``, ``alvaro certs``, ``alvaro users``, ``--version``
and the help."""

from __future__ import annotations

import functools
import io
import json
import logging
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import scramp  # type: ignore[import-untyped]
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

import alvaro
from alvaro import TLSError, testing, tls
from alvaro._errors import unwrap_group
from alvaro.auth import Accounts, Verifier
from alvaro.cli import admin, main
from tests.helpers import WAIT

RAW_BYTES = r"8 raw bytes b'\x00\x01\x02\x03\x04\x05\x06\x07'"

CERT_FILES = ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")

#: Runs alvaro's command as if trustme were not installed: ``import trustme`` fails.
WITHOUT_TRUSTME = (
    "import sys; sys.modules['trustme'] = None; "
    "from alvaro.cli import main; raise SystemExit(main(sys.argv[1:]))"
)

posix_permissions = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file permissions")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run a command to completion (bounded) and capture its output as text."""
    return subprocess.run(args, capture_output=True, text=True, timeout=3 * WAIT, check=False)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- alvaro demo ---


def check_transcript(lines: list[str], tls_version: str | None) -> None:
    """The demo's conversation, the same over TLS and in plaintext."""
    over = "in plaintext" if tls_version is None else f"over {tls_version}"
    assert any(line.startswith("  [host ] listening on 127.0.0.1:") for line in lines)
    new_clients = [
        line for line in lines if line.startswith("  [host ] new client from 127.0.0.1:")
    ]
    assert len(new_clients) == 2, lines
    assert all(line.endswith(f" {over}") for line in new_clients), new_clients
    connected = [line for line in lines if " connected over " in line]
    if tls_version is None:
        assert connected == []
    else:
        assert [line.split("]")[0] for line in connected] == ["  [alice", "  [bob  "]
        assert all(
            f"connected over {tls_version} (" in line and line.endswith(", certificate verified")
            for line in connected
        ), connected
    assert any(
        line.startswith('  [alice] got "welcome" with metadata {"from": "host"') for line in lines
    )
    # Bob got Alice's greeting, with her metadata, relayed by the host.
    assert (
        '  [bob  ] got "Hello, Bob!" with metadata '
        '{"from": "alice", "kind": "chat", "relayed_by": "host"}'
    ) in lines
    # A JSON object went the other way.
    assert (
        '  [alice] got {"reply": "Hi Alice!", "mood": ["happy", 3]} with metadata '
        '{"from": "bob", "relayed_by": "host"}'
    ) in lines
    # Raw bytes travelled unchanged.
    assert (
        f"  [bob  ] got {RAW_BYTES} with metadata "
        '{"from": "alice", "kind": "raw", "relayed_by": "host"}'
    ) in lines
    # Alice asked the host a question and got its answer.
    assert '  [host ] alice asks "who is here?"; answering' in lines
    assert '  [alice] the host answered her request: ["alice", "bob"]' in lines
    # Bob's close reason reached the host; Alice left without one.
    assert "  [host ] lost bob: close code 1000 (see you)" in lines
    assert "  [host ] lost alice: close code 1000 (no reason)" in lines
    check_login(lines, tls_version)
    events = 26 if tls_version is None else 28
    assert lines[-1] == f"done: {events} events, messages went both ways with metadata."


def check_login(lines: list[str], tls_version: str | None) -> None:
    """The demo's host requires login: both clients log in, a wrong password is refused."""
    required = [line for line in lines if line.startswith("  [host ] login required; ")]
    assert required == [
        "  [host ] login required; users alice and bob, with random passwords"
        + ("; without TLS, user names and messages cross readable" if tls_version is None else "")
    ]
    for name in ("alice", "bob"):
        # The host's logged_in event came before its new_client, on the same connection.
        logged_in = [line for line in lines if line.startswith(f"  [host ] {name} logged in from ")]
        assert len(logged_in) == 1, lines
        address = logged_in[0].rsplit(" ", 1)[-1]
        index = lines.index(logged_in[0])
        assert lines[index + 1].startswith(f"  [host ] new client from {address} "), lines
        assert f"  [{name:<5}] logged in as {name}, without sending the password" in lines
    # Eve's wrong password was refused with the same words as an unknown user would get.
    index = lines.index("  [eve  ] tries to log in as bob with a wrong password")
    assert lines[index + 1].startswith(
        "  [eve  ] login refused: wrong user name or password (127.0.0.1:"
    ), lines
    assert lines[index + 2] == (
        "  [host ] login attempts: 2 succeeded, 1 failed (bob from 127.0.0.1)"
    )
    # Eve never became a client.
    assert sum("new client from" in line for line in lines) == 2


@pytest.mark.parametrize("backend", [None, "asyncio", "trio"])
def test_demo_runs_over_tls(backend: str | None) -> None:
    args = ["demo"] if backend is None else ["demo", "--backend", backend]
    result = run(sys.executable, "-m", "alvaro", *args)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()

    assert lines[0] == (
        f"alvaro {alvaro.__version__} demo: a host and two clients on 127.0.0.1, "
        f"on {backend or 'asyncio'}, over TLS"
    )
    assert lines[1] == (
        "(a throwaway CA made for this demo signs the host's certificate; --plain for none)"
    )
    versions = {line.rsplit(" ", 1)[-1] for line in lines if "new client from" in line}
    assert len(versions) == 1, lines
    version = versions.pop()
    assert version in {"TLSv1.2", "TLSv1.3"}
    check_transcript(lines, version)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_plain(backend: str) -> None:
    result = run(sys.executable, "-m", "alvaro", "demo", "--plain", "--backend", backend)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"alvaro {alvaro.__version__} demo: a host and two clients on 127.0.0.1, "
        f"on {backend}, in plaintext"
    )
    assert lines[1] == ""
    check_transcript(lines, None)


def test_demo_without_trustme_says_so_and_runs_in_plaintext() -> None:
    result = run(sys.executable, "-c", WITHOUT_TRUSTME, "demo")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    # One line says why there is no TLS and how to get it; then the plaintext demo runs.
    assert lines[0] == (
        "alvaro demo: trustme is not installed, so this demo runs without TLS "
        "(pip install trustme to see it over TLS)"
    )
    assert lines[1].endswith("on asyncio, in plaintext")
    check_transcript(lines[1:], None)


def test_demo_verbose_logs_to_stderr() -> None:
    result = run(sys.executable, "-m", "alvaro", "-v", "demo")
    assert result.returncode == 0, result.stderr
    assert "alvaro.host INFO listening on 127.0.0.1:" in result.stderr
    assert result.stdout.splitlines()[-1].startswith("done:")


@pytest.mark.parametrize("plain", [False, True], ids=["tls", "plain"])
def test_demo_never_shows_the_passwords(
    plain: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The demo makes a random password per user; catch them on their way into the store.
    passwords: list[str] = []
    add_user = Accounts.add_user

    def spy(self: Accounts, name: str, password: str, *, replace: bool = False) -> None:
        passwords.append(password)
        add_user(self, name, password, replace=replace)

    monkeypatch.setattr(Accounts, "add_user", spy)
    caplog.set_level(logging.DEBUG, logger="alvaro")
    assert main(["demo", "--plain"] if plain else ["demo"]) == 0
    out, err = capsys.readouterr()

    assert len(passwords) == 2
    assert len(set(passwords)) == 2
    assert all(len(password) >= 16 for password in passwords)
    # Nowhere: not in the transcript, not on stderr, not in any log record (DEBUG included).
    records = "\n".join(record.getMessage() for record in caplog.records)
    assert "logged in as alice" in out
    assert "alice logged in from" in records  # the log was captured
    for password in passwords:
        assert password not in out
        assert password not in err
        assert password not in records
    assert "guess" not in out  # nor Eve's wrong one
    # Without TLS, both sides warn that names and messages cross readable.
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if plain:
        assert any("login is required but TLS is off" in message for message in warned)
        assert any("logging in to 127.0.0.1:" in message for message in warned)
    else:
        assert warned == []


@pytest.mark.parametrize("plain", [[], ["--plain"]], ids=["tls", "plain"])
def test_demo_on_trio_without_trio_says_so_in_one_line(plain: list[str]) -> None:
    """BUG: this printed a 43-line traceback (anyio's LookupError) and exited with 1."""
    without_trio = WITHOUT_TRUSTME.replace("'trustme'", "'trio'")
    result = run(sys.executable, "-c", without_trio, "demo", "--backend", "trio", *plain)
    assert result.stderr == (
        "alvaro demo: --backend trio needs trio, which is not installed: pip install trio\n"
    )
    assert result.returncode == 2
    assert result.stdout == ""


def test_demo_rejects_unknown_backend() -> None:
    result = run(sys.executable, "-m", "alvaro", "demo", "--backend", "twisted")
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
    assert result.stdout == ""


# --- alvaro certs ---


def test_certs_writes_the_files_and_says_how_to_use_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "new" / "certs"  # made, with its parents
    assert main(["certs", str(folder), "--name", "dev.example", "--name", "localhost"]) == 0
    out, err = capsys.readouterr()
    assert err == ""

    assert sorted(path.name for path in folder.iterdir()) == sorted(CERT_FILES)  # nothing else
    for name in ("ca.pem", "server.pem", "client.pem"):
        assert (folder / name).read_text().startswith("-----BEGIN CERTIFICATE-----")
    for name in ("server.key", "client.key"):
        assert "PRIVATE KEY-----" in (folder / name).read_text()

    ca, cert, key = (f'"{folder / name}"' for name in ("ca.pem", "server.pem", "server.key"))
    client_cert, client_key = (f'"{folder / name}"' for name in ("client.pem", "client.key"))
    lines = out.splitlines()
    assert lines[0] == f"Wrote a throwaway CA and certificates to {folder}:"
    for name in CERT_FILES:
        assert any(line.startswith(f"  {folder / name} ") for line in lines), name
    # --name adds names; the loopback names are always there, and none is repeated.
    assert any(
        line.endswith("the server certificate, for localhost, 127.0.0.1, ::1, dev.example")
        for line in lines
    )
    # The original style, host and client, with these files.
    assert f"server.start(useSSL=True, sslCert={cert}, sslKey={key})" in out
    assert f'client.connect("localhost", 8888, useSSL=True, sslCert={ca})' in out
    # The alvaro.tls style, and mutual TLS.
    assert f"alvaro.tls.server_context({cert}, {key})" in out
    assert f"alvaro.tls.client_context({ca})" in out
    assert f"{cert}, {key}, client_ca={ca}" in out
    assert f"{ca}, certfile={client_cert}, keyfile={client_key}" in out
    assert "for local development and tests only" in out


def test_certs_as_trustme_users_expect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without a folder: the current one, as "python -m trustme" does.
    monkeypatch.chdir(tmp_path)
    assert main(["certs"]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(CERT_FILES)
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"Wrote a throwaway CA and certificates to {tmp_path}:"
    # It says how to use them from the shell too.
    assert "    alvaro serve --tls-cert server.pem --tls-key server.key\n" in out
    assert "    alvaro connect localhost 8888 --cafile ca.pem\n" in out
    # --dir says where, --names replaces the default names (-i/--identities as in trustme),
    # --quiet prints nothing.
    folder = tmp_path / "elsewhere"
    assert main(["certs", "--dir", str(folder), "--names", "dev.example", "10.0.0.1"]) == 0
    out = capsys.readouterr().out
    assert "the server certificate, for dev.example, 10.0.0.1\n" in out
    cert = x509.load_pem_x509_certificate((folder / "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(name.value) for name in names] == ["dev.example", "10.0.0.1"]
    assert main(["certs", "-d", str(folder), "-i", "a.example", "--force", "--quiet"]) == 0
    assert capsys.readouterr() == ("", "")
    assert (folder / "server.pem").read_bytes() != cert.public_bytes(Encoding.PEM)
    # The default names are alvaro.testing's.
    assert admin._LOOPBACK == testing.LOOPBACK_NAMES
    # One folder, given once.
    assert main(["certs", str(folder), "--dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == "alvaro certs: give the folder once: DIR or --dir\n"


@posix_permissions
def test_certs_keys_are_owner_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["certs", str(tmp_path)]) == 0
    assert mode(tmp_path / "server.key") == 0o600
    assert mode(tmp_path / "client.key") == 0o600
    # No staging folder is left behind.
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(CERT_FILES)


@posix_permissions
def test_certs_refuses_to_overwrite_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mine = tmp_path / "server.key"
    mine.write_text("my own key\n")
    mine.chmod(0o644)

    assert main(["certs", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (f"alvaro certs: refusing to overwrite {mine}; pass --force to replace them\n")
    # Nothing was written, not even the files that did not exist.
    assert [path.name for path in tmp_path.iterdir()] == ["server.key"]
    assert mine.read_text() == "my own key\n"

    # --force replaces it, and the new key is owner-only although the old file was not.
    assert main(["certs", str(tmp_path), "--force"]) == 0
    assert "PRIVATE KEY-----" in mine.read_text()
    assert mode(mine) == 0o600
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(CERT_FILES)

    # Everything exists now: a second run refuses and names every file.
    before = {name: (tmp_path / name).read_bytes() for name in CERT_FILES}
    assert main(["certs", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert all(str(tmp_path / name) in err for name in CERT_FILES)
    assert {name: (tmp_path / name).read_bytes() for name in CERT_FILES} == before


def test_certs_rejects_an_invalid_name_and_keeps_the_old_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", str(tmp_path)]) == 0
    before = {name: (tmp_path / name).read_bytes() for name in CERT_FILES}
    capsys.readouterr()

    assert main(["certs", str(tmp_path), "--force", "--name", "not a name"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("alvaro certs: invalid server name: ")
    assert err.count("\n") == 1
    assert {name: (tmp_path / name).read_bytes() for name in CERT_FILES} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(CERT_FILES)


def test_certs_without_trustme(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    result = run(sys.executable, "-c", WITHOUT_TRUSTME, "certs", str(folder))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "alvaro certs: needs trustme: pip install trustme\n"
    assert not folder.exists()


def test_certs_command_line(tmp_path: Path) -> None:
    # As a user runs it, through python -m alvaro.
    result = run(sys.executable, "-m", "alvaro", "certs", str(tmp_path / "certs"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.startswith("Wrote a throwaway CA and certificates to ")
    assert sorted(path.name for path in (tmp_path / "certs").iterdir()) == sorted(CERT_FILES)


@pytest.fixture
def cert_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A folder written by ``alvaro certs`` with an extra server name."""
    assert main(["certs", str(tmp_path), "--name", "dev.example"]) == 0
    capsys.readouterr()
    return tmp_path


async def echo_once(
    host: alvaro.aio.Host, client_options: dict[str, Any], **connect_options: Any
) -> alvaro.aio.Connection:
    """Connect to ``host`` on 127.0.0.1, have one message echoed, close, return the connection.

    ``client_options`` go to :class:`alvaro.aio.Client`, ``connect_options`` to its
    ``connect()`` (``server_hostname=``, the seed's ``useSSL=``, ...).
    """
    client = alvaro.aio.Client(**client_options)
    connect = functools.partial(client.connect, "127.0.0.1", host.port, **connect_options)
    with anyio.fail_after(WAIT), unwrap_group():
        async with anyio.create_task_group() as tasks:
            await tasks.start(connect)
            try:
                client.send_data("over TLS", metadata={"n": 1})
                message = await client.receive(timeout=WAIT)
            finally:
                await client.aclose()
    assert message.data == {"echo": "over TLS"}
    assert message.metadata == {"n": 1}
    connection = client.connection
    assert connection is not None
    assert connection.close_code == alvaro.CloseCode.NORMAL
    return connection


def echo(conn: alvaro.aio.Connection, data: Any, metadata: dict[str, Any]) -> None:
    conn.send_data({"echo": data}, metadata)


@pytest.mark.anyio
async def test_certs_files_work_with_alvaro_tls(cert_dir: Path) -> None:
    ca = cert_dir / "ca.pem"
    server_tls = tls.server_context(cert_dir / "server.pem", cert_dir / "server.key")
    async with testing.running_host(ssl_context=server_tls) as host:
        host.got_data = echo  # type: ignore[method-assign]
        conn = await echo_once(host, {"ssl_context": tls.client_context(ca)})
        assert conn.tls is not None
        assert conn.tls.version in {"TLSv1.2", "TLSv1.3"}
        assert {"localhost", "127.0.0.1", "dev.example"} <= set(conn.tls.peer_names)

        # The certificate carries the extra --name, which the client checks instead of the address.
        conn = await echo_once(
            host, {"ssl_context": tls.client_context(ca)}, server_hostname="dev.example"
        )
        assert conn.tls is not None
        with pytest.raises(TLSError) as error:
            await echo_once(
                host, {"ssl_context": tls.client_context(ca)}, server_hostname="other.example"
            )
        assert error.value.kind == TLSError.HOSTNAME_MISMATCH

        # The seed's client spelling with the CA file, as ``alvaro certs`` prints it.
        conn = await echo_once(host, {}, useSSL=True, sslCert=str(ca))
        assert conn.tls is not None

        # Another CA does not vouch for this certificate.
        with pytest.raises(TLSError) as error:
            await echo_once(host, {"ssl_context": testing.client_context(testing.make_ca())})
        assert error.value.kind == TLSError.UNTRUSTED


@pytest.mark.anyio
async def test_certs_files_work_for_mutual_tls(cert_dir: Path) -> None:
    server_tls = tls.server_context(
        cert_dir / "server.pem", cert_dir / "server.key", client_ca=cert_dir / "ca.pem"
    )
    client_tls = tls.client_context(
        cert_dir / "ca.pem",
        certfile=cert_dir / "client.pem",
        keyfile=cert_dir / "client.key",
    )
    seen: list[tuple[str, ...]] = []

    def new_client(conn: alvaro.aio.Connection) -> None:
        assert conn.tls is not None
        seen.append(conn.tls.peer_names)

    async with testing.running_host(ssl_context=server_tls) as host:
        host.got_data = echo  # type: ignore[method-assign]
        host.new_client = new_client  # type: ignore[method-assign]
        conn = await echo_once(host, {"ssl_context": client_tls})
        assert conn.tls is not None
        assert seen == [("alvaro-client",)]

        # Without the client certificate the host refuses the client.
        with pytest.raises(TLSError) as error:
            await echo_once(host, {"ssl_context": tls.client_context(cert_dir / "ca.pem")})
        assert error.value.kind == TLSError.CERTIFICATE_REQUIRED
        assert len(seen) == 1


@posix_permissions
def test_write_tls_files_over_an_existing_key_makes_it_owner_only(tmp_path: Path) -> None:
    old = tmp_path / "server.key"
    old.write_text("old\n")
    old.chmod(0o644)
    testing.write_tls_files(tmp_path)
    assert mode(old) == 0o600


# --- alvaro users ---


def password_matches(verifier: Verifier, password: str) -> bool:
    """Whether ``verifier`` is that of ``password`` (the host's check, without a network)."""
    mechanism = scramp.ScramMechanism("SCRAM-SHA-256")
    _, stored_key, server_key, _ = mechanism.make_auth_info(
        password, iteration_count=verifier.iterations, salt=verifier.salt
    )
    return (stored_key, server_key) == (verifier.stored_key, verifier.server_key)


def verifier_of(path: Path, name: str) -> Verifier:
    accounts = Accounts.load(path)
    assert accounts.has_user(name)
    return accounts.auth_info(name)


class Prompt:
    """Stands in for getpass.getpass: answers each prompt in turn and records the prompts."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.prompts: list[str] = []

    def __call__(self, prompt: str = "Password: ", stream: Any = None) -> str:
        self.prompts.append(prompt)
        if not self.answers:
            raise EOFError
        return self.answers.pop(0)


@pytest.fixture
def prompt(monkeypatch: pytest.MonkeyPatch) -> Prompt:
    """No real prompt: ``getpass.getpass`` answers nothing unless a test gives answers."""
    fake = Prompt()
    monkeypatch.setattr("getpass.getpass", fake)
    return fake


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


@pytest.fixture
def two_users(tmp_path: Path) -> Path:
    """An accounts file with users alice and bob (fast verifiers: only the file matters here)."""
    path = tmp_path / "users.json"
    testing.fast_accounts({"bob": "bob's password", "alice": "alice's password"}).save(path)
    return path


@posix_permissions
def test_users_add_asks_twice_and_writes_an_owner_only_file(
    tmp_path: Path, prompt: Prompt, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "users.json"
    prompt.answers = ["correct horse battery", "correct horse battery"]
    assert main(["users", "add", "alice", "--file", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"added user alice to {path}\n"
    assert err == ""
    assert prompt.prompts == ["Password for alice: ", "The same password again: "]

    assert mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users.json"]  # no temporary left
    verifier = verifier_of(path, "alice")
    assert verifier.iterations == 600_000  # the default work factor, not the demo's
    assert password_matches(verifier, "correct horse battery")
    assert b"correct horse" not in path.read_bytes()  # only the verifier is stored


@posix_permissions
def test_users_add_makes_a_readable_file_owner_only(
    two_users: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    two_users.chmod(0o644)
    stdin(monkeypatch, "carol's password\n")
    assert main(["users", "add", "carol", "-f", str(two_users), "--password-stdin"]) == 0
    assert mode(two_users) == 0o600


def test_users_add_password_stdin_takes_one_line_as_it_is(
    tmp_path: Path,
    prompt: Prompt,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "users.json"
    # Only the line ending goes: the spaces are part of the password; the next line is ignored.
    stdin(monkeypatch, " spaced out \r\nsecond line\n")
    assert main(["users", "add", "ann", "-f", str(path), "--password-stdin"]) == 0
    assert capsys.readouterr() == (f"added user ann to {path}\n", "")
    assert prompt.prompts == []
    verifier = verifier_of(path, "ann")
    assert password_matches(verifier, " spaced out ")
    assert not password_matches(verifier, "spaced out")


def test_users_add_keeps_the_other_users_bans_history_and_secret(
    two_users: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    accounts = Accounts.load(two_users)
    accounts.ban("203.0.113.9")
    accounts.record_failure("198.51.100.1", "mallory")
    accounts.save(two_users)
    before = json.loads(two_users.read_text())

    stdin(monkeypatch, "carol's password\n")
    assert main(["users", "add", "carol", "-f", str(two_users), "--password-stdin"]) == 0
    after = json.loads(two_users.read_text())
    assert sorted(after["users"]) == ["alice", "bob", "carol"]
    for key in ("secret", "blacklist", "attempts"):
        assert after[key] == before[key], key
    for name in ("alice", "bob"):
        assert after["users"][name] == before["users"][name]


def test_users_add_refuses_two_different_passwords(
    tmp_path: Path, prompt: Prompt, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "users.json"
    prompt.answers = ["one password", "another password"]
    assert main(["users", "add", "alice", "-f", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == "alvaro users: the two passwords differ; nothing was changed\n"
    assert not path.exists()


def test_users_add_an_existing_user_needs_replace(
    two_users: Path, prompt: Prompt, capsys: pytest.CaptureFixture[str]
) -> None:
    before = two_users.read_bytes()
    assert main(["users", "add", "alice", "-f", str(two_users)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"alvaro users: user 'alice' exists already in {two_users}; "
        "pass --replace to give it a new password\n"
    )
    assert prompt.prompts == []  # refused before asking for a password
    assert two_users.read_bytes() == before

    prompt.answers = ["a new password", "a new password"]
    assert main(["users", "add", "alice", "-f", str(two_users), "--replace"]) == 0
    assert capsys.readouterr().out == f"changed the password of user alice in {two_users}\n"
    verifier = verifier_of(two_users, "alice")
    assert password_matches(verifier, "a new password")
    assert not password_matches(verifier, "alice's password")
    assert Accounts.load(two_users).users == ["alice", "bob"]


@pytest.mark.parametrize(
    ("args", "text", "message"),
    [
        (
            ["bad name"],
            "pw\n",
            "alvaro users: invalid user name 'bad name': a user name may contain only ",
        ),
        (["x" * 65], "pw\n", "alvaro users: invalid user name 'xxx"),
        (["ann"], "\n", "alvaro users: this password cannot be used: "),
        (["ann"], "", "alvaro users: no password on standard input\n"),
        (["ann"], "x" * 1025 + "\n", "alvaro users: this password cannot be used: "),
        (["ann"], "bell\x07\n", "alvaro users: this password cannot be used: "),
    ],
    ids=["space", "long-name", "empty", "no-input", "long-password", "control-character"],
)
def test_users_add_refuses_invalid_names_and_passwords(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    text: str,
    message: str,
) -> None:
    path = tmp_path / "users.json"
    stdin(monkeypatch, text)
    assert main(["users", "add", *args, "-f", str(path), "--password-stdin"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(message)
    assert err.count("\n") == 1
    assert not path.exists()


def test_users_add_without_a_typed_password(
    tmp_path: Path, prompt: Prompt, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "users.json"
    assert main(["users", "add", "ann", "-f", str(path)]) == 1  # the prompt got end-of-file
    assert capsys.readouterr().err == "alvaro users: no password was typed\n"
    assert not path.exists()


def test_users_add_to_a_folder_that_does_not_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "missing" / "users.json"
    stdin(monkeypatch, "a password\n")
    assert main(["users", "add", "ann", "-f", str(path), "--password-stdin"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"alvaro users: cannot write {path}: ")
    assert not path.parent.exists()


def test_users_list_prints_the_names_only(
    two_users: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["users", "list", "-f", str(two_users)]) == 0
    assert capsys.readouterr() == ("alice\nbob\n", "")

    empty = tmp_path / "empty.json"
    Accounts().save(empty)
    assert main(["users", "list", "--file", str(empty)]) == 0
    assert capsys.readouterr() == ("", "")


def test_users_remove(two_users: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["users", "remove", "bob", "-f", str(two_users)]) == 0
    assert capsys.readouterr() == (f"removed user bob from {two_users}\n", "")
    assert Accounts.load(two_users).users == ["alice"]

    before = two_users.read_bytes()
    assert main(["users", "remove", "bob", "-f", str(two_users)]) == 1
    assert capsys.readouterr() == ("", f"alvaro users: there is no user 'bob' in {two_users}\n")
    assert two_users.read_bytes() == before


@pytest.mark.parametrize(
    "args",
    [["list"], ["remove", "alice"], ["blacklist"], ["blacklist", "--remove", "10.0.0.1"]],
    ids=["list", "remove", "blacklist", "unban"],
)
def test_users_without_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    path = tmp_path / "users.json"
    assert main(["users", *args, "-f", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"alvaro users: {path} does not exist ('alvaro users add NAME --file {path}' creates it)\n"
    )
    assert not path.exists()


CORRUPT = {
    "garbage": b"not json at all",
    "truncated": b'{"format": "alvaro-accounts", "version": 1, "sec',
    "other-format": b'{"format": "something-else", "version": 1}',
    "newer": b'{"format": "alvaro-accounts", "version": 99}',
}


@pytest.mark.parametrize("content", CORRUPT.values(), ids=CORRUPT.keys())
@pytest.mark.parametrize(
    "args",
    [["list"], ["add", "ann", "--password-stdin"], ["remove", "ann"], ["blacklist"]],
    ids=["list", "add", "remove", "blacklist"],
)
def test_users_refuses_a_corrupt_file_and_leaves_it_alone(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    args: list[str],
) -> None:
    path = tmp_path / "users.json"
    path.write_bytes(content)
    stdin(monkeypatch, "a password\n")
    assert main(["users", *args, "-f", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(f"alvaro users: {path} is not a valid alvaro accounts file: ")
    assert err.count("\n") == 1
    assert path.read_bytes() == content  # never overwritten


def test_users_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["users", "list", "-f", str(tmp_path)]) == 1  # a folder
    assert capsys.readouterr().err.startswith(f"alvaro users: cannot read {tmp_path}: ")


@pytest.mark.parametrize("command", ["bans", "blacklist"])  # the second: the earlier name
def test_users_bans(two_users: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    file = ["-f", str(two_users)]
    assert main(["users", command, *file]) == 0
    assert capsys.readouterr() == ("", "")  # nothing banned yet

    assert main(["users", command, *file, "--add", "203.0.113.9", "--seconds", "600"]) == 0
    assert capsys.readouterr().out == f"banned 203.0.113.9 for 600 s more in {two_users}\n"
    # An IPv6 address stands for its /64, as hosts count it.
    assert main(["users", command, *file, "--add", "2001:db8::1234"]) == 0
    assert capsys.readouterr().out == f"banned 2001:db8::/64 until removed in {two_users}\n"

    assert main(["users", command, *file]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == ["2001:db8::/64  until removed", "203.0.113.9  for 600 s more"]

    # The host that loads the file refuses these addresses; the users are still there.
    accounts = Accounts.load(two_users)
    assert accounts.is_banned("203.0.113.9")
    assert accounts.is_banned("2001:db8::ffff:1")
    assert not accounts.is_banned("2001:db8:0:1::1")
    assert accounts.users == ["alice", "bob"]

    # A ban is lifted by the address as listed, or by any address in it.
    assert main(["users", command, *file, "--remove", "2001:db8::/64"]) == 0
    assert capsys.readouterr().out == f"lifted the ban on 2001:db8::/64 in {two_users}\n"
    assert main(["users", command, *file, "--remove", "203.0.113.9"]) == 0
    capsys.readouterr()
    assert Accounts.load(two_users).bans == {}

    assert main(["users", command, *file, "--remove", "203.0.113.9"]) == 1
    assert capsys.readouterr() == (
        "",
        f"alvaro users: 203.0.113.9 is not banned in {two_users}\n",
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--add", "300.1.1.1"], "argument --add: not an IP address: '300.1.1.1'"),
        (["--add", "10.0.0.0/8"], "not an IP address or an IPv6 /64 network: '10.0.0.0/8'"),
        (["--remove", "host.example"], "argument --remove: not an IP address"),
        (["--add", "10.0.0.1", "--seconds", "0"], "not a positive number of seconds: '0'"),
        (["--add", "10.0.0.1", "--seconds", "inf"], "not a positive number of seconds"),
        (["--seconds", "60"], "--seconds goes with --add"),
        (["--add", "10.0.0.1", "--remove", "10.0.0.2"], "not allowed with argument"),
    ],
)
def test_users_bans_usage_errors(
    two_users: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = two_users.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        main(["users", "bans", "-f", str(two_users), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: alvaro users bans ")
    assert message in err
    assert two_users.read_bytes() == before


def test_users_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["users"], ["users", "list"], ["users", "add", "-f", "x.json"]):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2, args
        assert "usage: alvaro users" in capsys.readouterr().err


def test_users_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["users", "--help"])
    out = capsys.readouterr().out
    for action in ("add", "remove", "list", "blacklist"):
        assert action in out
    assert "host.load(FILE)" in out
    with pytest.raises(SystemExit):
        main(["users", "add", "--help"])
    out = capsys.readouterr().out
    assert "--password-stdin" in out
    assert "--replace" in out


@pytest.mark.anyio
async def test_users_file_works_for_a_host(tmp_path: Path) -> None:
    # As an administrator would: the command writes the file, the host loads it.
    path = tmp_path / "users.json"
    result = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [
                sys.executable,
                "-m",
                "alvaro",
                "users",
                "add",
                "ann",
                "-f",
                str(path),
                "--password-stdin",
            ],
            input="ann's password\n",
            capture_output=True,
            text=True,
            timeout=3 * WAIT,
            check=False,
        )
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"added user ann to {path}\n"
    assert result.stderr == ""

    host = alvaro.aio.Host(login_required=True)
    host.load(path)
    assert host.users == ["ann"]
    async with testing.running_host(login_required=True, accounts=host.accounts) as running:
        with anyio.fail_after(WAIT):
            async with testing.connected_client(running, login=("ann", "ann's password")) as c:
                assert c.user == "ann"
            with pytest.raises(alvaro.AuthenticationError, match="wrong user name or password"):
                async with testing.connected_client(running, login=("ann", "not it")):
                    pass


# --- --version, help, console script ---


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"alvaro {alvaro.__version__}\n"


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: alvaro")
    assert "demo" in out
    assert "certs" in out
    assert "users" in out
    assert "--version" in out


def test_certs_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["certs", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--name NAME" in out
    assert "--force" in out
    assert "Needs trustme: pip install trustme" in out


def test_console_script() -> None:
    bin_dir = Path(sys.executable).parent
    script = shutil.which("alvaro", path=str(bin_dir))
    assert script is not None, f"no 'alvaro' console script in {bin_dir}"
    result = run(script, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"alvaro {alvaro.__version__}\n"
