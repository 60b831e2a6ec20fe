"""Adaptive micro-batching: concurrent requests for one model become one predict call.

scikit-learn and pandas cost a fixed overhead per call whatever the row count, so under load
one call on 64 rows beats 64 calls on one row. There is no fixed wait: an idle model predicts at
once; requests that arrive while a call is running are gathered and run together as the next call
(up to ``max_rows``). A single client therefore pays no batching delay.

A batch that fails is scored again request by request, so only the request whose rows the model
cannot score gets the error; the others get their scores as if they had come alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np

Rows = Sequence[dict[str, Any]]


class Batcher:
    def __init__(self, predict: Callable[[Rows], np.ndarray[Any, Any]], pool: Executor,
                 max_rows: int = 2048, counters: dict[str, int] | None = None) -> None:
        self._predict = predict
        self._pool = pool
        self._max_rows = max_rows
        self._pending: list[tuple[Rows, asyncio.Future[np.ndarray[Any, Any]]]] = []
        self._running = False
        self.counters = counters if counters is not None else {}

    async def predict(self, rows: Rows) -> np.ndarray[Any, Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray[Any, Any]] = loop.create_future()
        self._pending.append((rows, future))
        if not self._running:
            self._running = True
            loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch: list[tuple[Rows, asyncio.Future[np.ndarray[Any, Any]]]] = []
                count = 0
                while self._pending and (not batch or count + len(self._pending[0][0])
                                         <= self._max_rows):
                    item = self._pending.pop(0)
                    batch.append(item)
                    count += len(item[0])
                records = [row for rows, _ in batch for row in rows]
                try:
                    scores = await loop.run_in_executor(self._pool, self._run, records)
                except Exception as exc:
                    if len(batch) == 1:
                        _settle(batch[0][1], exc)
                    else:
                        await self._one_by_one(batch)
                    continue
                start = 0
                for rows, future in batch:
                    _settle(future, scores[start:start + len(rows)])
                    start += len(rows)
        finally:
            self._running = False

    async def _one_by_one(self, batch: list[tuple[Rows, asyncio.Future[np.ndarray[Any, Any]]]]
                          ) -> None:
        """Score each request of a failed batch on its own: one request's rows fail only it."""
        self.counters["failed_batches"] = self.counters.get("failed_batches", 0) + 1
        loop = asyncio.get_running_loop()
        for rows, future in batch:
            if future.done():  # its client went away
                continue
            try:
                _settle(future, await loop.run_in_executor(self._pool, self._run, list(rows)))
            except Exception as exc:
                _settle(future, exc)

    def _run(self, records: list[dict[str, Any]]) -> np.ndarray[Any, Any]:
        scores = self._predict(records)
        self.counters["predict_calls"] = self.counters.get("predict_calls", 0) + 1
        self.counters["predicted_rows"] = self.counters.get("predicted_rows", 0) + len(records)
        if len(scores) != len(records):
            raise ValueError(f"predict returned {len(scores)} scores for {len(records)} rows")
        return scores


def _settle(future: asyncio.Future[np.ndarray[Any, Any]],
            outcome: np.ndarray[Any, Any] | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


_controller: Any = None
_controller_modules = 0


def single_threaded(predict: Callable[[Rows], np.ndarray[Any, Any]]
                    ) -> Callable[[Rows], np.ndarray[Any, Any]]:
    """Run ``predict`` with OpenMP/BLAS limited to one thread.

    Starting a parallel region for a batch of a few rows costs more than the work; serving gets
    its concurrency from batching and two predict threads. The limit is applied around each
    call, not once per process, because it is per library and training workers must keep their
    threads.
    """
    import sys

    from threadpoolctl import ThreadpoolController

    def run(rows: Rows) -> np.ndarray[Any, Any]:
        global _controller, _controller_modules
        if _controller is None or len(sys.modules) != _controller_modules:
            _controller = ThreadpoolController()  # rescan: a model may have loaded a library
            _controller_modules = len(sys.modules)
        with _controller.limit(limits=1):
            return predict(rows)

    return run


def last_column(scores: Any) -> np.ndarray[Any, Any]:
    """One score per row: the positive class of a probability matrix, else the scores."""
    arr = np.asarray(scores, dtype=float)
    column: np.ndarray[Any, Any] = arr.reshape(len(arr), -1)[:, -1]
    return column
