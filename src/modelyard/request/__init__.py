"""The train request contract: pydantic models and file loading, no other I/O."""

from modelyard.request.limits import validate_name
from modelyard.request.loading import (
    describe_errors,
    describe_validation_error,
    load_request,
    parse_request,
)
from modelyard.request.models import (
    ComputeResource,
    Data,
    DateRangeSampling,
    Features,
    FeatureValue,
    Filter,
    HoldoutSampling,
    Metadata,
    Predicate,
    RandomFractionSampling,
    Train,
    TrainRequest,
)

__all__ = [
    "ComputeResource",
    "Data",
    "DateRangeSampling",
    "FeatureValue",
    "Features",
    "Filter",
    "HoldoutSampling",
    "Metadata",
    "Predicate",
    "RandomFractionSampling",
    "Train",
    "TrainRequest",
    "describe_errors",
    "describe_validation_error",
    "load_request",
    "parse_request",
    "validate_name",
]
