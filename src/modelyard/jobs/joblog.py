"""A job's log file, as the server writes to it.

The worker writes its own output to the same file (a local worker), or sends it as
:class:`~modelyard.protocol.events.LogLines` (a remote one), which go in as they came
(:meth:`JobLog.write_raw`). The server's own lines about the job (running where, ended how,
queued again as what) are stamped and tagged ``[modelyard]`` (:meth:`JobLog.append`).

A log that cannot be written is a warning in the server's log, never a failure of the job: the
job store, not the log, holds the job's state.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass

log = logging.getLogger("modelyard.dispatcher")


@dataclass(frozen=True)
class JobLog:
    """The log file at ``path``; a job without one (``None``) logs nothing."""

    path: str | None

    def append(self, line: str) -> None:
        """Add one line of the server's, stamped with the time (UTC) and tagged."""
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        self._write(f"{stamp} [modelyard] {line}\n")

    def write_raw(self, text: str) -> None:
        """Add a worker's output as it is (whole lines, their own newlines)."""
        self._write(text)

    def _write(self, text: str) -> None:
        if not self.path:
            return
        try:
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            with open(self.path, "a") as fh:
                fh.write(text)
        except OSError:
            log.warning("cannot write to job log %s", self.path)
