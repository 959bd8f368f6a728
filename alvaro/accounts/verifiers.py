"""The SCRAM-SHA-256 verifier of a password, and what a user name and a password may be.

Only the verifier of each password is stored (salt, StoredKey, ServerKey and iteration count,
RFC 5802 section 3), never the password or anything it can be decrypted back to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import NamedTuple

# scramp ships no type information; the two calls made into it are wrapped in typed functions.
import scramp  # type: ignore[import-untyped]
import scramp.core  # type: ignore[import-untyped]
import scramp.utils  # type: ignore[import-untyped]

from ..protocol.scram import MAX_ITERATIONS, MIN_ITERATIONS

__all__ = (
    "DEFAULT_ITERATIONS",
    "MAX_NAME_BYTES",
    "MAX_PASSWORD_BYTES",
    "MECHANISM",
    "Verifier",
    "make_verifier",
    "validate_name",
    "validate_password",
)

MECHANISM = "SCRAM-SHA-256"

MAX_NAME_BYTES = 64
MAX_PASSWORD_BYTES = 1024

# The SCRAM iteration count is the PBKDF2-HMAC-SHA256 work factor of the stored verifier. RFC 7677
# asks for at least 4096 (scramp's default and its minimum), but that is what an attacker who
# steals the store pays per guess, and OWASP's Password Storage Cheat Sheet asks for at least
# 600,000 iterations of PBKDF2-HMAC-SHA256. With SCRAM the host derives only when a user is added;
# the per-login cost (0.15-0.35 s on a small machine) falls on the client, so a flood of logins
# costs the host no key derivation at all. Hence the OWASP figure as the default.
DEFAULT_ITERATIONS = 600_000
# scramp refuses fewer than MIN_ITERATIONS (RFC 7677's minimum), and more than MAX_ITERATIONS
# would be a denial-of-service knob: the bounds every login uses, alvaro.protocol.scram's.

# The longest salt accepted: it travels, with both nonces, in the 4096-byte AUTH_CHALLENGE frame
# (docs/protocol.md, section 9.8). scramp and PostgreSQL make 16 to 32 bytes.
MAX_SALT_BYTES = 1024
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
SALT_BYTES = 32  # what scramp makes (secrets.token_bytes()); fake salts must look the same
KEY_BYTES = 32  # SHA-256


class Verifier(NamedTuple):
    """What a host stores to check one user's password: the SCRAM-SHA-256 verifier.

    Salt, StoredKey, ServerKey and iteration count (RFC 5802, section 3), in the order scramp's
    ``auth_fn`` returns them. Neither the password nor anything that can be turned back into it
    is here; finding the password from a verifier takes a dictionary attack at ``iterations``
    PBKDF2 rounds per guess.
    """

    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int

    def to_string(self) -> str:
        """The verifier in RFC 5803's text form, as PostgreSQL stores SCRAM passwords:
        ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64)."""
        return (
            f"{MECHANISM}${self.iterations}:{b64(self.salt)}"
            f"${b64(self.stored_key)}:{b64(self.server_key)}"
        )

    @classmethod
    def from_string(cls, text: str) -> Verifier:
        """Read a verifier written by :meth:`to_string` (or PostgreSQL's ``rolpassword``).

        Raises:
            ValueError: ``text`` is not a SCRAM-SHA-256 verifier.
        """
        try:
            mechanism, rest = text.split("$", 1)
            head, keys = rest.split("$", 1)
            count, salt = head.split(":", 1)
            stored_key, server_key = keys.split(":", 1)
            verifier = cls(
                unb64(salt), unb64(stored_key), unb64(server_key), check_iterations(int(count))
            )
        except (ValueError, TypeError, binascii.Error):
            verifier = None
            mechanism = ""
        if (
            verifier is None
            or mechanism != MECHANISM
            or not 12 <= len(verifier.salt) <= MAX_SALT_BYTES
            or len(verifier.stored_key) != KEY_BYTES
            or len(verifier.server_key) != KEY_BYTES
        ):
            raise ValueError("not a SCRAM-SHA-256 verifier (SCRAM-SHA-256$i:salt$stored:server)")
        return verifier


def validate_name(name: object) -> str:
    """Return ``name`` if it is a valid user name, else raise :class:`ValueError`.

    A valid name is 1 to 64 characters from ``A-Z a-z 0-9 . _ -``. User names never become file
    paths, but the narrow alphabet also keeps them safe in logs and SCRAM messages (which escape
    ``,`` and ``=``).
    """
    if not isinstance(name, str):
        raise TypeError(f"a user name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("a user name must not be empty")
    if len(name) > MAX_NAME_BYTES:
        raise ValueError(f"a user name must be at most {MAX_NAME_BYTES} bytes long")
    if not _NAME_CHARS.issuperset(name):
        raise ValueError(
            "a user name may contain only the letters A-Z and a-z, digits, '.', '_' and '-'"
        )
    return name


def validate_password(password: object) -> str:
    """Return ``password`` if it can be a password, else raise :class:`ValueError`.

    A password is 1 to 1024 bytes of UTF-8 and must pass SASLprep (RFC 4013), which SCRAM applies
    on both sides: it maps compatibility forms together (NFKC), so the NFC and NFD spellings of
    the same text are the same password, and it forbids control characters and the like.
    """
    if not isinstance(password, str):
        raise TypeError(f"a password must be a str, not {type(password).__name__}")
    try:
        size = len(password.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("a password must be valid Unicode text (no lone surrogates)") from None
    if size == 0:
        raise ValueError("a password must not be empty")
    if size > MAX_PASSWORD_BYTES:
        raise ValueError(f"a password must be at most {MAX_PASSWORD_BYTES} bytes long (UTF-8)")
    try:
        prepared = _saslprep(password)
    except scramp.ScramException as exc:
        raise ValueError(f"a password cannot contain these characters: {exc}") from None
    if not prepared:
        raise ValueError("a password must not consist only of characters SASLprep removes")
    return password


def _saslprep(password: str) -> str:
    # scramp 1.5 (Python 3.11+) has it in scramp.utils; 1.4, which pip picks on Python 3.10,
    # in scramp.core. Both prepare passwords the same way (RFC 4013).
    prepare = getattr(scramp.utils, "saslprep", None) or scramp.core.saslprep
    prepared = prepare(password)
    assert isinstance(prepared, str)
    return prepared


def derive(password: str, iterations: int) -> Verifier:
    # Looked up at each call (not bound at import), so that tests can count derivations.
    mechanism = scramp.ScramMechanism(MECHANISM)
    salt, stored_key, server_key, count = mechanism.make_auth_info(
        password, iteration_count=iterations
    )
    return Verifier(bytes(salt), bytes(stored_key), bytes(server_key), int(count))


def check_iterations(iterations: object) -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, int):
        raise TypeError("iterations must be an int")
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise ValueError(
            f"iterations must be between {MIN_ITERATIONS} and {MAX_ITERATIONS}, not {iterations}"
        )
    return iterations


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def make_verifier(password: str, iterations: int = DEFAULT_ITERATIONS) -> Verifier:
    """Derive the SCRAM-SHA-256 verifier of ``password`` with a new random salt.

    For hosts whose users live elsewhere (see ``Host(authenticator=...)``): store
    ``make_verifier(password).to_string()`` instead of the password. Takes ``iterations`` rounds
    of PBKDF2-HMAC-SHA256 (about 0.2 s at the default 600,000): call it from a worker thread in
    async code.

    Raises:
        ValueError: the password is empty, longer than 1024 UTF-8 bytes, or has characters
            SASLprep (RFC 4013) forbids; or ``iterations`` is out of range.
    """
    return derive(validate_password(password), check_iterations(iterations))


def fake_verifier(secret: bytes, shapes: list[tuple[tuple[int, int], int]], name: str) -> Verifier:
    """A made-up verifier for ``name`` that no password matches, derived from ``secret``.

    ``shapes`` are the (iterations, salt length) pairs of real verifiers with their counts;
    the result has one of them, picked per name in proportion to its count.
    """
    key = name.encode("utf-8", "surrogatepass")

    def part(label: bytes) -> bytes:
        # Length-prefixed so that no (label, name) pair can collide with another.
        message = len(label).to_bytes(1, "big") + label + key
        return hmac.new(secret, message, hashlib.sha256).digest()

    # The iteration count and salt length a real user's challenge would show: one of the
    # real verifiers' shapes, picked per name in proportion to how common it is, so that
    # a challenge's shape does not tell a made-up user from a real one (a store loaded
    # with older verifiers, or an authenticator's verifiers made elsewhere).
    pick = int.from_bytes(part(b"shape")[:8], "big") % sum(count for _, count in shapes)
    chosen = shapes[-1][0]
    for shape, count in shapes:
        if pick < count:
            chosen = shape
            break
        pick -= count
    iterations, salt_length = chosen
    salt = b"".join(part(b"salt" + bytes((block,))) for block in range(salt_length // 32 + 1))
    # The keys are random-looking values no password leads to: finding a password whose
    # verifier matches them is as hard as inverting SHA-256.
    return Verifier(
        salt=salt[:salt_length],
        stored_key=part(b"stored_key")[:KEY_BYTES],
        server_key=part(b"server_key")[:KEY_BYTES],
        iterations=iterations,
    )
