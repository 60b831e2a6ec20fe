"""A job's steps: each reports its start and its end, and a failure says which step it was.

:meth:`Steps.run` runs one named step of :func:`~modelyard.runtime.training.run_job`: it reports
a :class:`StepStarted`, calls the step's function with an empty ``info`` for it to fill (rows,
model id, metric values), reports a :class:`StepFinished` with that ``info`` and the duration, and
keeps the duration for the job's provenance. An exception raised in the step comes out wrapped in
:class:`StepFailed`, so the job's ``exception_info`` names the step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from modelyard.protocol.events import StepFinished, StepStarted, WorkerEvent

log = logging.getLogger("modelyard.worker")

Report = Callable[[WorkerEvent], None]
"""Where a worker's events go (a socket, a Ray queue, a file): the runtime never knows which."""

StepInfo = dict[str, Any]
"""What a step found, reported in its :class:`StepFinished` (``{"rows": 5000, ...}``)."""

P = ParamSpec("P")
T = TypeVar("T")


class StepFailed(Exception):
    """Carries the step in which the original exception was raised."""

    def __init__(self, step: str, original: BaseException) -> None:
        super().__init__(str(original))
        self.step = step
        self.original = original


class Steps:
    """The steps of one job, reported as they run; ``durations`` holds the finished ones'."""

    def __init__(self, job_id: str, report: Report) -> None:
        self.job_id = job_id
        self.report = report
        self.durations: dict[str, float] = {}

    def run(self, name: str, step: Callable[Concatenate[StepInfo, P], T],
            *args: P.args, **kwargs: P.kwargs) -> T:
        """``step(info, *args, **kwargs)`` as the step ``name``: its result, once reported.

        Raises:
            StepFailed: wrapping whatever the step raised.
        """
        info: StepInfo = {}
        started = time.time()
        t0 = time.perf_counter()
        self.report(StepStarted(self.job_id, name, started))
        log.info("step %s: started", name)
        try:
            result = step(info, *args, **kwargs)
        except StepFailed:
            raise
        except BaseException as exc:
            log.error("step %s: failed: %s: %s", name, type(exc).__name__, exc)
            raise StepFailed(name, exc) from exc
        duration = time.perf_counter() - t0
        self.durations[name] = round(duration, 6)
        log.info("step %s: done in %.3fs %s", name, duration, info or "")
        self.report(StepFinished(self.job_id, name, started, duration, info))
        return result
