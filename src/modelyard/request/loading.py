"""Read a train request from a YAML/JSON file or a mapping, with errors that name the field.

Request files are read without YAML anchors and aliases (``&name``, ``*name``, ``<<: *name``):
PyYAML shares an aliased value instead of copying it, so a file of a few hundred bytes can
describe billions of values ("billion laughs") that validation and JSON serialization then walk
one by one. A request is data that travels as JSON, which has no references, so nothing is lost
by writing values out; refusing them outright leaves no expansion budget to tune.

Error lists are summarised (:func:`summarize_errors`): at most :data:`MAX_ERRORS_SHOWN` problems
are described, and never the input that caused them, so a request with thousands of mistakes gets
an answer of a few kilobytes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import yaml
from pydantic import ValidationError

from modelyard.errors import RequestError
from modelyard.request.limits import shown
from modelyard.request.models import TrainRequest

MAX_ERRORS_SHOWN = 20
MAX_REQUEST_FILE_BYTES = 16 << 20  # the server's default limit on a request body
_MAX_MSG_CHARS = 500
_MAX_LOC_CHARS = 100


class ErrorDetail(TypedDict):
    """One problem of a request, as the API's 422 answers list it."""

    loc: list[str | int]
    msg: str
    type: str


def parse_request(data: Mapping[str, Any] | TrainRequest) -> TrainRequest:
    """Validate a mapping as a train request.

    Raises:
        RequestError: naming every field that is missing, unknown or wrong.
    """
    if isinstance(data, TrainRequest):
        return data
    if not isinstance(data, Mapping):
        raise RequestError(f"a train request must be a mapping, got {type(data).__name__}")
    try:
        return TrainRequest.model_validate(dict(data))
    except ValidationError as exc:
        raise RequestError(describe_validation_error(exc)) from None


def read_document(path: Path, what: str, *, noun: str | None = None) -> Any:
    """A YAML or JSON file (by its suffix) as data, without YAML's anchors and aliases.

    Raises:
        RequestError: naming ``what`` the file should hold (``noun`` in "nested too deeply to
            be a ..."; default ``what``): it cannot be read, does not parse, uses anchors or
            aliases, or nests too deeply.
    """
    noun = noun or what
    try:
        size = path.stat().st_size
        if size > MAX_REQUEST_FILE_BYTES:  # a request is a few KiB; this is data, not one
            raise RequestError(f"{what} file {path} is {size:,} bytes, over the "
                               f"{MAX_REQUEST_FILE_BYTES:,} a {noun} may hold; name a YAML or "
                               f"JSON {what} file, not a data file")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RequestError(f"cannot read {what} file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RequestError(f"{what} file {path} is not text (not UTF-8 at all); name a YAML "
                           f"or JSON {noun}, not a data file") from None
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        return json.loads(text) if kind == "JSON" else yaml.load(text, Loader=RequestYamlLoader)
    except YamlReferenceRefused as exc:
        raise RequestError(f"{path}: {exc}") from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise RequestError(f"{path} is not valid {kind}: {exc}") from None
    except RecursionError:
        raise RequestError(f"{path} is nested too deeply to be a {noun} (one needs a few "
                           "levels)") from None


def load_request(source: str | Path) -> TrainRequest:
    """Load a request from a ``.yaml``/``.yml``/``.json`` file.

    Raises:
        RequestError: the file is missing, is not YAML/JSON, uses YAML anchors or aliases, or
            is not a valid request.
    """
    path = Path(source)
    data = read_document(path, "request", noun="train request")
    try:
        return parse_request(data)
    except RequestError as exc:
        raise RequestError(f"{path}: {exc}") from None


class YamlReferenceRefused(yaml.YAMLError):
    """A request file used an anchor or an alias."""


class RequestYamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors and aliases before composing anything."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # untyped in the stubs
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            what = "alias *" if isinstance(event, yaml.AliasEvent) else "anchor &"
            mark = event.start_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "a node"
            raise YamlReferenceRefused(
                f"{where}: YAML {what}{anchor} is not allowed in a request file (anchors and "
                "aliases could expand a small file into gigabytes); write the value out in "
                "full wherever it is used")
        return super().compose_node(parent, index)


def describe_validation_error(exc: ValidationError) -> str:
    """One clause per problem: ``train.label: Field required``."""
    return describe_errors(exc.errors(include_url=False, include_input=False))


def describe_errors(errors: Sequence[Mapping[str, Any]], what: str = "train request") -> str:
    """Pydantic's (or FastAPI's) error list as one message naming the fields, at most
    :data:`MAX_ERRORS_SHOWN` of them; ``what`` was invalid."""
    shown_errors, more = summarize_errors(errors)
    clauses = []
    for err in shown_errors:
        loc = ".".join(str(p) for p in err["loc"] if p != "body")
        clauses.append(f"{loc or 'request'}: {err['msg']}")
    tail = f"; and {more:,} more problems" if more else ""
    return f"invalid {what}: " + "; ".join(clauses) + tail


def summarize_errors(errors: Sequence[Mapping[str, Any]],
                     limit: int = MAX_ERRORS_SHOWN) -> tuple[list[ErrorDetail], int]:
    """The first ``limit`` errors as ``loc``, ``msg`` and ``type`` (never the ``input`` or the
    ``ctx`` values), cut to a bounded size, and how many more there were."""
    out: list[ErrorDetail] = []
    for err in errors[:limit]:
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        kind = str(err.get("type", ""))
        if kind == "extra_forbidden":
            msg = "unknown field (check its spelling against the request reference)"
        if len(msg) > _MAX_MSG_CHARS:
            msg = msg[:_MAX_MSG_CHARS] + f"... ({len(msg):,} characters)"
        out.append(ErrorDetail(loc=[_loc_part(p) for p in err.get("loc", ())], msg=msg,
                               type=kind))
    return out, max(0, len(errors) - limit)


def _loc_part(part: Any) -> str | int:
    if isinstance(part, int):
        return part
    text = str(part)
    # A key of the input (an unknown field) can be anything: escape and cut the odd ones.
    if len(text) > _MAX_LOC_CHARS or not text.isprintable():
        return shown(text, _MAX_LOC_CHARS)
    return text
