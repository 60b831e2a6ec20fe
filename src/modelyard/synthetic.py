"""A synthetic payments dataset with a learnable fraud label, for the demo, tests and benchmarks.

Merchants have a skewed (Zipf-like) size distribution, as real ones do: a few large merchants hold
most charges and a long tail has a handful each. Charges span one year (2018), in several
countries and charge types; fraud depends on amount, charge type, country, card age, hour of day
and a per-merchant risk, so a model can learn it and a holdout AUC well above 0.5 is expected.

``python -m modelyard.synthetic data/payments.parquet`` writes the dataset the README's quick
start trains on.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

COUNTRIES = ["US", "CA", "GB", "FR", "DE", "BR", "IN", "JP", "MX", "AU"]
COUNTRY_P = [0.42, 0.09, 0.1, 0.07, 0.08, 0.07, 0.06, 0.05, 0.04, 0.02]
COUNTRY_RISK = [0.0, -0.2, 0.1, 0.0, -0.1, 0.7, 0.6, -0.4, 0.5, 0.1]
CHARGE_TYPES = ["card_present", "card_not_present", "recurring", "wallet"]
CHARGE_TYPE_P = [0.35, 0.4, 0.15, 0.1]
CHARGE_TYPE_RISK = [-1.0, 0.9, -0.6, 0.2]
START = dt.datetime(2018, 1, 1)


def payments_table(rows: int = 100_000, merchants: int = 1_000, seed: int = 0,
                   start: dt.datetime = START, days: int = 365, shift: float = 0.0) -> pa.Table:
    """Generate ``rows`` charges from ``merchants`` merchants over ``days`` days from ``start``
    (deterministic for its arguments).

    ``shift`` (0 to 1) moves the world the way fraud moves: a fraud ring working through
    wallets takes hold, so wallet charges and larger amounts grow more common (the features
    drift) and wallet charges turn risky (a model trained before the shift decays).
    """
    rng = np.random.default_rng(seed)
    type_p = np.asarray(CHARGE_TYPE_P) * (1 - shift) + np.asarray([0.2, 0.3, 0.1, 0.4]) * shift
    type_risk = np.asarray(CHARGE_TYPE_RISK) + np.asarray([0.0, -0.6, 0.0, 2.4]) * shift
    weights = 1.0 / np.arange(1, merchants + 1) ** 1.1
    weights /= weights.sum()
    merchant = rng.choice(merchants, size=rows, p=weights)
    merchant_risk = rng.normal(0.0, 0.6, size=merchants)[merchant]
    country = rng.choice(len(COUNTRIES), size=rows, p=COUNTRY_P)
    ctype = rng.choice(len(CHARGE_TYPES), size=rows,
                       p=type_p / type_p.sum() if shift else CHARGE_TYPE_P)
    amount = np.round(rng.lognormal(mean=3.6 + 0.6 * shift, sigma=1.1, size=rows), 2)
    card_age = rng.exponential(400.0, size=rows).astype(np.int32)
    seconds = np.sort(rng.integers(0, days * 24 * 3600, size=rows))
    created = np.datetime64(start, "us") + seconds.astype("timedelta64[s]").astype(
        "timedelta64[us]"
    )
    hour = (seconds // 3600) % 24
    logit = (
        -4.2
        + 0.55 * (np.log(amount) - 3.6)
        + type_risk[ctype]
        + np.asarray(COUNTRY_RISK)[country]
        - 0.9 * np.minimum(card_age, 1000) / 1000
        + 0.6 * ((hour < 6) | (hour > 22))
        + merchant_risk
    )
    fraud = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))
    return pa.table(
        {
            "charge_id": pa.array(np.arange(rows, dtype=np.int64)),
            "merchant_id": pa.array([f"m{m:05d}" for m in merchant]),
            "created_at": pa.array(created, type=pa.timestamp("us")),
            "charge_type": pa.array(np.asarray(CHARGE_TYPES)[ctype]),
            "charge_amount": pa.array(amount),
            "charge_country": pa.array(np.asarray(COUNTRIES)[country]),
            "card_age_days": pa.array(card_age),
            "hour_of_day": pa.array(hour.astype(np.int32)),
            "has_fraud_dispute": pa.array(fraud),
        }
    )


def write_payments(
    path: str | Path, rows: int = 100_000, merchants: int = 1_000, seed: int = 0,
    start: dt.datetime = START, days: int = 365, shift: float = 0.0,
) -> Path:
    """Write the synthetic payments as one parquet file (128k-row row groups); return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(payments_table(rows, merchants, seed, start, days, shift), tmp,
                   row_group_size=128 * 1024)
    tmp.replace(path)
    return path


def example_request(path: str = "data/payments.parquet", **train: object) -> dict[str, object]:
    """The Railyard-shaped request the demo submits, as a mapping."""
    request: dict[str, object] = {
        "metadata": {
            "model_name": "fraud prediction model",
            "model_description": "A model to predict fraud",
            "owner": "machine-learning-infrastructure",
            "project": "modelyard-demo",
            "trainer": "demo",
        },
        "data": {
            "features": {
                "names": [
                    "created_at",
                    "charge_type",
                    "charge_amount",
                    "charge_country",
                    "card_age_days",
                    "hour_of_day",
                    "has_fraud_dispute",
                ],
                "path": path,
            },
            "date_column": "created_at",
        },
        "filters": [
            {
                "feature_name": "charge_country",
                "predicate": "IsIn",
                "feature_value": {"string_vals": ["US", "CA", "GB", "FR", "DE", "BR", "MX"]},
            }
        ],
        "holdout_sampling": {
            "sampling_function": "DATE_RANGE",
            "date_range_sampling": {
                "date_column": "created_at",
                "start_date": "2018-10-01",
                "end_date": "2019-01-01",
            },
        },
        "train": {
            "workflow_name": "sklearn",
            "classifier_features": [
                "charge_type",
                "charge_amount",
                "charge_country",
                "card_age_days",
                "hour_of_day",
            ],
            "label": "has_fraud_dispute",
            "custom_params": {
                "estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                "max_depth": 6,
                "max_iter": 200,
                "learning_rate": 0.1,
            },
        },
        "compute_resource": "CPU",
    }
    request["train"] = {**request["train"], **train}  # type: ignore[dict-item]
    return request


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m modelyard.synthetic PATH [--rows N] [--merchants N] [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m modelyard.synthetic",
        description="Write synthetic payments (a learnable fraud label) as one parquet file.",
    )
    parser.add_argument("path", type=Path, help="parquet file to write, e.g. data/payments.parquet")
    parser.add_argument("--rows", type=int, default=100_000, help="charges (default: 100,000)")
    parser.add_argument("--merchants", type=int, default=1_000, help="merchants (default: 1,000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    path = write_payments(args.path, rows=args.rows, merchants=args.merchants, seed=args.seed)
    print(f"wrote {args.rows:,} synthetic charges from {args.merchants:,} merchants to {path}")


if __name__ == "__main__":
    main()
