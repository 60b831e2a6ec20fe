"""compute_resource: GPU really means a GPU: the torch workflow trains on cuda, and fails with a
clear message where no GPU is visible. CI machines have none, so these tests check that message
and the CPU path; ``python benchmarks/gpu_proof.py`` runs the GPU path where a GPU is."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelyard.client import Client
from modelyard.errors import JobFailed
from tests.conftest import IN_CI, with_workflow

# CI installs every extra, so there a missing torch fails this module instead of skipping it.
if IN_CI:
    import torch
else:
    torch = pytest.importorskip("torch", reason="torch is not installed "
                                                "(pip install 'modelyard[torch]')")


# Where a job trains is the worker's business; the job store only records it: SQLite alone.
pytestmark = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_request_without_a_gpu_fails_with_a_clear_message(
    client: Client, fraud_request: dict[str, Any]
) -> None:
    request = copy.deepcopy(with_workflow(fraud_request, "torch", epochs=1))
    request["compute_resource"] = "GPU"
    job_id = client.train(request)
    with pytest.raises(JobFailed, match=r"compute_resource is GPU but this worker sees no CUDA "
                                        r"device .* set compute_resource: CPU"):
        client.wait(job_id, timeout=180)


def test_the_torch_workflow_trains_on_cpu_and_logs_each_epoch(
    client: Client, fraud_request: dict[str, Any]
) -> None:
    job_id = client.train(with_workflow(fraud_request, "torch", epochs=4, hidden=[16], lr=0.01,
                                      batch_size=256))
    answer = client.wait(job_id, timeout=180)
    assert answer["result"]["metrics"]["roc_auc"] > 0.55
    log, _ = client.logs(job_id)
    assert "epoch 1: loss" in log and "epoch 2: loss" in log and " on cpu" in log
