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
    "alvaro_tls_client",
    "alvaro_tls_files",
    "alvaro_tls_host",
}

#: The tests of the sample project that run on both backends.
ASYNC_TESTS = (
    "test_plaintext",
    "test_tls",
    "test_tls_host_refuses_plaintext",
    "test_mutual_tls_with_the_ca",
    "test_original_style_with_tls_files",
)


def child_environment() -> dict[str, str]:
    """This environment, without the variables that would change which plugins pytest loads."""
    env = dict(os.environ)
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(name, None)
    return env


def test_sample_project_uses_the_fixtures_without_a_conftest(tmp_path: Path) -> None:
    project = tmp_path / "project"
    shutil.copytree(
        PLUGIN_PROJECT, project, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache")
    )
    assert list(project.rglob("conftest.py")) == []
    source = (project / "test_chat.py").read_text()
    # The six fixtures a user needs most, each requested by some test.
    for fixture in (
        "alvaro_host",
        "alvaro_client",
        "alvaro_tls_host",
        "alvaro_tls_client",
        "alvaro_tls_files",
        "alvaro_ca",
    ):
        assert f"{fixture}: " in source, fixture

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-v",
            f"--basetemp={tmp_path / 'basetemp'}",
        ],
        cwd=project,
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=4 * WAIT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # The project's own configuration was used, not alvaro's.
    assert "configfile: pytest.ini" in result.stdout, output
    for test in ASYNC_TESTS:
        for backend in ("asyncio", "trio"):
            assert f"test_chat.py::{test}[{backend}] PASSED" in result.stdout, output
    summary = result.stdout.rstrip().splitlines()[-1]
    assert " 13 passed in " in summary, output
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
    # Exactly the documented fixtures, none autouse.
    assert found["fixtures"] == dict.fromkeys(FIXTURES, False)
    assert set(alvaro.pytest_plugin.__all__) == FIXTURES
