"""Two (or more) builds of Modelyard serving the same model, their cells alternating.

On a shared machine single cells vary by 2x, more than most changes; builds measured in the same
rounds (the order reversed each round) share the load. Each build is a ``modelyard server`` of
its own ``src`` folder (``git worktree add /tmp/base REV --detach`` gives one), on its own copy
of one home that the first build trained: the same versions, the same bytes. The cells are
``benchmarks/serving.py``'s (its load generator, its columns); the medians per build close the
run. ``NAME=SRC@VAR=VALUE`` adds an environment variable to that build's server, e.g.
``MODELYARD_LOG_SAMPLE=0`` to see what the production log costs.

    python benchmarks/serving_ab.py --build base=/tmp/base/src --build new=src --rounds 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
from pathlib import Path

import serving as bench
from modelyard.client import Client
from modelyard.server import free_port
from modelyard.synthetic import write_payments


def parse_build(text: str) -> tuple[str, str, dict[str, str]]:
    """``NAME=SRC[@VAR=VALUE...]`` as (name, src, environment)."""
    name, _, rest = text.partition("=")
    src, *assignments = rest.split("@")
    if not name or not src or any("=" not in a for a in assignments):
        raise argparse.ArgumentTypeError(f"--build {text!r}: write NAME=SRC[@VAR=VALUE...]")
    return name, str(Path(src).resolve()), dict(a.split("=", 1) for a in assignments)


def parse_cell(text: str) -> tuple[int, int, float]:
    """``ROWSxCLIENTS[@RATE]`` as (rows, clients, rate); rate 0 is a closed loop."""
    shape, _, rate = text.partition("@")
    rows, _, clients = shape.partition("x")
    return int(rows), int(clients), float(rate or 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", type=parse_build, action="append", required=True,
                        help="NAME=SRC[@VAR=VALUE...]; the first trains the model")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cells", default="100x16,1x16",
                        help="ROWSxCLIENTS[@RATE],...: a closed loop, or with @RATE an open loop "
                             "at RATE requests a second (serving.py's --open cells)")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--rows", type=int, default=100_000, help="synthetic rows to train on")
    parser.add_argument("--max-iter", type=int, default=200)
    parser.add_argument("--profile", type=Path, default=None,
                        help="py-spy --gil every cell of every build; raw stacks here")
    args = parser.parse_args(argv)
    cells = [parse_cell(c) for c in args.cells.split(",")]
    with tempfile.TemporaryDirectory(prefix="modelyard-serving-ab-") as tmp:
        run(Path(tmp), args, cells)


def run(tmp: Path, args: argparse.Namespace, cells: list[tuple[int, int, float]]) -> None:
    trained = tmp / "trained"
    data = trained / "data" / "payments.parquet"
    write_payments(data, rows=args.rows, merchants=1_000)
    env = bench.thread_env(1)
    first_src = args.build[0][1]
    server = bench.modelyard_server(trained, free_port(), {**env, "PYTHONPATH": first_src})
    server.start()
    try:
        with Client(server.url, timeout=60) as client:
            bench.train_versions(client, args)
    finally:
        server.stop()
    # As serving.py draws them: 512 single rows, else 32 bodies of the cell's rows.
    samples = {rows: bench.sample_rows(data, 512 if rows == 1 else 32, rows,
                                       seed=1 if rows == 1 else 2)
               for rows in sorted({cell[0] for cell in cells})}
    path = f"/predict/{bench.MODEL_NAME.replace(' ', '%20')}"
    targets: dict[str, bench.Target] = {}
    gen = bench.LoadGen()
    results: dict[tuple[str, int, int], list[bench.Result]] = {}
    try:
        for name, src, extra in args.build:
            home = tmp / name
            shutil.copytree(trained, home)
            targets[name] = bench.Target(bench.modelyard_server(
                home, free_port(), {**env, "PYTHONPATH": src, **extra}).start(), path, "scores")
            bench.prime(targets[name], [bodies[0] for bodies in samples.values()])
        print(f"  {bench.HEADER}", flush=True)
        for round_ in range(args.rounds):
            order = list(targets.items())
            if round_ % 2:
                order.reverse()
            for rows, clients, rate in cells:
                for name, target in order:
                    profile = None
                    if args.profile:
                        args.profile.mkdir(parents=True, exist_ok=True)
                        profile = str(args.profile / f"{name}-{rows}x{clients}-{round_ + 1}.txt")
                    key = (f"{name} at {rate:g}/s" if rate else name, rows, clients)
                    results.setdefault(key, []).append(bench.run_cell(
                        gen, target, f"{key[0]} #{round_ + 1}", samples[rows], clients, args,
                        profile=profile, rate=rate))
    finally:
        gen.close()
        for target in targets.values():
            target.server.stop()
    report(results)


def report(results: dict[tuple[str, int, int], list[bench.Result]]) -> None:
    print("\nmedians over the rounds (and each round's p99):")
    for (name, rows, clients), rs in results.items():
        def median(values: list[float]) -> float:
            return statistics.median(values)
        print(f"  {name:<12}{rows:>4} x {clients:<3}{median([r.rps for r in rs]):8.0f} req/s"
              f"{median([r.rows_s for r in rs]):9.0f} rows/s  p50 "
              f"{median([r.p50_ms for r in rs]):6.2f}  p99 {median([r.p99_ms for r in rs]):7.2f}"
              f" ms  {median([r.cpu_ms for r in rs]):5.2f} ms/req  others "
              f"{median([r.other_cpu for r in rs]):4.0%}  p99s "
              f"{', '.join(f'{r.p99_ms:.1f}' for r in rs)}")


if __name__ == "__main__":
    main()
