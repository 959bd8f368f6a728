"""The accounts file: its versioned JSON format, the checks of every value read from it, and
atomic, owner-only writes.

A file holds the users' verifiers, the bans with their wall-clock ends, the login history and the
secret that keys the made-up verifiers of unknown names (``docs/security.md`` shows the format).
Reading checks every value's type and range before anything is used, and turns any problem into
an :class:`~alvaro.exceptions.AccountsFileError` that names the file. Writing goes through a
temporary file that is flushed to disk and renamed over the target, so that a crash leaves the
old file or the new one, never a mix.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ..exceptions import AccountsFileError
from ..protocol.scram import MAX_ITERATIONS, MIN_ITERATIONS
from .bans import LoginAttempt
from .verifiers import (
    KEY_BYTES,
    MAX_SALT_BYTES,
    MECHANISM,
    Verifier,
    b64,
    validate_name,
)

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ("FILE_FORMAT", "FILE_VERSION", "Contents", "read", "write")

logger = logging.getLogger("alvaro.accounts")

FILE_FORMAT = "alvaro-accounts"
FILE_VERSION = 1

SECRET_BYTES = 32
# The latest time a saved file may hold (the end of the year 9999, datetime's last year), so
# that every LoginAttempt.time can be shown as a date. Later bans are saved as "until removed".
MAX_TIME = 253_402_300_799.0


class Contents(NamedTuple):
    """What an accounts file holds."""

    secret: bytes
    """Keys the made-up verifiers of names that are not users."""
    users: Mapping[str, Verifier]
    bans: Mapping[str, float | None]
    """Each banned address (bucket) with the wall-clock end of its ban; ``None``: no end."""
    attempts: Iterable[LoginAttempt]


def write(path: str | os.PathLike[str], contents: Contents) -> None:
    """Write ``contents`` to ``path``, atomically, readable by the owner only (mode 0600).

    The data goes to a temporary file in the same directory, which is flushed to disk and then
    renamed over ``path``: a crash at any moment leaves either the old file or the new one,
    never a mix or a truncated file.
    """
    target = Path(path)
    _write_atomically(target, _dump(contents))
    logger.debug("accounts saved to %s", target)


def read(path: str | os.PathLike[str]) -> Contents:
    """Read and check the whole file at ``path``.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        AccountsFileError: the file is not a valid accounts file; the message names the file
            and the problem.
    """
    source = Path(path)
    contents = _parse(source, source.read_bytes())
    logger.debug("accounts loaded from %s", source)
    return contents


def _dump(contents: Contents) -> bytes:
    users = {
        name: {
            "mechanism": MECHANISM,
            "salt": b64(info.salt),
            "stored_key": b64(info.stored_key),
            "server_key": b64(info.server_key),
            "iterations": info.iterations,
        }
        for name, info in sorted(contents.users.items())
    }
    attempts = [
        {"time": a.time, "address": a.address, "username": a.username, "success": a.success}
        for a in contents.attempts
    ]
    document = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "secret": b64(contents.secret),
        "users": users,
        "blacklist": {
            bucket: None if end is None else _saved_end(end)
            for bucket, end in contents.bans.items()
        },
        "attempts": attempts,
    }
    return json.dumps(document, indent=1, allow_nan=False).encode("utf-8")


class _FormatError(Exception):
    """A problem found while parsing; turned into a ValueError that names the file."""


def _parse(path: Path, raw: bytes) -> Contents:
    try:
        return _parse_document(raw)
    except _FormatError as exc:
        raise AccountsFileError(f"{path} is not a valid alvaro accounts file: {exc}") from None


def _parse_document(raw: bytes) -> Contents:
    try:
        document = json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise _FormatError(f"it is not JSON (corrupt or truncated?): {exc}") from None
    except ValueError:  # an integer of more digits than int() reads (sys.get_int_max_str_digits)
        raise _FormatError("it holds an integer too long to be any of its values") from None
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
        raise _FormatError(f'it does not say "format": "{FILE_FORMAT}"')
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _FormatError("its version is missing or not an integer")
    if FILE_VERSION < version < 2**31:
        raise _FormatError(
            f"it has version {version}, written by a newer alvaro; this one reads version "
            f"{FILE_VERSION}"
        )
    if version != FILE_VERSION:
        raise _FormatError(f"it has an unknown version {_shown(version)}")
    secret = _decode_b64(document.get("secret"), "secret", SECRET_BYTES)
    return Contents(
        secret=secret,
        users=_parse_users(_expect(document, "users", dict)),
        bans=_parse_bans(_expect(document, "blacklist", dict)),
        attempts=_parse_attempts(_expect(document, "attempts", list)),
    )


def _shown(value: object) -> str:
    """``value`` for an error message, cut short: a hostile file may hold a 4000-digit number."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _time(value: object, what: str) -> float:
    """A time saved in the file (seconds since the epoch), checked for type and range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _FormatError(f"{what} is not a number: {_shown(value)}")
    # Compared before float(): an integer such as 10**400 is too large for a float.
    if not 0 <= value <= MAX_TIME:  # NaN fails this too
        raise _FormatError(
            f"{what} is not a time from 1970 to 9999 (seconds since the epoch): {_shown(value)}"
        )
    return float(value)


def _refuse_constant(name: str) -> float:
    raise _FormatError(f"it contains {name}, which is not JSON")


def _expect(document: dict[str, Any], key: str, kind: type) -> Any:
    value = document.get(key)
    if not isinstance(value, kind):
        raise _FormatError(
            f"{key!r} is missing or not a JSON {'object' if kind is dict else 'list'}"
        )
    return value


def _decode_b64(value: object, what: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise _FormatError(f"{what} is not a base64 string")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _FormatError(f"{what} is not valid base64") from None
    if size is not None and len(data) != size:
        raise _FormatError(f"{what} has {len(data)} bytes instead of {size}")
    return data


def _parse_users(users: dict[str, Any]) -> dict[str, Verifier]:
    result: dict[str, Verifier] = {}
    for name, record in users.items():
        try:
            validate_name(name)
        except ValueError as exc:
            raise _FormatError(f"user name {name!r} is not valid: {exc}") from None
        if not isinstance(record, dict):
            raise _FormatError(f"the record of user {name!r} is not a JSON object")
        if record.get("mechanism") != MECHANISM:
            raise _FormatError(f"user {name!r} has a mechanism other than {MECHANISM}")
        iterations = record.get("iterations")
        if (
            isinstance(iterations, bool)
            or not isinstance(iterations, int)
            or not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS
        ):
            raise _FormatError(
                f"user {name!r}: iterations must be an integer from {MIN_ITERATIONS} to "
                f"{MAX_ITERATIONS}, not {_shown(iterations)}"
            )
        salt = _decode_b64(record.get("salt"), f"the salt of user {name!r}")
        # RFC 5802 sets no minimum; scramp refuses shorter salts.
        if not 12 <= len(salt) <= MAX_SALT_BYTES:
            raise _FormatError(
                f"the salt of user {name!r} has {len(salt)} bytes, not 12 to {MAX_SALT_BYTES}"
            )
        result[name] = Verifier(
            salt=salt,
            stored_key=_decode_b64(
                record.get("stored_key"), f"the stored_key of user {name!r}", KEY_BYTES
            ),
            server_key=_decode_b64(
                record.get("server_key"), f"the server_key of user {name!r}", KEY_BYTES
            ),
            iterations=iterations,
        )
    return result


def _parse_bans(bans: dict[str, Any]) -> dict[str, float | None]:
    result: dict[str, float | None] = {}
    for bucket, end in bans.items():
        result[bucket] = None if end is None else _time(end, f"the end of the ban of {bucket!r}")
    return result


def _parse_attempts(attempts: Iterable[Any]) -> list[LoginAttempt]:
    result: list[LoginAttempt] = []
    for index, item in enumerate(attempts):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("address"), str)
            or not isinstance(item.get("username"), str)
            or not isinstance(item.get("success"), bool)
        ):
            raise _FormatError(f"login attempt {index} is not a valid record")
        when = _time(item.get("time"), f"the time of login attempt {index}")
        result.append(LoginAttempt(when, item["address"], item["username"], item["success"]))
    return result


def _write_atomically(target: Path, data: bytes) -> None:
    directory = target.parent
    temp = directory / f".{target.name}.{secrets.token_hex(8)}.tmp"
    # O_EXCL: never write through a file (or link) someone else put there. Mode 0600 from the
    # start, so the data is never readable by others, not even for a moment.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
    try:
        try:
            if hasattr(os, "fchmod"):  # the umask cannot widen 0600, but may narrow it: reset
                os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            # The data must be on disk before the rename makes it the file: otherwise a power
            # failure could leave the new name pointing at an empty file.
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        try:
            temp.unlink()
        except OSError:
            pass
        raise
    _fsync_directory(directory)
    _remove_stale_temp_files(target)


# A temporary file older than this was left by a save that was killed: no save takes so long.
_STALE_TEMP_AGE = 600.0


def _remove_stale_temp_files(target: Path) -> None:
    """Delete what saves killed mid-write left beside ``target``: verifiers in files nobody
    will read. Only this module's own names, and only old ones, in case another process is
    saving to the same file right now."""
    prefix, now = f".{target.name}.", time.time()
    try:
        candidates = [
            entry
            for entry in target.parent.iterdir()
            if entry.name.startswith(prefix) and entry.name.endswith(".tmp")
        ]
    except OSError:
        return
    for entry in candidates:
        try:
            if now - entry.lstat().st_mtime > _STALE_TEMP_AGE:
                entry.unlink()
        except OSError:
            pass  # gone already, or not ours to delete


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable. Directories cannot be opened this way on Windows, where
    # os.replace is durable enough for this purpose.
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _saved_end(end: float) -> float | None:
    """A ban's wall-clock end as saved: ``None`` (until removed) for no end, or one after any
    time a file may hold (a ban of ten thousand years is one until removed)."""
    return None if end > MAX_TIME else end
