"""The stacks and workloads of the suite, and how one measurement runs.

A measurement starts the stack's server in one process and, once it listens, the client in
another (multiprocessing with the spawn method, or a plain subprocess for Alvaro 1.3.0, which
lives in its own virtual environment). The client measures and reports; for the idle workload
the server does. Whatever happens, both processes are terminated before the measurement returns,
and a measurement never takes longer than its time limit.
"""

from __future__ import annotations

import collections
import importlib
import importlib.util
import json
import multiprocessing
import os
import queue
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from common import BULK_SIZE, nofile_needed, pin_to_one_cpu, raise_nofile

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from common import Params

    Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Stack:
    """One thing measured: a library (or hand-written program) on one event loop."""

    name: str  # for --only and the JSON
    label: str  # for the table and the chart
    module: str  # the module with serve() and run_client(); "" for Alvaro 1.3.0
    variant: str = ""  # passed to that module: the backend, for modules that run on several
    requires: tuple[str, ...] = ()  # modules that must be importable (from the bench extra)
    alvaro: bool = False  # this project's own library (drawn in another colour)
    # Send this fraction of the one-way messages: for a stack so slow that the full count would
    # run into the time limit. The figure is a rate, so it stays comparable; the table says so.
    message_divisor: int = 1
    notes: tuple[tuple[str, str], ...] = ()  # (workload name, what to know about its figure)

    def note(self, workload: str) -> str:
        """What to know about this stack's figure for ``workload`` ("" if nothing)."""
        return dict(self.notes).get(workload, "")

    def params(self, workload: str, params: Params) -> Params:
        """``params`` as this stack runs ``workload`` with them."""
        if workload == "oneway" and self.message_divisor > 1:
            return {**params, "messages": max(1, params["messages"] // self.message_divisor)}
        return params


BASELINE = "asyncio-streams"
ALVARO13 = "alvaro-1.3.0"

STACKS: tuple[Stack, ...] = (
    Stack(BASELINE, "asyncio streams", "stack_asyncio_streams"),
    Stack("anyio-asyncio", "anyio streams [asyncio]", "stack_anyio_streams", "asyncio"),
    Stack("anyio-trio", "anyio streams [trio]", "stack_anyio_streams", "trio", ("trio",)),
    Stack("websockets", "websockets [asyncio]", "stack_websockets", requires=("websockets",)),
    Stack("pyzmq", "pyzmq (blocking)", "stack_pyzmq", requires=("zmq",)),
    Stack("pyzmq-dealer", "pyzmq DEALER/ROUTER [asyncio]", "stack_pyzmq_dealer", requires=("zmq",)),
    Stack("grpcio", "grpcio [grpc.aio]", "stack_grpcio", requires=("grpc",)),
    Stack(
        ALVARO13,
        "Alvaro 1.3.0 (PyPI)",
        "",
        # Its host runs each gotData call in a new thread with a new event loop (its default,
        # multithreading=True): one to two thousand messages a second.
        message_divisor=20,
        notes=(
            ("oneway", "1/20 of the messages: its host starts a thread per message"),
            ("bulk", "16 MiB str messages: it cannot send bytes"),
        ),
    ),
    Stack("alvaro-aio", "alvaro.aio [asyncio]", "stack_alvaro", "asyncio", alvaro=True),
    Stack(
        "alvaro-aio-uvloop",
        "alvaro.aio [uvloop]",
        "stack_alvaro",
        "uvloop",
        ("uvloop",),
        alvaro=True,
    ),
    Stack("alvaro-aio-trio", "alvaro.aio [trio]", "stack_alvaro", "trio", ("trio",), alvaro=True),
    Stack(
        "alvaro-sync",
        "alvaro.sync",
        "stack_alvaro",
        "sync",
        alvaro=True,
        notes=tuple(
            (name, "alvaro.sync host and client") for name in ("oneway", "roundtrip", "bulk")
        ),
    ),
)
STACKS_BY_NAME = {stack.name: stack for stack in STACKS}


@dataclass(frozen=True)
class Workload:
    """One kind of traffic, and the figure it yields."""

    name: str
    title: str
    unit: str
    higher_is_better: bool
    stacks: tuple[str, ...]
    baseline: str = BASELINE  # the stack every figure of this workload is divided by


_REQUEST_PEERS = ("pyzmq-dealer", "grpcio")
_REQUEST_STACKS = (*_REQUEST_PEERS, "alvaro-aio", "alvaro-aio-uvloop", "alvaro-aio-trio")
_ALL = tuple(stack.name for stack in STACKS if stack.name not in _REQUEST_PEERS)
WORKLOADS: tuple[Workload, ...] = (
    Workload("oneway", "one-way small messages", "msgs/s", True, _ALL),
    Workload("roundtrip", "round trip, 100 B, one at a time", "µs", False, _ALL),
    Workload("bulk", "bulk 16 MiB messages", "MB/s", True, _ALL),
    Workload(
        "oneway-tls", "one-way small messages over TLS", "msgs/s", True, (BASELINE, "alvaro-aio")
    ),
    Workload(
        "idle",
        "server memory per idle connection",
        "KiB/conn",
        False,
        (BASELINE, "websockets", "alvaro-aio"),
    ),
    Workload(
        "idle-tls",
        "server memory per idle TLS connection",
        "KiB/conn",
        False,
        (BASELINE, "alvaro-aio"),
    ),
    Workload(
        "request",
        "request/response, 100 B, one at a time",
        "µs",
        False,
        _REQUEST_STACKS,
        baseline="grpcio",
    ),
    Workload(
        "request-100",
        "request/response, 100 B, 100 in flight",
        "req/s",
        True,
        _REQUEST_STACKS,
        baseline="grpcio",
    ),
)

#: Workloads that hold many idle connections and measure the server's memory.
IDLE_WORKLOADS = ("idle", "idle-tls")
#: Workloads that run over TLS, with the run's throwaway certificates.
TLS_WORKLOADS = ("oneway-tls", "idle-tls")
WORKLOADS_BY_NAME = {workload.name: workload for workload in WORKLOADS}


INSTALL_HINT = 'pip install -e ".[bench]"'


class MeasurementError(Exception):
    """A measurement failed or timed out; the message says why."""


class NotRunnable(Exception):
    """A stack cannot run a workload here; the message says why (and is shown as is)."""


# --- What can run here -------------------------------------------------------------------------

_alvaro13: tuple[str, str] | str | None = None  # (python, version) once set up, or why not


def alvaro13_python() -> tuple[str, str]:
    """Alvaro 1.3.0's interpreter and version, setting its environment up on first use.

    Raises:
        NotRunnable: the environment could not be made; asked once per run.
    """
    global _alvaro13
    if _alvaro13 is None:
        import stack_alvaro13

        try:
            python, version = stack_alvaro13.ensure_venv()
            _alvaro13 = (str(python), version)
        except stack_alvaro13.Unavailable as exc:
            _alvaro13 = str(exc)
    if isinstance(_alvaro13, str):
        raise NotRunnable(f"unavailable: {_alvaro13}")
    return _alvaro13


def check_runnable(stack: Stack, workload: Workload, params: Params) -> None:
    """Raise :class:`NotRunnable` if ``stack`` cannot run ``workload`` on this machine."""
    for module in stack.requires:
        if importlib.util.find_spec(module) is None:
            package = {"zmq": "pyzmq", "grpc": "grpcio"}.get(module, module)
            raise NotRunnable(f"unavailable: {package} is not installed ({INSTALL_HINT})")
    if workload.name in TLS_WORKLOADS and importlib.util.find_spec("trustme") is None:
        raise NotRunnable("unavailable: trustme is not installed (it makes the certificates)")
    if workload.name in IDLE_WORKLOADS:
        if not Path("/proc/self/status").exists():
            raise NotRunnable("unavailable: reading the server's RSS needs /proc (Linux)")
        import resource

        needed = nofile_needed(params["connections"])
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise NotRunnable(
                f"skipped: {params['connections']} connections need {needed} file descriptors "
                f"per process, and the hard RLIMIT_NOFILE is {hard} (lower --connections, or "
                "raise the limit with ulimit -Hn)"
            )
    if stack.name == ALVARO13:
        alvaro13_python()


def versions() -> dict[str, str | None]:
    """Versions of everything measured (``None``: not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    import alvaro

    # alvaro's own version from the code measured: an editable install's metadata can be
    # stale, and "alvaro" in the metadata may be the original Alvaro 1.x from the index.
    found: dict[str, str | None] = {"alvaro": alvaro.__version__}
    for name in ("anyio", "trio", "uvloop", "websockets", "pyzmq", "grpcio", "matplotlib"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    found["Alvaro (PyPI, own venv)"] = _alvaro13[1] if isinstance(_alvaro13, tuple) else None
    return found


# --- Child processes ---------------------------------------------------------------------------


class Child(Protocol):
    """A server or client process, seen from the runner."""

    name: str

    def get(self, timeout: float) -> dict[str, Any] | None:
        """The next report, or ``None`` if none came within ``timeout`` seconds."""

    def exit_code(self) -> int | None:
        """The exit code once the process has ended, else ``None``."""

    def detail(self) -> str:
        """Anything the process printed that may explain a failure."""

    def stop(self) -> None:
        """Terminate the process (if it still runs) and release its resources."""


def child_main(
    module_name: str,
    variant: str,
    role: str,
    workload: str,
    params: Params,
    address: dict[str, Any] | None,
    reports: multiprocessing.Queue[dict[str, Any]],
) -> None:
    """The entry point of a spawned server or client process."""
    report: Report = reports.put
    try:
        if params["pin"]:
            pin_to_one_cpu()
        if workload in IDLE_WORKLOADS:
            raise_nofile(nofile_needed(params["connections"]))
        module = importlib.import_module(module_name)
        if role == "server":
            module.serve(variant, workload, params, report)
        else:
            assert address is not None
            report({"result": module.run_client(variant, workload, params, address, report)})
    except BaseException as exc:
        report({"error": describe(exc)})


def describe(exc: BaseException) -> str:
    """One line about an exception, looking inside exception groups (anyio task groups)."""
    inner = getattr(exc, "exceptions", None)  # an exception group (Python 3.11+, exceptiongroup)
    while isinstance(inner, tuple) and inner and isinstance(inner[0], BaseException):
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ProcessChild:
    """A process started with multiprocessing's spawn method, reporting through a queue."""

    def __init__(
        self,
        name: str,
        stack: Stack,
        role: str,
        workload: str,
        params: Params,
        address: dict[str, Any] | None = None,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.name = name
        self._reports: multiprocessing.Queue[dict[str, Any]] = context.Queue()
        self._process = context.Process(
            target=child_main,
            args=(stack.module, stack.variant, role, workload, params, address, self._reports),
            name=f"bench-{name}",
            daemon=True,  # never outlives the runner, even if the runner is killed
        )
        self._process.start()

    def get(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self._reports.get(timeout=timeout)
        except queue.Empty:
            return None

    def exit_code(self) -> int | None:
        return self._process.exitcode

    def detail(self) -> str:
        return ""

    def stop(self) -> None:
        process = self._process
        _stop_process(process.is_alive, process.terminate, process.kill, process.join)
        self._reports.close()
        self._reports.cancel_join_thread()


class SubprocessChild:
    """A process of another interpreter, reporting through ``@@BENCH <json>`` lines."""

    PREFIX = "@@BENCH "

    def __init__(self, name: str, command: list[str]) -> None:
        self.name = name
        # Alvaro 1.3.0 makes a "users" directory where it runs: give it a scratch one.
        self._scratch = tempfile.TemporaryDirectory(prefix="alvaro-bench-")
        self._reports: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=3)
        self._process = subprocess.Popen(
            command,
            cwd=self._scratch.name,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            if line.startswith(self.PREFIX):
                self._reports.put(json.loads(line[len(self.PREFIX) :]))

    def _read_stderr(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            if line.strip():
                self._stderr.append(line.strip())

    def get(self, timeout: float) -> dict[str, Any] | None:
        try:
            return self._reports.get(timeout=timeout)
        except queue.Empty:
            return None

    def exit_code(self) -> int | None:
        return self._process.poll()

    def detail(self) -> str:
        return self._stderr[-1] if self._stderr else ""

    def stop(self) -> None:
        def join(timeout: float) -> None:
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass

        _stop_process(
            lambda: self._process.poll() is None, self._process.terminate, self._process.kill, join
        )
        for reader in self._readers:
            reader.join(5)
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()
        self._scratch.cleanup()


def _stop_process(
    alive: Callable[[], bool],
    terminate: Callable[[], None],
    kill: Callable[[], None],
    join: Callable[[float], None],
) -> None:
    if alive():
        terminate()
        join(5)
    if alive():
        kill()
    join(5)


def _start(
    stack: Stack, role: str, workload: str, params: Params, address: dict[str, Any] | None
) -> Child:
    if stack.name == ALVARO13:
        import stack_alvaro13

        alvaro13_python()
        port = None if address is None else int(address["port"])
        return SubprocessChild(
            role, stack_alvaro13.command(role, workload, json.dumps(params), port)
        )
    return ProcessChild(role, stack, role, workload, params, address)


def _wait(
    child: Child, deadline: float, watch: Sequence[Child], what: str, limit: float
) -> dict[str, Any]:
    """The next report of ``child``; fail if any of the processes dies or time runs out."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise MeasurementError(f"timed out after {limit:g} s, waiting for {what}")
        message = child.get(min(remaining, 0.25))
        if message is not None:
            if "error" in message:
                raise MeasurementError(f"{child.name}: {message['error']}")
            return message
        for process in (child, *watch):
            code = process.exit_code()
            if code is not None:
                # Its last report may still be on its way: a result (the process we wait for
                # reported and then exited) or why it failed.
                last = process.get(0.5)
                if last is not None and "error" in last:
                    raise MeasurementError(f"{process.name}: {last['error']}")
                if last is not None and process is child:
                    return last
                detail = process.detail()
                raise MeasurementError(
                    f"the {process.name} exited with code {code}"
                    + (f": {detail}" if detail else "")
                )


def measure(stack: Stack, workload: Workload, params: Params, timeout: float) -> dict[str, Any]:
    """Run ``workload`` once on ``stack``; return the raw result that :func:`figures` reads.

    Raises:
        MeasurementError: it failed, or took longer than ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    children: list[Child] = []
    try:
        server = _start(stack, "server", workload.name, params, None)
        children.append(server)
        address = _wait(server, deadline, (), "the server to listen", timeout)
        client = _start(stack, "client", workload.name, params, address)
        children.append(client)
        if workload.name in IDLE_WORKLOADS:
            after = _wait(server, deadline, (client,), "the connections to open", timeout)
            if after["connections"] != params["connections"]:
                raise MeasurementError(
                    f"the server holds {after['connections']} connections, not "
                    f"{params['connections']}"
                )
            return {**address, **after}
        report = _wait(client, deadline, (server,), "the client's result", timeout)
        result: dict[str, Any] = report["result"]
        return result
    except MeasurementError:
        raise
    except Exception as exc:  # starting a process failed, a report was malformed, ...
        raise MeasurementError(describe(exc)) from exc
    finally:
        for child in reversed(children):
            child.stop()


def figures(workload: Workload, params: Params, raw: dict[str, Any]) -> dict[str, float]:
    """The figures of one measurement: ``value`` in the workload's unit, and ``p99`` for latency.

    alvaro's ``request`` runs also time a send-then-receive echo after each request:
    ``send_receive`` and ``send_receive_p99`` are its figures.
    """
    if workload.name in ("oneway", "oneway-tls"):
        return {"value": params["messages"] / raw["elapsed"]}
    if workload.name == "request-100":
        return {"value": params["requests"] / raw["elapsed"]}
    if workload.name == "request":
        found = _latency(raw["samples_ns"])
        if "echo_samples_ns" in raw:
            echo = _latency(raw["echo_samples_ns"])
            found.update(send_receive=echo["value"], send_receive_p99=echo["p99"])
        return found
    if workload.name == "bulk":
        return {"value": params["bulk_messages"] * BULK_SIZE / 1e6 / raw["elapsed"]}
    if workload.name == "roundtrip":
        return _latency(raw["samples_ns"])
    if workload.name in IDLE_WORKLOADS:
        grown = raw["rss_after_kib"] - raw["rss_before_kib"]
        return {"value": grown / raw["connections"]}
    raise ValueError(f"unknown workload {workload.name!r}")


def _latency(samples_ns: list[int]) -> dict[str, float]:
    """The median and the 99th percentile of round-trip samples, in µs."""
    samples = sorted(samples_ns)
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return {"value": statistics.median(samples) / 1000, "p99": p99 / 1000}


def cpu_info() -> dict[str, int | None]:
    """How many CPUs the machine has, and how many this run may use."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {"cpu_count": os.cpu_count(), "usable_cpus": usable}
