"""A server whose experiment controller looks every 0.2 s, and small models to split between.

Assignment, outcomes and the controller do not depend on the database engine: they run on
SQLite; the one rule the database enforces (one running experiment per model and tenant) is
tested on every backend with the shared server (test_definitions.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from modelyard.client import Client
from modelyard.synthetic import example_request
from tests.conftest import ServerProcess, start_server, with_workflow

FEATURES = ["charge_type", "charge_amount", "charge_country", "card_age_days", "hour_of_day"]


@pytest.fixture(scope="session")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("experiments"), "sqlite",
                        "--experiment-interval", "0.2", "--concurrency", "2")
    yield proc
    proc.stop()


@pytest.fixture
def fast(fast_server: ServerProcess) -> Iterator[Client]:
    with fast_server.client() as c:
        yield c


@pytest.fixture(scope="session")
def fast_model(fast_server: ServerProcess) -> str:
    """A model on the fast server: v1 (production) and v2 the same small model, v3 one whose
    scores are the complement of theirs (its score distribution is far from theirs), v4 one
    that fails on a country its training rows lacked (:data:`UNSEEN`), v5 a slow one (120 ms
    a call)."""
    with fast_server.client() as client:
        return train_versions(client, ["Tiny", "Tiny", "Complement", "Unseen", "Slow"])


@pytest.fixture
def model(fast: Client, fast_model: str) -> Iterator[str]:
    """The fast server's model, with no experiment running once the test is done."""
    yield fast_model
    for experiment in fast.experiments(fast_model, state="running"):
        fast.stop_experiment(experiment["id"], reason="test over", actor="tests")


def train_versions(client: Client, workflows: list[str], name: str | None = None) -> str:
    """A model whose versions 1, 2, ... are ``workflows`` (fast ones on 2,000 rows); version
    1 is production."""
    name = name or f"exp-{uuid.uuid4().hex[:8]}"
    request = example_request("tiny.parquet")
    request["metadata"] = {**request["metadata"], "model_name": name}  # type: ignore[dict-item]
    # One at a time: a version's number is given when its job registers it, so jobs trained
    # side by side would number their versions in the order they end, which load decides.
    for i, w in enumerate(workflows):
        client.wait(client.train(with_workflow(request, w, seed=i)), 120)
    client.approve(name, 1, user="kelley", comment="first")
    return name


UNSEEN = "JP"  # a country the training rows' filter leaves out


def rows(n: int = 1, country: str = "US") -> list[dict[str, Any]]:
    return [{"charge_type": "card", "charge_amount": 10.0 + i, "charge_country": country,
             "card_age_days": 30 + i, "hour_of_day": i % 24} for i in range(n)]
