"""Pipelines: DAGs of building blocks, each step a job of the job system.

- :mod:`~modelyard.pipelines.spec`: the spec (steps, needs, ``with:``, triggers) and the DAG;
  :mod:`~modelyard.pipelines.loading`: from YAML/JSON files;
- :mod:`~modelyard.pipelines.blocks`: the ``with:`` of the steps that run as jobs, and what an
  operator lets a command step run; :mod:`~modelyard.pipelines.server_params`: the ``with:``
  of the steps the server runs (train, validate_model, deploy), and the check of a whole spec;
- :mod:`~modelyard.pipelines.tables`, :mod:`~modelyard.pipelines.states`,
  :mod:`~modelyard.pipelines.store`: rows, states and store functions;
  :mod:`~modelyard.pipelines.runs`: start (one active run per pipeline and tenant), cancel,
  rerun;
- :mod:`~modelyard.pipelines.runner`: the loop service that advances runs
  (:mod:`~modelyard.pipelines.advance`, :mod:`~modelyard.pipelines.launch`,
  :mod:`~modelyard.pipelines.server_steps`), with step caching
  (:mod:`~modelyard.pipelines.cache`).
"""
