"""Modelyard: a self-hosted model training service.

Describe the data, filters, holdout and workflow in a train request; write only
``Workflow.train(train_df, holdout_df)``; Modelyard reads, splits, trains, evaluates, stores and
records everything.
"""

from modelyard.client import Client
from modelyard.errors import ModelyardError
from modelyard.request import TrainRequest, load_request
from modelyard.runtime.workflow import Workflow

__version__ = "0.1.0"

__all__ = ["Client", "ModelyardError", "TrainRequest", "Workflow", "__version__", "load_request"]
