"""The model registry: versions per (model name, tenant), stages, approvals, promotion, rollback."""

from modelyard.registry.stages import GLOBAL_TENANT, Stage

__all__ = ["GLOBAL_TENANT", "Stage"]
