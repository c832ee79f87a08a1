#!/usr/bin/env bash
# The main job on a fresh machine: install, build, classify the sample photos with the real
# pretrained MobileNet (alpha 0.25) Keras file from ../shared/data.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
data=${CN_SHARED_DATA:-$root/../shared/data}
model=$data/weights/keras/mobilenet_v1_0.25_224.h5
if [[ ! -f $model ]]; then
  echo "demo: $model not found; pass a model with ./build/convnet classify -m FILE IMAGE..." >&2
  exit 1
fi
./build/convnet classify -m "$model" --resize nearest -k 5 "$data"/images/*.{jpg,png,bmp}
