"""The token store: hashed tokens, one live token per name, revocation kept for the audit; and
the migration that brings identities to a database made before them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.orm import Session

from modelyard.auth import tokens
from modelyard.auth.roles import Identity, Role
from modelyard.errors import Conflict, NotFound, RequestError
from modelyard.registry.policy import read_policy
from modelyard.sql import MIGRATIONS, make_engine, session_factory, upgrade


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    with session_factory(engine)() as s:
        yield s
    engine.dispose()


def test_roles_include_the_ones_below() -> None:
    assert [r.value for r in Role] == ["viewer", "trainer", "approver", "admin"]
    assert Role.admin.allows(Role.approver) and Role.trainer.allows(Role.viewer)
    assert not Role.trainer.allows(Role.approver)


def test_a_token_is_stored_as_its_sha256_and_names_one_identity(session: Session) -> None:
    assert not tokens.tokens_exist(session)
    row, token = tokens.create_token(session, "kelley", Role.approver, created_by="ops")
    assert token.startswith("myd_") and len(token) == 4 + 43
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert tokens.identity_of(session, token) == Identity("kelley", Role.approver)
    assert tokens.identity_of(session, token + "x") is None
    with pytest.raises(Conflict, match="'kelley' already has a live token; revoke it first"):
        tokens.create_token(session, "kelley", Role.viewer, created_by="ops")

    tokens.revoke_token(session, "kelley", revoked_by="ops")
    assert tokens.identity_of(session, token) is None
    assert tokens.tokens_exist(session)  # revoking every token does not open the server
    with pytest.raises(NotFound, match="no live token named 'kelley'"):
        tokens.revoke_token(session, "kelley", revoked_by="ops")
    _, rotated = tokens.create_token(session, "kelley", Role.viewer, created_by="ops")
    assert tokens.identity_of(session, rotated) == Identity("kelley", Role.viewer)
    assert [r.name for r in tokens.list_tokens(session)] == ["kelley"]
    assert [r.revoked_by for r in tokens.list_tokens(session, revoked=True)] == ["ops", None]


@pytest.mark.parametrize("name", ["token", "modelyard", "", "two words", "-x", "a" * 101])
def test_names_are_plain_and_not_reserved(session: Session, name: str) -> None:
    with pytest.raises(RequestError, match="token name"):
        tokens.create_token(session, name, Role.viewer, created_by="ops")


def test_the_migration_keeps_older_rows(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
        conn.execute(text(
            "INSERT INTO model_policies (model_name, auto_promote, metric, min_improvement, "
            "higher_is_better, require_same_holdout, updated_by, updated_at) VALUES "
            "('old', 0, 'roc_auc', 0, 1, 1, 'ops', '2024-01-01 00:00:00')"))
    upgrade(engine)
    with session_factory(engine)() as session:
        assert read_policy(session, "old").four_eyes is True  # four eyes unless waived
        assert not tokens.tokens_exist(session)
    engine.dispose()
