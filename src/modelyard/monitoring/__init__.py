"""Monitoring: what a version's training data looked like, and how production traffic differs.

- :mod:`~modelyard.monitoring.profile`: the reference profile each trained version stores
  (quantile grids for numbers, top categories for text, null rates, the holdout's score
  distribution, feature importances), built in the worker; pure numpy and pandas.
- :mod:`~modelyard.monitoring.importance`: the importances a profile holds.
- :mod:`~modelyard.monitoring.stats`: drift of current values against a profile (PSI, KS,
  null rates, schema changes), vectorised over the profile's bins.
- :mod:`~modelyard.monitoring.report`: the typed report.
- :mod:`~modelyard.monitoring.service`: :func:`~modelyard.monitoring.service.monitor`, which the
  server's route and scheduler call.
- :mod:`~modelyard.monitoring.history`: drift window by window (``monitor`` once per window),
  for the history route and the web UI's monitoring page.

The profile, importance and stats modules import nothing of the server (the worker builds
profiles), which an import contract checks; this package's ``__init__`` imports nothing.
"""
