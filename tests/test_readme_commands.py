"""README.md's command lines that need no trained model: the ``tokens`` commands, run as
written on a server's database, and the ``modelyard serve`` and ``modelyard server`` lines of
"Serving replicas behind a load balancer" and "Several servers", parsed by the CLI into the
settings a server would run with (they name PostgreSQL and S3 hosts that no test reaches;
tests/serving/test_replicas.py and tests/jobs/test_several_servers.py run replicas and servers
for real, with loopback addresses).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Any

import pytest

from modelyard.cli.main import cli
from modelyard.settings import Settings
from tests.test_readme import readme_block, run_modelyard, shell_commands


def parsed(command: str) -> tuple[dict[str, Any], Settings]:
    """The options ``command`` (``modelyard server|serve ...``) gives, as the CLI parses them,
    and the settings they load."""
    argv = shlex.split(command, comments=True)
    assert argv[0] == "modelyard", command
    params = cli.commands[argv[1]].make_context(argv[1], argv[2:]).params
    options = {k: v for k, v in params.items() if k not in ("host", "port", "log_level")}
    return params, Settings.load(**options)


@pytest.fixture
def no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("MODELYARD_")]:
        monkeypatch.delenv(name)


@pytest.mark.usefixtures("no_settings_from_the_environment")
def test_serving_replica_command_line() -> None:
    (command,) = shell_commands(readme_block("Serving replicas behind a load balancer", "bash"))
    params, settings = parsed(command)
    assert (params["host"], params["port"]) == ("0.0.0.0", 8765)
    assert settings.home == Path("/srv/modelyard")
    assert settings.db_url == "postgresql+psycopg://modelyard@db/modelyard"
    assert settings.artifact_root == "s3://models/modelyard"
    assert settings.drain_seconds == 2


@pytest.mark.usefixtures("no_settings_from_the_environment")
def test_several_servers_command_line() -> None:
    (command,) = shell_commands(readme_block("Several servers", "bash"))
    params, settings = parsed(command)
    assert shlex.split(command)[1] == "server"
    assert (params["host"], params["port"]) == ("0.0.0.0", 8765)
    assert settings.db_url == "postgresql+psycopg://modelyard@db/modelyard"
    assert settings.artifact_root == "s3://models/yard"
    assert settings.lease_seconds == 15


def test_token_commands(tmp_path: Path) -> None:
    """The README's three lines, on a server's home given as ``MODELYARD_HOME``."""
    create, listed, revoke = shell_commands(
        readme_block("The HTTP API", "bash", containing="modelyard tokens create"))
    env = {"MODELYARD_HOME": str(tmp_path / "home")}

    made = run_modelyard(create, env)
    assert made.code == 0, made.stderr
    assert made.stdout.strip().startswith("myd_") and "shown this once" in made.stderr
    shown = run_modelyard(listed, env)
    assert shown.code == 0 and "kelley" in shown.stdout and "approver" in shown.stdout
    gone = run_modelyard(revoke, env)
    assert gone.code == 0 and "revoked the token of 'kelley' (approver)" in gone.stdout
    everything = run_modelyard(f"{listed.split('#')[0].strip()} --all --json", env)
    (row,) = json.loads(everything.stdout)
    assert (row["name"], row["role"]) == ("kelley", "approver") and row["revoked_at"]
