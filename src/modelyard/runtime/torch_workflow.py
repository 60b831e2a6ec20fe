"""A built-in PyTorch workflow: a tabular MLP that trains on the GPU when the request asks for one.

``compute_resource: GPU`` trains on ``cuda`` and fails at once, with a message, when the worker
sees no CUDA device (rather than silently training on the CPU); CPU and HIGH_MEMORY train on the
CPU. ``custom_params``: ``hidden`` (layer sizes, default [64, 64]), ``epochs`` (default 10),
``batch_size`` (default 1024), ``lr`` (default 1e-3), ``seed`` (default 0). Text columns are
one-hot encoded and numbers standardised. Every epoch's loss, time and device go to the job's
log, and ``model.history_`` keeps its loss and device (not its time, so that the same request
pickles to the same bytes, the same model id). The fitted model is moved to the CPU before it is
stored, so it predicts anywhere.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import WorkflowError
from modelyard.request.models import ComputeResource
from modelyard.runtime.workflow import Workflow

log = logging.getLogger("modelyard.torch")


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise WorkflowError(
            "the torch workflow needs PyTorch: pip install 'modelyard[torch]' (or torch itself)"
        ) from None
    return torch


class TabularNet:
    """The fitted model: encoder + network weights (CPU), with an sklearn-like predict API."""

    def __init__(self, encoder: Any, state: dict[str, Any], layers: list[int], task: str,
                 classes: list[Any] | None, history: list[dict[str, Any]]) -> None:
        self.encoder = encoder
        self.state = state
        self.layers = layers
        self.task = task
        self.classes_ = np.asarray(classes) if classes is not None else None
        self.history_ = history

    def _net(self) -> Any:
        torch = _torch()
        net = _build(torch, self.layers)
        # NumPy arrays; models stored before them hold tensors, which as_tensor takes too.
        net.load_state_dict({k: torch.as_tensor(v) for k, v in self.state.items()})
        net.eval()
        return net

    def _raw(self, x: pd.DataFrame) -> np.ndarray[Any, Any]:
        torch = _torch()
        features = np.asarray(self.encoder.transform(x), dtype=np.float32)
        with torch.no_grad():
            out = self._net()(torch.from_numpy(features)).squeeze(-1)
        return np.asarray(out.numpy())

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray[Any, Any]:
        if self.task != "binary":
            raise AttributeError("predict_proba is for binary models")
        p = 1.0 / (1.0 + np.exp(-self._raw(x)))
        proba: np.ndarray[Any, Any] = np.column_stack([1.0 - p, p])
        return proba

    def predict(self, x: pd.DataFrame) -> np.ndarray[Any, Any]:
        raw = self._raw(x)
        if self.task == "binary" and self.classes_ is not None:
            labels: np.ndarray[Any, Any] = np.asarray(self.classes_)[(raw > 0).astype(int)]
            return labels
        return raw


def _build(torch: Any, layers: list[int]) -> Any:
    modules: list[Any] = []
    for a, b in zip(layers[:-2], layers[1:-1], strict=True):
        modules += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    modules.append(torch.nn.Linear(layers[-2], layers[-1]))
    return torch.nn.Sequential(*modules)


class TorchWorkflow(Workflow):
    """A multi-layer perceptron for binary classification or regression."""

    name = "torch"

    def device(self) -> str:
        torch = _torch()
        if self.request.compute_resource is ComputeResource.GPU:
            if not torch.cuda.is_available():
                raise WorkflowError(
                    "compute_resource is GPU but this worker sees no CUDA device "
                    "(torch.cuda.is_available() is False); run it where a GPU is visible "
                    "(e.g. --executor ray on a GPU node) or set compute_resource: CPU"
                )
            return "cuda"
        return "cpu"

    def train(self, train_df: pd.DataFrame, holdout_df: pd.DataFrame) -> Any:
        from modelyard.runtime.builtin import _categorical_columns
        from modelyard.runtime.encoders import encoder_for
        from modelyard.runtime.evaluation import infer_task

        torch = _torch()
        device = self.device()
        params = {"hidden": [64, 64], "epochs": 10, "batch_size": 1024, "lr": 1e-3, "seed": 0,
                  **self.custom_params}
        task = self.task or infer_task(train_df[self.label])
        if task == "multiclass":
            raise WorkflowError("the torch workflow does binary classification and regression")
        torch.manual_seed(int(params["seed"]))
        encoder = encoder_for(self.features, _categorical_columns(train_df, self.features),
                              native=False, allow_nan=False)
        x = np.asarray(encoder.fit_transform(train_df[self.features]), dtype=np.float32)
        y_raw = train_df[self.label]
        classes = sorted(y_raw.dropna().unique().tolist()) if task == "binary" else None
        y = (y_raw == classes[-1]).to_numpy(np.float32) if classes else y_raw.to_numpy(np.float32)
        layers = [x.shape[1], *[int(h) for h in params["hidden"]], 1]
        net = _build(torch, layers).to(device)
        loss_fn = torch.nn.BCEWithLogitsLoss() if task == "binary" else torch.nn.MSELoss()
        optimiser = torch.optim.Adam(net.parameters(), lr=float(params["lr"]))
        xs, ys = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        generator = torch.Generator(device=device).manual_seed(int(params["seed"]))
        batch = int(params["batch_size"])
        history = []
        for epoch in range(int(params["epochs"])):
            started = time.perf_counter()
            order = torch.randperm(len(xs), device=device, generator=generator)
            total = 0.0
            for i in range(0, len(xs), batch):
                idx = order[i:i + batch]
                optimiser.zero_grad()
                loss = loss_fn(net(xs[idx]).squeeze(-1), ys[idx])
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(idx)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
            entry = {"epoch": epoch + 1, "loss": total / len(xs), "device": device}
            history.append(entry)
            log.info("epoch %d: loss %.5f, %.3f s on %s%s", epoch + 1, entry["loss"], seconds,
                     device, f" ({torch.cuda.get_device_name()})" if device == "cuda" else "")
        # NumPy arrays, not tensors: a pickled tensor holds a serialization id of its own, so
        # the same weights would pickle to other bytes (another model id) every time.
        state = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
        return TabularNet(encoder, state, layers, task, classes, history)
