#!/usr/bin/env bash
# Everything CI checks, in one command: installs what is needed (idempotent), builds with
# warnings as errors, runs the C unit and CLI tests, the oracle tests (pytest against Keras,
# ONNX Runtime, PyTorch, PIL, OpenCV), the HTTP server's tests (tests/serve: routes, the load
# test, the page in headless chromium), then the whole C suite again under AddressSanitizer and
# UndefinedBehaviorSanitizer, and a smoke run of every libFuzzer target (a few seconds each on the
# committed seed corpora, scripts/fuzz.sh). Exits non-zero on the first failing stage.
#   CN_TEST_QUICK=1   skips the slow oracle tests, the sanitizer build and the fuzz smoke run
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
jobs=$(nproc)

stage() { printf '\n==== %s\n' "$*"; }

stage "dependencies"
bash scripts/install-deps.sh
bash scripts/setup-venv.sh

stage "build (-Werror)"
cmake -S . -B build -DCN_WERROR=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"

stage "C unit and CLI tests"
(cd build && ctest --output-on-failure -j"$jobs")

stage "oracle tests"
pytest_args=(-q -p no:cacheprovider)
if [[ ${CN_TEST_QUICK:-0} == 1 ]]; then pytest_args+=(-m "not slow"); fi
CN_BUILD_DIR="$root/build" .venv/bin/python -m pytest "${pytest_args[@]}" tests/oracle

stage "convnet serve: routes, load test, the page in headless chromium"
(cd tests/serve && CN_BUILD_DIR="$root/build" "$root/.venv/bin/python" -m pytest "${pytest_args[@]}" -s .)

if [[ ${CN_TEST_QUICK:-0} != 1 ]]; then
  stage "C unit and CLI tests under AddressSanitizer + UndefinedBehaviorSanitizer"
  cmake -S . -B build-asan -DCN_WERROR=ON -DCN_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build-asan -j"$jobs"
  # OpenBLAS and libgomp keep thread caches for the process lifetime; leaks are checked separately.
  (cd build-asan && ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$jobs")

  stage "fuzz smoke run (5 s per target, docs/fuzzing.md)"
  if command -v clang >/dev/null; then
    bash scripts/fuzz.sh 5
  else
    echo "skipped: clang is not installed (scripts/install-deps.sh installs it)"
  fi
fi
stage "all tests passed"
