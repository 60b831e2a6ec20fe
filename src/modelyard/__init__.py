"""Modelyard: a self-hosted model training service.

Describe the data, filters, holdout and workflow in a train request; write only
``Workflow.train(train_df, holdout_df)``; Modelyard reads, splits, trains, evaluates, stores and
records everything.

``Client`` is imported on first use: a worker imports this package for ``Workflow`` and must not
load the HTTP client with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard._version import __version__
from modelyard.errors import ModelyardError
from modelyard.request import TrainRequest, load_request
from modelyard.runtime.workflow import Workflow

if TYPE_CHECKING:
    from modelyard.client import Client

__all__ = ["Client", "ModelyardError", "TrainRequest", "Workflow", "__version__", "load_request"]


def __getattr__(name: str) -> Any:
    if name == "Client":
        from modelyard.client import Client

        return Client
    raise AttributeError(f"module 'modelyard' has no attribute {name!r}")
