"""Shadow scoring in a process of its own, beside the serving process.

Shadows triple the model work of every request they score. Done in the serving process they
would compete with requests for its one interpreter; in a process of their own they use another
core, and a shadow model that crashes or leaks cannot take serving down with it.

The serving process only appends each request's rows and production scores to a list (no
copy, no encoding); a sender thread ships the list every :data:`SEND_EVERY_S` as one pickled
message. The scorer process groups the rows by shadow version, scores each group with one
predict call (a group that fails is scored request by request, so one request's rows cost only
it its shadow scores), buffers the scores for the shadow log and acknowledges the message; it
writes its buffer every :data:`FLUSH_EVERY_S` and says how many rows it wrote.

Rows are counted once per shadow version, as the log holds them, and each is in exactly one
count: ``rows_scored`` (written to the log), ``buffered`` (scored, not yet written),
``queued_rows`` (waiting or in flight), ``dropped`` (refused: the queue was full) or ``lost``
(in flight or buffered in a scorer that died). A lost scorer is restarted; meanwhile work
waits in the queue (what does not fit is dropped), and work whose sending failed because the
scorer had just died goes back to the queue: it never reached a scorer.

Protocol (pickled tuples over pipes, see :func:`main`)::

    serving -> scorer:  ("config", settings fields) once, then ("score", seq, [work, ...])
                        and ("flush", seq) (write buffered records to the log, then ack)
    scorer -> serving:  ("done", seq, rows scored into the buffer, rows written, errors);
                        seq 0 for a write of its own (rows written only)
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import pickle
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from modelyard.serving.batching import last_column, single_threaded
from modelyard.serving.loading import VersionRef

log = logging.getLogger("modelyard.serving")
SEND_EVERY_S = 0.2  # how long shadow work gathers before it is shipped as one message
MAX_PENDING_ROWS = 200_000  # rows waiting for the scorer before new work is dropped
FLUSH_EVERY_S = 1.0  # the scorer writes its buffered shadow records this often
SCORER_NICE = 10  # the scorer's CPU priority below serving's


@dataclasses.dataclass(frozen=True)
class ShadowWork:
    """One request's rows, as production scored them, for its shadow versions to score."""

    request_id: str
    at: float  # when production answered (unix seconds)
    production: VersionRef
    shadows: tuple[VersionRef, ...]
    rows: list[dict[str, Any]] | bytes  # the rows, or the JSON request body with "rows"
    scores: list[Any]  # production's, one per row (or per row a list of class probabilities)

    def records(self) -> list[dict[str, Any]]:
        if isinstance(self.rows, bytes):
            rows: list[dict[str, Any]] = json.loads(self.rows)["rows"]
            return rows
        return self.rows


class ShadowScorer:
    """The serving side: queue work, ship it, count what the scorer process did."""

    def __init__(self, home: Path, artifact_root: str, budget_bytes: int,
                 workflow_modules: tuple[str, ...],
                 workflow_packages: tuple[str, ...] = ()) -> None:
        self.config = {"home": str(home), "artifact_root": artifact_root,
                       "budget_bytes": budget_bytes, "workflow_modules": workflow_modules,
                       "workflow_packages": workflow_packages}
        self.rows_scored = 0  # written to the shadow log
        self.buffered = 0  # scored, in the scorer's buffer until its next write
        self.errors = 0
        self.dropped = 0  # refused at submit: the queue was full
        self.lost = 0  # sent to a scorer that died before writing them, or never sent
        self.restarts = 0
        self._pending: list[ShadowWork] = []
        self._pending_rows = 0
        self._in_flight: dict[int, int] = {}  # seq -> shadow rows shipped, until acknowledged
        self._seq = 0
        self._acked = 0  # the last sequence number answered, or lost with its scorer
        self._answered = 0  # the last sequence number a running scorer answered
        self._up = threading.Event()  # a scorer is running and configured
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._to: Connection | None = None
        self._send_lock = threading.Lock()

    # -- serving side ---------------------------------------------------------------------------

    def submit(self, work: ShadowWork) -> None:
        """Queue a request for its shadows (never blocks; drops and counts when backed up)."""
        with self._cond:
            rows = len(work.scores) * len(work.shadows)  # as the log will hold them
            if self._pending_rows + sum(self._in_flight.values()) >= MAX_PENDING_ROWS:
                self.dropped += rows
                return
            self._pending.append(work)
            self._pending_rows += rows

    @property
    def pid(self) -> int | None:
        """The scorer process's pid (None before it started)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def queued_rows(self) -> int:
        with self._cond:
            return self._pending_rows + sum(self._in_flight.values())

    def start(self) -> None:
        self._spawn()
        threading.Thread(target=self._send_loop, name="modelyard-shadow-send",
                         daemon=True).start()

    def drain(self, timeout: float = 60.0) -> bool:
        """Ship what is queued, have the scorer write its log, and wait for it (reports, tests,
        shutdown); across a scorer restart, the new scorer's. Returns whether it finished
        within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._stop.is_set():
            if not self._up.wait(max(0.0, deadline - time.monotonic())):
                return False
            seq = self._ship(flush=True)
            with self._cond:
                while self._acked < seq:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._stop.is_set():
                        return False
                    self._cond.wait(min(left, 0.5))
                if self._answered >= seq:
                    return True
            # Its scorer died before answering: the next one writes what is left.
        return False

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        proc, to = self._proc, self._to
        if to is not None:
            to.close()  # the scorer flushes its log and exits at end of input
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()

    # -- internals ------------------------------------------------------------------------------

    def _spawn(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p or os.getcwd() for p in sys.path)
        read_back, write_back = os.pipe()
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard.serving.shadow", str(write_back)],
            stdin=subprocess.PIPE, pass_fds=(write_back,), env=env)
        os.close(write_back)
        if proc.stdin is None:  # stdin=PIPE always gives one
            raise RuntimeError("the shadow scorer process has no stdin")
        to = Connection(os.dup(proc.stdin.fileno()), readable=False)
        proc.stdin.close()
        to.send(("config", self.config))
        self._proc, self._to = proc, to
        self._up.set()
        threading.Thread(target=self._read_loop, args=(proc, Connection(read_back,
                                                                        writable=False)),
                         name="modelyard-shadow-acks", daemon=True).start()

    def _send_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(SEND_EVERY_S)
            self._wake.clear()
            if self._pending and self._up.is_set():
                self._ship(flush=False)

    def _ship(self, *, flush: bool) -> int:
        """Send the pending work (and a flush request); returns the last sequence number."""
        with self._send_lock:
            messages: list[tuple[Any, ...]] = []
            with self._cond:  # pending becomes in flight at once: queued_rows never dips
                batch, self._pending = self._pending, []
                rows, self._pending_rows = self._pending_rows, 0
                if batch:
                    self._seq += 1
                    self._in_flight[self._seq] = rows
                    messages.append(("score", self._seq, batch))
                if flush:
                    self._seq += 1
                    self._in_flight[self._seq] = 0
                    messages.append(("flush", self._seq))
                seq = self._seq
            try:
                for message in messages:
                    if self._to is None:
                        raise OSError("the shadow scorer has not started")
                    self._to.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
            except (OSError, ValueError):  # the scorer died: nothing of this reached it
                self._up.clear()
                with self._cond:
                    if self._in_flight.pop(messages[0][1], None) is not None and batch:
                        self._pending[:0] = batch  # unless it was already counted lost
                        self._pending_rows += rows
                    for message in messages:
                        self._in_flight.pop(message[1], None)
                        self._acked = max(self._acked, message[1])
                    self._cond.notify_all()
            return seq

    def _read_loop(self, proc: subprocess.Popen[bytes], acks: Connection) -> None:
        try:
            while True:
                _, seq, rows, written, errors = acks.recv()
                with self._cond:
                    self._in_flight.pop(seq, None)
                    self._acked = max(self._acked, seq)
                    self._answered = max(self._answered, seq)
                    self.buffered += rows - written
                    self.rows_scored += written
                    self.errors += errors
                    self._cond.notify_all()
        except (EOFError, OSError):
            pass
        finally:
            acks.close()
        self._up.clear()
        code = proc.wait()
        if self._stop.is_set():
            return
        with self._cond:
            buffered, self.buffered = self.buffered, 0  # scored, never written: gone with it
            self.lost += buffered
            in_flight = sum(self._in_flight.values())
            self._lost(set(self._in_flight))
            self.restarts += 1
        log.error("the shadow scorer exited (code %s); restarting it. %d shadow rows lost "
                  "(%d scored but not written, %d in flight)", code, buffered + in_flight,
                  buffered, in_flight)
        time.sleep(min(5.0, 0.5 * self.restarts))
        if not self._stop.is_set():
            self._spawn()

    def _lost(self, seqs: set[int]) -> None:
        with self._cond:
            for seq in seqs:
                self.lost += self._in_flight.pop(seq, 0)
                self._acked = max(self._acked, seq)
            self._cond.notify_all()


# -- the scorer process -----------------------------------------------------------------------


def score(cache: Any, shadow_log: Any, batch: list[ShadowWork]) -> tuple[int, int]:
    """Score each shadow version's rows with one predict call; log them beside production's.

    Returns (rows scored, shadow versions that failed).
    """
    by_shadow: dict[VersionRef, list[tuple[ShadowWork, list[dict[str, Any]]]]] = {}
    errors = 0
    for work in batch:
        try:
            rows = work.records()
        except (ValueError, KeyError, TypeError):
            errors += 1
            log.exception("shadow work for request %s is unreadable", work.request_id)
            continue
        for ref in work.shadows:
            by_shadow.setdefault(ref, []).append((work, rows))
    scored = 0
    for ref, pairs in by_shadow.items():
        try:
            loaded = cache.get(ref)
        except Exception:
            errors += 1
            log.exception("shadow version %s of %s cannot be loaded", ref.version,
                          ref.model_name)
            continue
        try:
            scored += _score_one(loaded, shadow_log, pairs)
            continue
        except Exception:
            if len(pairs) == 1:
                errors += 1
                log.exception("shadow version %s of %s failed", ref.version, ref.model_name)
                continue
        for pair in pairs:  # one request's rows must not cost the others their shadow scores
            try:
                scored += _score_one(loaded, shadow_log, [pair])
            except Exception:
                errors += 1
                log.exception("shadow version %s of %s failed on request %s", ref.version,
                              ref.model_name, pair[0].request_id)
    return scored, errors


def _score_one(loaded: Any, shadow_log: Any,
               pairs: list[tuple[ShadowWork, list[dict[str, Any]]]]) -> int:
    """Score these requests' rows with one shadow version in one call and buffer them for the
    log; returns the rows."""
    ref = loaded.ref
    works = [w for w, _ in pairs]
    records = [row for _, rows in pairs for row in rows]
    loaded.schema.check(records)  # its own schema: production's may differ
    shadow_scores = last_column(single_threaded(loaded.predict)(records))
    if len(shadow_scores) != len(records):
        raise ValueError(f"predict returned {len(shadow_scores)} scores for {len(records)} rows")
    sizes = [len(rows) for _, rows in pairs]
    which = np.repeat(np.arange(len(works)), sizes)  # each row's request
    shadow_log.append_columns({
        "request_id": pa.array([w.request_id for w in works]).take(which),
        "row": np.concatenate([np.arange(n) for n in sizes]),
        "at": pa.array([int(w.at * 1e6) for w in works], pa.int64()).take(which),
        "model_name": pa.repeat(ref.model_name, len(records)),
        "tenant": pa.repeat(ref.tenant, len(records)),
        "production_version": np.repeat([w.production.version for w in works], sizes),
        "production_score": np.concatenate([last_column(w.scores) for w in works]),
        "shadow_version": np.full(len(records), ref.version, dtype=np.int32),
        "shadow_score": shadow_scores,
    })
    return len(records)


def main(ack_fd: int) -> None:
    from modelyard.artifacts import ArtifactStore
    from modelyard.serving.loading import ModelCache
    from modelyard.serving.shadow_log import ShadowLog

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s modelyard.shadow: %(message)s")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not reach a pipe
    # Best effort, by design: when cores are short, serving gets them first; the scorer catches
    # up in the gaps (its queue is bounded; what overflows is dropped and counted).
    os.nice(SCORER_NICE)
    inbox = Connection(os.dup(0), writable=False)
    acks = Connection(ack_fd, readable=False)
    _, config = inbox.recv()
    cache = ModelCache(ArtifactStore(config["artifact_root"]), config["budget_bytes"],
                       tuple(config["workflow_modules"]), tuple(config["workflow_packages"]))
    shadow_log = ShadowLog(Path(config["home"]))
    reported = 0

    def written() -> int:
        """Rows written to the log since the last ack: only written rows count as scored."""
        nonlocal reported
        new, reported = shadow_log.written - reported, shadow_log.written
        return new

    flushed = time.monotonic()
    try:
        while True:
            if inbox.poll(FLUSH_EVERY_S):
                try:
                    message = inbox.recv()
                except EOFError:
                    break
                if message[0] == "score":
                    rows, errors = score(cache, shadow_log, message[2])
                    acks.send(("done", message[1], rows, written(), errors))
                else:
                    shadow_log.flush()
                    flushed = time.monotonic()
                    acks.send(("done", message[1], 0, written(), 0))
            if time.monotonic() - flushed >= FLUSH_EVERY_S:
                shadow_log.flush()
                flushed = time.monotonic()
                if shadow_log.written != reported:
                    acks.send(("done", 0, 0, written(), 0))
    finally:
        shadow_log.flush()
        if shadow_log.written != reported:
            with contextlib.suppress(OSError):  # serving may have stopped reading
                acks.send(("done", 0, 0, written(), 0))


if __name__ == "__main__":
    main(int(sys.argv[1]))
