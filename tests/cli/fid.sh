#!/usr/bin/env bash
# convnet fid on a small classifier trained here on the real Fashion-MNIST test images: a set
# against itself is 0; the same images as a [0, 1] .npy, (N, H, W, 1) or (N, H, W), and as an
# IDX file of bytes give the same features (one scale for both); different sets are apart; bad
# input (unknown layer, wrong image size, corrupt .npy or IDX, values outside [0, 1], one image)
# fails with one stderr line "convnet: ..." naming the file or layer. A folder of image files
# gives the features of the same images as arrays.
set -u
: "${CONVNET:?set CONVNET to the convnet binary}"
DATA="${CN_SHARED_DATA:-$(dirname "$0")/../../../shared/data}"
IMAGES="$DATA/fashion-mnist/t10k-images-idx3-ubyte.gz"
[ -f "$IMAGES" ] || { echo "SKIP: $IMAGES absent"; exit 77; }
PY=""
for p in python3 /usr/bin/python3; do # the first with numpy (a pyenv shim may lack it)
  "$p" -c 'import numpy' 2>/dev/null && { PY=$p; break; }
done
[ -n "$PY" ] || { echo "SKIP: no python3 with numpy"; exit 77; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
. "$(dirname "$0")/lib/check.sh"

cat >"$TMP/small.json" <<'JSON'
{"class_name": "Sequential", "config": {"name": "small", "layers": [
 {"class_name": "Conv2D", "config": {"name": "conv", "batch_input_shape": [null, 28, 28, 1],
  "filters": 8, "kernel_size": [3, 3], "strides": [2, 2], "activation": "relu"}},
 {"class_name": "Flatten", "config": {"name": "flat"}},
 {"class_name": "Dense", "config": {"name": "features", "units": 16, "activation": "relu"}},
 {"class_name": "Dense", "config": {"name": "out", "units": 10, "activation": "softmax"}}]}}
JSON
"$CONVNET" train --model "$TMP/small.json" --data "$IMAGES" --val-split 0.5 --epochs 1 \
  --batch 64 --seed 1 --out "$TMP/m.cnm" >/dev/null 2>"$TMP/err" ||
  { cat "$TMP/err"; echo "FAIL: training the feature model"; exit 1; }

# a.npy, b.npy: test images 0-499 and 500-999 in [0, 1]; a_grey.npy: a.npy as (N, H, W);
# a.idx: images 0-499 as an uncompressed IDX file of bytes; noise.npy: uniform noise.
"$PY" - "$IMAGES" "$TMP" <<'PY'
import gzip, sys
import numpy as np
raw = gzip.open(sys.argv[1]).read()
x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:1000]
out = sys.argv[2]
np.save(f"{out}/a.npy", (x[:500, :, :, None] / np.float32(255)).astype(np.float32))
np.save(f"{out}/a_grey.npy", (x[:500] / np.float32(255)).astype(np.float32))
np.save(f"{out}/b.npy", (x[500:, :, :, None] / np.float32(255)).astype(np.float32))
np.save(f"{out}/noise.npy", np.random.default_rng(1).random((500, 28, 28, 1), np.float32))
np.save(f"{out}/bytes.npy", x[:10, :, :, None].astype(np.float32))
np.save(f"{out}/one.npy", (x[:1, :, :, None] / np.float32(255)).astype(np.float32))
np.save(f"{out}/big.npy", np.zeros((4, 32, 32, 1), np.float32))
import os
os.makedirs(f"{out}/pgm/sub")
for i in range(40):  # the first 40 test images as PGM files, half in a sub-folder
    with open(f"{out}/pgm/{'sub/' if i % 2 else ''}{i:02d}.pgm", "wb") as f:
        f.write(b"P5 28 28 255\n" + x[i].tobytes())
np.save(f"{out}/first40.npy", (x[:40, :, :, None] / np.float32(255)).astype(np.float32))
with open(f"{out}/a.idx", "wb") as f:
    f.write(bytes([0, 0, 8, 3]) + np.array([500, 28, 28], ">i4").tobytes() + x[:500].tobytes())
PY

fid() { "$CONVNET" fid -m "$TMP/m.cnm" "$@" >"$TMP/out" 2>"$TMP/err"; }
value() { fid "$@" && cat "$TMP/out"; }
near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; }

check "fid --help" bash -c '"$0" fid --help | grep -q "^usage: convnet fid"' "$CONVNET"
check "convnet --help names fid" bash -c '"$0" --help | grep -q "^  fid "' "$CONVNET"
check "a set against itself: 0" bash -c '[ "$("$0" fid -m "$1" "$2" "$2")" = 0.000000 ]' \
  "$CONVNET" "$TMP/m.cnm" "$TMP/a.npy"
ab=$(value "$TMP/a.npy" "$TMP/b.npy")
check "two halves of the test set: a positive distance" near "$ab" 0.5 0.4999999
check "the IDX bytes and the [0, 1] .npy are the same images (distance 0)" \
  near "$(value "$TMP/a.idx" "$TMP/a.npy")" 0 1e-4
check "(N, H, W) equals (N, H, W, 1)" near "$(value "$TMP/a_grey.npy" "$TMP/b.npy")" "$ab" 1e-4
check "--threads 1 gives the same" near "$(value --threads 1 "$TMP/a.npy" "$TMP/b.npy")" "$ab" 1e-4
noise=$(value "$TMP/a.npy" "$TMP/noise.npy")
check "noise is farther than other test images ($noise > $ab)" \
  awk -v a="$noise" -v b="$ab" 'BEGIN { exit !(a > 4 * b) }'
check "--layer out: the softmax outputs" fid --layer out "$TMP/a.npy" "$TMP/b.npy"
check "a gzip IDX file against a .npy" fid "$IMAGES" "$TMP/b.npy"
check "a folder of PGM files equals the same images as .npy (distance 0)" \
  near "$(value "$TMP/pgm" "$TMP/first40.npy")" 0 1e-4

# bad input
printf 'not a numpy file' >"$TMP/corrupt.npy"
head -c 5000 "$IMAGES" >"$TMP/short-images-idx3-ubyte.gz"
check "unknown layer named" fails_naming 1 no_such_layer fid -m "$TMP/m.cnm" \
  --layer no_such_layer "$TMP/a.npy" "$TMP/b.npy"
check "wrong image size names the file" fails_naming 1 "$TMP/big.npy" fid -m "$TMP/m.cnm" \
  "$TMP/a.npy" "$TMP/big.npy"
check "a corrupt .npy named" fails_naming 1 "$TMP/corrupt.npy" fid -m "$TMP/m.cnm" \
  "$TMP/corrupt.npy" "$TMP/b.npy"
check "a truncated IDX named" fails_naming 1 "$TMP/short-images-idx3-ubyte.gz" \
  fid -m "$TMP/m.cnm" "$TMP/a.npy" "$TMP/short-images-idx3-ubyte.gz"
check "a missing file named" fails_naming 1 "$TMP/missing.npy" fid -m "$TMP/m.cnm" \
  "$TMP/a.npy" "$TMP/missing.npy"
check "values 0..255 in a .npy refused" fails_naming 1 "[0, 1]" fid -m "$TMP/m.cnm" \
  "$TMP/bytes.npy" "$TMP/b.npy"
check "one image is too few" fails_naming 1 "$TMP/one.npy" fid -m "$TMP/m.cnm" \
  "$TMP/one.npy" "$TMP/b.npy"
mkdir -p "$TMP/bad" && cp "$TMP/pgm/00.pgm" "$TMP/pgm/02.pgm" "$TMP/bad/" &&
  printf 'P5 28 28 255\n' >"$TMP/bad/03.pgm"
check "an unreadable image in a folder named" fails_naming 1 "$TMP/bad/03.pgm" \
  fid -m "$TMP/m.cnm" "$TMP/bad" "$TMP/b.npy"
mkdir -p "$TMP/empty"
check "a folder without images named" fails_naming 1 "$TMP/empty" fid -m "$TMP/m.cnm" \
  "$TMP/empty" "$TMP/b.npy"
check "one set is a usage error" fails_naming 2 "A B" fid -m "$TMP/m.cnm" "$TMP/a.npy"
check "no model is a usage error" fails_naming 2 "-m" fid "$TMP/a.npy" "$TMP/b.npy"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
