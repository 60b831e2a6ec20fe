"""What a predict request's rows pass before they are scored: the body parsed in one pass gives
what ``json.loads`` and the model give (or the same 422), and a version's row schema checked a
column at a time accepts exactly the rows it accepts a value at a time, a refusal naming the
same first row and column."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi.exceptions import RequestValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from modelyard.errors import RequestError
from modelyard.jsonbody import parse_json_body
from modelyard.serving.routes import PredictRequest
from modelyard.serving.schema import row_schema

TYPES = {"amount": "double", "country": "string", "flag": "bool", "at": "timestamp[us]",
         "age": "int64"}
VALUES = st.sampled_from([None, float("nan"), float("inf"), -float("inf"), 1, 2.5, True, "x",
                          "", [1], {"k": 1}, 10**400, 1e308, -1e308])
ROWS = st.lists(st.dictionaries(st.sampled_from(sorted(TYPES)), VALUES, max_size=len(TYPES)),
                min_size=1, max_size=4)


def _answer(check: Callable[[list[dict[str, Any]]], None], rows: list[dict[str, Any]]) -> str:
    try:
        check(rows)
    except RequestError as exc:
        return str(exc)
    return "fits"


@settings(max_examples=400, deadline=None)
@given(rows=ROWS, nullable=st.booleans())
def test_the_column_check_decides_as_the_row_loop(rows: list[dict[str, Any]], nullable: bool,
                                                  ) -> None:
    schema = row_schema("version 1 of 'fraud'", list(TYPES), TYPES,
                        list(TYPES) if nullable else [])
    assert _answer(schema.check, rows) == _answer(schema.check_each, rows)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3), max_leaves=8)
ODD_TEXTS = st.sampled_from([b'{"rows":[{"a":"\\ud800"}]}', b'\xef\xbb\xbf{"rows":[{}]}',
                             b'{"rows":[{"a":1}]} x', b'{"rows":[{"a":01}]}', b"{'rows':[]}",
                             b'{"rows":[{"a":"x\ny"}]}', b'{"rows":[{"a":NaN}]}',
                             b'{"rows":[{"a":1,"a":2}]}', b'{"rows":[{"a":"\xff"}]}',
                             '{"rows":[{"a":1}]}'.encode("utf-16"), b'[' * 300 + b']' * 300])


def _parsed(body: bytes, direct: bool) -> str:
    try:
        return repr(parse_json_body(body, PredictRequest, 10_000, "a predict request",
                                    direct=direct))
    except RequestValidationError as exc:
        return repr(exc.errors())


@settings(max_examples=300, deadline=None)
@given(body=st.one_of(
    ODD_TEXTS,
    st.fixed_dictionaries({"rows": st.lists(st.dictionaries(st.text(max_size=4), JSON_VALUES,
                                                             max_size=3), max_size=3)},
                          optional={"tenant": JSON_VALUES, "explain": JSON_VALUES,
                                    "explain_top": JSON_VALUES, "unit": JSON_VALUES,
                                    "other": JSON_VALUES}).map(
        lambda d: json.dumps(d, allow_nan=True).encode())))
def test_a_predict_body_parses_alike_in_one_pass(body: bytes) -> None:
    """Predict bodies are validated from the JSON text in one pass; what they hold, or the
    422 that refuses them, is what ``json.loads`` and then the model give."""
    assert _parsed(body, direct=True) == _parsed(body, direct=False)
