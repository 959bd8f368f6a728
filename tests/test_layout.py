"""The layering rules of DESIGN.md, checked on the source: what may import what.

* ``alvaro.aio`` runs on anyio only: ``asyncio``, ``trio`` and ``socket`` are imported only by
  its stream seam, ``alvaro/aio/_io/``, so that every feature runs on both backends.
* In the seam, ``base.py`` (the ``Transport`` shape) imports none of the transports, which
  import it: TLS wraps any transport without a cycle.
* ``alvaro.sync`` builds on ``alvaro.aio`` and never the other way round.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "alvaro"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports at run time (``TYPE_CHECKING`` blocks left out), with
    relative imports resolved to absolute names."""
    tree = ast.parse(path.read_text("utf-8"))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    module = ".".join([*base, child.module] if child.module else base)
                else:
                    module = child.module or ""
                found.add(module)
                found.update(f"{module}.{alias.name}" for alias in child.names)
            visit(child)

    visit(tree)
    return found


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).rglob("*.py"))


@pytest.mark.parametrize(
    "path",
    [path for path in modules("aio") if "_io" not in path.parts],
    ids=lambda path: str(path.relative_to(PACKAGE)),
)
def test_aio_outside_the_stream_seam_imports_no_backend_nor_socket(path: Path) -> None:
    imported = imported_modules(path)
    for forbidden in ("asyncio", "trio", "socket"):
        assert not {name for name in imported if name.split(".")[0] == forbidden}, forbidden


def test_the_transport_shape_imports_no_transport() -> None:
    imported = imported_modules(PACKAGE / "aio" / "_io" / "base.py")
    siblings = {"anyio_tcp", "asyncio_tcp", "tcp", "tls"}
    assert not {name for name in imported if name.split(".")[-1] in siblings}
    assert not {name for name in imported if name.startswith("alvaro.aio._io.")}


LOWER_LAYERS = sorted(
    path
    for path in PACKAGE.rglob("*.py")
    if path.relative_to(PACKAGE).parts[0] in ("aio", "protocol", "protocol.py")
)


@pytest.mark.parametrize("path", LOWER_LAYERS, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_lower_layers_never_import_alvaro_sync(path: Path) -> None:
    assert not {name for name in imported_modules(path) if name.startswith("alvaro.sync")}


def test_the_check_sees_relative_imports() -> None:
    imported = imported_modules(PACKAGE / "aio" / "_io" / "tcp.py")
    assert "alvaro.aio._io.asyncio_tcp" in imported or "alvaro.aio._io" in imported
    assert "alvaro.exceptions.ConnectError" in imported


# Where one object reads another's underscore member, by design: the door from a public
# connection to its internal side, and the sync layer's own objects working together. Any other
# reach into a private member is a missing internal API: name it (as ConnectionCore does).
PRIVATE_READS_ALLOWED = {
    ("aio/_core.py", "_core"),  # core_of(): the one door to a connection's internal side
    ("aio/_io/tls.py", "_handshake"),  # TLS over TLS: the inner transport's own step
    ("cli/_common.py", "_SubParsersAction"),  # argparse's type for add_subparsers()
    ("sync/host.py", "_loop"),  # serve_forever(): a signal hands the stop to the loop
    # A callback handed to dispatch= runs (or is dropped) through its own Dispatcher.
    ("sync/_handoff.py", "_run"),
    ("sync/_handoff.py", "_consumed"),
    *(
        (f"sync/{module}", member)
        for module in ("_bridges.py", "client.py", "host.py")
        for member in (
            "_aio",
            "_call",
            "_connection",
            "_connection_for",
            "_finished",
            "_inbox",
            "_lost",
            "_runner",
        )
    ),
}


def test_modules_reach_into_other_objects_only_through_named_members() -> None:
    found = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                found.add((path.relative_to(PACKAGE).as_posix(), node.attr))
    assert found <= PRIVATE_READS_ALLOWED, sorted(found - PRIVATE_READS_ALLOWED)
