"""What the registry routes refuse, through the real server: a name no model or tenant can have
and a number out of range are 422s that name the parameter, never a 404 or a 500; an export's
file name travels safely in its ``Content-Disposition``."""

from __future__ import annotations

import copy
import re
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from modelyard.client import Client
from tests.conftest import ServerProcess
from tests.registry.conftest import train_version


@pytest.fixture
def http(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _refused(answer: httpx.Response, *loc: str | int) -> str:
    """Assert a 422 naming ``loc``; return its message."""
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert [p["loc"] for p in body["detail"]] == [list(loc)], body
    return str(body["message"])


def test_names_are_checked_where_they_arrive(http: httpx.Client) -> None:
    # U+202E (right-to-left override) in the path: a 500 on export, a 404 elsewhere.
    bidi = urllib.parse.quote("ab\u202ec", safe="")
    for path in (f"/models/{bidi}/versions", f"/models/{bidi}/versions/1",
                 f"/models/{bidi}/versions/1/export", f"/models/{bidi}/policy",
                 f"/models/{bidi}/events", f"/models/{bidi}/compare?a=1&b=2"):
        message = _refused(http.get(path), "path", "model_name")
        assert "U+202E (RIGHT-TO-LEFT OVERRIDE)" in message
    assert "starts or ends with white space" in _refused(
        http.get("/models/m/versions", params={"tenant": " m042"}), "query", "tenant")
    _refused(http.get("/models/m/versions/1", params={"tenant": "a/b"}), "query", "tenant")
    _refused(http.get("/jobs", params={"model_name": "x\u200by"}), "query", "model_name")
    # A lone surrogate (JSON can carry one) in a tenant name: a 500 from the database driver.
    for path, body in (("/models/m/versions/1/stage", '{"stage": "shadow", "actor": "a", '),
                       ("/models/m/versions/1/approve", '{"user": "a", "comment": "ok", '),
                       ("/models/m/rollback", '{"actor": "a", ')):
        raw = (body + '"tenant": "\\ud800"}').encode()
        answer = http.post(path, content=raw, headers={"content-type": "application/json"})
        assert "U+D800" in _refused(answer, "body", "tenant")


@pytest.mark.parametrize(("path", "loc"), [
    ("/models/m/versions/9223372036854775808", ("path", "version")),
    ("/models/m/versions/2147483648/export", ("path", "version")),  # past INTEGER's range
    ("/models/m/versions/0", ("path", "version")),
    ("/models/m/compare?a=-5000000000000000000000&b=1", ("query", "a")),
    ("/models/m/compare?a=1&b=1180591620717411303424", ("query", "b")),
    ("/jobs?offset=100000000000000000000000", ("query", "offset")),
])
def test_numbers_out_of_range_are_refused(http: httpx.Client, path: str,
                                          loc: tuple[str, str]) -> None:
    _refused(http.get(path), *loc)


def _disposition(header: str) -> tuple[str, list[tuple[str, str]]]:
    """A Content-Disposition's type and parameters, as RFC 6266 reads them (quoted strings
    unquoted)."""
    kind, _, rest = header.partition(";")
    params = re.findall(r'\s*([^=\s;]+)=("(?:[^"\\]|\\.)*"|[^;]*)\s*(?:;|$)', rest)
    return kind.strip(), [(k, re.sub(r"\\(.)", r"\1", v[1:-1]) if v.startswith('"') else v)
                          for k, v in params]


def test_the_export_names_its_file_in_rfc_6266_form(client: Client, http: httpx.Client,
                                                    model_request: dict[str, Any]) -> None:
    tag = model_request["metadata"]["model_name"]
    for name, fallback in ((f'{tag}";filename="evil.sh', f"{tag}__filename=_evil.sh"),
                           (f"{tag} modèle 模型", f"{tag}_mod_le___")):
        request = copy.deepcopy(model_request)
        request["metadata"]["model_name"] = name
        request["data"]["features"]["path"] = "tiny.parquet"
        version = train_version(client, request)["version"]
        answer = http.get(f"/models/{urllib.parse.quote(name, safe='')}/versions/{version}"
                          "/export")
        assert answer.status_code == 200, answer.text
        header = answer.headers["content-disposition"]
        assert header.isascii()
        kind, params = _disposition(header)
        assert kind == "attachment"
        assert [k for k, _ in params] == ["filename", "filename*"], header
        assert params[0][1] == f"{fallback}-v{version}.tar.gz"
        charset, _, encoded = params[1][1].partition("''")
        assert charset == "UTF-8"
        assert urllib.parse.unquote(encoded, errors="strict") == f"{name}-v{version}.tar.gz"
