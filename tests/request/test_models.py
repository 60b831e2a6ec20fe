"""The train request, Modelyard's public contract: what parses, what is refused (with a message that
names the field), what passes through untouched, and the request hash.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.errors import RequestError
from modelyard.request import (
    ComputeResource,
    Predicate,
    TrainRequest,
    load_request,
    parse_request,
)
from modelyard.runtime.workflow import Workflow
from modelyard.synthetic import example_request

# Verbatim from DESIGN.md, "The train request (the public contract; keep it stable)".
DESIGN_EXAMPLE = """\
metadata:
  model_name: fraud prediction model        # registry key (with the tenant)
  model_description: A model to predict fraud
  owner: machine-learning-infrastructure
  project: strata-data-talk
  trainer: kelley
data:
  features:
    names: [created_at, charge_type, charge_amount, charge_country, has_fraud_dispute]
    path: data/payments.parquet             # file, folder or glob; local path or fsspec URL
  date_column: created_at
filters:                                    # AND-ed, pushed down into the parquet scan
  - feature_name: charge_country
    predicate: IsIn                         # IsIn NotIn Equals NotEquals GreaterThan GreaterThanOrEqual
    feature_value: {string_vals: [US, CA]}  # LessThan LessThanOrEqual Between IsNull IsNotNull
holdout_sampling:
  sampling_function: DATE_RANGE             # or RANDOM_FRACTION {fraction, seed}
  date_range_sampling:
    date_column: created_at
    start_date: "2018-10-01"                # holdout = [start_date, end_date)
    end_date: "2019-01-01"                  # training = rows before start_date (no future leakage)
train:
  workflow_name: StripeFraudModel           # registered name, or "package.module:Class"
  classifier_features: [charge_type, charge_amount]
  label: has_fraud_dispute
  custom_params: {max_depth: 6, n_estimators: 500}   # passed through untouched
compute_resource: CPU                       # CPU | GPU | HIGH_MEMORY
"""  # noqa: E501


def design() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(DESIGN_EXAMPLE)
    return data


def refused(data: Any, message: str) -> RequestError:
    with pytest.raises(RequestError, match=message) as exc:
        parse_request(data)
    assert str(exc.value).startswith("invalid train request: ") or "mapping" in str(exc.value)
    return exc.value


# --------------------------------------------------------------------------------------------
# what parses


def test_the_design_example_parses(tmp_path: Path) -> None:
    path = tmp_path / "request.yaml"
    path.write_text(DESIGN_EXAMPLE)
    request = load_request(path)
    assert request.metadata.model_name == "fraud prediction model"
    assert request.metadata.trainer == "kelley"
    assert request.data.features.path == "data/payments.parquet"
    assert request.data.date_column == "created_at"
    (only,) = request.filters
    assert (only.feature_name, only.predicate) == ("charge_country", Predicate.IsIn)
    assert only.feature_value is not None and only.feature_value.values() == ["US", "CA"]
    drs = request.holdout_sampling.date_range_sampling
    assert drs is not None and request.holdout_sampling.random_fraction_sampling is None
    assert (drs.start_date, drs.end_date) == (dt.datetime(2018, 10, 1), dt.datetime(2019, 1, 1))
    assert request.train.workflow_name == "StripeFraudModel"
    assert request.train.classifier_features == ["charge_type", "charge_amount"]
    assert request.train.label == "has_fraud_dispute"
    assert request.train.custom_params == {"max_depth": 6, "n_estimators": 500}
    assert request.compute_resource is ComputeResource.CPU
    assert request.timeout_seconds is None
    assert request.columns() == request.data.features.names
    assert request == parse_request(design())


def test_the_demo_request_parses_and_defaults_are_filled_in() -> None:
    request = parse_request(example_request())
    assert request.columns()[0] == "created_at"
    minimal = design()
    del minimal["filters"], minimal["compute_resource"], minimal["train"]["custom_params"]
    minimal["metadata"] = {"model_name": "m"}
    request = parse_request(minimal)
    assert request.filters == [] and request.train.custom_params == {}
    assert request.compute_resource is ComputeResource.CPU
    assert request.metadata.owner == ""


def test_a_request_is_frozen() -> None:
    request = parse_request(design())
    with pytest.raises(ValueError, match="frozen"):
        request.metadata.model_name = "other"
    assert parse_request(request) is request


def test_columns_add_the_date_columns_once() -> None:
    data = design()
    data["data"]["features"]["names"] = ["charge_type", "charge_amount", "has_fraud_dispute"]
    data["data"]["date_column"] = "updated_at"
    assert parse_request(data).columns() == [
        "charge_type", "charge_amount", "has_fraud_dispute", "updated_at", "created_at"]


# --------------------------------------------------------------------------------------------
# every predicate with every kind of feature_value

KINDS: dict[str, dict[str, Any] | None] = {
    "string_vals": {"string_vals": ["US", "CA"]},
    "number_vals": {"number_vals": [1, 2.5]},
    "string_val": {"string_val": "US"},
    "number_val": {"number_val": 0},
    "bool_val": {"bool_val": False},
    "date_val": {"date_val": "2018-10-01"},
    "range": {"min": 1, "max": 10},
    "none": None,
}
LIST = {"IsIn", "NotIn"}
SCALAR = {"Equals", "NotEquals", "GreaterThan", "GreaterThanOrEqual", "LessThan",
          "LessThanOrEqual"}
NULL = {"IsNull", "IsNotNull"}
VALID = {
    **{p: {"string_vals", "number_vals"} for p in LIST},
    **{p: {"string_val", "number_val", "bool_val", "date_val"} for p in SCALAR},
    "Between": {"range"},
    **{p: {"none"} for p in NULL},
}


def with_filter(predicate: str, kind: str) -> dict[str, Any]:
    """The design example with a second filter, on charge_amount."""
    data = design()
    body: dict[str, Any] = {"feature_name": "charge_amount", "predicate": predicate}
    if KINDS[kind] is not None:
        body["feature_value"] = KINDS[kind]
    data["filters"].append(body)
    return data


def expected_refusal(predicate: str, kind: str) -> str:
    if predicate in NULL:
        return rf"predicate {predicate} takes no feature_value"
    if kind == "none":
        return rf"predicate {predicate} needs a feature_value"
    if predicate in LIST:
        return rf"predicate {predicate} needs string_vals or number_vals, got {kind}"
    if predicate in SCALAR:
        return (rf"predicate {predicate} needs one of string_val, number_val, bool_val, "
                rf"date_val; got {kind}")
    return rf"predicate Between needs feature_value \{{min, max\}}, got {kind}"


def test_the_predicates_are_the_documented_ones() -> None:
    assert {p.value for p in Predicate} == set(VALID)


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("predicate", sorted(VALID))
def test_each_predicate_takes_only_its_kinds_of_value(predicate: str, kind: str) -> None:
    data = with_filter(predicate, kind)
    if kind in VALID[predicate]:
        f = parse_request(data).filters[1]
        assert f.predicate is Predicate(predicate)
        if kind == "none":
            assert f.feature_value is None
        else:
            assert f.feature_value is not None and f.feature_value.kinds() == [kind]
    else:
        # the message names the filter by its position and says what the predicate needs
        refused(data, rf"^invalid train request: filters\.1: "
                      rf"{expected_refusal(predicate, kind)}$")


def test_values_and_scalar_return_what_the_filter_holds() -> None:
    fv = parse_request(with_filter("IsIn", "number_vals")).filters[1].feature_value
    assert fv is not None and fv.values() == [1.0, 2.5] and fv.scalar() is None
    fv = parse_request(with_filter("Equals", "bool_val")).filters[1].feature_value
    assert fv is not None and fv.scalar() is False
    fv = parse_request(with_filter("Equals", "number_val")).filters[1].feature_value
    assert fv is not None and fv.scalar() == 0
    fv = parse_request(with_filter("GreaterThan", "date_val")).filters[1].feature_value
    assert fv is not None and fv.scalar() == dt.datetime(2018, 10, 1)
    fv = parse_request(with_filter("Between", "range")).filters[1].feature_value
    assert fv is not None and (fv.min, fv.max) == (1, 10)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"string_val": "US", "number_val": 1},
         r"filters\.0\.feature_value: feature_value must hold exactly one of "
         r".*; got \['string_val', 'number_val'\]"),
        ({}, r"filters\.0\.feature_value: feature_value must hold exactly one of "
             r".*; got none"),
        ({"min": 1}, r"filters\.0\.feature_value: feature_value for Between needs "
                     r"both min and max"),
        ({"max": "2018-01-01"}, r"needs both min and max"),
        ({"string_vals": ["US", 7]}, r"filters\.0\.feature_value\.string_vals\.1: Input should "
                                     r"be a valid string"),
        ({"bool_val": "maybe"}, r"filters\.0\.feature_value\.bool_val: Input should be a valid "
                                r"boolean"),
        ({"string_vals": "US"}, r"filters\.0\.feature_value\.string_vals: Input should be a "
                                r"valid list"),
    ],
)
def test_a_malformed_feature_value_is_named(value: dict[str, Any], message: str) -> None:
    data = design()
    data["filters"][0]["feature_value"] = value
    refused(data, message)


def test_an_unknown_predicate_lists_the_known_ones() -> None:
    data = design()
    data["filters"][0]["predicate"] = "isin"
    refused(data, r"filters\.0\.predicate: Input should be 'IsIn', 'NotIn', 'Equals', "
                  r"'NotEquals', .* 'IsNull' or 'IsNotNull'")


def test_yaml_reading_no_as_false_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "norway.yaml"
    path.write_text(DESIGN_EXAMPLE.replace("[US, CA]", "[US, NO]"))
    with pytest.raises(RequestError, match=r"norway\.yaml: invalid train request: "
                                           r"filters\.0\.feature_value\.string_vals\.1: Input "
                                           r"should be a valid string"):
        load_request(path)


# --------------------------------------------------------------------------------------------
# unknown fields are refused by name, at every level

TYPOS = [
    ((), "holdout_sampeling"),
    ((), "compute_resources"),
    (("metadata",), "team"),
    (("data",), "date_colum"),
    (("data", "features"), "nmes"),
    (("filters", 0), "feature_vale"),
    (("filters", 0, "feature_value"), "strings_vals"),
    (("holdout_sampling",), "sampling"),
    (("holdout_sampling", "date_range_sampling"), "start"),
    (("train",), "custom_param"),
]


@pytest.mark.parametrize(("where", "key"), TYPOS, ids=[k for _, k in TYPOS])
def test_an_unknown_field_is_named(where: tuple[Any, ...], key: str) -> None:
    data = design()
    node: Any = data
    for part in where:
        node = node[part]
    node[key] = 1
    loc = re.escape(".".join(str(p) for p in (*where, key)))
    refused(data, rf"(: |; ){loc}: unknown field \(check its spelling against the request "
                  r"reference\)")


def test_a_misspelt_section_is_named_with_the_one_it_replaces() -> None:
    data = design()
    data["holdout_sampeling"] = data.pop("holdout_sampling")
    refused(data, r"^invalid train request: holdout_sampling: Field required; "
                  r"holdout_sampeling: unknown field")


def test_an_unknown_field_in_the_random_fraction_block_is_named() -> None:
    data = design()
    data["holdout_sampling"] = {"sampling_function": "RANDOM_FRACTION",
                                "random_fraction_sampling": {"fraction": 0.2, "sed": 3}}
    refused(data, r"holdout_sampling\.random_fraction_sampling\.sed: unknown field")


# --------------------------------------------------------------------------------------------
# custom_params pass through untouched

CUSTOM = {
    "max_depth": 6,
    "learning_rate": 0.1,
    "max_features": 1.0,
    "as_text": "5",
    "class_weight": {"0": 1, "1": 10},
    "layers": [64, 32, {"dropout": 0.5, "activation": None}],
    "nested": {"a": {"b": {"c": [True, False, None, "x", 1.5]}}},
    "empty": {},
    "none": None,
    "learning-rate.v2": "kebab.dotted keys are fine",
}


def test_custom_params_pass_through_untouched(tmp_path: Path) -> None:
    data = design()
    data["train"]["custom_params"] = copy.deepcopy(CUSTOM)
    request = parse_request(data)
    params = request.train.custom_params
    assert params == CUSTOM and data["train"]["custom_params"] == CUSTOM
    assert type(params["max_depth"]) is int and type(params["max_features"]) is float
    assert type(params["as_text"]) is str
    assert request.model_dump(mode="json")["train"]["custom_params"] == CUSTOM
    assert Workflow(request).custom_params == CUSTOM
    # and the same through files
    (tmp_path / "r.json").write_text(json.dumps(data))
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    for name in ("r.json", "r.yaml"):
        assert load_request(tmp_path / name).train.custom_params == CUSTOM


# --------------------------------------------------------------------------------------------
# holdout sampling


@pytest.mark.parametrize(
    ("start", "end"),
    [("2018-10-01", "2018-10-01"), ("2019-01-01", "2018-10-01"),
     ("2018-10-01", "2018-10-01T00:00:00"), ("2018-10-01T12:00:00", "2018-10-01T06:00:00")],
)
def test_a_date_range_must_start_before_it_ends(start: str, end: str) -> None:
    data = design()
    data["holdout_sampling"]["date_range_sampling"].update(start_date=start, end_date=end)
    refused(data, r"^invalid train request: holdout_sampling\.date_range_sampling: "
                  r"start_date \(.+\) must be before end_date \(.+\)$")


def test_a_date_range_may_mix_dates_and_times() -> None:
    data = design()
    data["holdout_sampling"]["date_range_sampling"].update(
        start_date=dt.date(2018, 10, 1), end_date="2018-10-01T00:00:01")
    drs = parse_request(data).holdout_sampling.date_range_sampling
    assert drs is not None and drs.start_date == dt.datetime(2018, 10, 1)  # a date is its midnight


def test_a_date_range_compares_aware_datetimes_in_utc() -> None:
    data = design()
    # 10:00+05:00 is 05:00 UTC, an hour before 06:00 UTC: a valid one-hour window
    data["holdout_sampling"]["date_range_sampling"].update(
        start_date="2018-10-01T10:00:00+05:00", end_date="2018-10-01T06:00:00+00:00")
    parse_request(data)


def test_each_sampling_function_needs_its_block() -> None:
    data = design()
    data["holdout_sampling"] = {"sampling_function": "RANDOM_FRACTION"}
    refused(data, r"^invalid train request: holdout_sampling: sampling_function "
                  r"RANDOM_FRACTION needs a random_fraction_sampling block \(\{fraction, seed\}\)$")
    data["holdout_sampling"] = {"sampling_function": "DATE_RANGE"}
    refused(data, r"holdout_sampling: sampling_function DATE_RANGE needs a "
                  r"date_range_sampling block")
    data["holdout_sampling"] = {"sampling_function": "RANDOM"}
    refused(data, r"holdout_sampling\.sampling_function: Input should be 'DATE_RANGE' or "
                  r"'RANDOM_FRACTION'")


def test_a_random_fraction_is_between_zero_and_one() -> None:
    data = design()
    data["holdout_sampling"] = {"sampling_function": "RANDOM_FRACTION",
                                "random_fraction_sampling": {"fraction": 0.2}}
    rfs = parse_request(data).holdout_sampling.random_fraction_sampling
    assert rfs is not None and (rfs.fraction, rfs.seed) == (0.2, 0)
    for bad, bound in ((0, "greater than 0"), (-0.1, "greater than 0"), (1, "less than 1"),
                       (1.5, "less than 1")):
        data["holdout_sampling"]["random_fraction_sampling"]["fraction"] = bad
        refused(data, rf"holdout_sampling\.random_fraction_sampling\.fraction: Input should be "
                      rf"{bound}")


# --------------------------------------------------------------------------------------------
# columns that must be declared


def test_the_label_must_be_a_declared_column() -> None:
    data = design()
    data["train"]["label"] = "is_fraud"
    refused(data, r"^invalid train request: request: train\.label 'is_fraud' is "
                  r"not in data\.features\.names; add it there$")


def test_classifier_features_must_be_declared_columns() -> None:
    data = design()
    data["train"]["classifier_features"] = ["charge_type", "merchant_id", "card_bin"]
    refused(data, r"train\.classifier_features \['merchant_id', 'card_bin'\] are not in "
                  r"data\.features\.names; add them there")


def test_the_label_is_not_a_feature() -> None:
    data = design()
    data["train"]["classifier_features"].append("has_fraud_dispute")
    refused(data, r"train\.label 'has_fraud_dispute' is also a classifier feature")


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("data.features", "names", ["a", "b", "a", "b", "c"],
         r"data\.features\.names: column names must be unique; repeated: "
         r"\['a', 'b'\]"),
        ("data.features", "names", [], r"data\.features\.names: List should have at least 1"),
        ("train", "classifier_features", [], r"train\.classifier_features: List should have"),
        ("train", "label", None, r"train\.label: Input should be a valid string"),
        ("metadata", "model_name", "", r"metadata\.model_name: String should have at least 1"),
        ("", "compute_resource", "TPU",
         r"compute_resource: Input should be 'CPU', 'GPU' or 'HIGH_MEMORY'"),
        ("", "timeout_seconds", 0, r"timeout_seconds: Input should be greater than 0"),
    ],
)
def test_a_bad_value_is_named(section: str, key: str, value: Any, message: str) -> None:
    data = design()
    node = data
    for part in filter(None, section.split(".")):
        node = node[part]
    node[key] = value
    refused(data, message)


def test_a_missing_section_is_named() -> None:
    data = design()
    del data["train"]["label"], data["metadata"]
    refused(data, r"^invalid train request: metadata: Field required; train\.label: Field "
                  r"required")


@pytest.mark.parametrize("value", [[1, 2], "metadata: x", None, 3])
def test_a_request_must_be_a_mapping(value: Any) -> None:
    refused(value, rf"^a train request must be a mapping, got {type(value).__name__}$")


# --------------------------------------------------------------------------------------------
# the request hash

HASH = re.compile(r"^sha256:[0-9a-f]{64}$")


def reordered(value: Any) -> Any:
    """The same value with every mapping's keys in reverse order."""
    if isinstance(value, dict):
        return {k: reordered(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reordered(v) for v in value]
    return value


def test_equal_requests_hash_equal_whatever_their_key_order(tmp_path: Path) -> None:
    data = design()
    data["train"]["custom_params"] = copy.deepcopy(CUSTOM)
    digest = parse_request(data).request_hash()
    assert HASH.match(digest)
    assert list(reordered(data)) != list(data)
    assert parse_request(reordered(data)).request_hash() == digest
    (tmp_path / "r.json").write_text(json.dumps(reordered(data), indent=2))
    (tmp_path / "r.yml").write_text(yaml.safe_dump(data, sort_keys=False))
    assert load_request(tmp_path / "r.json").request_hash() == digest
    assert load_request(tmp_path / "r.yml").request_hash() == digest


def test_defaults_written_out_hash_as_defaults_left_out() -> None:
    data = design()
    explicit = copy.deepcopy(data)
    del data["compute_resource"]
    explicit["holdout_sampling"]["random_fraction_sampling"] = None
    explicit["timeout_seconds"] = None
    explicit["metadata"]["model_description"] = "A model to predict fraud"
    assert parse_request(data).request_hash() == parse_request(explicit).request_hash()


def test_quoting_a_date_in_yaml_does_not_change_the_hash(tmp_path: Path) -> None:
    quoted, bare = tmp_path / "quoted.yaml", tmp_path / "bare.yaml"
    quoted.write_text(DESIGN_EXAMPLE)
    bare.write_text(DESIGN_EXAMPLE.replace('"2018-10-01"', "2018-10-01"))
    assert load_request(bare).request_hash() == load_request(quoted).request_hash()


def _set(path: str, value: Any) -> Any:
    def change(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    change.__name__ = path
    return change


CHANGES = [
    _set("metadata.model_name", "fraud prediction model v2"),
    _set("metadata.owner", "someone-else"),
    _set("data.features.path", "data/payments-2019.parquet"),
    _set("data.features.names", ["created_at", "charge_type", "charge_amount",
                                 "charge_country", "has_fraud_dispute", "card_age_days"]),
    _set("filters.0.feature_value", {"string_vals": ["US"]}),
    _set("filters.0.predicate", "NotIn"),
    _set("filters", []),
    _set("holdout_sampling.date_range_sampling.start_date", "2018-10-02"),
    _set("holdout_sampling.date_range_sampling.end_date", "2019-01-02"),
    _set("holdout_sampling", {"sampling_function": "RANDOM_FRACTION",
                              "random_fraction_sampling": {"fraction": 0.2}}),
    _set("train.workflow_name", "OtherModel"),
    _set("train.classifier_features", ["charge_type"]),
    _set("train.custom_params.max_depth", 7),
    _set("train.custom_params.max_depth", 6.0),  # 6 and 6.0 mean different things to sklearn
    _set("train.custom_params.n_estimators", "500"),
    _set("train.custom_params.grid", {"a": [1, 2]}),
    _set("compute_resource", "GPU"),
    _set("timeout_seconds", 60),
]


def test_any_change_changes_the_hash() -> None:
    base = parse_request(design()).request_hash()
    hashes = [base]
    for change in CHANGES:
        data = design()
        change(data)
        hashes.append(parse_request(data).request_hash())
        assert hashes[-1] != base, change.__name__
    assert len(set(hashes)) == len(hashes), "two different changes gave the same hash"


def test_the_hash_is_of_the_canonical_json() -> None:
    import hashlib

    request = parse_request(design())
    canonical = request.canonical_json()
    assert json.loads(canonical) == request.model_dump(mode="json")
    assert ": " not in canonical and canonical.index('"compute_resource"') < canonical.index(
        '"metadata"')
    assert request.request_hash() == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert TrainRequest.model_validate_json(canonical).request_hash() == request.request_hash()


# --------------------------------------------------------------------------------------------
# loading files


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_load_request_reads_yaml_and_json(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"request{suffix}"
    path.write_text(json.dumps(design()) if suffix == ".json" else DESIGN_EXAMPLE)
    assert load_request(path) == parse_request(design())
    assert load_request(str(path)) == parse_request(design())


def test_malformed_yaml_says_where(tmp_path: Path) -> None:
    path = tmp_path / "request.yaml"
    path.write_text("metadata:\n  model_name: [unclosed\ndata: {}\n")
    with pytest.raises(RequestError, match=rf"^{re.escape(str(path))} is not valid YAML: "
                                           r"(.|\n)*line \d+, column \d+"):
        load_request(path)


def test_malformed_json_says_where(tmp_path: Path) -> None:
    path = tmp_path / "request.json"
    path.write_text('{"metadata": {"model_name": "m",}}')
    with pytest.raises(RequestError, match=rf"^{re.escape(str(path))} is not valid JSON: "
                                           r".*line 1 column \d+"):
        load_request(path)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(RequestError, match=r"^cannot read request file .*nope\.yaml: No such "
                                           r"file or directory$"):
        load_request(tmp_path / "nope.yaml")


def test_a_file_that_is_not_a_request_is_named(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- metadata\n- data\n")
    with pytest.raises(RequestError, match=r"list\.yaml: a train request must be a mapping, "
                                           r"got list$"):
        load_request(tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(RequestError, match=r"empty\.yaml: a train request must be a mapping"):
        load_request(tmp_path / "empty.yaml")
    (tmp_path / "bad.yaml").write_text(DESIGN_EXAMPLE.replace("  label: has_fraud_dispute\n", ""))
    with pytest.raises(RequestError, match=rf"^{re.escape(str(tmp_path / 'bad.yaml'))}: invalid "
                                           r"train request: train\.label: Field required$"):
        load_request(tmp_path / "bad.yaml")
