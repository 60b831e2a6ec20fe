"""The real server fuzzed from its own OpenAPI schema (schemathesis).

Every operation gets a bounded number of generated requests, valid and invalid, and every
answer must be a status the operation documents, of its documented content type and schema, and
never a 5xx: any input that makes the server fail is a bug. Generation is derandomized, so a run
is reproducible and CI fails the same way a developer's run does.

The server is a dedicated one: the fuzzer moves stages, cancels jobs and queues training
requests, which would disturb the session's shared servers. The schema is built from
``create_app`` when the module is collected (the operations become test items before any server
runs), and the fixture checks that the server serves the same one. (schemathesis's loader from
a fixture, which would read it from the running server, fails under pytest 9: it sets the
item's ``_nodeid``, which pytest 9 items no longer have.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from modelyard.api.app import create_app
from modelyard.settings import Settings
from tests.conftest import ServerProcess, start_server

# Per operation (33 of them): about a minute in all on two cores. Raise it locally to dig
# deeper; 150 on SQLite and 100 on PostgreSQL find nothing more today.
MAX_EXAMPLES = 25

OPENAPI = create_app(Settings.load(home=Path("unused"), concurrency=1)).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = start_server(tmp_path_factory.mktemp("fuzz"), "sqlite", "--concurrency", "1")
    served = httpx.get(f"{proc.url}/openapi.json", timeout=30).json()
    if served != OPENAPI:
        proc.stop()
        raise AssertionError("the server serves another OpenAPI schema than create_app builds")
    yield proc
    proc.stop()


@schema.parametrize()
# Derandomized and without an example database: every run sends the same requests. The pace
# is the server's, not the strategies', so Hypothesis's speed checks do not apply.
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.data_too_large])
def test_no_input_makes_the_server_fail(case: schemathesis.Case, fuzz_server: ServerProcess
                                        ) -> None:
    case.call_and_validate(
        base_url=fuzz_server.url, timeout=60,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance,
                response_schema_conformance])
