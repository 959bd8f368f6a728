"""Install hints install this project: "alvaro" on the package index is another one.

The package index's ``alvaro`` is the original Alvaro 1.x (1.3.0), which this project succeeds
as version 2.0. ``pip install alvaro`` or ``pip install 'alvaro[testing]'`` would install that
one, so no message or page may tell users to: a missing optional package is named itself
(``pip install trustme``), and the pages install from a checkout (``pip install ".[testing]"``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import alvaro

ROOT = Path(__file__).resolve().parent.parent

#: ``pip install`` followed (after options) by a requirement that starts with "alvaro".
FROM_THE_INDEX = re.compile(r"""pip\s+install\s+(?:-\S+\s+)*["']?alvaro\b""", re.IGNORECASE)


def files(folder: str, pattern: str) -> list[Path]:
    found = sorted((ROOT / folder).rglob(pattern))
    assert found, f"no {pattern} in {folder}"
    return found


@pytest.mark.parametrize(
    "path",
    [
        ROOT / "README.md",
        *files("alvaro", "*.py"),
        *files("docs", "*.md"),
        *files("examples", "*.py"),
    ],
    ids=lambda path: str(path.relative_to(ROOT)),
)
def test_nothing_tells_users_to_install_alvaro_from_the_index(path: Path) -> None:
    lines = path.read_text("utf-8").splitlines()
    hints = [f"{n}: {line}" for n, line in enumerate(lines, 1) if FROM_THE_INDEX.search(line)]
    assert hints == []


@pytest.mark.parametrize(
    "text",
    [
        "pip install alvaro",
        "pip install 'alvaro[testing]'",
        'python3 -m pip install -U "alvaro[trio]"',
        "pip install Alvaro==1.3.0",
    ],
)
def test_the_check_finds_hints_to_the_index(text: str) -> None:
    assert FROM_THE_INDEX.search(text)


@pytest.mark.parametrize(
    "text", ['pip install ".[testing]"', "pip install trustme", "pip install -e '.[test]'"]
)
def test_the_check_lets_hints_to_a_checkout_through(text: str) -> None:
    assert not FROM_THE_INDEX.search(text)


def test_the_version_is_above_the_original_alvaro() -> None:
    """The original Alvaro's last release is 1.3.0: a lower number loses to it on upgrade."""
    release = re.match(r"(\d+)\.(\d+)\.(\d+)", alvaro.__version__)
    assert release is not None, alvaro.__version__
    assert tuple(int(part) for part in release.groups()) >= (2, 0, 0)
