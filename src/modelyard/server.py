"""Run the API server: in the foreground (``modelyard server``) or embedded in a thread (demo)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from modelyard.api.app import create_app
from modelyard.errors import ConfigurationError
from modelyard.jobs.lease import refuse_second_server
from modelyard.settings import Settings


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8765,
          log_level: str = "info", *, run_jobs: bool = True) -> None:
    """Run the server until interrupted (``run_jobs=False``: a serving replica).

    Raises:
        ConfigurationError: a training server on a SQLite file another server runs on.
    """
    if run_jobs:  # said plainly here, rather than as the app's failed start-up
        refuse_second_server(settings)
    uvicorn.run(create_app(settings, run_jobs=run_jobs), host=host, port=port,
                log_level=log_level, timeout_graceful_shutdown=5, access_log=False)


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
