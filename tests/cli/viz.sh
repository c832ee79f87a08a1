#!/usr/bin/env bash
# convnet explain, classify --explain, show filters, show activations and show unit on the real
# MobileNet file (show unit also on EfficientNet-Lite0 when its .pth is cached): pictures are
# written (PNG, one per image), activation maximisation raises its units at least 10-fold, and bad
# input (unknown layer, a layer that is not a convolution, a class or unit out of range, an
# output that cannot be written) fails with one line on stderr starting "convnet: ", a non-zero
# exit and no file left behind.
set -u
. "$(dirname "$0")/lib/mobilenet.sh"
LITE="$USER_CACHE/efficientnet_lite0/efficientnet_lite0.pth"
CAT="$DATA/images/skimage_chelsea.png"
COFFEE="$DATA/images/skimage_coffee.png"

one_line_failure() {
  local want=$1
  shift
  "$CONVNET" "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  [ "$rc" -eq "$want" ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q '^convnet: ' "$TMP/err"
}
# Nothing but the files named is left in dir (no temporary or half-written pictures).
only_files() {
  local dir=$1
  shift
  local want=""
  for f in "$@"; do want+="$f "; done
  [ "$(find "$dir" -mindepth 1 -maxdepth 1 | sort | tr '\n' ' ')" = "$want" ]
}

check "explain writes one PNG per image" \
  eval 'ran explain -m "$MODEL" -o "$TMP/cam" "$CAT" "$COFFEE" &&
    is_png "$TMP/cam/skimage_chelsea.png" && is_png "$TMP/cam/skimage_coffee.png" &&
    only_files "$TMP/cam" "$TMP/cam/skimage_chelsea.png" "$TMP/cam/skimage_coffee.png" &&
    grep -q "skimage_coffee.png: espresso (class 967" "$TMP/out"'
check "explain --class by name and --layer" \
  eval 'ran explain -m "$MODEL" --class tabby --layer conv_pw_12_relu -o "$TMP/cam2" "$CAT" &&
    grep -q "tabby (class 281, p = .*layer conv_pw_12_relu)" "$TMP/out"'
check "classify --explain DIR" \
  eval 'ran classify -m "$MODEL" --json --explain "$TMP/cls" "$COFFEE" &&
    is_png "$TMP/cls/skimage_coffee.png" && [ "$(wc -l <"$TMP/out")" -eq 1 ]'
check "show filters (first layer, colour)" \
  eval 'ran show filters -m "$MODEL" -o "$TMP/f.png" && is_png "$TMP/f.png" &&
    grep -q "kernels of conv1" "$TMP/out"'
check "show filters of a depthwise layer, per-tile scale" \
  eval 'ran show filters -m "$MODEL" --layer conv_dw_3 --scale per-tile -o "$TMP/dw.png" &&
    is_png "$TMP/dw.png"'
check "show activations" \
  eval 'ran show activations -m "$MODEL" --layer conv_pw_1_relu -o "$TMP/a.png" "$CAT" &&
    is_png "$TMP/a.png" && grep -q "16 feature maps of conv_pw_1_relu (112x112)" "$TMP/out"'
check "a .cnm model: explain and show" \
  eval 'ran convert "$MODEL" "$TMP/m.cnm" && ran explain -m "$TMP/m.cnm" -o "$TMP/cnm" "$COFFEE" &&
    grep -q "espresso (class 967" "$TMP/out" && ran show filters -m "$TMP/m.cnm" -o "$TMP/cnm.png"'
ONNX="$DATA/onnx/light/light_resnet50.onnx"
if [ -f "$ONNX" ]; then
  check "an ONNX model (NCHW): explain and show" \
    eval 'ran explain -m "$ONNX" -o "$TMP/onnx" "$CAT" && is_png "$TMP/onnx/skimage_chelsea.png" &&
      ran show filters -m "$ONNX" -o "$TMP/onnx_f.png" && grep -q "kernels of r0" "$TMP/out" &&
      ran show activations -m "$ONNX" --layer r0 -o "$TMP/onnx_a.png" "$CAT"'
fi
# Every "ratio R" show unit prints (one line per unit) is at least 10, and there are $1 of them.
ratios_at_least_10() { awk -v want="$1" '{ for (i = 1; i < NF; i++) if ($i == "ratio") {
    n++; if ($(i + 1) + 0 < 10) low = 1 } } END { exit !(n == want && !low) }' "$TMP/out"; }
check "show unit: MobileNet conv_pw_13_relu units 22 and 5 (a grid) rise >= 10x" \
  eval 'ran show unit -m "$MODEL" --layer conv_pw_13_relu --unit 22 --unit 5 -o "$TMP/u.png" &&
    is_png "$TMP/u.png" && ratios_at_least_10 2 && cat "$TMP/out"'
check "show unit: one unit" \
  eval 'ran show unit -m "$MODEL" --layer conv_pw_13_relu --unit 5 -o "$TMP/u5.png" &&
    is_png "$TMP/u5.png" && ratios_at_least_10 1'
check "show unit: the same picture on one thread" \
  eval 'ran show unit -m "$MODEL" --layer conv_pw_13_relu --unit 5 --threads 1 \
    -o "$TMP/u5_1.png" && cmp -s "$TMP/u5.png" "$TMP/u5_1.png"'
if [ -f "$LITE" ]; then
  check "show unit: EfficientNet-Lite0 head_relu6 unit 0 rises >= 10x" \
    eval 'ran show unit -m efficientnet_lite0 -w "$LITE" --layer head_relu6 --unit 0 \
      -o "$TMP/lite0.png" && is_png "$TMP/lite0.png" && ratios_at_least_10 1 && cat "$TMP/out"'
else
  echo "note: $LITE not cached; the EfficientNet-Lite0 show unit check is skipped"
fi
check "--help texts" \
  eval 'ran explain --help && grep -q "Grad-CAM" "$TMP/out" && ran show --help &&
    grep -q "per-tile" "$TMP/out" && grep -q "show unit" "$TMP/out"'

mkdir "$TMP/bad"
check "show filters: unknown layer" one_line_failure 1 show filters -m "$MODEL" --layer nope \
  -o "$TMP/bad/f.png"
check "show filters: not a convolution" one_line_failure 1 show filters -m "$MODEL" \
  --layer conv1_bn -o "$TMP/bad/f.png"
check "show activations: unknown layer" one_line_failure 1 show activations -m "$MODEL" \
  --layer nope -o "$TMP/bad/a.png" "$CAT"
check "show activations: no spatial output" one_line_failure 1 show activations -m "$MODEL" \
  --layer predictions -o "$TMP/bad/a.png" "$CAT"
check "explain: class out of range" one_line_failure 1 explain -m "$MODEL" --class 1000 \
  -o "$TMP/bad/cam" "$CAT"
check "explain: unknown class name" one_line_failure 1 explain -m "$MODEL" --class no-such \
  -o "$TMP/bad/cam" "$CAT"
check "explain: layer that is not spatial" one_line_failure 1 explain -m "$MODEL" \
  --layer reshape_2 -o "$TMP/bad/cam" "$CAT"
check "explain: missing image" one_line_failure 1 explain -m "$MODEL" -o "$TMP/bad/cam" \
  "$TMP/missing.jpg"
check "show filters: unwritable output" one_line_failure 1 show filters -m "$MODEL" \
  -o "$TMP/no/such/dir/f.png"
check "show filters: output is a directory" one_line_failure 1 show filters -m "$MODEL" \
  -o "$TMP/bad"
check "explain: output under a file" one_line_failure 1 explain -m "$MODEL" \
  -o "$TMP/f.png/cam" "$CAT"
check "explain: two images with one picture name" one_line_failure 1 explain -m "$MODEL" \
  -o "$TMP/bad/cam" "$CAT" "$DATA/images/../images/skimage_chelsea.png"
check "show: nothing to show" one_line_failure 2 show -m "$MODEL"
check "show activations: no image" one_line_failure 2 show activations -m "$MODEL" \
  --layer conv1 -o "$TMP/bad/a.png"
check "show: bad --scale" one_line_failure 2 show filters -m "$MODEL" --scale loud \
  -o "$TMP/bad/f.png"
check "explain: no -o" one_line_failure 2 explain -m "$MODEL" "$CAT"
check "show unit: unknown layer" one_line_failure 1 show unit -m "$MODEL" --layer nope --unit 0 \
  -o "$TMP/bad/u.png"
check "show unit: unit out of range" one_line_failure 1 show unit -m "$MODEL" \
  --layer conv_pw_13_relu --unit 256 -o "$TMP/bad/u.png"
check "show unit: unwritable output" one_line_failure 1 show unit -m "$MODEL" \
  --layer conv_pw_13_relu --unit 0 -o "$TMP/no/such/dir/u.png"
check "show unit: output is a directory" one_line_failure 1 show unit -m "$MODEL" \
  --layer conv_pw_13_relu --unit 0 -o "$TMP/bad"
check "show unit: a grid with a unit out of range" one_line_failure 1 show unit -m "$MODEL" \
  --layer conv_pw_13_relu --unit 3 --steps 2 --unit 300 -o "$TMP/bad/u.png"
check "show unit: no --unit" one_line_failure 2 show unit -m "$MODEL" --layer conv_pw_13_relu \
  -o "$TMP/bad/u.png"
check "show unit: bad --steps" one_line_failure 2 show unit -m "$MODEL" --layer conv_pw_13_relu \
  --unit 0 --steps -3 -o "$TMP/bad/u.png"
check "no file left behind by the failures" \
  only_files "$TMP/bad"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
