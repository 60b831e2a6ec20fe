"""Every code block of README.md is taken by a test, or is listed here with the reason no test
takes it.

A test takes a block with ``readme_block(heading, lang, containing=...)``; this test reads those
calls from the test files (their arguments are string constants, or names of module-level string
constants) and fails on a README block that none of them takes, so a new example cannot go
untested unnoticed. The list of blocks left out is exact: one that a test starts taking, or that
leaves the README, must leave the list too.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.test_readme import FENCE, README, readme_block

TESTS = Path(__file__).parent
# First line of a block no test takes -> why.
NOT_TAKEN = {
    "python3 -m pip install -e . && modelyard demo":
        "installs the checkout; tests/cli/test_cli.py runs `modelyard demo`",
    "bash scripts/test.sh": "runs this suite",
    "bash scripts/lock.sh            # uv pip compile pyproject.toml --extra dev -> "
    "requirements/dev.lock": "refreshes the lock from the package index",
    "modelyard demo --continuous           # about a minute on a laptop; --home, --rows":
        "tests/cli/test_demo_continuous.py runs it, with --home and fewer --rows",
    "objects/sha256/ab/cdef...       the pickled model; its id is sha256:<hex> of these bytes":
        "a folder layout, not a command",
    '{"verdict": "differs", "same_model": false, "reasons": ["data_changed"],':
        "an example answer; tests/api/test_replay.py checks the answers",
}


def _strings(tree: ast.Module) -> dict[str, str]:
    """The module-level ``NAME = "text"`` assignments of a test file."""
    return {target.id: node.value.value for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)}


def _value(node: ast.expr, names: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return names.get(node.id) if isinstance(node, ast.Name) else None


def taken() -> set[tuple[str, str, str]]:
    """``(heading, lang, containing)`` of every ``readme_block`` call in the tests."""
    found = set()
    for path in TESTS.rglob("*.py"):
        if path == Path(__file__):
            continue
        tree = ast.parse(path.read_text())
        names = _strings(tree)
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id == "readme_block"):
                continue
            args = [_value(a, names) for a in node.args]
            containing = [_value(k.value, names) for k in node.keywords
                          if k.arg == "containing"] or [""]
            assert None not in args + containing, (
                f"{path.name}:{node.lineno}: readme_block's arguments must be strings or "
                "module-level string constants, for this test to read them")
            found.add((args[0], args[1], containing[0]))  # type: ignore[arg-type]
    return found


def test_every_readme_block_is_taken_by_a_test() -> None:
    covered = {readme_block(heading, lang, containing=containing)
               for heading, lang, containing in taken()}
    left = {m["body"].splitlines()[0] for m in FENCE.finditer(README.read_text())
            if m["body"] not in covered}
    assert left == set(NOT_TAKEN), (
        f"README blocks no test takes, beyond the list: {sorted(left - set(NOT_TAKEN))}; "
        f"listed but taken or gone: {sorted(set(NOT_TAKEN) - left)}")
