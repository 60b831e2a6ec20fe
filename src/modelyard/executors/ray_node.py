"""The node side of the Ray executor: the code that runs inside the Ray cluster, not the server.

:mod:`modelyard.executors.ray` (the server side) submits :func:`run_task` as each job's task and
:func:`run_pack` as each pack of a fleet's small tenants, and creates one :class:`Mailbox` actor.
Ray pickles them by reference (module and name), so every node imports this module from its own
installed modelyard; it imports nothing of the server.

* :func:`run_task` runs :func:`modelyard.runtime.training.execute` unchanged. What the job
  writes to file descriptors 1 and 2 (so its subprocesses' output too) and its log records become
  :class:`LogLines`; its events and those lines go through an outbox to the mailbox.
* :func:`run_pack` runs a fleet's small tenants one after another in one warm process, and asks
  for more (:class:`PackIdle`) as the last one starts, as the local executor's refillable packs
  do; the server's answer waits in the mailbox. Each tenant reads its own partition from the
  fleet's folder in the shared artefact store.
* :class:`_Outbox` batches events, and flushes synchronously where the order must hold: before
  a task returns its terminal event (the server then never sees the terminal event before the
  job's other events), and as a packed job starts (so if the process dies, the server knows which
  job it was running and that every earlier one ended). A plan's :class:`TenantsReady` is
  flushed at once, without waiting: the server's free slots wait on it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
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

from modelyard.executors import forkserver
from modelyard.protocol.events import (
    JobErrored,
    JobFinished,
    LogLines,
    PackIdle,
    TenantsReady,
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
        self._feeds: dict[str, list[WorkerSpec]] = {}

    def push(self, key: str, events: list[WorkerEvent]) -> None:
        """Events of a task (``key``: its job id) or of a pack (its pack id)."""
        self._events.setdefault(key, []).extend(events)

    def take(self) -> dict[str, list[WorkerEvent]]:
        out, self._events = self._events, {}
        return out

    def feed(self, pack_id: str, specs: list[WorkerSpec]) -> None:
        """The server's answer to a pack's :class:`PackIdle` (none: the pack ends)."""
        self._feeds[pack_id] = specs

    def next_jobs(self, pack_id: str) -> list[WorkerSpec] | None:
        """The pack's answer, once; None while there is none yet."""
        return self._feeds.pop(pack_id, None)


class _Outbox:
    """Batches the events of one task or pack (``key``, the mailbox's key) for the mailbox:
    every 0.2 s, when asked, and a last time, synchronously."""

    def __init__(self, key: str, mailbox: Any) -> None:
        self.key = key
        self.mailbox = mailbox
        self._pending: list[WorkerEvent] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modelyard-outbox", daemon=True)
        self._thread.start()

    def add(self, event: WorkerEvent) -> None:
        with self._lock:
            last = self._pending[-1] if self._pending else None
            if (isinstance(event, LogLines) and isinstance(last, LogLines)
                    and last.job_id == event.job_id):
                self._pending[-1] = LogLines(event.job_id, last.text + event.text)
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
                ref = self.mailbox.push.remote(self.key, batch)
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


@contextlib.contextmanager
def _job_output(sink: Callable[[str], None]) -> Iterator[None]:
    """fds 1 and 2, and log records at INFO, to ``sink`` by lines (see :func:`_captured_output`)."""
    root = logging.getLogger()
    level = root.level
    with _captured_output(sink):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.removeHandler(handler)
            root.setLevel(level)


def _where() -> tuple[str, str]:
    """This worker's Ray node id, and its ``worker_host``: ``<host> (ray node <id>)``."""
    node_id = ray.get_runtime_context().get_node_id()
    return node_id, f"{socket.gethostname()} (ray node {node_id})"


def run_task(spec: WorkerSpec, mailbox: Any) -> WorkerEvent:
    """The body of a job's Ray task: run the job, stream its events, return the terminal one."""
    node_id, host = _where()
    outbox = _Outbox(spec.job_id, mailbox)
    terminal: list[WorkerEvent] = []

    def report(event: WorkerEvent) -> None:
        if isinstance(event, WorkerStarted):
            event = dataclasses.replace(event, host=host)
        if isinstance(event, JobFinished | JobErrored):
            terminal.append(event)
        else:
            outbox.add(event)
            if isinstance(event, TenantsReady):
                outbox.flush()

    try:
        with _job_output(lambda text: outbox.add(LogLines(spec.job_id, text))):
            log.info("running on Ray node %s, host %s, worker pid %d", node_id,
                     socket.gethostname(), os.getpid())
            # The server's log file is not ours to write: output travels as LogLines.
            execute(dataclasses.replace(spec, log_path=None, memory_limit=None), report)
    finally:
        outbox.close()
    return terminal[0]


class _Router:
    """Sends a pack's captured output to the job it belongs to, as :class:`LogLines`.

    The pack's process writes a marker line between jobs, after its streams are flushed. Output
    reaches the pipe in the order it was written, so every line before a job's end marker is
    that job's, and the job's terminal event waits until the reader has passed the marker.
    """

    MARK = "\x00modelyard-pack-job "

    def __init__(self, outbox: _Outbox) -> None:
        self.outbox = outbox
        self.job_id: str | None = None
        self._passed = threading.Event()

    def switch(self, job_id: str | None) -> None:
        """Route what is written from now on to ``job_id`` (None: between jobs, dropped)."""
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(ValueError, OSError):  # a job may have closed it
                stream.flush()
        self._passed.clear()
        os.write(2, f"{self.MARK}{job_id or ''}\n".encode())
        self._passed.wait(1.0)  # a reader stuck past that: the lines may go to the next job

    def write(self, text: str) -> None:
        """The pump's whole lines."""
        lines: list[str] = []
        # Not splitlines(): it also splits at characters a job's output may hold.
        *whole, tail = text.split("\n")
        for line in [f"{w}\n" for w in whole] + ([tail] if tail else []):
            if not line.startswith(self.MARK):
                lines.append(line)
                continue
            self._send(lines)
            lines = []
            self.job_id = line[len(self.MARK):].strip() or None
            self._passed.set()
        self._send(lines)

    def _send(self, lines: list[str]) -> None:
        if lines and self.job_id is not None:
            self.outbox.add(LogLines(self.job_id, "".join(lines)))


def run_pack(pack_id: str, specs: list[WorkerSpec], mailbox: Any) -> None:
    """The body of a pack's Ray task: run ``specs`` in turn, then the batches the server feeds
    through the mailbox, until it feeds none.

    As a batch's last job starts, the pack says :class:`PackIdle`, so the next batch is waiting
    in the mailbox when that job ends. Every job's events go through one outbox, under the
    pack's id.
    """
    node_id, host = _where()
    outbox = _Outbox(pack_id, mailbox)
    router = _Router(outbox)
    try:
        with _job_output(router.write):
            while specs:
                for i, spec in enumerate(specs):
                    if i == len(specs) - 1:
                        outbox.add(PackIdle(pack_id))
                    _run_packed(spec, outbox, router, node_id, host)
                outbox.flush()
                specs = _next_jobs(pack_id, mailbox)
    finally:
        outbox.close()


def _next_jobs(pack_id: str, mailbox: Any) -> list[WorkerSpec]:
    """The server's answer to the pack's :class:`PackIdle`: the next batch, or none."""
    wait = 0.005
    while True:
        answer: list[WorkerSpec] | None = ray.get(mailbox.next_jobs.remote(pack_id), timeout=60)
        if answer is not None:
            return answer
        time.sleep(wait)
        wait = min(wait * 2, 0.1)


def _run_packed(spec: WorkerSpec, outbox: _Outbox, router: _Router, node_id: str,
                host: str) -> None:
    terminal: list[WorkerEvent] = []

    def report(event: WorkerEvent) -> None:
        if isinstance(event, JobFinished | JobErrored):
            terminal.append(event)  # after the job's output: see _Router
            return
        if isinstance(event, WorkerStarted):
            outbox.add(dataclasses.replace(event, host=host))
            # Should this process die, the server knows which job it ran, and that every
            # earlier one ended.
            outbox.flush(wait=True)
            return
        outbox.add(event)
        if isinstance(event, TenantsReady):
            outbox.flush()

    router.switch(spec.job_id)
    try:
        log.info("running on Ray node %s, host %s, worker pid %d, packed", node_id,
                 socket.gethostname(), os.getpid())
        execute(dataclasses.replace(spec, log_path=None, memory_limit=None), report)
    finally:
        router.switch(None)
        for event in terminal:
            outbox.add(event)


def warm() -> int:
    """A task that leaves its worker process as warm as the local executor's fork server: the
    training libraries imported and one tiny job run. Ray reuses the process for the next
    tasks. Returns its pid."""
    for module in forkserver.PRELOAD:
        importlib.import_module(module)
    forkserver.warm_up()
    return os.getpid()
