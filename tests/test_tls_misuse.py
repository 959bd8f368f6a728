"""TLS options used wrongly: each mistake is refused or reported, never silently ignored."""

from __future__ import annotations

import logging
import ssl
from typing import TYPE_CHECKING

import anyio
import pytest

import alvaro
import alvaro.sync
import alvaro.tls
from alvaro import TLSError
from alvaro.tls import TLSInfo

from .helpers import WAIT

if TYPE_CHECKING:
    from alvaro.testing import TLSFiles


@pytest.mark.parametrize("what", ["no verification", "no hostname check"])
def test_client_warns_when_its_context_does_not_verify(
    what: str, caplog: pytest.LogCaptureFixture
) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    if what == "no verification":
        context.verify_mode = ssl.CERT_NONE
    with caplog.at_level(logging.WARNING, logger="alvaro.client"):
        alvaro.Client(ssl_context=context)
    assert [record.levelname for record in caplog.records] == ["WARNING"]
    assert "does not verify" in caplog.records[0].getMessage()


def test_client_with_a_verifying_context_does_not_warn(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="alvaro.client"):
        alvaro.Client(ssl_context=alvaro.tls.client_context())
        alvaro.Client()
    assert caplog.records == []


def test_ssl_context_must_be_an_ssl_context() -> None:
    with pytest.raises(TypeError, match="SSLContext"):
        alvaro.Client(ssl_context="ca.pem")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SSLContext"):
        alvaro.Host(ssl_context=True)  # type: ignore[arg-type]


def test_contexts_of_the_wrong_side_are_refused_at_once(alvaro_tls_files: TLSFiles) -> None:
    server = alvaro.tls.server_context(alvaro_tls_files.cert, alvaro_tls_files.key)
    client = alvaro.tls.client_context(alvaro_tls_files.ca)
    with pytest.raises(TLSError, match="client context") as info:
        alvaro.Host(ssl_context=client)
    assert info.value.kind == TLSError.CONFIGURATION
    with pytest.raises(TLSError, match="server context") as info:
        alvaro.Client(ssl_context=server)
    assert info.value.kind == TLSError.CONFIGURATION


def test_peer_names_give_ipv6_addresses_in_their_short_form() -> None:
    info = TLSInfo(
        version="TLSv1.3",
        cipher="TLS_AES_256_GCM_SHA384",
        peer_certificate={
            "subject": ((("commonName", "node-1"),),),
            "subjectAltName": (
                ("DNS", "localhost"),
                ("IP Address", "0:0:0:0:0:0:0:1"),
                ("IP Address", "127.0.0.1"),
                ("email", "ops@example.com"),
                ("DNS", "localhost"),
            ),
        },
    )
    assert info.peer_names == ("localhost", "::1", "127.0.0.1", "node-1")
    assert TLSInfo("TLSv1.2", "x", None).peer_names == ()


@pytest.mark.anyio
async def test_connect_context_manager_takes_the_tls_arguments(
    alvaro_tls_files: TLSFiles, alvaro_server_ssl_context: object
) -> None:
    files = alvaro_tls_files
    host = alvaro.Host("127.0.0.1", 0)
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as tasks:
            await tasks.start(
                lambda task_status: host.start(
                    use_ssl=True, ssl_cert=files.cert, ssl_key=files.key, task_status=task_status
                )
            )
            # A Path works as well as a string, and the name checked can differ from the address.
            async with alvaro.aio.connect(
                "127.0.0.1", host.port, use_ssl=True, ssl_cert=files.ca, server_hostname="localhost"
            ) as client:
                assert client.connection is not None
                tls = client.connection.tls
                assert tls is not None
                assert "localhost" in tls.peer_names
            with pytest.raises(TLSError) as info:
                async with alvaro.aio.connect(
                    "127.0.0.1",
                    host.port,
                    use_ssl=True,
                    ssl_cert=files.ca,
                    server_hostname="elsewhere.example",
                ):
                    pass
            assert info.value.kind == TLSError.HOSTNAME_MISMATCH
            host.stop()


def test_sync_connect_takes_the_tls_arguments(alvaro_tls_files: TLSFiles) -> None:
    files = alvaro_tls_files
    with alvaro.sync.Host(
        "127.0.0.1", 0, ssl_context=alvaro.tls.server_context(files.cert, files.key)
    ) as host:  # started by the with block
        with alvaro.sync.connect(
            "127.0.0.1", host.port, use_ssl=True, ssl_cert=files.ca, server_hostname="localhost"
        ) as client:
            assert client.connection is not None
            assert client.connection.tls is not None


@pytest.mark.anyio
async def test_a_client_takes_no_ssl_key(alvaro_tls_files: TLSFiles) -> None:
    client = alvaro.Client()
    with pytest.raises(TypeError, match="sslKey"):
        await client.connect(
            "127.0.0.1",
            1,
            useSSL=True,
            sslCert=str(alvaro_tls_files.ca),
            sslKey="key.pem",  # type: ignore[typeddict-unknown-key]
        )
