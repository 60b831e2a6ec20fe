"""Local executor: one worker process per job, forked from a pre-imported fork server.

A fresh Python that imports pandas and scikit-learn would pay those imports on every job; forking
a server that has already imported them (and run one warm-up job) does not. Each job still gets its
own process: a workflow that raises, crashes, is killed or runs out of memory takes down only its
own job. See :mod:`modelyard.executors.forkserver` for why the fork server is our own.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from multiprocessing.connection import Connection
from typing import IO

from modelyard.errors import ConfigurationError
from modelyard.executors import forkserver
from modelyard.executors.base import OnEvent
from modelyard.protocol.events import (
    JobErrored,
    JobFinished,
    PackEnded,
    WorkerSpec,
    WorkerStarted,
    lost_job_errors,
)
from modelyard.protocol.results import ExceptionInfo, FailureKind, failure
from modelyard.settings import Settings

log = logging.getLogger("modelyard.executors.local")


def crash_record(exitcode: int | None) -> ExceptionInfo:
    """``exception_info`` for a worker that ended without reporting a result."""
    if exitcode is not None and exitcode < 0:
        sig = signal.Signals(-exitcode).name
        hint = (
            " The most common cause is running out of memory (the kernel's OOM killer sends "
            "SIGKILL): use less data, or give the job more memory (compute_resource: HIGH_MEMORY)."
            if -exitcode == signal.SIGKILL
            else ""
        )
        message = f"the worker process was killed by {sig} before it finished.{hint}"
    elif exitcode is None:
        message = "the fork server stopped while the job was running; resubmit the request"
    else:
        message = (
            f"the worker process exited with code {exitcode} before reporting a result "
            "(the workflow may call sys.exit or os._exit, or crashed in native code); "
            "see the job's log"
        )
    kind = (FailureKind.out_of_memory if exitcode is not None and -exitcode == signal.SIGKILL
            else FailureKind.worker_crashed)
    return failure(kind, message, exitcode=exitcode)


class LocalRun:
    """A worker process; for a refillable pack also its socket, to send it more jobs."""

    def __init__(self, pid: int, conn: Connection, job_ids: list[str]) -> None:
        self.pid = pid
        self.conn = conn
        self.pending = set(job_ids)  # jobs still owed a terminal event
        self.started: set[str] = set()  # jobs the worker said it started (packs report each)
        self.closed = False  # the relay saw the worker's end of the socket close
        self.lock = threading.Lock()

    def cancel(self) -> None:
        for kill in (os.killpg, os.kill):  # the worker leads its own process group
            try:
                kill(self.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def feed(self, specs: list[WorkerSpec]) -> bool:
        """Give a refillable pack its next jobs (none: it exits). False if it is gone; then
        the caller must run them elsewhere. Once sent, they are the relay's to account for:
        if the worker dies before reaching them, each is reported as not started."""
        with self.lock:
            if self.closed:
                return False
            self.pending.update(s.job_id for s in specs)
        try:
            self.conn.send(tuple(specs))
        except OSError:
            pass  # it died meanwhile; the relay reports the jobs now pending as lost
        return True


class LocalExecutor:
    name = "local"
    packs = refills = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runs: dict[str, LocalRun] = {}
        self._lock = threading.Lock()
        self._server: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._folder = tempfile.mkdtemp(prefix="modelyard-fs-")
        self._socket = os.path.join(self._folder, "forkserver.sock")

    def warm_up(self) -> None:
        """Start the fork server now (it imports and warms up in the background)."""
        with self._lock:
            if self._server is not None and self._server.poll() is None:
                return
            if os.path.exists(self._socket):
                os.unlink(self._socket)
            self._ready.clear()
            env = dict(os.environ)
            # Workers import what this process can: same sys.path, whoever started us.
            env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
            # Idle OpenBLAS threads spin for 2**28 cycles before they sleep, on cores that other
            # jobs need; 2**22 still bridges back-to-back BLAS calls.
            env.setdefault("OPENBLAS_THREAD_TIMEOUT", "22")
            self._server = subprocess.Popen(
                [sys.executable, "-m", "modelyard.executors.forkserver", self._socket,
                 str(self.settings.job_threads)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
            )
            threading.Thread(target=self._await_ready, args=(self._server.stdout,),
                             name="modelyard-forkserver-ready", daemon=True).start()

    def _await_ready(self, stdout: IO[bytes] | None) -> None:
        line = stdout.readline() if stdout is not None else b""
        if line == forkserver.READY:
            self._ready.set()
        else:
            log.error("the fork server failed to start; see the server log above")

    def _ensure_server(self, timeout: float = 120.0) -> None:
        if self._server is None or self._server.poll() is not None:
            if self._server is not None:
                log.warning("the fork server exited (code %s); starting a new one",
                            self._server.returncode)
            self.warm_up()
        if not self._ready.wait(timeout):
            raise ConfigurationError(
                f"the fork server did not become ready within {timeout:g} s; check that "
                "modelyard and its dependencies import (python -m modelyard.executors.forkserver)")

    def start(self, spec: WorkerSpec, on_event: OnEvent) -> LocalRun:
        self._ensure_server()
        # A socket, not a pipe: events go up, and a refillable pack's next jobs come down.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock, pid = forkserver.request_fork(self._socket, spec, theirs.fileno())
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        run = LocalRun(pid, Connection(ours.detach()), spec.job_ids())
        with self._lock:
            self._runs[spec.job_id] = run
        threading.Thread(
            target=self._relay, args=(spec, run, sock, on_event),
            name=f"modelyard-relay-{spec.job_id[:8]}", daemon=True,
        ).start()
        return run

    def _relay(self, spec: WorkerSpec, run: LocalRun, sock: socket.socket,
               on_event: OnEvent) -> None:
        try:
            while run.pending or spec.refill:  # a refillable pack: until its worker is gone
                try:
                    received = run.conn.recv()  # an event, or a packed worker's list of them
                except (EOFError, OSError):
                    break
                except Exception as exc:  # an event that cannot be unpickled
                    with run.lock:
                        lost, run.closed = sorted(run.pending), True
                        run.pending.clear()
                    for job_id in lost:
                        on_event(JobErrored(job_id, failure(
                            FailureKind.protocol_error, f"bad message from worker: {exc}")))
                    break
                for event in received if isinstance(received, list) else [received]:
                    on_event(event)
                    if isinstance(event, JobFinished | JobErrored):
                        with run.lock:
                            run.pending.discard(event.job_id)
                    elif isinstance(event, WorkerStarted):
                        run.started.add(event.job_id)
        finally:
            with run.lock:
                run.closed = True
                lost = sorted(run.pending)
            run.conn.close()
            exitcode = forkserver.read_exit_code(sock)
            with self._lock:
                self._runs.pop(spec.job_id, None)
            for event in lost_job_errors(lost, run.started, crash_record(exitcode),
                                         packed=bool(spec.pack)):
                on_event(event)
            if spec.refill:
                on_event(PackEnded(spec.job_id))

    def close(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
            server = self._server
            self._server = None
        for run in runs:
            run.cancel()
        if server is not None:
            if server.stdin is not None:
                server.stdin.close()  # the fork server exits when its stdin closes
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
            if server.stdout is not None:
                server.stdout.close()
