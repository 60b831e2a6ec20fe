"""A pipeline's ``command`` step inside the worker: any executable, with a JSON contract.

The program runs in a fresh folder (its working directory) with three variables:
``MODELYARD_INPUTS`` (``inputs.json``: the step's ``with:`` block as ``params`` and the outputs
of the steps it needs as ``inputs``), ``MODELYARD_OUTPUTS`` (``outputs.json``, which it must
write as one JSON object) and ``MODELYARD_ARTIFACTS`` (a folder whose files are copied into the
artefact store). Its stdout and stderr go into the job's log line by line; a non-zero exit fails
the step with the exit code and the last lines of its stderr.

Only a program inside the operator's ``--step-commands`` folders runs: the server checked it
when the pipeline was created, and it is checked again here (the folders may have changed, and
the worker trusts nothing it was told to run). The program gets a minimal environment, not the
worker's, so the server's secrets (tokens, database URLs) never reach it.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from modelyard.errors import DataError, WorkflowError
from modelyard.pipelines.blocks import allowed_program
from modelyard.protocol.steps import StepJob

STDERR_LINES_SHOWN = 20
MAX_OUTPUTS_BYTES = 1 << 20  # outputs.json travels through the job store to the next steps
MAX_ARTEFACT_BYTES = 1 << 30
MAX_ARTEFACT_FILES = 10_000
# Variables a program may rely on; nothing else of the worker's environment is passed on.
PASSED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


class CommandFailed(WorkflowError):
    """The program exited non-zero; ``exitcode`` is its exit status."""

    def __init__(self, message: str, exitcode: int) -> None:
        super().__init__(message)
        self.exitcode = exitcode


@dataclass(frozen=True)
class CommandRun:
    """What a command step left: its outputs and its artefact files (relative path -> bytes)."""

    outputs: dict[str, Any]
    artefacts: dict[str, bytes]
    exitcode: int


def run_command(step: StepJob, folder: str, allowed: Sequence[str], job_id: str) -> CommandRun:
    """Run ``step.command`` in ``folder`` (empty, the worker's to use) under the JSON contract.

    Raises:
        RequestError: the program is not in an allowed folder (checked again here).
        CommandFailed: it exited non-zero.
        DataError: it wrote no outputs.json, or not a JSON object, or too much.
    """
    program = allowed_program(step.command, allowed)
    argv = [program, *(step.command or [])[1:]]
    inputs, outputs = os.path.join(folder, "inputs.json"), os.path.join(folder, "outputs.json")
    artefacts = os.path.join(folder, "artifacts")
    os.makedirs(artefacts)
    with open(inputs, "w") as fh:
        json.dump({"run_id": step.run_id, "step": step.step, "job_id": job_id,
                   "params": step.params, "inputs": step.inputs}, fh, indent=2, default=str)
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    env.update(MODELYARD_INPUTS=inputs, MODELYARD_OUTPUTS=outputs,
               MODELYARD_ARTIFACTS=artefacts + os.sep)
    name = os.path.basename(program)
    print(f"step {step.step}: running {name} in {folder}", file=sys.stderr, flush=True)
    code, stderr_tail = _run(argv, folder, env)
    if code != 0:
        shown = "\n".join(stderr_tail) or "(nothing)"
        raise CommandFailed(
            f"command {name!r} exited with code {code}; the last lines of its stderr:\n{shown}\n"
            "(its whole output is in the job's log)", code)
    return CommandRun(_read_outputs(outputs, name), _read_artefacts(artefacts, name), code)


def _run(argv: list[str], cwd: str, env: dict[str, str]) -> tuple[int, list[str]]:
    """Run ``argv``, copying its stdout and stderr into ours line by line; its exit status and
    the last lines of its stderr."""
    tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES_SHOWN)
    with subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        if proc.stdout is None or proc.stderr is None:  # both are pipes: PIPE was given
            raise RuntimeError("the command's output pipes did not open")
        copiers = [threading.Thread(target=_copy, args=(proc.stdout, sys.stdout, None)),
                   threading.Thread(target=_copy, args=(proc.stderr, sys.stderr, tail))]
        for t in copiers:
            t.start()
        for t in copiers:
            t.join()
        code = proc.wait()
    return code, list(tail)


def _copy(source: IO[bytes], target: IO[str], tail: collections.deque[str] | None) -> None:
    for raw in source:
        line = raw.decode("utf-8", "replace")
        target.write(line if line.endswith("\n") else line + "\n")
        target.flush()
        if tail is not None:
            tail.append(line.rstrip("\n"))


def _read_outputs(path: str, name: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise DataError(f"command {name!r} wrote no outputs.json; it must write a JSON object "
                        "to the file $MODELYARD_OUTPUTS names ({} if it has no outputs)")
    size = os.path.getsize(path)
    if size > MAX_OUTPUTS_BYTES:
        raise DataError(f"command {name!r} wrote {size:,} bytes of outputs.json, over the "
                        f"{MAX_OUTPUTS_BYTES:,}-byte limit; put large results in "
                        "$MODELYARD_ARTIFACTS and their paths in outputs.json")
    try:
        with open(path, encoding="utf-8") as fh:
            outputs = json.load(fh)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"command {name!r} wrote an outputs.json that is not JSON ({exc}); "
                        "write one JSON object") from None
    if not isinstance(outputs, dict):
        raise DataError(f"command {name!r} wrote a JSON {type(outputs).__name__} to "
                        "outputs.json; it must be a JSON object ({\"name\": value, ...})")
    return outputs


def _read_artefacts(folder: str, name: str) -> dict[str, bytes]:
    """The files under ``folder`` by relative path; a symlink is refused rather than followed,
    so a program cannot copy a file it could only point at into the store."""
    files: dict[str, bytes] = {}
    total = 0
    for root, dirs, names in os.walk(folder):
        for entry in [*dirs, *names]:
            if os.path.islink(os.path.join(root, entry)):
                raise DataError(f"command {name!r} left a symlink in its artefacts "
                                f"({os.path.relpath(os.path.join(root, entry), folder)}); "
                                "write files there, not links")
        for file in names:
            path = os.path.join(root, file)
            total += os.path.getsize(path)
            if len(files) >= MAX_ARTEFACT_FILES or total > MAX_ARTEFACT_BYTES:
                raise DataError(f"command {name!r} left over {MAX_ARTEFACT_FILES:,} files or "
                                f"{MAX_ARTEFACT_BYTES:,} bytes of artefacts; keep fewer, "
                                "smaller ones (or write large data under a data root)")
            with open(path, "rb") as fh:
                files[os.path.relpath(path, folder)] = fh.read()
    return files
