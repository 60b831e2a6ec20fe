"""Local executor: one worker process per job, forked from a pre-imported fork server.

A fresh Python that imports pandas and scikit-learn costs about a second; forking a server that
has already imported them costs milliseconds. Each job still gets its own process: a workflow that
raises, crashes, is killed or runs out of memory takes down only its own job.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import signal
import threading
from typing import Any

from modelyard.executors.base import OnEvent
from modelyard.runtime.events import JobErrored, JobFinished, WorkerSpec
from modelyard.settings import Settings

# Imported once by the fork server; every worker starts with them loaded.
PRELOAD = [
    "modelyard.runtime.worker",
    "modelyard.runtime.builtin",
    "numpy",
    "pandas",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.metrics",
    "fsspec.implementations.local",
]


def crash_record(exitcode: int | None) -> dict[str, Any]:
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
    else:
        message = (
            f"the worker process exited with code {exitcode} before reporting a result "
            "(the workflow may call sys.exit or os._exit, or crashed in native code); "
            "see the job's log"
        )
    return {"type": "WorkerCrashed", "message": message, "traceback": None, "step": None,
            "exitcode": exitcode}


class LocalRun:
    def __init__(self, process: Any) -> None:
        self.process = process

    def cancel(self) -> None:
        pid = self.process.pid
        try:
            os.killpg(pid, signal.SIGKILL)  # the worker leads its own process group
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.kill()
        except (ProcessLookupError, ValueError):
            pass


class LocalExecutor:
    name = "local"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._ctx = multiprocessing.get_context("forkserver")
        self._ctx.set_forkserver_preload(PRELOAD)
        self._runs: dict[str, LocalRun] = {}
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        multiprocessing.forkserver.ensure_running()

    def start(self, spec: WorkerSpec, on_event: OnEvent) -> LocalRun:
        from modelyard.runtime.worker import process_main

        receiver, sender = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=process_main, args=(spec, sender), name=f"modelyard-job-{spec.job_id}"
        )
        process.start()
        sender.close()
        run = LocalRun(process)
        with self._lock:
            self._runs[spec.job_id] = run
        threading.Thread(
            target=self._relay,
            args=(spec.job_id, process, receiver, on_event),
            name=f"modelyard-relay-{spec.job_id[:8]}",
            daemon=True,
        ).start()
        return run

    def _relay(self, job_id: str, process: Any, receiver: Any, on_event: OnEvent) -> None:
        ended = False
        try:
            while True:
                try:
                    event = receiver.recv()
                except (EOFError, OSError):
                    break
                except Exception as exc:  # an event that cannot be unpickled
                    on_event(JobErrored(job_id, {"type": "WorkerProtocolError",
                                                 "message": f"bad message from worker: {exc}",
                                                 "traceback": None, "step": None}))
                    ended = True
                    break
                on_event(event)
                if isinstance(event, JobFinished | JobErrored):
                    ended = True
        finally:
            receiver.close()
            process.join()
            with self._lock:
                self._runs.pop(job_id, None)
            if not ended:
                on_event(JobErrored(job_id, crash_record(process.exitcode)))

    def close(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.cancel()
