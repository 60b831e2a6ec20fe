"""GPU proof: the same train request with compute_resource GPU and CPU through the real server.

Runs the built-in torch workflow (a tabular MLP) on synthetic payments, submitted over HTTP to
an embedded Modelyard server with the local executor, once with ``compute_resource: GPU`` and once
with ``CPU``, and prints each epoch's time and device as the job log recorded them, and the ratio.

    python benchmarks/gpu_proof.py --rows 1000000 --epochs 5
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path

from modelyard.client import Client
from modelyard.server import EmbeddedServer
from modelyard.settings import Settings
from modelyard.synthetic import example_request, write_payments

EPOCH = re.compile(r"epoch (\d+): loss ([\d.]+), ([\d.]+) s on (\w+)(?: \((.+)\))?")


def run(client: Client, resource: str, args: argparse.Namespace) -> dict[str, object]:
    request = example_request(
        "payments.parquet", workflow_name="modelyard.runtime.torch_workflow:TorchWorkflow",
        custom_params={"epochs": args.epochs, "hidden": [256, 256], "batch_size": 4096,
                       "lr": 0.003})
    request["compute_resource"] = resource
    started = time.perf_counter()
    job_id = client.train(request)
    answer = client.wait(job_id, timeout=3600, raise_on_failure=False)
    wall = time.perf_counter() - started
    log, _ = client.logs(job_id)
    epochs = [m.groups() for m in EPOCH.finditer(log)]
    state = answer["status"]["transition"]
    return {"state": state["job_state"], "reason": state.get("reason", ""), "wall": wall,
            "epochs": epochs, "metrics": (answer.get("result") or {}).get("metrics", {}),
            "steps": {s["name"]: s["duration_s"] for s in answer["status"]["steps"]}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="modelyard-gpu-"))
    write_payments(home / "data" / "payments.parquet", rows=args.rows, merchants=1000)
    settings = Settings.load(home=home, data_roots=[home / "data"], concurrency=1)
    with EmbeddedServer(settings) as server, Client(server.url) as client:
        results = {r: run(client, r, args) for r in ("GPU", "CPU")}
    for resource, r in results.items():
        print(f"\n== compute_resource {resource}: {r['state']} in {r['wall']:.1f} s "
              f"(train step {r['steps'].get('train', 0):.1f} s)")
        if r["state"] != "succeeded":
            print("   ", r["reason"])
        for epoch, loss, seconds, device, name in r["epochs"]:  # type: ignore[misc]
            print(f"   epoch {epoch}: {float(seconds):7.3f} s on {device} {name or ''} "
                  f"(loss {loss})")
        auc = r["metrics"].get("roc_auc")  # type: ignore[union-attr]
        if auc is not None:
            print(f"   holdout roc_auc {auc:.4f}")
    per_epoch = {k: statistics.median(float(e[2]) for e in v["epochs"][1:] or v["epochs"])
                 for k, v in results.items() if v["epochs"]}
    if len(per_epoch) == 2:
        gpu, cpu = per_epoch["GPU"], per_epoch["CPU"]
        print(f"\nmedian time per epoch (after the first): GPU {gpu:.3f} s, CPU {cpu:.3f} s, "
              f"GPU speed-up {cpu / gpu:.1f}x")


if __name__ == "__main__":
    main()
