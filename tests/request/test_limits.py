"""The request contract's caps and name rule, and request files that cannot blow up: YAML
anchors and aliases are refused (a real alias bomb through the ``modelyard`` command), and so
is JSON nested too deep to parse.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.errors import RequestError
from modelyard.request import load_request, parse_request
from modelyard.request.limits import (
    MAX_CUSTOM_PARAMS_DEPTH,
    nesting_depth,
    validate_name,
)
from modelyard.request.loading import describe_errors, summarize_errors
from tests.request.test_models import DESIGN_EXAMPLE, design, refused

# --------------------------------------------------------------------------------------------
# validate_name: one rule for model and tenant names, reused by the routes


@pytest.mark.parametrize("name", ["fraud prediction model", "modèle #2? 100%", "m_1", "a.b",
                                  "..a", "x" * 200, "名前", "🙂 happy", "a\\b"])
def test_names_that_urls_can_carry_are_valid(name: str) -> None:
    assert validate_name("model name", name) == name


@pytest.mark.parametrize(("name", "message"), [
    ("a/b", r"^tenant name 'a/b' contains '/', which cannot travel in a URL path segment"),
    ("...", r"^tenant name '\.\.\.' is made only of dots"),
    ("x" * 201, r"^tenant name 'x{60}'\.\.\. \(201 characters\) is 201 characters long; at "
                r"most 200 are allowed"),
    ("", r"^tenant name must hold a visible character, got ''"),
    ("a\u202eb", r"^tenant name 'a\\u202eb' holds U\+202E \(RIGHT-TO-LEFT OVERRIDE\), a "
                 r"control, invisible or unassigned character"),
    ("a\u2069", r"holds U\+2069 \(POP DIRECTIONAL ISOLATE\)"),
    ("a\ud800", r"holds U\+D800,"),
    ("a\u2028b", r"holds U\+2028 \(LINE SEPARATOR\)"),
    ("a\x7f", r"holds U\+007F,"),
    ("a\ufeff", r"holds U\+FEFF \(ZERO WIDTH NO-BREAK SPACE\)"),
    ("trailing ", r"starts or ends with white space"),
])
def test_names_that_cannot_be_served_are_refused(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_name("tenant name", name)


def test_the_request_checks_its_model_and_tenant_names() -> None:
    data = design()
    data["metadata"]["model_name"] = "fraud/v2"
    refused(data, r"^invalid train request: metadata\.model_name: model name 'fraud/v2' "
                  r"contains '/'")
    data = design()
    data["tenants"] = {"column": "merchant", "include": ["ok", ".."]}
    refused(data, r"^invalid train request: tenants\.include: item 1: tenant name '\.\.' is "
                  r"made only of dots")


# --------------------------------------------------------------------------------------------
# caps


def test_custom_params_depth_is_measured_without_recursion() -> None:
    deep: Any = 1
    for _ in range(100_000):
        deep = [deep]
    assert nesting_depth(deep) == 100_000
    assert nesting_depth({"a": [1, {"b": 2}], "c": 3}) == 3
    assert nesting_depth(5) == 0
    data = design()
    data["train"]["custom_params"] = {"layers": deep}
    refused(data, r"train\.custom_params: custom_params is nested 100,001 deep; at most "
                  rf"{MAX_CUSTOM_PARAMS_DEPTH} levels are allowed")


def test_custom_params_at_the_limits_pass() -> None:
    data = design()
    params: Any = "leaf"
    for _ in range(MAX_CUSTOM_PARAMS_DEPTH - 1):
        params = {"k": params}
    data["train"]["custom_params"] = params
    assert parse_request(data).train.custom_params == params
    data["train"]["custom_params"] = {"blob": "é" * 32_000}  # 64,011 bytes in UTF-8
    assert parse_request(data).train.custom_params["blob"] == "é" * 32_000
    data["train"]["custom_params"] = {"blob": "é" * 33_000}
    refused(data, r"custom_params is 66,011 bytes as JSON; at most 65,536 are allowed")


def test_repeated_columns_are_listed_briefly() -> None:
    data = design()
    data["data"]["features"]["names"] = [f"c{i % 5000}" for i in range(10_000)]
    error = refused(data, r"column names must be unique; repeated: \['c0', 'c1', 'c10', .*\] "
                          r"and 4,990 more")
    assert len(str(error)) < 1000


def test_an_error_list_is_summarised() -> None:
    errors = [{"loc": ("body", "filters", i, "x" * 500), "msg": "m" * 2000, "type": "t",
               "input": "secret", "ctx": {"x": "secret"}} for i in range(50)]
    shown, more = summarize_errors(errors)
    assert more == 30 and len(shown) == 20
    assert shown[0]["loc"][:3] == ["body", "filters", 0]
    assert shown[0]["loc"][3] == f"'{'x' * 100}'... (500 characters)"
    assert shown[0]["msg"] == "m" * 500 + "... (2,000 characters)"
    assert "secret" not in str(shown)
    message = describe_errors(errors)
    assert message.endswith("; and 30 more problems") and len(message) < 20 * 800


# --------------------------------------------------------------------------------------------
# request files: no YAML anchors or aliases, no unparseable nesting

ALIAS_BOMB = """\
  lol0: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
  lol1: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
  lol2: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
  lol3: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
  lol4: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
  lol5: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
  lol6: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
  lol7: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
  lol8: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def bomb_file(tmp_path: Path) -> Path:
    """The design example with 9**9 (387 million) strings in custom_params, in 1 KB."""
    path = tmp_path / "bomb.yaml"
    text = DESIGN_EXAMPLE.replace(
        "  custom_params: {max_depth: 6, n_estimators: 500}   # passed through untouched\n",
        "  custom_params:\n" + ALIAS_BOMB.replace("  lol", "    lol"))
    assert "lol8" in text
    path.write_text(text)
    return path


def _limit_memory() -> None:
    limit = 1 << 30  # far more than a request needs, far less than the bomb expands to
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.parametrize("command", ["validate", "train"])
def test_a_yaml_alias_bomb_is_refused_quickly_by_the_command(tmp_path: Path,
                                                             command: str) -> None:
    path = bomb_file(tmp_path)
    started = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "modelyard", command, str(path)],
                         capture_output=True, text=True, timeout=60, preexec_fn=_limit_memory,
                         env={**os.environ, "MODELYARD_URL": "http://127.0.0.1:9",
                              "COLUMNS": "300"})
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert time.monotonic() - started < 30
    out = " ".join(run.stdout.split())  # rich wraps long lines
    assert f"error: {path}: line 27, column 11: YAML anchor &a is not allowed in a request " \
           "file" in out
    assert "write the value out in full wherever it is used" in out


def test_anchors_and_aliases_are_refused_even_small(tmp_path: Path) -> None:
    path = tmp_path / "alias.yaml"
    path.write_text(DESIGN_EXAMPLE.replace(
        "names: [created_at", "names: &cols [created_at").replace(
        "classifier_features: [charge_type, charge_amount]", "classifier_features: *cols"))
    with pytest.raises(RequestError, match=r"alias\.yaml: line 9, column 12: YAML anchor "
                                           r"&cols is not allowed"):
        load_request(path)
    path.write_text(DESIGN_EXAMPLE.replace("label: has_fraud_dispute", "label: *nowhere"))
    with pytest.raises(RequestError, match=r"YAML alias \*nowhere is not allowed"):
        load_request(path)
    plain = tmp_path / "plain.yaml"  # '&' and '*' inside values are just characters
    plain.write_text(DESIGN_EXAMPLE.replace("A model to predict fraud", "'&a *b'"))
    assert load_request(plain).metadata.model_description == "&a *b"


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_request_file_nested_too_deep_to_parse_is_refused(tmp_path: Path,
                                                            suffix: str) -> None:
    path = tmp_path / f"deep{suffix}"
    data = yaml.safe_load(DESIGN_EXAMPLE)
    text = json.dumps(data).replace('"custom_params": {', '"custom_params": {"x": '
                                    + "[" * 50_000 + "]" * 50_000 + ", ")
    path.write_text(text)  # JSON is YAML too
    with pytest.raises(RequestError, match=rf"deep{suffix} is nested too deeply to be a train "
                                           r"request"):
        load_request(path)


def test_a_fleet_request_leaves_room_for_what_its_children_add() -> None:
    data = design()
    data["tenants"] = {"column": "merchant", "segment_column": "country"}
    data["filters"] = data["filters"] * 200
    refused(data, r"a fleet with a segment_column may hold at most 199 filters")
    data = design()
    data["tenants"] = {"column": "merchant"}
    data["data"]["features"]["names"] += [f"c{i}" for i in range(10_000 - 5)]
    refused(data, r"data\.features\.names holds 10,000 columns and a fleet's models also read "
                  r"\['merchant'\]; together at most 10,000 are allowed")
    data["tenants"] = {"column": "c0"}
    assert parse_request(data).tenants is not None
