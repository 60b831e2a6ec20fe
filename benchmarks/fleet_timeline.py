"""A fleet's timeline: when each job was queued, claimed, ran its steps and ended, per worker.

Runs the benchmark's fleet of ``--tenants`` merchants (every one with a model) on an embedded
server ``--rounds`` times and prints the last round's timeline, in milliseconds from the
submit: where a small fleet's fixed costs go (the plan before any tenant starts, the global
model's scoring, the gaps between one tenant's end and the next one's start on a worker). Each
round prints when its first tenant was claimed and first ran a step beside the moment the plan
had written every partition (its ``partition`` step's end).

    python benchmarks/fleet_timeline.py --tenants 25
    python benchmarks/fleet_timeline.py --tenants 1000 --min-rows 500 --rounds 2 \
        --concurrency 4 --no-timeline
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from fleet import fleet_data, request

from modelyard.client import Client
from modelyard.server import EmbeddedServer
from modelyard.settings import Settings
from modelyard.synthetic import example_request


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def first_tenant(client: Client, parent_id: str) -> str:
    """When the fleet's first tenant was claimed and ran its first step, and when the plan had
    written every partition, in milliseconds from the submit."""
    parent = client.status(parent_id)
    zero = _at(parent["created_at"])
    partition = next(s for s in parent["steps"] if s["name"] == "partition")
    plan_end = _at(partition["started_at"]) + dt.timedelta(seconds=partition["duration_s"] or 0)
    tenants = [client.status(c["job_id"]) for c in client.jobs(parent_id=parent_id,
                                                                limit=1000)["jobs"]
               if c["kind"] == "tenant"]
    claimed = min(_at(t["started_at"]) for t in tenants)
    stepped = min(_at(t["steps"][0]["started_at"]) for t in tenants if t["steps"])

    def ms(at: dt.datetime) -> str:
        return f"{(at - zero).total_seconds() * 1000:.0f} ms"

    return (f"first tenant claimed at {ms(claimed)}, its first step at {ms(stepped)}; "
            f"plan written at {ms(plan_end)}")


def timeline(client: Client, parent_id: str) -> None:
    parent = client.status(parent_id)
    zero = _at(parent["created_at"])

    def ms(text: str | None) -> str:
        return f"{(_at(text) - zero).total_seconds() * 1000:7.0f}" if text else "      -"

    children = client.jobs(parent_id=parent_id, limit=1000)["jobs"]
    statuses = [parent] + [client.status(c["job_id"]) for c in children]
    print(f"{'job':<10} {'kind':<7} {'tenant':<8} {'pid':>7} {'queued':>7} {'claimed':>7} "
          f"{'ended':>7}  steps (start+duration ms)")
    for s in sorted(statuses, key=lambda s: (s["started_at"] or "", s["job_id"])):
        steps = " ".join(
            f"{st['name']}@{ms(st['started_at']).strip()}+{(st['duration_s'] or 0) * 1000:.0f}"
            for st in s["steps"])
        print(f"{s['job_id'][:10]} {s['kind']:<7} {(s['tenant'] or '')[:8]:<8} "
              f"{s['worker_pid'] or 0:>7} {ms(s['created_at'])} {ms(s['started_at'])} "
              f"{ms(s['finished_at'])}  {steps}")
    by_pid: dict[int, list[dict[str, Any]]] = {}
    for s in statuses[1:]:
        by_pid.setdefault(s["worker_pid"] or 0, []).append(s)
    for pid, jobs in sorted(by_pid.items()):
        jobs.sort(key=lambda s: s["steps"][0]["started_at"] if s["steps"] else "")
        gaps = []
        for a, b in zip(jobs, jobs[1:], strict=False):
            if a["steps"] and b["steps"]:
                last = a["steps"][-1]
                end = _at(last["started_at"]) + dt.timedelta(seconds=last["duration_s"] or 0)
                gaps.append((_at(b["steps"][0]["started_at"]) - end).total_seconds() * 1000)
        print(f"worker {pid}: {len(jobs)} jobs; gaps between one job's last step and the next "
              f"one's first (ms): {[round(g) for g in gaps]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tenants", type=int, default=25)
    parser.add_argument("--min-rows", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 1,
                        help="worker slots (default: the machine's cores)")
    parser.add_argument("--no-timeline", dest="timeline", action="store_false",
                        help="print each round's summary only, not the last one's every job")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="modelyard-timeline-"))
    fleet_data(home, 1_000 * args.tenants, args.tenants, args.min_rows)
    settings = Settings.load(home=home, data_roots=[home / "data"],
                             concurrency=args.concurrency)
    with EmbeddedServer(settings) as server, Client(server.url) as client:
        client.wait(client.train(example_request("payments.parquet")), timeout=600)
        for _ in range(args.rounds):
            started = time.perf_counter()
            job_id = client.train(request(args.min_rows))
            client.wait(job_id, timeout=600, raise_on_failure=False)
            elapsed = time.perf_counter() - started
            print(f"fleet {job_id}: {elapsed:.2f} s submit to done; "
                  f"{first_tenant(client, job_id)}", flush=True)
        if args.timeline:
            timeline(client, job_id)


if __name__ == "__main__":
    main()
