"""Two builds of Modelyard on the same fleet, in alternating rounds, beside the bare loop.

On a shared machine single rounds vary by 2x, more than most changes; two builds timed in the
same rounds (the order swapped each round) share the load. ``--base`` is another build's
``src`` folder, e.g. ``git archive REV src | tar -x -C /tmp/base``; this one is the ``src``
on the path. Each build runs as its own ``modelyard server`` process, on its own home and the
same data. Beside the times, each server process's CPU per fleet (the dispatcher, the records,
the registry, HTTP): what the job store's statements cost, which the fits hide in the times.

    python benchmarks/fleet_ab.py --base /tmp/base/src --tenants 25
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from _procs import process_cpu
from _server import launch
from fleet import Bare, fleet_data, fleet_run

from modelyard.client import Client
from modelyard.synthetic import example_request


def start(name: str, src: str, home: Path, data: Path,
          cores: int) -> tuple[subprocess.Popen[bytes], Client]:
    """A ``modelyard server`` of the build in ``src``, warmed up with one job."""
    proc, url = launch(home / name, "--data-root", str(data), "--concurrency", str(cores),
                       src=src)
    client = Client(url)
    client.wait(client.train(example_request("payments.parquet")), timeout=600)  # warm up
    return proc, client


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the other build's src folder")
    parser.add_argument("--this", default=str(Path(__file__).resolve().parents[1] / "src"),
                        help="this build's src folder (default: this checkout's)")
    parser.add_argument("--tenants", type=int, default=25, help="merchants in the fleet")
    parser.add_argument("--min-rows", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    home = Path(tempfile.mkdtemp(prefix="modelyard-fleet-ab-"))
    _, frame, _, tenants = fleet_data(home, 1_000 * args.tenants, args.tenants, args.min_rows)
    bare = Bare(frame, tenants, cores)
    builds = {"base": args.base, "this": args.this}
    servers = {name: start(name, src, home, home / "data", cores)
               for name, src in builds.items()}
    times: dict[str, list[float]] = {"bare": [], "base": [], "this": []}
    cpu: dict[str, list[float]] = {"base": [], "this": []}
    try:
        for i in range(args.rounds):
            times["bare"].append(bare.run())
            order = ["base", "this"] if i % 2 == 0 else ["this", "base"]
            for name in order:
                before = process_cpu(servers[name][0].pid)
                elapsed, _, fleet = fleet_run(servers[name][1], args.min_rows)
                cpu[name].append(process_cpu(servers[name][0].pid) - before)
                times[name].append(elapsed)
            print(f"  round {i + 1}: bare {times['bare'][-1]:.2f} s   base "
                  f"{times['base'][-1]:.2f} s   this {times['this'][-1]:.2f} s   "
                  f"({fleet['counts']['succeeded']} models)")
    finally:
        for proc, client in servers.values():
            client.close()
            proc.terminate()
            proc.wait(timeout=30)
    bare_models = len(bare.parts)
    models = fleet["counts"]["succeeded"]
    for name in ("base", "this"):
        ratios = [(models / m) / (bare_models / b)
                  for m, b in zip(times[name], times["bare"], strict=True)]
        print(f"{name}: median {statistics.median(times[name]):.2f} s, bare/fleet ratio median "
              f"{statistics.median(ratios):.2f} (rounds {', '.join(f'{r:.2f}' for r in ratios)}); "
              f"server CPU per fleet median {statistics.median(cpu[name]):.2f} s")
    paired = [t / b for t, b in zip(times["this"], times["base"], strict=True)]
    print(f"this / base time, median of {args.rounds} paired rounds: "
          f"{statistics.median(paired):.2f}; server CPU: "
          f"{statistics.median(t / b for t, b in zip(cpu['this'], cpu['base'], strict=True)):.2f}")


if __name__ == "__main__":
    main()
