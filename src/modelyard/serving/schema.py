"""What a version's rows must look like, checked before they are scored.

A version's schema is what it was trained on: its features, each column's type in the training
data (the Arrow type its provenance records) and whether the training rows had missing values in
it (``missing_values`` in its model meta). A row that does not fit is refused with a
:class:`~modelyard.errors.RequestError` naming the row and the column, before it reaches a
micro-batch, so it can neither be scored as something it is not nor fail the batch it would
have joined:

* a numeric column takes JSON numbers (never text, not even ``"12.5"``; never booleans), finite;
* a boolean column takes ``true``/``false``; a text column takes strings;
* ``null`` (and NaN) only where the training rows had missing values in the column;
* columns of other types (dates, timestamps, lists) are passed as they are.

Versions trained before their missing values were recorded accept ``null`` everywhere, and a
column whose training type is unknown accepts any value: their rows are checked for the
features alone.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Literal

from modelyard.errors import RequestError

Kind = Literal["number", "boolean", "text", "any"]

_ACCEPTS: dict[str, tuple[type, ...]] = {
    "number": (int, float), "boolean": (bool,), "text": (str,),
}
_NAMES = {"number": "a number", "boolean": "a boolean", "text": "text"}


def kind_of(arrow_type: str | None) -> Kind:
    """The kind of JSON value a column of this Arrow type (its name, e.g. ``double``) takes."""
    if not arrow_type:
        return "any"
    t = arrow_type.lower()
    if t.startswith("dictionary<"):  # categorical: the type of its values
        t = t.partition("values=")[2].split(",")[0]
    if t.startswith(("int", "uint", "float", "double", "halffloat", "decimal")):
        return "number"
    if t in ("bool", "boolean"):
        return "boolean"
    if t in ("string", "large_string", "utf8", "large_utf8", "string_view"):
        return "text"
    return "any"


@dataclasses.dataclass(frozen=True)
class Column:
    name: str
    kind: Kind
    trained_as: str | None  # the Arrow type name in the training data, if known
    nullable: bool


@dataclasses.dataclass(frozen=True)
class RowSchema:
    """The columns a version scores, and what each accepts."""

    label: str  # "version 3 of 'fraud'", for messages
    columns: tuple[Column, ...]

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def check(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Raise a :class:`RequestError` naming the first row and column that do not fit."""
        if not all(_column_fits(c, rows) for c in self.columns):
            self.check_each(rows)

    def check_each(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """:meth:`check`, a value at a time (what names the first value that does not fit)."""
        checks = [(c, _ACCEPTS.get(c.kind)) for c in self.columns]
        for i, row in enumerate(rows):
            for column, accepts in checks:
                try:
                    value = row[column.name]
                except KeyError:
                    raise RequestError(
                        f"rows.{i}: missing feature column {column.name!r} (the model needs: "
                        f"{', '.join(self.features)})") from None
                if value is None or (type(value) is float and value != value):
                    if not column.nullable:
                        raise RequestError(self._no_missing(i, column, value))
                elif accepts is not None:
                    if type(value) not in accepts:
                        raise RequestError(self._wrong_kind(i, column, value))
                    if type(value) is float and math.isinf(value):
                        raise RequestError(
                            f"rows.{i}.{column.name}: {value} is not a finite number; send a "
                            "finite number")

    def _no_missing(self, i: int, column: Column, value: Any) -> str:
        given = "null" if value is None else "NaN"
        expected = _NAMES.get(column.kind, "a value")
        return (f"rows.{i}.{column.name}: {given}, but the rows {self.label} was trained on "
                f"had no missing values in this column; send {expected}")

    def _wrong_kind(self, i: int, column: Column, value: Any) -> str:
        return (f"rows.{i}.{column.name}: {_show(value)} is {_what(value)}, but {self.label} "
                f"was trained on {_NAMES[column.kind]} ({column.trained_as}) in this column; "
                f"send {_NAMES[column.kind]} (values are never converted)")


def _column_fits(column: Column, rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether every row's value of ``column`` fits, decided a column at a time by the
    interpreter's built-ins (the types present, one sum for the floats) rather than a value at
    a time. False also when unsure (a row without the column, a float sum that overflows):
    :meth:`RowSchema.check_each` then decides, and names the first value that fails."""
    try:
        values = [row[column.name] for row in rows]
    except (KeyError, TypeError):
        return False
    kinds = set(map(type, values))
    if type(None) in kinds:
        if not column.nullable:
            return False
        kinds.discard(type(None))
        values = [v for v in values if v is not None]
    accepts = _ACCEPTS.get(column.kind)
    if accepts is not None and not kinds.issubset(accepts):
        return False
    # NaN or an infinity makes the sum NaN or infinite (so may finite floats near the limit).
    return float not in kinds or math.isfinite(sum(v for v in values if type(v) is float))


def row_schema(label: str, features: Sequence[str], arrow_types: Mapping[str, str],
               missing_values: Collection[str] | None) -> RowSchema:
    """The schema of a version trained on ``features`` whose training data had these Arrow
    types and missing values (``None``: not recorded, so every column may be null)."""
    return RowSchema(label, tuple(
        Column(name, kind_of(arrow_types.get(name)), arrow_types.get(name),
               missing_values is None or name in missing_values)
        for name in features))


def _what(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{...}"
    if isinstance(value, list):
        return "[...]"
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
