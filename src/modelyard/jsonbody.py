"""JSON request bodies read within a budget of values, and parsed off the event loop.

``json.loads`` and pydantic hold the GIL for their whole call, so parsing in a worker thread
alone does not free the loop while a body of millions of tiny values is parsed (seconds). What
keeps ``/healthz`` answering is a budget: the body's values are counted first (cheaply, in
slices, see :func:`count_json_values`), and a body over its route's budget is refused before it
is parsed. At about 50 ms per 100,000 values in the slowest shape (nested empty lists), a body
within budget parses in tens of milliseconds. Small bodies are parsed on the loop itself, where
the thread's hand-off would cost more than the parse.

Used by ``POST /train`` (:mod:`modelyard.api.limits`) and ``POST /predict/{name}``
(:mod:`modelyard.serving.routes`), so it belongs to neither layer.
"""

from __future__ import annotations

import email.message
import functools
import json
from typing import Any, TypeVar

import anyio
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)

_COUNT_WINDOW = 1 << 20  # count in slices, so no single call holds the GIL for long
_INLINE_BYTES = 16 << 10  # at most ~5,000 values: parsed in a few milliseconds


async def read_json_body(request: Request, model: type[Model], max_values: int,
                         what: str, advice: str = "", *, direct: bool = False) -> Model:
    """The request's JSON body as a ``model``, parsed within ``max_values`` values.

    Args:
        what: the body, for messages ("a train request").
        advice: what the refusal of too many values adds after the budget (the setting
            that raises it, what to send instead).
        direct: validate a small body's JSON text in one pass with pydantic's own parser,
            two to three times as fast as ``json.loads`` and then the model. Only for a model
            whose fields validate JSON's values alike either way (strings, numbers, booleans,
            lists and objects of any JSON, no unions of strings and dates); a body it refuses
            is parsed again the usual way, so a refusal's answer is the same as without it.
            A body parsed off the loop is parsed the usual way: pydantic's parser decodes
            escaped text about half as fast as ``json``'s, in one call that holds the GIL.

    Raises:
        RequestValidationError: the body is not JSON, holds more than ``max_values`` values,
            or is not a valid ``model`` (the app answers 422 with a summary, never the input).
    """
    if not _is_json(request.headers.get("content-type")):
        raise _invalid("content_type", f"{what} is JSON: send it with the header "
                                       "Content-Type: application/json")
    body = await request.body()
    if len(body) <= _INLINE_BYTES:
        return parse_json_body(body, model, max_values, what, advice, direct=direct)
    return await anyio.to_thread.run_sync(parse_json_body, body, model, max_values, what,
                                          advice)


def parse_json_body(body: bytes, model: type[Model], max_values: int, what: str,
                    advice: str = "", *, direct: bool = False) -> Model:
    """Count, parse and validate a JSON body (blocking; see the module doc and
    :func:`read_json_body` for ``direct``)."""
    values = count_json_values(body)
    if values > max_values:
        raise _invalid("too_many_values", f"the body holds about {values:,} JSON values "
                       f"(counting ',', '[' and '{{'); {what} may hold at most "
                       f"{max_values:,}{advice}")
    if direct:
        try:
            return model.model_validate_json(body)
        except ValidationError:
            pass  # answered below, as any body is: its messages name what json says
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise _invalid("json_invalid", f"not valid JSON: {exc.msg} at character {exc.pos}"
                       ) from None
    except UnicodeDecodeError:
        raise _invalid("json_invalid", "not valid JSON: the body is not UTF-8") from None
    except RecursionError:
        raise _invalid("json_invalid", f"the body is nested too deeply to be {what}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]
                                     ) from None


def count_json_values(body: bytes) -> int:
    """An upper bound of the values in a JSON text: its commas, brackets and braces (plus one),
    counting those inside strings too."""
    count = 1
    for start in range(0, len(body), _COUNT_WINDOW):
        end = start + _COUNT_WINDOW
        count += sum(body.count(char, start, end) for char in (b",", b"[", b"{"))
    return count


def json_body_openapi(model: type[BaseModel], limit_setting: str) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the JSON body of a route that reads its body
    itself, and the route's 413 and 422 answers; the schema is inlined, so it needs nothing in
    ``components``."""
    return {
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": inline_schema(model)}}},
        "responses": {
            "413": {"description": f"The body is over the server's limit ({limit_setting})"},
            "422": {"description": "Not a valid request: the first problems, each naming its "
                                   "field (detail), and how many more (more_errors)"},
        },
    }


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema with its ``$defs`` put in place (it needs no ``components``)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    result: dict[str, Any] = inline(schema)
    return result


@functools.lru_cache(maxsize=64)  # clients send a handful of distinct headers, each per request
def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    header = email.message.Message()
    header["content-type"] = content_type
    subtype = header.get_content_subtype()
    return header.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json"))


def _invalid(kind: str, msg: str) -> RequestValidationError:
    return RequestValidationError([{"type": kind, "loc": ("body",), "msg": msg}])
