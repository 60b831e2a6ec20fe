"""Wake HTTP long-polls when a job changes, from the dispatcher's thread to the event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping


class JobNotifier:
    """``notify(job_id)`` from any thread; ``with watch(job_id) as changed`` in the event loop.

    Register the watch *before* reading the job, so a change between the read and the wait
    is not missed. A watch with ``only_end`` wakes only for notifications that say the job
    may have ended (a job reports a dozen steps on its way; a ``?until=done`` long-poll need
    not re-read it for each).
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[tuple[asyncio.Event, bool]]] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self, job_id: str, ended: bool = True) -> None:
        """The job changed; ``ended=False`` promises that it has not ended (a step, a claim)."""
        self.notify_many({job_id: ended})

    def notify_many(self, changes: Mapping[str, bool]) -> None:
        """Several jobs changed (job id -> may have ended): one wake-up of the event loop."""
        loop = self._loop
        if changes and loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake, dict(changes))
            except RuntimeError:  # the loop closed between the check and the call
                pass

    def _wake(self, changes: dict[str, bool]) -> None:
        for job_id, ended in changes.items():
            for event, only_end in self._waiters.get(job_id, ()):
                if ended or not only_end:
                    event.set()

    @contextlib.contextmanager
    def watch(self, job_id: str, *, only_end: bool = False) -> Iterator[asyncio.Event]:
        entry = (asyncio.Event(), only_end)
        self._waiters.setdefault(job_id, set()).add(entry)
        try:
            yield entry[0]
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(entry)
                if not waiters:
                    del self._waiters[job_id]


async def wait_for(event: asyncio.Event, timeout: float) -> bool:
    try:
        await asyncio.wait_for(event.wait(), timeout)
        return True
    except TimeoutError:
        return False
