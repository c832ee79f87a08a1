#!/usr/bin/env bash
# Bad input to the convnet CLI: each case must fail with exactly one line on stderr starting
# "convnet: ", a non-zero exit status, and no crash (exit status below 128).
set -u
: "${CONVNET:?set CONVNET to the convnet binary}"
DATA="${CN_SHARED_DATA:-$(dirname "$0")/../../../shared/data}"
MODEL="$DATA/weights/keras/mobilenet_v1_0.25_224.h5"
TMP=$(mktemp -d)
trap 'chmod -R u+rwx "$TMP"; rm -rf "$TMP"' EXIT
export CONVNET_CACHE="$TMP/cache" # never touch the user's cache; stays empty
passed=0 failed=0

# expect_fail WANT_STATUS DESCRIPTION ARGS...: WANT_STATUS is 1, 2 or "nz" (any failure)
expect_fail() {
  local want=$1 what=$2
  shift 2
  "$CONVNET" "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$? lines first
  lines=$(wc -l <"$TMP/err")
  first=$(head -n1 "$TMP/err")
  if [ "$rc" -ge 128 ] || [ "$rc" -eq 0 ] || { [ "$want" != nz ] && [ "$rc" -ne "$want" ]; } ||
    [ "$lines" -ne 1 ] || [[ "$first" != "convnet: "* ]]; then
    echo "FAIL: $what: exit $rc, $lines stderr line(s):"
    sed 's/^/    /' "$TMP/err"
    failed=$((failed + 1))
  else
    echo "ok: $what: $first"
    passed=$((passed + 1))
  fi
}

# Inputs that need the model file: skipped one by one when the shared model is absent.
: >"$TMP/empty.jpg"
echo "this is not an image" >"$TMP/text.jpg"
head -c 300 "$DATA/images/darknet_dog.jpg" >"$TMP/truncated.jpg" 2>/dev/null
mkdir "$TMP/dir.jpg"
if [ -f "$MODEL" ]; then
  expect_fail 1 "missing image" classify -m "$MODEL" "$TMP/missing.jpg"
  expect_fail 1 "zero-byte .jpg" classify -m "$MODEL" "$TMP/empty.jpg"
  expect_fail 1 "text file named .jpg" classify -m "$MODEL" "$TMP/text.jpg"
  expect_fail 1 "truncated JPEG" classify -m "$MODEL" "$TMP/truncated.jpg"
  expect_fail 1 "directory as image" classify -m "$MODEL" "$TMP/dir.jpg"
  if [ "$(id -u)" -eq 0 ]; then
    echo "skip: unreadable file (running as root, permissions do not apply; directory case above)"
  else
    cp "$DATA/images/skimage_coffee.png" "$TMP/locked.png" && chmod 000 "$TMP/locked.png"
    expect_fail 1 "unreadable file" classify -m "$MODEL" "$TMP/locked.png"
  fi
  # one bad image among good ones: the good ones are still classified, exit 1
  "$CONVNET" classify -m "$MODEL" -k 1 "$DATA/images/skimage_coffee.png" "$TMP/text.jpg" \
    "$DATA/images/skimage_chelsea.png" >"$TMP/out" 2>"$TMP/err"
  rc=$?
  if [ $rc -eq 1 ] && [ "$(grep -c '^  1\. ' "$TMP/out")" -eq 2 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ]; then
    echo "ok: mixed good and bad images"
    passed=$((passed + 1))
  else
    echo "FAIL: mixed good and bad images: exit $rc"
    cat "$TMP/out" "$TMP/err"
    failed=$((failed + 1))
  fi
  expect_fail 1 "labels file with the wrong count" classify -m "$MODEL" --labels "$TMP/text.jpg" \
    "$DATA/images/skimage_coffee.png"
  expect_fail 1 "run: input not .npy" run -m "$MODEL" --input "$TMP/text.jpg" --output "$TMP/y.npy"
  header="{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }"
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $((${#header} + 1)))\\x00"
    printf '%s\n' "$header"; head -c 16 /dev/zero; } >"$TMP/small.npy"
  expect_fail 1 "run: input shape mismatch" run -m "$MODEL" --input "$TMP/small.npy" --output "$TMP/y.npy"
  [ ! -e "$TMP/y.npy" ] || { echo "FAIL: output written after an error"; failed=$((failed + 1)); }
else
  echo "skip: image cases ($MODEL not present)"
fi

# Model files and names
expect_fail 1 "missing model file" classify -m "$TMP/missing.h5" x.jpg
expect_fail 1 "model file that is text" summary -m "$TMP/text.jpg"
# A file of no model kind is named as such (not as a failed ONNX parse); one named .onnx is ONNX's.
expect_message() {
  if grep -qF "$1" "$TMP/err"; then
    passed=$((passed + 1))
  else
    echo "FAIL: stderr lacks '$1':"
    sed 's/^/    /' "$TMP/err"
    failed=$((failed + 1))
  fi
}
expect_message "unknown model format (expected Keras .h5/.json, ONNX, PyTorch .pth or .cnm)"
expect_fail 1 "empty model file" summary -m "$TMP/empty.jpg"
expect_message "unknown model format"
cp "$TMP/text.jpg" "$TMP/text.onnx"
expect_fail 1 "text file named .onnx" summary -m "$TMP/text.onnx"
expect_message "not an ONNX model"
expect_fail 1 "unknown zoo name" classify -m nosuchnet x.jpg
expect_fail 1 "zoo model without fetched weights" classify -m vgg16 x.jpg
expect_fail 1 "default model without fetched weights" classify x.jpg
expect_fail 1 "fetch: unknown name" fetch nosuchnet --offline
expect_fail 1 "fetch: unpublished alpha" fetch mobilenet --alpha 0.3 --offline

# Bad flags and usage
expect_fail 2 "no command" 
expect_fail 2 "unknown command" frobnicate
expect_fail 2 "unknown option" classify --bogus x.jpg
expect_fail 2 "unknown short option" classify -Z x.jpg
expect_fail 2 "missing option value" classify x.jpg -k
expect_fail 2 "bad -k" classify -k zero x.jpg
expect_fail 2 "-k out of range" classify -k 0 x.jpg
expect_fail 2 "bad --crop" classify --crop 1.5 x.jpg
expect_fail 2 "bad --resize" classify --resize cubic x.jpg
expect_fail 2 "bad --preprocess" classify --preprocess magic x.jpg
expect_fail 2 "bad --threads" classify --threads -3 x.jpg
expect_fail 2 "no image" classify
expect_fail 2 "summary without -m" summary
expect_fail 2 "bad --pooling" summary -m vgg16 --no-top --pooling median
expect_fail 2 "bad --input-shape" summary -m vgg16 --input-shape 224x224
expect_fail 2 "--alpha on vgg16" summary -m vgg16 --alpha 0.5
expect_fail 2 "run without --input" run -m vgg16 --output "$TMP/y.npy"
expect_fail 2 "fetch without a name" fetch
expect_fail 2 "fetch --alpha on vgg16" fetch vgg16 --alpha 0.5

# --help and --version succeed with output on stdout
for args in "--help" "--version" "classify --help" "run --help" "summary --help" "fetch --help"; do
  # shellcheck disable=SC2086
  if "$CONVNET" $args >"$TMP/out" 2>"$TMP/err" && [ -s "$TMP/out" ] && [ ! -s "$TMP/err" ]; then
    passed=$((passed + 1))
  else
    echo "FAIL: convnet $args"
    failed=$((failed + 1))
  fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
