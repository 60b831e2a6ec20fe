"""Workflows the test server is started with (``--workflows``): each misbehaves in one way."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import make_column_selector, make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from modelyard import Workflow


class Tiny(Workflow):
    """A fast, well-behaved model on the numeric features."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        numeric = make_column_transformer(
            ("passthrough", make_column_selector(dtype_include=np.number)))
        model = make_pipeline(numeric, LogisticRegression(max_iter=200))
        return model.fit(train_df[self.features], train_df[self.label])


class Raises(Workflow):
    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        raise ValueError(f"boom: max_depth={self.custom_params.get('max_depth')} is not allowed")


class Killed(Workflow):
    """Dies by SIGKILL, as under the kernel's out-of-memory killer."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        os.kill(os.getpid(), signal.SIGKILL)


class Exits(Workflow):
    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        os._exit(3)


class Hog(Workflow):
    """Asks for far more memory than the server's per-job limit."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        block = np.ones(int(self.custom_params.get("gib", 64)) * 2**27)  # 8 bytes each
        return block.sum()


class Sleeps(Workflow):
    """Sleeps, optionally beside a child process of its own; prints its pids to the log."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        if self.custom_params.get("child"):
            child = subprocess.Popen(["sleep", "300"])
            print(f"child pid {child.pid}", flush=True)
        print(f"worker pid {os.getpid()}", flush=True)
        time.sleep(float(self.custom_params.get("seconds", 60)))
        return Tiny(self.request).train(train_df, holdout_df)


class Chatty(Workflow):
    """Writes to stdout and stderr, which must land in the job's log."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        import sys

        print("hello from stdout", flush=True)
        print("hello from stderr", file=sys.stderr, flush=True)
        os.system("echo hello from a subprocess")
        return Tiny(self.request).train(train_df, holdout_df)


class FailsForOne(Workflow):
    """Fails for one tenant while a marker file exists (to test partial failure and retry)."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        marker, tenant = self.custom_params["fail_marker"], self.custom_params["fail_tenant"]
        if os.path.exists(marker) and (train_df["merchant_id"] == tenant).all():
            if self.custom_params.get("how") == "kill":  # as the out-of-memory killer would
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"tenant {tenant} fails on purpose")
        return Tiny(self.request).train(train_df, holdout_df)


class ReportsThreads(Workflow):
    """Writes the native thread pools' sizes, as the job sees them, to custom_params["out"]."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        import json

        from threadpoolctl import threadpool_info

        sizes = sorted({lib["num_threads"] for lib in threadpool_info()})
        with open(self.custom_params["out"], "w") as fh:
            json.dump(sizes, fh)
        return Tiny(self.request).train(train_df, holdout_df)


class Complement(Workflow):
    """Overrides ``predict``: the negative class's probability. Serving and both export formats
    must score with this override, not the default (tests/serving/test_clean_export.py)."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        return Tiny(self.request).train(train_df, holdout_df)

    def predict(self, model: Any, df: pd.DataFrame) -> np.ndarray[Any, Any]:
        return 1.0 - super().predict(model, df)


class Unseeded(Workflow):
    """A forest seeded from the operating system: the same request trains other bytes. (Not
    ``random_state=None``: workers forked from one fork server share NumPy's global state.)"""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        from sklearn.ensemble import RandomForestClassifier

        numeric = make_column_transformer(
            ("passthrough", make_column_selector(dtype_include=np.number)))
        seed = int.from_bytes(os.urandom(4), "little")
        forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=seed)
        return make_pipeline(numeric, forest).fit(train_df[self.features], train_df[self.label])


class Unseen(Workflow):
    """Trains well, then fails in serving on a ``charge_country`` its training rows never had:
    a per-country lookup without a fallback, the bug a live experiment should catch."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        model = Tiny(self.request).train(train_df, holdout_df)
        model.countries_ = set(train_df["charge_country"])
        return model

    def predict(self, model: Any, df: pd.DataFrame) -> np.ndarray[Any, Any]:
        unseen = sorted(set(df["charge_country"]) - model.countries_)
        if unseen:
            raise KeyError(f"charge_country {unseen[0]!r} was not in the training rows")
        return super().predict(model, df)


class Slow(Workflow):
    """Scores well but slowly: ``custom_params["ms"]`` (default 120) per predict call."""

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        return Tiny(self.request).train(train_df, holdout_df)

    def predict(self, model: Any, df: pd.DataFrame) -> np.ndarray[Any, Any]:
        time.sleep(float(self.custom_params.get("ms", 120)) / 1000)
        return super().predict(model, df)
