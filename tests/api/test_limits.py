"""What the server reads is bounded, through the real server: body sizes (413 before the body is
read), rows per predict request, caps in the train request, 422 answers that summarise instead
of echoing, names that can be served, and /healthz answering while a large body is parsed.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from modelyard.client import Client
from modelyard.errors import ConfigurationError
from modelyard.settings import Settings
from tests.conftest import ServerProcess, start_server, with_workflow
from tests.serving.test_serving_api import FEATURES, _predict

MiB = 2**20
# Body limits, request caps, names and parsing are the API's, whatever the job store: the tests
# on the shared server run on SQLite alone, but for a name the registry stores and serves.
SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server with a 1 MiB body limit, a 4 MiB one for predict and at most 5 rows per predict
    request, set by its flags."""
    proc = start_server(tmp_path_factory.mktemp("small-limits"), "sqlite",
                        "--concurrency", "1", "--max-body-bytes", str(MiB),
                        "--max-predict-body-bytes", str(4 * MiB), "--max-predict-rows", "5")
    yield proc
    proc.stop()


def raw_post(server: ServerProcess, path: str, parts: Iterable[bytes], *,
             content_length: int | None, timeout: float = 10.0) -> tuple[int, dict[str, str],
                                                                         bytes, int]:
    """POST ``parts`` over a plain socket and stop sending as soon as an answer arrives.

    ``content_length=None`` sends the parts chunked, without the final chunk: the body never
    ends, so only a server that answers before reading all of it answers at all.

    Returns:
        the status, the headers, the body, and how many body bytes were sent.
    """
    framing = (f"Content-Length: {content_length}" if content_length is not None
               else "Transfer-Encoding: chunked")
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{framing}\r\n\r\n").encode()
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(head)
        for part in parts:
            if select.select([sock], [], [], 0)[0]:
                break  # answered already
            data = part if content_length is not None else b"%x\r\n%s\r\n" % (len(part), part)
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(part)
        answer = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in answer or len(answer) < _answer_length(answer):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no complete answer within {timeout} s: {answer[:200]!r}")
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    head_text, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head_text.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body, sent


def _answer_length(answer: bytes) -> int:
    head, sep, _ = answer.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + len(sep) + int(value)
    return len(answer) + 1


def pieces(total: int, size: int = 64 * 1024) -> Iterator[bytes]:
    """``total`` bytes of the start of a JSON array, ``size`` at a time."""
    yield b"[" + b"0," * (size // 2 - 1)
    for _ in range(total // size):
        yield b"0," * (size // 2)


# --------------------------------------------------------------------------------------------
# 1. body size: 413 before the body is read


@SQLITE
def test_a_body_declared_over_the_limit_gets_413_before_it_is_sent(server: ServerProcess
                                                                    ) -> None:
    started = time.monotonic()
    status, headers, body, sent = raw_post(server, "/train", pieces(50 * MiB),
                                           content_length=50 * MiB)
    assert status == 413
    assert time.monotonic() - started < 5
    assert sent < 50 * MiB  # answered while the client was still sending
    assert headers["connection"] == "close" and headers["content-type"] == "application/json"
    answer = json.loads(body)
    assert answer["error"] == "RequestError" and answer["limit_bytes"] == 16 * MiB
    assert answer["message"].startswith(
        "the request body of 52,428,800 bytes is over this server's limit of 16 MiB "
        "(16,777,216 bytes) for POST /train;")
    assert "--max-body-bytes" in answer["message"]
    assert httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200


def test_a_streamed_body_is_refused_once_it_passes_the_limit(small_server: ServerProcess
                                                             ) -> None:
    status, headers, body, sent = raw_post(small_server, "/train", pieces(8 * MiB),
                                           content_length=None)
    assert status == 413 and headers["connection"] == "close"
    assert MiB < sent < 8 * MiB  # the body never ended: the server answered without it
    assert json.loads(body)["message"].startswith(
        "the request body is over this server's limit of 1 MiB (1,048,576 bytes) for "
        "POST /train;")


def test_predict_bodies_have_their_own_limit(small_server: ServerProcess) -> None:
    rows = json.dumps({"rows": [{"charge_amount": 1.0, "pad": "x" * 400_000}] * 5}).encode()
    assert MiB < len(rows) < 4 * MiB
    answer = httpx.post(f"{small_server.url}/predict/nothing-here", content=rows,
                        headers={"content-type": "application/json"}, timeout=30)
    assert answer.status_code == 404, answer.text  # read: no model by that name
    status, _, body, _ = raw_post(small_server, "/train", [rows], content_length=len(rows))
    assert status == 413 and "--max-body-bytes" in json.loads(body)["message"]
    status, _, body, _ = raw_post(small_server, "/predict/nothing-here", pieces(5 * MiB),
                                  content_length=5 * MiB)
    assert status == 413
    message = json.loads(body)["message"]
    assert "limit of 4 MiB (4,194,304 bytes) for POST /predict/nothing-here" in message
    assert "--max-predict-body-bytes" in message


def test_rows_per_predict_request_are_capped(small_server: ServerProcess) -> None:
    rows = [{"charge_amount": 1.0}] * 6
    answer = _predict(small_server.url, "any-model", rows)
    assert answer.status_code == 422
    message = answer.json()["message"]
    assert message.startswith("rows: 6 rows, over the limit of 5 rows per predict request")
    assert "--max-predict-rows" in message
    # The cap comes first: the model need not exist, and nothing is scored.
    assert _predict(small_server.url, "any-model", rows[:5]).status_code == 404


# Apart from the test above: a test on both this module's server and the shared one runs among
# the shared server's tests, away from the others on this module's, which would start it twice.
@SQLITE
def test_rows_per_predict_request_are_capped_at_10_000_by_default(server: ServerProcess
                                                                   ) -> None:
    many = _predict(server.url, "any-model", [{"x": 1}] * 10_001)
    assert many.status_code == 422 and "limit of 10,000 rows" in many.json()["message"]


def test_the_row_cap_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.load(home=tmp_path).max_predict_rows == 10_000
    monkeypatch.setenv("MODELYARD_MAX_PREDICT_ROWS", "50")
    assert Settings.load(home=tmp_path).max_predict_rows == 50
    assert Settings.load(home=tmp_path, max_predict_rows=7).max_predict_rows == 7


def test_limits_come_from_flags_or_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    defaults = Settings.load(home=tmp_path)
    assert (defaults.max_body_bytes, defaults.max_predict_body_bytes) == (16 * MiB, 16 * MiB)
    monkeypatch.setenv("MODELYARD_MAX_BODY_BYTES", "1000")
    monkeypatch.setenv("MODELYARD_MAX_PREDICT_BODY_BYTES", "2000")
    assert Settings.load(home=tmp_path).max_body_bytes == 1000
    assert Settings.load(home=tmp_path, max_body_bytes=5).max_body_bytes == 5
    assert Settings.load(home=tmp_path).max_predict_body_bytes == 2000
    with pytest.raises(ConfigurationError, match=r"^--max-body-bytes \(MODELYARD_MAX_BODY_BYTES\) "
                                                 r"must be at least 1 byte, got 0$"):
        Settings.load(home=tmp_path, max_body_bytes=0)


# --------------------------------------------------------------------------------------------
# 2. caps in the request contract


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        node = {"k": node}
    return node


def _set(path: str, value: Any) -> Any:
    def mutate(request: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = request
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value
    return mutate


CAPS = [
    ("filters", [{"feature_name": "charge_type", "predicate": "IsNotNull"}] * 201,
     "filters: List should have at most 200 items after validation, not 201"),
    ("train.custom_params", nested(500),
     "train.custom_params: custom_params is nested 500 deep; at most 20 levels are allowed"),
    ("train.custom_params", {"blob": "x" * 70_000},
     "train.custom_params: custom_params is 70,011 bytes as JSON; at most 65,536 are allowed"),
    ("filters.0.feature_value.string_vals", ["US"] * 10_001,
     "filters.0.feature_value.string_vals: List should have at most 10000 items"),
    ("data.features.names", [f"c{i}" for i in range(10_001)],
     "data.features.names: List should have at most 10000 items"),
    ("filters.0.feature_name", "x" * 1001,
     "filters.0.feature_name: String should have at most 1000 characters"),
    ("metadata.owner", "o" * 201, "metadata.owner: String should have at most 200 characters"),
    ("metadata.model_description", "d" * 10_001,
     "metadata.model_description: String should have at most 10000 characters"),
]


@SQLITE
@pytest.mark.parametrize(("path", "value", "message"), CAPS,
                         ids=[f"{p}-{m.split(': ')[1][:20]}" for p, _, m in CAPS])
def test_oversized_parts_of_a_request_get_422_naming_the_field_and_the_limit(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any], path: str, value: Any,
    message: str
) -> None:
    _set(path, value)(fraud_request)
    answer = httpx.post(f"{server.url}/train", json=fraud_request, timeout=30)
    assert answer.status_code == 422, answer.text[:500]
    assert message in answer.json()["message"]
    assert len(answer.content) < 5_000
    assert client.jobs(project=fraud_request["metadata"]["project"])["total"] == 0


# --------------------------------------------------------------------------------------------
# 3. 422 answers summarise and never echo the input


@SQLITE
def test_a_422_lists_20_errors_and_never_echoes_the_input(
    server: ServerProcess, fraud_request: dict[str, Any]
) -> None:
    fraud_request["filters"] = [
        {"feature_name": "x" * 20_000, "predicate": "Like", "junk": "y" * 20_000}
    ] * 200
    fraud_request["z" * 50_000] = "w" * 50_000
    body = json.dumps(fraud_request).encode()
    assert len(body) > 8_000_000
    answer = httpx.post(f"{server.url}/train", content=body,
                        headers={"content-type": "application/json"}, timeout=60)
    assert answer.status_code == 422
    assert len(answer.content) < 20_000
    for echoed in ("x" * 1000, "y" * 100, "z" * 200, "w" * 100, "Like"):
        assert echoed not in answer.text
    got = answer.json()
    assert got["error"] == "RequestError"
    assert len(got["detail"]) == 20 and got["more_errors"] == 3 * 200 + 1 - 20
    assert all(set(e) == {"loc", "msg", "type"} for e in got["detail"])
    assert got["detail"][0] == {"loc": ["body", "filters", 0, "feature_name"], "type":
                                "string_too_long",
                                "msg": "String should have at most 1000 characters"}
    assert got["message"].startswith("invalid train request: filters.0.feature_name: String "
                                      "should have at most 1000 characters; filters.0.predicate")
    assert got["message"].endswith("; and 581 more problems")


# --------------------------------------------------------------------------------------------
# 4. model and tenant names that could never be served are refused at submission

BAD_NAMES = [
    ("fraud/v2", "contains '/'"),
    ("..", "made only of dots"),
    (".", "made only of dots"),
    ("fraud\u202eledom", "holds U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ("a\u2066b", "holds U+2066 (LEFT-TO-RIGHT ISOLATE)"),
    ("tab\there", "holds U+0009"),
    ("zero\u200bwidth", "holds U+200B (ZERO WIDTH SPACE)"),
    ("lone \ud800 surrogate", "holds U+D800"),
    ("m" * 201, "is 201 characters long; at most 200 are allowed"),
    ("   ", "must hold a visible character"),
    (" padded", "starts or ends with white space"),
]


@SQLITE
@pytest.mark.parametrize(("name", "why"), BAD_NAMES, ids=[w for _, w in BAD_NAMES])
def test_a_model_name_that_cannot_be_served_is_refused(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any], name: str, why: str
) -> None:
    fraud_request["metadata"]["model_name"] = name
    # json.dumps escapes a lone surrogate (\ud800); httpx's json= cannot encode one at all.
    answer = httpx.post(f"{server.url}/train", content=json.dumps(fraud_request).encode(),
                        headers={"content-type": "application/json"}, timeout=30)
    assert answer.status_code == 422, answer.text
    message = answer.json()["message"]
    assert message.startswith("invalid train request: metadata.model_name: ")
    assert why in message
    assert "\u202e" not in message and "\u2066" not in message  # shown escaped
    assert client.jobs(project=fraud_request["metadata"]["project"])["total"] == 0


@SQLITE
def test_a_tenant_name_that_cannot_be_served_is_refused(
    server: ServerProcess, fraud_request: dict[str, Any]
) -> None:
    fraud_request["tenants"] = {"column": "merchant_id", "include": ["m_1", "m/2", "m\x00"]}
    answer = httpx.post(f"{server.url}/train", json=fraud_request, timeout=30)
    assert answer.status_code == 422
    message = answer.json()["message"]
    assert message.startswith(
        "invalid train request: tenants.include: item 1: tenant name 'm/2' contains '/'")


def test_an_accepted_name_is_served_by_the_registry_routes(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any]
) -> None:
    name = f"modèle de fraude #2? 100% {fraud_request['metadata']['project']}"
    fraud_request["metadata"]["model_name"] = name
    job_id = client.train(with_workflow(fraud_request, "Tiny"))
    client.wait(job_id, timeout=120)
    quoted = urllib.parse.quote(name, safe="")
    answer = httpx.get(f"{server.url}/models/{quoted}/versions", timeout=30)
    assert answer.status_code == 200, answer.text
    assert [v["model_name"] for v in answer.json()["versions"]] == [name]


# --------------------------------------------------------------------------------------------
# 6. parsing never blocks the event loop


def body_of_tiny_values(request: dict[str, Any], size: int) -> bytes:
    """Millions of tiny invalid filters: the most values per byte (json.loads: seconds)."""
    head = json.dumps({**request, "filters": []}).encode()
    count = (size - len(head)) // 3
    return head.replace(b'"filters": []', b'"filters": [' + b"[]," * count + b"[]]")


def body_of_long_strings(request: dict[str, Any], size: int) -> bytes:
    """Every filter invalid in three ways, in long strings (few values, many bytes)."""
    each = (size - 50_000) // 200 // 2
    return json.dumps({**request, "filters": [
        {"feature_name": "f" * each, "predicate": "Like", "junk": "j" * each}] * 200}).encode()


def body_of_many_keys(request: dict[str, Any], size: int) -> bytes:
    """Just under the budget of values, in the slowest shape to parse: distinct keys."""
    params = {f"param_{i:07d}": i for i in range(49_000)}
    return json.dumps({**request, "train": {**request["train"], "custom_params": params}}
                      ).encode()


def slowest_healthz_while_posting(server: ServerProcess, body: bytes, path: str = "/train",
                                  status: int = 422) -> float:
    """Post ``body`` to ``path`` while polling /healthz, expecting ``status``; the slowest
    /healthz, in seconds."""
    took: list[float] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            http.get("/healthz")  # connect before timing
            while not done.is_set():
                started = time.perf_counter()
                assert http.get("/healthz").status_code == 200
                took.append(time.perf_counter() - started)
                time.sleep(0.005)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        time.sleep(0.1)
        answer = httpx.post(f"{server.url}{path}", content=body, timeout=120,
                            headers={"content-type": "application/json"})
        time.sleep(0.1)
    finally:
        done.set()
        poller.join()
    assert answer.status_code == status, answer.text[:300]
    if status != 200:
        assert len(answer.content) < 20_000
    assert len(took) > 5
    return max(took)


@SQLITE
@pytest.mark.parametrize("make_body", [body_of_tiny_values, body_of_long_strings,
                                       body_of_many_keys])
def test_healthz_answers_within_100_ms_while_a_large_body_is_parsed(
    server: ServerProcess, fraud_request: dict[str, Any], make_body: Any
) -> None:
    """Up to 5 tries: on a shared 2-core machine that other test runs keep busy, the server
    alone is sometimes held off the CPU for over 100 ms. A loop blocked by parsing fails every
    try (parsing such bodies on the loop blocked /healthz for seconds)."""
    body = make_body(fraud_request, 16 * MiB - 4096)
    assert len(body) < 16 * MiB
    slowest = []
    for _ in range(5):
        slowest.append(slowest_healthz_while_posting(server, body))
        if slowest[-1] < 0.1:
            break
    assert min(slowest) < 0.1, (
        f"slowest /healthz of each try while a body was parsed: "
        f"{[round(s * 1000) for s in slowest]} ms")


def healthz_stays_under_100_ms(server: ServerProcess, body: bytes, path: str, status: int
                               ) -> None:
    """Up to 5 tries (see the test above)."""
    slowest = []
    for _ in range(5):
        slowest.append(slowest_healthz_while_posting(server, body, path, status))
        if slowest[-1] < 0.1:
            break
    assert min(slowest) < 0.1, (
        f"slowest /healthz of each try while {path} parsed a body: "
        f"{[round(s * 1000) for s in slowest]} ms")


def predict_body_of_tiny_values(size: int) -> bytes:
    """A body under the predict body limit, holding millions of values (json.loads: seconds)."""
    head, tail = b'{"rows": [{"x": [', b"[]]}]}"
    return head + b"[]," * ((size - len(head) - len(tail)) // 3) + tail


def predict_body_just_within_budget() -> bytes:
    """Just under the default budget of 100,000 values, in the slowest shape to parse."""
    return predict_body_of_tiny_values(3 * 49_500)  # '[' and ',' per element: 99,000


def predict_body_of_long_strings(size: int) -> bytes:
    each = (size - 1000) // 100
    return json.dumps({"rows": [{"x": "\u00e9" * (each // 6)} for _ in range(100)]}).encode()


@SQLITE
@pytest.mark.parametrize("shape", ["tiny values", "just within the budget", "long strings"])
def test_healthz_answers_within_100_ms_while_a_predict_body_is_parsed(
    server: ServerProcess, shape: str
) -> None:
    """Predict bodies are parsed within a budget of values, a large one off the event loop
    (they were parsed by FastAPI on the loop, and a 16 MiB body of tiny values held /healthz
    for seconds)."""
    if shape == "tiny values":
        body, status = predict_body_of_tiny_values(16 * MiB - 4096), 422
        answer = httpx.post(f"{server.url}/predict/no-such-model", content=body, timeout=60,
                            headers={"content-type": "application/json"})
        assert answer.status_code == 422
        assert answer.json()["message"].startswith("invalid request: request: the body holds")
        message = answer.json()["detail"][0]["msg"]
        assert "a predict request may hold at most 100,000" in message
        assert "--max-predict-values" in message and len(answer.content) < 2_000
    elif shape == "just within the budget":
        body, status = predict_body_just_within_budget(), 404  # parsed, then no such model
    else:
        body, status = predict_body_of_long_strings(16 * MiB - 4096), 404
    assert len(body) < 16 * MiB
    healthz_stays_under_100_ms(server, body, "/predict/no-such-model", status)


@SQLITE
def test_healthz_answers_within_100_ms_while_a_large_batch_is_scored(
    server: ServerProcess, client: Client, fraud_request: dict[str, Any]
) -> None:
    """10,000 rows (the default row cap) for a real model: parsed, checked against the
    training schema and scored, none of it on the event loop for long."""
    request = json.loads(json.dumps(fraud_request))
    name = f"batch-{uuid.uuid4().hex[:8]}"
    request["metadata"]["model_name"] = name
    client.wait(client.train(request), 120)
    client.approve(name, 1, user="kelley", comment="to production")
    frame = pd.read_parquet(server.home / "data" / "payments.parquet").head(10_000)
    rows = frame[FEATURES].to_dict("records")
    body = json.dumps({"rows": rows}).encode()
    answer = httpx.post(f"{server.url}/predict/{name}", content=body, timeout=60,
                        headers={"content-type": "application/json"})
    assert answer.status_code == 200 and len(answer.json()["scores"]) == 10_000
    healthz_stays_under_100_ms(server, body, f"/predict/{name}", 200)


def test_the_predict_value_budget_is_a_setting(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.load(home=tmp_path).max_predict_values == 100_000
    monkeypatch.setenv("MODELYARD_MAX_PREDICT_VALUES", "500")
    assert Settings.load(home=tmp_path).max_predict_values == 500
    assert Settings.load(home=tmp_path, max_predict_values=7).max_predict_values == 7
    with pytest.raises(ConfigurationError, match="--max-predict-values"):
        Settings.load(home=tmp_path, max_predict_values=0)
