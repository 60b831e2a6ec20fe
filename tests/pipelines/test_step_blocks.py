"""What a pipeline step that runs as a job may say (its ``with:``) and may run (its program and
image): refused when the pipeline is created, with the field named."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelyard.errors import RequestError
from modelyard.pipelines.blocks import (
    allowed_image,
    allowed_program,
    check_command,
    check_image,
    validate_params,
)
from modelyard.settings import Settings
from tests.test_readme import readme_block


@pytest.mark.parametrize(("type", "params", "match"), [
    ("validate_data", {"path": "a.parquet", "min_rows": -1},
     r"invalid validate_data step: with\.min_rows: Input should be greater than or equal to 0"),
    ("validate_data", {"path": "a.parquet", "columns": {"amount": {"max_null_rate": 2}}},
     r"with\.columns\.amount\.max_null_rate: Input should be less than or equal to 1"),
    ("validate_data", {"path": "a.parquet", "columns": {"amount": {"maximum": 1}}},
     r"with\.columns\.amount\.maximum: unknown field"),
    ("validate_data", {"path": "a.parquet", "date_column": "d", "max_age": "two days"},
     r"with\.max_age: 'two days' is not a duration"),
    ("validate_data", {"path": "a.parquet", "max_age": "2d"}, r"max_age needs date_column"),
    ("validate_data", {"path": "a.parquet", "min_positives": 5}, r"min_positives needs label"),
    ("evaluate", {"sets": []}, r"with\.sets: List should have at least 1 item"),
    ("evaluate", {"sets": [{"name": "a", "path": "a.parquet"}], "recall_at_fpr": [1.5]},
     r"with\.recall_at_fpr\.0: Input should be less than 1"),
    ("evaluate", {"sets": [{"name": "a", "path": "a.parquet"}], "model_name": "m"},
     r"model_name and version go together"),
    ("command", [1], r"with: a command step's with: block must be a mapping, got list"),
    ("deploy", {}, r"step type 'deploy' is not one of validate_data, evaluate, command"),
])
def test_with_blocks_are_refused_naming_the_field(type: str, params: Any, match: str) -> None:
    with pytest.raises(RequestError, match=match):
        validate_params(type, params)


def test_good_with_blocks_pass() -> None:
    validate_params("validate_data", {"path": "a.parquet", "date_column": "d", "max_age": "2d",
                                      "label": "y", "min_positives": 1,
                                      "columns": {"a": {"type": "int", "min": 0, "isin": [1]}}})
    validate_params("evaluate", {"sets": [{"name": "a", "path": "a.parquet"}],
                                 "recall_at_fpr": [0.01], "precision_at_k": [100]})
    validate_params("command", {"anything": {"the": ["program", "reads"]}})


def test_the_readmes_steps_are_valid() -> None:
    spec = yaml.safe_load(readme_block("Pipeline steps that run as jobs", "yaml",
                                       containing="validate_data"))
    types = [step["type"] for step in spec["steps"]]
    assert types == ["validate_data", "evaluate", "command"]
    for step in spec["steps"]:
        validate_params(step["type"], step["with"])


def _program(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(stat.S_IRWXU)
    return path


def test_only_executables_inside_the_operators_folders_run(tmp_path: Path) -> None:
    allowed, elsewhere = tmp_path / "allowed", tmp_path / "elsewhere"
    allowed.mkdir()
    elsewhere.mkdir()
    script = _program(allowed, "score.sh")
    outside = _program(elsewhere, "evil.sh")
    (allowed / "notes.txt").write_text("not a program")
    os.symlink(outside, allowed / "link.sh")
    os.symlink("/bin/sh", allowed / "sh")
    folders = [str(allowed)]

    assert allowed_program(["score.sh", "--fast"], folders) == os.path.realpath(script)
    assert allowed_program([str(script)], folders) == os.path.realpath(script)
    refused = {
        "/bin/sh": "is not an executable in the folders",
        "../elsewhere/evil.sh": "is not an executable in the folders",
        str(outside): "is not an executable in the folders",
        "link.sh": "is not an executable in the folders",  # a symlink leading out
        "sh": "is not an executable in the folders",
        "notes.txt": "is not an executable in the folders",  # not executable
        "Rscript": "is not an executable in the folders",  # an interpreter, not installed here
    }
    for program, match in refused.items():
        with pytest.raises(RequestError, match=match):
            allowed_program([program], folders)
    with pytest.raises(RequestError, match="needs a command"):
        allowed_program([], folders)
    with pytest.raises(RequestError, match="runs no command steps; its operator allows them "
                                           r"with --step-commands DIR"):
        allowed_program(["score.sh"], [])


def test_step_settings_come_from_flags_or_variables(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    _program(two, "run.sh")
    monkeypatch.setenv("MODELYARD_STEP_COMMANDS", f"{one}{os.pathsep}{two}")
    monkeypatch.setenv("MODELYARD_STEP_IMAGES", "reg.example:5000/ml/,ghcr.io/acme/")
    settings = Settings.load(home=tmp_path / "home")
    assert settings.step_commands == (str(one), str(two))
    assert settings.step_images == ("reg.example:5000/ml/", "ghcr.io/acme/")
    assert check_command(["run.sh"], settings) == str(two / "run.sh")
    check_image("ghcr.io/acme/r-steps:4.3", settings)
    with pytest.raises(RequestError, match=r"image: 'ghcr.io/other/x:1' does not start with "
                       r"an allowed prefix \(reg.example:5000/ml/, ghcr.io/acme/\)"):
        check_image("ghcr.io/other/x:1", settings)
    flags = Settings.load(home=tmp_path / "home", step_commands=[one], step_images=["a/"])
    assert (flags.step_commands, flags.step_images) == ((str(one),), ("a/",))
    with pytest.raises(RequestError, match="runs no step images"):
        allowed_image("anything:1", ())
    allowed_image(None, ())  # no image: the executor's own
