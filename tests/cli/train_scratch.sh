#!/usr/bin/env bash
# convnet train --model: a small Keras JSON architecture trained from its initializers on the
# real Fashion-MNIST test images (IDX, gzip) learns well above chance, keeps the classes "0".."9"
# and unit preprocessing, and bad combinations fail with one clear line.
set -u
: "${CONVNET:?set CONVNET to the convnet binary}"
DATA="${CN_SHARED_DATA:-$(dirname "$0")/../../../shared/data}"
IMAGES="$DATA/fashion-mnist/t10k-images-idx3-ubyte.gz"
if [ ! -f "$IMAGES" ]; then
  echo "skip: $IMAGES absent"
  exit 77
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib/check.sh"

cat >"$TMP/small.json" <<'JSON'
{"class_name": "Sequential", "config": {"name": "small", "layers": [
 {"class_name": "Conv2D", "config": {"name": "conv", "batch_input_shape": [null, 28, 28, 1],
  "filters": 8, "kernel_size": [3, 3], "strides": [2, 2], "activation": "relu",
  "kernel_initializer": {"class_name": "HeNormal", "config": {"seed": null}}}},
 {"class_name": "Flatten", "config": {"name": "flat"}},
 {"class_name": "Dense", "config": {"name": "out", "units": 10, "activation": "softmax"}}]}}
JSON

learns() {
  "$CONVNET" train --model "$TMP/small.json" --data "$IMAGES" --val-split 0.2 --epochs 2 \
    --batch 64 --seed 1 --out "$TMP/m.cnm" --log "$TMP/m.jsonl" >"$TMP/out" 2>"$TMP/err" ||
    return 1
  grep -q '^train epoch 2/2' "$TMP/out" || return 1
  acc=$(tail -1 "$TMP/m.jsonl" | sed 's/.*"val_accuracy": \([0-9.]*\).*/\1/')
  awk -v a="$acc" 'BEGIN { exit !(a > 0.7) }' || { echo "val_accuracy $acc" >"$TMP/err"; return 1; }
}
check "a Keras JSON architecture learns Fashion-MNIST from its initializers (val acc > 0.7)" learns

summary() {
  "$CONVNET" summary -m "$TMP/m.cnm" >"$TMP/out" 2>"$TMP/err" && grep -q "Dense" "$TMP/out"
}
check "the trained model loads back" summary

one_line() { # WANT_RC ARGS...
  local want=$1
  shift
  "$CONVNET" "$@" >/dev/null 2>"$TMP/err"
  local rc=$?
  [ "$rc" -eq "$want" ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q '^convnet: ' "$TMP/err"
}
check "--init without --model is a usage error" \
  one_line 2 train --base mobilenet --init --data "$IMAGES" --out "$TMP/x.cnm"
check "--base and --model together are a usage error" \
  one_line 2 train --base mobilenet --model "$TMP/small.json" --data "$IMAGES" --out "$TMP/x.cnm"
cp "$IMAGES" "$TMP/alone-images-idx3-ubyte.gz"
check "images without their labels file fail naming it" \
  one_line 1 train --model "$TMP/small.json" --data "$TMP/alone-images-idx3-ubyte.gz" --out "$TMP/x.cnm"
grep -q "alone-labels-idx1-ubyte.gz" "$TMP/err" || { echo "FAIL: message names the labels file"; failed=$((failed + 1)); }
check "augmentation on IDX data is refused" \
  one_line 1 train --model "$TMP/small.json" --data "$IMAGES" --flip --out "$TMP/x.cnm"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
