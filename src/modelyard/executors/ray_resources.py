"""What a job or pack asks of the Ray cluster: the executor's options, a request's Ray resources,
and whether any node could ever give them.

``compute_resource`` and the request's ``resources`` block are plain data (docs/ray.md's table);
this module turns them into Ray's ``CPU``/``GPU``/``memory`` for a job's or a pack's task.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from modelyard.errors import ConfigurationError
from modelyard.request.loading import parse_request

_GIB = 2**30


@dataclasses.dataclass(frozen=True)
class RayOptions:
    """The ``--executor-option`` values the Ray executor reads."""

    num_cpus: float = 1.0
    num_gpus: float = 1.0
    high_memory_gb: float = 8.0
    namespace: str = "modelyard"
    infeasible: str = "fail"

    @classmethod
    def parse(cls, options: tuple[tuple[str, str], ...]) -> RayOptions:
        """Read ``KEY=VALUE`` options; unknown keys and bad values raise ConfigurationError."""
        known = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, raw in options:
            if key not in known:
                raise ConfigurationError(
                    f"executor option {key!r} is not one the ray executor reads; use "
                    f"{', '.join(sorted(known))}"
                )
            if not isinstance(getattr(cls, key), float):
                values[key] = raw
                continue
            try:
                values[key] = float(raw)
            except ValueError:
                values[key] = None
            if values[key] is None or values[key] < 0:
                raise ConfigurationError(
                    f"executor option {key} must be a number >= 0, got {raw!r} instead"
                )
        if values.get("infeasible", "fail") not in ("fail", "wait"):
            raise ConfigurationError(
                f"executor option infeasible must be fail or wait, got {values['infeasible']!r}"
            )
        return cls(**values)


def task_resources(request: dict[str, Any], options: RayOptions) -> dict[str, float]:
    """Ray's ``CPU``/``GPU``/``memory`` (bytes) for a request: its ``resources`` block first,
    then the executor's defaults for its ``compute_resource``."""
    parsed = parse_request(request)
    wanted = parsed.resources
    kind = parsed.compute_resource.value
    need = {"CPU": wanted.num_cpus if wanted.num_cpus is not None else options.num_cpus}
    gpus = wanted.num_gpus
    if gpus is None and kind == "GPU":
        gpus = options.num_gpus
    if gpus:
        need["GPU"] = gpus
    memory_gb = wanted.memory_gb
    if memory_gb is None and kind == "HIGH_MEMORY":
        memory_gb = options.high_memory_gb
    if memory_gb:
        need["memory"] = float(int(memory_gb * _GIB))
    return need


def infeasibility(need: dict[str, float], nodes: list[dict[str, Any]]) -> str | None:
    """Why no alive node in ``nodes`` (``ray.nodes()``) can ever run a task needing ``need``."""
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    if any(all(r.get(k, 0) >= v for k, v in need.items()) for r in alive):
        return None
    absent = [k for k, v in need.items() if v > 0 and not any(r.get(k, 0) > 0 for r in alive)]
    if absent:
        nouns = {"CPU": "a CPU", "GPU": "a GPU", "memory": "memory"}
        what = f"no node in the Ray cluster has {' or '.join(nouns[k] for k in absent)}"
    else:
        what = "no single node in the Ray cluster is that large"
    offered = "; ".join(_describe(r) for r in alive) or "none alive"
    return f"{what}: the job needs {_describe(need)}, the nodes have {offered}"


def _describe(resources: dict[str, float]) -> str:
    parts = [f"{resources.get('CPU', 0):g} CPU", f"{resources.get('GPU', 0):g} GPU"]
    if "memory" in resources:
        parts.append(f"{resources['memory'] / _GIB:.3g} GiB memory")
    return ", ".join(parts)
