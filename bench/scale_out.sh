#!/usr/bin/env bash
# Scaling of data-parallel training on this machine (docs/scale-out.md): 2 ranks x 1 thread
# (mpirun -np 2) against 1 rank x 2 threads, interleaved over ROUNDS rounds, on N training
# images of ../shared/data/cats_dogs with the real MobileNet 0.25 base:
#   features   wall time of `convnet train --epochs 1` with an empty feature cache (extracting
#              the frozen base's features dominates it; images per second = N / time)
#   fine-tune  the images per second convnet reports for one fine-tuning epoch with augmentation
#              (decode, augment, frozen prefix, trained top block and head, gradient sums)
# Usage: bench/scale_out.sh [BUILD_DIR] [N per class] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
per_class=${2:-500}
rounds=${3:-3}
data=${CN_SHARED_DATA:-$root/../shared/data}
base=$data/weights/keras/mobilenet_v1_0.25_224.h5
convnet=$build/convnet
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for c in cats dogs; do
  mkdir -p "$tmp/train/$c"
  ls "$data/cats_dogs/train/$c" | sort | head -n "$per_class" |
    while read -r f; do ln -s "$data/cats_dogs/train/$c/$f" "$tmp/train/$c/$f"; done
done
n=$((2 * per_class))
common=(train --base "$base" --data "$tmp/train" --batch 32 --seed 1)

run() { # LAUNCH... -- ARGS...: the command's wall seconds on stdout, its output in $tmp/out
  local start end
  start=$(date +%s.%N)
  "$@" >"$tmp/out" 2>"$tmp/err" || { cat "$tmp/err" >&2; return 1; }
  end=$(date +%s.%N)
  echo "$end - $start" | bc -l
}
one=("$convnet")
two=(mpirun --oversubscribe -np 2 "$convnet")

printf 'CPU: %s, %s cores; load before: %s\n' \
  "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" "$(nproc)" \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-6s %-14s %12s %12s\n' round setup features/s fine-tune/s
for r in $(seq 1 "$rounds"); do
  for setup in "1x2" "2x1"; do
    if [[ $setup == 1x2 ]]; then launch=("${one[@]}") threads=2; else launch=("${two[@]}") threads=1; fi
    rm -rf "$tmp/cache"
    secs=$(CONVNET_CACHE="$tmp/cache" run "${launch[@]}" "${common[@]}" --epochs 1 \
      --threads "$threads" --out "$tmp/m.cnm")
    feats=$(echo "$n / $secs" | bc -l)
    run "${launch[@]}" "${common[@]}" --epochs 1 --flip --no-cache --fine-tune conv_pw_12_relu \
      --fine-tune-epochs 1 --threads "$threads" --out "$tmp/f.cnm" >/dev/null
    tune=$(sed -n 's/^fine-tune epoch 1\/1: .* \([0-9.]*\) img\/s$/\1/p' "$tmp/out")
    printf '%-6s %-14s %12.1f %12s\n' "$r" "$setup" "$feats" "$tune"
  done
done
printf 'load after: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
