"""Keeping ``ExceptionGroup`` away from users: task groups wrap errors, alvaro unwraps them."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING

if sys.version_info < (3, 11):  # pragma: no cover - exercised on Python 3.10 only
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ("unwrap_group",)


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    while len(group.exceptions) == 1:
        inner: BaseException = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return None


@contextmanager
def unwrap_group() -> Iterator[None]:
    """Re-raise a task group's error as itself when it is the only one (trio's pattern).

    An ordinary disconnect or a user's exception then reaches the caller as the exception it is,
    not wrapped in an ``ExceptionGroup``. Groups of several errors are left alone: flattening them
    would lose information.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        inner = _single(group)
        if inner is None:
            raise
        raise inner from inner.__cause__
