"""Worker events and specs as JSON, for backends that pass them through files or env variables.

The records in :mod:`modelyard.protocol.events` (and the results they carry) are plain
dataclasses. One event is one JSON
object tagged with its class name (``{"event": "StepStarted", "job_id": ..., ...}``), so a
JSON-lines file of them reads back as the same sequence. A spec is one JSON object; tuples come
back as tuples and packed specs as :class:`WorkerSpec` again. Every event class in the
:data:`~modelyard.protocol.events.WorkerEvent` union is known without being listed here.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import json
import types
import typing
from typing import Any, TypeVar, Union, get_args, get_origin

from modelyard.protocol import events, results, steps
from modelyard.protocol.events import WorkerEvent, WorkerSpec

_TAG = "event"
T = TypeVar("T")


class EventDecodeError(ValueError):
    """A line or document that is not an encoded event or spec."""


@functools.cache
def event_classes() -> dict[str, type[Any]]:
    """Event class by name: every member of the ``WorkerEvent`` union."""
    return {cls.__name__: cls for cls in get_args(WorkerEvent)}


def _plain(value: Any) -> Any:
    """``json.dumps`` fallback: numpy scalars and arrays, dates, anything else as text."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_plain, separators=(",", ":"), ensure_ascii=False)


def event_to_json(event: WorkerEvent) -> str:
    """One line of JSON (no newline) for ``event``."""
    name = type(event).__name__
    if name not in event_classes():
        raise TypeError(f"{name} is not a worker event; expected one of {sorted(event_classes())}")
    return _dumps({_TAG: name, **dataclasses.asdict(event)})


def event_from_json(text: str | bytes) -> WorkerEvent:
    """The event :func:`event_to_json` encoded.

    Raises:
        EventDecodeError: ``text`` is not JSON, or not a known event.
    """
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise EventDecodeError(f"not a JSON event: {exc}: {_excerpt(text)}") from None
    if not isinstance(obj, dict) or obj.get(_TAG) not in event_classes():
        raise EventDecodeError(
            f"not a worker event (expected an object whose {_TAG!r} is one of "
            f"{sorted(event_classes())}): {_excerpt(text)}"
        )
    event: WorkerEvent = _build(event_classes()[obj.pop(_TAG)], obj)
    return event


def spec_to_json(spec: WorkerSpec) -> str:
    """``spec`` as one JSON document."""
    return _dumps(dataclasses.asdict(spec))


def spec_from_json(text: str | bytes) -> WorkerSpec:
    """The spec :func:`spec_to_json` encoded.

    Raises:
        EventDecodeError: ``text`` is not an encoded spec.
    """
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise EventDecodeError(f"not a JSON worker spec: {exc}: {_excerpt(text)}") from None
    if not isinstance(obj, dict):
        raise EventDecodeError(f"not a worker spec (expected an object): {_excerpt(text)}")
    return _build(WorkerSpec, obj)


def _build(cls: type[T], obj: dict[str, Any]) -> T:
    """``cls(**obj)``, rebuilding tuples and nested dataclasses from their field types."""
    hints = _hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    # Fields a newer writer added are dropped; a missing required field is an error below.
    kwargs = {k: _convert(hints[k], v) for k, v in obj.items() if k in known}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise EventDecodeError(f"cannot rebuild {cls.__name__} from {sorted(obj)}: {exc}") from None


_HINTS: dict[type[Any], dict[str, Any]] = {}


def _hints(cls: type[Any]) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, {**vars(results), **vars(steps), **vars(events)})
    return _HINTS[cls]


def _convert(hint: Any, value: Any) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        if len(options) == 1:
            return _convert(options[0], value)
        # A union of records (``JobResult | FleetPlan``) is told apart by their ``kind`` tag;
        # any other union holds plain JSON values by contract.
        tagged = {_tag_of(o): o for o in options if _tag_of(o) is not None}
        if isinstance(value, dict) and value.get("kind") in tagged:
            return _build(tagged[value["kind"]], value)
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type) and isinstance(value, dict):
        return _build(hint, value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(value)
    if origin is tuple and isinstance(value, list):
        args = get_args(hint)
        item = args[0] if len(args) == 2 and args[1] is Ellipsis else Any
        return tuple(_convert(item, v) for v in value)
    if origin is list and isinstance(value, list):
        (item,) = get_args(hint) or (Any,)
        return [_convert(item, v) for v in value]
    return value


def _tag_of(cls: Any) -> str | None:
    """The ``kind`` a record class is tagged with, if it has one (``Literal["model"]``)."""
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        return None
    hint = _hints(cls).get("kind")
    args = get_args(hint) if get_origin(hint) is typing.Literal else ()
    return str(args[0]) if len(args) == 1 else None


def _excerpt(text: str | bytes, limit: int = 200) -> str:
    s = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return repr(s if len(s) <= limit else s[:limit] + "...")
