"""The public surface is curated and the layering holds (checked, not hoped for)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import modelyard


def test_public_names_are_pinned() -> None:
    assert sorted(modelyard.__all__) == [
        "Client", "ModelyardError", "TrainRequest", "Workflow", "__version__", "load_request"]
    for name in modelyard.__all__:
        assert getattr(modelyard, name) is not None


def test_the_package_ships_type_information() -> None:
    assert (Path(modelyard.__file__).parent / "py.typed").is_file()


def _modules_after_import(module: str) -> set[str]:
    code = f"import sys, json, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_runtime_never_loads_the_server_stack() -> None:
    loaded = _modules_after_import("modelyard.runtime.training")
    assert not {m for m in loaded if m.split(".")[0] in ("fastapi", "sqlalchemy", "uvicorn",
                                                          "alembic", "starlette")}
    assert "modelyard.api" not in loaded and "modelyard.jobs" not in loaded


def test_request_contract_has_no_io_dependencies() -> None:
    loaded = _modules_after_import("modelyard.request")
    assert not {m for m in loaded if m.split(".")[0] in ("pyarrow", "pandas", "sklearn",
                                                          "fastapi", "sqlalchemy")}


def test_the_root_package_leaves_the_http_client_to_those_who_use_it() -> None:
    loaded = _modules_after_import("modelyard")
    assert "httpx" not in loaded and "modelyard.client" not in loaded
    out = subprocess.run([sys.executable, "-c", "import modelyard; print(modelyard.Client)"],
                         capture_output=True, text=True, check=True)
    assert "modelyard.client.Client" in out.stdout


def test_the_protocol_loads_nothing_but_the_standard_library() -> None:
    beyond_root = _modules_after_import("modelyard.protocol.codec") - _modules_after_import(
        "modelyard")
    assert {m for m in beyond_root if m.startswith("modelyard")} <= {
        "modelyard.protocol", "modelyard.protocol.codec", "modelyard.protocol.events",
        "modelyard.protocol.results"}
    assert not {m for m in beyond_root if m.split(".")[0] in ("numpy", "pandas", "pyarrow",
                                                               "sqlalchemy", "fastapi")}


def test_the_command_line_starts_without_the_server_stack() -> None:
    # Every `modelyard ...` invocation pays for what cli/main imports; the commands that need
    # the server, the database or data libraries import them when they run.
    code = ("import sys, json; from modelyard.cli.main import _register_groups; "
            "_register_groups(); print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert not {m for m in loaded if m.split(".")[0] in (
        "fastapi", "sqlalchemy", "uvicorn", "alembic", "pandas", "pyarrow", "sklearn")}
