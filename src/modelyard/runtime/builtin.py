"""Built-in workflows: any scikit-learn estimator by class path, LightGBM and XGBoost.

``custom_params`` of the ``sklearn`` workflow::

    custom_params:
      estimator: sklearn.ensemble.HistGradientBoostingClassifier   # optional
      max_depth: 6                                                  # every other key: a parameter

Without ``estimator`` a label that looks like classes gets ``HistGradientBoostingClassifier`` and a
numeric one ``HistGradientBoostingRegressor``. Text, categorical and boolean columns are encoded
automatically: natively as categories for estimators that support it, one-hot otherwise, where
numeric columns are also imputed and standardised (linear models, SVMs, k-NN, single trees); at
most 64 columns per categorical feature, the rarest categories sharing the last one (see
:mod:`modelyard.runtime.encoders`). ``random_state`` defaults to 0 so the same request trains the
same model.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pandas as pd

from modelyard.errors import WorkflowError
from modelyard.runtime.encoders import CategoryCodes, OneHotCodes, encoder_for
from modelyard.runtime.workflow import Workflow

# Models pickled by earlier versions name CategoryCodes here.
__all__ = ["CategoryCodes", "LightGBMWorkflow", "OneHotCodes", "SklearnWorkflow",
           "XGBoostWorkflow"]


def _categorical_columns(df: pd.DataFrame, features: list[str]) -> list[str]:
    cats = []
    for c in features:
        dtype = df[c].dtype
        if pd.api.types.is_datetime64_any_dtype(dtype):
            raise WorkflowError(
                f"feature {c!r} is a datetime column; the built-in workflows take numbers, "
                "text and categories: derive numeric features from it (age in days, hour, ...)"
            )
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            cats.append(c)
    return cats


def _estimator_class(path: str) -> type[Any]:
    module_name, _, name = path.rpartition(".")
    if not module_name:
        raise WorkflowError(
            f"custom_params.estimator {path!r} must be a class path such as "
            "'sklearn.linear_model.LogisticRegression'"
        )
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as exc:
        raise WorkflowError(f"custom_params.estimator {path!r} cannot be imported: {exc}") from None
    if not hasattr(cls, "fit"):
        raise WorkflowError(f"custom_params.estimator {path!r} has no fit method")
    return cls  # type: ignore[no-any-return]


def _is_classification(workflow: Workflow, y: pd.Series) -> bool:
    from modelyard.runtime.evaluation import infer_task

    return (workflow.task or infer_task(y)) != "regression"


class SklearnWorkflow(Workflow):
    """Any scikit-learn compatible estimator, with categorical encoding done for you."""

    name = "sklearn"

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        from sklearn.pipeline import Pipeline

        params = dict(self.custom_params)
        classify = _is_classification(self, train_df[self.label])
        default = (
            "sklearn.ensemble.HistGradientBoostingClassifier"
            if classify
            else "sklearn.ensemble.HistGradientBoostingRegressor"
        )
        cls = _estimator_class(str(params.pop("estimator", default)))
        accepted = inspect.signature(cls).parameters
        if "random_state" in accepted:
            params.setdefault("random_state", 0)
        unknown = sorted(set(params) - set(accepted))
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            raise WorkflowError(
                f"custom_params {unknown} are not parameters of {cls.__name__} "
                f"(it takes: {', '.join(accepted)})"
            )
        cats = _categorical_columns(train_df, self.features)
        native = "categorical_features" in accepted
        if native and cats and "categorical_features" not in params:
            params["categorical_features"] = [self.features.index(c) for c in cats]
        try:
            estimator = cls(**params)
        except (TypeError, ValueError) as exc:
            raise WorkflowError(f"cannot build {cls.__name__}({params}): {exc}") from None
        encoder = encoder_for(self.features, cats, native=native, allow_nan=_allows_nan(estimator))
        model = Pipeline([("encode", encoder), ("model", estimator)])
        return model.fit(_inputs(train_df, self.features, encoder),
                         _target(train_df[self.label], classify))


def _inputs(df: pd.DataFrame, features: list[str], encoder: Any) -> pd.DataFrame:
    """The frame an encoder is fitted on: the whole frame if it picks its columns by name."""
    return df if getattr(encoder, "selects_columns", False) else df[features]


def _target(y: pd.Series, classify: bool) -> Any:
    if classify and pd.api.types.is_bool_dtype(y.dtype):
        return y.to_numpy(dtype=bool)
    return y.to_numpy()


def _allows_nan(estimator: Any) -> bool:
    try:
        from sklearn.utils import get_tags

        return bool(get_tags(estimator).input_tags.allow_nan)
    except (ImportError, AttributeError):
        return False


def _to_text(x: Any) -> Any:
    """Categories as plain strings with missing values as a category of their own.

    The one-hot path of models trained before :class:`OneHotCodes` pickled a reference to this
    function; it stays so that they still load.
    """
    return pd.DataFrame(x).astype(object).where(pd.DataFrame(x).notna(), "__missing__").astype(str)


class LightGBMWorkflow(Workflow):
    """LightGBM; ``custom_params`` go to ``LGBMClassifier``/``LGBMRegressor``."""

    name = "lightgbm"

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        try:
            import lightgbm
        except ImportError:
            raise WorkflowError(
                "the lightgbm workflow needs LightGBM: pip install 'modelyard[lightgbm]'"
            ) from None
        from sklearn.pipeline import Pipeline

        classify = _is_classification(self, train_df[self.label])
        cls = lightgbm.LGBMClassifier if classify else lightgbm.LGBMRegressor
        params = {"random_state": 0, "verbose": -1, **self.custom_params}
        cats = _categorical_columns(train_df, self.features)
        model = Pipeline(
            [
                ("encode", encoder_for(self.features, cats, native=True, allow_nan=True)),
                ("model", cls(**params)),
            ]
        )
        cat_idx = [self.features.index(c) for c in cats]
        return model.fit(
            _inputs(train_df, self.features, model.steps[0][1]),
            _target(train_df[self.label], classify),
            model__categorical_feature=cat_idx or "auto",
        )


class XGBoostWorkflow(Workflow):
    """XGBoost; ``custom_params`` go to ``XGBClassifier``/``XGBRegressor``."""

    name = "xgboost"

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        try:
            import xgboost
        except ImportError:
            raise WorkflowError(
                "the xgboost workflow needs XGBoost: pip install 'modelyard[xgboost]'"
            ) from None
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import LabelEncoder

        classify = _is_classification(self, train_df[self.label])
        cls = xgboost.XGBClassifier if classify else xgboost.XGBRegressor
        params = {"random_state": 0, "n_jobs": 1, **self.custom_params}
        cats = _categorical_columns(train_df, self.features)
        y = _target(train_df[self.label], classify)
        if classify:
            y = LabelEncoder().fit_transform(y)
        model = Pipeline(
            [
                ("encode", encoder_for(self.features, cats, native=True, allow_nan=True)),
                ("model", cls(**params)),
            ]
        )
        return model.fit(_inputs(train_df, self.features, model.steps[0][1]), y)
