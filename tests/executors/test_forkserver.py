"""The fork server: every job handed to it runs exactly once, in the process whose pid it
answered, including large packed specs and back-to-back requests (spares are handed over)."""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from modelyard.executors.local import LocalExecutor
from modelyard.protocol.events import JobErrored, JobFinished, WorkerSpec, WorkerStarted
from modelyard.settings import Settings
from modelyard.synthetic import example_request, write_payments

WORKFLOWS = Path(__file__).parents[1] / "workflows_for_api.py"


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
                                        if isinstance(e, JobErrored)).exception_info.message


@pytest.mark.parametrize("concurrency", [1, 2])
def test_a_worker_runs_with_its_job_s_thread_budget(tmp_path: Path, concurrency: int) -> None:
    settings = Settings.load(home=tmp_path, concurrency=concurrency)
    write_payments(tmp_path / "p.parquet", rows=500, merchants=5)
    executor = LocalExecutor(settings)
    ended: list[Any] = []
    done = threading.Semaphore(0)

    def on_event(event: Any) -> None:
        if isinstance(event, JobFinished | JobErrored):
            ended.append(event)
            done.release()

    # The usual budget (cores / concurrency, which the fork server sets before forking) and
    # budgets a request asks for.
    budgets = [settings.job_threads, 1, 3]
    try:
        for i, threads in enumerate(budgets):
            out = tmp_path / f"threads-{i}.json"
            request = example_request("p.parquet", workflow_name="ReportsThreads",
                                      custom_params={"out": str(out)})
            executor.start(WorkerSpec(job_id=f"t{i}", request=request,
                                      data_roots=(str(tmp_path),),
                                      artifact_root=str(tmp_path / "artifacts"),
                                      workflow_modules=(str(WORKFLOWS),), threads=threads),
                           on_event)
            assert done.acquire(timeout=60)
    finally:
        executor.close()
    assert all(isinstance(e, JobFinished) for e in ended), ended
    for i, threads in enumerate(budgets):
        assert (tmp_path / f"threads-{i}.json").read_text() == f"[{threads}]"
