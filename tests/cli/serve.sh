#!/usr/bin/env bash
# convnet serve's routes, limits and life cycle (tests/serve/test_serve_api.py), run against the
# binary under test, so that the sanitizer build checks the server too. Needs the tests' virtual
# environment (scripts/setup-venv.sh) and the shared MobileNet; skips without them.
set -u
: "${CONVNET:?set CONVNET to the convnet binary}"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY="${CN_VENV:-$ROOT/.venv}/bin/python"
if [ ! -x "$PY" ]; then
  echo "skip: no virtual environment at $PY (bash scripts/setup-venv.sh)"
  exit 77
fi
BUILD=$(cd "$(dirname "$CONVNET")" && pwd)
cd "$ROOT/tests/serve" || exit 1
CN_BUILD_DIR="$BUILD" exec "$PY" -m pytest -q -p no:cacheprovider test_serve_api.py
