"""An MkDocs hook: the callback tables, written from ``alvaro._events.EVENTS`` at build time.

The callbacks are declared once, in ``alvaro/_events.py``. A page asks for a table with a marker
on a line of its own, ``<!-- alvaro:callbacks API SIDE -->`` (API ``aio`` or ``sync``, SIDE
``host`` or ``client``), or ``<!-- alvaro:callback-aliases -->`` for the original Alvaro's
names of the callbacks; the hook replaces it with the table, so the documentation cannot drift
from the table. ``tests/test_events.py`` checks that every row reaches the reference.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(
    r"^<!-- alvaro:(?:callbacks (?P<api>aio|sync) (?P<side>host|client)"
    r"|(?P<aliases>callback-aliases)) -->$",
    re.MULTILINE,
)


def _events() -> Any:
    # This checkout's alvaro, not another installed one. alvaro._events is standard library only.
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from alvaro import _events

    return _events


def callback_table(api: str, side: str) -> str:
    """The Markdown table of one side's callbacks in ``alvaro.aio`` or ``alvaro.sync``."""
    rows = _events().events(side)
    where = "Task" if api == "aio" else "Thread"
    lines = [
        f"| Callback | Called | {where} | If it raises |",
        "|---|---|---|---|",
    ]
    for row in rows:
        runs = row.aio_task if api == "aio" else row.sync_thread
        raises = (
            "logged; its connection is closed with INTERNAL_ERROR"
            if row.closes_on_error
            else "logged"
        )
        lines.append(f"| `{row.signature}` | {row.summary} | {runs} | {raises} |")
    return "\n".join(lines)


def alias_table() -> str:
    """The Markdown table of the original Alvaro's names for the callbacks."""
    lines = ["| Original name | PEP 8 name | On | Called as |", "|---|---|---|---|"]
    for row in _events().EVENTS:
        if row.seed is not None:
            seed_call = f"{row.seed}({', '.join(row.args)})"
            lines.append(
                f"| `{row.seed}` | `{row.name}` | `{row.side.capitalize()}` | `{seed_call}` |"
            )
    return "\n".join(lines)


def render(markdown: str) -> str:
    """``markdown`` with every marker replaced by its table."""

    def table(match: re.Match[str]) -> str:
        if match.group("aliases"):
            return alias_table()
        return callback_table(match.group("api"), match.group("side"))

    return MARKER.sub(table, markdown)


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    return render(markdown)
