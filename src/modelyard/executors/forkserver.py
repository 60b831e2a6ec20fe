"""A fork server for job workers: one clean interpreter that imports the heavy libraries once and
forks a worker process per job.

Why not ``multiprocessing``'s forkserver: each of its children re-runs the parent's ``__main__``
module first (``spawn.prepare``). For a script that embeds the server, that re-imports FastAPI,
uvicorn and SQLAlchemy on every job, which costs far more than the fork (the figures are in
docs/performance.md). This one starts as ``python -m modelyard.executors.forkserver``, so a
worker holds only what the fork server imported: :data:`PRELOAD`, warmed up by one tiny job.

Protocol, one AF_UNIX connection per job:

* client -> server: a 4-byte big-endian length and the pickled :class:`WorkerSpec`, with the
  worker's end of the job's socket (events up; a refillable pack's next jobs down) passed
  alongside (SCM_RIGHTS);
* server -> client: 8 bytes, the worker's pid; later 8 bytes, its exit code (negative: killed by
  that signal) when it ends; then the connection closes.

:class:`ForkServer` keeps one worker forked ahead of time (a *spare*, waiting on a socketpair):
a request is handed to it with its descriptor, the client gets the spare's pid at once, and the
next spare is forked after the answer, so no job waits for a fork. The worker then runs
:func:`~modelyard.executors.local_worker.process_main`.

The server exits when its standard input closes, i.e. when the process that started it is gone
(and an idle spare exits when its socket closes).
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from typing import NoReturn

from modelyard.protocol.events import WorkerSpec

PRELOAD = [
    "modelyard.executors.local_worker",
    "modelyard.runtime.training",
    "modelyard.runtime.builtin",
    "numpy",
    "pandas",
    "pyarrow.dataset",
    "pyarrow.parquet",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.tree",
    "sklearn.pipeline",
    "sklearn.compose",
    "sklearn.preprocessing",
    "sklearn.impute",
    "sklearn.metrics",
    "fsspec.implementations.local",
]
READY = b"modelyard-forkserver-ready\n"
_HEADER = struct.Struct("!I")
_CODE = struct.Struct("!q")


def warm_up() -> float:
    """Run one tiny job in the fork server so every worker starts with lazy imports and first-call
    caches already paid. No OpenMP estimator here: OpenMP thread pools do not survive fork."""
    from modelyard.runtime.training import execute
    from modelyard.synthetic import example_request, write_payments

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="modelyard-warmup-") as folder:
        write_payments(os.path.join(folder, "w.parquet"), rows=500, merchants=20)
        request = example_request(
            "w.parquet", custom_params={"estimator": "sklearn.linear_model.LogisticRegression"})
        execute(WorkerSpec("warmup", request, (folder,), os.path.join(folder, "artifacts")),
                lambda event: None)
    return time.perf_counter() - started


def serve(socket_path: str, threads: int | None = None) -> None:
    """Import, warm up, then fork workers on request until standard input closes.

    ``threads``: the thread count most jobs run with (cores / concurrency). It is set in the
    native libraries here, once, so that a worker whose job asks for the same changes nothing
    (see :func:`~modelyard.executors.local_worker.limit_threads`).
    """
    for name in PRELOAD:
        importlib.import_module(name)
    try:
        warm = warm_up()
    except Exception as exc:  # a failed warm-up only costs speed
        print(f"modelyard fork server: warm-up failed ({exc}); continuing", file=sys.stderr)
        warm = 0.0
    # Imported here, not at the top: the local executor imports this module (for request_fork)
    # in the server's process, which must not load the runtime.
    from modelyard.executors.local_worker import limit_threads, thread_controller

    thread_controller()  # scan the native libraries once, not in every worker
    if threads:
        limit_threads(threads)
    # Keep the garbage collector's hands off everything imported so far: a collection in a
    # worker would otherwise write to every object's header and copy each page on write.
    gc.collect()
    gc.freeze()

    server = ForkServer(socket_path)
    print(f"modelyard fork server ready (pid {os.getpid()}, warm-up {warm * 1000:.0f} ms)",
          file=sys.stderr, flush=True)
    sys.stdout.buffer.write(READY)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nobody reads our stdout from now on
    server.run()


@dataclasses.dataclass(frozen=True)
class _Spare:
    """A worker forked ahead of its job, waiting for it on its end of ``handoff``."""

    pid: int
    handoff: socket.socket


class ForkServer:
    """The serving loop: accept a request, hand it to the spare, fork the next spare, and tell
    each job's client its worker's exit code when the worker is reaped.

    One selector watches three things: the listening socket (a request), standard input (closed:
    the owning server is gone, so stop) and a pipe that SIGCHLD writes to (a child ended).
    """

    def __init__(self, socket_path: str) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the owning server decides when we stop
        self.socket_path = socket_path
        self.sig_r, self.sig_w = os.pipe()
        os.set_blocking(self.sig_r, False)
        os.set_blocking(self.sig_w, False)
        signal.set_wakeup_fd(self.sig_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(socket_path)
        self.listener.listen(128)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "alive")
        self.selector.register(self.sig_r, selectors.EVENT_READ, "child")
        self.children: dict[int, socket.socket] = {}  # a running job's pid -> its client
        self.spare: _Spare | None = None

    def run(self) -> None:
        """Serve until standard input closes."""
        self.spare = self.fork_spare()
        while True:
            for key, _ in self.selector.select():
                if key.data == "alive":
                    if not os.read(sys.stdin.fileno(), 4096):
                        self.listener.close()
                        os.unlink(self.socket_path)
                        return
                elif key.data == "child":
                    self._drain_wakeups()
                    self.reap()
                else:
                    self.accept()
            self.reap()

    def accept(self) -> None:
        """Take one request: hand it to a spare, answer its pid, fork the next spare."""
        conn, _ = self.listener.accept()
        try:
            request, pipe_fd = _receive_raw(conn)
        except (OSError, ValueError) as exc:
            print(f"modelyard fork server: bad request: {exc}", file=sys.stderr)
            conn.close()
            return
        pid = self.hand_off(request, pipe_fd)
        os.close(pipe_fd)
        if pid is None:
            conn.close()
            return
        conn.sendall(_CODE.pack(pid))
        self.children[pid] = conn
        # After answering: the next job's fork is off this one's path.
        self.spare = self.fork_spare()

    def hand_off(self, request: bytes, pipe_fd: int) -> int | None:
        """Send the request and its descriptor to the spare (a new one if it is gone, once);
        the pid of the worker that got it, or None."""
        for _attempt in range(2):
            spare = self.spare or self.fork_spare()
            self.spare = None
            try:
                sent = socket.send_fds(spare.handoff, [request], [pipe_fd])
            except OSError as exc:  # that spare is gone; fork another
                print(f"modelyard fork server: spare {spare.pid} unreachable ({exc}); "
                      "forking another", file=sys.stderr)
                spare.handoff.close()
                continue
            # Once the descriptor went, the job is the spare's: never send it twice.
            try:
                if sent < len(request):
                    spare.handoff.sendall(request[sent:])
            except OSError as exc:
                print(f"modelyard fork server: spare {spare.pid} lost mid-request ({exc})",
                      file=sys.stderr)
            finally:
                spare.handoff.close()
            return spare.pid
        return None

    def fork_spare(self) -> _Spare:
        """Fork the next worker ahead of time; it waits for its job on a socket of its own, so a
        request costs a hand-off instead of a fork."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            self._spare_main(ours, theirs)
        theirs.close()
        return _Spare(pid, ours)

    def _spare_main(self, ours: socket.socket, theirs: socket.socket) -> NoReturn:
        """The spare worker, in the child: wait for a job on ``theirs``, run it, exit."""
        from modelyard.executors.local_worker import prepare_output, process_main

        code = 1
        try:
            ours.close()
            self.close_inherited()
            prepare_output()  # while idle: the job's log then takes two dup2 calls
            spec, pipe_fd = _receive(theirs)  # blocks until a job comes, or the server ends
            theirs.close()
            process_main(spec, Connection(pipe_fd))
            code = 0
        except (OSError, ValueError, pickle.UnpicklingError):
            code = 2  # the server went away (or sent nonsense) before a job came
        finally:
            os._exit(code)

    def close_inherited(self) -> None:
        """In a new child: drop what belongs to the server (fds, handlers, other jobs)."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        for fd in (self.sig_r, self.sig_w):
            os.close(fd)
        self.selector.close()
        self.listener.close()
        for child in self.children.values():
            child.close()

    def reap(self) -> None:
        """Collect ended children, telling each job's client its exit code; a spare that died
        idle (killed from outside) is replaced at the next request."""
        reaped = _reap(self.children)
        if self.spare is not None and self.spare.pid in reaped:
            self.spare.handoff.close()
            self.spare = None

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self.sig_r, 4096):
                pass
        except BlockingIOError:
            pass


def _receive_raw(conn: socket.socket) -> tuple[bytes, int]:
    """One request as it came (length header and pickled spec) and its pipe descriptor."""
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 1)
    if len(fds) != 1 or len(data) < _HEADER.size:
        for fd in fds:
            os.close(fd)
        raise ValueError("expected a length, a pickled spec and one pipe descriptor")
    (size,) = _HEADER.unpack_from(data)
    payload = bytearray(data)
    while len(payload) < _HEADER.size + size:
        chunk = conn.recv(_HEADER.size + size - len(payload))
        if not chunk:
            os.close(fds[0])
            raise ValueError("connection closed mid-request")
        payload += chunk
    return bytes(payload), fds[0]


def _receive(conn: socket.socket) -> tuple[WorkerSpec, int]:
    request, fd = _receive_raw(conn)
    spec = pickle.loads(request[_HEADER.size:])
    if not isinstance(spec, WorkerSpec):
        os.close(fd)
        raise ValueError(f"expected a WorkerSpec, got {type(spec).__name__}")
    return spec, fd


def _reap(children: dict[int, socket.socket]) -> set[int]:
    """Collect ended children; tell each job's client its exit code. Returns the pids."""
    reaped: set[int] = set()
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.add(pid)
        conn = children.pop(pid, None)
        if conn is not None:
            try:
                conn.sendall(_CODE.pack(os.waitstatus_to_exitcode(status)))
            except OSError:
                pass
            conn.close()


def request_fork(socket_path: str, spec: object, pipe_fd: int) -> tuple[socket.socket, int]:
    """Ask the fork server at ``socket_path`` for a worker; return the connection and its pid."""
    payload = pickle.dumps(spec, protocol=pickle.HIGHEST_PROTOCOL)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(socket_path)
    socket.send_fds(sock, [_HEADER.pack(len(payload)) + payload], [pipe_fd])
    pid = _read_code(sock)
    if pid is None:
        sock.close()
        raise OSError("the fork server closed the connection before starting the worker")
    return sock, pid


def read_exit_code(sock: socket.socket) -> int | None:
    """Block until the worker ends; its exit code (None if the fork server itself died)."""
    try:
        return _read_code(sock)
    finally:
        sock.close()


def _read_code(sock: socket.socket) -> int | None:
    data = b""
    while len(data) < _CODE.size:
        chunk = sock.recv(_CODE.size - len(data))
        if not chunk:
            return None
        data += chunk
    (value,) = _CODE.unpack(data)
    return int(value)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else None)
