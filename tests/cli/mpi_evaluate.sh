#!/usr/bin/env bash
# convnet classify and evaluate under `mpirun -np N` give the stdout and exit status of one
# process: classify on the shared photos (files and a folder, text and --json, with a bad image
# among them), evaluate on a labelled flat folder (labels TSV) and on ImageNet-named class folders
# with a bad image (text, --json, --report), on the real MobileNet 0.25. Only the timing fields
# (speed, images_per_second, seconds) may differ. Skipped (77) without mpirun or without Open MPI
# in this build.
set -u
. "$(dirname "$0")/lib/mobilenet.sh"
IMG="$DATA/images"
SAMPLES="$DATA/imagenet-samples"
VAL="$DATA/cats_dogs/validation"
if [ ! -f "$SAMPLES/labels.tsv" ] || [ ! -d "$VAL/cats" ] || [ ! -d "$VAL/dogs" ]; then
  echo "SKIP: $SAMPLES/labels.tsv or $VAL absent"
  exit 77
fi
. "$(dirname "$0")/lib/mpi.sh"

# mpi NP ARGS...: convnet ARGS on NP ranks, output in $TMP/mpi.out, $TMP/mpi.err, status $mpi_rc
mpi() {
  local np=$1
  shift
  mpirun --oversubscribe -np "$np" "$CONVNET" "$@" >"$TMP/mpi.out" 2>"$TMP/mpi.err"
  mpi_rc=$?
}
# one ARGS...: convnet ARGS alone, output in $TMP/one.out, $TMP/one.err, status $one_rc
one() {
  "$CONVNET" "$@" >"$TMP/one.out" 2>"$TMP/one.err"
  one_rc=$?
}

# untimed FILE: FILE without the wall-time fields of evaluate's text and JSON output
untimed() {
  sed -e 's/^speed:.*$/speed:/' -e 's/"images_per_second":[0-9.]*,"seconds":[0-9.]*//' \
    -e 's/[0-9.]* images\/s ([0-9.]* s)//g' "$1"
}
# same_as_one WANT_RC: one and mpi exited WANT_RC with the same stdout (timing aside)
same_as_one() {
  cp "$TMP/mpi.err" "$TMP/err"
  [ "$one_rc" -eq "$1" ] && [ "$mpi_rc" -eq "$1" ] && [ -s "$TMP/one.out" ] &&
    cmp <(untimed "$TMP/one.out") <(untimed "$TMP/mpi.out") >>"$TMP/err" 2>&1
}
# compare NP WANT_RC ARGS...: convnet ARGS alone and on NP ranks
compare() {
  local np=$1 want=$2
  shift 2
  one "$@"
  mpi "$np" "$@"
  same_as_one "$want"
}

# ---- classify ------------------------------------------------------------------------------
photos=("$IMG"/*.jpg "$IMG"/*.png "$IMG"/*.bmp)
check "classify: ${#photos[@]} photos on 2 ranks, stdout as one process" \
  compare 2 0 classify -m "$MODEL" --threads 1 "${photos[@]}"
check "classify: a folder on 3 ranks, --json, -k 3" \
  compare 3 0 classify -m "$MODEL" --threads 1 --json -k 3 "$IMG"
check "classify: more ranks (4) than batches of 8" \
  compare 4 0 classify -m "$MODEL" --threads 1 "$IMG/ppm224"
printf 'not an image' >"$TMP/broken.jpg"
check "classify: a bad image among them: exit 1, the other images printed" \
  compare 2 1 classify -m "$MODEL" --threads 1 "${photos[@]:0:4}" "$TMP/broken.jpg" \
  "${photos[@]:4}"
check "classify: the bad image named once, on stderr" \
  bash -c '[ "$(grep -c "broken.jpg" "$0")" -eq 1 ] && ! grep -q "MPI_ABORT" "$0"' "$TMP/mpi.err"
mpi 2 classify -m "$MODEL" - "$IMG/darknet_dog.jpg"
check "classify -: refused under mpirun, one line, exit 1" \
  bash -c '[ "$0" -eq 1 ] && [ "$(grep -c "^convnet: " "$1")" -eq 1 ] &&
    grep -q "standard input" "$1" && [ ! -s "$2" ]' "$mpi_rc" "$TMP/mpi.err" "$TMP/mpi.out"
check "classify --explain: the pictures of one process" \
  bash -c '"$0" classify -m "$1" --threads 1 --explain "$2/ex1" "$3" >/dev/null 2>&1 &&
    mpirun --oversubscribe -np 2 "$0" classify -m "$1" --threads 1 --explain "$2/ex2" "$3" \
      >/dev/null 2>&1 && [ "$(ls "$2/ex2" | wc -l)" -eq "$(ls "$3" | wc -l)" ] &&
    diff -r "$2/ex1" "$2/ex2"' "$CONVNET" "$MODEL" "$TMP" "$IMG/ppm224" 2>"$TMP/err"

# ---- evaluate ------------------------------------------------------------------------------
# 40 ImageNet samples, flat, with their labels TSV
mkdir "$TMP/flat"
head -n 41 "$SAMPLES/labels.tsv" >"$TMP/flat/labels.tsv"
tail -n +2 "$TMP/flat/labels.tsv" | cut -f1 | while read -r f; do
  ln -s "$SAMPLES/$f" "$TMP/flat/$f"
done
# 24 cats as tabby (n02123045) and 24 dogs as golden retriever (n02099601), and a bad image
mkdir -p "$TMP/folders/n02123045" "$TMP/folders/n02099601"
for f in $(ls "$VAL/cats" | head -n 24); do ln -s "$VAL/cats/$f" "$TMP/folders/n02123045/$f"; done
for f in $(ls "$VAL/dogs" | head -n 24); do ln -s "$VAL/dogs/$f" "$TMP/folders/n02099601/$f"; done

check "evaluate: flat folder + TSV on 2 ranks, as one process" \
  compare 2 0 evaluate -m "$MODEL" --threads 1 --data "$TMP/flat"
check "evaluate: --json --batch 3 on 3 ranks" \
  compare 3 0 evaluate -m "$MODEL" --threads 1 --batch 3 --json --data "$TMP/flat"
check "evaluate: class folders, --per-class, on 2 ranks" \
  compare 2 0 evaluate -m "$MODEL" --threads 1 --per-class --data "$TMP/folders"
printf 'not an image' >"$TMP/folders/n02099601/dog.broken.jpg"
check "evaluate: a bad image: exit 1, skipped 1, --json as one process (3 ranks, batch 5)" \
  compare 3 1 evaluate -m "$MODEL" --threads 1 --batch 5 --json --per-class \
  --data "$TMP/folders"
check "evaluate: the bad image named once, no abort" \
  bash -c 'grep -q "\"skipped\":1" "$0" && [ "$(grep -c "dog.broken.jpg" "$1")" -eq 1 ] &&
    ! grep -q "MPI_ABORT" "$1"' "$TMP/mpi.out" "$TMP/mpi.err"
check "evaluate --report: the same page (worst images included)" \
  bash -c '"$0" evaluate -m "$1" --threads 1 --data "$2" --report "$3/one.html" >/dev/null 2>&1
    mpirun --oversubscribe -np 2 "$0" evaluate -m "$1" --threads 1 --data "$2" \
      --report "$3/mpi.html" >/dev/null 2>&1
    [ -s "$3/mpi.html" ] && cmp <(sed "s/[0-9.]* images\/s ([0-9.]* s)//g" "$3/one.html") \
      <(sed "s/[0-9.]* images\/s ([0-9.]* s)//g" "$3/mpi.html")' \
  "$CONVNET" "$MODEL" "$TMP/folders" "$TMP" 2>"$TMP/err"
mkdir -p "$TMP/unknown/cats"
ln -s "$VAL/cats/$(ls "$VAL/cats" | head -n 1)" "$TMP/unknown/cats/"
mpi 2 evaluate -m "$MODEL" --threads 1 --data "$TMP/unknown"
check "evaluate: an unknown class folder: exit 1, told once, no abort" \
  bash -c '[ "$0" -eq 1 ] && [ "$(grep -c "^convnet: " "$1")" -eq 1 ] && grep -q "cats" "$1" &&
    ! grep -q "MPI_ABORT" "$1"' "$mpi_rc" "$TMP/mpi.err"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
