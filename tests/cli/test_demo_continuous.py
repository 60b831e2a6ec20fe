"""``modelyard demo --continuous``: the closed loop as a user runs it, end to end."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cli.test_cli import modelyard


def test_the_continuous_demo_closes_the_loop(tmp_path: Path) -> None:
    done = modelyard("demo", "--continuous", "--home", str(tmp_path / "demo"), "--rows",
                     "20000", timeout=600, columns=300)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    stages = [line.split()[0] for line in out.splitlines() if line.strip()
              and line.split()[0] in ("train", "serve", "monitor", "drift", "trigger",
                                      "pipeline", "validate", "shadow", "promote")]
    assert stages.index("train") < stages.index("drift") < stages.index("trigger") \
        < stages.index("validate") < stages.index("shadow") < stages.index("promote")
    assert re.search(r"trigger +drift fired: PSI above 0\.2 over the last 1d on \w+", out)
    for step in ("validate", "train", "validate_model", "deploy"):
        assert re.search(rf"pipeline +{step}: succeeded", out), step
    shadow = re.search(r"production AUC (\d\.\d+), shadow version 2 AUC (\d\.\d+): better", out)
    assert shadow and float(shadow[2]) > float(shadow[1])
    promoted = re.search(r"served by versions \[1, 2\], 0 failed", out)
    assert promoted, out
