#!/usr/bin/env bash
# Set up and run the whole test suite: install the package with its dev extras, start a
# throwaway PostgreSQL on loopback (installing it if missing), run pytest on SQLite and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --upgrade pip >/dev/null 2>&1 || true
python3 -m pip install -q -e ".[dev]"
eval "$(scripts/start-postgres.sh)"
export MODELYARD_TEST_POSTGRES_URL
exec python3 -m pytest -q -p no:cacheprovider "$@"
