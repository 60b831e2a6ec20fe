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

    def read(self, offset: int = 0, *, most: int | None = None) -> tuple[str, int]:
        """The log from byte ``offset`` on (at most its last ``most`` bytes, starting at a
        line), and the offset after it, where the next read starts; empty before it exists."""
        if not self.path or not os.path.exists(self.path):
            return "", 0
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            # Past the end there is nothing to read (and a seek that far fails with EINVAL).
            offset = min(offset, size)
            cut = most is not None and size - offset > most
            fh.seek(size - most if cut and most is not None else offset)
            data = fh.read()
        if cut:
            data = data[data.find(b"\n") + 1:]
        return data.decode("utf-8", errors="replace"), size if cut else offset + len(data)

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
