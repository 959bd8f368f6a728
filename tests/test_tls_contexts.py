"""Unit tests of the TLS building blocks, without sockets.

* :mod:`alvaro.tls`: the contexts are safe by default (TLS 1.2 minimum, verification and
  hostname checks on clients, no session tickets on hosts, mutual TLS from one argument), and
  every unreadable file is a :class:`~alvaro.TLSError` of kind CONFIGURATION naming the path.
* :class:`~alvaro.tls.TLSInfo.peer_names`.
* :class:`alvaro._throttle.LogThrottle`, on a fake clock.
* :func:`alvaro.aio._io.tls.classify_ssl_error`: which :mod:`ssl` error becomes which ``kind``.
"""

from __future__ import annotations

import ssl
import types
from typing import TYPE_CHECKING

import pytest
from cryptography.hazmat.primitives import serialization

import alvaro
import alvaro.tls
from alvaro import TLSError, _throttle
from alvaro._throttle import LogThrottle
from alvaro.aio._io import classify_ssl_error
from alvaro.tls import TLSInfo

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    import trustme

    from alvaro.testing import TLSFiles


# --- alvaro.tls: safe defaults ----------------------------------------------------------------


def test_client_context_verifies_the_host_and_its_name(alvaro_tls_files: TLSFiles) -> None:
    for context in (
        alvaro.tls.client_context(alvaro_tls_files.ca),
        alvaro.tls.client_context(),  # the system's CA store
    ):
        assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
        assert context.check_hostname is True
        assert context.verify_mode == ssl.CERT_REQUIRED
        assert context.protocol == ssl.PROTOCOL_TLS_CLIENT


def test_client_context_trusts_exactly_the_given_ca(
    alvaro_tls_files: TLSFiles, alvaro_ca: trustme.CA
) -> None:
    # A private deployment must not also accept public certificates for its name.
    context = alvaro.tls.client_context(alvaro_tls_files.ca)
    assert context.cert_store_stats()["x509_ca"] == 1
    (trusted,) = context.get_ca_certs(binary_form=True)
    assert trusted == ssl.PEM_cert_to_DER_cert(alvaro_ca.cert_pem.bytes().decode())


def test_client_context_with_a_client_certificate(alvaro_tls_files: TLSFiles) -> None:
    files = alvaro_tls_files
    context = alvaro.tls.client_context(
        files.ca, certfile=files.client_cert, keyfile=files.client_key
    )
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True


def test_server_context_defaults(alvaro_tls_files: TLSFiles) -> None:
    context = alvaro.tls.server_context(alvaro_tls_files.cert, alvaro_tls_files.key)
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert context.num_tickets == 0  # openssl#7967: no tickets, no hang on early close
    assert context.verify_mode == ssl.CERT_NONE  # no client certificate asked for
    assert context.protocol == ssl.PROTOCOL_TLS_SERVER


@pytest.mark.parametrize(
    ("require", "mode"), [(True, ssl.CERT_REQUIRED), (False, ssl.CERT_OPTIONAL)]
)
def test_server_context_client_ca_turns_on_mutual_tls(
    require: bool, mode: ssl.VerifyMode, alvaro_tls_files: TLSFiles
) -> None:
    files = alvaro_tls_files
    context = alvaro.tls.server_context(
        files.cert, files.key, client_ca=files.ca, require_client_cert=require
    )
    assert context.verify_mode == mode
    assert context.cert_store_stats()["x509_ca"] == 1


def test_server_context_key_in_the_certificate_file(alvaro_ca: trustme.CA, tmp_path: Path) -> None:
    combined = tmp_path / "combined.pem"
    alvaro_ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(str(combined))
    context = alvaro.tls.server_context(combined)
    assert context.num_tickets == 0


def _encrypted_key(cert: trustme.LeafCert, path: Path, password: bytes) -> None:
    key = serialization.load_pem_private_key(cert.private_key_pem.bytes(), password=None)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(password),
        )
    )


def test_server_context_with_an_encrypted_key(alvaro_ca: trustme.CA, tmp_path: Path) -> None:
    cert = alvaro_ca.issue_cert("localhost")
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    _encrypted_key(cert, key_path, b"open sesame")
    alvaro.tls.server_context(cert_path, key_path, password="open sesame")
    with pytest.raises(TLSError) as info:
        alvaro.tls.server_context(cert_path, key_path, password="wrong")
    assert info.value.kind == TLSError.CONFIGURATION
    assert str(key_path) in str(info.value)


# --- alvaro.tls: files that cannot be used ------------------------------------------------------


def _missing_file_cases(files: TLSFiles, missing: Path) -> dict[str, Callable[[], object]]:
    return {
        "server certificate": lambda: alvaro.tls.server_context(missing, files.key),
        "server key": lambda: alvaro.tls.server_context(files.cert, missing),
        "client CA of a host": lambda: alvaro.tls.server_context(
            files.cert, files.key, client_ca=missing
        ),
        "CA of a client": lambda: alvaro.tls.client_context(missing),
        "client certificate": lambda: alvaro.tls.client_context(files.ca, certfile=missing),
        "client key": lambda: alvaro.tls.client_context(
            files.ca, certfile=files.client_cert, keyfile=missing
        ),
    }


CASES = [
    "server certificate",
    "server key",
    "client CA of a host",
    "CA of a client",
    "client certificate",
    "client key",
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("problem", ["missing", "not PEM", "a directory"])
def test_unusable_files_raise_configuration_errors_naming_the_path(
    case: str, problem: str, alvaro_tls_files: TLSFiles, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.pem"
    if problem == "not PEM":
        bad.write_text("this is not a PEM file\n")
    elif problem == "a directory":
        bad.mkdir()
    with pytest.raises(TLSError) as info:
        _missing_file_cases(alvaro_tls_files, bad)[case]()
    error = info.value
    assert error.kind == TLSError.CONFIGURATION
    assert str(bad) in str(error)
    assert isinstance(error.__cause__, (OSError, ssl.SSLError, ValueError))
    if problem == "missing":
        assert "not found" in str(error)
        assert isinstance(error.__cause__, FileNotFoundError)


def test_a_key_that_does_not_match_the_certificate(
    alvaro_ca: trustme.CA, alvaro_tls_files: TLSFiles, tmp_path: Path
) -> None:
    other_key = tmp_path / "other.key"
    alvaro_ca.issue_cert("localhost").private_key_pem.write_to_path(str(other_key))
    with pytest.raises(TLSError) as info:
        alvaro.tls.server_context(alvaro_tls_files.cert, other_key)
    assert info.value.kind == TLSError.CONFIGURATION
    assert str(other_key) in str(info.value)
    assert isinstance(info.value.__cause__, ssl.SSLError)


def test_a_tls_error_is_a_connect_error_and_an_os_error() -> None:
    # Programs that catch connection failures catch TLS failures too.
    assert issubclass(TLSError, alvaro.ConnectError)
    assert issubclass(TLSError, OSError)


# --- TLSInfo.peer_names -----------------------------------------------------------------------


def test_peer_names_lists_san_names_then_the_common_name() -> None:
    info = TLSInfo(
        version="TLSv1.3",
        cipher="TLS_AES_256_GCM_SHA384",
        peer_certificate={
            "subject": ((("organizationName", "Example"),), (("commonName", "client-1"),)),
            "subjectAltName": (
                ("DNS", "client-1"),
                ("DNS", "client-1.example"),
                ("IP Address", "127.0.0.1"),
                ("email", "ops@example.com"),
                ("URI", "spiffe://example/client-1"),
            ),
        },
    )
    # In order, without repeats; only names a host is known by (not e-mail or URI).
    assert info.peer_names == ("client-1", "client-1.example", "127.0.0.1")


def test_peer_names_shortens_ipv6_addresses() -> None:
    info = TLSInfo("TLSv1.3", "x", {"subjectAltName": (("IP Address", "0:0:0:0:0:0:0:1\n"),)})
    assert info.peer_names == ("::1",)


def test_peer_names_from_a_real_certificate(alvaro_ca: trustme.CA, tmp_path: Path) -> None:
    # The dict ssl's getpeercert() makes, decoded here without a connection.
    cert = alvaro_ca.issue_cert("svc.example", "127.0.0.1", "::1", common_name="svc")
    pem = tmp_path / "cert.pem"
    cert.cert_chain_pems[0].write_to_path(str(pem))
    decoded = ssl._ssl._test_decode_cert(str(pem))  # type: ignore[attr-defined]
    info = TLSInfo("TLSv1.3", "x", decoded)
    assert info.peer_names == ("svc.example", "127.0.0.1", "::1", "svc")


@pytest.mark.parametrize("certificate", [None, {}])
def test_peer_names_without_a_certificate_is_empty(certificate: dict[str, object] | None) -> None:
    assert TLSInfo("TLSv1.3", "x", certificate).peer_names == ()


# --- LogThrottle ------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A clock for LogThrottle only (the real time module stays untouched elsewhere)."""
    fake = FakeClock()
    monkeypatch.setattr(_throttle, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def test_log_throttle_lets_a_burst_through_then_counts(clock: FakeClock) -> None:
    throttle = LogThrottle(burst=3, interval=10.0)
    assert [throttle.allow() for _ in range(3)] == [(True, 0)] * 3
    assert [throttle.allow() for _ in range(4)] == [(False, 0)] * 4
    clock.now += 9.9
    assert throttle.allow() == (False, 0)
    # A new interval: the next message goes through and says how many were left out.
    clock.now += 0.1
    assert throttle.allow() == (True, 5)
    assert throttle.allow() == (True, 0)
    assert throttle.allow() == (True, 0)
    assert throttle.allow() == (False, 0)
    clock.now += 100
    assert throttle.allow() == (True, 1)


def test_log_throttle_defaults_to_five_a_minute(clock: FakeClock) -> None:
    throttle = LogThrottle()
    results = [throttle.allow() for _ in range(1000)]
    assert results[:5] == [(True, 0)] * 5
    assert set(results[5:]) == {(False, 0)}
    clock.now += 59
    assert throttle.allow() == (False, 0)
    clock.now += 1
    assert throttle.allow() == (True, 996)


def test_log_throttle_never_suppresses_below_the_burst(clock: FakeClock) -> None:
    throttle = LogThrottle(burst=2, interval=1.0)
    for _ in range(50):
        assert throttle.allow() == (True, 0)
        assert throttle.allow() == (True, 0)
        clock.now += 1.0


# --- classify_ssl_error -----------------------------------------------------------------------


def verify_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] ({message})")
    exc.reason = "CERTIFICATE_VERIFY_FAILED"
    exc.verify_code = code
    exc.verify_message = message
    return exc


def ssl_error(reason: str, cls: type[ssl.SSLError] = ssl.SSLError) -> ssl.SSLError:
    exc = cls(1, f"[SSL: {reason}] {reason.lower().replace('_', ' ')}")
    exc.reason = reason
    return exc


CLASSIFY = [
    # (what happened, the error, on the server side?, kind)
    ("expired", verify_error(10, "certificate has expired"), False, TLSError.EXPIRED),
    ("not yet valid", verify_error(9, "certificate is not yet valid"), False, TLSError.EXPIRED),
    ("client cert expired", verify_error(10, "expired"), True, TLSError.EXPIRED),
    ("name", verify_error(62, "Hostname mismatch"), False, TLSError.HOSTNAME_MISMATCH),
    ("address", verify_error(64, "IP address mismatch"), False, TLSError.HOSTNAME_MISMATCH),
    ("unknown issuer", verify_error(20, "unable to get issuer"), False, TLSError.UNTRUSTED),
    ("self-signed", verify_error(18, "self-signed certificate"), False, TLSError.UNTRUSTED),
    ("client from other CA", verify_error(20, "unable to get issuer"), True, TLSError.UNTRUSTED),
    ("plaintext client", ssl_error("WRONG_VERSION_NUMBER"), True, TLSError.TLS_REQUIRED),
    ("http client", ssl_error("HTTP_REQUEST"), True, TLSError.TLS_REQUIRED),
    ("plaintext host", ssl_error("WRONG_VERSION_NUMBER"), False, TLSError.PLAINTEXT_PEER),
    ("record junk", ssl_error("RECORD_LAYER_FAILURE"), False, TLSError.PLAINTEXT_PEER),
    ("old client", ssl_error("UNSUPPORTED_PROTOCOL"), True, TLSError.PROTOCOL_VERSION),
    ("alert", ssl_error("TLSV1_ALERT_PROTOCOL_VERSION"), False, TLSError.PROTOCOL_VERSION),
    ("capped", ssl_error("NO_PROTOCOLS_AVAILABLE"), False, TLSError.PROTOCOL_VERSION),
    (
        "no client cert",
        ssl_error("PEER_DID_NOT_RETURN_A_CERTIFICATE"),
        True,
        TLSError.CERTIFICATE_REQUIRED,
    ),
    (
        "tls1.3 cert required",
        ssl_error("TLSV13_ALERT_CERTIFICATE_REQUIRED"),
        False,
        TLSError.CERTIFICATE_REQUIRED,
    ),
    (
        "client cert refused",
        ssl_error("TLSV1_ALERT_UNKNOWN_CA"),
        False,
        TLSError.CERTIFICATE_REQUIRED,
    ),
    ("host cert refused", ssl_error("TLSV1_ALERT_UNKNOWN_CA"), True, TLSError.UNTRUSTED),
    ("bad certificate", ssl_error("SSLV3_ALERT_BAD_CERTIFICATE"), True, TLSError.UNTRUSTED),
    ("other", ssl_error("DECRYPTION_FAILED_OR_BAD_RECORD_MAC"), False, TLSError.HANDSHAKE),
    ("eof", ssl_error("UNEXPECTED_EOF_WHILE_READING", ssl.SSLEOFError), True, TLSError.HANDSHAKE),
    ("reset", ConnectionResetError(104, "Connection reset by peer"), False, TLSError.HANDSHAKE),
]


@pytest.mark.parametrize(
    ("exc", "server_side", "kind"),
    [pytest.param(exc, server_side, kind, id=name) for name, exc, server_side, kind in CLASSIFY],
)
def test_classify_ssl_error(exc: BaseException, server_side: bool, kind: str) -> None:
    error = classify_ssl_error(
        exc, server_side=server_side, peer="192.0.2.7:4242", hostname="svc.example"
    )
    assert type(error) is TLSError
    assert error.kind == kind
    assert error.__cause__ is exc  # the ssl error is kept
    assert "192.0.2.7:4242" in str(error)  # who it was with
    if kind == TLSError.HOSTNAME_MISMATCH:
        assert "svc.example" in str(error)  # the name that was checked
        assert "server_hostname" in str(error)  # and what to do about it


def test_classify_keeps_the_details_of_a_verification_error() -> None:
    exc = verify_error(10, "certificate has expired")
    error = classify_ssl_error(exc, server_side=False, peer="h:1")
    assert "certificate has expired" in str(error)
    assert "server" in str(error)  # whose certificate
    error = classify_ssl_error(exc, server_side=True, peer="h:1")
    assert "client" in str(error)
