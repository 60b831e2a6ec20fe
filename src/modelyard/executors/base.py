"""The executor interface: where a job's worker runs.

An executor starts a worker for a :class:`WorkerSpec` and relays the worker's events to a
callback, from any thread. It must deliver exactly one terminal event per run
(:class:`JobFinished` or :class:`JobErrored`), reporting a lost worker itself. It never touches
the job store: the dispatcher does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from modelyard.protocol.events import WorkerEvent, WorkerSpec

OnEvent = Callable[[WorkerEvent], None]


class RunHandle(Protocol):
    """One running job."""

    def cancel(self) -> None:
        """Stop the worker now (kill it); its terminal event may still arrive and is ignored."""


class Refillable(RunHandle, Protocol):
    """A run of an executor that ``refills``: an idle pack takes more jobs."""

    def feed(self, specs: list[WorkerSpec]) -> bool:
        """Send the next jobs (none: the pack ends); False if the worker is already gone."""


class Executor(Protocol):
    name: str
    # packs: a spec with ``pack`` runs each packed job in turn and reports each (else the
    # dispatcher starts one run per job). refills: a pack with ``refill`` may be given more
    # jobs when it says PackIdle, through its handle's ``feed``, and reports PackEnded.
    packs: bool
    refills: bool

    def start(self, spec: WorkerSpec, on_event: OnEvent) -> RunHandle:
        """Start ``spec`` and return at once; events arrive through ``on_event``."""

    def warm_up(self) -> None:
        """Prepare to start jobs quickly (pre-import, connect); may be a no-op."""

    def close(self) -> None:
        """Stop every worker this executor started."""
