"""The architecture is a contract: the layering, and modules small enough to read.

The import rules live in pyproject.toml (``[tool.importlinter]``) and docs/architecture.md says
why each holds. import-linter follows indirect imports too, so a helper that pulls a server
module into the worker through a third module breaks the build as surely as a direct import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "src" / "modelyard"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
# A module or function may pass the limit only with its reason written here.
LONGER_ON_PURPOSE: dict[str, str] = {}


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and " KEPT" in done.stdout


def _sizes() -> list[tuple[str, int, int]]:
    """``(name, lines, limit)`` of every module and function of the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE.parent))
        text = path.read_text()
        found.append((rel, text.count("\n"), MAX_MODULE_LINES))
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                found.append((f"{rel}:{node.name}", node.end_lineno - node.lineno + 1,
                              MAX_FUNCTION_LINES))
    return found


def test_modules_and_functions_stay_small() -> None:
    too_long = {name: lines for name, lines, limit in _sizes()
                if lines > limit and name not in LONGER_ON_PURPOSE}
    assert too_long == {}, (
        f"split these (modules over {MAX_MODULE_LINES} lines, functions over "
        f"{MAX_FUNCTION_LINES}), or give the reason in LONGER_ON_PURPOSE: {too_long}")

