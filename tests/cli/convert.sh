#!/usr/bin/env bash
# convnet convert: usage errors, output formats by extension, a missing input, and (with the shared
# MobileNet) a real export that replaces an existing file atomically.
set -u
: "${CONVNET:?set CONVNET to the convnet binary}"
DATA="${CN_SHARED_DATA:-$(dirname "$0")/../../../shared/data}"
MODEL="$DATA/weights/keras/mobilenet_v1_0.25_224.h5"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib/check.sh"

# expect RC PATTERN ARGS...: convnet exits with RC and prints one stderr line matching PATTERN
expect() {
  local rc=$1 pattern=$2
  shift 2
  "$CONVNET" "$@" >"$TMP/out" 2>"$TMP/err"
  local got=$?
  [ "$got" -eq "$rc" ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q -- "$pattern" "$TMP/err"
}

check "--help prints the usage" sh -c '"$0" convert --help | grep -q "usage: convnet convert IN OUT"' "$CONVNET"
check "listed in convnet --help" sh -c '"$0" --help | grep -q "^  convert "' "$CONVNET"
check "no arguments: usage error" expect 2 "expected IN and OUT" convert
check "one argument: usage error" expect 2 "expected IN and OUT" convert "$MODEL"
check "three arguments: usage error" expect 2 "expected IN and OUT" convert a b c
check "unknown option: usage error" expect 2 "convert" convert --bogus a b.onnx
check "bad --alpha: usage error" expect 2 "alpha" convert mobilenet b.onnx --alpha x
check "unknown extension refused" expect 2 "unknown output format" convert "$MODEL" "$TMP/m.txt"
check "no extension refused" expect 2 "unknown output format" convert "$MODEL" "$TMP/m"
check "missing input file" expect 1 "No such file" convert "$TMP/missing.h5" "$TMP/m.onnx"
check "unknown zoo name" expect 1 "unknown model" convert nosuchmodel "$TMP/m.onnx"
check "unwritable destination" expect 1 "output folder" convert "$MODEL" "/nonexistent-dir/m.onnx"
check "nothing written on failure" sh -c '! ls "$0" | grep -q -e onnx -e cnm -e tmp' "$TMP"

if [ -f "$MODEL" ]; then
  echo old >"$TMP/m.onnx"
  check "exports the shared MobileNet" "$CONVNET" convert "$MODEL" "$TMP/m.onnx"
  check "replaced the old file" sh -c '[ "$(stat -c %s "$0")" -gt 1000000 ]' "$TMP/m.onnx"
  check "no temporary file left" sh -c '! ls "$0" | grep -q tmp' "$TMP"
  check "the export loads back" sh -c '"$0" summary -m "$1" >/dev/null 2>"$2"' "$CONVNET" "$TMP/m.onnx" "$TMP/err"
  check "writes a native .cnm" "$CONVNET" convert "$MODEL" "$TMP/m.cnm"
  check ".cnm to .onnx" "$CONVNET" convert "$TMP/m.cnm" "$TMP/m2.onnx"
  check "same ONNX either way" cmp "$TMP/m.onnx" "$TMP/m2.onnx"
else
  echo "skip: $MODEL absent (export checks)"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
