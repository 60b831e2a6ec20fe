"""Inside the worker: the training contract (data, workflow, evaluation, artefacts).

Nothing here knows of HTTP or the job store; importing it never loads FastAPI or SQLAlchemy.
"""

from modelyard.protocol.events import WorkerSpec
from modelyard.runtime.workflow import Workflow

__all__ = ["Workflow", "WorkerSpec"]
