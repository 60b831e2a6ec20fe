"""A fork server for job workers: one clean interpreter that imports the heavy libraries once and
forks a worker process per job.

Why not ``multiprocessing``'s forkserver: each of its children re-runs the parent's ``__main__``
module first (``spawn.prepare``). For a script that embeds the server that re-imports FastAPI,
uvicorn and SQLAlchemy on every job: 600-900 ms measured, against ~20 ms here. This one starts as
``python -m modelyard.executors.forkserver``, so a worker holds only what the fork server imported.

Protocol, one AF_UNIX connection per job:

* client -> server: a 4-byte big-endian length and the pickled :class:`WorkerSpec`, with the
  worker's end of the job's socket (events up; a refillable pack's next jobs down) passed
  alongside (SCM_RIGHTS);
* server -> client: 8 bytes, the worker's pid; later 8 bytes, its exit code (negative: killed by
  that signal) when it ends; then the connection closes.

The server keeps one worker forked ahead of time (a *spare*, waiting on a socketpair): a request
is handed to it with its descriptor, the client gets the spare's pid at once, and the next spare
is forked after the answer, so no job waits for a fork.

The server exits when its standard input closes, i.e. when the process that started it is gone
(and an idle spare exits when its socket closes).
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
    from modelyard.executors.local_worker import (
        limit_threads,
        prepare_output,
        process_main,
        thread_controller,
    )

    thread_controller()  # scan the native libraries once, not in every worker
    if threads:
        limit_threads(threads)
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

    def close_inherited() -> None:
        """In a new child: drop what belongs to the server (fds, handlers, other jobs)."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        for fd in (sig_r, sig_w):
            os.close(fd)
        selector.close()
        listener.close()
        for child in children.values():
            child.close()

    def fork_spare() -> tuple[int, socket.socket]:
        """Fork the next worker ahead of time; it waits for its job on a socket of its own, so a
        request costs a hand-off instead of a fork (about 7 ms on 2 cores, more under load)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # the spare worker
            code = 1
            try:
                ours.close()
                close_inherited()
                prepare_output()  # while idle: the job's log then takes two dup2 calls
                spec, pipe_fd = _receive(theirs)  # blocks until a job comes, or the server ends
                theirs.close()
                process_main(spec, Connection(pipe_fd))
                code = 0
            except (OSError, ValueError, pickle.UnpicklingError):
                code = 2  # the server went away (or sent nonsense) before a job came
            finally:
                os._exit(code)
        theirs.close()
        return pid, ours

    spare: tuple[int, socket.socket] | None = fork_spare()
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
                if spare is not None and spare[0] in _reap(children):
                    spare[1].close()
                    spare = None  # died idle (killed from outside): a new one on next request
            else:
                conn, _ = listener.accept()
                try:
                    request, pipe_fd = _receive_raw(conn)
                except (OSError, ValueError) as exc:
                    print(f"modelyard fork server: bad request: {exc}", file=sys.stderr)
                    conn.close()
                    continue
                pid = None
                for _attempt in range(2):
                    if spare is None:
                        spare = fork_spare()
                    candidate, handoff = spare
                    spare = None
                    try:
                        sent = socket.send_fds(handoff, [request], [pipe_fd])
                    except OSError as exc:  # that spare is gone; fork another
                        print(f"modelyard fork server: spare {candidate} unreachable ({exc}); "
                              "forking another", file=sys.stderr)
                        handoff.close()
                        continue
                    # Once the descriptor went, the job is the spare's: never send it twice.
                    pid = candidate
                    try:
                        if sent < len(request):
                            handoff.sendall(request[sent:])
                    except OSError as exc:
                        print(f"modelyard fork server: spare {candidate} lost mid-request "
                              f"({exc})", file=sys.stderr)
                    finally:
                        handoff.close()
                    break
                os.close(pipe_fd)
                if pid is None:
                    conn.close()
                    continue
                conn.sendall(_CODE.pack(pid))
                children[pid] = conn
                spare = fork_spare()  # after answering: the next job's fork is off this one's path
        reaped = _reap(children)
        if spare is not None and spare[0] in reaped:
            spare[1].close()
            spare = None


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
