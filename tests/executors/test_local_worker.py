"""A local worker process's own plumbing, in forked children: each packed job's output goes to
its own log, and native thread pools already at the job's size are left alone."""

from __future__ import annotations

import io
import logging
import os
import sys
from pathlib import Path

import pytest
from threadpoolctl import ThreadpoolController, threadpool_limits

from modelyard.executors import local_worker


def test_each_packed_job_s_output_goes_to_its_own_log_even_after_a_job_broke_the_streams(
    tmp_path: Path,
) -> None:
    """The streams and the logging set-up are prepared once per worker; a job that replaced or
    closed them must not send the next job's output astray."""
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    pid = os.fork()
    if pid == 0:  # fds 1 and 2 are redirected: not in the test process itself
        code = 1
        try:
            local_worker.prepare_output()
            local_worker._redirect_output(str(first))
            print("stdout of the first job")
            logging.getLogger("job").info("log of the first job")
            os.system("echo subprocess of the first job")
            sys.stdout = io.StringIO()  # the first job breaks things on its way out
            sys.stderr.close()
            logging.basicConfig(stream=io.StringIO(), force=True)
            logging.root.setLevel(logging.ERROR)
            local_worker._redirect_output(str(second))
            print("stdout of the second job")
            logging.getLogger("job").info("log of the second job")
            sys.stdout.flush()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    one, two = first.read_text(), second.read_text()
    for line in ("stdout of the first job", "log of the first job", "subprocess of the first job"):
        assert line in one
    assert "stdout of the second job" in two and "log of the second job" in two
    assert "second job" not in one


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_limit_threads_leaves_a_pool_at_the_asked_size_alone() -> None:
    """Setting OpenBLAS's size in a newly forked process, even to the size it has, starts its
    threads, which spin on the cores the job needs; limit_threads does not touch such a pool."""
    blas = [lib for lib in ThreadpoolController().lib_controllers
            if lib.internal_api == "openblas"]
    if not blas:
        pytest.skip("no OpenBLAS loaded")
    with threadpool_limits(limits=2):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: only os and the thread pools' own calls
            code = 1
            try:
                before = _threads()
                local_worker.limit_threads(2)
                after_ours = _threads()
                blas[0].set_num_threads(2)  # what a plain threadpoolctl limit does
                os.write(w, f"{before} {after_ours} {_threads()}".encode())
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        with os.fdopen(r) as fh:
            before, after_ours, after_plain = (int(n) for n in fh.read().split())
    assert os.waitstatus_to_exitcode(status) == 0
    assert after_ours == before
    assert after_plain > before  # the threads limit_threads spared the job


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))
