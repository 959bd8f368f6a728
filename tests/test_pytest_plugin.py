"""alvaro's pytest plugin, as a user's project gets it: from the entry point, with no conftest.

``tests/plugin_project/`` is such a project. alvaro's own test run does not collect it
(``norecursedirs`` in pyproject.toml); the test here runs pytest on a copy of it in a subprocess.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import alvaro.pytest_plugin
from tests.helpers import WAIT

PLUGIN_PROJECT = Path(__file__).parent / "plugin_project"

#: The fixtures the plugin defines.
FIXTURES = {
    "alvaro_ca",
    "alvaro_client",
    "alvaro_client_ssl_context",
    "alvaro_host",
    "alvaro_server_ssl_context",
    "alvaro_sync_backend",
    "alvaro_sync_client",
    "alvaro_sync_host",
    "alvaro_sync_tls_client",
    "alvaro_sync_tls_host",
    "alvaro_tls_client",
    "alvaro_tls_files",
    "alvaro_tls_host",
}

#: The plugin's one private fixture: the async ones' check that anyio runs the test.
PRIVATE_FIXTURES = {"_alvaro_needs_anyio"}

#: The tests of the sample project that run on both backends.
ASYNC_TESTS = (
    "test_plaintext",
    "test_tls",
    "test_tls_host_refuses_plaintext",
    "test_mutual_tls_with_the_ca",
    "test_original_style_with_tls_files",
)

#: The tests of the sample project that use the blocking fixtures, on both of alvaro.sync's loops.
SYNC_TESTS = ("test_sync_plaintext", "test_sync_tls")


def copy_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    shutil.copytree(
        PLUGIN_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache")
    )
    return project


def run_pytest(project: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest in ``project`` as a user would, in a process of its own."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-v",
            f"--basetemp={tmp_path / 'basetemp'}",
            *args,
        ],
        cwd=project,
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=4 * WAIT,
        check=False,
    )


def child_environment() -> dict[str, str]:
    """This environment, without the variables that would change which plugins pytest loads."""
    env = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(name, None)
    return env


def test_sample_project_uses_the_fixtures_without_a_conftest(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    assert list(project.rglob("conftest.py")) == []
    source = (project / "test_chat.py").read_text()
    # The fixtures a user needs most, each requested by some test.
    for fixture in (
        "alvaro_host",
        "alvaro_client",
        "alvaro_tls_host",
        "alvaro_tls_client",
        "alvaro_tls_files",
        "alvaro_ca",
        "alvaro_sync_host",
        "alvaro_sync_client",
        "alvaro_sync_tls_host",
        "alvaro_sync_tls_client",
    ):
        assert f"{fixture}: " in source, fixture

    result = run_pytest(project, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # The project's own configuration was used, not alvaro's.
    assert "configfile: pytest.ini" in result.stdout, output
    for test in ASYNC_TESTS + SYNC_TESTS:
        for backend in ("asyncio", "trio"):
            assert f"test_chat.py::{test}[{backend}] PASSED" in result.stdout, output
    summary = result.stdout.rstrip().splitlines()[-1]
    assert " 17 passed in " in summary, output
    assert "warning" not in summary, output


PROBE = """
import json, sys
import alvaro.pytest_plugin as plugin

fixtures = {}
for name, value in vars(plugin).items():
    # pytest >= 8.4 wraps a fixture function in a FixtureFunctionDefinition; older ones mark it.
    marker = getattr(value, "_fixture_function_marker", None)
    if marker is None:
        marker = getattr(value, "_pytestfixturefunction", None)
    if marker is not None:
        fixtures[name] = bool(marker.autouse)
print(json.dumps({
    "imported": sorted(
        name for name in sys.modules
        if name.split(".")[0] in ("trustme", "cryptography", "trio")
    ),
    "hooks": sorted(name for name in vars(plugin) if name.startswith("pytest_")),
    "fixtures": fixtures,
}))
"""


def test_importing_the_plugin_is_light_and_defines_only_fixtures(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=3 * WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    # trustme (and the cryptography it loads) only when a test uses a TLS fixture.
    assert found["imported"] == []
    # No hook: installing alvaro changes nothing in a test run that does not ask for a fixture.
    assert found["hooks"] == []
    # Exactly the documented fixtures (and the private check), none autouse.
    assert found["fixtures"] == dict.fromkeys(FIXTURES | PRIVATE_FIXTURES, False)
    assert set(alvaro.pytest_plugin.__all__) == FIXTURES


#: The tests of tests/plugin_project/misuse.py, each with the async fixtures it uses by mistake.
MISUSES = {
    "test_plain_function_with_an_async_fixture": "alvaro_host",
    "test_async_function_not_marked": "alvaro_host, alvaro_client",
    "test_tls_fixture_in_a_plain_function": "alvaro_tls_host, alvaro_tls_client",
}


@pytest.mark.parametrize("anyio_plugin", ["loaded", "disabled"])
def test_an_async_fixture_without_anyio_says_how_to_fix_the_test(
    tmp_path: Path, anyio_plugin: str
) -> None:
    project = copy_project(tmp_path)
    args = ["misuse.py"] if anyio_plugin == "loaded" else ["-p", "no:anyio", "misuse.py"]
    result = run_pytest(project, tmp_path, *args)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    why = (
        "anyio does not run this test"
        if anyio_plugin == "loaded"
        else "anyio's pytest plugin is not loaded (remove -p no:anyio)"
    )
    for test, fixtures in MISUSES.items():
        # Each fails at set-up, before any coroutine exists, with one line naming the fix.
        assert f"ERROR misuse.py::{test} - Failed: " in result.stdout, output
        message = (
            f"{test} uses alvaro's async fixture(s) {fixtures}, but {why}: make the test "
            "'async def' and mark it with @pytest.mark.anyio"
        )
        assert message in result.stdout, output
    assert "alvaro_sync_host and alvaro_sync_client" in result.stdout, output
    # Not pytest's own complaint, nor a traceback into the plugin, nor a coroutine warning.
    for noise in ("requested an async fixture", "pytest_plugin.py:", "was never awaited"):
        assert noise not in output, output
    summary = result.stdout.rstrip().splitlines()[-1]
    assert " 3 errors in " in summary, output
    assert "passed" not in summary, output


def docs_block(heading: str) -> str:
    """The first ``python`` block of docs/testing.md after ``heading``."""
    text = (PLUGIN_PROJECT.parent.parent / "docs" / "testing.md").read_text(encoding="utf-8")
    after = text[text.index(f"\n{heading}\n") :]
    start = after.index("```python\n") + len("```python\n")
    return after[start : after.index("```", start)]


def test_the_sync_fixtures_example_of_the_docs_runs_on_both_loops(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    (project / "test_docs_sync.py").write_text(
        docs_block("### Blocking tests: the sync fixtures"), encoding="utf-8"
    )
    result = run_pytest(project, tmp_path, "test_docs_sync.py")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for test in ("test_echo", "test_echo_over_tls"):
        for backend in ("asyncio", "trio"):
            assert f"test_docs_sync.py::{test}[{backend}] PASSED" in result.stdout, output
