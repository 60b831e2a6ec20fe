"""The node side of the Ray executor: the code that runs inside the Ray cluster, not the server.

:mod:`modelyard.executors.ray` (the server side) submits :func:`run_task` as each job's task and
creates one :class:`Mailbox` actor. Ray pickles both by reference (module and name), so every
node imports this module from its own installed modelyard; it imports nothing of the server.

* :func:`run_task` runs :func:`modelyard.runtime.training.execute` unchanged. What the job
  writes to file descriptors 1 and 2 (so its subprocesses' output too) and its log records become
  :class:`LogLines`; its events and those lines go through an outbox to the mailbox.
* :class:`_Outbox` batches one task's events, and flushes a last time, synchronously, before the
  task returns its terminal event: the server then never sees the terminal event before the
  job's other events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import ray

from modelyard.protocol.events import (
    JobErrored,
    JobFinished,
    LogLines,
    WorkerEvent,
    WorkerSpec,
    WorkerStarted,
)
from modelyard.runtime.training import execute

log = logging.getLogger("modelyard.executors.ray_node")

_POLL_S = 0.1
_FLUSH_S = 0.2


class Mailbox:
    """A Ray actor (one per executor) that holds events from tasks until the server takes them.

    Synchronous on purpose: calls from one task then run in the order the task made them.
    """

    def __init__(self) -> None:
        self._events: dict[str, list[WorkerEvent]] = {}

    def push(self, job_id: str, events: list[WorkerEvent]) -> None:
        self._events.setdefault(job_id, []).extend(events)

    def take(self) -> dict[str, list[WorkerEvent]]:
        out, self._events = self._events, {}
        return out


class _Outbox:
    """Batches one job's events for the mailbox: every 0.2 s, and a last time, synchronously."""

    def __init__(self, job_id: str, mailbox: Any) -> None:
        self.job_id = job_id
        self.mailbox = mailbox
        self._pending: list[WorkerEvent] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelyard-outbox", daemon=True)
        self._thread.start()

    def add(self, event: WorkerEvent) -> None:
        with self._lock:
            last = self._pending[-1] if self._pending else None
            if isinstance(event, LogLines) and isinstance(last, LogLines):
                self._pending[-1] = LogLines(self.job_id, last.text + event.text)
            else:
                self._pending.append(event)

    def _run(self) -> None:
        while not self._closed.wait(_FLUSH_S):
            self.flush()

    def flush(self, wait: bool = False) -> None:
        with self._lock:  # submit under the lock: batches reach the mailbox in order
            batch, self._pending = self._pending, []
            if not batch:
                return
            try:
                ref = self.mailbox.push.remote(self.job_id, batch)
                if wait:
                    ray.get(ref, timeout=60)
            except Exception:
                # Progress is best effort (the mailbox may be restarting); the terminal event is
                # the task's return value. Not printed: our output goes to this same mailbox.
                pass

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self.flush(wait=True)


@contextlib.contextmanager
def _captured_output(sink: Callable[[str], None]) -> Iterator[None]:
    """Send what this process (and its children) writes to fds 1 and 2 to ``sink``, by lines."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    saved_fds = os.dup(1), os.dup(2)
    saved_streams = sys.stdout, sys.stderr
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    done = threading.Event()
    reader = threading.Thread(target=_pump, args=(read_fd, sink, done),
                              name="modelyard-output", daemon=True)
    reader.start()
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
            stream.close()
        sys.stdout, sys.stderr = saved_streams
        for fd, saved in zip((1, 2), saved_fds, strict=True):
            os.dup2(saved, fd)
            os.close(saved)
        done.set()
        reader.join(timeout=5)


def _pump(fd: int, sink: Callable[[str], None], done: threading.Event) -> None:
    # Children that outlive the job keep the pipe open: stop reading shortly after the job ends.
    buffered = b""
    deadline: float | None = None
    try:
        while True:
            if done.is_set() and deadline is None:
                deadline = time.monotonic() + 1.0
            if deadline is not None and time.monotonic() > deadline:
                break
            readable, _, _ = select.select([fd], [], [], _POLL_S)
            if not readable:
                if done.is_set():
                    break
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buffered += chunk
            head, newline, rest = buffered.rpartition(b"\n")
            if newline:
                sink((head + newline).decode("utf-8", "replace"))
                buffered = rest
            elif len(buffered) > 65536:
                sink(buffered.decode("utf-8", "replace"))
                buffered = b""
    finally:
        if buffered:
            sink(buffered.decode("utf-8", "replace") + "\n")
        os.close(fd)


def run_task(spec: WorkerSpec, mailbox: Any) -> WorkerEvent:
    """The body of a job's Ray task: run the job, stream its events, return the terminal one."""
    node_id = ray.get_runtime_context().get_node_id()
    host = f"{socket.gethostname()} (ray node {node_id})"
    outbox = _Outbox(spec.job_id, mailbox)
    terminal: list[WorkerEvent] = []

    def report(event: WorkerEvent) -> None:
        if isinstance(event, WorkerStarted):
            event = dataclasses.replace(event, host=host)
        if isinstance(event, JobFinished | JobErrored):
            terminal.append(event)
        else:
            outbox.add(event)

    root = logging.getLogger()
    level = root.level
    try:
        with _captured_output(lambda text: outbox.add(LogLines(spec.job_id, text))):
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            root.addHandler(handler)
            root.setLevel(logging.INFO)
            try:
                log.info("running on Ray node %s, host %s, worker pid %d", node_id,
                         socket.gethostname(), os.getpid())
                # The server's log file is not ours to write: output travels as LogLines.
                execute(dataclasses.replace(spec, log_path=None, memory_limit=None), report)
            finally:
                root.removeHandler(handler)
                root.setLevel(level)
    finally:
        outbox.close()
    return terminal[0]
