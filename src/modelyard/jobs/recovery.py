"""Recovery at start-up: the running jobs a stopped server left behind end ``failed``, saying so.

Queued jobs need nothing: they simply run. A job left ``running`` by a server of this host that
is gone (its process no longer exists) has lost its worker too: a worker exits when its server
goes away. Jobs of a live server on the same host are its own and left alone; jobs of other
hosts' servers are theirs to recover.
"""

from __future__ import annotations

import logging
import os

from sqlalchemy.orm import Session

from modelyard.errors import Conflict
from modelyard.jobs import store
from modelyard.jobs.joblog import JobLog
from modelyard.jobs.states import JobState
from modelyard.protocol.results import FailureKind, failure

log = logging.getLogger("modelyard.dispatcher")


def fail_orphaned_jobs(session: Session, host: str) -> list[str]:
    """Fail the running jobs of this host's servers that are gone (does not commit).

    Returns the ids of the jobs failed.
    """
    failed = []
    for job in store.running_jobs(session, server_prefix=f"{host}/"):
        owner_pid = _pid_of(job.server_id)
        if owner_pid is not None and owner_pid != os.getpid() and _alive(owner_pid):
            continue  # another live server on this host owns it
        reason = (
            f"the worker for this job vanished: its server ({job.server_id}) stopped "
            f"while the job was running (step: {job.current_step or 'unknown'}); "
            "resubmit the request"
        )
        try:
            store.transition(
                session, job.id, JobState.failed, reason,
                exception_info=failure(FailureKind.worker_lost, reason, step=job.current_step),
            )
        except Conflict:
            continue
        JobLog(job.log_file).append(f"job failed: {reason}")
        log.warning("recovered job %s: %s", job.id, reason)
        failed.append(job.id)
    return failed


def _pid_of(server_id: str | None) -> int | None:
    """The process id in a server id (``host/pid/nonce``)."""
    try:
        return int((server_id or "").split("/")[1])
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
