"""Alembic environment: migrations run on the connection Modelyard hands over."""

from alembic import context

import modelyard.auth.tables  # noqa: F401  (registers the tables)
import modelyard.experiments.tables  # noqa: F401
import modelyard.jobs.tables  # noqa: F401
import modelyard.pipelines.tables  # noqa: F401
import modelyard.registry.tables  # noqa: F401
import modelyard.triggers.tables  # noqa: F401
from modelyard.sql.base import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
