"""The baseline of ``benchmarks/serving.py``: a minimal FastAPI endpoint around a pickled model.

Written the straightforward way a team would write it (FastAPI's documented pattern for blocking
work: a plain ``def`` endpoint, which FastAPI runs in its thread pool; a pydantic body; a
DataFrame from the rows; ``predict_proba``). No batching, no routing, no shadows.

Run by the benchmark as::

    BASELINE_MODEL=path/to/blob BASELINE_FEATURES=a,b,c \
        python -m uvicorn _baseline_app:app --app-dir benchmarks --port 8000
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

with open(os.environ["BASELINE_MODEL"], "rb") as fh:
    model = pickle.load(fh)  # noqa: S301 - the benchmark's own model
FEATURES = os.environ["BASELINE_FEATURES"].split(",")

app = FastAPI()


class PredictIn(BaseModel):
    rows: list[dict[str, Any]]


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/predict")
def predict(body: PredictIn) -> dict[str, list[float]]:
    frame = pd.DataFrame(body.rows, columns=FEATURES)
    return {"scores": model.predict_proba(frame)[:, 1].tolist()}
