"""The jobs, job and compare pages refuse what they cannot show with a 4xx page that names the
parameter and the next step (over HTTP: no browser needed to read an error page)."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from tests.conftest import ServerProcess

SQLITE = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def _refused(server: ServerProcess, path: str, status: int) -> str:
    answer = httpx.get(f"{server.url}{path}", timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    found = re.search(r'<p class="error-message">(.*?)</p>', answer.text, re.S)
    assert found, answer.text
    return found.group(1).replace("&#39;", "'")


@SQLITE
def test_bad_filters_of_the_jobs_page_name_their_parameter(server: ServerProcess) -> None:
    assert _refused(server, "/ui/jobs?state=finished", 422) == (
        "state: 'finished' is not a job state; pick one of created, queued, running, "
        "succeeded, failed, cancelled, or leave it empty")
    assert "query.limit" in _refused(server, "/ui/jobs?limit=0", 422)
    assert "query.offset" in _refused(server, "/ui/jobs?offset=-1", 422)
    assert "query.model_name" in _refused(server, "/ui/jobs?model_name=" + "m" * 300, 422)
    empty = httpx.get(f"{server.url}/ui/jobs?state=&model_name=&owner=&project=&search=")
    assert empty.status_code == 200, "the filter form's empty fields filter nothing"


@SQLITE
def test_an_unknown_job_is_a_404_page_naming_it(server: ServerProcess) -> None:
    unknown = uuid.uuid4().hex
    assert _refused(server, f"/ui/jobs/{unknown}", 404) == (
        f"no job '{unknown}'; list jobs with GET /jobs or `modelyard jobs list`")
    assert f"no job '{unknown}'" in _refused(server, f"/ui/jobs/{unknown}/log", 404)


@SQLITE
def test_compare_needs_two_known_jobs_or_versions(server: ServerProcess) -> None:
    how = ("pick two or more jobs to compare (?jobs=ID1,ID2) or a model's versions "
           "(?model=NAME&amp;versions=3,4)")
    assert _refused(server, "/ui/compare", 422) == f"jobs: got 0; {how}"
    assert _refused(server, "/ui/compare?jobs=abc", 422) == f"jobs: got 1; {how}"
    assert _refused(server, "/ui/compare?jobs=abc,abc", 422) == (
        f"jobs: abc, abc names one twice; {how}")
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    assert _refused(server, f"/ui/compare?jobs={first},{second}", 404) == (
        f"no job '{first}' to compare; list jobs with GET /jobs")
    assert _refused(server, "/ui/compare?model=fraud&versions=1,x", 422) == (
        f"versions: 'x' is not a version number (1, 2, ...); {how}")
    assert _refused(server, "/ui/compare?model=fraud&versions=2", 422) == (
        f"versions: got 1 of 'fraud'; {how}")
    assert _refused(server, "/ui/compare?model=nope&versions=1,2", 404).startswith(
        "model 'nope' has no version 1 for tenant '*'")
    assert "at most 10" in _refused(server, "/ui/compare?jobs=" + ",".join(
        str(i) for i in range(11)), 422)
