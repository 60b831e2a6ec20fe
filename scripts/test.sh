#!/usr/bin/env bash
# Set up and run the whole test suite, the same on any machine: a virtual environment with
# exactly the packages pinned in requirements/dev.lock (refresh it with scripts/lock.sh), Debian's
# chromium for the UI tests, a throwaway PostgreSQL on loopback (installed if missing, stopped
# afterwards unless it was already running), then pytest on SQLite and PostgreSQL. Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MODELYARD_TEST_VENV:-.venv}"
python3 -m pip install -q --disable-pip-version-check "uv>=0.4" 2>/dev/null \
  || python3 -m pip install -q "uv>=0.4"
[ -x "$VENV/bin/python" ] || python3 -m uv venv -q --seed --python "$(command -v python3)" "$VENV"
# torch's CPU build lies in /opt/wheels on these machines (the lock pins it).
FIND=()
[ -d /opt/wheels ] && FIND=(--find-links /opt/wheels)
python3 -m uv pip sync -q --python "$VENV/bin/python" "${FIND[@]}" requirements/dev.lock
python3 -m uv pip install -q --python "$VENV/bin/python" --no-deps -e .
# The UI tests drive Debian's own Chromium through Playwright's driver: no browser download.
# The serving replicas' test runs Debian's HAProxy in front of them; the README's curl
# examples run with the real curl.
DEBS=()
command -v chromium >/dev/null || DEBS+=(chromium)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || DEBS+=(haproxy)
command -v curl >/dev/null || DEBS+=(curl)
if [ "${#DEBS[@]}" -gt 0 ]; then
  SUDO=(); [ "$(id -u)" = 0 ] || SUDO=(sudo)
  ("${SUDO[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${DEBS[@]}") >&2
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"

eval "$(scripts/start-postgres.sh)"
export MODELYARD_TEST_POSTGRES_URL
if [ "${MODELYARD_TEST_PG_STARTED:-0}" = 1 ]; then
  trap 'scripts/start-postgres.sh --stop >/dev/null' EXIT
fi
python -m pytest -q -p no:cacheprovider "$@"
