"""The README's code works as shown: every ``python`` block passes mypy --strict, and runs.

The documentation's pages (docs/, the site's source) follow the same conventions, and their
blocks run the same way, one page at a time.

The conventions the blocks follow (tests/README.md says the same):

- Each ```` ```python ```` block is a whole program. A block that only continues an earlier one
  is marked with ``<!-- fragment -->`` on the line above its fence, and is skipped.
- A block that serves until stopped (it calls ``serve_forever()`` or runs ``host.start()``) runs
  in the background, and the blocks after it that connect to its port talk to it. It is
  stopped with Ctrl+C (SIGINT) at the end. One on port 0 must stop by itself, as others do.
- Ports are rewritten to free ones: a block that makes a ``Host`` gets new ports, a block that
  does not connects to the host of the last block that listened on the port it names.
- Blocks run in a folder where ``alvaro certs certs`` has written ``certs/``.
- A page's blocks run in the order they appear, and only talk to hosts of the same page.
- A ``print(...)  # text`` line promises ``text`` (up to a ``;``) in the program's output;
  ``a, then b`` promises ``a`` and, after it, ``b`` (a print in a loop).
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from .helpers import ROOT, WAIT, checkout_env, free_port

if TYPE_CHECKING:
    from pathlib import Path

README = ROOT / "README.md"
DOCS = ROOT / "docs"
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
TYPING_CASES = ROOT / "tests" / "typing_cases.py"

_FENCE = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
_FRAGMENT = "<!-- fragment -->"
_SERVES = re.compile(r"serve_forever\(\)|run\(\s*host\.start\b")
_ADDRESS = re.compile(r"""(["'](?:localhost|127\.0\.0\.1)["'],\s*)([1-9]\d*)""")
_PROMISE = re.compile(r"^\s*print\(.*\)\s+#\s*(.+?)\s*$")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence in its page
    code: str
    page: str = "readme"

    @property
    def name(self) -> str:
        return f"{self.page}_line_{self.line}"


def page_blocks(path: Path) -> list[Block]:
    """The ``python`` blocks of a Markdown page, without those marked as fragments."""
    text = path.read_text(encoding="utf-8")
    page = "readme" if path == README else path.relative_to(DOCS).with_suffix("").as_posix()
    blocks = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        if before.strip() == _FRAGMENT:
            continue
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(line, match.group(1), page.replace("/", "_")))
    return blocks


def readme_blocks() -> list[Block]:
    """The README's ``python`` blocks, without those marked as fragments."""
    return page_blocks(README)


#: The documentation's pages that hold code, each run as the README is.
DOC_PAGES = sorted(path for path in DOCS.rglob("*.md") if "```python" in path.read_text("utf-8"))


def test_readme_has_blocks() -> None:
    # A change of fence style would otherwise make the tests below check nothing.
    assert len(readme_blocks()) >= 5


def test_readme_examples_and_typing_cases_pass_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[test]')")
    files = []
    for block in readme_blocks():
        path = tmp_path / f"{block.name}.py"
        path.write_text(block.code, encoding="utf-8")
        files.append(path)
    # Copied, so that it is checked as a program, not under the relaxed rules of tests.*.
    files.append(tmp_path / TYPING_CASES.name)
    shutil.copy(TYPING_CASES, files[-1])
    env = checkout_env()
    env["MYPYPATH"] = str(ROOT)  # this checkout's alvaro, not another one installed
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(tmp_path / "mypy_cache"),
            *map(str, files),
            *map(str, EXAMPLES),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=5 * WAIT,
        check=False,
    )
    # The README's blocks are named after their line: readme_line_36.py is the block there.
    assert result.returncode == 0, result.stdout + result.stderr


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _output(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def test_every_readme_block_runs(tmp_path: Path) -> None:
    run_blocks(readme_blocks(), tmp_path)


def test_docs_have_blocks() -> None:
    # As for the README: a change of fence style would otherwise leave nothing to run.
    assert sum(len(page_blocks(path)) for path in DOC_PAGES) >= 30


@pytest.mark.parametrize("path", DOC_PAGES, ids=lambda path: path.relative_to(DOCS).as_posix())
def test_every_docs_block_runs(path: Path, tmp_path: Path) -> None:
    run_blocks(page_blocks(path), tmp_path)


def run_blocks(blocks: list[Block], tmp_path: Path) -> None:
    """Runs ``blocks`` in order as programs, following the conventions of this file's docstring."""
    env = checkout_env()
    certs = subprocess.run(
        [sys.executable, "-m", "alvaro", "certs", "certs"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert certs.returncode == 0, certs.stderr
    ports: dict[str, str] = {}  # a port the README names -> the free port it stands for now
    servers: list[tuple[Block, subprocess.Popen[bytes], Path]] = []

    def background() -> str:
        return "".join(
            f"\n--- the block at {block.name} (in the background) wrote:\n{_output(log)}"
            for block, _, log in servers
        )

    def rewrite(block: Block) -> tuple[str, list[int]]:
        """The block's code with free ports in place of the README's, and those ports."""
        makes_host = "Host(" in block.code
        fresh: set[str] = set()
        used: list[int] = []

        def substitute(match: re.Match[str]) -> str:
            named = match.group(2)
            if makes_host and named not in fresh:
                fresh.add(named)
                ports[named] = str(free_port())
            assert named in ports, (
                f"the block at {block.name} connects to port {named}, but no block before "
                "it starts a host there"
            )
            used.append(int(ports[named]))
            return match.group(1) + ports[named]

        return _ADDRESS.sub(substitute, block.code), used

    try:
        for block in blocks:
            script = tmp_path / f"{block.name}.py"
            code, used = rewrite(block)
            script.write_text(code, encoding="utf-8")
            command = [sys.executable, "-u", str(script)]
            # A host on port 0 cannot be reached by later blocks: such a block stops itself.
            if _SERVES.search(block.code) and used:
                log = tmp_path / f"{block.name}.log"
                with log.open("wb") as out:
                    process = subprocess.Popen(
                        command, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT
                    )
                servers.append((block, process, log))
                port = used[0]
                deadline = time.monotonic() + WAIT
                while not _listening(port):
                    assert process.poll() is None, (
                        f"the block at {block.name} ended instead of serving:{background()}"
                    )
                    assert time.monotonic() < deadline, (
                        f"the block at {block.name} is not listening on {port}:{background()}"
                    )
                    time.sleep(0.05)
                continue
            try:
                result = subprocess.run(
                    command,
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=WAIT,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise AssertionError(
                    f"the block at {block.name} did not end within {WAIT} s (if it serves "
                    f"until stopped, see this file's docstring):{background()}"
                ) from exc
            report = (
                f"the block at {block.name} failed (exit code {result.returncode}):\n"
                f"{result.stdout}{result.stderr}{background()}"
            )
            assert result.returncode == 0, report
            for line in block.code.splitlines():
                promise = _PROMISE.match(line)
                if promise:
                    expected = promise.group(1).split(";")[0].strip()
                    # "a, then b": lines printed in a loop, in that order.
                    where = 0
                    for part in expected.split(", then "):
                        where = result.stdout.find(part, where)
                        assert where != -1, f"{expected!r} not printed: {report}"
        for block, process, _ in servers:
            assert process.poll() is None, (
                f"the block at {block.name} stopped serving:{background()}"
            )
    finally:
        for _, process, _ in servers:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # Ctrl+C
        for _, process, _ in servers:
            try:
                process.wait(WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
