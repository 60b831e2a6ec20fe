"""Take-over time: two servers on one PostgreSQL, one killed with ``kill -9``.

Each round starts two real ``modelyard server`` processes (2 slots each, one artefact store)
on a fresh PostgreSQL database. The server to kill runs two long jobs (its slots full); then
three quick jobs are submitted to it and it is killed at once, so they are still queued. The
survivor is idle. Printed beside the lease setting, from the jobs' own transition times:

- (a) queued: from the kill to each queued job running on the survivor (no lease to wait for:
  queued jobs are nobody's, and the survivor claims them at its next look, within a second; a
  negative figure is a job it claimed in the moment between the submission and the kill);
- (b) running: from the kill to the dead server's running jobs failed by the survivor, which
  takes it over once its lease has run out (at most a lease plus a third of one).

    python benchmarks/takeover.py                        # leases 3 s and 15 s, 2 rounds each
    python benchmarks/takeover.py --leases 15 --rounds 3 --pg postgresql+psycopg://...

The PostgreSQL server comes from ``--pg`` or ``MODELYARD_TEST_POSTGRES_URL`` (an admin URL:
each round creates its own database there).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _server import launch

from modelyard.client import Client
from modelyard.synthetic import example_request, write_payments

WORKFLOW = '''
import time
from modelyard import Workflow
from sklearn.dummy import DummyClassifier


class Sleeps(Workflow):
    def train(self, train_df, holdout_df):
        time.sleep(float(self.custom_params.get("seconds", 0)))
        return DummyClassifier().fit(train_df[self.features], train_df[self.label])
'''


def fresh_database(admin: str) -> str:
    import psycopg

    name = f"modelyard_takeover_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin.rsplit("/", 1)[0] + f"/{name}"


def start(home: Path, db: str, lease: float, shared: Path) -> tuple[subprocess.Popen[bytes], str]:
    return launch(home, "--db", db, "--artifacts", str(shared / "artifacts"), "--data-root",
                  str(shared / "data"), "--workflows", str(shared / "sleepy.py"),
                  "--concurrency", "2", "--lease-seconds", str(lease), "--no-scheduler",
                  "--log-level", "warning", new_session=True)


def at(client: Client, job: str, state: str) -> dt.datetime:
    """When ``job`` moved to ``state`` (waits for it, 120 s at most)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        moves = client.status(job)["transitions"]
        found = [m["created_at"] for m in moves if m["job_state"] == state]
        if found:
            return dt.datetime.fromisoformat(found[0].replace("Z", "+00:00"))
        time.sleep(0.05)
    raise RuntimeError(f"job {job} did not become {state}")


def one_round(admin: str, lease: float, shared: Path) -> tuple[list[float], list[float]]:
    """The server to kill takes its long jobs before the survivor starts (so they are its own);
    the quick jobs go to it once the survivor runs, and it is killed at once."""
    db = fresh_database(admin)
    tag = uuid.uuid4().hex[:6]
    request: dict[str, Any] = example_request("tiny.parquet")
    request["train"] = {**request["train"], "workflow_name": "Sleeps"}
    long = dict(request, train={**request["train"], "custom_params": {"seconds": 600}})
    doomed_proc, doomed_url = start(shared / f"a-{tag}", db, lease, shared)
    survivor_proc = None
    try:
        with Client(doomed_url) as doomed:
            running = [doomed.train(long) for _ in range(2)]
            for job in running:
                at(doomed, job, "running")
            survivor_proc, survivor_url = start(shared / f"b-{tag}", db, lease, shared)
            queued = [doomed.train(request) for _ in range(3)]
            os.kill(doomed_proc.pid, signal.SIGKILL)
            killed = dt.datetime.now(dt.UTC)
        with Client(survivor_url) as survivor:
            claims = [(at(survivor, j, "running") - killed).total_seconds() for j in queued]
            failures = [(at(survivor, j, "failed") - killed).total_seconds() for j in running]
    finally:
        for proc in (doomed_proc, survivor_proc):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    return claims, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leases", type=float, nargs="+", default=[3.0, 15.0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--pg", default=os.environ.get("MODELYARD_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    if not args.pg:
        sys.exit("give --pg postgresql+psycopg://user@host:port/postgres (or set "
                 "MODELYARD_TEST_POSTGRES_URL): several servers need PostgreSQL")
    with tempfile.TemporaryDirectory() as tmp:
        shared = Path(tmp)
        (shared / "data").mkdir()
        write_payments(shared / "data" / "tiny.parquet", rows=2_000, merchants=20, seed=1)
        (shared / "sleepy.py").write_text(WORKFLOW)
        print(f"{'lease s':>8} {'round':>5}  (a) queued -> running on survivor, s   "
              "(b) running -> failed by lease, s")
        for lease in args.leases:
            for n in range(args.rounds):
                claims, failures = one_round(args.pg, lease, shared)
                print(f"{lease:8g} {n + 1:5d}  "
                      f"{', '.join(f'{c:.2f}' for c in claims):<36} "
                      f"{', '.join(f'{f:.2f}' for f in failures)}", flush=True)
                print(f"{'':14}median (a) {statistics.median(claims):.2f} s, "
                      f"(b) {statistics.median(failures):.2f} s "
                      f"(lease + a third: {lease * 4 / 3:.2f} s)", flush=True)
    print(f"load average: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
