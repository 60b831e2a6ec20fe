"""How fast are the web UI's pages? Server-side render time of the jobs page with 10,000 jobs and
of a fleet page with 1,000 tenants, each beside the JSON route of the same data, and a job page's
first paint and first drawn chart in headless Chromium.

* Jobs page: a fresh home whose job store holds ``--jobs`` jobs. Two are real (a binary model
  trained through the server, and a job failed on a corrupt file); the rest are copies of them
  written through the job store's own functions (insert, claim, succeed or fail, steps: the
  statements the dispatcher runs), over 100 models, 7 owners and 5 projects, each with its own
  metrics. ``GET /ui/jobs`` against ``GET /jobs?limit=50``, the JSON of the same page; then
  both filtered by state (``?state=succeeded``).
* Fleet page: a real fleet on ``--merchants`` merchants (every one is a tenant of the page:
  those with ``--min-rows`` training rows get a decision tree of their own, the rest are
  skipped), ``GET /ui/fleets/{id}`` against ``GET /jobs/{id}/fleet``.
* Job page: Debian's Chromium (headless, a fresh context per load, so nothing is cached) loads
  ``/ui/jobs/{id}`` of the real binary job; first contentful paint, and the moment the first
  chart is drawn (``.chart[data-drawn="1"]`` with its canvas, seen by a MutationObserver),
  both from navigation start, beside the same browser fetching the job's JSON result.

Every figure is the median (and p95) of ``--requests`` requests after one unmeasured request,
or of ``--loads`` page loads. The server is a process of its own (``python -m modelyard
server``, auth off), so this process's client does not share its interpreter.

Targets (issue 16): <= 300 ms for each page's HTML, <= 1 s to a drawn chart.

    python benchmarks/ui.py
    python benchmarks/ui.py --jobs 2000 --merchants 300    # quicker

A benchmark reports; it does not assert. It prints PASS/MISS against each target.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from fleet import MODELS, PARAMS, fleet_data
from fleet import request as fleet_request

from modelyard.client import Client
from modelyard.jobs import store
from modelyard.jobs.states import JobState
from modelyard.request.loading import parse_request
from modelyard.server import free_port
from modelyard.sql import make_engine, session_factory
from modelyard.synthetic import example_request, write_payments
from serving import Server

HTML_TARGET_S = 0.300
CHART_TARGET_S = 1.0
PARTS = ["jobs", "fleet", "chart"]
OWNERS = ["risk-ml", "payments-ml", "growth", "platform", "fraud-ops", "kyc", "search"]
PROJECTS = ["chargebacks", "onboarding", "ranking", "alerts", "pricing"]
# The first chart drawn, timed from navigation start inside the page (no round trip to here).
WATCH_CHARTS = """
new MutationObserver((changes, observer) => {
  if (document.querySelector('.chart[data-drawn="1"] canvas')) {
    window.__chartDrawnAt = performance.now();
    observer.disconnect();
  }
}).observe(document, {subtree: true, childList: true, attributes: true,
                      attributeFilter: ['data-drawn']});
"""


def start(home: Path, concurrency: int = 2) -> Server:
    port = free_port()
    return Server("modelyard", [
        sys.executable, "-m", "modelyard", "server", "--port", str(port), "--home", str(home),
        "--db", f"sqlite:///{home / 'modelyard.db'}", "--data-root", str(home / "data"),
        "--concurrency", str(concurrency)], port, home / "server.log").start()


def real_jobs(client: Client, home: Path) -> tuple[str, str]:
    """A binary model trained for real, and a job failed on a file that is not parquet."""
    write_payments(home / "data" / "payments.parquet", rows=20_000, merchants=200)
    (home / "data" / "corrupt.parquet").write_text("charge_id,amount\n1,2\n")
    request = example_request("payments.parquet", custom_params={"max_iter": 30})
    good = client.train(request)
    request["data"]["features"]["path"] = "corrupt.parquet"  # type: ignore[index]
    bad = client.train(request)
    client.wait(good, timeout=600)
    client.wait(bad, timeout=600, raise_on_failure=False)
    return good, bad


def _copies(template: dict[str, Any], model: int) -> dict[str, Any]:
    request = copy.deepcopy(template)
    request["metadata"] |= {"model_name": f"model-{model:03d}", "owner": OWNERS[model % 7],
                            "project": PROJECTS[model % 5]}
    return request


def seed_jobs(db_url: str, home: Path, good: str, bad: str, count: int) -> None:
    """``count`` more jobs, copies of ``good`` (85%, with metrics of their own), ``bad`` (10%)
    and cancelled ones, written as the dispatcher writes them, 100 models of ``count / 100``."""
    rng = random.Random(0)
    engine = make_engine(db_url)
    sessions = session_factory(engine)
    with sessions() as session:
        done, failed = store.read_job(session, good), store.read_job(session, bad)
        steps = store.steps_of(session, good)
        reason = store.transitions_of(session, bad)[-1].reason
        result, info = dict(done.result or {}), failed.exception_info
    for model in range(100):
        per_model = count // 100 + (model < count % 100)
        request = _copies(done.request, model)
        with sessions() as session:
            ids = store.insert_jobs(session, parse_request(request),
                                    [store.NewJob(request, "train")] * per_model,
                                    executor="local", logs_dir=home / "logs")
            store.move_jobs(session, ids, JobState.running, "claimed by a worker")
            fates = [rng.random() for _ in ids]
            wins = {j: {"result": result | {"metrics": result["metrics"] | {
                        "roc_auc": round(rng.uniform(0.6, 0.95), 4)}},
                        "model_id": done.model_id, "git_commit": None}
                    for j, fate in zip(ids, fates, strict=True) if fate < 0.85}
            store.finish_many(session, wins, "succeeded")
            lost = [j for j, fate in zip(ids, fates, strict=True) if 0.85 <= fate < 0.95]
            store.move_jobs(session, lost, JobState.failed, reason, exception_info=info)
            store.move_jobs(session, [j for j in ids if j not in wins and j not in lost],
                            JobState.cancelled, "cancelled by its owner")
            store.record_steps(session, [
                {"job_id": j, "name": s.name, "started_at": s.started_at,
                 "duration_s": s.duration_s, "info": s.info} for j in wins for s in steps], {})
            session.commit()
    engine.dispose()


def timed(http: httpx.Client, path: str, requests: int) -> list[float] | str:
    """Seconds per GET of ``path`` (one unmeasured first), or why it could not be timed."""
    first = http.get(path)
    if first.status_code != 200:
        return f"{path} answered {first.status_code}: {first.text[:200]!r}"
    out = []
    for _ in range(requests):
        started = time.perf_counter()
        answer = http.get(path)
        out.append(time.perf_counter() - started)
        answer.raise_for_status()
    return out


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18] if len(values) > 1 else values[0]


def report(name: str, page: list[float] | str, bare: list[float] | str, size: str) -> None:
    if isinstance(bare, str):
        print(f"{name}: the JSON baseline failed: {bare}")
        return
    base = statistics.median(bare)
    print(f"  JSON baseline: median {base * 1000:.1f} ms, p95 {p95(bare) * 1000:.1f} ms")
    if isinstance(page, str):
        print(f"{name} ({size}): not timed: {page}")
        return
    median = statistics.median(page)
    verdict = "PASS" if median <= HTML_TARGET_S else "MISS"
    print(f"{name} ({size}): HTML median {median * 1000:.1f} ms, p95 {p95(page) * 1000:.1f} ms "
          f"(target <= {HTML_TARGET_S * 1000:.0f} ms: {verdict}); {median / base:.2f}x the JSON")


def chart_loads(url: str, json_path: str, loads: int) -> tuple[list[float], list[float],
                                                                  list[float]] | str:
    """(first contentful paint, first drawn chart, JSON fetch) in seconds, per load."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        return "no `chromium` on PATH (install Debian's chromium)"
    paints, charts, fetches = [], [], []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium, headless=True,
                                         args=["--no-sandbox", "--disable-gpu"])
        for _ in range(loads + 1):  # the first warms the server and the browser
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.add_init_script(WATCH_CHARTS)
            page = context.new_page()
            answer = page.goto(url)
            if answer is None or answer.status != 200:
                browser.close()
                return f"{url} answered {answer.status if answer else 'nothing'}"
            drawn = page.wait_for_function("() => window.__chartDrawnAt", timeout=30_000)
            paint = page.evaluate("() => performance.getEntriesByName("
                                  "'first-contentful-paint')[0].startTime")
            fetched = page.evaluate("""async (path) => {
                const started = performance.now();
                await (await fetch(path)).json();
                return performance.now() - started; }""", json_path)
            paints.append(paint / 1000)
            charts.append(drawn.json_value() / 1000)
            fetches.append(fetched / 1000)
            context.close()
        browser.close()
    return paints[1:], charts[1:], fetches[1:]


def fleet_run(client: Client, home: Path, merchants: int, min_rows: int) -> tuple[str, int]:
    """A real fleet; its job id and how many tenants it lists."""
    fleet_data(home / "fleet", rows=merchants * 200, merchants=merchants, min_rows=min_rows)
    shutil.move(home / "fleet" / "data" / "payments.parquet", home / "data" / "fleet.parquet")
    PARAMS.clear()
    PARAMS.update(MODELS["tree"])
    request = fleet_request(min_rows)
    request["data"]["features"]["path"] = "fleet.parquet"
    request["metadata"]["model_name"] = "fleet-ui"
    job_id = client.train(request)
    client.wait(job_id, timeout=3600, raise_on_failure=False)
    return job_id, len(client.fleet(job_id)["tenants"])


def jobs_page(client: Client, http: httpx.Client, home: Path, good: str, bad: str,
              args: argparse.Namespace) -> None:
    started = time.perf_counter()
    seed_jobs(f"sqlite:///{home / 'modelyard.db'}", home, good, bad, args.jobs - 2)
    total = client.jobs(limit=1)["total"]
    print(f"jobs: {total:,} in the store ({time.perf_counter() - started:.1f} s to write "
          f"{args.jobs - 2:,} through the store functions)")
    report("jobs page /ui/jobs", timed(http, "/ui/jobs", args.requests),
           timed(http, "/jobs?limit=50", args.requests), f"{total:,} jobs")
    report("jobs page filtered /ui/jobs?state=succeeded",
           timed(http, "/ui/jobs?state=succeeded", args.requests),
           timed(http, "/jobs?limit=50&state=succeeded", args.requests), f"{total:,} jobs")


def fleet_page(client: Client, http: httpx.Client, home: Path, args: argparse.Namespace
               ) -> None:
    fleet, tenants = fleet_run(client, home, args.merchants, args.min_rows)
    print(f"fleet: {tenants:,} tenants ({client.fleet(fleet)['counts']})")
    report(f"fleet page /ui/fleets/{fleet}", timed(http, f"/ui/fleets/{fleet}", args.requests),
           timed(http, f"/jobs/{fleet}/fleet", args.requests), f"{tenants:,} tenants")


def job_page(url: str, good: str, loads: int) -> None:
    timings = chart_loads(f"{url}/ui/jobs/{good}", f"/jobs/{good}/result", loads)
    if isinstance(timings, str):
        print(f"job page /ui/jobs/{good}: not timed: {timings}")
        return
    paint, chart, fetch = (statistics.median(x) for x in timings)
    verdict = "PASS" if chart <= CHART_TARGET_S else "MISS"
    print(f"job page /ui/jobs/{good} in headless Chromium, median of {loads} cold loads: "
          f"first contentful paint {paint * 1000:.0f} ms, first chart drawn "
          f"{chart * 1000:.0f} ms (target <= {CHART_TARGET_S * 1000:.0f} ms: {verdict}); "
          f"the job's JSON result alone: {fetch * 1000:.0f} ms ({chart / fetch:.1f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--merchants", type=int, default=1_000)
    parser.add_argument("--min-rows", type=int, default=100,
                        help="training rows a merchant needs for a model of its own")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--only", nargs="+", choices=PARTS, default=PARTS,
                        help="the pages to time (default: all)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start "
          "(a shared machine shows here)")
    home = Path(tempfile.mkdtemp(prefix="modelyard-ui-"))
    (home / "data").mkdir()
    server = start(home)
    try:
        with Client(server.url, timeout=60) as client, \
                httpx.Client(base_url=server.url, timeout=60) as http:
            good, bad = real_jobs(client, home)
            if "jobs" in args.only:
                jobs_page(client, http, home, good, bad, args)
            if "fleet" in args.only:
                fleet_page(client, http, home, args)
        if "chart" in args.only:
            job_page(server.url, good, args.loads)
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
