"""Serving replicas behind HAProxy, for ``benchmarks/serving.py --replicas``.

Two ``modelyard serve`` processes on the benchmark's registry (its SQLite file) and artefact
store, each on a home of its own, behind Debian's ``haproxy`` configured as the README's
"Serving replicas behind a load balancer" shows: health checks on ``/readyz``, requests retried
on the other replica when a connection is refused or closed unanswered. Cells through the
balancer run 16 clients per replica (so 32), the load one server gets in the main cells; then
one cell restarts replica a under that load (SIGTERM, drain, start again) and counts what
failed.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from serving import (
    HEADER,
    MODEL_NAME,
    LoadGen,
    Server,
    Target,
    prime,
    run_cell,
    stats,
    verdict,
)

HAPROXY_CFG = """\
global
    maxconn 512
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
frontend serving
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    timeout check 2s
    default-server inter 500ms fall 2 rise 2
{servers}
"""
DRAIN_S = 2.0  # the README's: the checks' 2 x 500 ms, and a margin


class Balancer(Server):
    """HAProxy in front of the replicas; its CPU is theirs and its own together."""

    replicas: list[Server]

    def cpu_s(self) -> float:
        return super().cpu_s() + sum(r.cpu_s() for r in self.replicas if r.process)


def served(server: Server) -> int:
    """Rows the replica has scored since it started."""
    return int(stats(server)["predicted_rows"])


def replica(home: Path, name: str, env: dict[str, str]) -> Server:
    own = home / f"replica-{name}"
    own.mkdir(parents=True, exist_ok=True)
    from modelyard.server import free_port

    port = free_port()
    return Server(
        "modelyard",  # the name run_cell reads serving stats by
        [sys.executable, "-m", "modelyard", "serve", "--port", str(port), "--home", str(own),
         "--db", f"sqlite:///{home / 'modelyard.db'}", "--artifacts", str(home / "artifacts"),
         "--drain-seconds", str(DRAIN_S), "--log-level", "warning"],
        port, own / "replica.log", health="/readyz", env=env)


def balancer(home: Path, replicas: list[Server]) -> Balancer | None:
    exe = shutil.which("haproxy")
    if exe is None:
        return None
    from modelyard.server import free_port

    port = free_port()
    config = home / "haproxy.cfg"
    config.write_text(HAPROXY_CFG.format(port=port, servers="\n".join(
        f"    server {chr(97 + i)} 127.0.0.1:{r.port} check" for i, r in enumerate(replicas))))
    front = Balancer("balancer", [exe, "-db", "-f", str(config)], port, home / "haproxy.log",
                     health="/readyz")
    front.replicas = replicas
    return front


class Restart:
    """Called every quarter second during a cell: after ``after_s``, SIGTERM the replica, and
    once it has drained and exited, start it again on its port."""

    def __init__(self, target: Server, after_s: float) -> None:
        self.target, self.at = target, time.monotonic() + after_s
        self.stopping: subprocess.Popen[bytes] | None = None
        self.down_s = float("nan")
        self.restarted = False

    def __call__(self) -> None:
        if self.restarted or time.monotonic() < self.at:
            return
        if self.stopping is None:
            self.stopping, self.target.process = self.target.process, None
            if self.stopping is not None:
                self.stopping.send_signal(signal.SIGTERM)
                self.t0 = time.monotonic()
            return
        if self.stopping.poll() is None:
            return
        self.target.start()
        self.down_s = time.monotonic() - self.t0
        self.restarted = True


def run_replicas(home: Path, args: argparse.Namespace, gen: LoadGen, env: dict[str, str],
                 samples: dict[int, list[list[dict[str, Any]]]]) -> list[str]:
    """The balancer's cells, then the restart cell; the report's lines."""
    pair = [replica(home, name, env) for name in "ab"]
    front = balancer(home, pair)
    if front is None:
        return ["replicas: skipped (haproxy is not installed: apt-get install haproxy)"]
    lines = []
    try:
        for r in pair:
            r.start()
        front.start()
        target = Target(front, f"/predict/{MODEL_NAME.replace(' ', '%20')}", "scores")
        prime(target, [samples[1][0], samples[100][0]])
        print(f"\n2 replicas behind HAProxy, 16 clients per replica\n  {HEADER}", flush=True)
        for rows, batch in samples.items():
            before = [served(r) for r in pair]
            got = run_cell(gen, target, "2 replicas", batch, 16 * len(pair), args)
            share = [served(r) - b for r, b in zip(pair, before, strict=True)]
            lines.append(f"2 replicas behind HAProxy, {rows} row{'s' if rows > 1 else ''}, "
                         f"{got.clients} clients: {got.rows_s:.0f} rows/s, p50 "
                         f"{got.p50_ms:.1f} ms, p99 {got.p99_ms:.1f} ms, {got.errors} errors; "
                         f"rows scored by a, b: {share[0]:,}, {share[1]:,}")
        # Long enough for the drain, the shutdown, the start and some traffic after it.
        restart = Restart(pair[0], after_s=args.warmup + 1.0)
        got = run_cell(gen, target, "2 replicas, a restarted", samples[100], 16 * len(pair),
                       args, on_poll=restart, duration=max(args.duration, 25.0))
        failed = got.errors + (0 if not got.note else 1)
        after = served(pair[0]) if restart.restarted else 0
        lines.append(
            f"replica a restarted under load (100 rows, {got.clients} clients, "
            f"{got.rps * max(args.duration, 25.0):,.0f} requests): "
            f"{'restarted' if restart.restarted else 'NOT restarted'} after "
            f"{restart.down_s:.1f} s down (drain {DRAIN_S:g} s + shutdown + start), then scored "
            f"{after:,} rows; {got.errors} failed requests"
            f"{(' (' + got.note + ')') if got.note else ''}, p99 {got.p99_ms:.1f} ms: "
            f"{verdict(restart.restarted and failed == 0)}")
    finally:
        front.stop()
        for r in pair:
            r.stop()
    return lines
