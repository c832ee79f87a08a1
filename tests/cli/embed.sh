#!/usr/bin/env bash
# convnet embed and similar on the real MobileNet file: embeddings are (N, D) float32 .npy with
# the default layer as documented, similar ranks a folder (the query left out), the cache gives
# the same answer, --sheet writes a PNG; bad input (missing folder, unreadable image, unknown
# layer) fails with one line on stderr starting "convnet: " that names it, and a non-zero exit.
set -u
. "$(dirname "$0")/lib/mobilenet.sh"
IMG="$DATA/images"

npy_shape() { head -c 128 "$1" | tr -d '\0' | grep -o "'shape': ([0-9, ]*)"; }

check "embed --help" ran embed --help
check "similar --help" ran similar --help
check "convnet --help names embed and similar" \
  bash -c '"$0" --help | grep -q "^  embed " && "$0" --help | grep -q "^  similar "' "$CONVNET"

check "embed: 3 images" ran embed -m "$MODEL" -o "$TMP/e.npy" "$IMG/skimage_chelsea.png" \
  "$IMG/skimage_coffee.png" "$IMG/darknet_dog.jpg"
check "embed: (3, 256) float32 from the last spatial layer" \
  bash -c '[ "$0" = "'"'"'shape'"'"': (3, 256)" ] && grep -q "layer conv_pw_13_relu" "$1" &&
    head -c 64 "$2" | grep -q "<f4"' "$(npy_shape "$TMP/e.npy")" "$TMP/out" "$TMP/e.npy"
check "embed: --layer conv_pw_13_relu is the default" ran embed -m "$MODEL" \
  --layer conv_pw_13_relu -o "$TMP/e2.npy" "$IMG/skimage_chelsea.png" "$IMG/skimage_coffee.png" \
  "$IMG/darknet_dog.jpg"
check "embed: the same bytes" cmp "$TMP/e.npy" "$TMP/e2.npy"
check "embed: a Dense-free layer, flattened: (1, 1000) at predictions" \
  bash -c '"$0" embed -m "$1" --layer predictions -o "$2/p.npy" "$3" >/dev/null &&
    head -c 128 "$2/p.npy" | tr -d "\0" | grep -q "(1, 1000)"' "$CONVNET" "$MODEL" "$TMP" \
  "$IMG/skimage_coffee.png"

mkdir -p "$TMP/photos/cats"
cp "$IMG/skimage_chelsea.png" "$IMG/skimage_coffee.png" "$IMG/darknet_dog.jpg" \
  "$IMG/darknet_horses.jpg" "$IMG/darknet_eagle.jpg" "$TMP/photos/"
cp "$IMG/coral_cat_720p.jpg" "$IMG/coral_resized_cat.bmp" "$TMP/photos/cats/"
echo "not an image" >"$TMP/photos/notes.txt"
check "similar: the query in the folder" ran similar -m "$MODEL" -k 3 \
  "$TMP/photos/skimage_chelsea.png" "$TMP/photos"
cp "$TMP/out" "$TMP/similar.txt"
check "similar: query line, then 3 ranks, the query left out, a cat first" \
  bash -c '[ "$(wc -l <"$0")" -eq 4 ] && ! grep -q "  skimage_chelsea" "$0" &&
    sed -n 2p "$0" | grep -Eq "^  1  [0-9.-]+  .*/cats/coral_" &&
    sed -n 4p "$0" | grep -q "^  3  "' "$TMP/similar.txt"
check "similar --cache: same ranking, one vector per image" ran similar -m "$MODEL" -k 3 \
  --cache "$TMP/vectors" "$TMP/photos/skimage_chelsea.png" "$TMP/photos"
check "similar --cache: first run equals uncached" cmp "$TMP/out" "$TMP/similar.txt"
check "similar --cache: 7 cached vectors (the query is one of the 7 images)" \
  bash -c '[ "$(ls "$0" | wc -l)" -eq 7 ]' "$TMP/vectors"
check "similar --cache: second run from the cache" ran similar -m "$MODEL" -k 3 \
  --cache "$TMP/vectors" "$TMP/photos/skimage_chelsea.png" "$TMP/photos"
check "similar --cache: second run equals uncached" cmp "$TMP/out" "$TMP/similar.txt"
check "similar --sheet" ran similar -m "$MODEL" -k 4 --cache "$TMP/vectors" \
  --sheet "$TMP/sheet.png" "$IMG/coral_cat_720p.jpg" "$TMP/photos"
check "similar --sheet: a PNG" \
  bash -c '[ "$(head -c 8 "$0" | od -An -tx1 | tr -d " \n")" = 89504e470d0a1a0a ]' "$TMP/sheet.png"
check "similar: two queries, two blocks" ran similar -m "$MODEL" -k 1 --cache "$TMP/vectors" \
  "$IMG/coral_cat_720p.jpg" "$IMG/skimage_coffee.png" "$TMP/photos"
check "similar: two blocks of 2 lines" bash -c '[ "$(wc -l <"$0")" -eq 4 ]' "$TMP/out"

# bad input
echo "this is not an image" >"$TMP/text.jpg"
mkdir -p "$TMP/empty"
check "embed: unknown layer named" fails_naming 1 no_such_layer embed -m "$MODEL" \
  --layer no_such_layer -o "$TMP/x.npy" "$IMG/skimage_coffee.png"
check "embed: unreadable image named, nothing written" fails_naming 1 "$TMP/text.jpg" \
  embed -m "$MODEL" -o "$TMP/x.npy" "$IMG/skimage_coffee.png" "$TMP/text.jpg"
check "embed: missing image named" fails_naming 1 "$TMP/missing.jpg" \
  embed -m "$MODEL" -o "$TMP/x.npy" "$TMP/missing.jpg"
check "embed: no x.npy left" bash -c '[ ! -e "$0" ]' "$TMP/x.npy"
check "embed: no -o" fails_naming 2 "-o" embed -m "$MODEL" "$IMG/skimage_coffee.png"
check "similar: missing folder named" fails_naming 1 "$TMP/nowhere" similar -m "$MODEL" \
  "$IMG/skimage_coffee.png" "$TMP/nowhere"
check "similar: a file as folder" fails_naming 1 "not a folder" similar -m "$MODEL" \
  "$IMG/skimage_coffee.png" "$IMG/skimage_chelsea.png"
check "similar: folder without images" fails_naming 1 "no images" similar -m "$MODEL" \
  "$IMG/skimage_coffee.png" "$TMP/empty"
check "similar: unreadable query named" fails_naming 1 "$TMP/text.jpg" similar -m "$MODEL" \
  "$TMP/text.jpg" "$TMP/photos"
check "similar: unknown layer named" fails_naming 1 no_such_layer similar -m "$MODEL" \
  --layer no_such_layer "$IMG/skimage_coffee.png" "$TMP/photos"
check "similar: no DIR" fails_naming 2 "DIR" similar -m "$MODEL" "$IMG/skimage_coffee.png"
check "similar: --sheet with two queries" fails_naming 2 "--sheet" similar -m "$MODEL" \
  --sheet "$TMP/s.png" "$IMG/skimage_coffee.png" "$IMG/skimage_chelsea.png" "$TMP/photos"
cp "$TMP/text.jpg" "$TMP/photos/broken.jpg"
"$CONVNET" similar -m "$MODEL" -k 2 "$IMG/skimage_coffee.png" "$TMP/photos" >"$TMP/out" \
  2>"$TMP/err"
rc=$?
check "similar: an unreadable image in the folder is named and skipped, exit 1" \
  bash -c '[ "$0" -eq 1 ] && [ "$(wc -l <"$1")" -eq 1 ] && grep -q "broken.jpg" "$1" &&
    [ "$(wc -l <"$2")" -eq 3 ]' "$rc" "$TMP/err" "$TMP/out"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
