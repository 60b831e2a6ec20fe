"""A fork server for job workers: one clean interpreter that imports the heavy libraries once and
forks a worker process per job.

Why not ``multiprocessing``'s forkserver: each of its children re-runs the parent's ``__main__``
module first (``spawn.prepare``). For a script that embeds the server that re-imports FastAPI,
uvicorn and SQLAlchemy on every job: 600-900 ms measured, against ~20 ms here. This one starts as
``python -m modelyard.executors.forkserver``, so a worker holds only what the fork server imported.

Protocol, one AF_UNIX connection per job:

* client -> server: a 4-byte big-endian length and the pickled :class:`WorkerSpec`, with the
  write end of the job's event pipe passed alongside (SCM_RIGHTS);
* server -> client: 8 bytes, the worker's pid; later 8 bytes, its exit code (negative: killed by
  that signal) when it ends; then the connection closes.

The server exits when its standard input closes, i.e. when the process that started it is gone.
"""

from __future__ import annotations

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

from modelyard.runtime.events import WorkerSpec

PRELOAD = [
    "modelyard.runtime.worker",
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
    from modelyard.runtime.worker import execute
    from modelyard.synthetic import example_request, write_payments

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="modelyard-warmup-") as folder:
        write_payments(os.path.join(folder, "w.parquet"), rows=500, merchants=20)
        request = example_request(
            "w.parquet", custom_params={"estimator": "sklearn.linear_model.LogisticRegression"})
        execute(WorkerSpec("warmup", request, (folder,), os.path.join(folder, "artifacts")),
                lambda event: None)
    return time.perf_counter() - started


def serve(socket_path: str) -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    try:
        warm = warm_up()
    except Exception as exc:  # a failed warm-up only costs speed
        print(f"modelyard fork server: warm-up failed ({exc}); continuing", file=sys.stderr)
        warm = 0.0
    from modelyard.runtime.worker import process_main, thread_controller

    thread_controller()  # scan the native libraries once, not in every worker
    # Keep the garbage collector's hands off everything imported so far: a collection in a
    # worker would otherwise write to every object's header and copy each page on write.
    gc.collect()
    gc.freeze()

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the owning server decides when we stop
    sig_r, sig_w = os.pipe()
    os.set_blocking(sig_r, False)
    os.set_blocking(sig_w, False)
    signal.set_wakeup_fd(sig_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(128)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "alive")
    selector.register(sig_r, selectors.EVENT_READ, "child")
    children: dict[int, socket.socket] = {}

    print(f"modelyard fork server ready (pid {os.getpid()}, warm-up {warm * 1000:.0f} ms)",
          file=sys.stderr, flush=True)
    sys.stdout.buffer.write(READY)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nobody reads our stdout from now on

    while True:
        for key, _ in selector.select():
            if key.data == "alive":
                if not os.read(sys.stdin.fileno(), 4096):
                    listener.close()
                    os.unlink(socket_path)
                    return
            elif key.data == "child":
                try:
                    while os.read(sig_r, 4096):
                        pass
                except BlockingIOError:
                    pass
                _reap(children)
            else:
                conn, _ = listener.accept()
                try:
                    spec, pipe_fd = _receive(conn)
                except (OSError, ValueError, pickle.UnpicklingError) as exc:
                    print(f"modelyard fork server: bad request: {exc}", file=sys.stderr)
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:  # the worker
                    code = 1
                    try:
                        signal.set_wakeup_fd(-1)
                        for sig in (signal.SIGCHLD, signal.SIGINT):
                            signal.signal(sig, signal.SIG_DFL)
                        for fd in (sig_r, sig_w):
                            os.close(fd)
                        selector.close()
                        listener.close()
                        conn.close()
                        for child in children.values():
                            child.close()
                        process_main(spec, Connection(pipe_fd, readable=False))
                        code = 0
                    finally:
                        os._exit(code)
                os.close(pipe_fd)
                conn.sendall(_CODE.pack(pid))
                children[pid] = conn
        _reap(children)


def _receive(conn: socket.socket) -> tuple[WorkerSpec, int]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 1)
    if len(fds) != 1 or len(data) < _HEADER.size:
        for fd in fds:
            os.close(fd)
        raise ValueError("expected a length, a pickled spec and one pipe descriptor")
    (size,) = _HEADER.unpack_from(data)
    payload = bytearray(data[_HEADER.size:])
    while len(payload) < size:
        chunk = conn.recv(size - len(payload))
        if not chunk:
            raise ValueError("connection closed mid-request")
        payload += chunk
    spec = pickle.loads(bytes(payload))
    if not isinstance(spec, WorkerSpec):
        os.close(fds[0])
        raise ValueError(f"expected a WorkerSpec, got {type(spec).__name__}")
    return spec, fds[0]


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
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
    serve(sys.argv[1])
