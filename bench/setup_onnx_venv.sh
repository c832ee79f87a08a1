#!/usr/bin/env bash
# Creates a throwaway venv with tf2onnx + onnx on top of the oracle venv's packages, used only to
# export the benchmark models to ONNX (tf2onnx is kept out of the oracle venv on purpose: it pulls
# its own onnx and may pin protobuf). Usage: bash bench/setup_onnx_venv.sh [ORACLE_PY] [DIR]
# then: bench_models.py --onnx-python DIR/bin/python. ORACLE_PY defaults to the project's .venv
# (scripts/setup-venv.sh creates it).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
oracle=${1:-$root/.venv/bin/python}
dir=${2:-${TMPDIR:-/tmp}/convnet-onnx-venv}
if [[ ! -x $oracle ]]; then
  echo "setup_onnx_venv: no python at $oracle (run scripts/setup-venv.sh first)" >&2
  exit 1
fi
"$oracle" -m venv "$dir"
site=$("$oracle" -c 'import site; print(site.getsitepackages()[0])')
own=$("$dir/bin/python" -c 'import site; print(site.getsitepackages()[0])')
echo "$site" >"$own/oracle-venv.pth" # see TensorFlow and Keras without a second copy
"$dir/bin/pip" install -q --disable-pip-version-check tf2onnx onnx
"$dir/bin/python" -c 'import tf2onnx, onnx; print("tf2onnx", tf2onnx.__version__, "onnx", onnx.__version__)'
echo "use: --onnx-python $dir/bin/python"
