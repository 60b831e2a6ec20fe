"""Four eyes and audits through the real server: the submitter of a job cannot approve what it
trained, another approver can, a policy can waive it (and the audit says so); audits record the
token's identity, whatever name the body gives."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from modelyard.errors import Forbidden
from tests.api.conftest import TokenServer
from tests.conftest import example_request, with_workflow


def _train(token_server: TokenServer, name: str, as_who: str, **params: Any) -> str:
    request = with_workflow(example_request("tiny.parquet"), "Tiny", **params)
    request["metadata"] = {**request["metadata"], "model_name": name}  # type: ignore[dict-item]
    with token_server.client(as_who) as client:
        job_id = client.train(request)
        client.wait(job_id, timeout=120)
    return job_id


def test_the_submitter_cannot_approve_and_another_approver_can(
        token_server: TokenServer) -> None:
    name = f"four-eyes-{uuid.uuid4().hex[:8]}"
    job_id = _train(token_server, name, "ann")
    with token_server.client("ann") as ann, token_server.client("bob") as bob, \
            token_server.client("tom") as tom:
        jobs = ann.jobs(model_name=name)["jobs"]
        assert [(j["job_id"], j["submitted_by"]) for j in jobs] == [(job_id, "ann")]
        with pytest.raises(Forbidden, match=rf"another approver \(four eyes\): 'ann' "
                                            rf"submitted job {job_id}"):
            ann.approve(name, 1, comment="my own work")
        with pytest.raises(Forbidden, match="needs the approver role; 'tom' has trainer"):
            tom.approve(name, 1, comment="not mine to approve")
        assert ann.version(name, 1)["stage"] == "candidate"

        # The body's name is ignored: the audit records the token's identity.
        approved = bob.approve(name, 1, user="mallory", comment="checked the holdout")
        assert approved["stage"] == "production"
        event = bob.events(name)[0]
        assert (event["actor"], event["to_stage"]) == ("bob", "production")
        assert event["reason"] == "approved: checked the holdout"

        bob.set_policy(name, actor="mallory", auto_promote=False)
        assert bob.policy(name)["updated_by"] == "bob"


def test_a_policy_can_waive_four_eyes_and_the_audit_says_so(token_server: TokenServer) -> None:
    name = f"waived-{uuid.uuid4().hex[:8]}"
    job_id = _train(token_server, name, "ann")
    with token_server.client("ann") as ann:
        policy = ann.set_policy(name, actor="someone else", auto_promote=False, four_eyes=False)
        assert (policy["four_eyes"], policy["updated_by"]) == (False, "ann")
        assert ann.approve(name, 1, comment="solo on a sandbox model")["stage"] == "production"
        event = ann.events(name)[0]
        assert event["actor"] == "ann"
        assert event["reason"] == (
            "approved: solo on a sandbox model (four eyes waived by the model's policy (set by "
            f"ann): 'ann' submitted job {job_id}, which trained it)")


def test_stage_moves_and_cancels_record_the_token_identity(token_server: TokenServer) -> None:
    name = f"moves-{uuid.uuid4().hex[:8]}"
    _train(token_server, name, "tom")
    with token_server.client("bob") as bob, token_server.client("tom") as tom:
        bob.set_stage(name, 1, "shadow", actor="mallory", reason="live test")
        event = bob.events(name)[0]
        assert (event["actor"], event["to_stage"], event["reason"]) == ("bob", "shadow",
                                                                         "live test")
        request = with_workflow(example_request("tiny.parquet"), "Sleeps", seconds=60)
        job_id = tom.train(request)
        tom.cancel(job_id)
        reasons = [t["reason"] for t in tom.status(job_id)["transitions"]]
        assert "cancelled through the API by tom" in reasons
