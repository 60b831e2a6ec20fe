"""Text diffs for comparing jobs: a request as YAML, a workflow's code, line by line.

:func:`unified` is :func:`difflib.unified_diff` with each line typed by what it is, so a page
colours additions and deletions without parsing the diff again.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Literal

import yaml

LineKind = Literal["file", "hunk", "add", "delete", "same"]


@dataclasses.dataclass(frozen=True)
class DiffLine:
    kind: LineKind
    text: str


@dataclasses.dataclass(frozen=True)
class TextDiff:
    """``after`` against ``before`` (named ``before_name`` and ``after_name``); no lines when
    they are the same."""

    title: str
    before_name: str
    after_name: str
    lines: list[DiffLine]

    @property
    def identical(self) -> bool:
        return not self.lines


def as_yaml(value: Any) -> str:
    """A request (or any JSON value) as block YAML, in its own key order."""
    return str(yaml.safe_dump(value, sort_keys=False, default_flow_style=False,
                              allow_unicode=True))


def unified(title: str, before: str, after: str, before_name: str, after_name: str,
            context: int = 3) -> TextDiff:
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), before_name,
                                 after_name, lineterm="", n=context)
    return TextDiff(title, before_name, after_name, [DiffLine(_kind(line), line)
                                                     for line in lines])


def _kind(line: str) -> LineKind:
    if line.startswith(("+++", "---")):
        return "file"
    if line.startswith("@@"):
        return "hunk"
    if line.startswith("+"):
        return "add"
    if line.startswith("-"):
        return "delete"
    return "same"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A nested mapping as dotted keys (``train.custom_params.max_iter``); lists stay whole."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, inner in value.items():
        out.update(flatten(inner, f"{prefix}.{key}" if prefix else str(key)))
    return out
