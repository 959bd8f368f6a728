"""The public names: every public module declares them, and importing alvaro has no side effects."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types

import pytest

import alvaro
import alvaro.aio
from tests.helpers import WAIT, checkout_env

PROTOCOL_MODULES = [
    "alvaro.protocol.frames",
    "alvaro.protocol.events",
    "alvaro.protocol.encoders",
    "alvaro.protocol.decoder",
    "alvaro.protocol.state",
    "alvaro.protocol.request",
]
PUBLIC_MODULES = [
    "alvaro",
    "alvaro.aio",
    "alvaro.protocol",
    *PROTOCOL_MODULES,
    "alvaro.exceptions",
    "alvaro.auth",
]


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_is_a_tuple_of_existing_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = module.__all__
    assert isinstance(exported, tuple)
    assert exported, f"{module_name}.__all__ is empty"
    assert all(isinstance(name, str) for name in exported)
    assert len(set(exported)) == len(exported), f"duplicates in {module_name}.__all__"
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_star_import_gives_exactly_all(module_name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {module_name} import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(importlib.import_module(module_name).__all__)


def test_top_level_classes_are_the_async_ones() -> None:
    assert alvaro.Host is alvaro.aio.Host
    assert alvaro.Client is alvaro.aio.Client
    assert alvaro.Connection is alvaro.aio.Connection


def test_top_level_exports_every_exception() -> None:
    import alvaro.exceptions

    for name in alvaro.exceptions.__all__:
        assert name in alvaro.__all__
        assert getattr(alvaro, name) is getattr(alvaro.exceptions, name)


def test_exported_classes_come_from_alvaro() -> None:
    for name in alvaro.__all__:
        value = getattr(alvaro, name)
        if isinstance(value, type):
            assert value.__module__.startswith("alvaro."), name
        elif name != "__version__":
            assert not isinstance(value, types.ModuleType), name


def test_version_is_a_string() -> None:
    assert isinstance(alvaro.__version__, str)
    assert alvaro.__version__.count(".") >= 2


IMPORT_PROBE = """
import json, logging, threading
before = threading.active_count()
import alvaro
logger = logging.getLogger("alvaro")
print(json.dumps({
    "threads_before": before,
    "threads_after": threading.active_count(),
    "root_handlers": [type(h).__name__ for h in logging.getLogger().handlers],
    "root_level": logging.getLogger().level,
    "alvaro_handlers": [type(h).__name__ for h in logger.handlers],
    "other_handlers": sorted(
        name
        for name, item in logging.Logger.manager.loggerDict.items()
        if isinstance(item, logging.Logger) and item.handlers and name != "alvaro"
    ),
    "alvaro_level": logger.level,
}))
"""


def test_import_has_no_side_effects() -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE],
        capture_output=True,
        text=True,
        timeout=3 * WAIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report["threads_after"] == report["threads_before"] == 1
    assert report["root_handlers"] == []
    assert report["root_level"] == 30  # WARNING, Python's default: untouched
    assert report["alvaro_handlers"] == []  # not even a NullHandler: see test_logging.py
    assert report["other_handlers"] == []
    assert report["alvaro_level"] == 0  # NOTSET: the application decides


# What `import alvaro` exported before its names were imported lazily: the lazy version must
# export exactly these, each from the same place.
TOP_LEVEL = (
    "AccountsFileError",
    "AlvaroError",
    "AuthenticationError",
    "Client",
    "CloseCode",
    "ConcurrencyError",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Connection",
    "EncodeError",
    "Host",
    "LocalProtocolError",
    "Message",
    "MessageTooLarge",
    "OutboxFull",
    "ProtocolError",
    "RemoteError",
    "RemoteProtocolError",
    "Reply",
    "Settings",
    "TLSError",
    "TooManyRequests",
    "WrongThreadError",
    "__version__",
)

LOADED_PROBE = """
import json, sys
import {module}
print(json.dumps(sorted(sys.modules)))
"""


def loaded_by(module: str) -> set[str]:
    """The modules a fresh interpreter has loaded after importing ``module`` from this checkout."""
    result = subprocess.run(
        [sys.executable, "-c", LOADED_PROBE.format(module=module)],
        capture_output=True,
        text=True,
        timeout=3 * WAIT,
        check=False,
        env=checkout_env(),
    )
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout))


@pytest.mark.parametrize("module", ["alvaro", "alvaro.protocol", *PROTOCOL_MODULES])
def test_the_protocol_imports_neither_anyio_nor_ssl(module: str) -> None:
    # The sans-I/O codec is for any I/O: importing it (or alvaro alone) must not pull in the
    # event-loop library, TLS, the login's SCRAM library or alvaro's async layer.
    loaded = loaded_by(module)
    assert module in loaded
    heavy = {"anyio", "ssl", "_ssl", "scramp", "trio", "asyncio", "alvaro.aio", "alvaro.sync"}
    assert sorted(loaded & heavy) == []
    assert sorted(name for name in loaded if name.startswith(("anyio.", "alvaro.aio."))) == []


def test_top_level_names_are_unchanged_and_load_on_use() -> None:
    assert alvaro.__all__ == TOP_LEVEL
    assert set(TOP_LEVEL) <= set(dir(alvaro))
    loaded = loaded_by("alvaro; alvaro.Host; alvaro.Message; alvaro.OutboxFull; alvaro.Settings")
    assert {"alvaro.aio", "anyio", "alvaro.protocol", "alvaro._settings"} <= loaded


def test_public_modules_are_reached_from_alvaro_alone() -> None:
    # "import alvaro" then alvaro.aio.connect(...), as the README's programs and the seed's do.
    uses = "alvaro.aio.connect, alvaro.sync.connect, alvaro.tls.client_context, alvaro.auth"
    loaded = loaded_by(f"alvaro; {uses}; alvaro.exceptions.TLSError; alvaro.protocol.Decoder")
    assert {"alvaro.aio", "alvaro.sync", "alvaro.tls", "alvaro.auth"} <= loaded
    assert {"aio", "sync", "protocol", "exceptions", "tls", "auth"} <= set(dir(alvaro))


def test_an_unknown_top_level_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        alvaro.Nope  # type: ignore[attr-defined]  # noqa: B018
