"""``Ticker``: call a function every few seconds on a daemon thread, until stopped.

The background loops that do one thing on an interval (the production log's writer, serving's
experiment table, the experiment controller) share it, so each says what it does each tick and
not again how a thread starts, waits and stops. It sits at the top of the package because
serving and experiments both use it and neither may import the other's layer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Ticker:
    """Call ``tick`` every ``interval_s`` seconds on a daemon thread named ``name``.

    A tick that raises is logged on ``log`` with ``failed`` and the next tick runs as usual:
    the loops look again at a database that hiccuped rather than die.
    """

    def __init__(self, name: str, interval_s: float, tick: Callable[[], object],
                 log: logging.Logger, failed: str) -> None:
        self.name = name
        self.interval_s = interval_s
        self._tick = tick
        self._log = log
        self._failed = failed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the tick under way, if any (waiting at most ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._tick()
            except Exception:
                self._log.exception(self._failed)
