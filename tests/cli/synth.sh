#!/usr/bin/env bash
# convnet style and convnet analogy on the real MobileNet file (a few L-BFGS iterations): a PNG
# of the working size is written and the output names the feature network; bad input (A and A'
# of different sizes, a layer that is not spatial, an unknown layer, an unreadable image, a bad
# option) fails with one line on stderr starting "convnet: ", a non-zero exit and no file.
set -u
. "$(dirname "$0")/lib/mobilenet.sh"
CAT="$DATA/images/skimage_chelsea.png"
COFFEE="$DATA/images/skimage_coffee.png"
DOG="$DATA/images/darknet_dog.jpg"
M=(-m mobilenet --alpha 0.25 -w "$MODEL")

one_line_failure() {
  local want=$1
  shift
  "$CONVNET" "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  [ "$rc" -eq "$want" ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q '^convnet: ' "$TMP/err" &&
    [ ! -e "$TMP/x.png" ]
}
png_size() { python3 -c "import struct,sys; d=open(sys.argv[1],'rb').read(24); print(*struct.unpack('>II', d[16:24]))" "$1"; }

check "style: MobileNet zoo model at --size 64, 3 iterations" \
  eval 'ran style "${M[@]}" --size 64 --iters 3 -o "$TMP/s.png" "$CAT" "$COFFEE" &&
    is_png "$TMP/s.png" && [ "$(png_size "$TMP/s.png")" = "64 43" ] &&
    grep -q "^feature network: mobilenet_0.25_43 at 64x43; content layer conv_pw_5_relu" "$TMP/out" &&
    grep -q "3 iterations" "$TMP/out"'
check "style: a model file keeps its input size" \
  eval 'ran style -m "$MODEL" --iters 1 --style-layer conv1_relu:2 --content-layer conv_pw_3_relu \
      -o "$TMP/f.png" "$CAT" "$COFFEE" && [ "$(png_size "$TMP/f.png")" = "224 224" ] &&
    grep -q "style layers conv1_relu:2$" "$TMP/out"'
check "analogy: MobileNet zoo model at --size 48" \
  eval 'ran analogy "${M[@]}" --size 64 --iters 2 -o "$TMP/a.png" "$CAT" "$CAT" "$DOG" &&
    is_png "$TMP/a.png" && grep -q "^feature network: mobilenet" "$TMP/out"'
check "analogy --no-layers: pixel level only" \
  eval 'ran analogy "${M[@]}" --no-layers --size 64 -o "$TMP/p.png" "$CAT" "$CAT" "$DOG" && is_png "$TMP/p.png" &&
    grep -q "pixel level only" "$TMP/out"'
check "style --threads 1 runs" \
  eval 'ran style "${M[@]}" --threads 1 --size 64 --iters 1 -o "$TMP/t.png" "$CAT" "$COFFEE" && is_png "$TMP/t.png"'
check "analogy --threads 1 runs" \
  eval 'ran analogy "${M[@]}" --threads 1 --no-layers --size 64 -o "$TMP/t2.png" "$CAT" "$CAT" "$DOG" &&
    is_png "$TMP/t2.png"'
check "style: a bad --threads value is a usage error" \
  eval 'one_line_failure 2 style "${M[@]}" --threads x -o "$TMP/x.png" "$CAT" "$COFFEE"'
check "analogy: a bad --threads value is a usage error" \
  eval 'one_line_failure 2 analogy "${M[@]}" --threads x -o "$TMP/x.png" "$CAT" "$CAT" "$DOG"'
check "style --help" eval 'ran style --help && grep -q "^usage: convnet style" "$TMP/out"'
check "analogy --help" eval 'ran analogy --help && grep -q "^usage: convnet analogy" "$TMP/out"'

check "analogy: A and A' of different sizes" \
  eval 'one_line_failure 1 analogy "${M[@]}" --size 64 -o "$TMP/x.png" "$CAT" "$COFFEE" "$DOG" &&
    grep -q "must be the same size" "$TMP/err"'
check "style: a layer that is not spatial" \
  eval 'one_line_failure 1 style -m "$MODEL" --iters 1 --content-layer reshape_2 -o "$TMP/x.png" "$CAT" "$COFFEE" &&
    grep -q "is not spatial" "$TMP/err"'
check "analogy: a layer that is not spatial" \
  eval 'one_line_failure 1 analogy -m "$MODEL" --layer predictions -o "$TMP/x.png" "$CAT" "$CAT" "$DOG" &&
    grep -q "is not spatial" "$TMP/err"'
check "style: a model that is not an image model" \
  eval 'one_line_failure 1 style -m "$DATA/onnx/node/test_basic_conv_without_padding/model.onnx" \
      --content-layer y --style-layer y -o "$TMP/x.png" "$CAT" "$COFFEE" &&
    grep -q "is not a height x width x 3 image" "$TMP/err"'
check "style: unknown layer" \
  eval 'one_line_failure 1 style "${M[@]}" --size 64 --style-layer nope -o "$TMP/x.png" "$CAT" "$COFFEE" &&
    grep -q "no layer named \"nope\"" "$TMP/err"'
check "style: unreadable image" \
  eval 'one_line_failure 1 style "${M[@]}" --size 64 -o "$TMP/x.png" "$TMP/missing.png" "$COFFEE"'
check "analogy: unreadable image" \
  eval 'one_line_failure 1 analogy "${M[@]}" --size 64 -o "$TMP/x.png" "$CAT" "$CAT" "$TMP/missing.png"'
check "style: output directory missing" \
  eval 'one_line_failure 1 style "${M[@]}" --size 64 -o "$TMP/no/x.png" "$CAT" "$COFFEE"'
check "style: one image only is a usage error" \
  eval 'one_line_failure 2 style -o "$TMP/x.png" "$CAT"'
check "analogy: even --patch is a usage error" \
  eval 'one_line_failure 2 analogy --patch 4 -o "$TMP/x.png" "$CAT" "$CAT" "$DOG"'
check "style: bad --iters is a usage error" \
  eval 'one_line_failure 2 style --iters x -o "$TMP/x.png" "$CAT" "$COFFEE"'

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
