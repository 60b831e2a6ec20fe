"""A real server with named tokens, one per role (and two approvers, for four eyes)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from modelyard.auth import tokens as token_store
from modelyard.auth.roles import Role
from modelyard.client import Client
from modelyard.sql import make_engine, session_factory
from tests.conftest import ServerProcess, start_server, wait_until

PEOPLE = {"vera": Role.viewer, "tom": Role.trainer, "ann": Role.approver,
          "bob": Role.approver, "ada": Role.admin}
WHO_HAS = {role: name for name, role in PEOPLE.items() if name != "bob"}


@dataclass
class TokenServer:
    """A running server, and the token of each of :data:`PEOPLE`."""

    server: ServerProcess
    tokens: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, name: str | None) -> Client:
        """A client sending ``name``'s token (None: no token)."""
        return Client(self.url, token=self.tokens[name] if name else "", timeout=30)

    def headers(self, name: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"} if name else {}


def create_tokens(db_url: str, people: dict[str, Role]) -> dict[str, str]:
    """Tokens straight into the server's database, as ``modelyard tokens create`` puts them."""
    engine = make_engine(db_url)
    try:
        with session_factory(engine)() as session:
            return {name: token_store.create_token(session, name, role, created_by="tests")[1]
                    for name, role in people.items()}
    finally:
        engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def token_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[TokenServer]:
    server = start_server(tmp_path_factory.mktemp(f"tokens-{request.param}"), request.param,
                          "--concurrency", "2")
    try:
        tokens = create_tokens(server.db_url, PEOPLE)
        # The server notices its first tokens within seconds (it asks the database anew at most
        # every few seconds while it has none).
        wait_until(lambda: httpx.get(f"{server.url}/jobs").status_code == 401, timeout=20)
        yield TokenServer(server, tokens)
    finally:
        server.stop()
