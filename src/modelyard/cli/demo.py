"""``modelyard demo``: synthetic payments, the embedded server, a real train request, the result."""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from rich.console import Console

from modelyard.cli.outcome import print_result
from modelyard.cli.progress import follow
from modelyard.client import Client
from modelyard.server import EmbeddedServer
from modelyard.settings import Settings
from modelyard.synthetic import example_request, write_payments


def run_demo(home: Path, *, rows: int, merchants: int, console: Console) -> bool:
    """Run the demo end to end; True if the job succeeded."""
    home = home.resolve()
    data = home / "data" / "payments.parquet"
    if not data.exists():
        t0 = time.perf_counter()
        write_payments(data, rows=rows, merchants=merchants)
        console.print(f"generated {rows:,} synthetic charges from {merchants:,} merchants in "
                      f"{time.perf_counter() - t0:.1f}s: {data}")
    else:
        console.print(f"using existing synthetic data {data}")
    request = example_request("data/payments.parquet")
    request_file = home / "fraud-request.yaml"
    request_file.write_text(yaml.safe_dump(request, sort_keys=False))
    console.print(f"train request: {request_file}")
    settings = Settings.load(home=home, data_roots=[home], concurrency=2)
    with EmbeddedServer(settings) as server, Client(server.url) as client:
        console.print(f"embedded server on {server.url} (OpenAPI docs at {server.url}/docs)")
        job_id = client.train(request)
        console.print(f"submitted job [bold]{job_id}[/]")
        answer = follow(client, job_id, console)
        print_result(answer, console)
    console.print(
        f"\nnext: `modelyard server --home {home}` then "
        f"`modelyard train {request_file} --wait` (run from {home})"
    )
    ok: bool = answer["status"]["transition"]["job_state"] == "succeeded"
    return ok
