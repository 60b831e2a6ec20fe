#!/usr/bin/env bash
# Refresh requirements/dev.lock, the pinned set of packages the test suite and CI install.
# Run it on purpose (a new dependency, a security fix, a wanted upgrade), then run
# scripts/test.sh and commit the lock with the test fixes the new versions needed.
# Users' installs are not affected: pyproject.toml keeps ranges.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q "uv>=0.4"
# torch is pinned to the CPU build that lies in /opt/wheels on these machines; PyPI's
# build of the same version pulls several GB of CUDA libraries.
python3 -m uv pip compile pyproject.toml --extra dev \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --find-links /opt/wheels --override requirements/overrides.txt \
  --no-emit-find-links --quiet -o requirements/dev.lock "$@"
