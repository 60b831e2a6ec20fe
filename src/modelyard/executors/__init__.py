"""Executors, registered by name and imported lazily, so an extra is needed only when used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from modelyard.errors import ConfigurationError

if TYPE_CHECKING:
    from modelyard.executors.base import Executor
    from modelyard.settings import Settings

EXECUTORS: dict[str, str] = {
    "local": "modelyard.executors.local:LocalExecutor",
    "ray": "modelyard.executors.ray:RayExecutor",
    "kubernetes": "modelyard.executors.kubernetes:KubernetesExecutor",
}


def make_executor(settings: Settings) -> Executor:
    """Build the executor ``settings.executor`` names."""
    target = EXECUTORS.get(settings.executor)
    if target is None:
        raise ConfigurationError(
            f"unknown executor {settings.executor!r}; choose one of {sorted(EXECUTORS)}"
        )
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] == "modelyard":
            raise  # a module of ours is missing: a broken install, not a missing extra
        raise ConfigurationError(
            f"the {settings.executor} executor needs {exc.name}: "
            f"pip install 'modelyard[{settings.executor}]'"
        ) from None
    executor: Executor = getattr(module, cls_name)(settings)
    return executor
