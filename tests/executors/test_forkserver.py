"""The fork server: every job handed to it runs exactly once, in the process whose pid it
answered, including large packed specs and back-to-back requests (spares are handed over)."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from modelyard.executors.local import LocalExecutor
from modelyard.runtime.events import JobErrored, JobFinished, WorkerSpec, WorkerStarted
from modelyard.settings import Settings
from modelyard.synthetic import example_request


def test_each_job_runs_once_in_the_process_it_was_given(tmp_path: Path) -> None:
    executor = LocalExecutor(Settings.load(home=tmp_path))
    events: dict[str, list[Any]] = defaultdict(list)
    lock = threading.Lock()
    ended = threading.Semaphore(0)

    def on_event(event: Any) -> None:
        with lock:
            events[event.job_id].append(event)
        if isinstance(event, JobFinished | JobErrored):
            ended.release()

    request = example_request("missing.parquet")  # fails in its load step: quick, and real
    pids: dict[str, int] = {}
    expected = 0
    try:
        for i in range(12):
            size = (1, 40, 3)[i % 3]  # single jobs and packs, one with a large spec
            specs = tuple(WorkerSpec(job_id=f"j{i}-{k}", request=request,
                                     data_roots=(str(tmp_path),), artifact_root=str(tmp_path))
                          for k in range(size))
            spec = specs[0] if size == 1 else dataclasses.replace(
                specs[0], job_id=f"pack-{i}", pack=specs)
            run = executor.start(spec, on_event)
            pids.update({s.job_id: run.pid for s in specs})
            expected += size
        for _ in range(expected):
            assert ended.acquire(timeout=60)
    finally:
        executor.close()

    assert len(set(pids.values())) == 12  # one process per start
    for job_id, pid in pids.items():
        kinds = Counter(type(e).__name__ for e in events[job_id])
        assert kinds["WorkerStarted"] == 1 and kinds["JobErrored"] == 1, (job_id, kinds)
        started = next(e for e in events[job_id] if isinstance(e, WorkerStarted))
        assert started.pid == pid
        assert "does not exist" in next(e for e in events[job_id]
                                        if isinstance(e, JobErrored)).exception_info["message"]
