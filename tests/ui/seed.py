"""What the UI tests look at, put into a real server through its public API (see conftest.py).

Everything goes through HTTP as a user's would: named tokens made by the server's admin, jobs
submitted by a trainer, an approval with a comment by an approver, predictions and labels for
a shadow. The data is the test home's synthetic payments (tests/conftest.py ``make_home``):
20,000 rows, enough for curves with shape, trained in about a second per model.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from modelyard.client import Client
from modelyard.synthetic import example_request
from tests.conftest import ServerProcess, with_workflow

FEATURES = ["charge_type", "charge_amount", "charge_country", "card_age_days", "hour_of_day"]
PEOPLE = {"ann": "trainer", "bob": "approver", "vera": "viewer"}
APPROVAL_COMMENT = "checked ROC and calibration on the Q4 holdout"
FAILING_TENANT = "m00001"
SHADOW_ROWS = 300
HYPOTHESIS = "v2 converts more <b>visitors</b>"
EXPERIMENT_REQUESTS = 60


@dataclass(frozen=True)
class Seeded:
    """The ids of what the seeded server holds. Jobs are submitted by ``ann`` (trainer), so the
    browser's admin (``MODELYARD_TOKEN``, identity ``token``) may approve them (four eyes).

    Attributes:
        binary_model: ``ui-fraud``: v1 (``binary_jobs[0]``) in production, approved by ``bob``
            with :attr:`approval_comment`; v2 (``binary_jobs[1]``, trained against v1, so its
            evidence scores production on the same rows) a shadow, with
            :data:`SHADOW_ROWS` predictions and their labels. Do not move its stages: the
            shadow report and the audit log tests read them.
        binary_jobs: the jobs that trained v1 and v2 (compare them).
        approval_comment: the comment of ``bob``'s approval of v1.
        regression_job, regression_model: a regression (label ``charge_amount``), succeeded.
        multiclass_job, multiclass_model: three classes (``amount_band``), succeeded.
        failed_job: failed with a data error; its reason contains :attr:`failed_reason`.
        failed_reason: a fragment of that reason a user must see.
        fleet_job, fleet_model: a fleet parent (tenant column ``merchant_id``, a few tenants
            qualify, most are skipped for too few rows, plus the global model); the tenant
            :attr:`failing_tenant` failed (its workflow raises while :attr:`fleet_marker`
            exists: delete the file, then retry, to see it succeed).
        approvable_model: v1 a candidate, nothing else: the one model a test may approve,
            stage or roll back.
        experiment_model: ``ui-experiment``: v1 production, v2 a candidate.
        experiment_id: a running A/B experiment between its v1 and v2 (hypothesis
            :data:`HYPOTHESIS`), with :data:`EXPERIMENT_REQUESTS` requests served and their
            outcomes; a test may stop it.
        tokens: each seeded person's token (``ann`` trainer, ``bob`` approver, ``vera``
            viewer), to log in as someone other than the admin.
    """

    binary_model: str
    binary_jobs: tuple[str, str]
    approval_comment: str
    regression_job: str
    regression_model: str
    multiclass_job: str
    multiclass_model: str
    failed_job: str
    failed_reason: str
    fleet_job: str
    fleet_model: str
    failing_tenant: str
    fleet_marker: Path
    approvable_model: str
    experiment_model: str
    experiment_id: str
    tokens: dict[str, str]


def _request(name: str, path: str = "payments.parquet", workflow: str = "sklearn",
             **params: Any) -> dict[str, Any]:
    request = with_workflow(example_request(path), workflow, **params)
    request["metadata"] = {**request["metadata"], "model_name": name,  # type: ignore[dict-item]
                           "project": "ui-tests"}
    return copy.deepcopy(request)


def _regression() -> dict[str, Any]:
    request = _request("ui-amount", max_iter=20)
    request["train"] |= {"label": "charge_amount",
                         "classifier_features": ["charge_type", "card_age_days", "hour_of_day"]}
    return request


def _multiclass(home: Path) -> dict[str, Any]:
    """Three amount bands as a text label, in a file of its own beside the payments."""
    table = pq.read_table(home / "data" / "payments.parquet")
    amount = table["charge_amount"].to_numpy()
    band = np.where(amount < 20, "low", np.where(amount < 80, "mid", "high"))
    pq.write_table(table.append_column("amount_band", pa.array(band)),
                   home / "data" / "bands.parquet")
    request = _request("ui-bands", "bands.parquet", max_iter=20)
    request["data"]["features"]["names"] = ["created_at", "charge_amount", "hour_of_day",
                                            "amount_band"]
    request["filters"] = []
    request["train"] |= {"label": "amount_band",
                         "classifier_features": ["charge_amount", "hour_of_day"]}
    return request


def _fleet(marker: Path) -> dict[str, Any]:
    request = _request("ui-fleet", workflow="FailsForOne", fail_marker=str(marker),
                       fail_tenant=FAILING_TENANT)
    request["data"]["features"]["names"].append("merchant_id")
    request["tenants"] = {"column": "merchant_id", "min_training_rows": 400}
    return request


def _shadow_traffic(server: ServerProcess, ann: Client, model: str) -> None:
    """Predictions scored by production and the shadow, then their labels."""
    frame = pd.read_parquet(server.home / "data" / "payments.parquet").sample(
        SHADOW_ROWS, random_state=3)
    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in frame[FEATURES].to_dict("records")]
    truth = frame["has_fraud_dispute"].astype(float).tolist()
    labels = []
    for start in range(0, SHADOW_ROWS, 30):
        answer = ann.predict(model, rows[start:start + 30])
        labels += [{"request_id": answer["request_id"], "row": i, "label": truth[start + i]}
                   for i in range(len(answer["scores"]))]
    ann.add_labels(model, labels)
    (shadow,) = ann.shadow_report(model)["shadows"]
    if shadow["labelled_rows"] != SHADOW_ROWS:
        raise RuntimeError(f"seeding: the shadow of {model} has {shadow['labelled_rows']} "
                           f"labelled rows, not {SHADOW_ROWS}: {shadow}")


def _experiment(ann: Client, bob: Client, model: str) -> str:
    """A second version of ``model``, v1 approved, an A/B between them with requests and
    outcomes (v2's rewards twice as often); the experiment's id."""
    ann.wait(ann.train(_request(model, "tiny.parquet", "Tiny", seed=1)), timeout=120)
    bob.approve(model, 1, comment="first")
    experiment = bob.create_experiment({
        "model_name": model, "type": "ab", "hypothesis": HYPOTHESIS,
        "arms": [{"name": "control", "version": 1}, {"name": "new", "version": 2}],
        "guardrails": {"max_error_rate": 0.05, "min_traffic": 10},
        "stopping": {"min_outcomes": 1000}})
    answers = [ann.predict(model, [{"charge_type": "card", "charge_amount": 10.0 + i,
                                    "charge_country": "US", "card_age_days": 30,
                                    "hour_of_day": i % 24}], unit=f"visitor-{i}")
               for i in range(EXPERIMENT_REQUESTS)]
    ann.add_outcomes([{"request_id": a["request_id"],
                       "reward": float(i % (2 if a["arm"] == "new" else 4) == 0)}
                      for i, a in enumerate(answers)])
    return str(experiment["id"])


def seed(server: ServerProcess, admin: Client) -> Seeded:
    """Fill ``server`` (auth on, ``admin`` holding its ``MODELYARD_TOKEN``) with the jobs,
    versions, fleet, shadow and approval of :class:`Seeded`."""
    tokens = {name: admin.create_token(name, role)["token"] for name, role in PEOPLE.items()}
    marker = server.home / "fail-tenant"
    marker.write_text(FAILING_TENANT)
    failing = _request("ui-broken", "corrupt.parquet")
    with Client(server.url, token=tokens["ann"], timeout=60) as ann, \
            Client(server.url, token=tokens["bob"], timeout=60) as bob:
        first = ann.train(_request("ui-fraud", max_iter=10))
        others = {"regression": ann.train(_regression()),
                  "multiclass": ann.train(_multiclass(server.home)),
                  "failed": ann.train(failing),
                  "fleet": ann.train(_fleet(marker)),
                  "approvable": ann.train(_request("ui-approvable", "tiny.parquet", "Tiny")),
                  "experiment": ann.train(_request("ui-experiment", "tiny.parquet", "Tiny"))}
        ann.wait(first, timeout=120)
        bob.approve("ui-fraud", 1, comment=APPROVAL_COMMENT)
        second = ann.train(_request("ui-fraud", max_iter=40))
        ann.wait(second, timeout=120)
        bob.set_stage("ui-fraud", 2, "shadow", reason="try it on live traffic")
        _shadow_traffic(server, ann, "ui-fraud")
        for kind, job_id in others.items():
            ann.wait(job_id, timeout=120, raise_on_failure=kind != "failed")
        experiment = _experiment(ann, bob, "ui-experiment")
    return Seeded(
        binary_model="ui-fraud", binary_jobs=(first, second), approval_comment=APPROVAL_COMMENT,
        regression_job=others["regression"], regression_model="ui-amount",
        multiclass_job=others["multiclass"], multiclass_model="ui-bands",
        failed_job=others["failed"], failed_reason="is not readable as parquet",
        fleet_job=others["fleet"], fleet_model="ui-fleet", failing_tenant=FAILING_TENANT,
        fleet_marker=marker, approvable_model="ui-approvable",
        experiment_model="ui-experiment", experiment_id=experiment, tokens=tokens)
