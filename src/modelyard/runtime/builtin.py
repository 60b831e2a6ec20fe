"""Built-in workflows: any scikit-learn estimator by class path, LightGBM and XGBoost.

``custom_params`` of the ``sklearn`` workflow::

    custom_params:
      estimator: sklearn.ensemble.HistGradientBoostingClassifier   # optional
      max_depth: 6                                                  # every other key: a parameter

Without ``estimator`` a label that looks like classes gets ``HistGradientBoostingClassifier`` and a
numeric one ``HistGradientBoostingRegressor``. Text, categorical and boolean columns are encoded
automatically: natively as categories for estimators that support it, one-hot otherwise, where
numeric columns are also imputed and standardised (linear models, SVMs, k-NN).
``random_state`` defaults to 0 so the same request trains the same model.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from modelyard.errors import WorkflowError
from modelyard.runtime.workflow import Workflow


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
        encoder = _encoder(self.features, cats, native=native, allow_nan=_allows_nan(estimator))
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


class CategoryCodes(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    """Features as one float matrix, categories as integer codes (-1: missing or unseen).

    For estimators with native categorical support (histogram gradient boosting, LightGBM,
    XGBoost). It replaces a ColumnTransformer of per-column encoders because serving calls it on
    one row at a time, where that costs milliseconds; this costs microseconds (dict look-ups for
    small batches, pandas' vectorised categorical codes for large ones).
    """

    _SMALL = 64
    selects_columns = True  # reads the features by name: give it the whole frame, no copy

    def __init__(self, features: list[str], categorical: list[str], impute: bool = False) -> None:
        self.features = features
        self.categorical = categorical
        self.impute = impute

    def fit(self, x: pd.DataFrame, y: Any = None) -> CategoryCodes:
        self.categories_: dict[str, list[str]] = {}
        self.codes_: dict[str, dict[str, int]] = {}
        for c in self.categorical:
            values = sorted({str(v) for v in x[c].dropna().unique()})
            self.categories_[c] = values
            self.codes_[c] = {v: i for i, v in enumerate(values)}
        numeric = [c for c in self.features if c not in self.codes_]
        self.medians_ = {c: float(pd.to_numeric(x[c], errors="coerce").median())
                         for c in numeric} if self.impute else {}
        self.n_features_in_ = len(self.features)
        return self

    def transform(self, x: pd.DataFrame) -> np.ndarray[Any, Any]:
        out = np.empty((len(x), len(self.features)), dtype=np.float64)
        small = len(x) <= self._SMALL
        for j, c in enumerate(self.features):
            codes = self.codes_.get(c)
            column = x[c]
            if codes is None:
                dtype = column.dtype
                if isinstance(dtype, np.dtype) and dtype.kind in "iuf":
                    values = column.to_numpy()  # numpy numbers: missing is NaN already, or none
                else:
                    if not pd.api.types.is_numeric_dtype(dtype):
                        column = pd.to_numeric(column, errors="coerce")
                    values = column.to_numpy(dtype=np.float64, na_value=np.nan)
                if c in self.medians_:
                    values = np.where(np.isnan(values), self.medians_[c], values)
                out[:, j] = values
            elif small:
                out[:, j] = [-1 if _missing(v) else codes.get(str(v), -1) for v in column]
            else:
                out[:, j] = self._codes(c, column)
        return out

    def _codes(self, c: str, column: pd.Series) -> np.ndarray[Any, Any]:
        """A column's category codes, -1 for missing or unseen values, vectorised."""
        dtype = column.dtype
        if isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow":
            # Arrow-backed text (pandas' default since 3.0): a hash look-up in Arrow, without
            # converting every value to a Python string first (5x faster).
            import pyarrow as pa
            import pyarrow.compute as pc

            values = pa.array(column.array)
            found = pc.index_in(values, value_set=self._lookup(c, values.type))
            arrow_codes: np.ndarray[Any, Any] = found.fill_null(-1).to_numpy(zero_copy_only=False)
            return arrow_codes
        codes: np.ndarray[Any, Any] = self._lookup(c, None).get_indexer(column.astype(str))
        codes[column.isna().to_numpy()] = -1
        return codes

    def _lookup(self, c: str, arrow_type: Any) -> Any:
        """Column ``c``'s categories as a pandas Index (``arrow_type`` None) or an Arrow array
        of that type; built once per model and kept out of its pickle."""
        cache: dict[tuple[str, Any], Any] = self.__dict__.setdefault("_lookups", {})
        key = (c, arrow_type)
        if key not in cache:
            if arrow_type is None:
                cache[key] = pd.Index(self.categories_[c])
            else:
                import pyarrow as pa

                cache[key] = pa.array(self.categories_[c], type=arrow_type)
        return cache[key]

    def __getstate__(self) -> dict[str, Any]:
        state: dict[str, Any] = super().__getstate__()
        return {k: v for k, v in state.items() if k != "_lookups"}

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray[Any, Any]:
        """:meth:`transform` of rows given as mappings, without building a DataFrame first.

        Online serving receives JSON rows; for a few of them pandas' frame construction costs
        more than the model. Numbers that do not parse become missing, as in :meth:`transform`.
        """
        out = np.empty((len(records), len(self.features)), dtype=np.float64)
        for j, c in enumerate(self.features):
            codes = self.codes_.get(c)
            values = [r[c] for r in records]
            if codes is not None:
                get = codes.get
                out[:, j] = [get(v, -1) if type(v) is str
                             else -1 if _missing(v) else get(str(v), -1) for v in values]
                continue
            try:  # numbers, None (missing) and numeric text, converted by numpy at C speed
                out[:, j] = np.asarray(values, dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                out[:, j] = [_number(v) for v in values]
            if c in self.medians_:
                column = out[:, j]
                column[np.isnan(column)] = self.medians_[c]
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray[Any, Any]:
        return np.asarray(self.features, dtype=object)


def _number(value: Any) -> float:
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return float("nan")


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _encoder(features: list[str], cats: list[str], *, native: bool, allow_nan: bool) -> Any:
    """Native categorical support: integer codes in feature order; else one-hot + scaling."""
    if native:
        return CategoryCodes(features, cats, impute=not allow_nan)
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    cat_step = make_pipeline(
        FunctionTransformer(_to_text, feature_names_out="one-to-one"),
        OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=64,
                      sparse_output=False),
    )
    numeric = [c for c in features if c not in cats]
    # Linear models, SVMs, k-NN: scale numbers so solvers converge and no unit dominates.
    num_step = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    transformers = [t for t in (("categorical", cat_step, cats), ("numeric", num_step, numeric))
                    if t[2]]
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)


def _to_text(x: Any) -> Any:
    """Categories as plain strings with missing values as a category of their own."""
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
                ("encode", _encoder(self.features, cats, native=True, allow_nan=True)),
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
                ("encode", _encoder(self.features, cats, native=True, allow_nan=True)),
                ("model", cls(**params)),
            ]
        )
        return model.fit(_inputs(train_df, self.features, model.steps[0][1]), y)
