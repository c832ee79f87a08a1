#!/usr/bin/env bash
# Command-line habits (issue 14): "-" reads an image from standard input and pipes work like
# files; a folder among the images of classify and embed stands for its images, sorted; an
# output whose folder is missing, not a folder, or not writable fails at once, before any work,
# with one line naming the folder, exit 1, and nothing written.
set -u
. "$(dirname "$0")/lib/mobilenet.sh"
DOG="$DATA/images/darknet_dog.jpg"
CAT="$DATA/images/skimage_chelsea.png"
M=(-m "$MODEL")

# The results of classify without the line naming the image.
results() { grep -v "^[^ ]" "$1"; }

check "classify -: standard input gives the file's result" \
  eval 'ran classify "${M[@]}" "$DOG" && results "$TMP/out" >"$TMP/want" &&
    "$CONVNET" classify "${M[@]}" - <"$DOG" >"$TMP/out" 2>"$TMP/err" &&
    head -1 "$TMP/out" | grep -qx -- "-" && results "$TMP/out" | cmp -s - "$TMP/want"'
check "classify: a pipe (process substitution) gives the file's result" \
  eval 'ran classify "${M[@]}" <(cat "$DOG") && results "$TMP/out" | cmp -s - "$TMP/want"'
check "classify -: empty standard input is one line naming it" \
  eval '! "$CONVNET" classify "${M[@]}" - </dev/null >"$TMP/out" 2>"$TMP/err" &&
    [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "^convnet: -: empty file" "$TMP/err"'

# A folder among the images stands for its images, recursively, in byte order of their paths.
mkdir -p "$TMP/photos/sub" "$TMP/empty"
cp "$DOG" "$TMP/photos/c_dog.jpg"
cp "$CAT" "$TMP/photos/a_cat.png"
cp "$DATA/images/skimage_coffee.png" "$TMP/photos/sub/b_coffee.png"
echo "not an image" >"$TMP/photos/notes.txt"
names() { grep "^[^ ]" "$TMP/out"; }
check "classify FOLDER: its 3 photos, sorted, as if named one by one" \
  eval 'ran classify "${M[@]}" "$TMP/photos/a_cat.png" "$TMP/photos/c_dog.jpg" \
      "$TMP/photos/sub/b_coffee.png" && cp "$TMP/out" "$TMP/one_by_one" &&
    ran classify "${M[@]}" "$TMP/photos" && [ "$(names | wc -l)" -eq 3 ] &&
    names | sort -c && ! grep -q notes "$TMP/out" &&
    [ "$(head -1 "$TMP/out")" = "$TMP/photos/a_cat.png" ] &&
    [ "$(sed -n 2p "$TMP/one_by_one" | cut -c1-20)" = "$(sed -n 2p "$TMP/out" | cut -c1-20)" ]'
check "classify: a file, then a folder, keep their places" \
  eval 'ran classify "${M[@]}" "$DOG" "$TMP/photos" && [ "$(names | wc -l)" -eq 4 ] &&
    [ "$(names | head -1)" = "$DOG" ]'
check "embed FOLDER: one row per image of the folder" \
  eval 'ran embed "${M[@]}" -o "$TMP/e.npy" "$TMP/photos" && grep -q "e.npy: 3 x " "$TMP/out"'
check "classify: a folder without images is one line naming it" \
  eval '! ran classify "${M[@]}" "$TMP/empty" && [ "$(wc -l <"$TMP/err")" -eq 1 ] &&
    grep -q "^convnet: $TMP/empty: no images" "$TMP/err"'

touch "$TMP/plain"
# refused_output FOLDER ARGS...: exit 1, one line "convnet: FOLDER: output folder: ...", no
# file written into $TMP (apart from the cache and the scratch files of this script).
refused_output() {
  local folder=$1
  shift
  local before
  before=$(find "$TMP" -newer "$TMP/plain" ! -path "$TMP/cache*" ! -name out ! -name err | wc -l)
  "$CONVNET" "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  [ "$rc" -eq 1 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] &&
    grep -qF "convnet: $folder: output folder: " "$TMP/err" &&
    [ "$(find "$TMP" -newer "$TMP/plain" ! -path "$TMP/cache*" ! -name out ! -name err | wc -l)" -eq "$before" ]
}
MISSING="$TMP/missing"
for bad in missing plain; do
  dir="$TMP/$bad" # a folder that does not exist; a plain file where the folder should be
  check "train --out into $bad/ (fails before training)" \
    refused_output "$dir" train --base "$MODEL" --data "$DATA/cats_dogs/train" --epochs 1 \
    --out "$dir/m.cnm"
  check "train --report into $bad/" \
    refused_output "$dir" train --base "$MODEL" --data "$DATA/cats_dogs/train" --out "$TMP/m.cnm" \
    --report "$dir/r.html"
  check "convert into $bad/" refused_output "$dir" convert "$MODEL" "$dir/m.onnx"
  check "embed -o into $bad/" refused_output "$dir" embed "${M[@]}" -o "$dir/e.npy" "$CAT"
  check "show -o into $bad/" \
    refused_output "$dir" show filters "${M[@]}" -o "$dir/f.png"
  check "style -o into $bad/" \
    refused_output "$dir" style "${M[@]}" -o "$dir/s.png" "$CAT" "$DOG"
  check "analogy -o into $bad/" \
    refused_output "$dir" analogy "${M[@]}" -o "$dir/a.png" "$CAT" "$CAT" "$DOG"
  check "similar --sheet into $bad/" \
    refused_output "$dir" similar "${M[@]}" --sheet "$dir/s.png" "$CAT" "$DATA/images"
  check "evaluate --report into $bad/" \
    refused_output "$dir" evaluate "${M[@]}" --data "$DATA/cats_dogs/validation" \
    --report "$dir/r.html"
  check "augment --preview into $bad/" \
    refused_output "$dir" augment --preview "$dir/g.png" "$CAT"
  check "run -o into $bad/" \
    refused_output "$dir" run -m "$MODEL" --input "$TMP/x.npy" --output "$dir/y.npy"
done
check "explain -o: a folder it makes itself needs a parent that exists" \
  refused_output "$MISSING" explain "${M[@]}" -o "$MISSING/deeper" "$CAT"
check "classify --explain: the same" \
  refused_output "$MISSING" classify "${M[@]}" --explain "$MISSING/deeper" "$CAT"
check "explain -o: a new folder in an existing one is fine" \
  eval 'ran explain "${M[@]}" -o "$TMP/new" "$CAT" && [ -s "$TMP/new/skimage_chelsea.png" ]'
if [ "$(id -u)" -ne 0 ]; then
  mkdir "$TMP/locked" && chmod a-w "$TMP/locked"
  check "an output folder that is not writable" \
    refused_output "$TMP/locked" embed "${M[@]}" -o "$TMP/locked/e.npy" "$CAT"
  chmod u+w "$TMP/locked"
else
  echo "skip: running as root, every folder is writable"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
