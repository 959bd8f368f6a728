"""The table of callbacks, ``alvaro._events.EVENTS``, and everything that must agree with it.

The four classes keep their callbacks as typed attributes (for ``mypy --strict`` and users'
IDEs), the seed aliases are declared for type checkers, and docs/api.md lists the callbacks: these
tests check each against the table, so that none of them can drift from it.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest

import alvaro.aio
import alvaro.sync
from alvaro._aliases import ClientAliases, HostAliases
from alvaro._events import EVENTS, SYNC_THREAD, Event, event, events

ROOT = Path(__file__).resolve().parent.parent
API_DOC = ROOT / "docs" / "api.md"
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


def doc_section(title: str, level: str = "##") -> str:
    """The text of docs/api.md under the heading ``title``, up to the next heading as high."""
    text = API_DOC.read_text(encoding="utf-8")
    start = text.index(f"\n{level} {title}\n")
    end = text.find(f"\n{level} ", start + 1)
    return text[start : end if end != -1 else len(text)]


def table_rows(section: str, heading: str) -> list[list[str]]:
    """The cells of the first table after ``heading`` in ``section``, without the header rows."""
    after = section[section.index(heading) :]
    rows = []
    for line in after.splitlines():
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]


@pytest.mark.parametrize(
    ("side", "title"), [("host", "`alvaro.Host`"), ("client", "`alvaro.Client`")]
)
def test_api_doc_lists_the_aio_callbacks_of_the_table(side: str, title: str) -> None:
    rows = table_rows(doc_section(title), "### Callbacks")
    documented = [(cells[0], cells[-1]) for cells in rows]
    expected = [(f"`{row.signature}`", row.aio_task) for row in events(side)]
    assert documented == expected


@pytest.mark.parametrize(
    ("side", "heading"),
    [("host", "### `alvaro.sync.Host("), ("client", "### `alvaro.sync.Client(")],
)
def test_api_doc_lists_the_sync_callbacks_of_the_table(side: str, heading: str) -> None:
    rows = table_rows(doc_section("`alvaro.sync`"), heading)
    (callbacks,) = [cells[1] for cells in rows if cells[0] == "Callbacks"]
    named = re.findall(r"`(\w+\([^`]*\))`", callbacks)
    assert sorted(named) == sorted(row.signature for row in events(side))
    if side == "host":  # the client's say "as for the host"
        assert all(row.sync_thread == SYNC_THREAD for row in events(side))
        assert "on the dispatcher thread or through `dispatch`" in callbacks


def test_api_doc_lists_the_seed_aliases_of_the_table() -> None:
    rows = table_rows(doc_section("Names from the original Alvaro"), "| Original name")
    documented = {
        (cells[0], cells[1], cells[2])
        for cells in rows
        if cells[3].startswith("attribute (callback)")
    }
    expected = {
        (f"`{row.seed}`", f"`{row.name}`", f"`{row.side.capitalize()}`")
        for row in EVENTS
        if row.seed is not None
    }
    assert documented == expected


def test_rows_of_a_side_share_no_seed_name() -> None:
    for side in SIDES:
        seeds = [row.seed for row in events(side) if row.seed is not None]
        assert len(seeds) == len(set(seeds))


def test_event_signature() -> None:
    row = Event("got_data", "host", ("conn", "data", "metadata"), None, "t", True, True, "s")
    assert row.signature == "got_data(conn, data, metadata)"
