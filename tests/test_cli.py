"""The ``alvaro`` command: ``alvaro demo``, ``alvaro certs``, ``--version`` and the help."""

from __future__ import annotations

import functools
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

import alvaro
from alvaro import TLSError, testing, tls
from alvaro._errors import unwrap_group
from alvaro.cli import main
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
    # Bob's close reason reached the host; Alice left without one.
    assert "  [host ] lost bob: close code 1000 (see you)" in lines
    assert "  [host ] lost alice: close code 1000 (no reason)" in lines
    events = 16 if tls_version is None else 18
    assert lines[-1] == f"done: {events} events, messages went both ways with metadata."


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
        "(pip install 'alvaro[testing]' to see it over TLS)"
    )
    assert lines[1].endswith("on asyncio, in plaintext")
    check_transcript(lines[1:], None)


def test_demo_verbose_logs_to_stderr() -> None:
    result = run(sys.executable, "-m", "alvaro", "-v", "demo")
    assert result.returncode == 0, result.stderr
    assert "alvaro.host INFO listening on 127.0.0.1:" in result.stderr
    assert result.stdout.splitlines()[-1].startswith("done:")


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
    assert err.startswith("alvaro certs: invalid --name: ")
    assert err.count("\n") == 1
    assert {name: (tmp_path / name).read_bytes() for name in CERT_FILES} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(CERT_FILES)


def test_certs_without_trustme(tmp_path: Path) -> None:
    folder = tmp_path / "certs"
    result = run(sys.executable, "-c", WITHOUT_TRUSTME, "certs", str(folder))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "alvaro certs: needs trustme: pip install 'alvaro[testing]'\n"
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
    assert "--version" in out


def test_certs_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["certs", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--name NAME" in out
    assert "--force" in out
    assert "pip install 'alvaro[testing]'" in out


def test_console_script() -> None:
    bin_dir = Path(sys.executable).parent
    script = shutil.which("alvaro", path=str(bin_dir))
    assert script is not None, f"no 'alvaro' console script in {bin_dir}"
    result = run(script, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"alvaro {alvaro.__version__}\n"
