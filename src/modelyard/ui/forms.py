"""Read a page's form: ``application/x-www-form-urlencoded``, as browsers and htmx send it.

The body's size is capped before this by the app's body limit; a form of any other type is
refused, naming what was sent.
"""

from __future__ import annotations

import enum
from typing import TypeVar
from urllib.parse import parse_qsl

from fastapi import Request

from modelyard.errors import RequestError

FORM_TYPE = "application/x-www-form-urlencoded"
E = TypeVar("E", bound=enum.Enum)


async def read_form(request: Request) -> dict[str, str]:
    """The form's fields (the last value of a repeated field wins).

    Raises:
        RequestError: the body is not a URL-encoded form, or not UTF-8.
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    if not body:
        return {}
    if kind != FORM_TYPE:
        raise RequestError(f"a page's form must be sent as {FORM_TYPE}; got "
                           f"{kind or 'no content type'!r} instead")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError("the form is not UTF-8 text; send it from the page") from exc
    return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=1000))


def field(form: dict[str, str], name: str, *, max_chars: int = 2000) -> str:
    """A required text field of ``form``, stripped.

    Raises:
        RequestError: it is missing, empty or longer than ``max_chars``.
    """
    value = form.get(name, "").strip()
    if not value:
        raise RequestError(f"{name}: this field is required")
    if len(value) > max_chars:
        raise RequestError(f"{name}: at most {max_chars:,} characters; got {len(value):,}")
    return value


def choice(kind: type[E], value: str | None, name: str, noun: str) -> E | None:
    """A filter a page's form picks from ``kind``'s values; empty (the form's "any") is none.

    Raises:
        RequestError: ``value`` is none of them, naming ``name`` and the values to pick from.
    """
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        raise RequestError(f"{name}: {value!r} is not a {noun}; pick one of "
                           f"{', '.join(str(x.value) for x in kind)}, or leave it empty") from None
