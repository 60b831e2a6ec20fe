"""``modelyard tokens ...`` on a server's database (here, one no server has opened yet)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

from tests.cli.test_cli import modelyard


def test_create_list_and_revoke_tokens(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    made = modelyard("tokens", "create", "kelley", "--role", "approver", "--home", home)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()  # stdout holds the token alone, for scripts
    assert token.startswith("myd_") and "shown this once" in made.stderr
    stored = sqlite3.connect(tmp_path / "home" / "modelyard.db").execute(
        "SELECT name, role, token_hash FROM api_tokens").fetchall()
    assert stored == [("kelley", "approver", hashlib.sha256(token.encode()).hexdigest())]

    listed = modelyard("tokens", "list", "--json", "--home", home)
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["role"], r["revoked_at"]) for r in rows] == [
        ("kelley", "approver", None)]
    assert rows[0]["created_by"].startswith("cli") and token not in listed.stdout

    again = modelyard("tokens", "create", "kelley", "--role", "viewer", "--home", home)
    assert again.returncode == 2 and "already has a live token" in again.stdout
    reserved = modelyard("tokens", "create", "token", "--role", "viewer", "--home", home)
    assert reserved.returncode == 2 and "reserved" in reserved.stdout
    bad_role = modelyard("tokens", "create", "x", "--role", "root", "--home", home)
    assert bad_role.returncode == 2 and "'root' is not one of" in bad_role.stderr

    revoked = modelyard("tokens", "revoke", "kelley", "--home", home)
    assert revoked.returncode == 0 and "revoked the token of 'kelley'" in revoked.stdout
    assert "kelley" not in modelyard("tokens", "list", "--home", home).stdout
    everything = modelyard("tokens", "list", "--all", "--json", "--home", home)
    assert json.loads(everything.stdout)[0]["revoked_at"] is not None
    missing = modelyard("tokens", "revoke", "kelley", "--home", home)
    assert missing.returncode == 2 and "no live token named 'kelley'" in missing.stdout
