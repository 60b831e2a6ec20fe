"""The entry point of a Kubernetes worker pod: ``python -m modelyard.executors.k8s_worker``.

It reads the :class:`WorkerSpec` from ``MODELYARD_WORKER_SPEC`` (JSON), runs the job with the
same :func:`~modelyard.runtime.training.execute` as every backend, and reports each event as a
line of ``<artifact root>/runs/<job id>/events.jsonl``, which the server tails. Its stdout and
stderr are the pod's log. It exits 0 once the job's terminal event is written, whatever the job's
outcome; a non-zero exit means the worker itself broke (bad spec, unwritable store).
"""

from __future__ import annotations

import logging
import os
import sys

from modelyard.executors.k8s_events import EventFileWriter, events_url
from modelyard.executors.k8s_manifest import SPEC_ENV
from modelyard.protocol.codec import EventDecodeError, spec_from_json
from modelyard.runtime.training import execute

log = logging.getLogger("modelyard.executors.k8s_worker")


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raw = os.environ.get(SPEC_ENV)
    if not raw:
        log.error("%s is not set: this module runs inside a pod the kubernetes executor "
                  "created, which passes the job there", SPEC_ENV)
        return 2
    try:
        spec = spec_from_json(raw)
    except EventDecodeError as exc:
        log.error("%s does not hold a worker spec (%s); the server and this image may run "
                  "different modelyard versions", SPEC_ENV, exc)
        return 2
    writer = EventFileWriter(spec.artifact_root, spec.job_id)
    log.info("job %s: reporting to %s", spec.job_id, events_url(spec.artifact_root, spec.job_id))
    for one in spec.pack or (spec,):  # a pack runs its small jobs one after another
        execute(one, writer.append)
    return 0


if __name__ == "__main__":
    sys.exit(main())
