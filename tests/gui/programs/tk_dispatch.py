"""A Tk program with alvaro.sync clients whose callbacks run on Tk's thread through ``dispatch=``.

Run by tests/gui/test_tk_dispatch.py on a real X screen. It prints one JSON line of what it saw:

1. ``others_ok``: while a Tk callback is still running (holding Tk's thread), another client of the
   same process keeps doing round trips with the host (a slow GUI slows only its own callbacks).
2. ``close_error`` and ``close_seconds``: ``client.close()`` called from Tk's thread (as a window's
   close button does) returns promptly and raises nothing, though a ``lost_connection`` callback
   is due on that same thread.

Usage: python tk_dispatch.py BACKEND CLOSE_TIMEOUT
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
import tkinter
from typing import Any

import alvaro.sync


def main(backend: str, close_timeout: float) -> None:
    root = tkinter.Tk()
    root.title("alvaro dispatch test")
    label = tkinter.Label(root, text="waiting")
    label.pack()
    results: dict[str, Any] = {}
    commands: queue.SimpleQueue[str] = queue.SimpleQueue()
    in_callback = threading.Event()
    release = threading.Event()
    lost = threading.Event()

    host = alvaro.sync.Host("127.0.0.1", 0, backend=backend)  # type: ignore[arg-type]
    host.got_data = lambda conn, data, metadata: conn.send_data(data, metadata)
    host.start()

    gui = alvaro.sync.Client(
        backend=backend,  # type: ignore[arg-type]
        dispatch=lambda function: root.after(0, function),
        close_timeout=close_timeout,
    )

    def gui_got_data(data: Any, metadata: dict[str, Any]) -> None:
        label.configure(text=str(data))  # a widget, touched on Tk's thread
        if data == "hold":
            # A slow GUI callback: Tk's thread is busy until the other client is done.
            in_callback.set()
            results["released"] = release.wait(30)

    def gui_lost_connection() -> None:
        lost.set()

    gui.got_data = gui_got_data
    gui.lost_connection = gui_lost_connection
    gui.connect("127.0.0.1", host.port)

    def others() -> None:
        """On a plain thread: another client's round trips while Tk's thread is held."""
        other = alvaro.sync.Client(backend=backend)  # type: ignore[arg-type]
        try:
            other.connect("127.0.0.1", host.port)
            gui.send_data("hold")
            in_callback.wait(30)
            # More messages for the busy GUI: they must wait for Tk, and nothing else must.
            for number in range(20):
                gui.send_data(number)
            time.sleep(0.2)
            round_trips = 0
            for number in range(5):
                other.send_data(number)
                other.receive(timeout=5)
                round_trips += 1
            results["others_ok"] = round_trips == 5 and not release.is_set()
        except Exception as exc:
            results["others_ok"] = False
            results["others_error"] = repr(exc)
        finally:
            release.set()
            other.close()
            commands.put("close")

    def poll() -> None:
        try:
            command = commands.get_nowait()
        except queue.Empty:
            root.after(20, poll)
            return
        assert command == "close"
        started = time.monotonic()
        try:
            gui.close()  # on Tk's thread, as a window's close button would
        except BaseException as exc:
            results["close_error"] = repr(exc)
        else:
            results["close_error"] = None
        results["close_seconds"] = time.monotonic() - started
        host.close()
        root.after(0, finish)

    def finish() -> None:
        # lost_connection runs on Tk's thread once it is back in its event loop.
        root.update()
        deadline = time.monotonic() + 5
        while not lost.is_set() and time.monotonic() < deadline:
            root.update()
            time.sleep(0.01)
        results["lost_connection_ran"] = lost.is_set()
        print(json.dumps(results), flush=True)
        root.destroy()

    threading.Thread(target=others, daemon=True).start()
    root.after(20, poll)
    root.mainloop()


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]))
