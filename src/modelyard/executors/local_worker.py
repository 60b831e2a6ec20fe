"""A local worker process: what runs around the training contract in a process the fork server
forked (:mod:`modelyard.executors.forkserver`).

:func:`process_main` is its entry point. It isolates the job (its own process group, so a cancel
kills whatever the workflow started; an optional address-space limit; a watchdog that exits when
the server is gone), points fds 1 and 2 at the job's log, holds native thread pools to the job's
budget, and sends the events of :func:`~modelyard.runtime.training.execute` up its socket. A pack
runs its small jobs one after another and reports in batches; a refillable pack asks for its next
jobs as its last one starts, instead of exiting.

The fork server calls :func:`thread_controller`, :func:`limit_threads` and :func:`prepare_output`
before it forks, so its workers inherit that work done.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from modelyard.protocol.events import (
    PackIdle,
    TenantsReady,
    WorkerEvent,
    WorkerSpec,
    WorkerStarted,
)
from modelyard.runtime.steps import Report
from modelyard.runtime.training import execute


def process_main(spec: WorkerSpec, conn: Any) -> None:
    """Entry point of a local worker process: run ``spec`` (one job or a pack), report on
    ``conn`` (the worker's end of its socket)."""
    os.setpgrp()  # cancel kills the whole group, including processes the workflow started
    if spec.memory_limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (spec.memory_limit, spec.memory_limit))
    done = threading.Event()
    _watch_server(conn, done)

    report: Report = conn.send
    batched = _Batched(conn.send) if spec.pack else None
    if batched is not None:
        report = batched

    if spec.threads:
        # Jobs share the machine: N concurrent jobs each spinning up every core's worth of
        # OpenMP threads thrash.
        limit_threads(spec.threads)
    try:
        jobs: Sequence[WorkerSpec] = spec.pack or (spec,)
        while jobs:
            for i, one in enumerate(jobs):  # a pack runs its small jobs one after another
                if spec.refill and i == len(jobs) - 1:
                    # Ask for more rather than exit (this process's memory is warm; a new
                    # process's first job pays its page faults), and ask now, so the answer is
                    # here when the last job ends.
                    report(PackIdle(spec.job_id))
                if one.log_path:
                    _redirect_output(one.log_path)
                execute(one, report)
            if not spec.refill:
                break
            if batched is not None:
                batched.flush()  # the server may wait for this job's end to answer
            jobs = _next_jobs(conn)
    finally:
        if batched is not None:
            with contextlib.suppress(OSError):
                batched.flush()
        done.set()
        sys.stdout.flush()
        sys.stderr.flush()
        conn.close()


def _next_jobs(conn: Any) -> Sequence[WorkerSpec]:
    """The server's answer to :class:`PackIdle`: more specs, or none (then the pack ends)."""
    try:
        jobs = conn.recv()
    except (EOFError, OSError):
        return ()
    return tuple(j for j in jobs if isinstance(j, WorkerSpec))


class _Batched:
    """A packed worker's reports, sent in batches.

    Packed jobs are small and report a dozen events within milliseconds; sent one by one, the
    server would apply them one by one. Events wait up to ``MAX_DELAY_S`` (a timer sends them
    then, so a slower job still shows its steps). A job's :class:`WorkerStarted` goes at once,
    with everything before it: so if the process dies, every earlier job's outcome has reached
    the server, and the server knows which job was running and which never started. A
    :class:`PackIdle` goes at once too, and so does a plan's :class:`TenantsReady`: free slots
    wait on it.
    """

    MAX_DELAY_S = 0.25

    def __init__(self, send: Callable[[Any], None]) -> None:
        self.send = send
        self.waiting: list[WorkerEvent] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._tick, name="modelyard-report-batch", daemon=True).start()

    def __call__(self, event: WorkerEvent) -> None:
        with self.lock:
            self.waiting.append(event)
            if isinstance(event, WorkerStarted | PackIdle | TenantsReady):
                self._flush()

    def flush(self) -> None:
        with self.lock:
            self._flush()

    def _tick(self) -> None:
        while True:
            time.sleep(self.MAX_DELAY_S)
            with self.lock:
                try:
                    self._flush()
                except OSError:  # the server is gone; the watchdog ends the process
                    return

    def _flush(self) -> None:
        if self.waiting:
            self.send(self.waiting)
            self.waiting = []


_controller: Any = None


def thread_controller() -> Any:
    """threadpoolctl's view of the loaded native libraries, scanned once per process.

    The fork server calls this before forking, so its workers reuse the scan.
    """
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller


def limit_threads(n: int) -> None:
    """At most ``n`` threads in each native thread pool (OpenMP, BLAS) of this process.

    Only pools set to another count are changed. Setting OpenBLAS's count, even to the value it
    has, starts its threads in a newly forked process, and they spin-wait on the cores the job
    needs. The fork server sets the usual count before it forks, so most workers change nothing.
    """
    for lib in thread_controller().lib_controllers:
        if lib.num_threads != n:
            lib.set_num_threads(n)


_prepared: list[Any] = []  # (stdout, stderr, logging handlers) as prepare_output left them


def prepare_output() -> None:
    """Line-buffered text streams on fds 1 and 2, and logging onto stderr, once per process.

    Pointing a job's output at its log is then an open and two ``dup2`` calls: a pack does
    that for each job, and a spare worker prepares before its job comes, off the job's path.
    """
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    _prepared[:] = [sys.stdout, sys.stderr, list(logging.root.handlers)]


def _redirect_output(path: str) -> None:
    """Send fds 1 and 2 (so C libraries and subprocesses too) and logging to the job's log."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(ValueError, OSError):  # a job may have closed it
            stream.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    # The prepared streams write to fds 1 and 2, now the log; prepare again only if an
    # earlier job of this process replaced or closed them, or changed the logging set-up.
    if (not _prepared or sys.stdout is not _prepared[0] or sys.stderr is not _prepared[1]
            or sys.stdout.closed or sys.stderr.closed
            or logging.root.handlers != _prepared[2] or logging.root.level != logging.INFO):
        prepare_output()


def _watch_server(conn: Any, done: threading.Event) -> None:
    """Exit when the server is gone: a worker never outlives its server.

    The server holds the only other end of our event socket; when it dies, polling our end
    reports POLLHUP. (The parent process is the fork server, which outlives a killed server
    for as long as any worker holds its "alive" pipe, so watching the parent pid is not enough.)
    """
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLERR | select.POLLHUP)

    def watch() -> None:
        while not done.is_set():
            if poller.poll(500) and not done.is_set():
                os._exit(70)

    threading.Thread(target=watch, name="modelyard-server-watch", daemon=True).start()
