"""A real ``modelyard server`` in a process of its own, for the benchmarks that need one beside
their own process (so the client does not share the server's interpreter)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from modelyard.server import free_port


def launch(home: Path, *args: str, new_session: bool = False, src: str | None = None
           ) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``modelyard server --home HOME ARGS`` on a free port, its output in
    ``HOME/server.log`` (the build in ``src`` when given, another checkout's ``src`` folder);
    return the process and its URL once ``/healthz`` answers."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with open(home / "server.log", "ab") as log:  # the child keeps its own copy
        proc = subprocess.Popen(
            [sys.executable, "-m", "modelyard", "server", "--port", str(port), "--home",
             str(home), *args], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=new_session,
            env={**os.environ, "PYTHONPATH": src} if src else None)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not start: {(home / 'server.log').read_text()[-2000:]}")
