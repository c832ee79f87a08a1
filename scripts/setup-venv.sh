#!/usr/bin/env bash
# Creates the oracle tests' virtual environment (TensorFlow/Keras, ONNX Runtime, Pillow, OpenCV,
# NumPy, SciPy, h5py, pytest from PyPI) at $CN_VENV (default: .venv in the project). Idempotent: a venv
# whose stamp matches requirements is reused. The venv sees Debian's python3-torch through
# --system-site-packages when the system python is used.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${CN_VENV:-$root/.venv}
req=$root/tests/oracle/requirements.txt
stamp=$venv/.convnet-requirements
if [[ -x $venv/bin/python ]] && cmp -s "$req" "$stamp"; then
  exit 0
fi
python=python3
# Debian's python3 can see python3-torch; prefer it when it exists.
if [[ -x /usr/bin/python3 ]]; then python=/usr/bin/python3; fi
"$python" -m venv --system-site-packages "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
cp "$req" "$stamp"
