"""Run the API server: in the foreground (``modelyard server``) or embedded in a thread (demo).

A server in the foreground stops gracefully on SIGTERM (or Ctrl-C), so that a replica behind a
load balancer restarts without failing a request: ``/readyz`` answers 503 at once while
requests go on being served for ``--drain-seconds`` (a balancer's health check or Kubernetes'
readiness probe takes it out of rotation meanwhile), then uvicorn's graceful shutdown closes
the listener, lets in-flight requests finish (up to :data:`GRACEFUL_S`) and closes idle
keep-alive connections. A second signal skips the drain.
"""

from __future__ import annotations

import socket
import threading
import time
from types import FrameType, TracebackType

import uvicorn
from fastapi import FastAPI

from modelyard.api.app import create_app
from modelyard.errors import ConfigurationError
from modelyard.jobs.lease import refuse_second_server
from modelyard.settings import Settings

GRACEFUL_S = 5  # in-flight requests' time to finish once the listener is closed


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8765,
          log_level: str = "info", *, run_jobs: bool = True) -> None:
    """Run the server until SIGTERM or Ctrl-C, then drain (``run_jobs=False``: a serving
    replica).

    Raises:
        ConfigurationError: a training server on a SQLite file another server runs on.
    """
    if run_jobs:  # said plainly here, rather than as the app's failed start-up
        refuse_second_server(settings)
    app = create_app(settings, run_jobs=run_jobs)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level,
                            timeout_graceful_shutdown=GRACEFUL_S, access_log=False)
    DrainingServer(config, app, settings.drain_seconds).run()


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain before its graceful shutdown (see the module's doc)."""

    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.drain_s = drain_s
        self._drain: tuple[float, int] | None = None  # (until, the signal) once draining
        app.state.draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain is None:
            self.app.state.draining = True  # /readyz answers 503 from now on
            self._drain = (time.monotonic() + self.drain_s, sig)
            if self.drain_s > 0:
                return  # on_tick starts the shutdown once the drain is over
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if (self._drain is not None and not self.should_exit
                and time.monotonic() >= self._drain[0]):
            super().handle_exit(self._drain[1], None)
        return await super().on_tick(counter)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedServer:
    """The real server on a free loopback port, in a background thread::

        with EmbeddedServer(settings) as server:
            Client(server.url).train(...)
    """

    def __init__(self, settings: Settings, host: str = "127.0.0.1", port: int | None = None,
                 log_level: str = "warning") -> None:
        self.host = host
        self.port = port or free_port(host)
        config = uvicorn.Config(create_app(settings), host=host, port=self.port,
                                log_level=log_level, timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="modelyard-server",
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> EmbeddedServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise ConfigurationError(f"the embedded server failed to start on {self.url}")
            if time.monotonic() > deadline:
                raise ConfigurationError(f"the embedded server did not start within {timeout} s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=15)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
