"""``POST /labels`` says what the labels matched, through the real server: matched, unknown
(stored unless strict) and duplicates, against the predictions the production and shadow logs
hold."""

from __future__ import annotations

from typing import Any

import httpx
import pandas as pd
import pytest

from modelyard.client import Client
from tests.cli.test_cli import modelyard
from tests.conftest import ServerProcess
from tests.serving.test_serving_api import _predict, _rows, model

__all__ = ["model"]  # the fixture: a model with v1 in production and v2 a candidate

# Labels and the shadow log they match are parquet files: the job store plays no part.
pytestmark = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def _labels(url: str, name: str, labels: list[dict[str, Any]], **options: Any) -> httpx.Response:
    return httpx.post(f"{url}/labels", json={"model_name": name, "labels": labels, **options},
                      timeout=90)


def _served(server: ServerProcess, client: Client, name: str, rows: int = 3) -> str:
    """A request id of a prediction scored beside the model's shadow v2 (so it is logged)."""
    client.set_stage(name, 2, "shadow", actor="kelley", reason="labels")
    answer = _predict(server.url, name, _rows(server, rows)).json()
    request_id: str = answer["request_id"]
    return request_id


def test_labels_answer_what_they_matched(server: ServerProcess, client: Client,
                                         model: dict[str, Any]) -> None:
    name = model["name"]
    served = _served(server, client, name)
    batch = [{"request_id": served, "row": row, "label": 1.0} for row in (0, 1, 2, 0)]
    batch += [{"request_id": "never-served", "label": 0.0},
              {"request_id": served, "row": 99, "label": 0.0}]  # past the request's rows

    assert _labels(server.url, name, batch).json() == {
        "labels": 6, "matched": 4, "unknown": 2, "duplicates": 1,
        "unknown_examples": [{"request_id": "never-served", "row": 0},
                             {"request_id": served, "row": 99}]}
    # Unknown labels were stored: sent again, they are duplicates, as is a matched one.
    again = _labels(server.url, name, [{"request_id": "never-served", "label": 1.0},
                                       {"request_id": served, "row": 1, "label": 0.0}]).json()
    assert again == {"labels": 2, "matched": 1, "unknown": 1, "duplicates": 2,
                     "unknown_examples": [{"request_id": "never-served", "row": 0}]}
    (entry,) = client.shadow_report(name)["shadows"]
    assert entry["rows"] == entry["labelled_rows"] == 3  # the log's rows; unknown ones join none


def test_strict_refuses_the_whole_batch_and_names_the_unknown(
        server: ServerProcess, client: Client, model: dict[str, Any]) -> None:
    name = model["name"]
    served = _served(server, client, name)
    unknown = [{"request_id": f"nope-{i:02d}", "label": 1.0} for i in range(25)]
    unknown[3]["request_id"] = "x" * 5000
    refused = _labels(server.url, name, [{"request_id": served, "label": 1.0}, *unknown],
                      strict=True)
    assert refused.status_code == 422
    message = refused.json()["message"]
    assert message.startswith(f"strict: 25 of 26 labels match no logged prediction of "
                              f"{name!r}: 'nope-00' row 0, 'nope-01' row 0, 'nope-02' row 0, "
                              f"'{'x' * 64}...' row 0, ")
    assert "'nope-09' row 0 and 15 more; nothing was stored" in message
    assert "x" * 65 not in refused.text and "nope-10" not in message

    # Nothing was stored: the matched label is no duplicate now; a strict batch that matches
    # is stored.
    assert _labels(server.url, name, [{"request_id": served, "label": 1.0}], strict=True
                   ).json() == {"labels": 1, "matched": 1, "unknown": 0, "duplicates": 0,
                                "unknown_examples": []}
    answer = _labels(server.url, name, unknown).json()
    assert (answer["labels"], answer["unknown"], len(answer["unknown_examples"])) == (25, 25, 10)
    assert answer["unknown_examples"][3] == {"request_id": "x" * 64 + "...", "row": 0}


def test_predictions_without_a_shadow_are_in_the_production_log_so_their_labels_match(
        server: ServerProcess, model: dict[str, Any]) -> None:
    name = model["name"]  # production v1, no shadow: the production log holds its predictions
    served = _predict(server.url, name, _rows(server, 2)).json()["request_id"]
    answer = _labels(server.url, name, [{"request_id": served, "row": r, "label": 1.0}
                                        for r in (0, 1)]).json()
    assert (answer["labels"], answer["matched"], answer["unknown"]) == (2, 2, 0)
    refused = _labels(server.url, name, [{"request_id": "never-served", "label": 1.0}],
                      strict=True)
    assert refused.status_code == 422
    message = refused.json()["message"]
    assert "Predictions are logged by the server that answered them (the --log-sample" in message
    assert "only" not in message and "while the model has a shadow" not in message


def test_the_labels_command_says_what_matched_and_strict_refuses(
        server: ServerProcess, client: Client, model: dict[str, Any]) -> None:
    name = model["name"]
    served = _served(server, client, name, rows=2)
    pd.DataFrame({"request_id": [served, served, "stranger"], "row": [0, 1, 0],
                  "label": [True, False, True]}
                 ).to_parquet(server.home / "data" / f"cli-labels-{name}.parquet")

    strict = modelyard("models", "labels", name, f"cli-labels-{name}.parquet", "--strict",
                       url=server.url)
    assert strict.returncode == 2
    assert "strict: 1 of 3 labels match no logged prediction" in strict.stdout
    assert "'stranger' row 0" in strict.stdout
    added = modelyard("models", "labels", name, f"cli-labels-{name}.parquet", url=server.url)
    assert added.returncode == 0, added.stdout + added.stderr
    assert (f"3 labels added to '{name}': 2 matched a logged prediction, 1 unknown (stored), "
            "0 duplicates") in added.stdout
    assert "unknown: stranger row 0" in added.stdout
