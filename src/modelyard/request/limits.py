"""How big a train request may be, and which model and tenant names are allowed.

The caps keep one request from costing the server more than any real request needs: a request
is configuration, so thousands of columns or filter values is plenty, while a body with millions
of items or parameters nested hundreds deep is a mistake or an attack. Each cap is refused with
a message naming the field and the limit.

Model and tenant names become URL path segments (``/models/{name}/...``), registry keys and
labels in the UI, so :func:`validate_name` refuses names that no route could carry ("a/b",
".."), that would render misleadingly (bidi overrides, invisible characters) or that cannot be
stored (lone surrogates). Routes that take a name in their path use the same function.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterable
from typing import Any

MAX_NAME_CHARS = 200
"""Model and tenant names; the registry key and the URL segment."""
MAX_LABEL_CHARS = 200
"""owner, project, trainer: short labels to filter jobs by."""
MAX_TEXT_CHARS = 10_000
"""model_description."""
MAX_COLUMN_CHARS = 1_000
"""A column name, a workflow name, a string filter value."""
MAX_PATH_CHARS = 4_096
"""data.features.path: a file, folder, glob or fsspec URL."""
MAX_COLUMNS = 10_000
"""data.features.names and train.classifier_features."""
MAX_FILTERS = 200
MAX_FILTER_VALUES = 10_000
"""string_vals or number_vals of one IsIn/NotIn filter."""
MAX_TENANTS = 10_000
"""tenants.include (fleets of more tenants train "all" and filter)."""
MAX_CUSTOM_PARAMS_BYTES = 64 * 1024
"""train.custom_params as compact JSON."""
MAX_CUSTOM_PARAMS_DEPTH = 20

# Categories no name needs: control (Cc), format (Cf: bidi overrides and isolates, zero-width
# characters, soft hyphen), surrogate (Cs), private-use (Co) and unassigned (Cn) code points,
# and the line and paragraph separators (Zl, Zp).
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def validate_name(kind: str, value: str) -> str:
    """Return ``value`` if it can name a model or tenant, else say why not.

    Args:
        kind: what the name is, for the message: "model name", "tenant name".
        value: the name.

    Raises:
        ValueError: naming the rule the value breaks (pydantic turns it into a 422 naming the
            field; a route may raise it as :class:`~modelyard.errors.RequestError`).
    """
    if len(value) > MAX_NAME_CHARS:
        raise ValueError(f"{kind} {shown(value)} is {len(value):,} characters long; at most "
                         f"{MAX_NAME_CHARS} are allowed")
    if not value.strip():
        raise ValueError(f"{kind} must hold a visible character, got {shown(value)}")
    if value != value.strip():
        raise ValueError(f"{kind} {shown(value)} starts or ends with white space; remove it")
    if "/" in value:
        raise ValueError(f"{kind} {shown(value)} contains '/', which cannot travel in a URL "
                         f"path segment (/models/{{name}}/...); use another character, e.g. '-'")
    if set(value) == {"."}:
        raise ValueError(f"{kind} {shown(value)} is made only of dots, which URLs read as "
                         "'this folder' or 'the folder above'; add a letter")
    for char in value:
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise ValueError(f"{kind} {shown(value)} holds {_describe_char(char)}, a control, "
                             "invisible or unassigned character; names may hold only visible "
                             "characters and spaces")
    return value


def validate_names(kind: str, values: Iterable[str]) -> None:
    """:func:`validate_name` on each of ``values``."""
    for value in values:
        validate_name(kind, value)


def check_custom_params(params: Any) -> None:
    """Refuse parameters nested deeper than :data:`MAX_CUSTOM_PARAMS_DEPTH` or larger than
    :data:`MAX_CUSTOM_PARAMS_BYTES` as compact JSON.

    The depth is measured without recursion, so any depth is measured safely; the size only
    then, when serializing cannot recurse too deep.
    """
    depth = nesting_depth(params)
    if depth > MAX_CUSTOM_PARAMS_DEPTH:
        raise ValueError(f"custom_params is nested {depth:,} deep; at most "
                         f"{MAX_CUSTOM_PARAMS_DEPTH} levels are allowed")
    text = json.dumps(params, separators=(",", ":"), ensure_ascii=False, default=str)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CUSTOM_PARAMS_BYTES:
        raise ValueError(f"custom_params is {size:,} bytes as JSON; at most "
                         f"{MAX_CUSTOM_PARAMS_BYTES:,} are allowed (pass large inputs as a file "
                         "under the data roots and its path as a parameter)")


def nesting_depth(value: Any) -> int:
    """Levels of dicts and lists in ``value``: 0 for a scalar, 1 for ``{}`` or ``[1, 2]``."""
    if not isinstance(value, dict | list | tuple):
        return 0
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list | tuple))
    return deepest


def shown(value: str, limit: int = 60) -> str:
    """``value`` quoted for a message and cut; ``repr`` escapes every character that is not
    printable (controls, bidi and other format characters, surrogates, separators)."""
    text = repr(value[:limit])
    return text if len(value) <= limit else f"{text}... ({len(value):,} characters)"


def _describe_char(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")
