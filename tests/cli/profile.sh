#!/usr/bin/env bash
# --profile of classify and run on the real MobileNet 0.25: the CPU line, one row per layer that
# runs with its operations (conv1: 2 x 112 x 112 x 8 x 27 per image), a total whose operations
# are the model's (41 M multiply-adds per image, as published), the results still printed; bad
# values are usage errors.
set -u
. "$(dirname "$0")/lib/mobilenet.sh"
PHOTO="$DATA/images/darknet_dog.jpg"

classify_profile() {
  ran classify -m "$MODEL" -k 1 --profile 2 "$PHOTO" "$PHOTO" || return 1
  grep -q "^  1\. " "$TMP/out" && grep -q "^profile: .*batch 2, mean of 2 forward passes" "$TMP/out" &&
    grep -q "^Conv2D ([0-9]*) " "$TMP/out" && grep -q "^by type:" "$TMP/out" &&
    grep -q "^CPU: .*fp32 peak [0-9.]* GFLOP/s ([0-9]* FLOP/cycle x" "$TMP/out" || return 1
  # conv1 at batch 2: 2 x 2 x 112 x 112 x 8 x 27 = 0.0108 GFLOP; the whole model 2 x 0.084
  awk '$1 == "conv1" && $3 + 0 > 0 && $5 == "0.0108" { c = 1 }
       $1 == "total" && $4 > 0.16 && $4 < 0.18 { t = 1 } END { exit !(c && t) }' "$TMP/out"
}
check "classify --profile: results, the CPU and its peak, conv1's and the model's operations" \
  classify_profile

run_profile() {
  zeros_npy "$TMP/x.npy"
  # a depthwise convolution folded into the 1x1 after it (DepthwiseConv2D+Conv2D) counts twice
  ran run -m "$MODEL" --input "$TMP/x.npy" --output "$TMP/y.npy" --profile 1 &&
    [ -f "$TMP/y.npy" ] && grep -q "^total " "$TMP/out" &&
    awk '{ n += gsub(/Conv2D/, "") } END { exit !(n >= 27) }' "$TMP/out"
}
check "run --profile: the output written, a row for each of the 28 convolutions" run_profile

bad_values() {
  fails_naming 2 "--profile" classify -m "$MODEL" --profile 0 "$PHOTO" &&
    fails_naming 2 "--profile" run -m "$MODEL" --input x.npy --output y.npy --profile many
}
check "--profile 0 or a word is a usage error" bad_values

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
