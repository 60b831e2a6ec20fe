"""Schedules and event triggers that start pipeline runs (see :mod:`modelyard.triggers.spec`)."""
