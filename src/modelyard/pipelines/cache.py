"""Step caching: a content hash of what decides a step's outputs.

The key covers the step's type, its ``with:`` block, its resolved inputs (the outputs of the
steps it needs), its code (a command step's argv and image; a train step's workflow name and
the files of the server's ``--workflows`` modules; a built-in step's Modelyard version) and a
cheap fingerprint of its data: the path, size and modification time of every file the paths
in its parameters name. Reading the data itself would cost what the step costs.

``validate_model`` and ``deploy`` are never cached: they decide against the registry as it is
when they run (the production version, the policy), which their inputs do not capture.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

from modelyard._version import __version__

UNCACHED = frozenset({"validate_model", "deploy"})


def cache_key(type_: str, params: dict[str, Any], inputs: dict[str, Any], code: dict[str, Any],
              data_roots: Sequence[str]) -> str:
    """The step's content hash (sha256, hex)."""
    payload = {"type": type_, "params": params, "inputs": inputs, "code": code,
               "data": data_fingerprint(params, data_roots), "modelyard": __version__}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def workflow_code(workflow_name: str, workflow_modules: Sequence[str]) -> dict[str, Any]:
    """A train step's code: its workflow's name and the sha256 of each ``--workflows`` file."""
    files = {}
    for module in workflow_modules:
        if module.endswith(".py") and os.path.isfile(module):
            with open(module, "rb") as fh:
                files[module] = hashlib.sha256(fh.read()).hexdigest()
    return {"workflow": workflow_name, "files": files}


def data_fingerprint(params: dict[str, Any], data_roots: Sequence[str]) -> list[Any]:
    """``(path, [(file, size, mtime_ns), ...])`` for each data path in ``params`` (a value
    under a key ``path`` or ``*_path``, or in a list under ``paths``, at any depth)."""
    from modelyard.errors import DataError
    from modelyard.runtime.data import resolve_source

    out: list[Any] = []
    for path in sorted(set(_paths(params))):
        try:
            source = resolve_source(path, data_roots)
        except DataError as exc:  # the step reports it; the key only has to differ
            out.append([path, str(exc)])
            continue
        files = []
        for name in source.files:
            try:
                info = source.fsspec_fs.info(name)
            except OSError:
                files.append([name, None, None])
                continue
            files.append([name, info.get("size"), info.get("mtime") or info.get("LastModified")
                          or info.get("updated")])
        out.append([path, files])
    return out


def _paths(value: Any, key: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, str(k))
    elif isinstance(value, list):
        for item in value:
            yield from _paths(item, key if key == "paths" else "")
    elif isinstance(value, str) and (key in ("path", "paths") or key.endswith("_path")):
        yield value
