"""Online experiments through the real serving path: a bandit's regret, how soon an A/B
scorecard detects a 10% lift, and what assignment and logging add to a request.

One ``modelyard server`` (its controller looking every ``--interval`` seconds, so the
allocation loop runs faster than real time) serves small models trained here. Every request
is an HTTP predict with a unit id; every reward is simulated from the arm that answered (known
rates) and posted back through ``POST /outcomes``, in rounds of ``--round`` requests.

1. Regret: a bandit over three arms with reward rates ``RATES`` for ``--requests`` requests;
   its pseudo-regret (the best rate minus the served arm's, summed) against a uniform A/B
   split's expected regret and the oracle's (0). Target: <= 30% of uniform A/B's.
2. Detection: an A/B split 50/50 between arms whose rates differ by a 10% lift
   (``AB_RATES``); the samples (outcomes) the scorecard needs before its sequential test
   (valid however often it is read) decides at 95% and the controller concludes with the
   treatment as the winner.
3. Added latency: p50 of single-row predicts of a model with a running A/B experiment, against
   an identical model without one, interleaved request by request on one connection.
   Target: <= 0.2 ms.

Run::

    python benchmarks/experiments.py            # 20,000 requests (several minutes on 2 cores)
    python benchmarks/experiments.py --quick    # 3,000 requests, a smoke check

A benchmark reports; it does not assert. It prints PASS/MISS against each target.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _server import launch

from modelyard.client import Client
from modelyard.synthetic import example_request, write_payments

RATES = {"a": 0.05, "b": 0.07, "c": 0.10}
AB_RATES = {"control": 0.30, "lift": 0.33}
REGRET_TARGET = 0.30
LATENCY_TARGET_MS = 0.2
ROW = {"charge_type": "card", "charge_amount": 12.5, "charge_country": "US",
       "card_age_days": 40, "hour_of_day": 13}


def start_server(home: Path, interval: float) -> tuple[subprocess.Popen[bytes], str]:
    (home / "data").mkdir(parents=True)
    write_payments(home / "data" / "payments.parquet", rows=3_000, merchants=20)
    return launch(home, "--data-root", str(home / "data"), "--concurrency", "2",
                  "--log-level", "warning", "--experiment-interval", str(interval))


def train(url: str, name: str, versions: int) -> None:
    """``versions`` small versions of ``name`` (version 1 in production)."""
    request = example_request("payments.parquet")
    request["metadata"] = {**request["metadata"], "model_name": name}  # type: ignore[dict-item]
    with Client(url, timeout=60) as client:
        jobs = []
        for i in range(versions):
            request["train"] = {**request["train"], "custom_params": {  # type: ignore[dict-item]
                "max_iter": 5, "learning_rate": 0.1 + i * 1e-6}}
            jobs.append(client.train(request))
        for job in jobs:
            client.wait(job, 600)
        client.approve(name, 1, user="benchmark", comment="baseline")


def create(url: str, spec: dict[str, Any]) -> str:
    answer = httpx.post(f"{url}/experiments", json=spec, timeout=30)
    answer.raise_for_status()
    experiment_id: str = answer.json()["id"]
    return experiment_id


async def serve_round(client: httpx.AsyncClient, name: str, units: list[str],
                      rates: dict[str, float], rng: random.Random) -> list[str]:
    """Predict for each unit (8 at a time), post each answer's simulated outcome; the arms
    that served, in order."""
    gate = asyncio.Semaphore(8)

    async def one(unit: str) -> dict[str, Any]:
        async with gate:
            answer = await client.post(f"/predict/{name}", json={"rows": [ROW], "unit": unit})
            answer.raise_for_status()
            body: dict[str, Any] = answer.json()
            return body

    answers = await asyncio.gather(*(one(u) for u in units))
    # An answer with no arm came after the experiment ended: production's, no outcome.
    outcomes = [{"request_id": a["request_id"], "reward": float(rng.random() < rates[a["arm"]])}
                for a in answers if a["arm"] is not None]
    if outcomes:
        (await client.post("/outcomes", json={"outcomes": outcomes})).raise_for_status()
    return [a["arm"] for a in answers]


async def regret(url: str, requests: int, size: int) -> dict[str, float]:
    experiment = create(url, {
        "model_name": "bandit", "type": "bandit", "min_share": 0.01,
        "hypothesis": "one of the new versions converts more",
        "arms": [{"name": arm, "version": v + 1} for v, arm in enumerate(RATES)],
        "stopping": {"prob_best": None}})
    rng = random.Random(17)
    served: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while len(served) < requests:
            units = [f"customer-{len(served) + i}" for i in range(min(size, requests
                                                                       - len(served)))]
            served += await serve_round(client, "bandit", units, RATES, rng)
    httpx.post(f"{url}/experiments/{experiment}/stop",
               json={"actor": "benchmark", "reason": "benchmark over"}, timeout=30)
    best = max(RATES.values())
    return {"bandit": sum(best - RATES[a] for a in served),
            "uniform": requests * sum(best - r for r in RATES.values()) / len(RATES),
            "best_share": served.count(max(RATES, key=lambda k: RATES[k])) / len(served)}


async def detection(url: str, cap: int, size: int) -> tuple[int | None, dict[str, Any]]:
    experiment = create(url, {
        "model_name": "ab", "type": "ab", "hypothesis": "the new version lifts conversion 10%",
        "arms": [{"name": "control", "version": 1}, {"name": "lift", "version": 2}],
        "stopping": {"alpha": 0.05, "min_outcomes": 100}})
    rng = random.Random(5)
    n = 0
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        while n < cap:
            await serve_round(client, "ab", [f"visitor-{n + i}" for i in range(size)],
                              AB_RATES, rng)
            n += size
            card = (await client.get(f"/experiments/{experiment}")).json()
            if card["state"] != "running":
                return n, card
    return None, card


def latency(url: str, requests: int) -> tuple[float, float]:
    """p50 (ms) of ``plain`` (no experiment) and ``split`` (an A/B experiment), interleaved."""
    create(url, {"model_name": "split", "type": "ab",
                 "arms": [{"name": "one", "version": 1}, {"name": "two", "version": 2}],
                 "stopping": {"alpha": None}})
    times: dict[str, list[float]] = {"plain": [], "split": []}
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(requests + 200):
            for name in ("plain", "split"):
                started = time.perf_counter()
                client.post(f"/predict/{name}", json={"rows": [ROW], "unit": f"u{i}"}
                            ).raise_for_status()
                if i >= 200:  # warm-up: loads, caches, connection
                    times[name].append((time.perf_counter() - started) * 1e3)
    return statistics.median(times["plain"]), statistics.median(times["split"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--round", type=int, default=200, help="requests between outcomes")
    parser.add_argument("--interval", type=float, default=0.1, help="controller seconds")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.requests = 3_000
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp) / "home", args.interval)
        try:
            for name, versions in (("bandit", 3), ("ab", 2), ("split", 2), ("plain", 1)):
                train(url, name, versions)
            report(url, args)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def report(url: str, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    r = asyncio.run(regret(url, args.requests, args.round))
    ratio = r["bandit"] / r["uniform"]
    print(f"regret over {args.requests:,} requests, rates {RATES}: bandit {r['bandit']:.1f}, "
          f"uniform A/B {r['uniform']:.1f} (expected), oracle 0; bandit/uniform {ratio:.2f} "
          f"(target <= {REGRET_TARGET:.2f}): {'PASS' if ratio <= REGRET_TARGET else 'MISS'}; "
          f"best arm served {r['best_share']:.1%} ({time.perf_counter() - started:.0f} s)")
    n, card = asyncio.run(detection(url, 4 * args.requests, args.round))
    lift = AB_RATES["lift"] / AB_RATES["control"] - 1
    if n is None:
        print(f"A/B, {lift:.0%} lift on {AB_RATES['control']:.0%}: not detected within "
              f"{4 * args.requests:,} samples")
    else:
        arm = next(a for a in card["arms"] if a["name"] == "lift")
        print(f"A/B, {lift:.0%} lift on {AB_RATES['control']:.0%}: detected at 95% after "
              f"{n:,} samples ({card['state']}, winner {card['winner']}; measured lift "
              f"{arm['lift']:+.1%}, interval [{arm['lift_interval'][0]:+.1%}, "
              f"{arm['lift_interval'][1]:+.1%}], sequential p {arm['p_value']:.4f})")
    plain, split = latency(url, 2_000 if not args.quick else 500)
    added = split - plain
    print(f"added latency p50: {added:+.3f} ms (with an experiment {split:.3f} ms, without "
          f"{plain:.3f} ms; target <= {LATENCY_TARGET_MS} ms, ratio "
          f"{added / LATENCY_TARGET_MS:.2f}): {'PASS' if added <= LATENCY_TARGET_MS else 'MISS'}")


if __name__ == "__main__":
    main()
