"""A client context that turns verification off still works, but never silently."""

from __future__ import annotations

import logging
import ssl

import pytest

import alvaro
import alvaro.tls


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
