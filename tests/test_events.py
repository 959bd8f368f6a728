"""The table of callbacks, ``alvaro._events.EVENTS``, and everything that must agree with it.

The four classes keep their callbacks as typed attributes (for ``mypy --strict`` and users'
IDEs), the seed aliases are declared for type checkers, and the API reference (docs/reference/)
lists the callbacks in tables written from the table when the site is built: these tests check
each against the table, so that none of them can drift from it.
"""

from __future__ import annotations

import ast
import html
import importlib.util
import inspect
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import alvaro.aio
import alvaro.sync
from alvaro._aliases import ClientAliases, HostAliases
from alvaro._events import EVENTS, Event, event, events

from .helpers import WAIT, checkout_env

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"
CALLBACKS_HOOK = ROOT / "docs" / "_hooks" / "callbacks.py"
SIDES = ("host", "client")
APIS = ("aio", "sync")


def owner(api: str, side: str) -> type:
    module: Any = alvaro.aio if api == "aio" else alvaro.sync
    return module.Host if side == "host" else module.Client  # type: ignore[no-any-return]


def declared_callbacks(cls: type) -> dict[str, tuple[str, str]]:
    """The callback attributes ``cls`` declares in its own body: name -> (annotation, docstring)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0]
    assert isinstance(body, ast.ClassDef)
    found: dict[str, tuple[str, str]] = {}
    for statement, following in zip(body.body, [*body.body[1:], None], strict=True):
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        annotation = ast.unparse(statement.annotation)
        if not annotation.startswith("Callable["):
            continue
        doc = ""
        if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            doc = str(following.value.value)
        found[statement.target.id] = (annotation, doc)
    return found


def parameter_count(annotation: str) -> int:
    """How many parameters ``Callable[[A, B], object] | None`` takes."""
    match = re.fullmatch(r"Callable\[\[(.*)\], object\] \| None", annotation)
    assert match, f"not an optional callback type: {annotation}"
    inside = match.group(1)
    depth, count = 0, 1 if inside else 0
    for char in inside:
        depth += char == "["
        depth -= char == "]"
        count += char == "," and depth == 0
    return count


def test_table_is_well_formed() -> None:
    assert len({(row.side, row.name) for row in EVENTS}) == len(EVENTS)
    for row in EVENTS:
        assert row.side in SIDES
        assert row.aio_task
        assert row.sync_thread
        assert row.summary
        assert event(row.side, row.name) is row
    with pytest.raises(KeyError):
        event("client", "new_client")


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("side", SIDES)
def test_every_row_is_a_typed_attribute_and_every_callback_a_row(api: str, side: str) -> None:
    cls = owner(api, side)
    declared = declared_callbacks(cls)
    assert sorted(declared) == sorted(row.name for row in events(side))
    for row in events(side):
        annotation, doc = declared[row.name]
        assert parameter_count(annotation) == len(row.args), (cls, row.name, annotation)
        assert f"``{row.signature}``" in doc, f"{cls.__qualname__}.{row.name}'s docstring"
        assert getattr(cls, row.name) is None  # not set until the user sets it


@pytest.mark.parametrize("side", SIDES)
def test_seed_aliases_are_declared_for_type_checkers(side: str) -> None:
    base = HostAliases if side == "host" else ClientAliases
    seeds = {row.seed: row.name for row in events(side) if row.seed is not None}
    declared = {name for name, kind in inspect.get_annotations(base).items() if kind == "Any"}
    assert declared == set(seeds)
    assert base._seed_callbacks == seeds


def load_hook() -> Any:
    """docs/_hooks/callbacks.py, the MkDocs hook that writes the callback tables."""
    spec = importlib.util.spec_from_file_location("alvaro_docs_callbacks", CALLBACKS_HOOK)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("side", SIDES)
def test_reference_lists_every_callback_of_the_table(api: str, side: str) -> None:
    page = REFERENCE / f"{api}.md"
    rendered = load_hook().render(page.read_text(encoding="utf-8"))
    assert "<!-- alvaro:" not in rendered  # every marker became a table
    for row in events(side):
        runs = row.aio_task if api == "aio" else row.sync_thread
        assert f"| `{row.signature}` | {row.summary} | {runs} |" in rendered, (page, row.name)


def test_reference_lists_the_seed_aliases_of_the_table() -> None:
    rendered = load_hook().render((REFERENCE / "compat.md").read_text(encoding="utf-8"))
    for row in EVENTS:
        if row.seed is not None:
            expected = f"| `{row.seed}` | `{row.name}` | `{row.side.capitalize()}` |"
            assert expected in rendered, row


def test_the_site_shows_every_callback(tmp_path: Path) -> None:
    # The same check on the built site, when the docs extra is installed (.ci/run installs it):
    # the tables and each class's callback attributes, whose docstrings come from the classes.
    pytest.importorskip(
        "mkdocs", reason="the docs tools are not installed (pip install -e '.[docs]')"
    )
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        env={**checkout_env(), "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=10 * WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for api in APIS:
        text = html.unescape((site / "reference" / api / "index.html").read_text("utf-8"))
        for row in EVENTS:
            assert row.signature in text, (api, row.name)
            owner_name = f"alvaro.{api}.{row.side.capitalize()}"
            assert f'id="{owner_name}.{row.name}"' in text, (owner_name, row.name)


def test_rows_of_a_side_share_no_seed_name() -> None:
    for side in SIDES:
        seeds = [row.seed for row in events(side) if row.seed is not None]
        assert len(seeds) == len(set(seeds))


def test_event_signature() -> None:
    row = Event("got_data", "host", ("conn", "data", "metadata"), None, "t", True, True, "s")
    assert row.signature == "got_data(conn, data, metadata)"
